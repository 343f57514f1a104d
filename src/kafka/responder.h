// In-order responses for one Kafka connection.
//
// Kafka clients match responses to requests by order as well as by correlation id, so a
// connection answers strictly in request order even when requests complete out of order (a
// produce waiting for fdatasync, a long-poll fetch). Each decoded request takes a slot in the
// connection's ResponseQueue; its Responder fills the slot later, and ready slots at the
// front are sent.
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
#include <memory>
#include <vector>

#include "log/partition_log.h"
#include "net/kafka/framing.h"
#include "net/reactor/connection.h"

namespace sluice::broker {

class ResponseQueue {
 public:
  ResponseQueue(net::Reactor* reactor, net::ConnectionId id) : reactor_(reactor), id_(id) {}

  net::Reactor* reactor() const { return reactor_; }

  uint64_t Reserve() {
    slots_.emplace_back();
    return first_seq_ + slots_.size() - 1;
  }
  // Fills slot `seq` (no chunks: the request has no response, e.g. acks=0) and sends every
  // ready slot at the front.
  void Complete(uint64_t seq, std::vector<net::OutputChunk> chunks);
  size_t outstanding() const { return slots_.size(); }
  // Called when the front drains below a limit (the handler resumes receiving).
  void set_on_drained(std::function<void()> f) { on_drained_ = std::move(f); }
  void MarkClosed() { closed_ = true; }

 private:
  struct Slot {
    bool ready = false;
    std::vector<net::OutputChunk> chunks;
  };
  net::Reactor* const reactor_;
  const net::ConnectionId id_;
  std::deque<Slot> slots_;
  uint64_t first_seq_ = 0;
  bool closed_ = false;
  std::function<void()> on_drained_;
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
