#include "bench/harness/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
  EXPECT_EQ(h.ValueAtPercentile(100), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0);
}

TEST(HistogramTest, SingleValueIsEveryPercentile) {
  Histogram h;
  h.Record(1'234'567);
  for (double p : {0.0, 50.0, 99.0, 99.99, 100.0}) {
    EXPECT_EQ(h.ValueAtPercentile(p), 1'234'567) << p;  // Capped at the exact max.
  }
  EXPECT_EQ(h.min(), 1'234'567);
  EXPECT_EQ(h.max(), 1'234'567);
}

TEST(HistogramTest, BucketsKeepTwoSignificantDigitsFromOneMicrosecondToOneHour) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200'000; ++i) {
    // Log-uniform over 1 µs .. 1 h.
    const double e = std::uniform_real_distribution<double>(3, 12.556)(rng);
    const int64_t v = static_cast<int64_t>(std::pow(10, e));
    const int idx = Histogram::IndexOf(v);
    ASSERT_GE(idx, 0);
    ASSERT_LT(idx, Histogram::kCounts);
    const int64_t lo = Histogram::LowestAt(idx), hi = Histogram::HighestAt(idx);
    ASSERT_LE(lo, v);
    ASSERT_GE(hi, v);
    // Bucket width relative to the value: below 1% from 1 µs up.
    ASSERT_LT(static_cast<double>(hi - lo + 1) / std::max<int64_t>(v, 1), 0.01) << v;
  }
}

TEST(HistogramTest, IndexIsMonotonicAndBucketsTile) {
  for (int i = 0; i + 1 < Histogram::kCounts; ++i) {
    ASSERT_EQ(Histogram::HighestAt(i) + 1, Histogram::LowestAt(i + 1)) << i;
    ASSERT_EQ(Histogram::IndexOf(Histogram::LowestAt(i)), i) << i;
    ASSERT_EQ(Histogram::IndexOf(Histogram::HighestAt(i)), i) << i;
  }
}

TEST(HistogramTest, PercentilesOfUniformValuesWithinOnePercent) {
  Histogram h;
  // 1 µs .. 10 ms in 1 µs steps.
  for (int64_t us = 1; us <= 10'000; ++us) h.Record(us * 1000);
  for (double p : {50.0, 75.0, 95.0, 99.0, 99.9, 99.99}) {
    const double exact = p / 100 * 10'000 * 1000;
    EXPECT_NEAR(h.ValueAtPercentile(p), exact, exact * 0.01) << p;
  }
  EXPECT_EQ(h.ValueAtPercentile(100), 10'000'000);
  EXPECT_EQ(h.count(), 10'000u);
  EXPECT_NEAR(h.mean(), 5'000'500, 1);
}

TEST(HistogramTest, PercentileNeverUnderstatesTheRank) {
  // 99 fast and 1 slow: p99 is fast, p99.5 and above are the slow one.
  Histogram h;
  for (int i = 0; i < 99; ++i) h.Record(1'000'000);
  h.Record(500'000'000);
  EXPECT_LT(h.ValueAtPercentile(99), 1'010'000);
  EXPECT_EQ(h.ValueAtPercentile(99.5), 500'000'000);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(2);
  Histogram a, b, all;
  for (int i = 0; i < 50'000; ++i) {
    const int64_t v = std::exponential_distribution<double>(1e-6)(rng);
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  for (double p : {50.0, 75.0, 95.0, 99.0, 99.9, 99.99, 100.0}) {
    EXPECT_EQ(a.ValueAtPercentile(p), all.ValueAtPercentile(p)) << p;
  }
  a.Reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.ValueAtPercentile(50), 0);
}

TEST(HistogramTest, ClampsOutOfRangeValues) {
  Histogram h;
  h.Record(-5);                        // Clock step backwards: counted as 0.
  h.Record(10LL * 3'600'000'000'000);  // Ten hours: top bucket, exact max kept.
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 10LL * 3'600'000'000'000);
  EXPECT_EQ(h.ValueAtPercentile(100), 10LL * 3'600'000'000'000);
}

TEST(HistogramTest, RecordNCountsWeight) {
  Histogram h;
  h.RecordN(2'000'000, 9);
  h.RecordN(50'000'000, 1);
  EXPECT_EQ(h.count(), 10u);
  EXPECT_LT(h.ValueAtPercentile(90), 2'100'000);
  EXPECT_EQ(h.ValueAtPercentile(95), 50'000'000);
}

}  // namespace
}  // namespace sluice::bench
