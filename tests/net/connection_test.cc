// Connections end to end over real sockets on 127.0.0.1: echo with pipelining, backpressure,
// file-range sends, closes, timeouts and limits. The reactor runs on the test thread (driven
// by RunUntil, bounded in time) and clients are blocking sockets with timeouts on threads.
#include "net/reactor/connection.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "net/reactor/listener.h"
#include "net/reactor/reactor.h"
#include "net/reactor/reactor_pool.h"
#include "tests/net/net_test_util.h"

namespace sluice::net {
namespace {

using testing::CapturedLog;
using testing::ConnectTo;
using testing::EchoHandler;
using testing::EchoStats;
using testing::Frame;
using testing::PeerClosed;
using testing::ReadExactly;
using testing::ReadToEof;
using testing::RunUntil;
using testing::WriteAll;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Reactor::Create();
    ASSERT_TRUE(r.ok()) << r.status();
    reactor_ = std::move(*r);
  }
  void TearDown() override {
    listener_.reset();
    reactor_.reset();
  }

  // An echo listener; returns its port.
  uint16_t ListenEcho(ListenerOptions options = {}) {
    auto l = Listener::Create(*reactor_, std::move(options), [this](Connection&) {
      return std::make_unique<EchoHandler>(&stats_);
    });
    EXPECT_TRUE(l.ok()) << l.status();
    listener_ = std::move(*l);
    return listener_->port();
  }

  std::unique_ptr<Reactor> reactor_;
  std::unique_ptr<Listener> listener_;
  EchoStats stats_;
};

TEST_F(ConnectionTest, EchoManyConcurrentClientsWithPipelinedRequestsInOrder) {
  const uint16_t port = ListenEcho();
  constexpr int kClients = 24;
  constexpr int kBatches = 10;
  constexpr int kPipelined = 20;  // requests written before any response is read
  std::atomic<int> ok_clients{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const int fd = ConnectTo(port);
      if (fd < 0) return;
      std::mt19937 rng(c);
      bool ok = true;
      for (int b = 0; b < kBatches && ok; ++b) {
        std::vector<std::string> expected;
        std::string batch;
        for (int i = 0; i < kPipelined; ++i) {
          std::string payload = absl::StrCat(c, "/", b, "/", i, ":");
          payload.append(rng() % 2000, static_cast<char>('a' + i % 26));
          expected.push_back(Frame(payload));
          batch += expected.back();
        }
        ok = WriteAll(fd, batch);
        for (int i = 0; i < kPipelined && ok; ++i) {
          std::string got;
          ok = ReadExactly(fd, expected[i].size(), &got) && got == expected[i];
        }
      }
      ::close(fd);
      if (ok) ok_clients.fetch_add(1);
    });
  }
  std::thread joiner([&] {
    for (std::thread& t : clients) t.join();
    done = true;
  });
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return done.load(); }, absl::Seconds(60)));
  joiner.join();
  EXPECT_EQ(ok_clients.load(), kClients);
  EXPECT_EQ(stats_.frames, uint64_t{kClients} * kBatches * kPipelined);
  EXPECT_EQ(stats_.opened, kClients);
  // Every client closed at a frame boundary: a clean close.
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.closed == kClients; }));
  for (const absl::Status& s : stats_.close_reasons) EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
}

