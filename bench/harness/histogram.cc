#include "bench/harness/histogram.h"

#include <algorithm>
#include <cmath>

namespace sluice::bench {

void Histogram::RecordN(int64_t value_ns, uint64_t n) {
  if (n == 0) return;
  if (value_ns < 0) value_ns = 0;
  counts_[IndexOf(value_ns)] += n;
  total_ += n;
  min_ = std::min(min_, value_ns);
  max_ = std::max(max_, value_ns);
  sum_ += value_ns * static_cast<int64_t>(n);
}

void Histogram::Merge(const Histogram& other) {
  if (other.total_ == 0) return;
  for (int i = 0; i < kCounts; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() {
  counts_.fill(0);
  total_ = 0;
  min_ = INT64_MAX;
  max_ = 0;
  sum_ = 0;
}

int64_t Histogram::ValueAtPercentile(double percentile) const {
  if (total_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // Rank of the wanted value (1-based); at least the first value.
  uint64_t rank = static_cast<uint64_t>(std::ceil(percentile / 100.0 * total_));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (int i = 0; i < kCounts; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      if (i == kCounts - 1) return max_;  // The clamped top bucket: report the exact max.
      return std::clamp(HighestAt(i), min_, max_);
    }
  }
  return max_;
}

}  // namespace sluice::bench
