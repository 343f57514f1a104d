// ReactorPool: N reactors on N threads, with one SO_REUSEPORT listener per reactor.
//
// Why SO_REUSEPORT and not one acceptor handing fds round-robin: each shard accepts on its
// own ring with no cross-thread hop and no shared acceptor thread that every connection
// waits on (shared nothing, as the rest of the shard-per-core design); the kernel spreads
// connections by a hash of the 4-tuple. The cost: the spread is statistical, not exact, and
// a connection stays on the shard that accepted it (requests for partitions of other shards
// go there as messages anyway). The connection cap is shared through one ConnectionLimiter.
//
// Threading: Start/Listen/Shutdown and the destructor from one controlling thread (not a
// pool thread). The handler factory is called on every pool thread and must be thread-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/reactor/listener.h"
#include "net/reactor/reactor.h"

namespace sluice::net {

struct ReactorPoolOptions {
  size_t threads = 0;  // 0 = std::thread::hardware_concurrency()
  ReactorOptions reactor;
};

class ReactorPool {
 public:
  using SharedHandlerFactory = std::function<std::unique_ptr<ConnectionHandler>(Connection&)>;

  static absl::StatusOr<std::unique_ptr<ReactorPool>> Start(ReactorPoolOptions options = {});
  // Shutdown(), then stops and joins every thread.
  ~ReactorPool();
  ReactorPool(const ReactorPool&) = delete;
  ReactorPool& operator=(const ReactorPool&) = delete;

  size_t size() const { return threads_.size(); }
  Reactor& reactor(size_t i) const { return threads_[i]->reactor(); }

  // One listener per reactor on the same port (options.reuse_port is forced on; port 0
  // picks an ephemeral port on the first reactor, the others bind it too). Returns the port.
  // options.max_connections caps the whole pool. May be called once.
  absl::StatusOr<uint16_t> Listen(ListenerOptions options, SharedHandlerFactory factory);
  // Destroys the listeners (each on its thread). Connections stay until the pool goes.
  void Shutdown();
  // Live connections of the pool's listeners.
  size_t live_connections() const { return limiter_ ? limiter_->live() : 0; }

 private:
  ReactorPool() = default;
  // Runs `fn` on reactor `i` and waits for it.
  void RunOn(size_t i, absl::AnyInvocable<void()> fn);

  std::vector<std::unique_ptr<ReactorThread>> threads_;
  std::vector<std::unique_ptr<Listener>> listeners_;  // [i] touched only on reactor i
  std::shared_ptr<ConnectionLimiter> limiter_;
};

}  // namespace sluice::net