TEST_F(ConnectionTest, LargeTransferToSlowReaderKeepsQueuedBytesBounded) {
  constexpr uint64_t kHighWatermark = 1 << 20;
  ListenerOptions options;
  options.connection.send_high_watermark = kHighWatermark;
  const uint16_t port = ListenEcho(options);
  constexpr size_t kFrame = 64 * 1024 - 4;
  constexpr size_t kFrames = 1024;  // 64 MiB each way
  std::atomic<bool> writer_ok{false};
  std::atomic<bool> reader_ok{false};
  std::atomic<bool> done{false};
  std::thread client([&] {
    const int fd = ConnectTo(port, absl::Seconds(60));
    ASSERT_GE(fd, 0);
    const std::string frame = Frame(RandomBytes(kFrame, 7));
    std::thread writer([&] {
      bool ok = true;
      for (size_t i = 0; i < kFrames && ok; ++i) ok = WriteAll(fd, frame);
      writer_ok = ok;
    });
    // Slow at first: nothing read for a while, so the server must push back.
    absl::SleepFor(absl::Milliseconds(500));
    bool ok = true;
    std::string got;
    for (size_t i = 0; i < kFrames && ok; ++i) {
      ok = ReadExactly(fd, frame.size(), &got) && got == frame;
      if (i < 64) absl::SleepFor(absl::Milliseconds(2));
    }
    reader_ok = ok;
    writer.join();
    ::close(fd);
    done = true;
  });
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return done.load(); }, absl::Seconds(120)));
  client.join();
  EXPECT_TRUE(writer_ok.load());
  EXPECT_TRUE(reader_ok.load());
  EXPECT_EQ(stats_.frames, kFrames);
  EXPECT_TRUE(stats_.saw_backpressure);
  EXPECT_GT(stats_.writable, 0);  // told when the queue fell back below half
  // Queued output never exceeds the watermark by more than what one input buffer yields.
  EXPECT_LE(stats_.max_queued, kHighWatermark + 256 * 1024) << stats_.max_queued;
  EXPECT_LE(stats_.max_input_capacity, 2 * 64 * 1024 + 8);
}

// Sends bytes and file ranges interleaved on open, then closes after sending.
class FileSenderHandler : public ConnectionHandler {
 public:
  FileSenderHandler(std::shared_ptr<const FileRef> file, absl::Status* close_reason,
                    uint64_t* send_waits)
      : file_(std::move(file)), close_reason_(close_reason), send_waits_(send_waits) {}
  void OnOpen(Connection& conn) override {
    conn.Send(std::string("HEAD"));
    conn.Send(FileRange{file_, 1 * 1024 * 1024 + 123, 12 * 1024 * 1024});
    conn.Send(std::vector<uint8_t>{'M', 'I', 'D'}, FileRange{file_, 77, 100000},
              SharedBytes::FromString("TAIL"), FileRange{file_, 0, 1});
    file_.reset();  // the connection keeps its own references
    conn.CloseAfterSend();
  }
  void OnData(Connection&, InputBuffer& input) override { input.Consume(input.size()); }
  void OnClose(Connection& conn, absl::Status reason) override {
    *close_reason_ = std::move(reason);
    *send_waits_ = conn.send_waits();
  }

 private:
  std::shared_ptr<const FileRef> file_;
  absl::Status* close_reason_;
  uint64_t* send_waits_;
};

class FileRangeTest : public ConnectionTest, public ::testing::WithParamInterface<FileSendMode> {};

