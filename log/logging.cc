#include "log/logging.h"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace sluice::storage {

void EmitLogLine(Severity severity, std::string_view message) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  const char* level = severity == Severity::kInfo      ? "INFO"
                      : severity == Severity::kWarning ? "WARN"
                                                       : "ERROR";
  // One write() per line so lines from several threads do not interleave.
  std::string line =
      absl::StrFormat("%s.%03ldZ %s %s\n", stamp, ts.tv_nsec / 1000000, level, message);
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace sluice::storage
