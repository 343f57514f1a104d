#include "src/http_admin.h"

#include "absl/strings/str_cat.h"
#include "log/logging.h"
#include "net/http/request.h"
#include "net/reactor/connection.h"

namespace sluice::broker {

namespace {

std::string Response(int code, absl::string_view reason, absl::string_view content_type,
                     absl::string_view body, bool head_only) {
  std::string out = absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                                 "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n");
  if (code == 405) out.append("Allow: GET, HEAD\r\n");
  out.append("\r\n");
  if (!head_only) out.append(body.data(), body.size());
  return out;
}

constexpr absl::string_view kText = "text/plain; charset=utf-8";

}  // namespace

class HttpAdmin::Handler final : public net::ConnectionHandler {
 public:
  explicit Handler(HttpAdmin* admin) : admin_(admin), alive_(admin->alive_) {}

  void OnOpen(net::Connection& conn) override {
    conn.SetDeadline(absl::Seconds(10), absl::DeadlineExceededError("http request head timeout"));
  }

  void OnData(net::Connection& conn, net::InputBuffer& input) override {
    if (!*alive_) {  // the listener is gone (shutting down)
      conn.Close(absl::CancelledError("http listener stopped"));
      return;
    }
    if (answered_) {
      input.Consume(input.size());  // one request per connection: the rest is dropped
      return;
    }
    http::RequestHead req;
    std::string error;
    switch (http::ParseRequestHead(input.view(), &req, &error)) {
      case http::ParseResult::kIncomplete:
        return;
      case http::ParseResult::kTooLarge:
        input.Consume(input.size());
        return Answer(conn, Response(431, "Request Header Fields Too Large", kText,
                                     "request head too large\n", false));
      case http::ParseResult::kBad:
        storage::LogWarning("http: bad request from %s: %s", conn.peer(), error);
        input.Consume(input.size());
        return Answer(conn, Response(400, "Bad Request", kText, error + "\n", false));
      case http::ParseResult::kOk:
        break;
    }
    input.Consume(input.size());
    const bool head = req.method == "HEAD";
    if (req.method != "GET" && !head) {
      return Answer(conn, Response(405, "Method Not Allowed", kText, "GET or HEAD\n", false));
    }
    if (req.path() == "/healthz") {
      return Answer(conn, Response(200, "OK", kText, "ok\n", head));
    }
    if (req.path() != "/metrics") {
      return Answer(conn, Response(404, "Not Found", kText, "try /metrics or /healthz\n", head));
    }
    answered_ = true;
    conn.ClearDeadline();
    net::Reactor* reactor = &conn.reactor();
    const net::ConnectionId id = conn.id();
    admin_->metrics_([reactor, id, head, alive = alive_](std::string body) {
      if (!*alive) return;
      net::Connection* c = reactor->FindConnection(id);
      if (c == nullptr) return;  // the client went away meanwhile
      c->Send(Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head));
      c->CloseAfterSend();
    });
  }

  void OnClose(net::Connection&, absl::Status) override {}

 private:
  void Answer(net::Connection& conn, std::string response) {
    answered_ = true;
    conn.ClearDeadline();
    conn.Send(std::move(response));
    conn.CloseAfterSend();
  }

  HttpAdmin* const admin_;
  std::shared_ptr<bool> alive_;
  bool answered_ = false;
};

absl::StatusOr<std::unique_ptr<HttpAdmin>> HttpAdmin::Listen(net::Reactor& reactor,
                                                             const std::string& host, uint16_t port,
                                                             const net::ListenerLimits& limits,
                                                             MetricsSource metrics) {
  std::unique_ptr<HttpAdmin> admin(new HttpAdmin());
  admin->metrics_ = std::move(metrics);
  net::ListenerOptions lo;
  lo.host = host;
  lo.port = port;
  lo.max_connections = kMaxConnections;
  lo.connection.max_input_bytes = 2 * http::kMaxRequestHeadBytes;
  lo.connection.recv_chunk = 4096;
  limits.ApplyTo(lo);
  HttpAdmin* self = admin.get();
  auto listener = net::Listener::Create(
      reactor, lo, [self](net::Connection&) -> std::unique_ptr<net::ConnectionHandler> {
        return std::make_unique<Handler>(self);
      });
  if (!listener.ok()) return listener.status();
  admin->listener_ = std::move(*listener);
  return admin;
}

}  // namespace sluice::broker
