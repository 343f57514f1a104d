#include "net/reactor/loop_stats.h"

#include <algorithm>

namespace sluice::net {

size_t DurationHistogram::BucketFor(int64_t nanos) {
  return static_cast<size_t>(std::lower_bound(kBoundsNanos.begin(), kBoundsNanos.end(), nanos) -
                             kBoundsNanos.begin());
}

void DurationHistogram::Record(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  Add(buckets_[BucketFor(nanos)], 1);
  Add(sum_nanos_, static_cast<uint64_t>(nanos));
  if (nanos > max_nanos_.load(std::memory_order_relaxed)) {
    max_nanos_.store(nanos, std::memory_order_relaxed);
  }
}

DurationHistogram::Snapshot DurationHistogram::Read() const {
  Snapshot s;
  for (size_t i = 0; i < kBuckets; ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum_nanos = static_cast<int64_t>(sum_nanos_.load(std::memory_order_relaxed));
  s.max_nanos = max_nanos_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace sluice::net
