// What one client may make a connection (or a listener) hold: connection caps in total and per
// peer address, the descriptor budget, the request read timeout against trickling clients,
// accept back-off when the process is out of descriptors, file ranges that borrow their
// descriptor instead of duplicating it, and the output accounting handlers use to bound what
// they queue. Real sockets on 127.0.0.1 (and 127.0.0.2 for a second address); the reactor runs
// on the test thread, bounded in time.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "net/reactor/connection.h"
#include "net/reactor/listener.h"
#include "net/reactor/net_log.h"
#include "net/reactor/reactor.h"
#include "tests/net/net_test_util.h"

namespace sluice::net {
namespace {

using testing::ConnectTo;
using testing::EchoHandler;
using testing::EchoStats;
using testing::Frame;
using testing::PeerClosed;
using testing::ReadExactly;
using testing::RunUntil;
using testing::WriteAll;

// Every NetLog line while alive, countable.
class LogLines {
 public:
  LogLines() {
    SetNetLogSink([this](std::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  ~LogLines() { SetNetLogSink(nullptr); }
  int Count(std::string_view needle) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& l : lines_) n += l.find(needle) != std::string::npos;
    return n;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

size_t OpenFds() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// A client socket whose source address is `source` (e.g. "127.0.0.2"), connected to port.
int ConnectFrom(const char* source, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

class ConnectionLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create();
    ASSERT_TRUE(r.ok()) << r.status();
    reactor_ = std::move(*r);
  }
  void TearDown() override {
    listeners_.clear();
    reactor_.reset();
  }

  uint16_t ListenEcho(ListenerOptions options = {}) {
    auto l = Listener::Create(*reactor_, std::move(options), [this](Connection&) {
      return std::make_unique<EchoHandler>(&stats_);
    });
    EXPECT_TRUE(l.ok()) << l.status();
    listeners_.push_back(std::move(*l));
    return listeners_.back()->port();
  }
  Listener& listener(size_t i = 0) { return *listeners_[i]; }

  std::unique_ptr<Reactor> reactor_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  EchoStats stats_;
};

// ---------------------------------------------------------------------------------------------
// Connection caps.

TEST_F(ConnectionLimitsTest, PerAddressCapRefusesTheExcessAndSparesOtherAddresses) {
  LogLines log;
  ListenerOptions options;
  options.max_connections_per_ip = 2;
  const uint16_t port = ListenEcho(options);
  std::vector<int> fds;
  for (int i = 0; i < 2; ++i) fds.push_back(ConnectTo(port));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 2; }));
  // One address over its cap: closed at accept, however often it tries; one log line.
  std::vector<int> refused;
  for (int i = 0; i < 20; ++i) refused.push_back(ConnectTo(port));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return listener().rejected() == 20; }));
  for (int fd : refused) {
    EXPECT_TRUE(PeerClosed(fd, absl::Seconds(5)));
    ::close(fd);
  }
  EXPECT_EQ(stats_.opened, 2);
  EXPECT_EQ(log.Count("max.connections.per.ip"), 1) << "rejections are logged rate-limited";
  // Another address is not affected.
  const int other = ConnectFrom("127.0.0.2", port);
  ASSERT_GE(other, 0);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 3; }));
  ASSERT_TRUE(WriteAll(other, Frame("hello")));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.frames == 1; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(50));  // the echo goes out
  std::string echoed;
  ASSERT_TRUE(ReadExactly(other, 9, &echoed));
  // A slot given back is usable again.
  ::close(fds[0]);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return listener().live_connections() == 2; }));
  fds[0] = ConnectTo(port);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 4; }));
  EXPECT_EQ(listener().rejected(), 20u);
  for (int fd : fds) ::close(fd);
  ::close(other);
}

TEST_F(ConnectionLimitsTest, OneLimiterCapsTheConnectionsOfEveryListenerSharingIt) {
  ListenerOptions options;
  options.limiter = std::make_shared<ConnectionLimiter>(3, 0);
  const uint16_t a = ListenEcho(options);
  const uint16_t b = ListenEcho(options);
  std::vector<int> fds = {ConnectTo(a), ConnectTo(a), ConnectTo(b)};
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 3; }));
  const int extra = ConnectTo(b);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return listener(1).rejected() == 1; }));
  EXPECT_TRUE(PeerClosed(extra, absl::Seconds(5)));
  EXPECT_EQ(options.limiter->live(), 3u);
  ::close(extra);
  for (int fd : fds) ::close(fd);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return options.limiter->live() == 0; }));
}

// ---------------------------------------------------------------------------------------------
// Descriptors.