TEST_P(FileRangeTest, MiddleOfFileArrivesByteIdenticalAndInOrderWithByteChunks) {
  char path[] = "/tmp/sluice_net_fileXXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  const std::string contents = RandomBytes(16 * 1024 * 1024, 42);
  ASSERT_EQ(::pwrite(fd, contents.data(), contents.size(), 0),
            static_cast<ssize_t>(contents.size()));
  std::shared_ptr<const FileRef> file = FileRef::Adopt(fd);
  std::weak_ptr<const FileRef> weak = file;

  ListenerOptions options;
  options.connection.file_send_mode = GetParam();
  options.connection.send_high_watermark = 1 << 20;  // smaller than the ranges
  absl::Status close_reason = absl::UnknownError("not closed");
  uint64_t send_waits = 0;
  CapturedLog log;
  auto l = Listener::Create(*reactor_, options, [file, &close_reason, &send_waits](Connection&) {
    return std::make_unique<FileSenderHandler>(file, &close_reason, &send_waits);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  file.reset();

  const std::string expected = "HEAD" + contents.substr(1 * 1024 * 1024 + 123, 12 * 1024 * 1024) +
                               "MID" + contents.substr(77, 100000) + "TAIL" + contents.substr(0, 1);
  std::string got;
  std::atomic<bool> done{false};
  bool eof = false;
  std::thread client([&] {
    const int c = ConnectTo(listener_->port(), absl::Seconds(20), 64 * 1024);
    // Read slowly at first so splices/sendfile meet a full socket buffer (EAGAIN path).
    absl::SleepFor(absl::Milliseconds(200));
    eof = c >= 0 && ReadToEof(c, &got);
    ::close(c);
    done = true;
  });
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return done.load(); }, absl::Seconds(60)));
  client.join();
  EXPECT_TRUE(eof);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "content differs";
  // The client saw EOF (our FIN) before the loop saw the client's close: only once the
  // connection is gone has OnClose run.
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
  EXPECT_TRUE(close_reason.ok()) << close_reason;
  listener_.reset();            // its factory holds a reference too
  EXPECT_TRUE(weak.expired());  // the connection released its references
  // The slow start filled the socket: the file path waited for POLLOUT (for splice, this
  // shows a full socket came back as EAGAIN instead of parking an io-wq worker). kCopy sends
  // bytes with IORING_OP_SENDMSG, where io_uring does the waiting itself.
  if (GetParam() != FileSendMode::kCopy) EXPECT_GT(send_waits, 0u);
  if (GetParam() == FileSendMode::kAuto && reactor_->supports_splice()) {
    EXPECT_FALSE(log.Contains("fall back")) << "splice path not used";
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, FileRangeTest,
                         ::testing::Values(FileSendMode::kAuto, FileSendMode::kSendfile,
                                           FileSendMode::kCopy),
                         [](const auto& info) {
                           switch (info.param) {
                             case FileSendMode::kAuto:
                               return "Splice";
                             case FileSendMode::kSendfile:
                               return "Sendfile";
                             default:
                               return "Copy";
                           }
                         });

TEST_F(ConnectionTest, FileRangePastEndOfFileClosesWithDataLoss) {
  char path[] = "/tmp/sluice_net_shortXXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  ASSERT_EQ(::pwrite(fd, "0123456789", 10, 0), 10);
  std::shared_ptr<const FileRef> file = FileRef::Adopt(fd);
  absl::Status reason;
  struct Handler : ConnectionHandler {
    std::shared_ptr<const FileRef> file;
    absl::Status* reason;
    void OnOpen(Connection& c) override { c.Send(FileRange{file, 5, 100}); }
    void OnData(Connection&, InputBuffer& in) override { in.Consume(in.size()); }
    void OnClose(Connection&, absl::Status r) override { *reason = r; }
  };
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    auto h = std::make_unique<Handler>();
    h->file = file;
    h->reason = &reason;
    return h;
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reason.code() == absl::StatusCode::kDataLoss; }));
  ::close(c);
}

TEST_F(ConnectionTest, PeerClosingMidFrameReportsDataLossAndDeliversNoPartialFrame) {
  const uint16_t port = ListenEcho();
  const int c = ConnectTo(port);
  ASSERT_GE(c, 0);
  std::string partial = Frame(std::string(100, 'x')).substr(0, 4 + 10);
  ASSERT_TRUE(WriteAll(c, Frame("whole") + partial));
  std::string echoed;
  std::atomic<bool> read_back{false};
  // Read the echo of the whole frame first, so closing leaves no unread data (which would
  // make the close an RST rather than a FIN).
  std::thread reader([&] {
    if (ReadExactly(c, Frame("whole").size(), &echoed)) ::shutdown(c, SHUT_WR);
    read_back = true;
  });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.closed == 1; }));
  reader.join();
  ::close(c);
  EXPECT_EQ(echoed, Frame("whole"));
  EXPECT_EQ(stats_.frames, 1u);
  ASSERT_EQ(stats_.close_reasons.size(), 1u);
  EXPECT_EQ(stats_.close_reasons[0].code(), absl::StatusCode::kDataLoss) << stats_.close_reasons[0];
}

TEST_F(ConnectionTest, PeerHalfCloseStillGetsQueuedResponses) {
  const uint16_t port = ListenEcho();
  const int c = ConnectTo(port);
  ASSERT_GE(c, 0);
  std::string request;
  for (int i = 0; i < 50; ++i) request += Frame(absl::StrCat("req", i));
  ASSERT_TRUE(WriteAll(c, request));
  ::shutdown(c, SHUT_WR);
  std::string got;
  std::atomic<bool> done{false};
  bool eof = false;
  std::thread reader([&] {
    eof = ReadToEof(c, &got);
    done = true;
  });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return done.load(); }));
  reader.join();
  ::close(c);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got, request);
}

