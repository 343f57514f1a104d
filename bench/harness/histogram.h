// A log-linear latency histogram in the manner of HdrHistogram: two significant digits
// (relative error below 1/128) from 1 µs to 1 hour, with a fixed counts array (33 KiB) so that
// recording is a shift, a count-leading-zeros and an increment, and merging is an add per
// bucket.
//
// Values are nanoseconds, kept to a unit of 8 ns (so 1 µs is still within 1%);
// values above one hour are clamped into the top bucket (max() still reports the exact
// largest value recorded).
//
// Not thread-safe: one writer, or an outside lock (see stats.h).
#ifndef SLUICE_BENCH_HARNESS_HISTOGRAM_H_
#define SLUICE_BENCH_HARNESS_HISTOGRAM_H_

#include <array>
#include <cstdint>
#include <vector>

namespace sluice::bench {

class Histogram {
 public:
  // Bucket 0 is linear: 256 slots of one unit each. Every later bucket e >= 1 covers
  // [2^(e+7), 2^(e+8)) units with 128 slots of width 2^e units.
  static constexpr int kUnitShift = 3;  // 1 unit = 8 ns: 1 µs is 125 units, within 1%.
  static constexpr int kSubBucketBits = 8;
  static constexpr int kSubBuckets = 1 << kSubBucketBits;      // 256
  static constexpr int kHalfSubBuckets = kSubBuckets / 2;      // 128
  static constexpr int64_t kMaxTrackable = 3'600'000'000'000;  // 1 hour in ns.
  // One past the slot of kMaxTrackable (checked by a static_assert below the class).
  static constexpr int kCounts = 4178;

  Histogram() { counts_.fill(0); }

  void Record(int64_t value_ns) { RecordN(value_ns, 1); }
  void RecordN(int64_t value_ns, uint64_t n);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return total_; }
  int64_t min() const { return total_ == 0 ? 0 : min_; }
  int64_t max() const { return total_ == 0 ? 0 : max_; }
  double mean() const { return total_ == 0 ? 0.0 : static_cast<double>(sum_) / total_; }

  // The smallest recorded-bucket value v such that at least `percentile`% of the recorded
  // values are <= v (reported as the highest value of that bucket, capped at max()).
  // percentile is in [0, 100]; 0 on an empty histogram.
  int64_t ValueAtPercentile(double percentile) const;

  // Bucket geometry, public for tests.
  static constexpr int IndexOf(int64_t value_ns) {
    if (value_ns < 0) value_ns = 0;
    if (value_ns > kMaxTrackable) value_ns = kMaxTrackable;
    const uint64_t units = static_cast<uint64_t>(value_ns) >> kUnitShift;
    if (units < kSubBuckets) return static_cast<int>(units);
    // e such that units >> e lies in [128, 256).
    const int e = (63 - __builtin_clzll(units)) - (kSubBucketBits - 1);
    return kSubBuckets + (e - 1) * kHalfSubBuckets +
           static_cast<int>((units >> e) - kHalfSubBuckets);
  }
  static constexpr int64_t LowestAt(int index) {
    if (index < kSubBuckets) return static_cast<int64_t>(index) << kUnitShift;
    const int e = (index - kSubBuckets) / kHalfSubBuckets + 1;
    const int64_t sub = (index - kSubBuckets) % kHalfSubBuckets + kHalfSubBuckets;
    return (sub << e) << kUnitShift;
  }
  static constexpr int64_t HighestAt(int index) {
    if (index + 1 >= kCounts) return kMaxTrackable;
    return LowestAt(index + 1) - 1;
  }

 private:
  std::array<uint64_t, kCounts> counts_;
  uint64_t total_ = 0;
  int64_t min_ = INT64_MAX;
  int64_t max_ = 0;
  // Sum in ns; 2^63 ns is 292 years, so overflow needs ~10^5 one-hour values: acceptable.
  int64_t sum_ = 0;
};

static_assert(Histogram::IndexOf(Histogram::kMaxTrackable) == Histogram::kCounts - 1,
              "kCounts must end exactly at 1 hour");
static_assert(Histogram::LowestAt(Histogram::IndexOf(1'000'000)) <= 1'000'000);
static_assert(Histogram::HighestAt(Histogram::IndexOf(1'000'000)) >= 1'000'000);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_HISTOGRAM_H_
