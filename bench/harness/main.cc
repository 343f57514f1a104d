// sluice-bench: an OpenMessaging-style benchmark for Kafka and AMQP 0-9-1 brokers.
//
//   sluice-bench --driver amqp --broker 127.0.0.1:5672 --workload W.yaml
//                [--driver-config D.yaml] [--out DIR] [--duration-seconds N]
//                [--warmup-seconds N] [--broker-pid PID]
//   sluice-bench --probe --driver kafka --broker HOST:PORT     exit 0 if it speaks Kafka
//   sluice-bench --limits [--limits-seconds 3]                 loopback TCP + memcpy
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "bench/harness/benchmark.h"
#include "bench/harness/driver.h"
#include "bench/harness/limits.h"
#include "bench/harness/report.h"
#include "bench/harness/workload.h"

ABSL_FLAG(std::string, driver, "", "kafka or amqp");
ABSL_FLAG(std::string, broker, "", "HOST:PORT of the broker");
ABSL_FLAG(std::string, workload, "", "workload file (bench/workloads/*.yaml)");
ABSL_FLAG(std::string, driver_config, "", "driver settings file (bench/workloads/drivers/)");
ABSL_FLAG(std::string, out, "", "directory for result.json, summary.*, timeseries.tsv, *.svg");
ABSL_FLAG(double, duration_seconds, -1, "override the workload's test duration");
ABSL_FLAG(double, warmup_seconds, -1, "override the workload's warm-up duration");
ABSL_FLAG(int, broker_pid, 0, "sample CPU and RSS of this process every second");
ABSL_FLAG(std::string, progress, "auto", "live progress on stderr: auto, always or never");
ABSL_FLAG(std::string, run_id, "", "names the topics/queues of this run (default: random)");
ABSL_FLAG(double, producer_rate, -1,
          "override producerRate (msg/s over all producers; 0 = search)");
ABSL_FLAG(int64_t, backlog_messages, -1, "override consumerBacklogMessages (backlog workloads)");
ABSL_FLAG(double, backlog_gb, -1, "override consumerBacklogSizeGB (backlog workloads)");
ABSL_FLAG(double, max_build_seconds, 3600, "backlog runs: longest build phase");
ABSL_FLAG(bool, probe, false, "only check that --broker speaks --driver's protocol");
ABSL_FLAG(int, probe_timeout_ms, 3000, "timeout of --probe");
ABSL_FLAG(std::string, plot_compare, "",
          "OUT_PREFIX: plot runs given as LABEL=DIR arguments on shared axes, then exit");
ABSL_FLAG(std::string, plot_title, "", "title of --plot-compare plots");
ABSL_FLAG(bool, limits, false, "measure loopback TCP and memcpy bandwidth, print key=value");
ABSL_FLAG(double, limits_seconds, 3, "duration of each --limits measurement");

