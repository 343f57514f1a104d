// One AMQP 0-9-1 client connection (net::ConnectionHandler) and its channels.
//
// Connection states: protocol header -> start/start-ok (PLAIN or AMQPLAIN) -> tune/tune-ok ->
// open -> open. Frames are limited to 4096 bytes until tune-ok, to frame_max afterwards, and
// checked before their payload is buffered (FrameDecoder). Errors: a handler returns an
// AmqpError status; soft codes close the channel (channel.close), hard codes the connection
// (connection.close, then the socket once close-ok arrives or after a grace period).
//
// Method handlers, one per class: connection.* and channel.* in amqp_connection.cc,
// exchange.* and queue.* in amqp_entities.cc, basic.*, confirm.* and tx.* in amqp_basic.cc.
//
// Threading: the shard thread. Lifetime: the broker refers to a connection (exclusive queue
// owner, output list) only until ConnectionGone() in OnClose.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "net/amqp/command.h"
#include "net/amqp/frame.h"
#include "net/amqp/reply_codes.h"
#include "net/reactor/connection.h"
#include "src/amqp/amqp_broker.h"

namespace sluice::broker {

class AmqpChannel : public std::enable_shared_from_this<AmqpChannel> {
 public:
  AmqpChannel(AmqpConnection* conn, uint16_t id) : conn_(conn), id_(id) {}
  uint16_t id() const { return id_; }
  AmqpConnection& connection() { return *conn_; }

  absl::Status Handle(amqp::Command& cmd);
  // Sends basic.deliver for a message the queue took for `consumer`.
  void Deliver(AmqpConsumer& consumer, const QueuePtr& queue, int64_t offset, bool redelivered,
               const MessagePtr& message);
  bool CanTake(const AmqpConsumer& consumer) const;
  // Channel closing (either side) or connection gone: consumers cancelled, unacked requeued.
  void Teardown();
  // The broker cancels a consumer (its queue was deleted): basic.cancel to the client.
  void CancelByServer(std::string tag);

  // Direct reply-to: delivers a reply published under this channel's reply key to its
  // reply consumer (no-ack, nothing stored). False, and nothing sent, while the connection
  // has max_unsent_bytes unsent: the reply is then unroutable (a requester that does not
  // read cannot make the broker buffer replies).
  bool DeliverReply(const AmqpMessage& message);

  // Sends the publisher confirms that became ready (coalesced with multiple=true).
  void FlushConfirms();
  // Delivery passes for every queue this channel consumes from (capacity was freed).
  void WakeQueues();

  bool closing = false;  // server sent channel.close, waiting for close-ok
  bool flow_active = true;

 private:
  struct Delivery {
    QueuePtr queue;
    int64_t offset;
    std::string consumer_tag;  // empty for basic.get
  };

  absl::Status HandleExchange(amqp::Command& cmd);
  absl::Status HandleQueue(amqp::Command& cmd);
  absl::Status HandleBasic(amqp::Command& cmd);
  absl::Status Publish(amqp::Command& cmd, const amqp::BasicPublish& m);
  absl::Status Consume(const amqp::BasicConsume& m);
  absl::Status ConsumeReplies(const amqp::BasicConsume& m);
  // consumer_max_per_channel, before a new consumer with `tag` (empty: server-named).
  absl::Status CheckConsumerLimit(const std::string& tag);
  // A consumer tag for basic.consume: the client's (refused if in use) or amq.ctag-...
  absl::StatusOr<std::string> ConsumerTag(const std::string& requested);
  absl::Status Get(const amqp::BasicGet& m);
  // Ack (settle) or nack/reject (requeue or settle) deliveries up to/at `tag`.
  absl::Status Settle(uint64_t tag, bool multiple, bool requeue, bool ack, std::string_view what);
  // Ends a delivery: back to the queue (requeue), or settled; a settled rejection goes to
  // the queue's dead-letter exchange when `dead_letter`.
  void Release(std::map<uint64_t, Delivery>::iterator it, bool requeue, bool dead_letter = false);
  absl::StatusOr<QueuePtr> QueueFor(const std::string& name, bool for_exclusive_use);
  // Confirms: the message with publish sequence `seq` is stored (or failed) in one queue.
  void OnStored(uint64_t seq, bool ok);

  AmqpConnection* const conn_;
  const uint16_t id_;
  uint16_t consumer_prefetch_ = 0;  // basic.qos global=false: for consumers created later
  uint32_t channel_prefetch_ = 0;   // basic.qos global=true: the channel's total
  uint64_t next_delivery_tag_ = 1;
  std::map<uint64_t, Delivery> unacked_;
  std::map<std::string, std::unique_ptr<AmqpConsumer>> consumers_;
  std::map<std::string, QueuePtr> consumer_queues_;
  uint64_t consumer_counter_ = 0;
  // Publisher confirms.
  bool confirm_ = false;
  uint64_t publish_seq_ = 0;
  uint64_t confirmed_through_ = 0;           // every seq <= this was answered
  std::map<uint64_t, int> confirm_pending_;  // seq -> stores outstanding
  std::set<uint64_t> confirm_done_;          // finished, above confirmed_through_
  std::set<uint64_t> confirm_failed_;
  bool confirms_ready_ = false;
  // Direct reply-to: the channel's consumer of amq.rabbitmq.reply-to and its reply key.
  std::string reply_tag_;
  std::string reply_key_;
  std::string last_queue_;  // "" in queue arguments means the last declared queue
  // Transactions: publishes and acks since the last commit, replayed by tx.commit.
  bool tx_ = false;
  std::vector<amqp::Command> tx_commands_;
  uint64_t tx_bytes_ = 0;  // charged to the connection (max_uncommitted_bytes)
  // Drops the uncommitted commands and their charge.
  void ClearTx();
};

class AmqpConnection : public net::ConnectionHandler {
 public:
  AmqpConnection(AmqpBroker* broker, net::Connection& conn);
  ~AmqpConnection() override;

