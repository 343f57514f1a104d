#include "bench/harness/rate_limiter.h"

#include <cmath>

namespace sluice::bench {

int64_t RateLimiter::Next(int64_t now_ns) {
  const double rate = rate_.load(std::memory_order_relaxed);
  if (rate <= 0) {
    grid_rate_ = -1;  // Resume on a fresh grid: time spent paused is not a debt.
    return -1;
  }
  if (std::isinf(rate)) {
    grid_rate_ = rate;
    last_intended_ns_ = now_ns;
    return now_ns;
  }
  if (rate != grid_rate_) {
    // New grid starting where the old one left off (or now, on the first call / after a
    // pause / after unlimited mode), so a rate change neither forgives nor invents lag.
    const bool continue_grid = grid_rate_ > 0 && !std::isinf(grid_rate_);
    grid_start_ns_ = continue_grid ? last_intended_ns_ : now_ns;
    grid_rate_ = rate;
    issued_ = 0;
    if (continue_grid) issued_ = 1;  // last_intended_ns_ itself was already handed out.
  }
  const int64_t intended =
      grid_start_ns_ + static_cast<int64_t>(static_cast<double>(issued_) * 1e9 / rate);
  ++issued_;
  last_intended_ns_ = intended;
  return intended;
}

}  // namespace sluice::bench
