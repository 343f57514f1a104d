#include "bench/harness/limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/clock.h"

namespace sluice::bench {

absl::StatusOr<double> MeasureLoopbackTcp(double seconds, int chunk) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    close(listener);
    return absl::InternalError(absl::StrCat("listen: ", strerror(err)));
  }
  std::atomic<uint64_t> received{0};
  std::thread reader([&] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    std::vector<char> buf(1 << 20);
    while (true) {
      const ssize_t n = read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      received.fetch_add(n, std::memory_order_relaxed);
    }
    close(fd);
  });
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    shutdown(listener, SHUT_RDWR);
    close(listener);
    reader.join();
    return absl::InternalError(absl::StrCat("connect: ", strerror(err)));
  }
  std::vector<char> buf(chunk, 'x');
  const int64_t start = MonoNanos();
  const int64_t end = start + static_cast<int64_t>(seconds * 1e9);
  uint64_t at_start = 0;
  bool failed = false;
  while (MonoNanos() < end) {
    const ssize_t n = write(fd, buf.data(), buf.size());
    if (n < 0 && errno != EINTR) {
      failed = true;
      break;
    }
  }
  const double elapsed = (MonoNanos() - start) / 1e9;
  const uint64_t got = received.load() - at_start;
  close(fd);
  reader.join();
  close(listener);
  if (failed) return absl::InternalError(absl::StrCat("write: ", strerror(errno)));
  return got / elapsed;
}

double MeasureMemcpy(double seconds) {
  constexpr size_t kSize = 64 << 20;  // Well beyond the last-level cache.
  std::vector<char> a(kSize, 1), b(kSize, 2);
  memcpy(b.data(), a.data(), kSize);  // Fault the pages in before timing.
  const int64_t start = MonoNanos();
  const int64_t end = start + static_cast<int64_t>(seconds * 1e9);
  uint64_t copied = 0;
  for (int i = 0; MonoNanos() < end; ++i) {
    char* dst = (i & 1) ? a.data() : b.data();
    const char* src = (i & 1) ? b.data() : a.data();
    memcpy(dst, src, kSize);
    copied += kSize;
  }
  const double elapsed = (MonoNanos() - start) / 1e9;
  // Keep the copies observable so they are not optimised away.
  volatile char sink = a[kSize / 2] + b[kSize / 3];
  (void)sink;
  return copied / elapsed;
}

}  // namespace sluice::bench
