// Reactor loop, cross-thread posting, timers and fd watches.
#include "net/reactor/reactor.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "net/reactor/reactor_pool.h"
#include "tests/net/net_test_util.h"

namespace sluice::net {
namespace {

using testing::CapturedLog;
using testing::RunUntil;

TEST(ReactorTest, RingSetupFallsBackAndSaysWhich) {
  for (RingSetup best :
       {RingSetup::kSingleIssuerDeferTaskrun, RingSetup::kCoopTaskrun, RingSetup::kPlain}) {
    CapturedLog log;
    ReactorOptions options;
    options.best_setup = best;
    auto reactor = Reactor::Create(options);
    ASSERT_TRUE(reactor.ok()) << reactor.status();
    // Never better than asked for; the log line names what was used.
    EXPECT_GE(static_cast<int>((*reactor)->ring_setup()), static_cast<int>(best));
    EXPECT_TRUE(log.Contains(RingSetupName((*reactor)->ring_setup())));
    // The loop works in every mode: a posted task and a timer run.
    bool ran = false;
    bool fired = false;
    (*reactor)->Post([&] { ran = true; });
    (*reactor)->RunAfter(absl::Milliseconds(1), [&] { fired = true; });
    EXPECT_TRUE(RunUntil(**reactor, [&] { return ran && fired; }));
  }
}

TEST(ReactorTest, OneReactorPerThread) {
  auto first = Reactor::Create();
  ASSERT_TRUE(first.ok());
  auto second = Reactor::Create();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  first->reset();
  EXPECT_TRUE(Reactor::Create().ok());  // the slot is free again
}

TEST(ReactorTest, StopFromAnotherThreadReturnsRun) {
  absl::Notification running;
  absl::Notification returned;
  Reactor* reactor = nullptr;
  std::thread loop([&] {
    auto r = Reactor::Create();
    ASSERT_TRUE(r.ok());
    reactor = r->get();
    (*r)->Post([&] { running.Notify(); });
    EXPECT_TRUE((*r)->Run().ok());
    returned.Notify();
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // Not synchronisation: a window in which Run() must keep blocking (in io_uring_enter)
  // until Stop(); nothing observable says "blocked".
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(returned.HasBeenNotified());
  reactor->Stop();
  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.join();
}

TEST(ReactorTest, StopBeforeRunMakesRunReturnAtOnce) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  (*reactor)->Stop();
  const absl::Time start = absl::Now();
  EXPECT_TRUE((*reactor)->Run().ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ReactorTest, PostFromFourThreadsRunsEveryTaskOnTheLoopThread) {
  constexpr int kThreads = 4;
  constexpr int kTasksPerThread = 10000;
  auto rt = ReactorThread::Start();
  ASSERT_TRUE(rt.ok());
  Reactor& reactor = (*rt)->reactor();
  std::atomic<int> ran{0};
  std::atomic<int> off_thread{0};
  // Per posting thread, tasks must run in posting order.
  std::vector<int> last_seen(kThreads, -1);
  std::atomic<int> out_of_order{0};
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kTasksPerThread; ++i) {
        reactor.Post([&, t, i] {
          if (!reactor.IsInLoopThread()) off_thread.fetch_add(1);
          if (last_seen[t] != i - 1) out_of_order.fetch_add(1);
          last_seen[t] = i;
          ran.fetch_add(1, std::memory_order_release);
        });
      }
    });
  }
  for (std::thread& p : posters) p.join();
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (ran.load(std::memory_order_acquire) < kThreads * kTasksPerThread &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(ran.load(), kThreads * kTasksPerThread);
  EXPECT_EQ(off_thread.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
}

TEST(ReactorTest, PostFromTheLoopThreadRunsAfterTheCurrentCallback) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  std::vector<int> order;
  (*reactor)->Post([&] {
    (*reactor)->Post([&] { order.push_back(2); });
    order.push_back(1);
  });
  EXPECT_TRUE(RunUntil(**reactor, [&] { return order.size() == 2; }));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(ReactorTest, TimersFireInDeadlineOrderAndCancelWorks) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  std::vector<int> fired;
  r.RunAfter(absl::Milliseconds(60), [&] { fired.push_back(3); });
  r.RunAfter(absl::Milliseconds(20), [&] { fired.push_back(1); });
  const TimerId cancelled = r.RunAfter(absl::Milliseconds(30), [&] { fired.push_back(99); });
  r.RunAfter(absl::Milliseconds(40), [&] { fired.push_back(2); });
  // Same deadline: creation order.
  r.RunAfter(absl::Milliseconds(80), [&] { fired.push_back(4); });
  r.RunAfter(absl::Milliseconds(80), [&] { fired.push_back(5); });
  EXPECT_TRUE(r.Cancel(cancelled));
  EXPECT_FALSE(r.Cancel(cancelled));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(RunUntil(r, [&] { return fired.size() == 5; }));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(75));
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3, 4, 5}));
  // A fired timer can't be cancelled; cancelling from inside a callback works.
  TimerId later;
  bool later_fired = false;
  r.RunAfter(absl::Milliseconds(1), [&] { EXPECT_TRUE(r.Cancel(later)); });
  later = r.RunAfter(absl::Milliseconds(50), [&] { later_fired = true; });
  bool done = false;
  r.RunAfter(absl::Milliseconds(100), [&] { done = true; });
  EXPECT_TRUE(RunUntil(r, [&] { return done; }));
  EXPECT_FALSE(later_fired);
}