TEST_F(ConnectionTest, IdleTimeoutClosesSilentConnectionsOnly) {
  ListenerOptions options;
  options.connection.idle_timeout = absl::Milliseconds(500);
  const uint16_t port = ListenEcho(options);
  const int silent = ConnectTo(port);
  const int chatty = ConnectTo(port);
  ASSERT_GE(silent, 0);
  ASSERT_GE(chatty, 0);
  std::atomic<bool> stop{false};
  std::atomic<bool> talker_done{false};
  std::thread talker([&] {
    std::string echoed;
    while (!stop) {
      if (!WriteAll(chatty, Frame("ping")) || !ReadExactly(chatty, 8, &echoed)) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    talker_done = true;
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return stats_.closed == 1; }, absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(450));
  ASSERT_EQ(stats_.close_reasons.size(), 1u);
  EXPECT_EQ(stats_.close_reasons[0].code(), absl::StatusCode::kDeadlineExceeded);
  // The chatty one lives on well past the timeout.
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(600));
  EXPECT_EQ(stats_.closed, 1);
  stop = true;
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return talker_done.load(); }));
  talker.join();
  EXPECT_TRUE(PeerClosed(silent, absl::Seconds(1)));
  ::close(silent);
  ::close(chatty);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.closed == 2; }));
}

TEST_F(ConnectionTest, MaxConnectionsIsEnforcedWithALogLine) {
  CapturedLog log;
  ListenerOptions options;
  options.max_connections = 3;
  const uint16_t port = ListenEcho(options);
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) {
    fds.push_back(ConnectTo(port));
    ASSERT_GE(fds.back(), 0);
  }
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return listener_->live_connections() == 3; }));
  const int extra = ConnectTo(port);  // the kernel completes the handshake; we then close it
  ASSERT_GE(extra, 0);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return listener_->rejected() == 1; }));
  EXPECT_TRUE(PeerClosed(extra, absl::Seconds(5)));
  ::close(extra);
  EXPECT_TRUE(log.Contains("live connections is the limit"));
  EXPECT_EQ(stats_.opened, 3);
  // Freeing a slot lets the next one in.
  ::close(fds[0]);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return listener_->live_connections() == 2; }));
  fds[0] = ConnectTo(port);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 4; }));
  EXPECT_EQ(listener_->rejected(), 1u);
  for (int fd : fds) ::close(fd);
}

TEST_F(ConnectionTest, SingleShotAcceptServesClients) {
  ListenerOptions options;
  options.accept_mode = AcceptMode::kSingleShot;
  const uint16_t port = ListenEcho(options);
  EXPECT_FALSE(listener_->multishot());
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  std::thread clients([&] {
    for (int i = 0; i < 8; ++i) {
      const int c = ConnectTo(port);
      std::string got;
      if (c >= 0 && WriteAll(c, Frame("hi")) && ReadExactly(c, 6, &got) && got == Frame("hi")) {
        ok.fetch_add(1);
      }
      ::close(c);
    }
    done = true;
  });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return done.load(); }));
  clients.join();
  EXPECT_EQ(ok.load(), 8);
}

// Declares frames of any size and asks for them whole: the reactor must refuse before
// allocating when a declared size is over max_input_bytes.
class TrustingHandler : public ConnectionHandler {
 public:
  explicit TrustingHandler(absl::Status* reason, size_t* max_capacity)
      : reason_(reason), max_capacity_(max_capacity) {}
  void OnData(Connection& conn, InputBuffer& input) override {
    *max_capacity_ = std::max(*max_capacity_, conn.input_capacity());
    while (input.size() >= 4) {
      const size_t len = testing::ReadLength(input.readable().data());
      if (input.size() < 4 + len) {
        input.ExpectAtLeast(4 + len);
        return;
      }
      input.Consume(4 + len);
    }
  }
  void OnClose(Connection&, absl::Status reason) override { *reason_ = std::move(reason); }

