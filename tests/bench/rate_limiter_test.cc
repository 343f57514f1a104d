#include "bench/harness/rate_limiter.h"

#include <cmath>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

constexpr int64_t kSec = 1'000'000'000;

TEST(RateLimiterTest, IntendedTimesFollowAFixedGrid) {
  RateLimiter r(1000);  // 1 ms apart.
  const int64_t t0 = 5 * kSec;
  EXPECT_EQ(r.Next(t0), t0);
  EXPECT_EQ(r.Next(t0), t0 + 1'000'000);
  EXPECT_EQ(r.Next(t0 + 10), t0 + 2'000'000);
}

TEST(RateLimiterTest, ASlowSenderDoesNotMoveTheGrid) {
  // Coordinated omission: after a 100 ms stall the next 100 messages are all overdue and
  // keep their original intended times, so the stall shows in each of their delays.
  RateLimiter r(1000);
  const int64_t t0 = kSec;
  ASSERT_EQ(r.Next(t0), t0);
  const int64_t after_stall = t0 + 100'000'000;
  for (int i = 1; i <= 100; ++i) {
    const int64_t intended = r.Next(after_stall);
    EXPECT_EQ(intended, t0 + i * 1'000'000);
    EXPECT_LE(intended, after_stall);
  }
  EXPECT_GT(r.Next(after_stall), after_stall);
}

TEST(RateLimiterTest, RateChangeContinuesFromTheLastIntendedTime) {
  RateLimiter r(1000);
  const int64_t t0 = kSec;
  r.Next(t0);
  const int64_t last = r.Next(t0);  // t0 + 1 ms.
  r.SetRate(100);                   // 10 ms apart from here on.
  EXPECT_EQ(r.Next(t0 + 500'000'000), last + 10'000'000);
  EXPECT_EQ(r.Next(t0 + 500'000'000), last + 20'000'000);
}

TEST(RateLimiterTest, ZeroRatePausesAndResumesOnAFreshGrid) {
  RateLimiter r(1000);
  r.Next(kSec);
  r.SetRate(0);
  EXPECT_EQ(r.Next(2 * kSec), -1);
  r.SetRate(1000);
  // The pause is not a debt: the grid restarts now.
  EXPECT_EQ(r.Next(3 * kSec), 3 * kSec);
  EXPECT_EQ(r.Next(3 * kSec), 3 * kSec + 1'000'000);
}

TEST(RateLimiterTest, UnlimitedRateIsAlwaysNow) {
  RateLimiter r(RateLimiter::kUnlimited);
  EXPECT_EQ(r.Next(7), 7);
  EXPECT_EQ(r.Next(9), 9);
  r.SetRate(10);
  EXPECT_EQ(r.Next(100), 100);  // Fresh grid after unlimited mode.
  EXPECT_EQ(r.Next(100), 100 + kSec / 10);
}

TEST(RateLimiterTest, FractionalRatesDoNotDrift) {
  RateLimiter r(3);  // 333.33 ms apart: the grid must not accumulate rounding.
  int64_t last = 0;
  for (int i = 0; i <= 3000; ++i) last = r.Next(0);
  EXPECT_NEAR(static_cast<double>(last), 1000.0 * kSec, 1.0);
}

}  // namespace
}  // namespace sluice::bench
