#include "bench/harness/proc_sampler.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/harness/yaml_lite.h"

namespace sluice::bench {

absl::StatusOr<double> ParseStatCpuTicks(const char* text) {
  const char* p = strrchr(text, ')');
  if (p == nullptr) return absl::InvalidArgumentError("malformed /proc stat");
  ++p;
  // After ")" come fields 3 (state), 4, ...; utime is field 14, stime field 15.
  unsigned long long utime = 0, stime = 0;
  int field = 2;
  while (*p != '\0' && field < 15) {
    while (*p == ' ') ++p;
    ++field;
    char* end = nullptr;
    if (field == 14) utime = strtoull(p, &end, 10);
    if (field == 15) stime = strtoull(p, &end, 10);
    while (*p != '\0' && *p != ' ') ++p;
  }
  if (field < 15) return absl::InvalidArgumentError("short /proc stat");
  return static_cast<double>(utime + stime);
}

absl::StatusOr<ProcSample> SampleProcess(pid_t pid) {
  const std::string base = pid == 0 ? "/proc/self" : absl::StrCat("/proc/", pid);
  absl::StatusOr<std::string> stat = ReadFileToString(base + "/stat");
  if (!stat.ok()) return stat.status();
  absl::StatusOr<double> ticks = ParseStatCpuTicks(stat->c_str());
  if (!ticks.ok()) return ticks.status();
  absl::StatusOr<std::string> statm = ReadFileToString(base + "/statm");
  if (!statm.ok()) return statm.status();
  unsigned long long size = 0, resident = 0;
  if (sscanf(statm->c_str(), "%llu %llu", &size, &resident) != 2) {
    return absl::InvalidArgumentError("malformed /proc statm");
  }
  static const long kTicks = sysconf(_SC_CLK_TCK);
  static const long kPage = sysconf(_SC_PAGESIZE);
  ProcSample s;
  s.cpu_seconds = *ticks / static_cast<double>(kTicks);
  s.rss_bytes = static_cast<int64_t>(resident) * kPage;
  return s;
}

}  // namespace sluice::bench
