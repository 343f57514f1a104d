// The delivery state of one AMQP queue over its partition log.
//
//   [0, watermark)          settled: acked, rejected without requeue, delivered with no-ack,
//                           or purged. The log may drop these (AdvanceLogStart).
//   unacked                 delivered and waiting for ack/nack/reject (any channel)
//   requeued                returned to the queue (nack/reject with requeue, channel closed);
//                           delivered again before new messages, with redelivered=true
//   [next, log end)         never delivered
// watermark = min(unacked ∪ requeued ∪ {next}); acks may arrive in any order.
//
// Pure bookkeeping (no I/O): the queue decides where message bytes come from. Persisted for
// durable queues as Encode()/Decode() (format in src/amqp/MAPPING.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::amqp {

class QueueCursor {
 public:
  struct Taken {
    int64_t offset;
    bool redelivered;
  };

  QueueCursor() = default;
  explicit QueueCursor(int64_t start) : next_(start) {}

  // The next message to deliver (requeued ones first, lowest offset first), or nullopt when
  // none is ready below `end`. With `track` the offset becomes unacked, else it is settled.
  std::optional<Taken> Take(int64_t end, bool track);
  // The message a requeued/next take would return, without taking it.
  std::optional<Taken> Peek(int64_t end) const;
  // Settles an unacked offset (ack, or reject/nack without requeue). False if not unacked.
  bool Settle(int64_t offset);
  // Returns an unacked offset to the queue. False if not unacked.
  bool Requeue(int64_t offset);
  // Drops every ready message below `end`; returns how many.
  int64_t Purge(int64_t end);
  // Messages ready for delivery (requeued + never delivered below `end`).
  int64_t ReadyCount(int64_t end) const;
  int64_t UnackedCount() const { return static_cast<int64_t>(unacked_.size()); }
  int64_t Watermark() const;
  int64_t next() const { return next_; }
  bool IsUnacked(int64_t offset) const { return unacked_.contains(offset); }
  // Moves the never-delivered start up (e.g. the log start moved past it). Offsets below
  // `start` that are requeued are dropped.
  void SkipTo(int64_t start);

  // Byte accounting (x-max-length-bytes), off unless enabled: the body size of every ready
  // or unacked message that NoteBytes was told about, and the total of the ready ones.
  void EnableBytes() { track_bytes_ = true; }
  bool tracks_bytes() const { return track_bytes_; }
  // Records the size of a ready or unacked message (others are ignored).
  void NoteBytes(int64_t offset, uint64_t bytes);
  uint64_t ReadyBytes() const { return ready_bytes_; }

  // Persistent form: next, then every unacked or requeued offset (after a restart they are
  // all requeued and redelivered with redelivered=true).
  std::string Encode() const;
  static absl::StatusOr<QueueCursor> Decode(std::string_view bytes);

  // Changes of the persistent form since the last TakeDelta, for a journal of small records
  // instead of rewriting Encode() (src/amqp/cursor_journal.h). The persistent form is
  // (next, outstanding = unacked ∪ requeued); a delta says: the new `next`, and which offsets
  // below it left (or never entered) the outstanding set. Applying it:
  //   outstanding = (outstanding ∪ [old next, new next)) \ settled;  next = new next
  struct Delta {
    int64_t next = 0;
    std::vector<std::pair<int64_t, int64_t>> settled;  // [first, last) ranges, ascending
    bool overflow = false;  // too many ranges were kept: write Encode() instead
  };
  // Starts recording deltas (durable queues).
  void EnableDeltas() { record_deltas_ = true; }
  bool HasDelta() const { return delta_dirty_; }
  // The changes since the previous call, and forgets them.
  Delta TakeDelta();
  // Replays a delta onto a decoded cursor. Every outstanding offset becomes requeued, as
  // Decode does. InvalidArgument for a delta that does not fit (next moving back, ranges out
  // of order or above next): the caller ignores it.
  absl::Status ApplyDelta(const Delta& delta);

 private:
  int64_t next_ = 0;
  std::set<int64_t> unacked_;
  std::set<int64_t> requeued_;
  bool track_bytes_ = false;
  std::map<int64_t, uint64_t> bytes_;  // ready or unacked offset -> body size
  uint64_t ready_bytes_ = 0;
  bool record_deltas_ = false;
  bool delta_dirty_ = false;
  bool delta_overflow_ = false;
  // Offsets that left (or never entered) the outstanding set since TakeDelta, as ranges in
  // the order they happened (merged when adjacent; sorted by TakeDelta).
  std::vector<std::pair<int64_t, int64_t>> settled_log_;
  void NoteSettled(int64_t first, int64_t last);
  void NoteChanged() { delta_dirty_ = record_deltas_; }
  bool IsReady(int64_t offset) const { return offset >= next_ || requeued_.contains(offset); }
  uint64_t BytesOf(int64_t offset) const;
  // Drops sizes of offsets no longer ready or unacked and recounts the ready total.
  void Recount();
};

}  // namespace sluice::amqp
