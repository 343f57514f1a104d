#include "net/reactor/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "net/reactor/net_log.h"
#include "net/reactor/socket_util.h"

namespace sluice::net {
namespace {

// Back-off before accepting again after EMFILE/ENFILE/ENOMEM/ENOBUFS, so a full fd table
// does not turn into a busy loop: doubled on every failure in a row, reset by a success.
constexpr absl::Duration kAcceptRetryMin = absl::Milliseconds(20);
constexpr absl::Duration kAcceptRetryMax = absl::Seconds(1);

bool TryTake(std::atomic<size_t>& counter, size_t n, size_t max) {
  size_t cur = counter.load(std::memory_order_relaxed);
  while (cur + n <= max) {
    if (counter.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) return true;
  }
  return false;
}

}  // namespace

ConnectionLimiter::Verdict ConnectionLimiter::TryAcquire(const std::string& ip) {
  if (max_per_ip_ == 0) {
    return TryTake(live_, 1, max_) ? Verdict::kAccepted : Verdict::kTooMany;
  }
  absl::MutexLock lock(&mu_);
  if (!TryTake(live_, 1, max_)) return Verdict::kTooMany;
  size_t& from_ip = per_ip_[ip];
  if (from_ip >= max_per_ip_) {
    live_.fetch_sub(1, std::memory_order_relaxed);
    return Verdict::kTooManyFromAddress;
  }
  ++from_ip;
  return Verdict::kAccepted;
}

void ConnectionLimiter::Release(const std::string& ip) {
  live_.fetch_sub(1, std::memory_order_relaxed);
  if (max_per_ip_ == 0) return;
  absl::MutexLock lock(&mu_);
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;
  if (--it->second == 0) per_ip_.erase(it);
}

size_t ConnectionLimiter::live_from(const std::string& ip) const {
  absl::MutexLock lock(&mu_);
  auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

bool FdBudget::TryAcquire(size_t n) { return TryTake(used_, n, max_); }

void ListenerLimits::ApplyTo(ListenerOptions& options) const {
  if (limiter) options.limiter = limiter;
  if (fd_budget) options.fd_budget = fd_budget;
  if (request_read_timeout > absl::ZeroDuration()) {
    options.connection.request_read_timeout = request_read_timeout;
    options.connection.request_min_bytes_per_sec = request_min_bytes_per_sec;
  }
}

struct Listener::AcceptOp final : internal::IoOp {
  Listener* listener;  // nullptr once the Listener is gone: the op then frees itself
  void Complete(int res, uint32_t flags) override {
    if (listener != nullptr) {
      listener->OnAccept(res, flags);
      return;
    }
    if (res >= 0) ::close(res);  // accepted after the Listener went away
    if ((flags & IORING_CQE_F_MORE) == 0) delete this;
  }
};

absl::StatusOr<std::unique_ptr<Listener>> Listener::Create(Reactor& reactor,
                                                           ListenerOptions options,
                                                           HandlerFactory factory) {
  reactor.AssertInLoopThread();
  sockaddr_storage addr;
  socklen_t len;
  if (absl::Status s = internal::ParseAddress(options.host, options.port, &addr, &len); !s.ok()) {
    return s;
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  auto fail = [fd](const char* what) {
    absl::Status s = absl::ErrnoToStatus(errno, what);
    ::close(fd);
    return s;
  };
  const int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return fail("setsockopt(SO_REUSEADDR)");
  }
  if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return fail("setsockopt(SO_REUSEPORT)");
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    absl::Status s =
        absl::ErrnoToStatus(errno, absl::StrCat("bind ", internal::FormatAddress(addr)));
    ::close(fd);
    return s;
  }
  if (::listen(fd, options.backlog) != 0) return fail("listen");
  std::unique_ptr<Listener> l(new Listener(reactor, std::move(options), std::move(factory), fd));
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname");
  }
  l->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  l->multishot_ =
      l->options_.accept_mode == AcceptMode::kAuto && reactor.supports_multishot_accept();
  NetLog("listener: %s accepting (%s accept, max %u connections, %s per address)",
         internal::FormatAddress(bound), l->multishot_ ? "multishot" : "single-shot",
         static_cast<unsigned>(l->limiter_->max()),
         l->limiter_->max_per_ip() == 0 ? std::string("no limit")
                                        : absl::StrCat(l->limiter_->max_per_ip()));
  l->Arm();
  return l;
}

