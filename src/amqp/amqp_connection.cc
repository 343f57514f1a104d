#include "src/amqp/amqp_connection.h"

#include <poll.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log/logging.h"
#include "net/amqp/reply_codes.h"
#include "net/amqp/wire.h"

namespace sluice::broker {

using amqp::AmqpError;
using amqp::ReplyCode;

namespace {

// RabbitMQ 3.x's capabilities: pika refuses confirms without the first two.
amqp::FieldTable ServerProperties() {
  amqp::FieldTable caps;
  for (const char* c : {"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                        "consumer_cancel_notify", "connection.blocked", "per_consumer_qos",
                        "authentication_failure_close", "direct_reply_to"}) {
    caps.Append(c, true);
  }
  amqp::FieldTable p;
  p.Append("capabilities", std::move(caps));
  p.Append("product", "Sluice");
  p.Append("version", "0.1.0");
  p.Append("platform", "C++20");
  p.Append("cluster_name", "sluice");
  p.Append("information", "AMQP 0-9-1 on a segmented commit log");
  return p;
}

bool IsLoopback(const std::string& peer) {
  return absl::StartsWith(peer, "127.") || absl::StartsWith(peer, "[::1]") ||
         absl::StartsWith(peer, "::1") || absl::StartsWith(peer, "[::ffff:127.") ||
         absl::StartsWith(peer, "::ffff:127.");
}

template <typename M>
const M* As(const amqp::Command& cmd) {
  return std::get_if<M>(&cmd.method);
}

// A basic.publish method frame (class 60, method 40), recognised before it is decoded.
bool IsPublishFrame(const amqp::Frame& f) {
  return f.type == amqp::FrameType::kMethod && f.payload.size() >= 4 &&
         f.payload.substr(0, 4) == std::string_view("\x00\x3c\x00\x28", 4);
}

}  // namespace

AmqpConnection::AmqpConnection(AmqpBroker* broker, net::Connection& conn)
    : broker_(broker), conn_(&conn), socket_(&conn), peer_(conn.peer()) {
  broker->ConnectionOpened(this);
  amqp::CommandAssembler::Options o;
  o.max_body_size = broker->options().max_message_bytes;
  assembler_ = amqp::CommandAssembler(o);
}

AmqpConnection::~AmqpConnection() = default;

void AmqpConnection::OnOpen(net::Connection& conn) {
  conn.SetDeadline(broker_->options().handshake_timeout,
                   absl::DeadlineExceededError("AMQP handshake timeout"));
}

std::shared_ptr<AmqpChannel> AmqpConnection::channel(uint16_t id) {
  auto it = channels_.find(id);
  return it == channels_.end() ? nullptr : it->second;
}

void AmqpConnection::Flush() {
  for (auto& [id, ch] : channels_) ch->FlushConfirms();
  if (!conn_ || out_.empty()) return;
  conn_->Send(std::move(out_));
  out_.clear();
}

void AmqpConnection::OnData(net::Connection& conn, net::InputBuffer& input) {
  std::string_view in = input.view();
  if (state_ == State::kHeader) {
    switch (amqp::MatchProtocolHeader(in)) {
      case amqp::ProtocolHeaderMatch::kNeedMore:
        input.ExpectAtLeast(amqp::kProtocolHeader.size());
        return;
      case amqp::ProtocolHeaderMatch::kMismatch:
        // The spec: answer with the header we speak, then close.
        conn.Send(std::string(amqp::kProtocolHeader));
        conn.CloseAfterSend();
        input.Consume(input.size());
        conn_ = nullptr;
        return;
      case amqp::ProtocolHeaderMatch::kMatch:
        break;
    }
    in.remove_prefix(amqp::kProtocolHeader.size());
    amqp::ConnectionStart start;
    start.version_major = 0;
    start.version_minor = 9;
    start.server_properties = ServerProperties();
    start.mechanisms = "PLAIN AMQPLAIN";
    start.locales = "en_US";
    SendMethod(0, start);
    state_ = State::kStartOk;
  }
  while (conn_ != nullptr && conn.is_open() && !blocked_) {
    if (queued_bytes() >= broker_->options().max_unsent_bytes) {
      // Output back-pressure: the rest waits in the input buffer until the client has read
      // enough (every frame handled may add output: basic.get-ok, returns, -oks).
      output_paused_ = true;
      broker_->WatchOutput(this);
      UpdateReceive();
      break;
    }
    const std::string_view before = in;
    absl::StatusOr<std::optional<amqp::Frame>> frame = decoder_.Next(&in);
    if (!frame.ok()) {
      CloseWithError(amqp::ReplyCodeOf(frame.status()).value_or(ReplyCode::kFrameError),
                     std::string(frame.status().message()), 0, 0);
      in = {};
      break;
    }
    if (!frame->has_value()) break;
    if (state_ == State::kRunning && IsPublishFrame(**frame)) {
      published_ = true;
      if (broker_->alarmed()) {
        // RabbitMQ stops reading from a publisher during an alarm: the publish stays
        // unread in the buffer until the alarm clears.
        in = before;
        Block();
        break;
      }
    }
    HandleFrame(**frame);
  }
  input.Consume(input.size() - in.size());
  if (conn_ != nullptr && conn.is_open() && !receive_paused_) {
    input.ExpectAtLeast(decoder_.bytes_needed());
  }
  Flush();
}

void AmqpConnection::HandleFrame(const amqp::Frame& frame) {
  absl::StatusOr<std::optional<amqp::Command>> cmd = assembler_.Add(frame);
  if (state_ == State::kClosing) {
    // After our connection.close only close / close-ok matter (spec 2.2.4).
    if (cmd.ok() && cmd->has_value() && (*cmd)->channel == 0) {
      if (As<amqp::ConnectionCloseOk>(**cmd) || As<amqp::ConnectionClose>(**cmd)) {
        if (As<amqp::ConnectionClose>(**cmd)) SendMethod(0, amqp::ConnectionCloseOk{});
        Flush();
        conn_->CloseAfterSend();
        conn_ = nullptr;
      }
    }
    return;
  }
  if (!cmd.ok()) {
    ReplyCode code = amqp::ReplyCodeOf(cmd.status()).value_or(ReplyCode::kInternalError);
    if (amqp::IsSoftError(code) && frame.channel != 0 && channels_.contains(frame.channel)) {
      ChannelError(frame.channel, cmd.status(), 0, 0);
    } else {
      CloseWithError(code, std::string(cmd.status().message()), 0, 0);
    }
    return;
  }
  if (!cmd->has_value()) return;
  HandleCommand(**cmd);
}

void AmqpConnection::HandleCommand(amqp::Command& cmd) {
  const amqp::MethodId mid = amqp::IdOf(cmd.method);
  if (cmd.channel == 0) {
    if (mid.class_id != amqp::ConnectionStart::kClassId) {
      CloseWithError(
          ReplyCode::kCommandInvalid,
          absl::StrCat("method ", std::string(amqp::InfoOf(cmd.method).name), " on channel 0"),
          mid.class_id, mid.method_id);
      return;
    }
    absl::Status s = HandleConnectionMethod(cmd);
    if (!s.ok()) {
      CloseWithError(amqp::ReplyCodeOf(s).value_or(ReplyCode::kInternalError),
                     std::string(s.message()), mid.class_id, mid.method_id);
    }
    return;
  }
  if (state_ != State::kRunning) {
    CloseWithError(ReplyCode::kChannelError, "channel used before connection.open", mid.class_id,
                   mid.method_id);
    return;
  }
  if (mid.class_id == amqp::ConnectionStart::kClassId) {
    CloseWithError(ReplyCode::kCommandInvalid, "connection method on a channel", mid.class_id,
                   mid.method_id);
    return;
  }
  auto it = channels_.find(cmd.channel);
  if (As<amqp::ChannelOpen>(cmd)) {
    if (it != channels_.end()) {
      CloseWithError(ReplyCode::kChannelError,
                     absl::StrCat("second 'channel.open' seen on channel ", cmd.channel),
                     mid.class_id, mid.method_id);
      return;
    }
    if (cmd.channel > channel_max_) {
      CloseWithError(ReplyCode::kChannelError,
                     absl::StrCat("channel ", cmd.channel, " above channel_max ", channel_max_),
                     mid.class_id, mid.method_id);
      return;
    }
    if (absl::Status s = broker_->AdmitChannel(user_); !s.ok()) {
      CloseWithError(ReplyCode::kNotAllowed, std::string(s.message()), mid.class_id, mid.method_id);
      return;
    }
    AddChannel(cmd.channel);
    SendMethod(cmd.channel, amqp::ChannelOpenOk{});
    return;
  }
  if (it == channels_.end()) {
    CloseWithError(ReplyCode::kChannelError,
                   absl::StrCat("expected 'channel.open' on channel ", cmd.channel), mid.class_id,
                   mid.method_id);
    return;
  }
  std::shared_ptr<AmqpChannel> ch = it->second;
  if (ch->closing) {
    // Waiting for close-ok: everything else on the channel is dropped (spec 2.2.4).
    if (As<amqp::ChannelClose>(cmd)) SendMethod(cmd.channel, amqp::ChannelCloseOk{});
    if (As<amqp::ChannelClose>(cmd) || As<amqp::ChannelCloseOk>(cmd)) {
      EraseChannel(cmd.channel);
      assembler_.ResetChannel(cmd.channel);
    }
    return;
  }
  absl::Status s;
  if (mid.class_id == amqp::ChannelOpen::kClassId) {
    s = HandleChannelMethod(cmd);
  } else {
    s = ch->Handle(cmd);
  }
  if (!s.ok()) {
    ReplyCode code = amqp::ReplyCodeOf(s).value_or(ReplyCode::kInternalError);
    if (amqp::IsSoftError(code)) {
      ChannelError(cmd.channel, s, mid.class_id, mid.method_id);
    } else {
      CloseWithError(code, std::string(s.message()), mid.class_id, mid.method_id);
    }
  }
}

absl::Status AmqpConnection::HandleChannelMethod(amqp::Command& cmd) {
  std::shared_ptr<AmqpChannel> ch = channels_[cmd.channel];
  if (auto* m = As<amqp::ChannelFlow>(cmd)) {
    ch->flow_active = m->active;
    SendMethod(cmd.channel, amqp::ChannelFlowOk{m->active});
    if (m->active) ch->WakeQueues();
    return absl::OkStatus();
  }
  if (As<amqp::ChannelClose>(cmd)) {
    ch->Teardown();
    EraseChannel(cmd.channel);
    assembler_.ResetChannel(cmd.channel);
    SendMethod(cmd.channel, amqp::ChannelCloseOk{});
    return absl::OkStatus();
  }
  if (As<amqp::ChannelCloseOk>(cmd)) {
    return AmqpError(ReplyCode::kChannelError, "channel.close-ok without channel.close");
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

absl::Status AmqpConnection::Authenticate(const amqp::ConnectionStartOk& m) {
  std::string user, pass;
  if (m.mechanism == "PLAIN") {
    // authzid NUL authcid NUL password
    size_t a = m.response.find('\0');
    size_t b = a == std::string::npos ? a : m.response.find('\0', a + 1);
    if (b == std::string::npos) {
      return AmqpError(ReplyCode::kAccessRefused, "malformed PLAIN response");
    }
    user = m.response.substr(a + 1, b - a - 1);
    pass = m.response.substr(b + 1);
  } else if (m.mechanism == "AMQPLAIN") {
    // A field table without its length prefix.
    std::string table;
    amqp::WireWriter w(&table);
    w.Long(static_cast<uint32_t>(m.response.size()));
    table += m.response;
    absl::StatusOr<amqp::FieldTable> t = amqp::DecodeFieldTable(table);
    if (!t.ok()) return AmqpError(ReplyCode::kAccessRefused, "malformed AMQPLAIN response");
    const amqp::FieldValue* l = t->Find("LOGIN");
    const amqp::FieldValue* p = t->Find("PASSWORD");
    if (l && l->AsString()) user = *l->AsString();
    if (p && p->AsString()) pass = *p->AsString();
  } else {
    return AmqpError(ReplyCode::kAccessRefused,
                     absl::StrCat("unsupported authentication mechanism ", m.mechanism));
  }
  // Configured users from anywhere; RabbitMQ's default user guest/guest (unless configured
  // otherwise) from loopback only.
  const auto& users = broker_->options().users;
  bool accepted;
  if (auto it = users.find(user); it != users.end()) {
    accepted = !it->second.empty() && pass == it->second &&
               (user != "guest" || !broker_->options().guest_loopback_only || IsLoopback(peer_));
  } else {
    accepted = user == "guest" && pass == "guest" &&
               (!broker_->options().guest_loopback_only || IsLoopback(peer_));
  }
  if (!accepted) {
    storage::LogWarning("amqp: login of user '%s' from %s refused", user, peer_);
    return AmqpError(ReplyCode::kAccessRefused,
                     absl::StrCat("Login was refused using authentication mechanism ", m.mechanism,
                                  ". For details see the broker logfile."));
  }
  user_ = std::move(user);
  return absl::OkStatus();
}

absl::Status AmqpConnection::HandleConnectionMethod(amqp::Command& cmd) {
  const AmqpOptions& o = broker_->options();
  switch (state_) {
    case State::kStartOk:
      if (auto* m = As<amqp::ConnectionStartOk>(cmd)) {
        if (absl::Status s = Authenticate(*m); !s.ok()) return s;
        if (const amqp::FieldValue* caps = m->client_properties.Find("capabilities")) {
          if (const amqp::FieldTable* t = caps->get_if<amqp::FieldTable>()) {
            const amqp::FieldValue* b = t->Find("connection.blocked");
            blocked_capable_ = b && b->AsBool().value_or(false);
          }
        }
        SendMethod(0, amqp::ConnectionTune{o.channel_max, o.frame_max, o.heartbeat_seconds});
        state_ = State::kTuneOk;
        return absl::OkStatus();
      }
      break;
    case State::kTuneOk:
      if (auto* m = As<amqp::ConnectionTuneOk>(cmd)) {
        uint32_t frame_max = m->frame_max == 0 ? o.frame_max : std::min(m->frame_max, o.frame_max);
        if (frame_max < amqp::kFrameMinSize) {
          return AmqpError(ReplyCode::kNotAllowed, absl::StrCat("frame_max ", m->frame_max,
                                                                " below ", amqp::kFrameMinSize));
        }
        channel_max_ =
            m->channel_max == 0 ? o.channel_max : std::min(m->channel_max, o.channel_max);
        heartbeat_ = m->heartbeat;
        decoder_.set_max_frame_size(frame_max);
        encoder_ = amqp::FrameEncoder(frame_max);
        state_ = State::kOpen;
        ScheduleHeartbeat();
        return absl::OkStatus();
      }
      break;
    case State::kOpen:
      if (auto* m = As<amqp::ConnectionOpen>(cmd)) {
        if (m->virtual_host != "/") {
          return AmqpError(ReplyCode::kNotAllowed,
                           absl::StrCat("vhost ", m->virtual_host, " not found"));
        }
        if (absl::Status s = broker_->AdmitConnection(user_); !s.ok()) return s;
        admitted_ = true;
        if (conn_) conn_->ClearDeadline();
        SendMethod(0, amqp::ConnectionOpenOk{});
        state_ = State::kRunning;
        return absl::OkStatus();
      }
      break;
    case State::kRunning:
      if (As<amqp::ConnectionClose>(cmd)) {
        ClearChannels();
        SendMethod(0, amqp::ConnectionCloseOk{});
        Flush();
        if (conn_) conn_->CloseAfterSend();
        conn_ = nullptr;
        return absl::OkStatus();
      }
      break;
    case State::kHeader:
    case State::kClosing:
      break;
  }
  if (As<amqp::ConnectionClose>(cmd)) {
    // A client giving up during the handshake.
    SendMethod(0, amqp::ConnectionCloseOk{});
    Flush();
    if (conn_) conn_->CloseAfterSend();
    conn_ = nullptr;
    return absl::OkStatus();
  }
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unexpected ", std::string(amqp::InfoOf(cmd.method).name)));
}

void AmqpConnection::ChannelError(uint16_t channel, const absl::Status& s, uint16_t class_id,
                                  uint16_t method_id) {
  std::shared_ptr<AmqpChannel> ch = this->channel(channel);
  if (!ch) return;
  ReplyCode code = amqp::ReplyCodeOf(s).value_or(ReplyCode::kInternalError);
  ch->Teardown();
  ch->closing = true;
  SendMethod(channel, amqp::ChannelClose{static_cast<uint16_t>(code),
                                         amqp::FormatReplyText(code, std::string(s.message())),
                                         class_id, method_id});
}

void AmqpConnection::CloseWithError(ReplyCode code, std::string_view text, uint16_t class_id,
                                    uint16_t method_id) {
  if (!conn_ || state_ == State::kClosing) return;
  storage::LogInfo("amqp: closing connection from %s: %d %s", peer_, static_cast<int>(code), text);
  ClearChannels();
  // Errors are reported from channel 0 with the full frame limit the client knows.
  SendMethod(0, amqp::ConnectionClose{static_cast<uint16_t>(code),
                                      amqp::FormatReplyText(code, text), class_id, method_id});
  Flush();
  state_ = State::kClosing;
  // Wait a little for close-ok, then drop the socket.
  conn_->SetDeadline(absl::Seconds(2), absl::AbortedError("no connection.close-ok"));
}

void AmqpConnection::ScheduleHeartbeat() {
  if (heartbeat_ == 0 || !conn_) return;
  absl::Duration every = absl::Milliseconds(500) * heartbeat_;
  heartbeat_armed_ = true;
  heartbeat_timer_ = conn_->reactor().RunAfter(every, [this] {
    heartbeat_armed_ = false;
    if (!conn_) return;
    // Two heartbeat intervals without a byte from the client: it is gone (RabbitMQ's rule).
    if (blocked_) {
      // Not reading while blocked: the client's heartbeats wait in the socket (RabbitMQ
      // pauses its heartbeat monitor too).
      missed_heartbeats_ = 0;
    } else if (output_paused_ && conn_->bytes_sent() != last_sent_) {
      // Not reading while the client catches up with its output; it is reading.
      missed_heartbeats_ = 0;
      last_sent_ = conn_->bytes_sent();
    } else if (conn_->bytes_received() == last_received_) {
      if (++missed_heartbeats_ >= 4) {
        storage::LogInfo("amqp: connection from %s missed heartbeats", peer_);
        conn_->Close(absl::DeadlineExceededError("missed heartbeats"));
        return;
      }
    } else {
      missed_heartbeats_ = 0;
      last_received_ = conn_->bytes_received();
    }
    std::string hb;
    amqp::FrameEncoder::AppendHeartbeat(&hb);
    out_ += hb;
    broker_->MarkOutput(this);
    ScheduleHeartbeat();
  });
}

void AmqpConnection::Block() {
  if (blocked_ || conn_ == nullptr) return;
  blocked_ = true;
  UpdateReceive();
  if (blocked_capable_) {
    SendMethod(0, amqp::ConnectionBlocked{broker_->AlarmReason()});
    blocked_sent_ = true;
  }
}

void AmqpConnection::OnAlarmsChanged() {
  if (broker_->alarmed()) {
    if (published_ && state_ == State::kRunning) Block();
    return;
  }
  if (!blocked_) return;
  blocked_ = false;
  if (blocked_sent_) SendMethod(0, amqp::ConnectionUnblocked{});
  blocked_sent_ = false;
  UpdateReceive();
}

void AmqpConnection::CloseIfPeerGoneWhileBlocked() {
  if (!blocked_ || socket_ == nullptr) return;
  // POLLRDHUP: the peer's FIN arrived, even behind the unread publishes in the buffer.
  struct pollfd p = {socket_->fd(), POLLRDHUP, 0};
  if (poll(&p, 1, 0) != 1 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0) return;
  socket_->Close(absl::AbortedError("peer closed the connection while it was blocked"));
}

void AmqpConnection::UpdateReceive() {
  const bool pause = blocked_ || output_paused_;
  if (pause == receive_paused_ || conn_ == nullptr) return;
  receive_paused_ = pause;
  if (pause) {
    conn_->PauseReceive();
  } else {
    conn_->ResumeReceive();
  }
}

bool AmqpConnection::MaybeResumeOutput() {
  if (!output_paused_) return true;
  if (conn_ == nullptr) return true;
  if (queued_bytes() > broker_->options().max_unsent_bytes / 2) return false;
  output_paused_ = false;
  UpdateReceive();
  return true;
}

uint64_t AmqpConnection::MemoryBytes() const {
  uint64_t bytes = out_.capacity() + uncommitted_bytes_ + assembler_.BufferedBytes();
  if (socket_ != nullptr) bytes += socket_->queued_bytes() + socket_->input_capacity();
  return bytes;
}

bool AmqpConnection::ChargeUncommitted(uint64_t bytes) {
  if (uncommitted_bytes_ + bytes > broker_->options().max_uncommitted_bytes) return false;
  uncommitted_bytes_ += bytes;
  return true;
}

void AmqpConnection::AddChannel(uint16_t id) {
  channels_[id] = std::make_shared<AmqpChannel>(this, id);
}

void AmqpConnection::EraseChannel(uint16_t id) {
  if (channels_.erase(id) > 0) broker_->ChannelClosedForUser(user_);
}

void AmqpConnection::ClearChannels() {
  for (auto& [id, ch] : channels_) {
    ch->Teardown();
    broker_->ChannelClosedForUser(user_);
  }
  channels_.clear();
}

void AmqpConnection::OnClose(net::Connection& conn, absl::Status reason) {
  if (heartbeat_armed_) conn.reactor().Cancel(heartbeat_timer_);
  heartbeat_armed_ = false;
  ClearChannels();
  conn_ = nullptr;
  socket_ = nullptr;
  if (admitted_) broker_->ConnectionClosedForUser(user_);
  admitted_ = false;
  broker_->ConnectionGone(this);
  if (!reason.ok() && !absl::IsCancelled(reason)) {
    storage::LogInfo("amqp: connection from %s closed: %s", peer_, reason.ToString());
  }
}

}  // namespace sluice::broker