  void OnOpen(net::Connection& conn) override;
  void OnData(net::Connection& conn, net::InputBuffer& input) override;
  void OnClose(net::Connection& conn, absl::Status reason) override;

  AmqpBroker& broker() { return *broker_; }
  const amqp::FrameEncoder& encoder() const { return encoder_; }
  // Queues a method frame (or content) for sending at the end of the iteration.
  template <typename M>
  void SendMethod(uint16_t channel, const M& m) {
    if (!conn_) return;
    (void)encoder_.AppendMethod(channel, m, &out_);
    broker_->MarkOutput(this);
  }
  void SendContent(uint16_t channel, std::string_view properties, std::string_view body) {
    if (!conn_) return;
    (void)encoder_.AppendContentRaw(channel, amqp::BasicProperties::kClassId, properties, body,
                                    &out_);
    broker_->MarkOutput(this);
  }
  void Flush();
  uint64_t queued_bytes() const { return (conn_ ? conn_->queued_bytes() : 0) + out_.size(); }
  // What this connection counts toward the memory alarm: unsent output, uncommitted
  // transactions, unfinished incoming content, the input buffer.
  uint64_t MemoryBytes() const;
  // Transactions: charges `bytes` of uncommitted work against max_uncommitted_bytes (false,
  // nothing charged, if it would pass it); Release gives them back.
  bool ChargeUncommitted(uint64_t bytes);
  void ReleaseUncommitted(uint64_t bytes) { uncommitted_bytes_ -= bytes; }
  // Output back-pressure: reading stopped at max_unsent_bytes unsent resumes once the output
  // is at half of it. True when the connection no longer waits (resumed or gone).
  bool MaybeResumeOutput();
  bool alive() const { return conn_ != nullptr; }
  // Closes the socket at once (broker shutdown); OnClose runs before this returns.
  void CloseNow() {
    if (socket_) socket_->Close(absl::CancelledError("broker stopping"));
  }
  // A hard error: connection.close with `code`, then the socket closes.
  void CloseWithError(amqp::ReplyCode code, std::string_view text, uint16_t class_id,
                      uint16_t method_id);
  std::shared_ptr<AmqpChannel> channel(uint16_t id);
  // The broker's resource alarms changed (disk, memory). While one is on, a connection that
  // has published is blocked (Connection.Blocked with the broker's AlarmReason() if the
  // client announced the capability; its socket is not read), others when they publish.
  // All off: Connection.Unblocked, reading resumes.
  void OnAlarmsChanged();
  // A connection blocked by an alarm is not read, so its peer's close would go unnoticed
  // (and what it holds, e.g. uncommitted transactions, would keep the memory alarm on):
  // polled for a hang-up instead, and closed when its peer is gone.
  void CloseIfPeerGoneWhileBlocked();

 private:
  enum class State { kHeader, kStartOk, kTuneOk, kOpen, kRunning, kClosing };

  void HandleFrame(const amqp::Frame& frame);
  void HandleCommand(amqp::Command& cmd);
  absl::Status HandleConnectionMethod(amqp::Command& cmd);
  absl::Status HandleChannelMethod(amqp::Command& cmd);
  absl::Status Authenticate(const amqp::ConnectionStartOk& m);
  void ChannelError(uint16_t channel, const absl::Status& s, uint16_t class_id, uint16_t method_id);
  void ScheduleHeartbeat();
  void Block();
  // Pauses or resumes the socket's input as blocked_ and output_paused_ say.
  void UpdateReceive();
  // channels_ changes, with the user's channel count (user_max_channels).
  void AddChannel(uint16_t id);
  void EraseChannel(uint16_t id);
  void ClearChannels();

  AmqpBroker* const broker_;
  net::Connection* conn_;    // null once nothing more is to be sent
  net::Connection* socket_;  // valid until OnClose
  const std::string peer_;
  State state_ = State::kHeader;
  amqp::FrameDecoder decoder_{amqp::kFrameMinSize};
  amqp::FrameEncoder encoder_{amqp::kFrameMinSize};
  amqp::CommandAssembler assembler_;
  std::map<uint16_t, std::shared_ptr<AmqpChannel>> channels_;
  uint16_t channel_max_ = 0;
  uint16_t heartbeat_ = 0;
  uint64_t last_received_ = 0;
  int missed_heartbeats_ = 0;
  net::TimerId heartbeat_timer_;
  bool heartbeat_armed_ = false;
  std::string out_;
  // Resource alarms (RabbitMQ's connection.blocked extension).
  bool blocked_capable_ = false;  // client-properties.capabilities.connection.blocked
  bool published_ = false;        // sent basic.publish at least once: a publisher
  bool blocked_ = false;          // reading paused by the alarm
  bool blocked_sent_ = false;     // Connection.Blocked sent, Unblocked owed
  // Output back-pressure (max_unsent_bytes).
  bool output_paused_ = false;
  bool receive_paused_ = false;  // PauseReceive in force (blocked_ || output_paused_)
  uint64_t last_sent_ = 0;       // bytes_sent at the last heartbeat check
  uint64_t uncommitted_bytes_ = 0;
  std::string user_;
  bool admitted_ = false;  // counted by the broker's connection limits
};

}  // namespace sluice::broker
