#include "net/reactor/connect.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::net {

namespace {

bool Resolve(const std::string& host, int port, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return true;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  if (out->ss_family == AF_INET) v4->sin_port = htons(static_cast<uint16_t>(port));
  if (out->ss_family == AF_INET6) v6->sin6_port = htons(static_cast<uint16_t>(port));
  return true;
}

class Attempt final : public PendingConnect {
 public:
  Attempt(Reactor& reactor, int fd, std::string peer,
          absl::AnyInvocable<void(absl::StatusOr<int>)> done)
      : reactor_(reactor), fd_(fd), peer_(std::move(peer)), done_(std::move(done)) {}

  ~Attempt() override { Abandon(); }

  void Start(absl::Duration timeout) {
    watch_ = reactor_.WatchWritable(fd_, [this] { OnWritable(); });
    watching_ = true;
    timer_ = reactor_.RunAfter(timeout, [this] {
      timer_armed_ = false;
      Finish(absl::DeadlineExceededError(absl::StrCat("connect to ", peer_, " timed out")));
    });
    timer_armed_ = true;
  }

 private:
  void OnWritable() {
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      Finish(absl::UnavailableError(absl::StrCat("connect to ", peer_, ": ", std::strerror(err))));
      return;
    }
    const int fd = fd_;
    fd_ = -1;  // the caller's now
    Finish(fd);
  }

  void Finish(absl::StatusOr<int> result) {
    Stop();
    if (!result.ok() && fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (done_) {
      auto done = std::move(done_);
      done(std::move(result));  // may destroy this
    }
  }

  void Stop() {
    if (watching_) {
      reactor_.Unwatch(watch_);
      watching_ = false;
    }
    if (timer_armed_) {
      reactor_.Cancel(timer_);
      timer_armed_ = false;
    }
  }

  void Abandon() {
    Stop();
    done_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  Reactor& reactor_;
  int fd_;
  const std::string peer_;
  absl::AnyInvocable<void(absl::StatusOr<int>)> done_;
  WatchId watch_{};
  TimerId timer_{};
  bool watching_ = false;
  bool timer_armed_ = false;
};

class Failed final : public PendingConnect {};

}  // namespace

std::unique_ptr<PendingConnect> ConnectTcp(Reactor& reactor, const std::string& host, int port,
                                           absl::Duration timeout,
                                           absl::AnyInvocable<void(absl::StatusOr<int>)> done) {
  const std::string peer = absl::StrCat(host, ":", port);
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!Resolve(host, port, &addr, &len)) {
    done(absl::UnavailableError(absl::StrCat("cannot resolve ", host)));
    return std::make_unique<Failed>();
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    done(absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno))));
    return std::make_unique<Failed>();
  }
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS) {
    const int err = errno;
    ::close(fd);
    done(absl::UnavailableError(absl::StrCat("connect to ", peer, ": ", std::strerror(err))));
    return std::make_unique<Failed>();
  }
  auto attempt = std::make_unique<Attempt>(reactor, fd, peer, std::move(done));
  attempt->Start(timeout);
  return attempt;
}

}  // namespace sluice::net