 private:
  absl::Status* reason_;
  size_t* max_capacity_;
};

TEST_F(ConnectionTest, ExpectAtLeastOverTheInputLimitClosesWithoutAllocating) {
  absl::Status reason;
  size_t max_capacity = 0;
  ListenerOptions options;
  options.connection.max_input_bytes = 4 << 20;
  auto l = Listener::Create(*reactor_, options, [&](Connection&) {
    return std::make_unique<TrustingHandler>(&reason, &max_capacity);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  const uint32_t huge = htonl(0x7fffffff);  // declares a 2 GiB frame
  ASSERT_TRUE(WriteAll(c, std::string_view(reinterpret_cast<const char*>(&huge), 4)));
  EXPECT_TRUE(
      RunUntil(*reactor_, [&] { return reason.code() == absl::StatusCode::kResourceExhausted; }));
  EXPECT_LE(max_capacity, 64u * 1024);
  EXPECT_TRUE(PeerClosed(c, absl::Seconds(5)));
  ::close(c);
}

TEST_F(ConnectionTest, InputGrowsToTheExpectedFrameAndNoFurther) {
  absl::Status reason;
  size_t max_capacity = 0;
  ConnectionOptions copts;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    return std::make_unique<TrustingHandler>(&reason, &max_capacity);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  const std::string frame = Frame(std::string(3 << 20, 'z'));
  std::thread writer([&] { WriteAll(c, frame + frame); });
  Connection* conn = nullptr;
  EXPECT_TRUE(RunUntil(*reactor_, [&] {
    conn = reactor_->FindConnection(1);
    return conn != nullptr && conn->bytes_received() == 2 * frame.size();
  }));
  writer.join();
  EXPECT_GT(max_capacity, size_t{3} << 20);
  EXPECT_LE(max_capacity, frame.size() + copts.recv_chunk);
  EXPECT_TRUE(reason.ok());
  ::close(c);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
}

class DeadlineHandler : public ConnectionHandler {
 public:
  explicit DeadlineHandler(absl::Status* reason) : reason_(reason) {}
  void OnOpen(Connection& conn) override {
    conn.SetDeadline(absl::Milliseconds(300), absl::DeadlineExceededError("handshake timeout"));
  }
  void OnData(Connection& conn, InputBuffer& input) override {
    input.Consume(input.size());
    conn.ClearDeadline();  // "handshake" done
  }
  void OnClose(Connection&, absl::Status reason) override { *reason_ = std::move(reason); }

 private:
  absl::Status* reason_;
};

TEST_F(ConnectionTest, HandshakeDeadlineClosesUnlessCleared) {
  std::vector<absl::Status> reasons(2, absl::UnknownError("open"));
  int next = 0;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    return std::make_unique<DeadlineHandler>(&reasons[next++]);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int slow = ConnectTo(listener_->port());
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return next == 1; }));
  const int fast = ConnectTo(listener_->port());
  ASSERT_TRUE(RunUntil(*reactor_, [&] { return next == 2; }));
  ASSERT_TRUE(WriteAll(fast, "hello"));
  EXPECT_TRUE(RunUntil(*reactor_, [&] {
    return !reasons[0].ok() && reasons[0].code() != absl::StatusCode::kUnknown;
  }));
  EXPECT_EQ(reasons[0].code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(reasons[0].message(), "handshake timeout");
  RunUntil(
      *reactor_, [] { return false; }, absl::Milliseconds(400));
  EXPECT_EQ(reasons[1].code(), absl::StatusCode::kUnknown);  // still open
  ::close(slow);
  ::close(fast);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
}

// Replies then closes from inside OnData (use-after-free would show under ASan).
class OneShotHandler : public ConnectionHandler {
 public:
  explicit OneShotHandler(int* closes, bool graceful) : closes_(closes), graceful_(graceful) {}
  void OnData(Connection& conn, InputBuffer& input) override {
    conn.Send(std::string("bye"));
    input.Consume(input.size());
    if (graceful_) {
      conn.CloseAfterSend();
    } else {
      conn.Close(absl::CancelledError("handler closed"));
    }
    conn.Send(std::string("ignored"));  // after close: dropped
  }
  void OnClose(Connection&, absl::Status) override { ++*closes_; }