// A handler that queues `ranges` file ranges of `file` when it opens, and nothing else.
class FileRangesHandler : public ConnectionHandler {
 public:
  FileRangesHandler(std::shared_ptr<const void> owner, int fd, int ranges, Connection** out)
      : owner_(std::move(owner)), fd_(fd), ranges_(ranges), out_(out) {}
  void OnOpen(Connection& conn) override {
    *out_ = &conn;
    for (int i = 0; i < ranges_; ++i) {
      conn.Send(FileRange{FileRef::Borrow(fd_, owner_), 0, 4096});
    }
  }
  void OnData(Connection&, InputBuffer& input) override { input.Consume(input.size()); }
  void OnOutputBelow(Connection&) override { ++below; }
  void OnClose(Connection& conn, absl::Status) override {
    if (*out_ == &conn) *out_ = nullptr;
  }
  int below = 0;

 private:
  std::shared_ptr<const void> owner_;
  int fd_;
  int ranges_;
  Connection** out_;
};

// A file of `size` bytes, unlinked; the returned shared fd closes with its last reference.
std::shared_ptr<int> TempFile(size_t size) {
  char path[] = "/tmp/sluice-limits-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return nullptr;
  ::unlink(path);
  std::string bytes(size, 'f');
  if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return nullptr;
  return std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
}

TEST_F(ConnectionLimitsTest, QueuedFileRangesBorrowTheirFileInsteadOfADescriptorEach) {
  std::shared_ptr<int> file = TempFile(4096);
  ASSERT_NE(file, nullptr);
  Connection* conn = nullptr;
  FileRangesHandler* handler = nullptr;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    auto h = std::make_unique<FileRangesHandler>(file, *file, 5000, &conn);
    handler = h.get();
    return h;
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(std::move(*l));
  const size_t fds_before = OpenFds();
  // A client that does not read: most ranges stay queued.
  const int client = ConnectTo(listener().port(), absl::Seconds(20), 4096);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return conn != nullptr; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(200));
  ASSERT_NE(conn, nullptr);
  EXPECT_GT(conn->queued_file_ranges(), 4000u);
  EXPECT_EQ(conn->queued_memory_bytes(), 0u);
  // The socket, its peer and a splice pipe; not one descriptor per range.
  EXPECT_LE(OpenFds(), fds_before + 6);
  // The ranges keep the file open after its owner lets go, and drain once read.
  const int raw_fd = *file;
  file.reset();
  EXPECT_GE(::fcntl(raw_fd, F_GETFD), 0) << "the queued ranges keep the file open";
  conn->NotifyWhenOutputBelow(0, 100);
  std::atomic<bool> reading{true};
  std::thread reader([&] {
    char buf[65536];
    size_t total = 0;
    while (total < size_t{5000} * 4096 && reading.load()) {
      const ssize_t n = ::recv(client, buf, sizeof(buf), 0);
      if (n <= 0) break;
      total += static_cast<size_t>(n);
    }
  });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return handler->below == 1; }));
  EXPECT_LE(conn->queued_file_ranges(), 100u);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return conn->queued_file_ranges() == 0; }));
  reading.store(false);
  ::shutdown(client, SHUT_RDWR);
  reader.join();
  ::close(client);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return conn == nullptr; }));
  RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; });
  EXPECT_LT(::fcntl(raw_fd, F_GETFD), 0) << "the last range sent closes the file";
}

TEST_F(ConnectionLimitsTest, DescriptorBudgetRefusesConnectionsAndSplicePipesBeyondIt) {
  LogLines log;
  std::shared_ptr<int> file = TempFile(1 << 20);
  ASSERT_NE(file, nullptr);
  auto budget = std::make_shared<FdBudget>(2);
  ListenerOptions options;
  options.fd_budget = budget;
  Connection* conn = nullptr;
  auto l = Listener::Create(*reactor_, options, [&](Connection&) {
    return std::make_unique<FileRangesHandler>(file, *file, 1, &conn);
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(std::move(*l));
  // The first connection takes 1; its splice pipe would take 2 more: it sends with sendfile.
  const int first = ConnectTo(listener().port());
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return conn != nullptr && conn->queued_bytes() == 0; }));
  std::string got;
  ASSERT_TRUE(ReadExactly(first, 4096, &got));
  EXPECT_EQ(got, std::string(4096, 'f'));
  EXPECT_EQ(budget->used(), 1u);
  const int second = ConnectTo(listener().port());
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return listener().accepted() == 2; }));
  EXPECT_EQ(budget->used(), 2u);
  // The budget is spent: the next one is closed at accept, with a log line.
  const int third = ConnectTo(listener().port());
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return listener().rejected() == 1; }));
  EXPECT_TRUE(PeerClosed(third, absl::Seconds(5)));
  EXPECT_EQ(log.Count("file descriptors are in use"), 1);
  ::close(third);
  ::close(first);
  ::close(second);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return budget->used() == 0; }));
}

