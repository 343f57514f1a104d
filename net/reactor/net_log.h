// Log lines of the networking layer: ring setup mode, fallbacks, rejected connections, accept
// errors. These are rare events (never per request), so a mutex-protected sink is fine.
//
// Abseil 20220623 has no absl/log, so this is a minimal sink: stderr by default, replaceable
// by the broker (to route into its own logger) or by tests (to assert that a line was logged).
#pragma once

#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/strings/str_format.h"

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

}  // namespace sluice::net
