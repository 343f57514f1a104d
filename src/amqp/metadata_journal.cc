#include "src/amqp/metadata_journal.h"

#include <unistd.h>

#include <cerrno>

#include "log/crc32c.h"
#include "log/file_util.h"
#include "net/amqp/wire.h"
#include "src/amqp/journal_file.h"

namespace sluice::amqp {

namespace {
constexpr size_t kHeaderBytes = 4 + 4 + 1;  // crc, body length, type
}  // namespace

void MetadataJournal::Encode(uint8_t type, std::string_view body, std::string* out) {
  const size_t start = out->size();
  WireWriter w(out);
  w.Long(0);  // crc, filled below
  w.Long(static_cast<uint32_t>(body.size()));
  w.Octet(type);
  out->append(body);
  const uint32_t crc = storage::Crc32c(0, out->data() + start + 4, out->size() - start - 4);
  for (int i = 0; i < 4; ++i) (*out)[start + i] = static_cast<char>(crc >> (24 - 8 * i));
}

size_t MetadataJournal::Decode(std::string_view bytes, std::vector<Record>* out) {
  size_t pos = 0;
  while (bytes.size() - pos >= kHeaderBytes) {
    WireReader h(bytes.substr(pos, kHeaderBytes));
    const uint32_t crc = h.Long();
    const uint32_t len = h.Long();
    const uint8_t type = h.Octet();
    if (len > bytes.size() - pos - kHeaderBytes) break;
    const std::string_view covered = bytes.substr(pos + 4, kHeaderBytes - 4 + len);
    if (storage::Crc32c(0, covered.data(), covered.size()) != crc) break;
    out->push_back(Record{type, std::string(bytes.substr(pos + kHeaderBytes, len))});
    pos += kHeaderBytes + len;
  }
  return pos;
}

absl::StatusOr<std::unique_ptr<MetadataJournal>> MetadataJournal::Open(
    const std::string& path, std::vector<Record>* records) {
  // A cut tail held only changes that were never answered.
  absl::StatusOr<JournalFile> file =
      OpenJournalFile(path, "metadata journal",
                      [records](std::string_view bytes) { return Decode(bytes, records); });
  if (!file.ok()) return file.status();
  return std::unique_ptr<MetadataJournal>(new MetadataJournal(path, file->fd, file->size));
}

MetadataJournal::~MetadataJournal() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status MetadataJournal::AppendDurably(uint8_t type, std::string_view body) {
  if (broken_) return absl::FailedPreconditionError(path_ + ": broken until rewritten");
  std::string rec;
  Encode(type, body, &rec);
  if (absl::Status s = WriteAllAt(fd_, rec, size_, path_); !s.ok()) {
    broken_ = true;
    return s;
  }
  // fsyncgate: after a failed fdatasync the written pages may be dropped or marked clean, so
  // nothing may be appended after them either.
  if (::fdatasync(fd_) != 0) {
    broken_ = true;
    return storage::ErrnoStatus("fdatasync", path_, errno);
  }
  size_ += rec.size();
  return absl::OkStatus();
}

absl::Status MetadataJournal::Reset() {
  if (::ftruncate(fd_, 0) != 0) {
    broken_ = true;
    return storage::ErrnoStatus("ftruncate", path_, errno);
  }
  size_ = 0;
  if (::fdatasync(fd_) != 0) {
    broken_ = true;
    return storage::ErrnoStatus("fdatasync", path_, errno);
  }
  broken_ = false;
  return absl::OkStatus();
}

}  // namespace sluice::amqp