TEST_F(ConnectionLimitsTest, AcceptBacksOffWhileTheProcessIsOutOfDescriptorsAndThenRecovers) {
  LogLines log;
  // Single-shot: every accept is a new request, and the kernel reads the descriptor limit when
  // it prepares one (a multishot accept would keep the limit it started with).
  ListenerOptions options;
  options.accept_mode = AcceptMode::kSingleShot;
  const uint16_t port = ListenEcho(options);
  // One connection first: UBSan's vptr check of a type it has not seen yet needs a spare
  // descriptor (a pipe), so it must see the accept completion before descriptors run out.
  const int warm = ConnectTo(port);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 1; }));
  ::close(warm);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.closed == 1; }));
  // Client sockets first (connect needs no new descriptor), then no descriptor left for the
  // server side of their accept.
  std::vector<int> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_GE(clients.back(), 0);
  }
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // A new descriptor takes the lowest free number below the limit: a limit at the lowest free
  // number leaves none. (The accept already armed keeps the old limit: the first client below
  // is accepted with it; the accepts armed after it fail.)
  int lowest_free = 0;
  while (::fcntl(lowest_free, F_GETFD) >= 0) ++lowest_free;
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : clients) {
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)), 0);
  }
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(1500));
  const uint64_t errors = listener().accept_errors();
  ::setrlimit(RLIMIT_NOFILE, &saved);
  EXPECT_GE(errors, 1u);
  // Backing off 20 ms, 40 ms, ... up to 1 s: a handful of tries in 1.5 s, not a busy loop.
  EXPECT_LE(errors, 8u);
  EXPECT_EQ(log.Count("accept failed"), 1) << "one line per 10 s";
  // Descriptors are back: the waiting clients are served (within the longest back-off).
  ASSERT_TRUE(RunUntil(
      *reactor_, [&] { return stats_.opened == 5; }, absl::Seconds(5)));
  ASSERT_TRUE(WriteAll(clients[0], Frame("ping")));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.frames == 1; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(50));  // the echo goes out
  std::string echoed;
  ASSERT_TRUE(ReadExactly(clients[0], 8, &echoed));
  for (int fd : clients) ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// Request read timeout.

class RequestReadTimeoutTest : public ConnectionLimitsTest {
 protected:
  uint16_t Listen(absl::Duration timeout, uint64_t min_rate) {
    ListenerOptions options;
    options.connection.request_read_timeout = timeout;
    options.connection.request_min_bytes_per_sec = min_rate;
    return ListenEcho(options);
  }
};

