// One Kafka client connection: framing with limits checked before allocation, decoding,
// dispatch to the handler table, and in-order answers (ResponseQueue).
//
// Framing limits: a size prefix above KafkaOptions::max_request_bytes, or negative, closes the
// connection before any buffer grows. Until a request decoded cleanly, frames whose header does
// not name an API version we serve are limited to max_first_request_bytes (so a stranger
// cannot make the broker buffer 100 MiB of garbage; a client opening with a big Produce can).
// Malformed requests (no header, unknown API key, a version the broker does not serve, a body that
// does not decode) close the connection with a log line naming the peer and the reason; an
// ApiVersions request of an unknown version is answered per KIP-511 instead.
//
// Backpressure: before handling each frame of the input buffer the connection checks what it
// has queued (ResponseQueue::Full: unsent output, responses held for order, fetch responses
// being built; 256 outstanding requests); over a limit it stops (PauseReceive) and resumes
// below half, so a client pipelining requests without reading the answers cannot make the
// broker buffer more than about twice the limits (src/kafka/responder.h).
//
// Shards: the connection lives on the shard that accepted it. Produce, Fetch, ListOffsets,
// OffsetForLeaderEpoch and ApiVersions are handled here (all but the last split by partition
// owner); on shards other
// than 0 every other API is forwarded to shard 0 (registry, group coordinator): the frame is
// copied, decoded again and handled there, and the answer is posted back to this queue.
#pragma once

#include <memory>
#include <string>

#include "net/reactor/connection.h"
#include "src/kafka/kafka_broker.h"
#include "src/kafka/responder.h"

namespace sluice::broker {

class KafkaConnection : public net::ConnectionHandler {
 public:
  KafkaConnection(KafkaBroker* broker, net::Connection& conn);

  void OnOpen(net::Connection& conn) override;
  void OnData(net::Connection& conn, net::InputBuffer& input) override;
  void OnOutputBelow(net::Connection& conn) override;
  void OnClose(net::Connection& conn, absl::Status reason) override;

 private:
  // Handles one frame's payload; false when the connection was closed.
  bool HandleFrame(net::Connection& conn, std::span<const uint8_t> payload);
  void Reject(net::Connection& conn, const std::string& why);
  // Stops handling frames while the queue is full; resumes below half.
  void Pause(net::Connection& conn);
  void MaybeResume();

  // Requests answered out of order are held; past this many outstanding, receiving pauses.
  static constexpr size_t kMaxOutstanding = 256;
  // Frames handled per OnData call before yielding the loop to other connections.
  static constexpr int kMaxFramesPerDelivery = 32;

  KafkaBroker* const broker_;
  net::Connection* const conn_;  // valid until OnClose
  std::shared_ptr<ResponseQueue> queue_;
  std::string local_host_;
  int32_t local_port_ = 0;
  bool handshake_done_ = false;
  bool paused_ = false;
  bool logged_pause_ = false;  // one line per connection
};

}  // namespace sluice::broker
