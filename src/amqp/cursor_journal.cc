#include "src/amqp/cursor_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "log/crc32c.h"
#include "log/file_util.h"
#include "net/amqp/wire.h"
#include "src/amqp/journal_file.h"

namespace sluice::amqp {

namespace {

constexpr size_t kHeaderBytes = 4 + 4 + 1 + 8;  // crc, body length, type, queue id

void PutRecord(CursorJournal::Type type, uint64_t queue_id, std::string_view body,
               std::string* out) {
  std::string rec;
  WireWriter w(&rec);
  w.Long(0);  // crc, filled below
  w.Long(static_cast<uint32_t>(body.size()));
  w.Octet(static_cast<uint8_t>(type));
  w.LongLong(queue_id);
  rec.append(body);
  const uint32_t crc = storage::Crc32c(0, rec.data() + 4, rec.size() - 4);
  for (int i = 0; i < 4; ++i) rec[i] = static_cast<char>(crc >> (24 - 8 * i));
  out->append(rec);
}

bool DecodeDelta(std::string_view body, QueueCursor::Delta* d) {
  WireReader r(body);
  d->next = static_cast<int64_t>(r.LongLong());
  const uint32_t n = r.Long();
  if (!r.ok() || d->next < 0 || r.remaining() != uint64_t{n} * 16) return false;
  d->settled.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const auto first = static_cast<int64_t>(r.LongLong());
    const auto last = static_cast<int64_t>(r.LongLong());
    d->settled.emplace_back(first, last);
  }
  return r.ok();
}

}  // namespace

void CursorJournal::EncodeFull(uint64_t queue_id, const QueueCursor& cursor, std::string* out) {
  PutRecord(Type::kFull, queue_id, cursor.Encode(), out);
}

void CursorJournal::EncodeDelta(uint64_t queue_id, const QueueCursor::Delta& delta,
                                std::string* out) {
  std::string body;
  WireWriter w(&body);
  w.LongLong(static_cast<uint64_t>(delta.next));
  w.Long(static_cast<uint32_t>(delta.settled.size()));
  for (const auto& [first, last] : delta.settled) {
    w.LongLong(static_cast<uint64_t>(first));
    w.LongLong(static_cast<uint64_t>(last));
  }
  PutRecord(Type::kDelta, queue_id, body, out);
}

void CursorJournal::EncodeDeleted(uint64_t queue_id, std::string* out) {
  PutRecord(Type::kDeleted, queue_id, {}, out);
}

size_t CursorJournal::DecodeRecords(std::string_view bytes, std::vector<Record>* out) {
  size_t pos = 0;
  while (bytes.size() - pos >= kHeaderBytes) {
    WireReader h(bytes.substr(pos, kHeaderBytes));
    const uint32_t crc = h.Long();
    const uint32_t len = h.Long();
    const uint8_t type = h.Octet();
    const uint64_t id = h.LongLong();
    if (len > bytes.size() - pos - kHeaderBytes) break;
    const std::string_view covered = bytes.substr(pos + 4, kHeaderBytes - 4 + len);
    if (storage::Crc32c(0, covered.data(), covered.size()) != crc) break;
    const std::string_view body = bytes.substr(pos + kHeaderBytes, len);
    Record rec;
    rec.queue_id = id;
    if (type == static_cast<uint8_t>(Type::kFull)) {
      absl::StatusOr<QueueCursor> c = QueueCursor::Decode(body);
      if (!c.ok()) break;
      rec.type = Type::kFull;
      rec.full = *std::move(c);
    } else if (type == static_cast<uint8_t>(Type::kDelta)) {
      rec.type = Type::kDelta;
      if (!DecodeDelta(body, &rec.delta)) break;
    } else if (type == static_cast<uint8_t>(Type::kDeleted) && len == 0) {
      rec.type = Type::kDeleted;
    } else {
      break;
    }
    out->push_back(std::move(rec));
    pos += kHeaderBytes + len;
  }
  return pos;
}

absl::StatusOr<std::unique_ptr<CursorJournal>> CursorJournal::Open(const std::string& path,
                                                                   std::vector<Record>* records) {
  // A leftover of an interrupted Rewrite: the journal itself is still whole.
  (void)storage::RemoveFile(path + ".tmp");
  // A cut tail held acks; those messages will be redelivered.
  absl::StatusOr<JournalFile> file =
      OpenJournalFile(path, "cursor journal",
                      [records](std::string_view bytes) { return DecodeRecords(bytes, records); });
  if (!file.ok()) return file.status();
  return std::unique_ptr<CursorJournal>(new CursorJournal(path, file->fd, file->size));
}

CursorJournal::~CursorJournal() {
  state_->alive = false;
  if (fd_ >= 0) ::close(fd_);
}

absl::Status CursorJournal::Append(std::string_view records) {
  if (absl::Status s = WriteAllAt(fd_, records, size_, path_); !s.ok()) return s;
  size_ += records.size();
  if (!records.empty()) unsynced_ = true;
  return absl::OkStatus();
}

absl::Status CursorJournal::Sync() {
  if (!unsynced_) return absl::OkStatus();
  if (::fdatasync(fd_) != 0) return storage::ErrnoStatus("fdatasync", path_, errno);
  unsynced_ = false;
  return absl::OkStatus();
}

void CursorJournal::SyncThrough(storage::IoBackend& io,
                                absl::AnyInvocable<void(absl::Status)> done) {
  if (!unsynced_) {
    done(absl::OkStatus());
    return;
  }
  // Appends after this point are covered by the next sync, not by this one.
  unsynced_ = false;
  state_->sync_in_flight = true;
  io.Sync(fd_, [state = state_, rewrites = state_->rewrites, path = path_,
                done = std::move(done)](int result) mutable {
    if (!state->alive) return;
    state->sync_in_flight = false;
    if (result < 0 && state->rewrites == rewrites) {
      done(storage::ErrnoStatus("fdatasync", path, -result));
      return;
    }
    done(absl::OkStatus());
  });
  io.Submit();
}

absl::Status CursorJournal::Rewrite(std::string_view records) {
  absl::Status s = storage::WriteFileAtomically(
      path_,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(records.data()), records.size()));
  if (!s.ok()) return s;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return storage::ErrnoStatus("open", path_, errno);
  // An in-flight sync holds its own reference to the old file: closing it here is safe.
  ::close(fd_);
  fd_ = fd;
  size_ = records.size();
  unsynced_ = false;
  ++state_->rewrites;
  return absl::OkStatus();
}

}  // namespace sluice::amqp