 private:
  int* closes_;
  bool graceful_;
};

TEST_F(ConnectionTest, CloseFromInsideOnDataIsSafeAndGracefulCloseFlushes) {
  int closes = 0;
  bool graceful = true;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    return std::make_unique<OneShotHandler>(&closes, graceful);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  for (bool g : {true, false}) {
    graceful = g;
    const int c = ConnectTo(listener_->port());
    ASSERT_GE(c, 0);
    ASSERT_TRUE(WriteAll(c, "x"));
    std::string got;
    std::atomic<bool> done{false};
    bool eof = false;
    std::thread reader([&] {
      eof = ReadToEof(c, &got);
      done = true;
    });
    EXPECT_TRUE(RunUntil(*reactor_, [&] { return done.load(); }));
    reader.join();
    if (g) {
      EXPECT_TRUE(eof);
      EXPECT_EQ(got, "bye");  // everything queued before CloseAfterSend, nothing after
    }
    ::close(c);
  }
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
  EXPECT_EQ(closes, 2);
}

// Handles one frame, then pauses receiving until a timer resumes it.
class PausingHandler : public ConnectionHandler {
 public:
  explicit PausingHandler(std::vector<absl::Time>* frame_times, absl::Status* reason = nullptr)
      : frame_times_(frame_times), reason_(reason) {}
  void OnData(Connection& conn, InputBuffer& input) override {
    if (input.size() < 1) return;
    input.Consume(1);
    frame_times_->push_back(absl::Now());
    conn.PauseReceive();
    conn.reactor().RunAfter(absl::Milliseconds(100), [&conn] { conn.ResumeReceive(); });
  }
  void OnClose(Connection&, absl::Status reason) override {
    if (reason_ != nullptr) *reason_ = std::move(reason);
  }

 private:
  std::vector<absl::Time>* frame_times_;
  absl::Status* reason_;
};

TEST_F(ConnectionTest, PauseReceiveHoldsInputUntilResumed) {
  std::vector<absl::Time> times;
  auto l = Listener::Create(*reactor_, {},
                            [&](Connection&) { return std::make_unique<PausingHandler>(&times); });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  // Sent one at a time so each is (most likely) its own recv; whatever is buffered together
  // still comes one OnData per resume.
  ASSERT_TRUE(WriteAll(c, "a"));
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return times.size() == 1; }));
  ASSERT_TRUE(WriteAll(c, "b"));
  ASSERT_TRUE(WriteAll(c, "c"));
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return times.size() == 3; }));
  for (size_t i = 1; i < times.size(); ++i) {
    EXPECT_GE(times[i] - times[i - 1], absl::Milliseconds(90));
  }
  ::close(c);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
}

// Consumes one 8-byte sequence number per OnData and checks it is the next one; pauses while
// input is left over and resumes from a timer. Resuming with input buffered starts a recv and
// delivers the buffered input from a task, so the handler consumes the buffer empty while that
// recv is in flight: the bytes it brings must land after what was there, not over it.
class SequenceHandler : public ConnectionHandler {
 public:
  SequenceHandler(uint64_t* next, bool* broken) : next_(next), broken_(broken) {}
  void OnData(Connection& conn, InputBuffer& input) override {
    if (input.size() < 8) {
      input.ExpectAtLeast(8);
      return;
    }
    uint64_t v;
    std::memcpy(&v, input.readable().data(), 8);
    input.Consume(8);
    if (v != *next_) *broken_ = true;
    ++*next_;
    if (!input.empty()) {
      conn.PauseReceive();
      conn.reactor().RunAfter(absl::Milliseconds(1), [&conn] { conn.ResumeReceive(); });
    }
  }
  void OnClose(Connection&, absl::Status) override {}

 private:
  uint64_t* next_;
  bool* broken_;
};

