// Loop timing (net/reactor/loop_stats.h): the histogram's buckets, sum, count and max, a reader
// on another thread, and what Reactor::RunOnce records: the busy part of each iteration (not
// the wait) and how long completions found by a poll may have waited for the loop.
#include "net/reactor/loop_stats.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "net/reactor/reactor.h"

namespace sluice::net {
namespace {

constexpr int64_t kMs = 1'000'000;

// Keeps the thread busy (not blocked) for `d`.
void Spin(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  while (absl::Now() < until) {
  }
}

// Samples recorded above `nanos` (exclusive; `nanos` must be a bucket bound).
uint64_t CountAbove(const DurationHistogram::Snapshot& s, int64_t nanos) {
  uint64_t n = 0;
  for (size_t i = DurationHistogram::BucketFor(nanos) + 1; i < DurationHistogram::kBuckets; ++i) {
    n += s.buckets[i];
  }
  return n;
}

TEST(DurationHistogram, BoundsAreOneTwoFiveFrom10usTo10s) {
  const auto& b = DurationHistogram::kBoundsNanos;
  EXPECT_EQ(b.front(), 10'000);
  EXPECT_EQ(b.back(), 10'000'000'000);
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    const int64_t ratio_x10 = b[i + 1] * 10 / b[i];
    EXPECT_TRUE(ratio_x10 == 20 || ratio_x10 == 25) << b[i] << " -> " << b[i + 1];
  }
  EXPECT_EQ(DurationHistogram::kBuckets, b.size() + 1);
}

TEST(DurationHistogram, BucketsAreInclusiveUpperBounds) {
  EXPECT_EQ(DurationHistogram::BucketFor(-5), 0u);
  EXPECT_EQ(DurationHistogram::BucketFor(0), 0u);
  EXPECT_EQ(DurationHistogram::BucketFor(10'000), 0u);
  EXPECT_EQ(DurationHistogram::BucketFor(10'001), 1u);
  EXPECT_EQ(DurationHistogram::BucketFor(20'000), 1u);
  EXPECT_EQ(DurationHistogram::BucketFor(20'001), 2u);
  EXPECT_EQ(DurationHistogram::BucketFor(1 * kMs), 6u);
  EXPECT_EQ(DurationHistogram::BucketFor(1 * kMs + 1), 7u);
  EXPECT_EQ(DurationHistogram::BucketFor(100 * kMs), 12u);
  EXPECT_EQ(DurationHistogram::BucketFor(10'000 * kMs), 18u);
  EXPECT_EQ(DurationHistogram::BucketFor(10'000 * kMs + 1), 19u);
  EXPECT_EQ(DurationHistogram::BucketFor(INT64_MAX), 19u);
  for (size_t i = 0; i < DurationHistogram::kBoundsNanos.size(); ++i) {
    EXPECT_EQ(DurationHistogram::BucketFor(DurationHistogram::kBoundsNanos[i]), i);
    EXPECT_EQ(DurationHistogram::BucketFor(DurationHistogram::kBoundsNanos[i] + 1), i + 1);
  }
}

TEST(DurationHistogram, CountsSumAndMax) {
  DurationHistogram h;
  DurationHistogram::Snapshot empty = h.Read();
  EXPECT_EQ(empty.count, 0u);
  EXPECT_EQ(empty.sum_nanos, 0);
  EXPECT_EQ(empty.max_nanos, 0);
  for (int64_t d :
       {int64_t{5'000}, int64_t{10'000}, int64_t{15'000}, 3 * kMs, 20'000 * kMs, int64_t{-1}}) {
    h.Record(d);
  }
  const DurationHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, 6u);
  EXPECT_EQ(s.buckets[0], 3u);   // 5 us, 10 us, and -1 counted as 0
  EXPECT_EQ(s.buckets[1], 1u);   // 15 us
  EXPECT_EQ(s.buckets[8], 1u);   // 3 ms: le 5 ms
  EXPECT_EQ(s.buckets[19], 1u);  // 20 s: above the last bound
  EXPECT_EQ(s.sum_nanos, 5'000 + 10'000 + 15'000 + 3 * kMs + 20'000 * kMs);
  EXPECT_EQ(s.max_nanos, 20'000 * kMs);
}

// One writer (the loop thread), readers elsewhere (an exporter): each read is a state the
// histogram passed through or is passing through, counts never go back, the last read is exact.
TEST(DurationHistogram, ReaderOnAnotherThreadSeesGrowingCounts) {
  DurationHistogram h;
  constexpr int kSamples = 200'000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < kSamples; ++i) h.Record((i % 97) * 1'000'000);  // 0 .. 96 ms
    done.store(true);
  });
  uint64_t last_count = 0;
  int64_t last_sum = 0;
  int reads = 0;
  while (!done.load()) {
    const DurationHistogram::Snapshot s = h.Read();
    ASSERT_GE(s.count, last_count);
    ASSERT_GE(s.sum_nanos, last_sum);
    ASSERT_LE(s.count, static_cast<uint64_t>(kSamples));
    ASSERT_LE(s.max_nanos, 96 * kMs);
    last_count = s.count;
    last_sum = s.sum_nanos;
    ++reads;
  }
  writer.join();
  const DurationHistogram::Snapshot s = h.Read();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kSamples));
  int64_t sum = 0;
  for (int i = 0; i < kSamples; ++i) sum += (i % 97) * 1'000'000;
  EXPECT_EQ(s.sum_nanos, sum);
  EXPECT_EQ(s.max_nanos, 96 * kMs);
  EXPECT_GT(reads, 0);
}

// An iteration is timed from the return of one poll to the start of the next: idle waits are
// not in it; work in handlers and work the embedder does between RunOnce calls is.
TEST(ReactorLoopStats, IterationTimeIsTheBusyPartNotTheWait) {
  auto reactor = Reactor::Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(r.RunOnce(absl::Milliseconds(100)).ok());
  DurationHistogram::Snapshot s = r.loop_stats().iteration.Read();
  EXPECT_EQ(s.count, 2u);  // the first RunOnce has no iteration before its poll
  EXPECT_LT(s.max_nanos, 50 * kMs) << "the 100 ms waits are not busy time";

  r.Post([] { Spin(absl::Milliseconds(30)); });
  ASSERT_TRUE(r.RunOnce(absl::Seconds(1)).ok());      // runs the task
  ASSERT_TRUE(r.RunOnce(absl::ZeroDuration()).ok());  // records that iteration
  EXPECT_GE(r.last_iteration(), absl::Milliseconds(30));
  s = r.loop_stats().iteration.Read();
  EXPECT_EQ(s.count, 4u);
  EXPECT_GE(s.max_nanos, 30 * kMs);
  EXPECT_EQ(CountAbove(s, 20 * kMs), 1u);

  // What the embedder does after RunOnce returns (the broker's storage submission) counts too.
  Spin(absl::Milliseconds(30));
  ASSERT_TRUE(r.RunOnce(absl::ZeroDuration()).ok());
  EXPECT_GE(r.last_iteration(), absl::Milliseconds(30));
  s = r.loop_stats().iteration.Read();
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(CountAbove(s, 20 * kMs), 2u);
  EXPECT_GE(s.sum_nanos, 60 * kMs);
}

// A completion that became ready while the loop was busy waited until the next poll: the
// time since the previous poll returned is recorded.
class ReadyWait : public ::testing::TestWithParam<RingSetup> {
 protected:
  static absl::StatusOr<std::unique_ptr<Reactor>> Create() {
    ReactorOptions options;
    options.best_setup = GetParam();
    return Reactor::Create(options);
  }
};

TEST_P(ReadyWait, OfACompletionPendingAtThePollIsTheTimeSinceThePreviousPoll) {
  auto reactor = Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int calls = 0;
  const WatchId id = r.WatchReadable(efd, [&] {
    ++calls;
    uint64_t v;
    while (::read(efd, &v, sizeof(v)) > 0) {
    }
  });
  ASSERT_TRUE(r.RunOnce(absl::ZeroDuration()).ok());  // the watch is armed
  r.Post([efd] {
    const uint64_t one = 1;
    ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);  // ready now, served after the next poll
    Spin(absl::Milliseconds(30));
  });
  ASSERT_TRUE(r.RunOnce(absl::Seconds(1)).ok());  // runs the task
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(r.RunOnce(absl::Seconds(1)).ok());  // its poll finds the eventfd pending
  EXPECT_EQ(calls, 1);
  const DurationHistogram::Snapshot s = r.loop_stats().ready_wait.Read();
  EXPECT_EQ(s.count, 1u);
  EXPECT_GE(s.max_nanos, 30 * kMs);
  r.Unwatch(id);
  ::close(efd);
}

// A completion that arrived while the loop slept in the poll waited for nothing: 0, however long
// the loop slept. After an iteration shorter than the resolution the loop does not check, and
// records at most that iteration's busy time.
TEST_P(ReadyWait, IsZeroWhenTheLoopSleptUntilTheEvent) {
  auto reactor = Create();
  ASSERT_TRUE(reactor.ok());
  Reactor& r = **reactor;
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int calls = 0;
  const WatchId id = r.WatchReadable(efd, [&] {
    ++calls;
    uint64_t v;
    while (::read(efd, &v, sizeof(v)) > 0) {
    }
  });
  ASSERT_TRUE(r.RunOnce(absl::ZeroDuration()).ok());
  for (const bool long_iteration : {true, false}) {
    SCOPED_TRACE(long_iteration ? "after a long iteration" : "after a short iteration");
    const DurationHistogram::Snapshot before = r.loop_stats().ready_wait.Read();
    if (long_iteration) {
      r.Post([] { Spin(absl::Milliseconds(5)); });  // above the resolution: the loop checks
      ASSERT_TRUE(r.RunOnce(absl::Seconds(1)).ok());
    }
    const int calls_before = calls;
    std::thread writer([efd] {
      absl::SleepFor(absl::Milliseconds(200));
      const uint64_t one = 1;
      ASSERT_EQ(::write(efd, &one, sizeof(one)), 8);
    });
    ASSERT_TRUE(r.RunOnce(absl::Seconds(5)).ok());  // sleeps in the poll until the write
    writer.join();
    EXPECT_EQ(calls, calls_before + 1);
    const DurationHistogram::Snapshot s = r.loop_stats().ready_wait.Read();
    ASSERT_EQ(s.count, before.count + 1);
    if (long_iteration) {
      EXPECT_EQ(s.buckets[0], before.buckets[0] + 1);
      EXPECT_EQ(s.sum_nanos, before.sum_nanos);  // recorded 0
    } else {
      EXPECT_LE(s.sum_nanos - before.sum_nanos, LoopStats::kReadyWaitResolutionNanos);
    }
    EXPECT_LT(s.max_nanos, 100 * kMs) << "the sleep in the poll is no wait";
  }
  r.Unwatch(id);
  ::close(efd);
}

INSTANTIATE_TEST_SUITE_P(EveryRingSetup, ReadyWait,
                         ::testing::Values(RingSetup::kSingleIssuerDeferTaskrun,
                                           RingSetup::kCoopTaskrun, RingSetup::kPlain),
                         [](const ::testing::TestParamInfo<RingSetup>& info) {
                           switch (info.param) {
                             case RingSetup::kSingleIssuerDeferTaskrun:
                               return std::string("DeferTaskrun");
                             case RingSetup::kCoopTaskrun:
                               return std::string("CoopTaskrun");
                             case RingSetup::kPlain:
                               return std::string("Plain");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace sluice::net
