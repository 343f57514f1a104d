// Minimal diagnostics for the storage engine: one line per event on stderr, with time and
// severity. (Debian's Abseil 20220623 predates absl/log.) Errors that callers must act on travel
// as absl::Status; this is only for what an operator should see (recovery, corruption, backend
// choice).
#pragma once

#include <string_view>

#include "absl/strings/str_format.h"

namespace sluice::storage {

enum class Severity { kInfo, kWarning, kError };

void EmitLogLine(Severity severity, std::string_view message);

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& format, const Args&... args) {
  EmitLogLine(Severity::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogWarning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  EmitLogLine(Severity::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& format, const Args&... args) {
  EmitLogLine(Severity::kError, absl::StrFormat(format, args...));
}

}  // namespace sluice::storage