TEST_F(ConnectionTest, InputArrivingWhileResumedInputIsConsumedKeepsItsPlace) {
  uint64_t next = 0;
  bool broken = false;
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    return std::make_unique<SequenceHandler>(&next, &broken);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  constexpr uint64_t kBursts = 200;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    // Two numbers per burst: the handler pauses with one left over; the next burst comes
    // while the resumed connection has its recv in flight.
    for (uint64_t i = 0; i < kBursts; ++i) {
      uint64_t pair[2] = {2 * i, 2 * i + 1};
      if (!WriteAll(c, std::string(reinterpret_cast<const char*>(pair), sizeof(pair)))) break;
      std::this_thread::sleep_for(std::chrono::microseconds(1500));
    }
    written = true;
  });
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return (written && next == 2 * kBursts) || broken; }, absl::Seconds(30)));
  writer.join();
  EXPECT_FALSE(broken) << "sequence broken at " << next;
  EXPECT_EQ(next, 2 * kBursts);
  ::close(c);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reactor_->connection_count() == 0; }));
}

TEST_F(ConnectionTest, PeerCloseWhilePausedStillDeliversBufferedFramesFirst) {
  std::vector<absl::Time> times;
  absl::Status reason = absl::UnknownError("open");
  auto l = Listener::Create(*reactor_, {}, [&](Connection&) {
    return std::make_unique<PausingHandler>(&times, &reason);
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  ASSERT_TRUE(WriteAll(c, "xyz"));
  ::close(c);  // EOF arrives while the handler is paused after "x"
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return reason.code() != absl::StatusCode::kUnknown; }));
  EXPECT_EQ(times.size(), 3u);
  EXPECT_TRUE(reason.ok()) << reason;  // every byte was consumed: not a mid-frame close
}

TEST_F(ConnectionTest, GracefulCloseGivesUpOnASilentPeerAfterLinger) {
  int closes = 0;
  absl::Status reason = absl::UnknownError("open");
  struct Handler : ConnectionHandler {
    int* closes;
    absl::Status* reason;
    void OnOpen(Connection& conn) override {
      conn.Send(std::string("bye"));
      conn.CloseAfterSend();
    }
    void OnData(Connection&, InputBuffer& input) override { input.Consume(input.size()); }
    void OnClose(Connection&, absl::Status r) override {
      ++*closes;
      *reason = r;
    }
  };
  ListenerOptions options;
  options.connection.linger_timeout = absl::Milliseconds(200);
  auto l = Listener::Create(*reactor_, options, [&](Connection&) {
    auto h = std::make_unique<Handler>();
    h->closes = &closes;
    h->reason = &reason;
    return h;
  });
  ASSERT_TRUE(l.ok());
  listener_ = std::move(*l);
  const int c = ConnectTo(listener_->port());
  ASSERT_GE(c, 0);
  const absl::Time start = absl::Now();
  // The client keeps its side open and never closes: the server waits linger_timeout.
  EXPECT_TRUE(RunUntil(
      *reactor_, [&] { return closes == 1; }, absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(180));
  EXPECT_TRUE(reason.ok()) << reason;
  std::string got;
  EXPECT_TRUE(ReadToEof(c, &got));
  EXPECT_EQ(got, "bye");
  ::close(c);
}

TEST_F(ConnectionTest, AdoptedSocketpairEchoes) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  auto conn = reactor_->AdoptConnection(
      sv[0], {}, [&](Connection&) { return std::make_unique<EchoHandler>(&stats_); });
  ASSERT_TRUE(conn.ok());
  EXPECT_EQ((*conn)->peer(), "unix");
  EXPECT_EQ(reactor_->FindConnection((*conn)->id()), *conn);
  ASSERT_TRUE(WriteAll(sv[1], Frame("abc") + Frame("defg")));
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.frames == 2; }));
  std::string got;
  std::thread reader([&] { ReadExactly(sv[1], 15, &got); });
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return (*conn)->bytes_sent() == 15; }));
  reader.join();
  EXPECT_EQ(got, Frame("abc") + Frame("defg"));
  ::close(sv[1]);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.closed == 1; }));
}

