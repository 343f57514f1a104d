// Turns Results into what people and scripts read: a text summary, a JSON file, a flat
// key=value file for shell scripts (bench/compare), a time-series TSV and SVG plots.
#ifndef SLUICE_BENCH_HARNESS_REPORT_H_
#define SLUICE_BENCH_HARNESS_REPORT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "bench/harness/benchmark.h"

namespace sluice::bench {

// The percentiles every latency summary reports (100 = max).
inline constexpr double kReportPercentiles[] = {50, 75, 95, 99, 99.9, 99.99, 100};

std::string TextSummary(const Results& r);
std::string ResultsJson(const Results& r);
// One "key=value" per line; values have no spaces. Stable names, documented in
// bench/README.md.
std::string SummaryKv(const Results& r);
std::string TimeSeriesTsv(const Results& r);
// The latency distributions as "percentile<TAB>publish_us<TAB>delay_us<TAB>e2e_us" lines.
std::string PercentilesTsv(const Results& r);
std::string ThroughputSvg(const Results& r);
std::string LatencySvg(const Results& r);      // Percentile distribution.
std::string LatencyTimeSvg(const Results& r);  // p99 over time.
std::string BacklogSvg(const Results& r);      // Backlog and broker RSS over time.

// Writes result.json, summary.txt, summary.kv, timeseries.tsv and the SVGs into dir
// (created if missing).
absl::Status WriteReports(const Results& r, const std::string& dir);

// Plots several runs on shared axes from their output directories (timeseries.tsv and
// percentiles.tsv): <out_prefix>-throughput.svg and <out_prefix>-latency.svg. Each run is
// (label, directory).
absl::Status WriteComparePlots(const std::vector<std::pair<std::string, std::string>>& runs,
                               const std::string& title, const std::string& out_prefix);

// Writes a file atomically enough for our use (write to a temp name, rename).
absl::Status WriteFile(const std::string& path, const std::string& contents);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_REPORT_H_
