// In-order responses for one Kafka connection.
//
// Kafka clients match responses to requests by order as well as by correlation id, so a
// connection answers strictly in request order even when requests complete out of order (a
// produce waiting for fdatasync, a long-poll fetch). Each decoded request takes a slot in the
// connection's ResponseQueue; its Responder fills the slot later, and ready slots at the
// front are sent.
//
// What one connection may queue (ResponseLimits): its charge is the memory of output not yet
// on the socket, of responses completed but held behind an earlier slot and of fetch responses
// being built in memory (reservations), and the number of file ranges among them. The
// connection stops handling frames from its input buffer (and receiving) while the charge is
// over a limit, or 256 requests are outstanding, and resumes below half. A fetch that would
// build its response in memory (down-conversion) or queue file ranges reserves its estimate
// first; past the limit it waits until the charge falls, unless it is at the front of the
// queue and the connection's unsent output is within the limit, so the front always
// progresses while the client reads. A client that never reads therefore costs at most about
// twice the limit plus one response.
//
// Threading: a ResponseQueue lives on its connection's shard thread. A Responder may be
// answered on any shard (a request forwarded to shard 0, see kafka_connection.h; a produce
// whose partitions live on other shards): off its
// queue's thread it posts the encoded frame back there. Lifetime: the queue is shared by the
// connection handler and every outstanding Responder, and reaches the socket through
// Reactor::FindConnection, so a Responder that completes after its connection closed is harmless.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "log/partition_log.h"
#include "net/kafka/framing.h"
#include "net/reactor/connection.h"

namespace sluice::broker {

// Per connection (KafkaOptions; flags in src/broker_config.h).
struct ResponseLimits {
  uint64_t max_bytes = 4 << 20;   // connection.max.queued.bytes
  size_t max_file_ranges = 1024;  // connection.max.queued.file.ranges
  size_t max_outstanding = 256;   // requests without an answer sent
};

class ResponseQueue : public std::enable_shared_from_this<ResponseQueue> {
 public:
  // `conn` is the connection's handle until MarkClosed (its OnClose).
  ResponseQueue(net::Connection* conn, ResponseLimits limits = {})
      : reactor_(&conn->reactor()), conn_(conn), limits_(limits) {}

  net::Reactor* reactor() const { return reactor_; }
  const ResponseLimits& limits() const { return limits_; }

  uint64_t Reserve() {
    slots_.emplace_back();
    return first_seq_ + slots_.size() - 1;
  }
  // Fills slot `seq` (no chunks: the request has no response, e.g. acks=0) and sends every
  // ready slot at the front.
  void Complete(uint64_t seq, std::vector<net::OutputChunk> chunks);
  size_t outstanding() const { return slots_.size(); }
  bool is_front(uint64_t seq) const { return seq == first_seq_; }
  bool closed() const { return closed_; }
  void MarkClosed();

  // The charge (see the file comment).
  uint64_t charged_bytes() const;
  size_t charged_file_ranges() const;
  // Over a limit: the connection must not handle another frame.
  bool Full() const;
  // At most half of every limit: a connection that stopped may go on.
  bool BelowHalf() const;

  // Room reserved for a response being built (given back on destruction, by then the
  // response is queued and charged as such).
  class Reservation {
   public:
    Reservation(std::shared_ptr<ResponseQueue> queue, uint64_t bytes, size_t file_ranges)
        : queue_(std::move(queue)), bytes_(bytes), file_ranges_(file_ranges) {}
    Reservation(Reservation&& o) noexcept
        : queue_(std::move(o.queue_)), bytes_(o.bytes_), file_ranges_(o.file_ranges_) {}
    Reservation& operator=(Reservation&&) = delete;
    ~Reservation();

   private:
    std::shared_ptr<ResponseQueue> queue_;
    uint64_t bytes_;
    size_t file_ranges_;
  };
  // Whether TryReserve would succeed now.
  bool HasRoomFor(uint64_t seq, uint64_t bytes, size_t file_ranges) const;
  // Reserves room for the response of slot `seq`, or nullopt: then WaitForRoom.
  static std::optional<Reservation> TryReserve(const std::shared_ptr<ResponseQueue>& queue,
                                               uint64_t seq, uint64_t bytes, size_t file_ranges);
  // Calls `retry` once, on this thread, after the charge may have fallen (output sent, the
  // front answered), from a posted task (never inline). Dropped if the connection closes first.
  void WaitForRoom(absl::AnyInvocable<void()> retry);

