// AMQP 0-9-1 driver on rabbitmq-c.
//
// Topology per workload topic: one exchange "<topic>" (type from the settings; "default"
// publishes straight to the queue through the nameless exchange), and per subscription one
// queue "<topic>.<subscription>" bound to it. Producers use one connection each with
// publisher confirms and a window of unconfirmed messages; consumers one connection each
// with basic.qos prefetch, basic.consume and batched multiple-acks.
//
// Frames are read with amqp_simple_wait_frame_noblock and decoded here rather than through
// amqp_consume_message, so a delivery costs no copy of the body. Publishes are encoded here
// too and written in batches (publishBatchBytes), flushed whenever the producer would wait:
// rabbitmq-c's amqp_basic_publish makes three send() calls per message, which on two shared
// cores would cost the client more than some brokers spend per message.
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/clock.h"
#include "bench/harness/driver.h"

namespace sluice::bench {
namespace {

constexpr amqp_channel_t kChannel = 1;

struct AmqpSettings {
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  int confirm_window = 1000;  // Unconfirmed messages per producer; 0 = no confirms.
  bool persistent = true;
  int prefetch = 1000;
  int ack_every = 0;  // 0 = prefetch / 4.
  bool auto_ack = false;
  std::string exchange_type = "fanout";
  bool exchange_durable = true;
  bool queue_durable = true;
  std::string queue_type = "classic";  // classic | quorum | stream
  std::string stream_offset = "next";  // x-stream-offset for live stream consumers.
  std::string queue_mode;              // "" or "lazy" (classic queues, RabbitMQ 3.x)
  int queue_version = 0;               // x-queue-version for classic queues; 0 = broker default.
  int frame_max = AMQP_DEFAULT_FRAME_SIZE;
  // Publishes are encoded here and written in batches of up to this many bytes, flushed
  // whenever the producer would otherwise wait (like a client's buffered output stream);
  // 0 = one amqp_basic_publish (three send calls) per message.
  int publish_batch_bytes = 65536;
  bool delete_at_end = true;
  int connect_timeout_ms = 10000;
};

absl::StatusOr<AmqpSettings> ReadSettings(DriverSettings& s) {
  AmqpSettings a;
  absl::Status status;
  auto str = [&](const char* key, std::string* out) {
    absl::StatusOr<std::string> v = s.GetString(key, *out);
    if (!v.ok())
      status.Update(v.status());
    else
      *out = *v;
  };
  auto num = [&](const char* key, int* out, int lo, int hi) {
    absl::StatusOr<int64_t> v = s.GetInt(key, *out);
    if (!v.ok()) {
      status.Update(v.status());
    } else if (*v < lo || *v > hi) {
      status.Update(
          absl::InvalidArgumentError(absl::StrCat(key, " must be in [", lo, ", ", hi, "]")));
    } else {
      *out = static_cast<int>(*v);
    }
  };
  auto flag = [&](const char* key, bool* out) {
    absl::StatusOr<bool> v = s.GetBool(key, *out);
    if (!v.ok())
      status.Update(v.status());
    else
      *out = *v;
  };
  std::string ignored;
  str("name", &ignored);
  str("driver", &ignored);
  str("username", &a.user);
  str("password", &a.password);
  str("vhost", &a.vhost);
  num("confirmWindow", &a.confirm_window, 0, 1 << 20);
  flag("persistent", &a.persistent);
  num("prefetch", &a.prefetch, 0, 65535);
  num("ackEvery", &a.ack_every, 0, 1 << 20);
  flag("autoAck", &a.auto_ack);
  str("exchangeType", &a.exchange_type);
  flag("exchangeDurable", &a.exchange_durable);
  flag("queueDurable", &a.queue_durable);
  str("queueType", &a.queue_type);
  str("streamOffset", &a.stream_offset);
  str("queueMode", &a.queue_mode);
  num("queueVersion", &a.queue_version, 0, 2);
  num("frameMax", &a.frame_max, 4096, 1 << 24);
  num("publishBatchBytes", &a.publish_batch_bytes, 0, 1 << 24);
  flag("deleteAtEnd", &a.delete_at_end);
  num("connectTimeoutMs", &a.connect_timeout_ms, 1, 600000);
  if (!status.ok()) return status;
  if (absl::Status st = s.CheckAllUsed(); !st.ok()) return st;
  if (a.exchange_type != "fanout" && a.exchange_type != "direct" && a.exchange_type != "topic" &&
      a.exchange_type != "default") {
    return absl::InvalidArgumentError("exchangeType must be fanout, direct, topic or default");
  }
  if (a.queue_type != "classic" && a.queue_type != "quorum" && a.queue_type != "stream") {
    return absl::InvalidArgumentError("queueType must be classic, quorum or stream");
  }
  if (a.queue_type == "stream") {
    // RabbitMQ's rules for streams over AMQP 0-9-1: durable, manual acks, a prefetch.
    if (!a.queue_durable) return absl::InvalidArgumentError("stream queues must be durable");
    if (a.auto_ack) return absl::InvalidArgumentError("stream queues need autoAck: false");
    if (a.prefetch == 0) return absl::InvalidArgumentError("stream queues need a prefetch");
  }
  if (a.ack_every == 0) a.ack_every = std::max(1, a.prefetch / 4);
  return a;
}

std::string Bytes(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

absl::Status ReplyStatus(const amqp_rpc_reply_t& r, absl::string_view what) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return absl::OkStatus();
    case AMQP_RESPONSE_NONE:
      return absl::UnavailableError(absl::StrCat(what, ": no reply from broker"));
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return absl::UnavailableError(absl::StrCat(what, ": ", amqp_error_string2(r.library_error)));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": connection closed by broker: ", m->reply_code, " ", Bytes(m->reply_text)));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": channel closed by broker: ", m->reply_code, " ", Bytes(m->reply_text)));
      }
      return absl::FailedPreconditionError(absl::StrCat(what, ": broker error"));
  }
  return absl::UnknownError(what);
}

