// Clocks used by the harness. Intervals use the monotonic clock; the timestamp written into
// each payload for end-to-end latency uses the wall clock so that producer and consumer agree
// even when they are different processes (same machine, or NTP-synchronised machines).
#ifndef SLUICE_BENCH_HARNESS_CLOCK_H_
#define SLUICE_BENCH_HARNESS_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace sluice::bench {

inline int64_t MonoNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline int64_t WallNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Sleeps until the monotonic clock reaches deadline_ns (returns at once if it has).
inline void SleepUntilMono(int64_t deadline_ns) {
  timespec ts{static_cast<time_t>(deadline_ns / 1'000'000'000),
              static_cast<long>(deadline_ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
}

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_CLOCK_H_
