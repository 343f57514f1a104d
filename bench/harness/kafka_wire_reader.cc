#include "bench/harness/kafka_wire_reader.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/clock.h"
#include "bench/harness/driver.h"

namespace sluice::bench {

namespace {

constexpr int16_t kFetchKey = 1;
constexpr int16_t kFetchVersion = 4;
constexpr int32_t kResponseMaxBytes = 64 << 20;
constexpr int32_t kPartitionMaxBytes = 16 << 20;
// A record batch: baseOffset(8) batchLength(4) partitionLeaderEpoch(4) magic(1) crc(4)
// attributes(2) lastOffsetDelta(4) ...
constexpr size_t kBatchLengthAt = 8;
constexpr size_t kLastOffsetDeltaAt = 23;
constexpr size_t kBatchHeaderBytes = 27;

class Writer {
 public:
  void I8(int8_t v) { b_.push_back(static_cast<uint8_t>(v)); }
  void I16(int16_t v) { Big(static_cast<uint16_t>(v), 2); }
  void I32(int32_t v) { Big(static_cast<uint32_t>(v), 4); }
  void I64(int64_t v) { Big(static_cast<uint64_t>(v), 8); }
  void Str(const std::string& s) {
    I16(static_cast<int16_t>(s.size()));
    b_.insert(b_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t> Framed() const {
    std::vector<uint8_t> out;
    const uint32_t n = static_cast<uint32_t>(b_.size());
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
    out.insert(out.end(), b_.begin(), b_.end());
    return out;
  }

 private:
  void Big(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> b_;
};

// Bounds-checked big-endian reads over one response.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  const uint8_t* at(size_t i) const { return p_ + i; }
  int64_t Big(int n) {
    if (!Need(n)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | p_[pos_ + i];
    pos_ += n;
    if (n == 2) return static_cast<int16_t>(v);
    if (n == 4) return static_cast<int32_t>(v);
    return static_cast<int64_t>(v);
  }
  void Skip(size_t n) {
    if (Need(n)) pos_ += n;
  }

 private:
  bool Need(size_t n) {
    if (n_ - pos_ < n) ok_ = false;
    return ok_;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  bool ok_ = true;
};

int64_t BigAt(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = v << 8 | p[i];
  return n == 4 ? static_cast<int32_t>(v) : static_cast<int64_t>(v);
}

absl::Status ReadFully(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::ErrnoToStatus(errno, "recv");
    if (r == 0) return absl::UnavailableError("broker closed the connection");
    p += r;
    n -= static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status WriteFully(int fd, const std::vector<uint8_t>& b) {
  size_t off = 0;
  while (off < b.size()) {
    const ssize_t r = ::send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return absl::ErrnoToStatus(errno, "send");
    off += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Connect(const std::string& broker) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(broker, &host, &port); !s.ok()) return s;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", host, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("connect to ", broker, " failed"));
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

absl::StatusOr<WireReplayResult> ReplayKafkaWire(const std::string& broker,
                                                 const std::string& topic, int partitions,
                                                 int timeout_ms) {
  if (partitions <= 0) return absl::InvalidArgumentError("no partitions to replay");
  absl::StatusOr<int> fd = Connect(broker);
  if (!fd.ok()) return fd.status();
  struct Cleanup {
    int fd;
    ~Cleanup() { ::close(fd); }
  } cleanup{*fd};

  std::vector<int64_t> next(partitions, 0);
  std::vector<int64_t> end(partitions, -1);  // high watermark of the first answer
  std::vector<uint8_t> buf;
  WireReplayResult out;
  const int64_t start = MonoNanos();
  const int64_t deadline = start + int64_t{timeout_ms} * 1000000;
  for (int32_t correlation = 1;; ++correlation) {
    bool done = true;
    for (int p = 0; p < partitions; ++p) done = done && end[p] >= 0 && next[p] >= end[p];
    if (done) break;
    if (MonoNanos() > deadline) return absl::DeadlineExceededError("wire replay timed out");

    Writer w;
    w.I16(kFetchKey);
    w.I16(kFetchVersion);
    w.I32(correlation);
    w.Str("sluice-bench-wire");
    w.I32(-1);   // replica id: a consumer
    w.I32(100);  // max wait ms
    w.I32(1);    // min bytes
    w.I32(kResponseMaxBytes);
    w.I8(0);  // read uncommitted
    w.I32(1);
    w.Str(topic);
    int32_t asked = 0;
    for (int p = 0; p < partitions; ++p) asked += (end[p] < 0 || next[p] < end[p]) ? 1 : 0;
    w.I32(asked);
    for (int p = 0; p < partitions; ++p) {
      if (end[p] >= 0 && next[p] >= end[p]) continue;
      w.I32(p);
      w.I64(next[p]);
      w.I32(kPartitionMaxBytes);
    }
    if (absl::Status s = WriteFully(*fd, w.Framed()); !s.ok()) return s;

    uint8_t size_be[4];
    if (absl::Status s = ReadFully(*fd, size_be, 4); !s.ok()) return s;
    const int64_t size = BigAt(size_be, 4);
    if (size < 8 || size > int64_t{kResponseMaxBytes} + (1 << 20)) {
      return absl::DataLossError(absl::StrCat("fetch response of ", size, " bytes"));
    }
    if (buf.size() < static_cast<size_t>(size)) buf.resize(static_cast<size_t>(size));
    if (absl::Status s = ReadFully(*fd, buf.data(), static_cast<size_t>(size)); !s.ok()) return s;
    ++out.fetches;

    Reader r(buf.data(), static_cast<size_t>(size));
    if (r.Big(4) != correlation) return absl::DataLossError("response out of order");
    r.Big(4);  // throttle time
    const int64_t topics = r.Big(4);
    for (int64_t t = 0; t < topics && r.ok(); ++t) {
      r.Skip(static_cast<size_t>(r.Big(2)));  // topic name
      const int64_t parts = r.Big(4);
      for (int64_t i = 0; i < parts && r.ok(); ++i) {
        const int64_t p = r.Big(4);
        const int64_t error = r.Big(2);
        const int64_t high_watermark = r.Big(8);
        r.Big(8);                          // last stable offset
        const int64_t aborted = r.Big(4);  // nullable array
        if (aborted > 0) r.Skip(static_cast<size_t>(aborted) * 16);
        const int64_t records = r.Big(4);  // nullable bytes
        if (!r.ok()) break;
        if (p < 0 || p >= partitions) return absl::DataLossError("unknown partition in answer");
        if (error != 0) {
          return absl::FailedPreconditionError(
              absl::StrCat("partition ", p, " answered error code ", error));
        }
        if (end[p] < 0) end[p] = high_watermark;
        if (records <= 0) continue;
        const size_t from = r.pos();
        r.Skip(static_cast<size_t>(records));
        if (!r.ok()) break;
        // Walk whole batches; a cut batch at the end is fetched again next time.
        size_t at = 0;
        const size_t n = static_cast<size_t>(records);
        while (n - at >= kBatchHeaderBytes) {
          const uint8_t* b = r.at(from + at);
          const int64_t base = BigAt(b, 8);
          const int64_t length = BigAt(b + kBatchLengthAt, 4);
          const size_t total = 12 + static_cast<size_t>(length);
          if (length < 0 || n - at < total) break;
          const int64_t last = base + BigAt(b + kLastOffsetDeltaAt, 4);
          if (last >= next[p]) {
            out.messages += static_cast<uint64_t>(last + 1 - std::max(base, next[p]));
            next[p] = last + 1;
          }
          out.record_bytes += total;
          ++out.batches;
          at += total;
        }
      }
    }
    if (!r.ok()) return absl::DataLossError("truncated fetch response");
  }
  out.seconds = static_cast<double>(MonoNanos() - start) / 1e9;
  return out;
}

}  // namespace sluice::bench
