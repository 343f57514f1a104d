// exchange.* and queue.* methods of a channel.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "net/amqp/reply_codes.h"
#include "src/amqp/amqp_connection.h"

namespace sluice::broker {

using amqp::AmqpError;
using amqp::ReplyCode;

namespace {

// The queue arguments RabbitMQ compares when a queue is declared again (others are ignored,
// as there). Integers of any width are equal by value, as RabbitMQ's type classes make them.
constexpr std::string_view kComparedQueueArguments[] = {
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-max-priority",
    "x-queue-mode",
    "x-single-active-consumer",
};

std::string ArgumentText(const amqp::FieldValue* v) {
  return v == nullptr ? std::string("none") : absl::StrCat("the value ", v->DebugString());
}

bool EquivalentArgument(const amqp::FieldValue* a, const amqp::FieldValue* b) {
  if (a == nullptr || b == nullptr) return a == b;
  std::optional<int64_t> ia = a->AsInt64(), ib = b->AsInt64();
  if (ia && ib) return *ia == *ib;
  return *a == *b;
}

absl::Status CheckEquivalentQueueArguments(const std::string& name, const amqp::FieldTable& have,
                                           const amqp::FieldTable& got) {
  for (std::string_view key : kComparedQueueArguments) {
    const amqp::FieldValue* h = have.Find(key);
    const amqp::FieldValue* g = got.Find(key);
    if (EquivalentArgument(h, g)) continue;
    return AmqpError(ReplyCode::kPreconditionFailed,
                     absl::StrFormat("inequivalent arg '%s' for queue '%s' in vhost '/': "
                                     "received %s but current is %s",
                                     key, name, ArgumentText(g), ArgumentText(h)));
  }
  return absl::OkStatus();
}

template <typename M>
const M* As(const amqp::Command& cmd) {
  return std::get_if<M>(&cmd.method);
}

absl::Status NoExchange(const std::string& name) {
  return AmqpError(ReplyCode::kNotFound, absl::StrFormat("no exchange '%s' in vhost '/'", name));
}
absl::Status NoQueue(const std::string& name) {
  return AmqpError(ReplyCode::kNotFound, absl::StrFormat("no queue '%s' in vhost '/'", name));
}
absl::Status DefaultExchangeRefused() {
  return AmqpError(ReplyCode::kAccessRefused, "operation not permitted on the default exchange");
}
const char* Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

absl::StatusOr<QueuePtr> AmqpChannel::QueueFor(const std::string& requested, bool) {
  const std::string& name = requested.empty() ? last_queue_ : requested;
  if (name.empty()) {
    return AmqpError(ReplyCode::kNotFound, "no previously declared queue");
  }
  QueuePtr q = conn_->broker().FindQueue(name);
  if (!q) return NoQueue(name);
  if (q->exclusive && q->owner != conn_) {
    return AmqpError(ReplyCode::kResourceLocked,
                     absl::StrFormat("cannot obtain exclusive access to locked queue '%s' in "
                                     "vhost '/'. It could be originally declared on another "
                                     "connection or the exclusive property value does not match "
                                     "that of the original declaration.",
                                     name));
  }
  return q;
}

absl::Status AmqpChannel::HandleExchange(amqp::Command& cmd) {
  AmqpBroker& b = conn_->broker();
  if (auto* m = As<amqp::ExchangeDeclare>(cmd)) {
    AmqpExchange* e = b.FindExchange(m->exchange);
    if (m->passive) {
      if (!e) return NoExchange(m->exchange);
    } else {
      std::optional<amqp::ExchangeType> type = amqp::ParseExchangeType(m->type);
      if (!type) {
        return AmqpError(ReplyCode::kCommandInvalid,
                         absl::StrFormat("unknown exchange type '%s'", m->type));
      }
      if (m->exchange.empty() || (!e && m->exchange.rfind("amq.", 0) == 0)) {
        return AmqpError(
            ReplyCode::kAccessRefused,
            absl::StrFormat("exchange name '%s' contains reserved prefix 'amq.*'", m->exchange));
      }
      absl::StatusOr<AmqpExchange*> d = b.DeclareExchange(
          m->exchange, *type, m->type, m->durable, m->auto_delete, m->internal, m->arguments);
      if (!d.ok()) return d.status();
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::ExchangeDeclareOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::ExchangeDelete>(cmd)) {
    AmqpExchange* e = b.FindExchange(m->exchange);
    if (e && e->builtin) {
      return AmqpError(ReplyCode::kAccessRefused,
                       absl::StrFormat("operation not permitted on exchange '%s'", m->exchange));
    }
    if (e && m->if_unused && !e->bindings.empty()) {
      return AmqpError(ReplyCode::kPreconditionFailed,
                       absl::StrFormat("exchange '%s' in vhost '/' in use", m->exchange));
    }
    if (e) {
      if (absl::Status s = b.DeleteExchange(m->exchange); !s.ok()) {
        return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
      }
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::ExchangeDeleteOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::ExchangeBind>(cmd)) {
    if (m->source.empty() || m->destination.empty()) return DefaultExchangeRefused();
    AmqpExchange* src = b.FindExchange(m->source);
    if (!src) return NoExchange(m->source);
    if (!b.FindExchange(m->destination)) return NoExchange(m->destination);
    AmqpBinding binding{m->destination, true, m->routing_key, m->arguments};
    if (absl::Status s = b.Bind(*src, std::move(binding)); !s.ok()) {
      return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::ExchangeBindOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::ExchangeUnbind>(cmd)) {
    if (m->source.empty() || m->destination.empty()) return DefaultExchangeRefused();
    if (AmqpExchange* src = b.FindExchange(m->source)) {
      AmqpBinding binding{m->destination, true, m->routing_key, m->arguments};
      if (absl::Status s = b.Unbind(*src, binding); !s.ok()) {
        return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
      }
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::ExchangeUnbindOk{});
    return absl::OkStatus();
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

absl::Status AmqpChannel::HandleQueue(amqp::Command& cmd) {
  AmqpBroker& b = conn_->broker();
  if (auto* m = As<amqp::QueueDeclare>(cmd)) {
    std::string name = m->queue;
    bool stream = false;
    if (const amqp::FieldValue* t = m->arguments.Find("x-queue-type")) {
      const std::string* type = t->AsString();
      if (!type || (*type != "classic" && *type != "quorum" && *type != "stream")) {
        return AmqpError(
            ReplyCode::kPreconditionFailed,
            absl::StrFormat("invalid arg 'x-queue-type' for queue '%s' in vhost '/'", name));
      }
      stream = *type == "stream";
    }
    if (name == kReplyTo || (m->passive && name.starts_with(kReplyToPrefix))) {
      // Direct reply-to: the pseudo-queue always "exists"; a reply key exists while its
      // consumer does (how a responder checks that the requester is still there).
      uint32_t consumers = 0;
      if (name != kReplyTo) {
        if (b.FindReplyConsumer(name) == nullptr) return NoQueue(name);
        consumers = 1;
      }
      if (!m->no_wait) conn_->SendMethod(id_, amqp::QueueDeclareOk{name, 0, consumers});
      return absl::OkStatus();
    }
    if (!m->passive) {
      if (absl::Status s = AmqpBroker::ValidateQueueArguments(name, m->arguments); !s.ok()) {
        return s;
      }
    }
    QueuePtr q = name.empty() ? nullptr : b.FindQueue(name);
    if (m->passive) {
      if (name.empty()) name = last_queue_;
      absl::StatusOr<QueuePtr> found = QueueFor(name, false);
      if (!found.ok()) return found.status();
      q = *found;
    } else if (q) {
      if (q->exclusive && q->owner != conn_) {
        absl::StatusOr<QueuePtr> locked = QueueFor(name, true);
        return locked.status();
      }
      auto differ = [&](const char* arg, bool got, bool have) {
        return AmqpError(ReplyCode::kPreconditionFailed,
                         absl::StrFormat("inequivalent arg '%s' for queue '%s' in vhost '/': "
                                         "received '%s' but current is '%s'",
                                         arg, name, Bool(got), Bool(have)));
      };
      bool durable = q->durable || (q->exclusive && m->durable);
      if (m->durable != durable) return differ("durable", m->durable, q->durable);
      if (m->exclusive != q->exclusive) return differ("exclusive", m->exclusive, q->exclusive);
      if (m->auto_delete != q->auto_delete) {
        return differ("auto_delete", m->auto_delete, q->auto_delete);
      }
      if (stream != q->stream) {
        return AmqpError(
            ReplyCode::kPreconditionFailed,
            absl::StrFormat("inequivalent arg 'x-queue-type' for queue '%s' in "
                            "vhost '/': received '%s' but current is '%s'",
                            name, stream ? "stream" : "classic", q->stream ? "stream" : "classic"));
      }
      if (absl::Status s = CheckEquivalentQueueArguments(name, q->arguments, m->arguments);
          !s.ok()) {
        return s;
      }
    } else {
      if (name.empty()) {
        name = b.NewQueueName();
      } else if (name.rfind("amq.", 0) == 0) {
        return AmqpError(ReplyCode::kAccessRefused,
                         absl::StrFormat("queue name '%s' contains reserved prefix 'amq.*'", name));
      }
      if (stream && (!m->durable || m->exclusive || m->auto_delete)) {
        return AmqpError(ReplyCode::kPreconditionFailed,
                         absl::StrFormat("invalid property for stream queue '%s' in vhost '/': "
                                         "streams are durable, not exclusive, not auto-delete",
                                         name));
      }
      absl::StatusOr<QueuePtr> created =
          stream
              ? b.DeclareStream(name, m->arguments)
              : b.DeclareQueue(name, m->durable, m->exclusive, m->auto_delete, m->arguments, conn_);
      if (!created.ok()) return created.status();
      q = *created;
    }
    last_queue_ = q->name;
    AmqpBroker::Touch(*q);  // a declare (passive too) uses the queue: x-expires restarts
    if (!m->no_wait) {
      conn_->SendMethod(id_, amqp::QueueDeclareOk{q->name, static_cast<uint32_t>(q->ready()),
                                                  static_cast<uint32_t>(q->consumers.size())});
    }
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::QueueBind>(cmd)) {
    absl::StatusOr<QueuePtr> q = QueueFor(m->queue, false);
    if (!q.ok()) return q.status();
    if (m->exchange.empty()) return DefaultExchangeRefused();
    AmqpExchange* e = b.FindExchange(m->exchange);
    if (!e) return NoExchange(m->exchange);
    // Binding key "" with queue "" means the last queue's name (spec: queue.bind).
    std::string key = m->routing_key.empty() && m->queue.empty() ? (*q)->name : m->routing_key;
    if (absl::Status s = b.Bind(*e, AmqpBinding{(*q)->name, false, key, m->arguments}); !s.ok()) {
      return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::QueueBindOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::QueueUnbind>(cmd)) {
    absl::StatusOr<QueuePtr> q = QueueFor(m->queue, false);
    if (!q.ok()) return q.status();
    if (m->exchange.empty()) return DefaultExchangeRefused();
    if (AmqpExchange* e = b.FindExchange(m->exchange)) {
      if (absl::Status s =
              b.Unbind(*e, AmqpBinding{(*q)->name, false, m->routing_key, m->arguments});
          !s.ok()) {
        return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
      }
    }
    conn_->SendMethod(id_, amqp::QueueUnbindOk{});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::QueuePurge>(cmd)) {
    absl::StatusOr<QueuePtr> q = QueueFor(m->queue, false);
    if (!q.ok()) return q.status();
    if ((*q)->stream) {
      return AmqpError(
          ReplyCode::kPreconditionFailed,
          absl::StrFormat("queue.purge is not supported by stream queue '%s'", (*q)->name));
    }
    int64_t n = (*q)->cursor.Purge((*q)->end());
    b.MarkCursorDirty(**q);
    if (!m->no_wait) conn_->SendMethod(id_, amqp::QueuePurgeOk{static_cast<uint32_t>(n)});
    return absl::OkStatus();
  }
  if (auto* m = As<amqp::QueueDelete>(cmd)) {
    std::string name = m->queue.empty() ? last_queue_ : m->queue;
    QueuePtr existing = b.FindQueue(name);
    uint32_t count = 0;
    if (existing) {
      absl::StatusOr<QueuePtr> q = QueueFor(name, false);
      if (!q.ok()) return q.status();
      if (m->if_unused && !existing->consumers.empty()) {
        return AmqpError(ReplyCode::kPreconditionFailed,
                         absl::StrFormat("queue '%s' in vhost '/' in use", name));
      }
      if (m->if_empty && existing->ready() > 0) {
        return AmqpError(ReplyCode::kPreconditionFailed,
                         absl::StrFormat("queue '%s' in vhost '/' is not empty", name));
      }
      count = static_cast<uint32_t>(existing->ready());
      if (absl::Status s = b.DeleteQueue(existing); !s.ok()) {
        return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
      }
    }
    if (!m->no_wait) conn_->SendMethod(id_, amqp::QueueDeleteOk{count});
    return absl::OkStatus();
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

}  // namespace sluice::broker
