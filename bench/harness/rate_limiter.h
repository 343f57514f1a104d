// Schedules send times for one producer at a target rate without coordinated omission.
//
// Each message gets an *intended* send time on a fixed grid (start + n / rate). When the
// sender falls behind (the broker blocked it, or the client was descheduled), the grid does
// not move: later messages are due at once and the harness records actual - intended as
// "publish delay", so a stall shows up in the latency of every message it delayed, not only
// in the one that was sent late.
//
// The rate may be changed at any time from another thread (the max-rate search and the drain
// phase do this); the grid restarts from the last intended time at the new rate. A rate of 0
// pauses sending; an infinite rate means "as fast as possible" (intended = now).
#ifndef SLUICE_BENCH_HARNESS_RATE_LIMITER_H_
#define SLUICE_BENCH_HARNESS_RATE_LIMITER_H_

#include <atomic>
#include <cstdint>
#include <limits>

namespace sluice::bench {

class RateLimiter {
 public:
  static constexpr double kUnlimited = std::numeric_limits<double>::infinity();

  explicit RateLimiter(double per_second) : rate_(per_second) {}

  // Thread-safe: takes effect at the next Next().
  void SetRate(double per_second) { rate_.store(per_second, std::memory_order_relaxed); }
  double rate() const { return rate_.load(std::memory_order_relaxed); }

  // The intended send time (monotonic ns) of the next message, given the current time.
  // Returns -1 when the rate is 0 (paused): ask again later. Only the sending thread calls it.
  int64_t Next(int64_t now_ns);

  // How many intended sends the grid has handed out since the last rate change.
  uint64_t issued() const { return issued_; }

 private:
  std::atomic<double> rate_;
  double grid_rate_ = -1;  // The rate the current grid was built for.
  int64_t grid_start_ns_ = 0;
  uint64_t issued_ = 0;
  int64_t last_intended_ns_ = 0;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_RATE_LIMITER_H_
