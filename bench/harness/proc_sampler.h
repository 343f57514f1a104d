// CPU time and resident memory of a process, read from /proc (Linux).
#ifndef SLUICE_BENCH_HARNESS_PROC_SAMPLER_H_
#define SLUICE_BENCH_HARNESS_PROC_SAMPLER_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace sluice::bench {

struct ProcSample {
  double cpu_seconds = 0;  // utime + stime so far.
  int64_t rss_bytes = 0;
};

// Reads /proc/PID/stat (fields 14 and 15, utime and stime in clock ticks) and /proc/PID/statm
// (resident pages). pid 0 means this process.
absl::StatusOr<ProcSample> SampleProcess(pid_t pid);

// Parses the text of /proc/PID/stat: the command name may hold spaces and parentheses, so
// fields are counted from the last ')'. Exposed for tests.
absl::StatusOr<double> ParseStatCpuTicks(const char* text);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_PROC_SAMPLER_H_
