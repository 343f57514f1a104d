// Runs one workload against one broker through one driver, and gathers the results.
//
// Phases (one-second ticks of the collector on the calling thread):
//   normal:   warmup -> test -> tail (producers stopped, consumers catch up) [-> replay]
//   backlog:  build (consumers wait until consumerBacklogSize is stored) -> drain (consumers
//             run, producers continue at the drain rate) -> tail [-> replay]
// With producerRate 0 (and no backlog) the collector searches for the maximum sustainable
// rate: it raises the producers' target while the published rate keeps up with it and the
// backlog stays bounded, and backs off when either fails.
#ifndef SLUICE_BENCH_HARNESS_BENCHMARK_H_
#define SLUICE_BENCH_HARNESS_BENCHMARK_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/harness/driver.h"
#include "bench/harness/histogram.h"
#include "bench/harness/workload.h"

namespace sluice::bench {

struct RunOptions {
  std::string broker;                // For the report.
  std::string workload_path;         // For the report.
  std::string driver_settings_path;  // For the report.
  double duration_seconds = -1;      // Overrides the workload's test duration when >= 0.
  double warmup_seconds = -1;        // Overrides the workload's warm-up when >= 0.
  pid_t broker_pid = 0;              // 0 = do not sample a broker process.
  enum class Progress { kAuto, kAlways, kNever } progress = Progress::kAuto;
  std::string run_id;  // Names topics; random when empty.
  // Producers stop after this long in the backlog build phase even if the target is not
  // reached (the drain then starts from what was stored).
  double max_build_seconds = 3600;
  double max_tail_seconds = 30;
};

// One collector tick.
struct TimeSample {
  double t = 0;  // Seconds since the run started.
  std::string phase;
  double target_rate = 0;  // msg/s over all producers; 0 = unthrottled or paused.
  double publish_rate = 0;
  double consume_rate = 0;
  double publish_mbps = 0;  // MB = 10^6 bytes.
  double consume_mbps = 0;
  int64_t backlog = 0;  // Messages stored but not yet consumed, over all subscriptions.
  int64_t pub_latency_p50_ns = 0;
  int64_t pub_latency_p99_ns = 0;
  int64_t pub_delay_p99_ns = 0;
  int64_t e2e_p50_ns = 0;
  int64_t e2e_p99_ns = 0;
  double broker_cpu_pct = -1;  // -1: not sampled.
  int64_t broker_rss_bytes = -1;
  double client_cpu_pct = 0;
};

struct PhaseSpan {
  std::string name;
  double start = 0, end = 0;
};

struct ResourceSummary {
  bool sampled = false;
  double cpu_seconds = 0;     // Over the measured phases.
  double cpu_us_per_msg = 0;  // cpu_seconds per published message, in µs.
  int64_t rss_start_bytes = 0;
  int64_t rss_end_bytes = 0;
  int64_t rss_max_bytes = 0;
  int64_t rss_avg_bytes = 0;
};

struct BacklogResult {
  int64_t target_bytes = 0;
  int64_t target_messages = 0;
  double build_seconds = 0;
  double build_publish_rate = 0;  // msg/s while consumers waited.
  int64_t peak_backlog = 0;       // Messages.
  int64_t rss_at_peak_bytes = -1;
  int64_t rss_max_bytes = -1;  // Over build and drain.
  double drain_seconds = 0;
  double drain_publish_rate = 0;
  double drain_consume_rate = 0;
  double drain_net_rate = 0;  // Backlog decrease per second.
  bool drained = false;
};

struct ReplayResult {
  bool ran = false;
  std::string error;
  uint64_t messages = 0;
  double seconds = 0;
  double rate = 0;
  double mbps = 0;
  // The same data read again with bare Fetch requests (Kafka only; kafka_wire_reader.h):
  // what the broker serves when no client decodes the records.
  bool wire_ran = false;
  std::string wire_error;
  uint64_t wire_messages = 0;
  uint64_t wire_bytes = 0;
  double wire_seconds = 0;
  double wire_mbps = 0;
};

struct Results {
  Workload workload;
  RunOptions options;
  std::string driver;
  std::map<std::string, std::string> driver_settings;
  std::string started_at;  // ISO 8601 UTC.
  std::string run_id;
  // Measured phases: "test" in a normal run, build + drain in a backlog run.
  double measured_seconds = 0;
  uint64_t published = 0;
  uint64_t consumed = 0;
  // The whole run (tail included); each subscription counts each message once.
  uint64_t published_total = 0;
  uint64_t consumed_total = 0;
  uint64_t failed = 0;
  double publish_rate = 0;
  double consume_rate = 0;
  double publish_mbps = 0;
  double consume_mbps = 0;
  bool rate_searched = false;
  double max_sustainable_rate = 0;  // Highest rate a search window sustained.
  Histogram pub_latency;            // send -> broker confirm.
  Histogram pub_delay;              // intended -> actual send (coordinated omission).
  Histogram e2e;                    // producer send (payload timestamp) -> consumer receive.
  ResourceSummary broker;
  ResourceSummary client;
  bool backlog_mode = false;
  BacklogResult backlog;
  ReplayResult replay;
  std::vector<TimeSample> series;
  std::vector<PhaseSpan> phases;
  std::string error;  // Non-empty when the run stopped early; results so far are kept.
};

// Runs the workload. Errors before any message flows (connect, topology) are returned;
// errors during the run end it early and are recorded in Results::error.
absl::StatusOr<Results> RunBenchmark(const Workload& workload, Driver* driver,
                                     const RunOptions& options);

// Asks a running benchmark to stop as soon as it can (async-signal-safe: for SIGINT).
void RequestStop();

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_BENCHMARK_H_
