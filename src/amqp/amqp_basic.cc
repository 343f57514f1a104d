// basic.*, confirm.* and tx.* methods of a channel, and its deliveries.
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "log/logging.h"
#include "net/amqp/reply_codes.h"
#include "src/amqp/amqp_connection.h"

namespace sluice::broker {

using amqp::AmqpError;
using amqp::ReplyCode;

namespace {

template <typename M>
const M* As(const amqp::Command& cmd) {
  return std::get_if<M>(&cmd.method);
}

}  // namespace

absl::Status AmqpChannel::Handle(amqp::Command& cmd) {
  switch (amqp::IdOf(cmd.method).class_id) {
    case amqp::ExchangeDeclare::kClassId:
      return HandleExchange(cmd);
    case amqp::QueueDeclare::kClassId:
      return HandleQueue(cmd);
    case amqp::BasicQos::kClassId:
      return HandleBasic(cmd);
    case amqp::ConfirmSelect::kClassId:
      if (auto* m = As<amqp::ConfirmSelect>(cmd)) {
        if (tx_) {
          return AmqpError(ReplyCode::kPreconditionFailed, "cannot switch from tx to confirm mode");
        }
        confirm_ = true;
        if (!m->nowait) conn_->SendMethod(id_, amqp::ConfirmSelectOk{});
        return absl::OkStatus();
      }
      break;
    case amqp::TxSelect::kClassId:
      if (As<amqp::TxSelect>(cmd)) {
        if (confirm_) {
          return AmqpError(ReplyCode::kPreconditionFailed, "cannot switch from confirm to tx mode");
        }
        tx_ = true;
        conn_->SendMethod(id_, amqp::TxSelectOk{});
        return absl::OkStatus();
      }
      if (As<amqp::TxCommit>(cmd) || As<amqp::TxRollback>(cmd)) {
        if (!tx_) {
          return AmqpError(ReplyCode::kPreconditionFailed, "channel is not transactional");
        }
        std::vector<amqp::Command> pending = std::move(tx_commands_);
        ClearTx();
        if (As<amqp::TxCommit>(cmd)) {
          // Replayed in one go: consumers see the publishes together, at the end of this
          // loop iteration.
          tx_ = false;
          absl::Status s;
          for (amqp::Command& c : pending) {
            s = HandleBasic(c);
            if (!s.ok()) break;
          }
          tx_ = true;
          if (!s.ok()) return s;
          conn_->SendMethod(id_, amqp::TxCommitOk{});
        } else {
          conn_->SendMethod(id_, amqp::TxRollbackOk{});
        }
        return absl::OkStatus();
      }
      break;
    default:
      break;
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

absl::Status AmqpChannel::HandleBasic(amqp::Command& cmd) {
  AmqpBroker& b = conn_->broker();
  if (tx_ && (As<amqp::BasicPublish>(cmd) || As<amqp::BasicAck>(cmd) || As<amqp::BasicNack>(cmd) ||
              As<amqp::BasicReject>(cmd))) {
    // Checked now (an unknown exchange fails the publish, not the commit), applied at commit.
    if (auto* m = As<amqp::BasicPublish>(cmd)) {
      AmqpExchange* e = b.FindExchange(m->exchange);
      if (!e) {
        return AmqpError(ReplyCode::kNotFound,
                         absl::StrFormat("no exchange '%s' in vhost '/'", m->exchange));
      }
    }
    // What the command holds in memory while it waits for tx.commit.
    const uint64_t bytes = sizeof(amqp::Command) + cmd.header_bytes + cmd.body.size();
    if (!conn_->ChargeUncommitted(bytes)) {
      const uint64_t limit = b.options().max_uncommitted_bytes;
      std::string text = absl::StrFormat(
          "uncommitted transaction of connection over %d bytes (amqp-max-uncommitted-bytes); "
          "commit smaller transactions",
          limit);
      b.LogLimit("amqp-max-uncommitted-bytes", text);
      return AmqpError(ReplyCode::kPreconditionFailed, text);
    }
    tx_bytes_ += bytes;
    tx_commands_.push_back(std::move(cmd));
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::BasicPublish>(cmd)) return Publish(cmd, *m);
  if (auto* m = As<amqp::BasicAck>(cmd)) {
    return Settle(m->delivery_tag, m->multiple, false, true, "ack");
  }
  if (auto* m = As<amqp::BasicNack>(cmd)) {
    return Settle(m->delivery_tag, m->multiple, m->requeue, false, "nack");
  }
  if (auto* m = As<amqp::BasicReject>(cmd)) {
    return Settle(m->delivery_tag, false, m->requeue, false, "reject");
  }
  if (auto* m = As<amqp::BasicQos>(cmd)) {
    if (m->prefetch_size != 0) {
      return AmqpError(ReplyCode::kNotImplemented,
                       absl::StrCat("prefetch_size!=0 (", m->prefetch_size, ")"));
    }
    if (m->global) {
      channel_prefetch_ = m->prefetch_count;
    } else {
      consumer_prefetch_ = m->prefetch_count;
    }
    conn_->SendMethod(id_, amqp::BasicQosOk{});
    WakeQueues();
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::BasicConsume>(cmd)) return Consume(*m);
  if (auto* m = As<amqp::BasicCancel>(cmd)) {
    if (!reply_tag_.empty() && m->consumer_tag == reply_tag_) {
      b.UnregisterReplyConsumer(reply_key_);
      reply_tag_.clear();
      reply_key_.clear();
    }
    auto it = consumers_.find(m->consumer_tag);
    if (it != consumers_.end()) {
      QueuePtr q = consumer_queues_[m->consumer_tag];
      std::unique_ptr<AmqpConsumer> c = std::move(it->second);
      consumers_.erase(it);
      consumer_queues_.erase(m->consumer_tag);
      // Its unacked deliveries stay with the channel (RabbitMQ).
      b.RemoveConsumer(q, c.get());
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::BasicCancelOk{m->consumer_tag});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::BasicGet>(cmd)) return Get(*m);
  if (auto* m = As<amqp::BasicRecover>(cmd)) {
    if (!m->requeue) return AmqpError(ReplyCode::kNotImplemented, "requeue=false");
    while (!unacked_.empty()) Release(unacked_.begin(), /*requeue=*/true);
    conn_->SendMethod(id_, amqp::BasicRecoverOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::BasicRecoverAsync>(cmd)) {
    if (!m->requeue) return AmqpError(ReplyCode::kNotImplemented, "requeue=false");
    while (!unacked_.empty()) Release(unacked_.begin(), /*requeue=*/true);
    return absl::OkStatus();
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

absl::Status AmqpChannel::Publish(amqp::Command& cmd, const amqp::BasicPublish& m) {
  AmqpBroker& b = conn_->broker();
  uint64_t seq = confirm_ ? ++publish_seq_ : 0;
  AmqpExchange* e = b.FindExchange(m.exchange);
  if (!e) {
    return AmqpError(ReplyCode::kNotFound,
                     absl::StrFormat("no exchange '%s' in vhost '/'", m.exchange));
  }
  if (e->internal) {
    return AmqpError(
        ReplyCode::kAccessRefused,
        absl::StrFormat("cannot publish to internal exchange '%s' in vhost '/'", m.exchange));
  }
  if (m.immediate) {
    return AmqpError(ReplyCode::kNotImplemented, "immediate=true");
  }
  amqp::BasicProperties& props = cmd.header->properties;
  if (props.reply_to && *props.reply_to == kReplyTo) {
    // Direct reply-to: the requester must consume replies on this channel first.
    if (reply_key_.empty()) {
      return AmqpError(ReplyCode::kPreconditionFailed, "fast reply consumer does not exist");
    }
    props.reply_to = reply_key_;
  }
  auto msg = std::make_shared<AmqpMessage>();
  msg->exchange = m.exchange;
  msg->routing_key = m.routing_key;
  msg->persistent = props.delivery_mode.value_or(1) == 2;
  msg->timestamp_ms = absl::ToUnixMillis(absl::Now());
  if (int64_t e; props.expiration && absl::SimpleAtoi(*props.expiration, &e) && e >= 0) {
    msg->expiration_ms = e;
  }
  if (absl::Status s = props.Encode(&msg->properties); !s.ok()) return s;
  msg->body = std::move(cmd.body);
  if (props.headers) {
    for (const amqp::FieldEntry& h : props.headers->entries()) {
      if (const std::string* v = h.value.AsString()) {
        msg->kafka_headers.push_back({h.name, *v});
      } else if (std::optional<int64_t> i = h.value.AsInt64()) {
        msg->kafka_headers.push_back({h.name, absl::StrCat(*i)});
      }
    }
  }
  const amqp::FieldTable* headers = props.headers ? &*props.headers : nullptr;
  if (m.exchange.empty() && m.routing_key.starts_with(kReplyToPrefix)) {
    // A reply: straight to the requester's reply consumer, nothing stored. A requester that
    // is gone, or has max_unsent_bytes unsent, makes it unroutable (dropped, or returned when
    // mandatory).
    AmqpChannel* requester = b.FindReplyConsumer(m.routing_key);
    if (requester != nullptr && requester->DeliverReply(*msg)) {
      if (confirm_) OnStored(seq, true);
      return absl::OkStatus();
    }
  }
  std::vector<QueuePtr> queues = b.Route(*e, m.routing_key, headers);
  if (queues.empty()) {
    if (m.mandatory) {
      // Before the confirm (RabbitMQ's order): the confirm goes out at flush time.
      conn_->SendMethod(id_, amqp::BasicReturn{static_cast<uint16_t>(ReplyCode::kNoRoute),
                                               "NO_ROUTE", m.exchange, m.routing_key});
      conn_->SendContent(id_, msg->properties, msg->body);
    }
    if (confirm_) OnStored(seq, true);
    return absl::OkStatus();
  }
  if (confirm_) confirm_pending_[seq] = static_cast<int>(queues.size());
  MessagePtr shared = std::move(msg);
  std::weak_ptr<AmqpChannel> self = weak_from_this();
  for (const QueuePtr& q : queues) {
    storage::AppendCallback done;
    if (confirm_) {
      done = [self, seq](absl::Status s, const storage::AppendResult&) {
        if (auto ch = self.lock()) ch->OnStored(seq, s.ok());
      };
    }
    if (absl::Status s = b.Append(*q, shared, std::move(done)); !s.ok()) {
      // A full queue with reject-publish nacks the publish (RabbitMQ); anything else is
      // a storage failure (out of disk space, Unavailable, is logged once by the log).
      if (!absl::IsResourceExhausted(s) && !absl::IsUnavailable(s)) {
        storage::LogError("amqp: append to queue '%s' failed: %s", q->name, s.message());
      }
      if (confirm_) OnStored(seq, false);
    }
  }
  return absl::OkStatus();
}

void AmqpChannel::OnStored(uint64_t seq, bool ok) {
  if (!ok) confirm_failed_.insert(seq);
  auto it = confirm_pending_.find(seq);
  if (it != confirm_pending_.end()) {
    if (--it->second > 0) return;
    confirm_pending_.erase(it);
  }
  confirm_done_.insert(seq);
  confirms_ready_ = true;
  if (conn_->alive()) conn_->broker().MarkOutput(conn_);
}

void AmqpChannel::FlushConfirms() {
  if (!confirms_ready_ || closing) return;
  confirms_ready_ = false;
  uint64_t through = confirmed_through_;
  while (!confirm_done_.empty() && *confirm_done_.begin() == through + 1) {
    ++through;
    confirm_done_.erase(confirm_done_.begin());
  }
  if (through == confirmed_through_) return;
  auto first_failed = confirm_failed_.upper_bound(confirmed_through_);
  bool any_failed = first_failed != confirm_failed_.end() && *first_failed <= through;
  if (!any_failed) {
    // One basic.ack with multiple=true covers the whole run.
    conn_->SendMethod(id_, amqp::BasicAck{through, through - confirmed_through_ > 1});
  } else {
    for (uint64_t t = confirmed_through_ + 1; t <= through; ++t) {
      if (confirm_failed_.erase(t)) {
        conn_->SendMethod(id_, amqp::BasicNack{t, false, false});
      } else {
        conn_->SendMethod(id_, amqp::BasicAck{t, false});
      }
    }
  }
  confirmed_through_ = through;
}

absl::StatusOr<std::string> AmqpChannel::ConsumerTag(const std::string& requested) {
  std::string tag = requested;
  if (tag.empty()) {
    do {
      tag = absl::StrCat("amq.ctag-", conn_->broker().NewQueueName().substr(8));
    } while (consumers_.contains(tag) || tag == reply_tag_);
  } else if (consumers_.contains(tag) || tag == reply_tag_) {
    return AmqpError(ReplyCode::kNotAllowed,
                     absl::StrFormat("attempt to reuse consumer tag '%s'", tag));
  }
  return tag;
}

absl::Status AmqpChannel::CheckConsumerLimit(const std::string& tag) {
  const int64_t max = conn_->broker().options().consumer_max_per_channel;
  const size_t count = consumers_.size() + (reply_tag_.empty() ? 0 : 1);
  // A tag in use is refused as such (ConsumerTag), as RabbitMQ checks the limit first only
  // for new tags.
  if (max < 0 || static_cast<int64_t>(count) < max || consumers_.contains(tag) ||
      (!tag.empty() && tag == reply_tag_)) {
    return absl::OkStatus();
  }
  std::string text = absl::StrFormat("reached maximum (%d) of consumers per channel", max);
  conn_->broker().LogLimit("consumer_max_per_channel", text);
  return AmqpError(ReplyCode::kNotAllowed, text);
}

absl::Status AmqpChannel::ConsumeReplies(const amqp::BasicConsume& m) {
  // RabbitMQ's rules: replies are never acknowledged, one reply consumer per channel.
  if (!m.no_ack) {
    return AmqpError(ReplyCode::kPreconditionFailed, "reply consumer cannot acknowledge");
  }
  if (!reply_key_.empty()) {
    return AmqpError(ReplyCode::kPreconditionFailed, "reply consumer already set");
  }
  absl::StatusOr<std::string> tag = ConsumerTag(m.consumer_tag);
  if (!tag.ok()) return tag.status();
  reply_tag_ = *tag;
  reply_key_ = conn_->broker().RegisterReplyConsumer(this);
  if (!m.no_wait) conn_->SendMethod(id_, amqp::BasicConsumeOk{reply_tag_});
  return absl::OkStatus();
}

absl::Status AmqpChannel::Consume(const amqp::BasicConsume& m) {
  AmqpBroker& b = conn_->broker();
  if (absl::Status s = CheckConsumerLimit(m.consumer_tag); !s.ok()) return s;
  if (m.queue == kReplyTo) return ConsumeReplies(m);
  absl::StatusOr<QueuePtr> q = QueueFor(m.queue, true);
  if (!q.ok()) return q.status();
  absl::StatusOr<std::string> requested_tag = ConsumerTag(m.consumer_tag);
  if (!requested_tag.ok()) return requested_tag.status();
  std::string tag = *std::move(requested_tag);
  for (AmqpConsumer* c : (*q)->consumers) {
    if (c->exclusive || m.exclusive) {
      return AmqpError(ReplyCode::kAccessRefused,
                       absl::StrFormat("queue '%s' in vhost '/' in exclusive use", (*q)->name));
    }
  }
  auto c = std::make_unique<AmqpConsumer>();
  c->tag = tag;
  c->channel = this;
  c->no_ack = m.no_ack;
  c->exclusive = m.exclusive;
  c->prefetch = consumer_prefetch_;
  if ((*q)->stream) {
    // RabbitMQ: stream consumers need a prefetch, and say where to start.
    if (consumer_prefetch_ == 0 && channel_prefetch_ == 0) {
      return AmqpError(ReplyCode::kPreconditionFailed,
                       "consumer prefetch count is not set for stream queue");
    }
    absl::StatusOr<int64_t> start = b.StreamStart(**q, m.arguments.Find("x-stream-offset"));
    if (!start.ok()) {
      return AmqpError(ReplyCode::kPreconditionFailed,
                       absl::StrCat("invalid ", std::string(start.status().message())));
    }
    c->stream_offset = *start;
  }
  if (!m.no_wait) conn_->SendMethod(id_, amqp::BasicConsumeOk{tag});
  AmqpConsumer* raw = c.get();
  consumers_[tag] = std::move(c);
  consumer_queues_[tag] = *q;
  b.AddConsumer(**q, raw);
  return absl::OkStatus();
}

absl::Status AmqpChannel::Get(const amqp::BasicGet& m) {
  AmqpBroker& b = conn_->broker();
  absl::StatusOr<QueuePtr> qp = QueueFor(m.queue, false);
  if (!qp.ok()) return qp.status();
  AmqpQueue& q = **qp;
  AmqpBroker::Touch(q);  // basic.get uses the queue: x-expires restarts
  if (q.stream) {
    return AmqpError(ReplyCode::kPreconditionFailed,
                     absl::StrFormat("basic.get is not supported by stream queue '%s'", q.name));
  }
  while (std::optional<amqp::QueueCursor::Taken> peek = q.cursor.Peek(q.end())) {
    absl::StatusOr<MessagePtr> msg = q.Load(peek->offset);
    if (msg.ok() && *msg == nullptr) break;  // not written yet
    if (msg.ok() && q.Expired(**msg, absl::ToUnixMillis(absl::Now()))) {
      q.cursor.Take(q.end(), /*track=*/false);
      b.MarkCursorDirty(q);
      q.Forget(peek->offset);
      b.DeadLetter(q, *msg, "expired");
      continue;
    }
    std::optional<amqp::QueueCursor::Taken> t = q.cursor.Take(q.end(), !m.no_ack);
    b.MarkCursorDirty(q);
    if (!msg.ok()) {
      if (!m.no_ack) q.cursor.Settle(t->offset);
      continue;
    }
    uint64_t tag = next_delivery_tag_++;
    if (m.no_ack) {
      q.Forget(t->offset);
      q.Consumed(t->offset);
    } else {
      unacked_[tag] = Delivery{*qp, t->offset, ""};
    }
    conn_->SendMethod(id_, amqp::BasicGetOk{tag, t->redelivered, (*msg)->exchange,
                                            (*msg)->routing_key, static_cast<uint32_t>(q.ready())});
    conn_->SendContent(id_, (*msg)->properties, (*msg)->body);
    return absl::OkStatus();
  }
  conn_->SendMethod(id_, amqp::BasicGetEmpty{});
  return absl::OkStatus();
}

bool AmqpChannel::CanTake(const AmqpConsumer& c) const {
  if (closing || !flow_active || !conn_->alive()) return false;
  if (c.prefetch != 0 && c.unacked >= c.prefetch) return false;
  if (channel_prefetch_ != 0 && unacked_.size() >= channel_prefetch_) return false;
  return conn_->queued_bytes() < conn_->broker().options().max_unsent_bytes;
}

void AmqpChannel::Deliver(AmqpConsumer& c, const QueuePtr& queue, int64_t offset, bool redelivered,
                          const MessagePtr& message) {
  uint64_t tag = next_delivery_tag_++;
  if (!c.no_ack) {
    unacked_[tag] = Delivery{queue, offset, c.tag};
    ++c.unacked;
  }
  conn_->SendMethod(
      id_, amqp::BasicDeliver{c.tag, tag, redelivered, message->exchange, message->routing_key});
  conn_->SendContent(id_, message->properties, message->body);
}

bool AmqpChannel::DeliverReply(const AmqpMessage& message) {
  if (closing || reply_tag_.empty() || !conn_->alive()) return false;
  if (conn_->queued_bytes() >= conn_->broker().options().max_unsent_bytes) {
    conn_->broker().LogLimit("amqp-max-unsent-bytes",
                             "direct reply-to: the requester's connection has too much unsent "
                             "output; reply dropped as unroutable");
    return false;
  }
  conn_->SendMethod(id_, amqp::BasicDeliver{reply_tag_, next_delivery_tag_++, false,
                                            message.exchange, message.routing_key});
  conn_->SendContent(id_, message.properties, message.body);
  return true;
}

void AmqpChannel::Release(std::map<uint64_t, Delivery>::iterator it, bool requeue,
                          bool dead_letter) {
  Delivery& d = it->second;
  if (!d.consumer_tag.empty()) {
    auto c = consumers_.find(d.consumer_tag);
    if (c != consumers_.end() && c->second->unacked > 0) --c->second->unacked;
  }
  AmqpQueue& q = *d.queue;
  if (!q.deleted && !q.stream) {  // stream messages stay whatever the ack
    if (requeue) {
      q.cursor.Requeue(d.offset);
    } else {
      if (dead_letter && q.dead_letter_exchange) {
        absl::StatusOr<MessagePtr> m = q.Load(d.offset);
        if (m.ok() && *m != nullptr) conn_->broker().DeadLetter(q, *m, "rejected");
      }
      q.cursor.Settle(d.offset);
      q.Forget(d.offset);
      q.Consumed(d.offset);
    }
    conn_->broker().MarkCursorDirty(q);
    conn_->broker().Wake(q);
  }
  unacked_.erase(it);
}

absl::Status AmqpChannel::Settle(uint64_t tag, bool multiple, bool requeue, bool ack,
                                 std::string_view what) {
  (void)what;
  if (multiple) {
    if (tag != 0 && !unacked_.contains(tag)) {
      return AmqpError(ReplyCode::kPreconditionFailed, absl::StrCat("unknown delivery tag ", tag));
    }
    auto end = tag == 0 ? unacked_.end() : unacked_.upper_bound(tag);
    while (unacked_.begin() != end) Release(unacked_.begin(), !ack && requeue, !ack && !requeue);
  } else {
    auto it = unacked_.find(tag);
    if (it == unacked_.end()) {
      return AmqpError(ReplyCode::kPreconditionFailed, absl::StrCat("unknown delivery tag ", tag));
    }
    Release(it, !ack && requeue, !ack && !requeue);
  }
  WakeQueues();
  return absl::OkStatus();
}

void AmqpChannel::WakeQueues() {
  for (auto& [tag, q] : consumer_queues_) conn_->broker().Wake(*q);
}

void AmqpChannel::Teardown() {
  // Unacked messages go back to their queues, marked redelivered (in offset order per queue).
  while (!unacked_.empty()) Release(unacked_.begin(), /*requeue=*/true);
  std::map<std::string, QueuePtr> queues = std::move(consumer_queues_);
  consumer_queues_.clear();
  for (auto& [tag, q] : queues) {
    auto it = consumers_.find(tag);
    if (it != consumers_.end()) conn_->broker().RemoveConsumer(q, it->second.get());
  }
  consumers_.clear();
  ClearTx();
  if (!reply_key_.empty()) conn_->broker().UnregisterReplyConsumer(reply_key_);
  reply_key_.clear();
  reply_tag_.clear();
}

void AmqpChannel::ClearTx() {
  tx_commands_.clear();
  conn_->ReleaseUncommitted(tx_bytes_);
  tx_bytes_ = 0;
}

void AmqpChannel::CancelByServer(std::string tag) {  // a copy: erasing the consumer frees its tag
  consumer_queues_.erase(tag);
  consumers_.erase(tag);
  if (!closing) conn_->SendMethod(id_, amqp::BasicCancel{tag, true});
}

}  // namespace sluice::broker
