// Log lines of the networking layer: ring setup mode, fallbacks, rejected connections, accept
// errors. These are rare events (never per request), so a mutex-protected sink is fine.
//
// Abseil 20220623 has no absl/log, so this is a minimal sink: stderr by default, replaceable
// by the broker (to route into its own logger) or by tests (to assert that a line was logged).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace sluice::net {

using NetLogSink = absl::AnyInvocable<void(std::string_view line)>;

// Replaces the sink for every reactor in the process; an empty sink restores stderr.
// Thread-safe. The sink is called with the lock held: it must not log through NetLog itself.
void SetNetLogSink(NetLogSink sink);

namespace internal {
void EmitNetLog(std::string_view line);
}  // namespace internal

template <typename... Args>
void NetLog(const absl::FormatSpec<Args...>& format, const Args&... args) {
  internal::EmitNetLog(absl::StrFormat(format, args...));
}

// Lets one line through per interval and counts the ones it held back, for events a client can
// repeat at will (refused connections, accept errors): they must not flood the log. Not
// thread-safe: one per loop thread (e.g. per Listener).
class LogRateLimiter {
 public:
  explicit LogRateLimiter(absl::Duration interval)
      : interval_(absl::ToChronoNanoseconds(interval)) {}
  // True if a line may be written now; then *suppressed is the number of lines held back
  // since the last one written (and the count restarts).
  bool Allow(uint64_t* suppressed) {
    const auto now = std::chrono::steady_clock::now();
    if (written_ && now - last_ < interval_) {
      ++suppressed_;
      return false;
    }
    written_ = true;
    last_ = now;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  const std::chrono::nanoseconds interval_;
  bool written_ = false;
  std::chrono::steady_clock::time_point last_{};
  uint64_t suppressed_ = 0;
};

}  // namespace sluice::net
