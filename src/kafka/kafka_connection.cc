#include "src/kafka/kafka_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "log/logging.h"
#include "src/kafka/handlers.h"

namespace sluice::broker {

namespace {

// The address the client reached us on, so Metadata advertises something it can connect to.
void LocalAddress(int fd, std::string* host, int32_t* port) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *port = ntohs(a->sin6_port);
  }
  *host = buf;
}

}  // namespace

KafkaConnection::KafkaConnection(KafkaBroker* broker, net::Connection& conn)
    : broker_(broker),
      conn_(&conn),
      queue_(std::make_shared<ResponseQueue>(
          &conn, ResponseLimits{broker->options().max_queued_bytes,
                                broker->options().max_queued_file_ranges, kMaxOutstanding})) {
  LocalAddress(conn.fd(), &local_host_, &local_port_);
}

void KafkaConnection::OnOpen(net::Connection& conn) {
  conn.SetDeadline(broker_->options().handshake_timeout,
                   absl::DeadlineExceededError("no valid request within the handshake timeout"));
  // The queue outlives this handler only through Responders; the callback runs from the
  // queue while the handler is alive (MarkClosed drops it in OnClose).
  queue_->set_on_room([this] { MaybeResume(); });
}

void KafkaConnection::Pause(net::Connection& conn) {
  paused_ = true;
  conn.PauseReceive();
  if (!logged_pause_ && queue_->outstanding() < kMaxOutstanding) {
    logged_pause_ = true;
    storage::LogInfo(
        "kafka: %s: not reading further requests until the client reads its responses: %d "
        "bytes and %d file ranges queued (connection.max.queued.bytes %d, "
        "connection.max.queued.file.ranges %d); logged once per connection",
        conn.peer(), queue_->charged_bytes(), queue_->charged_file_ranges(),
        queue_->limits().max_bytes, queue_->limits().max_file_ranges);
  }
  queue_->WatchOutput();
}

void KafkaConnection::MaybeResume() {
  if (!paused_) return;
  if (!queue_->BelowHalf()) {
    queue_->WatchOutput();
    return;
  }
  paused_ = false;
  conn_->ResumeReceive();
}

void KafkaConnection::OnOutputBelow(net::Connection&) { queue_->OnOutputBelow(); }

void KafkaConnection::Reject(net::Connection& conn, const std::string& why) {
  storage::LogWarning("kafka: closing connection from %s: %s", conn.peer(), why);
  conn.Close(absl::InvalidArgumentError(why));
}

void KafkaConnection::OnData(net::Connection& conn, net::InputBuffer& input) {
  for (int handled = 0; conn.is_open() && !paused_; ++handled) {
    if (handled == kMaxFramesPerDelivery) {
      // The rest after other connections had their turn (a client pipelining thousands of
      // cheap requests would otherwise hold the loop while it is served).
      conn.DeliverBufferedLater();
      return;
    }
    if (queue_->Full()) {
      // Checked before each frame, not only before each recv: one input buffer may hold
      // hundreds of pipelined requests.
      Pause(conn);
      return;
    }
    if (input.size() < kafka::kFrameSizePrefixBytes) {
      input.ExpectAtLeast(kafka::kFrameSizePrefixBytes);
      return;
    }
    auto size = kafka::ParseFrameSize(std::span<const uint8_t>(input.readable().data(), 4),
                                      broker_->options().max_request_bytes);
    if (size.ok() && !handshake_done_ && *size > broker_->options().max_first_request_bytes) {
      // Before a valid request only small frames are accepted, unless the header already
      // names an API version we serve (a client may open a connection with a large Produce).
      if (input.size() < 8) {
        input.ExpectAtLeast(8);
        return;
      }
      const uint8_t* h = input.readable().data() + 4;
      int16_t key = static_cast<int16_t>(h[0] << 8 | h[1]);
      int16_t version = static_cast<int16_t>(h[2] << 8 | h[3]);
      const KafkaApiHandler* api = FindKafkaApiHandler(key);
      if (api == nullptr || version < api->min_version || version > api->max_version) {
        size = absl::InvalidArgumentError(
            absl::StrFormat("frame size %d exceeds the limit of %d before a valid request", *size,
                            broker_->options().max_first_request_bytes));
      }
    }
    if (!size.ok()) {
      // Checked before ExpectAtLeast: an absurd declared length never allocates.
      Reject(conn, absl::StrFormat("bad frame size: %s", size.status().message()));
      return;
    }
    size_t total = kafka::kFrameSizePrefixBytes + *size;
    if (input.size() < total) {
      input.ExpectAtLeast(total);
      return;
    }
    std::span<const uint8_t> payload(input.readable().data() + kafka::kFrameSizePrefixBytes, *size);
    // Records in the request borrow from the input buffer: handlers copy what they keep
    // (appends copy into the log's write buffer) before this returns.
    bool open = HandleFrame(conn, payload);
    input.Consume(total);
    if (!open) return;
  }
}

