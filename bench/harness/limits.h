// Machine limits that bound what any broker can do here: loopback TCP throughput and memcpy
// bandwidth (the disk limits come from fio in bench/compare).
#ifndef SLUICE_BENCH_HARNESS_LIMITS_H_
#define SLUICE_BENCH_HARNESS_LIMITS_H_

#include "absl/status/statusor.h"

namespace sluice::bench {

// Bytes per second through one loopback TCP connection (one writer thread, one reader
// thread, `chunk` bytes per write) over about `seconds`.
absl::StatusOr<double> MeasureLoopbackTcp(double seconds, int chunk);

// Bytes per second copied by memcpy between two buffers larger than the caches.
double MeasureMemcpy(double seconds);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_LIMITS_H_