absl::Status LibStatus(int rc, absl::string_view what) {
  if (rc == AMQP_STATUS_OK) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", amqp_error_string2(rc)));
}

// Builds amqp_table_t arguments; keeps the storage alive.
class Table {
 public:
  void AddString(const char* key, const std::string& value) {
    strings_.push_back(value);
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_bytes_t{0, nullptr};  // Filled in table().
    entries_.push_back(e);
    string_index_.push_back(static_cast<int>(strings_.size()) - 1);
  }
  void AddInt(const char* key, int64_t value) {
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = value;
    entries_.push_back(e);
    string_index_.push_back(-1);
  }
  amqp_table_t table() {
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (string_index_[i] >= 0) {
        const std::string& s = strings_[string_index_[i]];
        entries_[i].value.value.bytes = amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
      }
    }
    return amqp_table_t{static_cast<int>(entries_.size()), entries_.data()};
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
  std::vector<std::string> strings_;  // Stable after all Add calls (indices, not pointers).
  std::vector<int> string_index_;
};

// One connection with channel 1 open.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& host, int port,
                                                          const AmqpSettings& s) {
    std::unique_ptr<Connection> c(new Connection());
    c->state_ = amqp_new_connection();
    if (c->state_ == nullptr) return absl::ResourceExhaustedError("amqp_new_connection");
    amqp_socket_t* socket = amqp_tcp_socket_new(c->state_);
    if (socket == nullptr) return absl::ResourceExhaustedError("amqp_tcp_socket_new");
    timeval tv{s.connect_timeout_ms / 1000, (s.connect_timeout_ms % 1000) * 1000};
    int rc = amqp_socket_open_noblock(socket, host.c_str(), port, &tv);
    if (rc != AMQP_STATUS_OK) {
      return LibStatus(rc, absl::StrCat("connect to ", host, ":", port));
    }
    c->socket_open_ = true;
    amqp_set_handshake_timeout(c->state_, &tv);
    amqp_set_rpc_timeout(c->state_, &tv);
    amqp_rpc_reply_t r = amqp_login(c->state_, s.vhost.c_str(), 0, s.frame_max, 0,
                                    AMQP_SASL_METHOD_PLAIN, s.user.c_str(), s.password.c_str());
    if (absl::Status st = ReplyStatus(r, "login"); !st.ok()) return st;
    c->logged_in_ = true;
    amqp_channel_open(c->state_, kChannel);
    if (absl::Status st = ReplyStatus(amqp_get_rpc_reply(c->state_), "channel.open"); !st.ok()) {
      return st;
    }
    c->channel_open_ = true;
    return c;
  }

  ~Connection() {
    if (state_ == nullptr) return;
    if (channel_open_) amqp_channel_close(state_, kChannel, AMQP_REPLY_SUCCESS);
    if (logged_in_) amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(state_);
  }

  amqp_connection_state_t state() const { return state_; }
  // After a broker channel.close the channel is gone; do not close it again.
  void ChannelLost() { channel_open_ = false; }

  // Checks the reply of the last synchronous call.
  absl::Status Check(absl::string_view what) {
    absl::Status s = ReplyStatus(amqp_get_rpc_reply(state_), what);
    if (!s.ok() && absl::StrContains(s.message(), "channel closed")) channel_open_ = false;
    return s;
  }

 private:
  Connection() = default;
  amqp_connection_state_t state_ = nullptr;
  bool socket_open_ = false;
  bool logged_in_ = false;
  bool channel_open_ = false;
};

