// The cursors of durable queues, kept as a journal: one file (`amqp-cursors/journal`) of small
// checksummed records. At the end of every loop iteration in which a durable queue's cursor
// changed, one record per such queue is appended (a delta: the new `next` and the offsets
// settled since, as ranges), so an ack processed by the broker survives a crash of the broker
// process. The file is fdatasync'd every 200 ms (an ack survives power loss after that) and
// compacted, when it grows, into one full record per queue (temp file, fdatasync, rename).
// Appends are written inline (they must be in the kernel before the iteration's replies go
// out); the periodic fdatasync goes through the shard's storage backend (SyncThrough), so the
// loop never waits for the disk's flush.
//
// Record: crc32c u32 (of everything after it), body length u32, type u8, queue id u64, body;
// big-endian. Bodies: full = QueueCursor::Encode(); delta = next u64, count u32, count x
// (first u64, last u64); deleted = empty. Replay applies records in file order; the first
// record that fails its checksum or does not parse ends the journal (a torn tail is cut).
// Format and rules: src/amqp/MAPPING.md ("The queue cursor").
//
// Threading: the shard thread. Pure file I/O; the broker decides what to write.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log/io_backend.h"
#include "src/amqp/queue_cursor.h"

namespace sluice::amqp {

class CursorJournal {
 public:
  enum class Type : uint8_t { kFull = 1, kDelta = 2, kDeleted = 3 };
  struct Record {
    Type type = Type::kFull;
    uint64_t queue_id = 0;
    QueueCursor full;          // kFull
    QueueCursor::Delta delta;  // kDelta
  };

  // Opens (creating if missing) the journal at `path` and returns its valid records in
  // `records`, in file order. A damaged or torn tail is logged and cut, so appends continue
  // right after the last valid record.
  static absl::StatusOr<std::unique_ptr<CursorJournal>> Open(const std::string& path,
                                                             std::vector<Record>* records);
  ~CursorJournal();
  CursorJournal(const CursorJournal&) = delete;
  CursorJournal& operator=(const CursorJournal&) = delete;

  // Record encoders: each appends one record to `out`.
  static void EncodeFull(uint64_t queue_id, const QueueCursor& cursor, std::string* out);
  static void EncodeDelta(uint64_t queue_id, const QueueCursor::Delta& delta, std::string* out);
  static void EncodeDeleted(uint64_t queue_id, std::string* out);
  // Decodes records from the front of `bytes` until the end or the first invalid one; returns
  // how many bytes the valid records span.
  static size_t DecodeRecords(std::string_view bytes, std::vector<Record>* out);

  // Appends encoded records (written to the OS, not synced).
  absl::Status Append(std::string_view records);
  // fdatasync if anything was appended since the last sync.
  absl::Status Sync();
  // The same through `io` (the shard's storage backend): queues an fdatasync of everything
  // appended so far and returns; `done` runs from io's Poll with the result (at once, with OK,
  // when nothing is unsynced). One at a time: not called while sync_in_flight(). A Rewrite
  // meanwhile makes the records durable itself, and the in-flight sync then reports OK.
  void SyncThrough(storage::IoBackend& io, absl::AnyInvocable<void(absl::Status)> done);
  bool sync_in_flight() const { return state_->sync_in_flight; }
  // Replaces the journal with `records` atomically and durably.
  absl::Status Rewrite(std::string_view records);
  uint64_t size() const { return size_; }

 private:
  CursorJournal(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size), state_(std::make_shared<SyncState>()) {}

  // Shared with an in-flight sync's callback, which may run after the journal is gone.
  struct SyncState {
    bool alive = true;
    bool sync_in_flight = false;
    uint64_t rewrites = 0;  // a sync of a file since replaced reports OK
  };

  const std::string path_;
  int fd_;
  uint64_t size_;
  bool unsynced_ = false;
  std::shared_ptr<SyncState> state_;
};

}  // namespace sluice::amqp