TEST_F(ConnectionTest, DestroyingTheReactorClosesConnectionsWithCancelled) {
  const uint16_t port = ListenEcho();
  const int c = ConnectTo(port);
  ASSERT_GE(c, 0);
  EXPECT_TRUE(RunUntil(*reactor_, [&] { return stats_.opened == 1; }));
  listener_.reset();
  reactor_.reset();
  ASSERT_EQ(stats_.close_reasons.size(), 1u);
  EXPECT_EQ(stats_.close_reasons[0].code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(PeerClosed(c, absl::Seconds(5)));
  ::close(c);
}

class RingSetupEchoTest : public ::testing::TestWithParam<RingSetup> {};

TEST_P(RingSetupEchoTest, EchoWorksOnEveryRingSetup) {
  EchoStats stats;  // outlives the reactor, whose destruction closes connections
  ReactorOptions options;
  options.best_setup = GetParam();
  auto reactor = Reactor::Create(options);
  ASSERT_TRUE(reactor.ok());
  auto l = Listener::Create(**reactor, {},
                            [&](Connection&) { return std::make_unique<EchoHandler>(&stats); });
  ASSERT_TRUE(l.ok());
  std::atomic<int> ok{0};
  std::atomic<bool> done{false};
  const uint16_t port = (*l)->port();
  std::thread clients([&] {
    for (int i = 0; i < 4; ++i) {
      const int c = ConnectTo(port);
      std::string batch;
      for (int j = 0; j < 10; ++j) batch += Frame(absl::StrCat("m", i, "-", j));
      std::string got;
      if (c >= 0 && WriteAll(c, batch) && ReadExactly(c, batch.size(), &got) && got == batch) {
        ok.fetch_add(1);
      }
      ::close(c);
    }
    done = true;
  });
  EXPECT_TRUE(RunUntil(**reactor, [&] { return done.load(); }));
  clients.join();
  EXPECT_EQ(ok.load(), 4);
  l->reset();
}

INSTANTIATE_TEST_SUITE_P(AllSetups, RingSetupEchoTest,
                         ::testing::Values(RingSetup::kSingleIssuerDeferTaskrun,
                                           RingSetup::kCoopTaskrun, RingSetup::kPlain),
                         [](const auto& info) {
                           switch (info.param) {
                             case RingSetup::kSingleIssuerDeferTaskrun:
                               return "DeferTaskrun";
                             case RingSetup::kCoopTaskrun:
                               return "CoopTaskrun";
                             default:
                               return "Plain";
                           }
                         });

TEST(ReactorPoolTest, ReusePortListenersServeClientsOnEveryThread) {
  ReactorPoolOptions options;
  options.threads = 2;
  auto pool = ReactorPool::Start(options);
  ASSERT_TRUE(pool.ok());
  std::atomic<int> frames{0};
  struct CountingEcho : ConnectionHandler {
    std::atomic<int>* frames;
    void OnData(Connection& conn, InputBuffer& input) override {
      while (input.size() >= 4) {
        const size_t len = testing::ReadLength(input.readable().data());
        if (input.size() < 4 + len) {
          input.ExpectAtLeast(4 + len);
          return;
        }
        // Counted before the echo can leave: the test thread reads the count once its
        // clients have their echoes.
        frames->fetch_add(1);
        conn.Send(std::string(input.view().substr(0, 4 + len)));
        input.Consume(4 + len);
      }
    }
    void OnClose(Connection&, absl::Status) override {}
  };
  auto port = (*pool)->Listen({}, [&](Connection&) {
    auto h = std::make_unique<CountingEcho>();
    h->frames = &frames;
    return h;
  });
  ASSERT_TRUE(port.ok()) << port.status();
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    clients.emplace_back([&, i] {
      const int c = ConnectTo(*port);
      const std::string f = Frame(absl::StrCat("client", i));
      std::string got;
      if (c >= 0 && WriteAll(c, f) && ReadExactly(c, f.size(), &got) && got == f) ok++;
      ::close(c);
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), 16);
  EXPECT_EQ(frames.load(), 16);
  pool->reset();
}

}  // namespace
}  // namespace sluice::net