bool KafkaConnection::HandleFrame(net::Connection& conn, std::span<const uint8_t> payload) {
  kafka::DecodedRequest req = kafka::DecodeRequest(payload);
  switch (req.error) {
    case kafka::RequestError::kNone:
      break;
    case kafka::RequestError::kMalformedHeader:
      Reject(conn, "malformed request header");
      return false;
    case kafka::RequestError::kUnknownApiKey:
      Reject(conn, absl::StrFormat("unknown API key %d", req.header->api_key));
      return false;
    case kafka::RequestError::kUnsupportedVersion:
      if (req.header->api_key == kafka::ApiVersionsRequest::kApiKey) {
        uint64_t seq = queue_->Reserve();
        Responder(queue_, seq, req.header->correlation_id, 0)
            .SendFrame(kafka::EncodeUnsupportedApiVersionsResponse(req.header->correlation_id));
        return true;
      }
      Reject(conn, absl::StrFormat("unsupported version %d of API %d", req.header->api_version,
                                   req.header->api_key));
      return false;
    case kafka::RequestError::kMalformedBody:
      Reject(conn, absl::StrFormat("malformed request (API %d v%d): %s", req.header->api_key,
                                   req.header->api_version, req.status.message()));
      return false;
  }
  const KafkaApiHandler* handler = FindKafkaApiHandler(req.header->api_key);
  int16_t version = req.header->api_version;
  if (handler == nullptr || version < handler->min_version || version > handler->max_version) {
    if (req.header->api_key == kafka::ApiVersionsRequest::kApiKey) {
      uint64_t seq = queue_->Reserve();
      Responder(queue_, seq, req.header->correlation_id, 0)
          .SendFrame(kafka::EncodeUnsupportedApiVersionsResponse(req.header->correlation_id));
      return true;
    }
    Reject(conn, absl::StrFormat("API %d v%d is not served by this broker", req.header->api_key,
                                 version));
    return false;
  }
  if (!handshake_done_) {
    handshake_done_ = true;
    conn.ClearDeadline();
  }
  uint64_t seq = queue_->Reserve();
  Responder responder(queue_, seq, req.header->correlation_id, version);
  const int16_t key = req.header->api_key;
  if (broker_->shard_index() != 0 && key != kafka::ProduceRequest::kApiKey &&
      key != kafka::FetchRequest::kApiKey && key != kafka::ListOffsetsRequest::kApiKey &&
      key != kafka::OffsetForLeaderEpochRequest::kApiKey &&
      key != kafka::ApiVersionsRequest::kApiKey) {
    // Shard 0 owns the registry and the group coordinator: the request is decoded again and
    // handled there, from a copy (the payload is this connection's input buffer); the answer
    // comes back through the Responder.
    auto bytes = std::make_shared<std::vector<uint8_t>>(payload.begin(), payload.end());
    broker_->RunOn(0, [bytes, handler, responder = std::move(responder), host = local_host_,
                       port = local_port_, peer = conn.peer()](KafkaBroker& b) mutable {
      kafka::DecodedRequest again = kafka::DecodeRequest(*bytes);
      if (again.error != kafka::RequestError::kNone) return;  // decoded once already
      RequestContext ctx{b,    *again.header,   std::move(host),
                         port, std::move(peer), std::move(responder)};
      handler->handle(ctx, again.body);
    });
    return conn.is_open();
  }
  RequestContext ctx{*broker_,    *req.header, local_host_,
                     local_port_, conn.peer(), std::move(responder)};
  handler->handle(ctx, req.body);
  return conn.is_open();
}

void KafkaConnection::OnClose(net::Connection& conn, absl::Status reason) {
  queue_->MarkClosed();
  if (!reason.ok() && !absl::IsCancelled(reason) && !absl::IsInvalidArgument(reason)) {
    storage::LogInfo("kafka: connection from %s closed: %s", conn.peer(), reason.ToString());
  }
}

}  // namespace sluice::broker