namespace sluice::bench {
namespace {

int Fail(const absl::Status& s) {
  fprintf(stderr, "sluice-bench: %s\n", s.ToString().c_str());
  return 1;
}

int RunLimits() {
  const double secs = absl::GetFlag(FLAGS_limits_seconds);
  absl::StatusOr<double> tcp = MeasureLoopbackTcp(secs, 64 << 10);
  if (!tcp.ok()) return Fail(tcp.status());
  printf("loopback_tcp_bytes_per_sec=%.0f\n", *tcp);
  printf("memcpy_bytes_per_sec=%.0f\n", MeasureMemcpy(secs));
  return 0;
}

absl::StatusOr<std::unique_ptr<Driver>> BuildDriver() {
  DriverSettings settings;
  const std::string path = absl::GetFlag(FLAGS_driver_config);
  if (!path.empty()) {
    absl::StatusOr<DriverSettings> s = DriverSettings::Load(path);
    if (!s.ok()) return s.status();
    settings = *std::move(s);
  }
  if (absl::GetFlag(FLAGS_broker).empty()) {
    return absl::InvalidArgumentError("--broker HOST:PORT is required");
  }
  return MakeDriver(absl::GetFlag(FLAGS_driver), absl::GetFlag(FLAGS_broker), std::move(settings));
}

void OnSignal(int) { RequestStop(); }

int PlotCompare(const std::vector<char*>& args) {
  std::vector<std::pair<std::string, std::string>> runs;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string a = args[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos) {
      return Fail(absl::InvalidArgumentError("--plot-compare takes LABEL=DIR arguments"));
    }
    runs.push_back({a.substr(0, eq), a.substr(eq + 1)});
  }
  if (runs.empty()) return Fail(absl::InvalidArgumentError("--plot-compare: no LABEL=DIR"));
  absl::Status s =
      WriteComparePlots(runs, absl::GetFlag(FLAGS_plot_title), absl::GetFlag(FLAGS_plot_compare));
  return s.ok() ? 0 : Fail(s);
}

int Main(const std::vector<char*>& positional) {
  if (absl::GetFlag(FLAGS_limits)) return RunLimits();
  if (!absl::GetFlag(FLAGS_plot_compare).empty()) return PlotCompare(positional);
  absl::StatusOr<std::unique_ptr<Driver>> driver = BuildDriver();
  if (!driver.ok()) return Fail(driver.status());
  if (absl::GetFlag(FLAGS_probe)) {
    absl::Status s = (*driver)->Probe(absl::GetFlag(FLAGS_probe_timeout_ms));
    if (!s.ok()) return Fail(s);
    printf("ok: %s speaks %s\n", absl::GetFlag(FLAGS_broker).c_str(),
           std::string((*driver)->name()).c_str());
    return 0;
  }
  const std::string workload_path = absl::GetFlag(FLAGS_workload);
  if (workload_path.empty()) return Fail(absl::InvalidArgumentError("--workload is required"));
  absl::StatusOr<Workload> workload = LoadWorkload(workload_path);
  if (!workload.ok()) return Fail(workload.status());

  if (absl::GetFlag(FLAGS_producer_rate) >= 0) {
    workload->producer_rate = absl::GetFlag(FLAGS_producer_rate);
  }
  // Shrinking a backlog keeps its shape for quick runs (bench/compare --quick).
  const int64_t backlog_messages = absl::GetFlag(FLAGS_backlog_messages);
  const double backlog_gb = absl::GetFlag(FLAGS_backlog_gb);
  if (backlog_messages >= 0 || backlog_gb >= 0) {
    if (!workload->backlog_mode()) {
      return Fail(absl::InvalidArgumentError("--backlog-* needs a backlog workload"));
    }
    if (backlog_messages >= 0) {
      workload->consumer_backlog_messages = backlog_messages;
      if (backlog_gb < 0) workload->consumer_backlog_size_gb = 0;
    }
    if (backlog_gb >= 0) {
      workload->consumer_backlog_size_gb = backlog_gb;
      if (backlog_messages < 0) workload->consumer_backlog_messages = 0;
    }
  }

  RunOptions opts;
  opts.broker = absl::GetFlag(FLAGS_broker);
  opts.workload_path = workload_path;
  opts.driver_settings_path = absl::GetFlag(FLAGS_driver_config);
  opts.duration_seconds = absl::GetFlag(FLAGS_duration_seconds);
  opts.warmup_seconds = absl::GetFlag(FLAGS_warmup_seconds);
  opts.broker_pid = absl::GetFlag(FLAGS_broker_pid);
  opts.run_id = absl::GetFlag(FLAGS_run_id);
  opts.max_build_seconds = absl::GetFlag(FLAGS_max_build_seconds);
  const std::string progress = absl::GetFlag(FLAGS_progress);
  if (progress == "always") {
    opts.progress = RunOptions::Progress::kAlways;
  } else if (progress == "never") {
    opts.progress = RunOptions::Progress::kNever;
  } else if (progress != "auto") {
    return Fail(absl::InvalidArgumentError("--progress: auto, always or never"));
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  absl::StatusOr<Results> r = RunBenchmark(*workload, driver->get(), opts);
  if (!r.ok()) return Fail(r.status());
  fputs(TextSummary(*r).c_str(), stdout);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    if (absl::Status s = WriteReports(*r, out); !s.ok()) return Fail(s);
    printf("results: %s/result.json, plots: %s/*.svg\n", out.c_str(), out.c_str());
  }
  return r->error.empty() ? 0 : 2;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "sluice-bench --driver kafka|amqp --broker HOST:PORT --workload FILE "
      "[--driver-config FILE] [--out DIR] [--duration-seconds N] [--broker-pid PID]\n"
      "       sluice-bench --probe --driver D --broker HOST:PORT\n"
      "       sluice-bench --limits");
  // Accept --broker-pid as well as absl's --broker_pid spelling.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> fixed;
  for (std::string& a : args) {
    if (a.size() > 2 && a[0] == '-' && a[1] == '-') {
      const size_t eq = a.find('=');
      for (size_t i = 2; i < std::min(eq, a.size()); ++i) {
        if (a[i] == '-') a[i] = '_';
      }
    }
    fixed.push_back(a.data());
  }
  const std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(fixed.size()), fixed.data());
  return sluice::bench::Main(positional);
}