TEST(ReactorTest, ManyCancelledTimersDoNotAccumulate) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  int fired = 0;
  for (int i = 0; i < 100000; ++i) {
    const TimerId id = (*reactor)->RunAfter(absl::Hours(1), [&] { ++fired; });
    (*reactor)->Cancel(id);
  }
  (*reactor)->RunAfter(absl::ZeroDuration(), [&] { ++fired; });
  EXPECT_TRUE(RunUntil(**reactor, [&] { return fired == 1; }));
}

TEST(ReactorTest, RunOnceWaitsNoLongerThanItsTimeout) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE((*reactor)->RunOnce(absl::Milliseconds(50)).ok());
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(40));
  EXPECT_LT(took, absl::Seconds(2));
}

TEST(ReactorTest, WatchReadableOnEventfdFiresAndUnwatchStopsIt) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int calls = 0;
  uint64_t total = 0;
  const WatchId id = r.WatchReadable(efd, [&] {
    ++calls;
    uint64_t v;
    while (::read(efd, &v, sizeof(v)) > 0) total += v;
  });
  // Nothing written: no call.
  EXPECT_TRUE(r.RunOnce(absl::Milliseconds(20)).ok());
  EXPECT_EQ(calls, 0);
  // Written from another thread: the loop wakes and the callback drains it.
  std::thread writer([efd] {
    const uint64_t three = 3;
    ASSERT_EQ(::write(efd, &three, sizeof(three)), 8);
  });
  writer.join();
  EXPECT_TRUE(RunUntil(r, [&] { return total == 3; }));
  const int calls_before = calls;
  // Re-armed: fires again for the next write.
  const uint64_t one = 1;
  ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);
  EXPECT_TRUE(RunUntil(r, [&] { return total == 4; }));
  EXPECT_GT(calls, calls_before);
  r.Unwatch(id);
  ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);
  const int calls_after_unwatch = calls;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.RunOnce(absl::Milliseconds(10)).ok());
  EXPECT_EQ(calls, calls_after_unwatch);
  // The cancelled poll came back and was freed.
  EXPECT_TRUE(RunUntil(r, [&] { return r.inflight_ops() == 1; }));  // just the wake watch
  ::close(efd);
}

TEST(ReactorTest, WatchIsLevelTriggeredAndCanUnwatchItself) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  const int efd = ::eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int calls = 0;
  WatchId id;
  // Never drains: called again each iteration until it unwatches itself on the third call.
  id = r.WatchReadable(efd, [&] {
    if (++calls == 3) r.Unwatch(id);
  });
  EXPECT_TRUE(RunUntil(r, [&] { return calls == 3; }));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r.RunOnce(absl::Milliseconds(5)).ok());
  EXPECT_EQ(calls, 3);
  ::close(efd);
}

// The broker watches its storage engine's own ring. A plain or COOP_TASKRUN ring's fd turns
// readable when that ring has completions. A DEFER_TASKRUN ring's completions are task work
// for its owner and never wake pollers of its fd, so such a ring registers an eventfd
// (io_uring_register_eventfd) and the reactor watches that; the callback (on the thread that
// owns both rings) flushes the deferred work with io_uring_get_events and reaps.
TEST(ReactorTest, WatchReadableSeesAnotherRingsCompletions) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  for (unsigned flags : {0u, unsigned{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN}}) {
    io_uring storage{};
    io_uring_params params{};
    params.flags = flags;
    if (io_uring_queue_init_params(8, &storage, &params) != 0) continue;  // old kernel
    const bool deferred = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
    int efd = -1;
    if (deferred) {
      efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      ASSERT_GE(efd, 0);
      ASSERT_EQ(io_uring_register_eventfd(&storage, efd), 0);
    }
    int reaped = 0;
    const WatchId id = (*reactor)->WatchReadable(deferred ? efd : storage.ring_fd, [&] {
      uint64_t v;
      if (efd >= 0) ::read(efd, &v, sizeof(v));
      io_uring_get_events(&storage);
      io_uring_cqe* cqe;
      while (io_uring_peek_cqe(&storage, &cqe) == 0 && cqe != nullptr) {
        EXPECT_EQ(cqe->user_data, 42u);
        ++reaped;
        io_uring_cqe_seen(&storage, cqe);
      }
    });
    __kernel_timespec ts{0, 20 * 1000 * 1000};
    io_uring_sqe* sqe = io_uring_get_sqe(&storage);
    io_uring_prep_timeout(sqe, &ts, 0, 0);
    io_uring_sqe_set_data64(sqe, 42);
    ASSERT_EQ(io_uring_submit(&storage), 1);
    EXPECT_TRUE(RunUntil(
        **reactor, [&] { return reaped == 1; }, absl::Seconds(10)))
        << "setup flags " << flags;
    (*reactor)->Unwatch(id);
    EXPECT_TRUE(RunUntil(**reactor, [&] { return (*reactor)->inflight_ops() == 1; }));
    io_uring_queue_exit(&storage);
    if (efd >= 0) ::close(efd);
  }
}

TEST(ReactorTest, ReactorThreadRunsPostedWorkAndShutsDown) {
  auto rt = ReactorThread::Start();
  ASSERT_TRUE(rt.ok());
  absl::Notification done;
  std::thread::id loop_id;
  (*rt)->reactor().Post([&] {
    loop_id = std::this_thread::get_id();
    (*rt)->reactor().RunAfter(absl::Milliseconds(5), [&] { done.Notify(); });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(loop_id, std::this_thread::get_id());
  rt->reset();
}

#if defined(SLUICE_NET_THREAD_CHECKS) && SLUICE_NET_THREAD_CHECKS
TEST(ReactorDeathTest, LoopThreadMethodsAbortOffTheLoopThread) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto rt = ReactorThread::Start();
        (*rt)->reactor().RunAfter(absl::Seconds(1), [] {});
      },
      "off its loop thread");
}
#endif

}  // namespace
}  // namespace sluice::net
