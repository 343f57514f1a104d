// Helpers for the reactor tests: bounded loop driving, blocking test clients with timeouts,
// and a length-prefixed echo protocol (u32 big-endian length, then the payload).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "net/reactor/connection.h"
#include "net/reactor/net_log.h"
#include "net/reactor/reactor.h"

namespace sluice::net::testing {

// Drives `reactor` on this thread until `done` or `limit` passes. Returns done().
inline bool RunUntil(Reactor& reactor, const std::function<bool()>& done,
                     absl::Duration limit = absl::Seconds(30)) {
  const absl::Time give_up = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    if (!reactor.RunOnce(absl::Milliseconds(10)).ok()) return false;
  }
  return true;
}

// A blocking client socket whose reads and writes give up after `timeout`. A non-zero
// `rcvbuf` caps its receive buffer (and so the TCP window), to make the server's socket fill.
inline int ConnectTo(uint16_t port, absl::Duration timeout = absl::Seconds(20), int rcvbuf = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  timeval tv;
  tv.tv_sec = absl::ToInt64Seconds(timeout);
  tv.tv_usec = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads exactly n bytes; false on EOF, error or timeout.
inline bool ReadExactly(int fd, size_t n, std::string* out) {
  out->resize(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, out->data() + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// Reads until EOF (true) or error/timeout (false).
inline bool ReadToEof(int fd, std::string* out, size_t limit = size_t{1} << 30) {
  char buf[65536];
  while (out->size() < limit) {
    const ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) return true;
    out->append(buf, static_cast<size_t>(r));
  }
  return false;
}

// True if the server closed the connection (EOF or reset) within `timeout`.
inline bool PeerClosed(int fd, absl::Duration timeout) {
  pollfd p{fd, POLLIN, 0};
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (::poll(&p, 1, 50) > 0) {
      char c;
      const ssize_t r = ::recv(fd, &c, 1, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
  }
  return false;
}

inline std::string Frame(std::string_view payload) {
  std::string out(4, '\0');
  const uint32_t len = htonl(static_cast<uint32_t>(payload.size()));
  std::memcpy(out.data(), &len, 4);
  out.append(payload);
  return out;
}

inline uint32_t ReadLength(const uint8_t* p) {
  uint32_t len;
  std::memcpy(&len, p, 4);
  return ntohl(len);
}

// What the echo handlers of one test saw; touched only on the loop thread.
struct EchoStats {
  int opened = 0;
  int closed = 0;
  uint64_t frames = 0;
  uint64_t max_queued = 0;
  uint64_t max_input_capacity = 0;
  bool saw_backpressure = false;
  int writable = 0;
  std::vector<absl::Status> close_reasons;
};

// Echoes every whole frame back as its own chunk; leaves partial frames.
class EchoHandler : public ConnectionHandler {
 public:
  explicit EchoHandler(EchoStats* stats, uint32_t max_frame = 16 << 20)
      : stats_(stats), max_frame_(max_frame) {}

  void OnOpen(Connection& conn) override { ++stats_->opened; }

  void OnData(Connection& conn, InputBuffer& input) override {
    while (input.size() >= 4) {
      const uint32_t len = ReadLength(input.readable().data());
      if (len > max_frame_) {
        conn.Close(absl::InvalidArgumentError("frame too large"));
        return;
      }
      if (input.size() < 4 + size_t{len}) {
        input.ExpectAtLeast(4 + size_t{len});
        break;
      }
      conn.Send(std::string(input.view().substr(0, 4 + size_t{len})));
      input.Consume(4 + size_t{len});
      ++stats_->frames;
      stats_->max_queued = std::max(stats_->max_queued, conn.queued_bytes());
      stats_->saw_backpressure |= conn.receive_blocked_by_backpressure();
    }
    stats_->max_input_capacity =
        std::max<uint64_t>(stats_->max_input_capacity, conn.input_capacity());
  }

  void OnWritable(Connection& conn) override { ++stats_->writable; }

  void OnClose(Connection& conn, absl::Status reason) override {
    ++stats_->closed;
    stats_->close_reasons.push_back(std::move(reason));
  }

 private:
  EchoStats* stats_;
  uint32_t max_frame_;
};

// Collects NetLog lines for the lifetime of the object.
class CapturedLog {
 public:
  CapturedLog() {
    SetNetLogSink([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~CapturedLog() { SetNetLogSink(nullptr); }
  bool Contains(std::string_view needle) {
    absl::MutexLock lock(&mu_);
    for (const std::string& l : lines_) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace sluice::net::testing
