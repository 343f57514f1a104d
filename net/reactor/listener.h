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
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/reactor/connection.h"
#include "net/reactor/io_op.h"
#include "net/reactor/net_log.h"
#include "net/reactor/reactor.h"

namespace sluice::net {

// Caps on live connections, shareable by several listeners (the Kafka listeners of every
// shard and the AMQP listener share one): at most `max` in total and, when `max_per_ip` is not
// zero, at most that many from one peer address (Kafka's max.connections and
// max.connections.per.ip). Touched at accept and at connection destruction only, never per
// request: the total is an atomic, the per-address counts a map under a mutex.
class ConnectionLimiter {
 public:
  enum class Verdict { kAccepted, kTooMany, kTooManyFromAddress };

  explicit ConnectionLimiter(size_t max, size_t max_per_ip = 0)
      : max_(max), max_per_ip_(max_per_ip) {}
  // Takes a slot for a connection from `ip` (the peer's address without port).
  Verdict TryAcquire(const std::string& ip);
  // Gives back the slot TryAcquire took for `ip`.
  void Release(const std::string& ip);
  size_t live() const { return live_.load(std::memory_order_relaxed); }
  size_t max() const { return max_; }
  size_t max_per_ip() const { return max_per_ip_; }
  size_t live_from(const std::string& ip) const;

 private:
  const size_t max_;
  const size_t max_per_ip_;
  std::atomic<size_t> live_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, size_t> per_ip_ ABSL_GUARDED_BY(mu_);
};

// File descriptors the network layer may hold (sockets and splice pipes), shared by every
// listener of a process so that the storage engine always finds free descriptors under
// RLIMIT_NOFILE (the broker sets max = soft limit - a reserve). A connection takes one at
// accept (refused when none is left: accepted and closed at once, as over max_connections)
// and two more for its splice pipe when it first sends a file range (when none are left, it
// sends file ranges with sendfile instead).
class FdBudget {
 public:
  explicit FdBudget(size_t max) : max_(max) {}
  bool TryAcquire(size_t n);
  void Release(size_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t max() const { return max_; }

 private:
  const size_t max_;
  std::atomic<size_t> used_{0};
};

enum class AcceptMode {
  kAuto,        // multishot accept when the kernel has it (5.19+), else kSingleShot
  kSingleShot,  // one IORING_OP_ACCEPT re-armed after each connection
};

struct ListenerOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or IPv6; "0.0.0.0" / "::" for all
  uint16_t port = 0;               // 0 = ephemeral; see Listener::port()
  int backlog = 1024;
  // Live connections allowed, in total and from one peer address (0 = no per-address cap);
  // past either a new connection is accepted and closed at once (with a rate-limited log
  // line) so clients fail fast instead of waiting in the backlog. Ignored if `limiter` is set.
  size_t max_connections = 10000;
  size_t max_connections_per_ip = 0;
  std::shared_ptr<ConnectionLimiter> limiter;
  // Descriptors for sockets and splice pipes; nullptr = not counted (see FdBudget).
  std::shared_ptr<FdBudget> fd_budget;
  // SO_REUSEPORT, for one listener per reactor on the same port (ReactorPool).
  bool reuse_port = false;
  AcceptMode accept_mode = AcceptMode::kAuto;
  ConnectionOptions connection;
};

// The limits every listener of a process applies alike (the broker builds one from its flags
// and hands it to each front end): shared connection caps, the descriptor budget, and the
// request read timeout. A default-constructed one changes nothing.
struct ListenerLimits {
  std::shared_ptr<ConnectionLimiter> limiter;  // nullptr: the listener's own max_connections
  std::shared_ptr<FdBudget> fd_budget;
  absl::Duration request_read_timeout = absl::ZeroDuration();  // see ConnectionOptions
  uint64_t request_min_bytes_per_sec = 0;

  void ApplyTo(ListenerOptions& options) const;
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
  // Connections closed at accept: over a connection cap or the descriptor budget.
  uint64_t rejected() const { return rejected_; }
  // Accept failures for lack of descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS).
  uint64_t accept_errors() const { return accept_errors_; }
  bool multishot() const { return multishot_; }

 private:
  // Heap-allocated so it can outlive the Listener until its last CQE arrives.
  struct AcceptOp;

  Listener(Reactor& reactor, ListenerOptions options, HandlerFactory factory, int fd);
  void Arm();
  void OnAccept(int res, uint32_t flags);
  void HandleAccepted(int fd);
  void Reject(int fd, const std::string& peer, std::string_view why);
  void BackOff(int err, bool more);

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
  absl::Duration retry_delay_;  // grows while accepting keeps failing, reset by a success
  uint64_t accepted_ = 0;
  uint64_t rejected_ = 0;
  uint64_t accept_errors_ = 0;
  LogRateLimiter reject_log_{absl::Seconds(10)};
  LogRateLimiter accept_error_log_{absl::Seconds(10)};
};

}  // namespace sluice::net