Listener::Listener(Reactor& reactor, ListenerOptions options, HandlerFactory factory, int fd)
    : reactor_(reactor),
      options_(std::move(options)),
      factory_(std::move(factory)),
      limiter_(options_.limiter ? options_.limiter
                                : std::make_shared<ConnectionLimiter>(
                                      options_.max_connections, options_.max_connections_per_ip)),
      fd_(fd),
      retry_delay_(kAcceptRetryMin) {}

Listener::~Listener() {
  reactor_.AssertInLoopThread();
  reactor_.Cancel(retry_timer_);
  if (op_ != nullptr) {
    if (armed_) {
      op_->listener = nullptr;  // frees itself on its last CQE
      reactor_.CancelOp(op_);
    } else {
      delete op_;
    }
  }
  // The in-flight accept holds its own file reference; closing the number is safe.
  ::close(fd_);
}

void Listener::Arm() {
  if (op_ == nullptr) {
    op_ = new AcceptOp;
    op_->listener = this;
  }
  io_uring_sqe* sqe = reactor_.GetSqe(op_);
  if (multishot_) {
    io_uring_prep_multishot_accept(sqe, fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  }
  armed_ = true;
}

void Listener::OnAccept(int res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) armed_ = false;
  if (res >= 0) {
    retry_delay_ = kAcceptRetryMin;
    HandleAccepted(res);
  } else if (res == -EINVAL && multishot_ && accepted_ == 0 && rejected_ == 0) {
    // A kernel without multishot accept rejects the flag.
    NetLog("listener: multishot accept unsupported; falling back to single-shot accept");
    multishot_ = false;
  } else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
    BackOff(-res, more);
    return;
  } else if (res != -ECANCELED && res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
    NetLog("listener: accept failed (errno %d)", -res);
  }
  if (!armed_ && res != -ECANCELED) Arm();  // single-shot, or the multishot ended
}

void Listener::BackOff(int err, bool more) {
  // The connection stays in the backlog; accepting again at once would fail the same way, in
  // a loop. The rest of the broker goes on meanwhile; the log gets one line per 10 s.
  ++accept_errors_;
  const absl::Duration delay = retry_delay_;
  retry_delay_ = std::min(retry_delay_ * 2, kAcceptRetryMax);
  if (uint64_t suppressed = 0; accept_error_log_.Allow(&suppressed)) {
    NetLog(
        "listener: accept failed: %s (errno %d); backing off %s (%u more such failures in "
        "the last 10 s)",
        std::strerror(err), err, absl::FormatDuration(delay), static_cast<unsigned>(suppressed));
  }
  if (more || armed_ || retry_timer_.value != 0) return;
  retry_timer_ = reactor_.RunAfter(delay, [this] {
    retry_timer_ = TimerId{};
    if (!armed_) Arm();
  });
}

void Listener::Reject(int fd, const std::string& peer, std::string_view why) {
  ++rejected_;
  if (uint64_t suppressed = 0; reject_log_.Allow(&suppressed)) {
    NetLog("listener: rejecting %s: %s (%u more rejected in the last 10 s)", peer, why,
           static_cast<unsigned>(suppressed));
  }
  ::close(fd);
}

void Listener::HandleAccepted(int fd) {
  std::string ip;
  std::string peer = internal::PeerAddress(fd, &ip);
  switch (limiter_->TryAcquire(ip)) {
    case ConnectionLimiter::Verdict::kAccepted:
      break;
    case ConnectionLimiter::Verdict::kTooMany:
      Reject(fd, peer,
             absl::StrCat(limiter_->max(), " live connections is the limit (max.connections)"));
      return;
    case ConnectionLimiter::Verdict::kTooManyFromAddress:
      Reject(fd, peer,
             absl::StrCat(limiter_->max_per_ip(), " live connections from ", ip,
                          " is the limit (max.connections.per.ip)"));
      return;
  }
  if (options_.fd_budget != nullptr && !options_.fd_budget->TryAcquire(1)) {
    limiter_->Release(ip);
    Reject(fd, peer,
           absl::StrCat("the network's ", options_.fd_budget->max(),
                        " file descriptors are in use (the rest of RLIMIT_NOFILE is kept for "
                        "storage)"));
    return;
  }
  ++accepted_;
  absl::StatusOr<Connection*> conn = reactor_.AdoptConnection(
      fd, options_.connection, [this](Connection& c) { return factory_(c); });
  if (!conn.ok()) {
    limiter_->Release(ip);
    if (options_.fd_budget != nullptr) options_.fd_budget->Release(1);
    NetLog("listener: dropping accepted connection: %s", conn.status().ToString());
    return;
  }
  (*conn)->AttachLimits(limiter_, std::move(ip), options_.fd_budget);
}

}  // namespace sluice::net
