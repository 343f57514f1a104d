#include "net/reactor/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "net/reactor/net_log.h"
#include "net/reactor/socket_util.h"

namespace sluice::net {
namespace {

// Back-off before accepting again after EMFILE/ENFILE/ENOMEM, so a full fd table does not
// turn into a busy loop.
constexpr absl::Duration kAcceptRetryDelay = absl::Milliseconds(100);

}  // namespace

bool ConnectionLimiter::TryAcquire() {
  size_t cur = live_.load(std::memory_order_relaxed);
  while (cur < max_) {
    if (live_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) return true;
  }
  return false;
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
  NetLog("listener: %s accepting (%s accept, max %u connections)", internal::FormatAddress(bound),
         l->multishot_ ? "multishot" : "single-shot", static_cast<unsigned>(l->limiter_->max()));
  l->Arm();
  return l;
}

Listener::Listener(Reactor& reactor, ListenerOptions options, HandlerFactory factory, int fd)
    : reactor_(reactor),
      options_(std::move(options)),
      factory_(std::move(factory)),
      limiter_(options_.limiter ? options_.limiter
                                : std::make_shared<ConnectionLimiter>(options_.max_connections)),
      fd_(fd) {}

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
    HandleAccepted(res);
  } else if (res == -EINVAL && multishot_ && accepted_ == 0 && rejected_ == 0) {
    // A kernel without multishot accept rejects the flag.
    NetLog("listener: multishot accept unsupported; falling back to single-shot accept");
    multishot_ = false;
  } else if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
    NetLog("listener: accept failed (errno %d); retrying in %s", -res,
           absl::FormatDuration(kAcceptRetryDelay));
    if (!more && !armed_) {
      retry_timer_ = reactor_.RunAfter(kAcceptRetryDelay, [this] {
        retry_timer_ = TimerId{};
        if (!armed_) Arm();
      });
    }
    return;
  } else if (res != -ECANCELED && res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
    NetLog("listener: accept failed (errno %d)", -res);
  }
  if (!armed_ && res != -ECANCELED) Arm();  // single-shot, or the multishot ended
}

void Listener::HandleAccepted(int fd) {
  if (!limiter_->TryAcquire()) {
    ++rejected_;
    NetLog("listener: rejecting %s: %u live connections is the limit", internal::PeerAddress(fd),
           static_cast<unsigned>(limiter_->max()));
    ::close(fd);
    return;
  }
  ++accepted_;
  absl::StatusOr<Connection*> conn = reactor_.AdoptConnection(
      fd, options_.connection, [this](Connection& c) { return factory_(c); });
  if (!conn.ok()) {
    limiter_->Release();
    NetLog("listener: dropping accepted connection: %s", conn.status().ToString());
    return;
  }
  (*conn)->limiter_ = limiter_;
}

}  // namespace sluice::net