// Handles one frame that is not a delivery/confirm: errors for closes and cancels.
absl::Status OtherFrame(Connection* c, const amqp_frame_t& f, absl::string_view who) {
  if (f.frame_type != AMQP_FRAME_METHOD) return absl::OkStatus();
  switch (f.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD: {
      auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
      amqp_channel_close_ok_t ok{};
      amqp_send_method(c->state(), kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      c->ChannelLost();
      return absl::FailedPreconditionError(absl::StrCat(
          who, ": channel closed by broker: ", m->reply_code, " ", Bytes(m->reply_text)));
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
      return absl::FailedPreconditionError(absl::StrCat(
          who, ": connection closed by broker: ", m->reply_code, " ", Bytes(m->reply_text)));
    }
    case AMQP_BASIC_CANCEL_METHOD:
      return absl::FailedPreconditionError(absl::StrCat(who, ": consumer cancelled by broker"));
    default:
      return absl::OkStatus();
  }
}

// True when rabbitmq-c holds decoded frames or unread bytes: the next frame needs no
// system call. Loops read the socket once per call and then only while this holds.
bool Buffered(Connection* c) {
  return amqp_frames_enqueued(c->state()) || amqp_data_in_buffer(c->state());
}

// Waits for one frame up to timeout_us (0 = poll). Returns false on timeout.
absl::StatusOr<bool> NextFrame(Connection* c, int64_t timeout_us, amqp_frame_t* f) {
  timeval tv{static_cast<time_t>(timeout_us / 1'000'000),
             static_cast<suseconds_t>(timeout_us % 1'000'000)};
  const int rc = amqp_simple_wait_frame_noblock(c->state(), f, &tv);
  if (rc == AMQP_STATUS_TIMEOUT) return false;
  if (rc != AMQP_STATUS_OK) return LibStatus(rc, "read frame");
  return true;
}

class AmqpProducer final : public Producer {
 public:
  AmqpProducer(std::unique_ptr<Connection> conn, const AmqpSettings& s, std::string exchange,
               std::string routing_key, ProducerStats* stats)
      : conn_(std::move(conn)),
        exchange_(std::move(exchange)),
        routing_key_(std::move(routing_key)),
        window_(s.confirm_window),
        batch_bytes_(s.publish_batch_bytes),
        persistent_(s.persistent),
        stats_(stats) {
    props_._flags = 0;
    if (s.persistent) {
      props_._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
      props_.delivery_mode = 2;
    }
    if (window_ > 0) {
      size_t ring = 1;
      while (ring < static_cast<size_t>(window_)) ring <<= 1;
      pending_.assign(ring, Pending{});
      mask_ = ring - 1;
    }
  }

  absl::Status EnableConfirms() {
    if (window_ == 0) return absl::OkStatus();
    amqp_confirm_select(conn_->state(), kChannel);
    return conn_->Check("confirm.select");
  }

  bool CanSend() const override {
    return window_ == 0 || next_tag_ - low_tag_ < static_cast<uint64_t>(window_);
  }

  absl::Status Send(absl::string_view key, absl::string_view payload, int64_t sent_ns) override {
    if (batch_bytes_ > 0) {
      EncodePublish(payload);
      if (out_.size() >= static_cast<size_t>(batch_bytes_)) {
        if (absl::Status s = WriteOut(); !s.ok()) return s;
      }
      return Sent(payload.size(), sent_ns);
    }
    const int rc = amqp_basic_publish(
        conn_->state(), kChannel, amqp_bytes_t{exchange_.size(), exchange_.data()},
        amqp_bytes_t{routing_key_.size(), routing_key_.data()}, /*mandatory=*/0,
        /*immediate=*/0, &props_, amqp_bytes_t{payload.size(), const_cast<char*>(payload.data())});
    if (rc != AMQP_STATUS_OK) return LibStatus(rc, "basic.publish");
    return Sent(payload.size(), sent_ns);
  }

  absl::Status Push() override { return WriteOut(); }

  absl::Status Poll(int64_t timeout_us) override {
    if (absl::Status s = WriteOut(); !s.ok()) return s;
    if (window_ == 0) {
      // Nothing to wait for; still drain what the broker sends (e.g. connection.blocked).
      timeout_us = 0;
    }
    amqp_frame_t f;
    bool first = true;
    while (first || Buffered(conn_.get())) {
      absl::StatusOr<bool> got = NextFrame(conn_.get(), first ? timeout_us : 0, &f);
      first = false;
      if (!got.ok()) return got.status();
      if (!*got) break;
      if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        auto* m = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
        Confirm(m->delivery_tag, m->multiple != 0, /*ok=*/true);
      } else if (f.frame_type == AMQP_FRAME_METHOD &&
                 f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        auto* m = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
        Confirm(m->delivery_tag, m->multiple != 0, /*ok=*/false);
      } else if (absl::Status s = OtherFrame(conn_.get(), f, "producer"); !s.ok()) {
        return s;
      }
    }
    amqp_maybe_release_buffers(conn_->state());
    return absl::OkStatus();
  }

  absl::Status Flush(int timeout_ms) override {
    if (absl::Status s = WriteOut(); !s.ok()) return s;
    const int64_t deadline = MonoNanos() + int64_t{timeout_ms} * 1'000'000;
    while (low_tag_ < next_tag_) {
      const int64_t left = deadline - MonoNanos();
      if (left <= 0) {
        return absl::DeadlineExceededError(
            absl::StrCat(next_tag_ - low_tag_, " messages still unconfirmed"));
      }
      if (absl::Status s = Poll(std::min<int64_t>(left / 1000, 100'000)); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

 private:
  struct Pending {
    int64_t sent_ns = -1;  // -1: confirmed (or never sent).
    int bytes = 0;
  };

  absl::Status Sent(size_t bytes, int64_t sent_ns) {
    if (window_ == 0) {
      stats_->OnPublishedUnconfirmed(static_cast<int>(bytes));
      return absl::OkStatus();
    }
    // Delivery tags count from 1 on a channel in confirm mode, in the order the broker
    // receives the publishes, which is the order of this buffer.
    pending_[next_tag_ & mask_] = Pending{sent_ns, static_cast<int>(bytes)};
    ++next_tag_;
    return absl::OkStatus();
  }

  // Appends basic.publish + content header + body frames (AMQP 0-9-1 section 4.2.3 / 2.3.5)
  // to out_. Only the properties we send: delivery-mode.
  void EncodePublish(absl::string_view payload) {
    auto u8 = [&](uint8_t v) { out_.push_back(static_cast<char>(v)); };
    auto u16 = [&](uint16_t v) { u8(v >> 8), u8(v & 0xff); };
    auto u32 = [&](uint32_t v) { u16(v >> 16), u16(v & 0xffff); };
    auto u64 = [&](uint64_t v) { u32(v >> 32), u32(v & 0xffffffff); };
    auto shortstr = [&](const std::string& str) {
      u8(static_cast<uint8_t>(str.size()));
      out_.append(str);
    };
    // Method frame.
    u8(AMQP_FRAME_METHOD);
    u16(kChannel);
    u32(4 + 2 + 1 + exchange_.size() + 1 + routing_key_.size() + 1);
    u16(60), u16(40);  // basic.publish
    u16(0);            // reserved-1
    shortstr(exchange_);
    shortstr(routing_key_);
    u8(0);  // mandatory = immediate = false
    u8(AMQP_FRAME_END);
    // Content header frame.
    u8(AMQP_FRAME_HEADER);
    u16(kChannel);
    u32(2 + 2 + 8 + 2 + (persistent_ ? 1 : 0));
    u16(60), u16(0);
    u64(payload.size());
    u16(persistent_ ? 0x1000 : 0);  // property flags: bit 12 = delivery-mode.
    if (persistent_) u8(2);
    u8(AMQP_FRAME_END);
    // Body frames, each at most frame-max including the 8 bytes of framing.
    const size_t max_body = static_cast<size_t>(amqp_get_frame_max(conn_->state())) - 8;
    for (size_t off = 0; off < payload.size(); off += max_body) {
      const size_t n = std::min(max_body, payload.size() - off);
      u8(AMQP_FRAME_BODY);
      u16(kChannel);
      u32(static_cast<uint32_t>(n));
      out_.append(payload.data() + off, n);
      u8(AMQP_FRAME_END);
    }
  }

  // Writes out_ to the socket (rabbitmq-c keeps it non-blocking; wait for room).
  absl::Status WriteOut() {
    if (out_.empty()) return absl::OkStatus();
    size_t done = 0;
    const int fd = amqp_get_sockfd(conn_->state());
    while (done < out_.size()) {
      const ssize_t n = send(fd, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, 100);
        continue;
      }
      return absl::UnavailableError(absl::StrCat("publish: send: ", strerror(errno)));
    }
    out_.clear();
    return absl::OkStatus();
  }

  void Confirm(uint64_t tag, bool multiple, bool ok) {
    const int64_t now = MonoNanos();
    if (tag >= next_tag_) return;  // Not ours: ignore rather than corrupt the ring.
    const uint64_t from = multiple ? low_tag_ : tag;
    for (uint64_t t = from; t <= tag; ++t) {
      Pending& p = pending_[t & mask_];
      if (t < low_tag_ || p.sent_ns < 0) continue;
      if (ok) {
        stats_->OnAcked(p.sent_ns, now, p.bytes);
      } else {
        stats_->OnFailed(1);
      }
      p.sent_ns = -1;
    }
    // Confirms may arrive out of order; the window ends at the oldest unconfirmed tag.
    while (low_tag_ < next_tag_ && pending_[low_tag_ & mask_].sent_ns < 0) ++low_tag_;
  }

  std::unique_ptr<Connection> conn_;
  std::string exchange_;
  std::string routing_key_;
  amqp_basic_properties_t props_{};
  const int window_;
  const int batch_bytes_;
  const bool persistent_;
  std::string out_;  // Encoded publishes not yet written.
  ProducerStats* stats_;
  std::vector<Pending> pending_;
  uint64_t mask_ = 0;
  uint64_t next_tag_ = 1;
  uint64_t low_tag_ = 1;  // Oldest unconfirmed tag (== next_tag_ when none).
};

class AmqpConsumer final : public Consumer {
 public:
  AmqpConsumer(std::unique_ptr<Connection> conn, const AmqpSettings& s, std::string queue,
               std::string stream_offset, ConsumerStats* stats)
      : conn_(std::move(conn)),
        settings_(s),
        queue_(std::move(queue)),
        stream_offset_(std::move(stream_offset)),
        stats_(stats) {}

  absl::Status Start() override {
    if (settings_.prefetch > 0) {
      amqp_basic_qos(conn_->state(), kChannel, 0, static_cast<uint16_t>(settings_.prefetch), 0);
      if (absl::Status s = conn_->Check("basic.qos"); !s.ok()) return s;
    }
    Table args;
    if (settings_.queue_type == "stream") {
      int64_t offset;
      if (absl::SimpleAtoi(stream_offset_, &offset)) {
        args.AddInt("x-stream-offset", offset);
      } else {
        args.AddString("x-stream-offset", stream_offset_);
      }
    }
    amqp_basic_consume(conn_->state(), kChannel, amqp_cstring_bytes(queue_.c_str()),
                       amqp_empty_bytes, 0, settings_.auto_ack ? 1 : 0, 0, args.table());
    return conn_->Check(absl::StrCat("basic.consume ", queue_));
  }

  absl::Status Poll(int64_t timeout_us) override {
    amqp_frame_t f;
    bool first = true;
    int messages = 0;
    while (messages < 4096 && (first || Buffered(conn_.get()))) {
      absl::StatusOr<bool> got = NextFrame(conn_.get(), first ? timeout_us : 0, &f);
      first = false;
      if (!got.ok()) return got.status();
      if (!*got) break;
      if (f.frame_type == AMQP_FRAME_METHOD) {
        if (f.payload.method.id == AMQP_BASIC_DELIVER_METHOD) {
          auto* m = static_cast<amqp_basic_deliver_t*>(f.payload.method.decoded);
          delivery_tag_ = m->delivery_tag;
          state_ = kHeader;
          continue;
        }
        if (absl::Status s = OtherFrame(conn_.get(), f, "consumer"); !s.ok()) return s;
        continue;
      }
      if (f.frame_type == AMQP_FRAME_HEADER && state_ == kHeader) {
        body_left_ = f.payload.properties.body_size;
        body_size_ = body_left_;
        send_ts_ = 0;
        state_ = kBody;
        if (body_left_ == 0) {
          Delivered();
          ++messages;
        }
        continue;
      }
      if (f.frame_type == AMQP_FRAME_BODY && state_ == kBody) {
        const amqp_bytes_t& b = f.payload.body_fragment;
        if (body_left_ == body_size_) send_ts_ = PayloadTimestamp(b.bytes, b.len);
        body_left_ -= std::min<uint64_t>(body_left_, b.len);
        if (body_left_ == 0) {
          Delivered();
          ++messages;
        }
        continue;
      }
    }
    if (!amqp_frames_enqueued(conn_->state())) amqp_maybe_release_buffers(conn_->state());
    // Ack what we hold when the stream goes quiet, so the broker's window reopens.
    if (messages == 0 && unacked_ > 0) return Ack();
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (unacked_ > 0) return Ack();
    return absl::OkStatus();
  }

 private:
  enum State { kMethod, kHeader, kBody };

  void Delivered() {
    state_ = kMethod;
    stats_->OnReceivedTimestamp(body_size_, send_ts_, WallNanos());
    if (!settings_.auto_ack) {
      last_tag_ = delivery_tag_;
      if (++unacked_ >= settings_.ack_every) (void)Ack();
    }
  }

  absl::Status Ack() {
    unacked_ = 0;
    return LibStatus(amqp_basic_ack(conn_->state(), kChannel, last_tag_, /*multiple=*/1),
                     "basic.ack");
  }

  std::unique_ptr<Connection> conn_;
  const AmqpSettings settings_;
  const std::string queue_;
  const std::string stream_offset_;
  ConsumerStats* stats_;
  State state_ = kMethod;
  uint64_t delivery_tag_ = 0;
  uint64_t last_tag_ = 0;
  uint64_t body_left_ = 0;
  uint64_t body_size_ = 0;
  int64_t send_ts_ = 0;
  int unacked_ = 0;
};

class AmqpDriver final : public Driver {
 public:
  AmqpDriver(std::string host, int port, AmqpSettings s, std::map<std::string, std::string> raw)
      : host_(std::move(host)), port_(port), s_(std::move(s)), raw_(std::move(raw)) {}

  absl::string_view name() const override { return "amqp"; }

  absl::Status Probe(int timeout_ms) override {
    AmqpSettings s = s_;
    s.connect_timeout_ms = timeout_ms;
    absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(host_, port_, s);
    return c.status();
  }

  absl::Status CreateTopic(const std::string& topic, int partitions) override {
    if (s_.exchange_type == "default") return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<Connection*> c = Admin();
    if (!c.ok()) return c.status();
    amqp_exchange_declare((*c)->state(), kChannel, amqp_cstring_bytes(topic.c_str()),
                          amqp_cstring_bytes(s_.exchange_type.c_str()), 0, s_.exchange_durable, 0,
                          0, amqp_empty_table);
    return CheckAdmin("exchange.declare " + topic);
  }

  absl::Status DeleteTopic(const std::string& topic) override {
    if (!s_.delete_at_end) return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<Connection*> c = Admin();
    if (!c.ok()) return c.status();
    for (const std::string& q : queues_[topic]) {
      amqp_queue_delete((*c)->state(), kChannel, amqp_cstring_bytes(q.c_str()), 0, 0);
      if (absl::Status s = CheckAdmin("queue.delete " + q); !s.ok()) return s;
    }
    queues_.erase(topic);
    if (s_.exchange_type == "default") return absl::OkStatus();
    amqp_exchange_delete((*c)->state(), kChannel, amqp_cstring_bytes(topic.c_str()), 0);
    return CheckAdmin("exchange.delete " + topic);
  }

  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const std::string& topic,
                                                           const std::string& subscription,
                                                           const ConsumerOptions& options,
                                                           ConsumerStats* stats) override {
    if (options.from_start && s_.queue_type != "stream") {
      return absl::UnimplementedError(
          "replay from the start needs a stream queue (queueType: stream)");
    }
    std::string queue = QueueName(topic, subscription);
    if (options.from_start) {
      // A stream is read without being consumed: replay attaches to the stream that the
      // live subscription filled, starting at its first offset.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = queues_.find(topic);
      if (it == queues_.end() || it->second.empty()) {
        return absl::FailedPreconditionError("replay needs an existing stream queue");
      }
      queue = it->second.front();
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      absl::StatusOr<Connection*> c = Admin();
      if (!c.ok()) return c.status();
      auto& known = queues_[topic];
      if (std::find(known.begin(), known.end(), queue) == known.end()) {
        Table args;
        if (s_.queue_type != "classic") args.AddString("x-queue-type", s_.queue_type);
        if (!s_.queue_mode.empty()) args.AddString("x-queue-mode", s_.queue_mode);
        if (s_.queue_version > 0) args.AddInt("x-queue-version", s_.queue_version);
        amqp_queue_declare((*c)->state(), kChannel, amqp_cstring_bytes(queue.c_str()), 0,
                           s_.queue_durable, 0, 0, args.table());
        if (absl::Status s = CheckAdmin("queue.declare " + queue); !s.ok()) return s;
        if (s_.exchange_type != "default") {
          amqp_queue_bind((*c)->state(), kChannel, amqp_cstring_bytes(queue.c_str()),
                          amqp_cstring_bytes(topic.c_str()),
                          amqp_cstring_bytes(BindingKey(topic).c_str()), amqp_empty_table);
          if (absl::Status s = CheckAdmin("queue.bind " + queue); !s.ok()) return s;
        }
        known.push_back(queue);
      }
    }
    absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Open(host_, port_, s_);
    if (!conn.ok()) return conn.status();
    return std::unique_ptr<Consumer>(
        new AmqpConsumer(*std::move(conn), s_, queue,
                         options.from_start ? std::string("first") : s_.stream_offset, stats));
  }

  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(const std::string& topic,
                                                           ProducerStats* stats) override {
    absl::StatusOr<std::unique_ptr<Connection>> conn = Connection::Open(host_, port_, s_);
    if (!conn.ok()) return conn.status();
    std::string exchange = topic, routing_key = BindingKey(topic);
    if (s_.exchange_type == "default") {
      // The nameless exchange routes by queue name: only one subscription can be fed.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = queues_.find(topic);
      if (it == queues_.end() || it->second.size() != 1) {
        return absl::FailedPreconditionError(
            "exchangeType: default needs exactly one subscription per topic");
      }
      exchange = "";
      routing_key = it->second[0];
    }
    auto p = std::make_unique<AmqpProducer>(*std::move(conn), s_, exchange, routing_key, stats);
    if (absl::Status s = p->EnableConfirms(); !s.ok()) return s;
    return std::unique_ptr<Producer>(std::move(p));
  }

  std::map<std::string, std::string> Describe() const override {
    std::map<std::string, std::string> d = raw_;
    d["confirmWindow"] = absl::StrCat(s_.confirm_window);
    d["persistent"] = s_.persistent ? "true" : "false";
    d["prefetch"] = absl::StrCat(s_.prefetch);
    d["ackEvery"] = absl::StrCat(s_.ack_every);
    d["publishBatchBytes"] = absl::StrCat(s_.publish_batch_bytes);
    d["exchangeType"] = s_.exchange_type;
    d["queueType"] = s_.queue_type;
    d["queueDurable"] = s_.queue_durable ? "true" : "false";
    d.erase("password");
    return d;
  }

 private:
  static std::string QueueName(const std::string& topic, const std::string& subscription) {
    return absl::StrCat(topic, ".", subscription);
  }
  std::string BindingKey(const std::string& topic) const {
    if (s_.exchange_type == "topic") return "#";
    return topic;  // direct: publish and bind with the topic name; fanout ignores it.
  }

  // The admin connection, (re)opened on demand. mu_ held.
  absl::StatusOr<Connection*> Admin() {
    if (admin_ == nullptr) {
      absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(host_, port_, s_);
      if (!c.ok()) return c.status();
      admin_ = *std::move(c);
    }
    return admin_.get();
  }
  // A failed synchronous call closes the channel; drop the connection so the next call
  // starts clean. mu_ held.
  absl::Status CheckAdmin(const std::string& what) {
    absl::Status s = admin_->Check(what);
    if (!s.ok()) admin_.reset();
    return s;
  }

  const std::string host_;
  const int port_;
  const AmqpSettings s_;
  const std::map<std::string, std::string> raw_;
  std::mutex mu_;
  std::unique_ptr<Connection> admin_;
  std::map<std::string, std::vector<std::string>> queues_;  // topic -> queues declared.
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> MakeAmqpDriver(const std::string& broker,
                                                       DriverSettings settings) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(broker, &host, &port); !s.ok()) return s;
  std::map<std::string, std::string> raw = settings.AsMap();
  absl::StatusOr<AmqpSettings> s = ReadSettings(settings);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Driver>(new AmqpDriver(host, port, *std::move(s), std::move(raw)));
}

}  // namespace sluice::bench