  // The handler's hooks: `on_room` runs whenever the charge may have fallen (the handler
  // resumes receiving if it stopped); OnOutputBelow is the connection's notification that its
  // output fell (net::ConnectionHandler::OnOutputBelow).
  void set_on_room(std::function<void()> f) { on_room_ = std::move(f); }
  void OnOutputBelow() { RoomMayHaveGrown(); }
  // Asks the connection to call OnOutputBelow once its output falls to half the limits, if
  // it is above them now (if not, only the queue's own progress can make room).
  void WatchOutput();

 private:
  struct Slot {
    bool ready = false;
    uint64_t bytes = 0;  // memory of `chunks`
    size_t file_ranges = 0;
    std::vector<net::OutputChunk> chunks;
  };
  void RoomMayHaveGrown();
  uint64_t unsent_bytes() const { return conn_ ? conn_->queued_memory_bytes() : 0; }
  size_t unsent_file_ranges() const { return conn_ ? conn_->queued_file_ranges() : 0; }

  net::Reactor* const reactor_;
  net::Connection* conn_;  // nullptr once closed
  const ResponseLimits limits_;
  std::deque<Slot> slots_;
  uint64_t first_seq_ = 0;
  bool closed_ = false;
  // Completed slots held behind an unanswered one, and reservations.
  uint64_t held_bytes_ = 0;
  size_t held_file_ranges_ = 0;
  uint64_t reserved_bytes_ = 0;
  size_t reserved_file_ranges_ = 0;
  std::vector<absl::AnyInvocable<void()>> room_waiters_;
  bool waiters_posted_ = false;
  std::function<void()> on_room_;
};

// Turns an encoded frame into output chunks: owned bytes shared (not copied), external
// ranges (token = index into `slices`) as zero-copy file ranges.
std::vector<net::OutputChunk> FrameToChunks(kafka::EncodedFrame frame,
                                            const std::vector<storage::FileSlice>& slices);

// The one-shot answer of one request. Move-only; a Responder destroyed without answering
// answers nothing (the slot stays empty, so the connection stalls: every handler must answer).
class Responder {
 public:
  Responder(std::shared_ptr<ResponseQueue> queue, uint64_t seq, int32_t correlation_id,
            int16_t api_version)
      : queue_(std::move(queue)),
        seq_(seq),
        correlation_id_(correlation_id),
        api_version_(api_version) {}
  Responder(Responder&&) = default;
  Responder& operator=(Responder&&) = default;

  int16_t api_version() const { return api_version_; }

  // Backpressure for responses built in memory (see the file comment). On the queue's thread.
  // The connection is gone (or the answer sent): building a response is pointless.
  bool connection_closed() const { return !queue_ || queue_->closed(); }
  std::optional<ResponseQueue::Reservation> TryReserve(uint64_t bytes, size_t file_ranges) {
    return ResponseQueue::TryReserve(queue_, seq_, bytes, file_ranges);
  }
  bool HasRoomFor(uint64_t bytes, size_t file_ranges) const {
    return !queue_ || queue_->HasRoomFor(seq_, bytes, file_ranges);
  }
  void WaitForRoom(absl::AnyInvocable<void()> retry) {
    if (queue_) queue_->WaitForRoom(std::move(retry));
  }

  template <typename Response>
  void Send(const Response& response, const std::vector<storage::FileSlice>& slices = {}) {
    SendFrame(kafka::EncodeResponse(correlation_id_, api_version_, response), slices);
  }
  void SendFrame(kafka::EncodedFrame frame, const std::vector<storage::FileSlice>& slices = {}) {
    if (!queue_) return;
    if (!queue_->reactor()->IsInLoopThread()) {
      net::Reactor* home = queue_->reactor();
      home->Post(
          [queue = std::move(queue_), seq = seq_, frame = std::move(frame), slices]() mutable {
            queue->Complete(seq, FrameToChunks(std::move(frame), slices));
          });
      return;
    }
    queue_->Complete(seq_, FrameToChunks(std::move(frame), slices));
    queue_.reset();
  }
  // No response on the wire (Produce with acks=0).
  void SendNothing() {
    if (!queue_) return;
    if (!queue_->reactor()->IsInLoopThread()) {
      net::Reactor* home = queue_->reactor();
      home->Post([queue = std::move(queue_), seq = seq_] { queue->Complete(seq, {}); });
      return;
    }
    queue_->Complete(seq_, {});
    queue_.reset();
  }

 private:
  std::shared_ptr<ResponseQueue> queue_;
  uint64_t seq_;
  int32_t correlation_id_;
  int16_t api_version_;
};

}  // namespace sluice::broker
