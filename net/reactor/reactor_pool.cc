#include "net/reactor/reactor_pool.h"

#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"

namespace sluice::net {

absl::StatusOr<std::unique_ptr<ReactorPool>> ReactorPool::Start(ReactorPoolOptions options) {
  size_t n = options.threads;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  std::unique_ptr<ReactorPool> pool(new ReactorPool);
  for (size_t i = 0; i < n; ++i) {
    absl::StatusOr<std::unique_ptr<ReactorThread>> t = ReactorThread::Start(options.reactor);
    if (!t.ok()) return t.status();
    pool->threads_.push_back(std::move(*t));
  }
  pool->listeners_.resize(n);
  return pool;
}

ReactorPool::~ReactorPool() {
  Shutdown();
  threads_.clear();  // each ReactorThread stops and joins; reactors die on their threads
}

void ReactorPool::RunOn(size_t i, absl::AnyInvocable<void()> fn) {
  absl::Notification done;
  reactor(i).Post([&] {
    fn();
    done.Notify();
  });
  done.WaitForNotification();
}

absl::StatusOr<uint16_t> ReactorPool::Listen(ListenerOptions options,
                                             SharedHandlerFactory factory) {
  if (limiter_ != nullptr) return absl::FailedPreconditionError("pool is already listening");
  options.reuse_port = true;
  limiter_ = std::make_shared<ConnectionLimiter>(options.max_connections);
  options.limiter = limiter_;
  absl::Status status;
  for (size_t i = 0; i < size() && status.ok(); ++i) {
    RunOn(i, [&, i] {
      absl::StatusOr<std::unique_ptr<Listener>> l =
          Listener::Create(reactor(i), options, [factory](Connection& c) { return factory(c); });
      if (!l.ok()) {
        status = l.status();
        return;
      }
      options.port = (*l)->port();  // the others join the port the first one got
      listeners_[i] = std::move(*l);
    });
  }
  if (!status.ok()) {
    Shutdown();
    return status;
  }
  return options.port;
}

void ReactorPool::Shutdown() {
  for (size_t i = 0; i < listeners_.size(); ++i) {
    RunOn(i, [this, i] { listeners_[i].reset(); });
  }
}

}  // namespace sluice::net
