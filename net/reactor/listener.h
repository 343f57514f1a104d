// Listener: a listening TCP socket on one Reactor, accepting with io_uring.
//
// Threading: created, used and destroyed on its reactor's loop thread. Destroy every
// Listener before its Reactor. Connections it accepted belong to the reactor and outlive it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/reactor/connection.h"
#include "net/reactor/io_op.h"
#include "net/reactor/reactor.h"

namespace sluice::net {

// A cap on live connections, shareable by the listeners of a ReactorPool (one atomic counter
// touched at accept and at connection destruction, never per request).
class ConnectionLimiter {
 public:
  explicit ConnectionLimiter(size_t max) : max_(max) {}
  // Takes a slot; false if all `max` are taken.
  bool TryAcquire();
  void Release() { live_.fetch_sub(1, std::memory_order_relaxed); }
  size_t live() const { return live_.load(std::memory_order_relaxed); }
  size_t max() const { return max_; }

 private:
  const size_t max_;
  std::atomic<size_t> live_{0};
};

enum class AcceptMode {
  kAuto,        // multishot accept when the kernel has it (5.19+), else kSingleShot
  kSingleShot,  // one IORING_OP_ACCEPT re-armed after each connection
};

struct ListenerOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or IPv6; "0.0.0.0" / "::" for all
  uint16_t port = 0;               // 0 = ephemeral; see Listener::port()
  int backlog = 1024;
  // Live connections allowed; past it a new connection is accepted and closed at once (with
  // a log line) so clients fail fast instead of waiting in the backlog. Ignored if `limiter`
  // is set.
  size_t max_connections = 10000;
  std::shared_ptr<ConnectionLimiter> limiter;
  // SO_REUSEPORT, for one listener per reactor on the same port (ReactorPool).
  bool reuse_port = false;
  AcceptMode accept_mode = AcceptMode::kAuto;
  ConnectionOptions connection;
};

class Listener {
 public:
  // Called on the loop thread for each accepted connection. Returning nullptr drops it.
  using HandlerFactory = absl::AnyInvocable<std::unique_ptr<ConnectionHandler>(Connection&)>;

  // Binds (SO_REUSEADDR), listens and starts accepting. Loop thread.
  static absl::StatusOr<std::unique_ptr<Listener>> Create(Reactor& reactor, ListenerOptions options,
                                                          HandlerFactory factory);
  // Stops accepting and closes the listening socket. Loop thread.
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The bound port (the ephemeral one if options.port was 0).
  uint16_t port() const { return port_; }
  size_t live_connections() const { return limiter_->live(); }
  uint64_t accepted() const { return accepted_; }
  uint64_t rejected() const { return rejected_; }
  bool multishot() const { return multishot_; }

 private:
  // Heap-allocated so it can outlive the Listener until its last CQE arrives.
  struct AcceptOp;

  Listener(Reactor& reactor, ListenerOptions options, HandlerFactory factory, int fd);
  void Arm();
  void OnAccept(int res, uint32_t flags);
  void HandleAccepted(int fd);

  Reactor& reactor_;
  const ListenerOptions options_;
  HandlerFactory factory_;
  std::shared_ptr<ConnectionLimiter> limiter_;
  const int fd_;
  uint16_t port_ = 0;
  bool multishot_ = false;
  AcceptOp* op_ = nullptr;  // owned by itself while in flight
  bool armed_ = false;
  TimerId retry_timer_;
  uint64_t accepted_ = 0;
  uint64_t rejected_ = 0;
};

}  // namespace sluice::net
