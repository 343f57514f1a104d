// Cursor journal bytes (src/amqp/cursor_journal.h), as found on disk after any damage:
// decoding stops at the first invalid record, never reads past the input, and replaying the
// records onto a cursor never crashes whatever they say.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "src/amqp/cursor_journal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sluice::amqp::CursorJournal;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<CursorJournal::Record> recs;
  size_t valid = CursorJournal::DecodeRecords(bytes, &recs);
  if (valid > size) __builtin_trap();
  sluice::amqp::QueueCursor cursor;
  for (const auto& r : recs) {
    if (r.type == CursorJournal::Type::kFull) {
      cursor = r.full;
    } else if (r.type == CursorJournal::Type::kDelta) {
      // Bounded: a delta may name a huge next, and replay inserts every offset below it.
      if (r.delta.next - cursor.next() > (1 << 16)) continue;
      (void)cursor.ApplyDelta(r.delta);
    }
  }
  (void)cursor.Watermark();
  return 0;
}
