// AMQP metadata bytes as found on disk after any damage (src/amqp/metadata_image.h,
// metadata_journal.h): the snapshot parser and the journal decoder never read past their
// input, replaying any records never crashes, and whatever image results encodes to a
// snapshot that parses back.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "src/amqp/metadata_image.h"
#include "src/amqp/metadata_journal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sluice::amqp::MetadataImage;
  using sluice::amqp::MetadataJournal;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<MetadataImage> parsed = MetadataImage::ParseSnapshot(bytes);
  MetadataImage image = parsed.ok() ? *std::move(parsed) : MetadataImage();
  std::vector<MetadataJournal::Record> recs;
  if (MetadataJournal::Decode(bytes, &recs) > size) __builtin_trap();
  for (const auto& r : recs) {
    if (!image.Apply(r.type, r.body).ok()) break;
  }
  absl::StatusOr<std::string> snapshot = image.EncodeSnapshot();
  if (snapshot.ok()) {
    absl::StatusOr<MetadataImage> back = MetadataImage::ParseSnapshot(*snapshot);
    if (!back.ok() || back->queues.size() != image.queues.size() ||
        back->exchanges.size() != image.exchanges.size() ||
        back->bindings.size() != image.bindings.size()) {
      __builtin_trap();
    }
  }
  return 0;
}
