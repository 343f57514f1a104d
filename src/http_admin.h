// The admin HTTP listener (--http-port): GET /healthz ("ok") and GET /metrics (Prometheus
// text, src/metrics.h). One request per connection (answered with Connection: close); request
// heads are parsed by net/http with an 8 KiB limit and a 10 s deadline; anything else gets
// 400/404/405/431 and the connection closes. Runs on shard 0's reactor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "net/reactor/listener.h"
#include "net/reactor/reactor.h"

namespace sluice::broker {

class HttpAdmin {
 public:
  // Produces the /metrics body, now or later (it may gather samples from other shards), by
  // calling `done` on the listener's thread.
  using MetricsSource = absl::AnyInvocable<void(absl::AnyInvocable<void(std::string)> done)>;

  // Live connections the listener takes unless `limits` brings its own limiter.
  static constexpr size_t kMaxConnections = 256;

  static absl::StatusOr<std::unique_ptr<HttpAdmin>> Listen(net::Reactor& reactor,
                                                           const std::string& host, uint16_t port,
                                                           const net::ListenerLimits& limits,
                                                           MetricsSource metrics);
  ~HttpAdmin() { *alive_ = false; }
  uint16_t port() const { return listener_->port(); }

 private:
  class Handler;
  HttpAdmin() = default;
  MetricsSource metrics_;
  std::unique_ptr<net::Listener> listener_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::broker