TEST_F(RequestReadTimeoutTest, ATricklingClientIsClosedAlthoughEveryByteResetsTheIdleTimer) {
  ListenerOptions options;
  options.connection.request_read_timeout = absl::Milliseconds(400);
  options.connection.request_min_bytes_per_sec = 1000;
  options.connection.idle_timeout = absl::Seconds(10);
  const uint16_t port = ListenEcho(options);
  const int fd = ConnectTo(port);
  // One whole frame first (a valid request), then a frame of 1000 bytes, one byte per 20 ms:
  // 50 B/s, far below the 1000 B/s minimum.
  ASSERT_TRUE(WriteAll(fd, Frame("ok")));
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread trickle([&] {
    std::string f = Frame(std::string(1000, 'x'));
    for (char c : f) {
      if (stop.load() || !WriteAll(fd, std::string(1, c))) return;
      ++sent;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const absl::Time start = absl::Now();
  ASSERT_TRUE(RunUntil(
      *reactor_, [&] { return stats_.closed == 1; }, absl::Seconds(10)));
  const absl::Duration took = absl::Now() - start;
  stop.store(true);
  trickle.join();
  ::close(fd);
  EXPECT_EQ(stats_.frames, 1u);
  ASSERT_EQ(stats_.close_reasons.size(), 1u);
  EXPECT_TRUE(absl::IsDeadlineExceeded(stats_.close_reasons[0])) << stats_.close_reasons[0];
  EXPECT_NE(stats_.close_reasons[0].message().find("request read timeout"), std::string::npos);
  // 400 ms plus 1 ms per byte received (about 25 of them): well under a second.
  EXPECT_LT(took, absl::Seconds(2));
  EXPECT_LT(sent.load(), 200);
}

TEST_F(RequestReadTimeoutTest, ALargeFrameOnASlowButSteadyLinkCompletes) {
  // 300 ms plus 1 s per 100 KB: a 256 KiB frame sent at about 200 KB/s (1.3 s) is fine.
  const uint16_t port = Listen(absl::Milliseconds(300), 100'000);
  const int fd = ConnectTo(port);
  const std::string frame = Frame(std::string(256 * 1024, 'L'));
  std::atomic<bool> wrote{false};
  std::thread writer([&] {
    for (size_t off = 0; off < frame.size(); off += 4096) {
      if (!WriteAll(fd, std::string_view(frame).substr(off, 4096))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    wrote.store(true);
  });
  std::string echoed;
  std::atomic<bool> read_back{false};
  std::thread reader([&] { read_back.store(ReadExactly(fd, frame.size(), &echoed)); });
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return read_back.load(); }, absl::Seconds(10)));
  writer.join();
  reader.join();
  EXPECT_TRUE(wrote.load());
  EXPECT_EQ(stats_.frames, 1u);
  EXPECT_EQ(stats_.closed, 0);
  ::close(fd);
}

TEST_F(RequestReadTimeoutTest, SilenceBetweenWholeFramesIsNotTimed) {
  const uint16_t port = Listen(absl::Milliseconds(200), 1000);
  const int fd = ConnectTo(port);
  ASSERT_TRUE(WriteAll(fd, Frame("one")));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return stats_.frames == 1; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(600));
  EXPECT_EQ(stats_.closed, 0);
}

TEST_F(RequestReadTimeoutTest, EachFrameGetsItsOwnTimeoutWhenFramesArriveBackToBack) {
  const uint16_t port = Listen(absl::Milliseconds(200), 1000);
  const int fd = ConnectTo(port);
  // Every write ends a frame and begins the next: the buffer is never empty for 8 x 100 ms,
  // but no frame takes longer than 100 ms.
  ASSERT_TRUE(WriteAll(fd, Frame("frame-0").substr(0, 5)));
  for (int i = 0; i < 8; ++i) {
    RunUntil(
        *reactor_, [] { return false; }, absl::Milliseconds(100));
    const std::string next = Frame(absl::StrCat("frame-", i + 1));
    ASSERT_TRUE(WriteAll(fd, Frame(absl::StrCat("frame-", i)).substr(5) + next.substr(0, 5)));
  }
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.frames == 8; }));
  EXPECT_EQ(stats_.closed, 0);
  // The last one never completes: closed after its timeout.
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return stats_.closed == 1; }, absl::Seconds(3)));
  ::close(fd);
}

// A handler that stops reading (as one does while its client has too much unread output).
class PausingHandler : public ConnectionHandler {
 public:
  void OnData(Connection& conn, InputBuffer& input) override {
    conn.PauseReceive();  // leaves everything, a partial frame included, in the buffer
    ++calls;
  }
  void OnClose(Connection&, absl::Status reason) override { closed = true; }
  int calls = 0;
  bool closed = false;
};

TEST_F(RequestReadTimeoutTest, TheClockStopsWhileTheHandlerPausesReceiving) {
  ListenerOptions options;
  options.connection.request_read_timeout = absl::Milliseconds(150);
  PausingHandler* handler = nullptr;
  auto l = Listener::Create(*reactor_, options, [&](Connection&) {
    auto h = std::make_unique<PausingHandler>();
    handler = h.get();
    return h;
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(std::move(*l));
  const int fd = ConnectTo(listener().port());
  ASSERT_TRUE(WriteAll(fd, "abc"));
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return handler != nullptr && handler->calls == 1; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(600));
  EXPECT_FALSE(handler->closed) << "paused by the broker, not slow by the client";
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// Output accounting.

// Queues `count` byte chunks of `size` on open.
class ByteChunksHandler : public ConnectionHandler {
 public:
  ByteChunksHandler(int count, size_t size, Connection** out)
      : count_(count), size_(size), out_(out) {}
  void OnOpen(Connection& conn) override {
    *out_ = &conn;
    for (int i = 0; i < count_; ++i) conn.Send(std::string(size_, 'b'));
  }
  void OnData(Connection&, InputBuffer& input) override { input.Consume(input.size()); }
  void OnOutputBelow(Connection& conn) override {
    ++below;
    memory_when_notified = conn.queued_memory_bytes();
  }
  void OnClose(Connection&, absl::Status) override { *out_ = nullptr; }
  int below = 0;
  uint64_t memory_when_notified = 0;

 private:
  int count_;
  size_t size_;
  Connection** out_;
};

TEST_F(ConnectionLimitsTest, OutputBelowFiresOnceWhenQueuedMemoryFallsToTheLevel) {
  Connection* conn = nullptr;
  ByteChunksHandler* handler = nullptr;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    auto h = std::make_unique<ByteChunksHandler>(64, 256 * 1024, &conn);
    handler = h.get();
    return h;
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(std::move(*l));
  const int client = ConnectTo(listener().port(), absl::Seconds(20), 4096);
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return conn != nullptr; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(200));
  // A chunk counts whole until its last byte is sent.
  EXPECT_GE(conn->queued_memory_bytes(), uint64_t{32} * 256 * 1024);
  EXPECT_EQ(conn->queued_memory_bytes() % (256 * 1024), 0u);
  EXPECT_EQ(conn->queued_file_ranges(), 0u);
  conn->NotifyWhenOutputBelow(4 * 256 * 1024, 0);
  std::string all;
  std::thread reader([&] { ReadExactly(client, size_t{64} * 256 * 1024, &all); });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return conn->queued_bytes() == 0; }));
  reader.join();
  EXPECT_EQ(handler->below, 1);
  EXPECT_LE(handler->memory_when_notified, uint64_t{4} * 256 * 1024);
  EXPECT_EQ(conn->queued_memory_bytes(), 0u);
  ::close(client);
}

// ---------------------------------------------------------------------------------------------
// Fairness: handlers that spread their work over loop iterations.

// Echoes one frame per OnData call, then asks for the rest later.
class OneFrameAtATimeHandler : public ConnectionHandler {
 public:
  void OnData(Connection& conn, InputBuffer& input) override {
    ++calls;
    if (input.size() < 4) return;
    const uint32_t len = testing::ReadLength(input.readable().data());
    if (input.size() < 4 + size_t{len}) {
      input.ExpectAtLeast(4 + size_t{len});
      return;
    }
    conn.Send(std::string(input.view().substr(0, 4 + size_t{len})));
    input.Consume(4 + size_t{len});
    ++frames;
    conn.DeliverBufferedLater();
  }
  void OnClose(Connection&, absl::Status) override {}
  int calls = 0;
  int frames = 0;
};

TEST_F(ConnectionLimitsTest, BufferedFramesLeftForLaterAreDeliveredWithoutMoreBytes) {
  OneFrameAtATimeHandler* handler = nullptr;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    auto h = std::make_unique<OneFrameAtATimeHandler>();
    handler = h.get();
    return h;
  });
  ASSERT_TRUE(l.ok());
  listeners_.push_back(std::move(*l));
  const int fd = ConnectTo(listener().port());
  std::string all;
  for (int i = 0; i < 10; ++i) all += Frame(absl::StrCat("frame ", i));
  ASSERT_TRUE(WriteAll(fd, all));  // one write: the client sends nothing after it
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return handler != nullptr && handler->frames == 10; }));
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(50));
  std::string echoed;
  ASSERT_TRUE(ReadExactly(fd, all.size(), &echoed));
  EXPECT_EQ(echoed, all);
  EXPECT_GE(handler->calls, 10);
  ::close(fd);
}

TEST(ReactorBackgroundTest, BackgroundWorkIsSpreadOverIterationsWithTimersBetween) {
  ReactorOptions options;
  options.background_budget = absl::Milliseconds(2);
  auto r = Reactor::Create(options);
  ASSERT_TRUE(r.ok()) << r.status();
  Reactor& reactor = **r;
  int done = 0;
  // 40 tasks of 1 ms each: at most about 2 ms of them per iteration (at least one).
  for (int i = 0; i < 40; ++i) {
    reactor.PostBackground([&done] {
      const absl::Time until = absl::Now() + absl::Milliseconds(1);
      while (absl::Now() < until) {
      }
      ++done;
    });
  }
  int iterations = 0;
  int most_in_one = 0;
  int ticks = 0;
  reactor.RunAfter(absl::ZeroDuration(), [&ticks] { ++ticks; });
  while (done < 40 && iterations < 1000) {
    const int before = done;
    ASSERT_TRUE(reactor.RunOnce(absl::Seconds(1)).ok());  // returns at once: work is queued
    most_in_one = std::max(most_in_one, done - before);
    ++iterations;
  }
  EXPECT_EQ(done, 40);
  EXPECT_LE(most_in_one, 3);
  EXPECT_GE(iterations, 14);
  EXPECT_EQ(ticks, 1) << "a due timer ran in the first iteration, not after the backlog";
  EXPECT_EQ(reactor.background_tasks(), 0u);
}

}  // namespace
}  // namespace sluice::net
