#include "bench/harness/report.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "bench/harness/json.h"
#include "bench/harness/svg_plot.h"
#include "bench/harness/yaml_lite.h"

namespace sluice::bench {
namespace {

// "99.9" -> "p99_9" style suffixes for kv keys; "max" for 100.
std::string PercentileKey(double p) {
  if (p >= 100) return "max";
  return absl::StrReplaceAll(absl::StrFormat("p%g", p), {{".", "_"}});
}
std::string PercentileLabel(double p) {
  if (p >= 100) return "max";
  return absl::StrFormat("p%g", p);
}

double Us(int64_t ns) { return ns / 1000.0; }

void LatencyJson(JsonWriter& j, absl::string_view key, const Histogram& h) {
  j.Key(key);
  j.BeginObject();
  j.Field("count", h.count());
  j.Field("meanUs", h.mean() / 1000.0);
  j.Field("minUs", Us(h.min()));
  for (double p : kReportPercentiles) {
    j.Field(absl::StrCat(PercentileLabel(p), "Us"), Us(h.ValueAtPercentile(p)));
  }
  j.EndObject();
}

void ResourceJson(JsonWriter& j, absl::string_view key, const ResourceSummary& r) {
  j.Key(key);
  j.BeginObject();
  j.Field("sampled", r.sampled);
  j.Field("cpuSeconds", r.cpu_seconds);
  j.Field("cpuUsPerMessage", r.cpu_us_per_msg);
  j.Field("rssStartBytes", r.rss_start_bytes);
  j.Field("rssEndBytes", r.rss_end_bytes);
  j.Field("rssMaxBytes", r.rss_max_bytes);
  j.Field("rssAvgBytes", r.rss_avg_bytes);
  j.EndObject();
}

std::string Ms(int64_t ns) {
  if (ns == 0) return "-";
  return absl::StrFormat("%.3f", ns / 1e6);
}

std::string Mib(int64_t bytes) { return absl::StrFormat("%.0f MiB", bytes / 1048576.0); }

std::string WithCommas(double v) {
  std::string digits = absl::StrFormat("%.0f", v);
  std::string out;
  const size_t start = (digits[0] == '-') ? 1 : 0;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > start && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::vector<PlotBand> Bands(const Results& r) {
  std::vector<PlotBand> bands;
  for (const PhaseSpan& p : r.phases) {
    // Measured phases are labelled; the others are shaded too.
    const bool measured = p.name == "test" || p.name == "build" || p.name == "drain";
    bands.push_back(PlotBand{p.start, p.end, p.name, !measured});
  }
  return bands;
}

std::string RunTitle(const Results& r) {
  return absl::StrCat(r.workload.name, " / ", r.driver, " ", r.options.broker);
}

}  // namespace

std::string TextSummary(const Results& r) {
  std::string out;
  absl::StrAppendFormat(&out, "sluice-bench: workload %s, driver %s, broker %s, run %s, %s\n",
                        r.workload.name, r.driver, r.options.broker, r.run_id, r.started_at);
  if (!r.error.empty()) absl::StrAppend(&out, "RUN ENDED EARLY: ", r.error, "\n");
  absl::StrAppendFormat(&out,
                        "measured %.1f s: published %s msgs (%s msg/s, %.2f MB/s), consumed %s (%s "
                        "msg/s, %.2f MB/s), %s failed\n",
                        r.measured_seconds, WithCommas(r.published), WithCommas(r.publish_rate),
                        r.publish_mbps, WithCommas(r.consumed), WithCommas(r.consume_rate),
                        r.consume_mbps, WithCommas(r.failed));
  if (r.rate_searched) {
    absl::StrAppendFormat(&out, "max sustainable publish rate (search): %s msg/s\n",
                          WithCommas(r.max_sustainable_rate));
  }
  absl::StrAppendFormat(&out, "%-22s", "latency (ms)");
  for (double p : kReportPercentiles) absl::StrAppendFormat(&out, "%10s", PercentileLabel(p));
  absl::StrAppendFormat(&out, "%12s\n", "count");
  const std::pair<const char*, const Histogram*> rows[] = {{"publish (send->ack)", &r.pub_latency},
                                                           {"publish delay (CO)", &r.pub_delay},
                                                           {"end-to-end", &r.e2e}};
  for (const auto& [name, h] : rows) {
    absl::StrAppendFormat(&out, "%-22s", name);
    for (double p : kReportPercentiles) {
      absl::StrAppendFormat(&out, "%10s", Ms(h->ValueAtPercentile(p)));
    }
    absl::StrAppendFormat(&out, "%12s\n", WithCommas(h->count()));
  }
  if (r.broker.sampled) {
    absl::StrAppendFormat(&out,
                          "broker (pid %d): cpu %.2f s = %.1f us/msg published; rss avg %s, max %s "
                          "(start %s, end %s)\n",
                          r.options.broker_pid, r.broker.cpu_seconds, r.broker.cpu_us_per_msg,
                          Mib(r.broker.rss_avg_bytes), Mib(r.broker.rss_max_bytes),
                          Mib(r.broker.rss_start_bytes), Mib(r.broker.rss_end_bytes));
  }
  absl::StrAppendFormat(&out, "client (this process): cpu %.2f s = %.1f us/msg, rss max %s\n",
                        r.client.cpu_seconds, r.client.cpu_us_per_msg, Mib(r.client.rss_max_bytes));
  if (r.backlog_mode) {
    const BacklogResult& b = r.backlog;
    absl::StrAppendFormat(
        &out,
        "backlog: built %s msgs in %.1f s (%s msg/s publish, consumers waiting)"
        "%s\n",
        WithCommas(b.peak_backlog), b.build_seconds, WithCommas(b.build_publish_rate),
        b.rss_at_peak_bytes >= 0 ? absl::StrCat("; broker rss at peak ", Mib(b.rss_at_peak_bytes),
                                                ", max ", Mib(b.rss_max_bytes))
                                 : "");
    absl::StrAppendFormat(&out,
                          "drain: %s in %.1f s: consume %s msg/s while publishing %s msg/s "
                          "(net %s msg/s)\n",
                          b.drained ? "drained" : "NOT drained", b.drain_seconds,
                          WithCommas(b.drain_consume_rate), WithCommas(b.drain_publish_rate),
                          WithCommas(b.drain_net_rate));
  }
  if (r.replay.ran) {
    if (!r.replay.error.empty()) absl::StrAppend(&out, "replay: ", r.replay.error, "\n");
    absl::StrAppendFormat(&out, "replay from start: %s msgs in %.2f s = %s msg/s, %.1f MB/s\n",
                          WithCommas(r.replay.messages), r.replay.seconds,
                          WithCommas(r.replay.rate), r.replay.mbps);
  }
  if (r.replay.wire_ran) {
    if (!r.replay.wire_error.empty()) {
      absl::StrAppend(&out, "replay (wire): ", r.replay.wire_error, "\n");
    }
    absl::StrAppendFormat(&out,
                          "replay from start, bare fetches (no record decoding): %s msgs, "
                          "%s bytes in %.2f s = %.1f MB/s\n",
                          WithCommas(r.replay.wire_messages), WithCommas(r.replay.wire_bytes),
                          r.replay.wire_seconds, r.replay.wire_mbps);
  }
  return out;
}

std::string ResultsJson(const Results& r) {
  JsonWriter j;
  j.BeginObject();
  j.Field("harness", "sluice-bench");
  j.Field("formatVersion", 1);
  j.Field("runId", r.run_id);
  j.Field("startedAt", r.started_at);
  j.Field("broker", r.options.broker);
  j.Field("brokerPid", static_cast<int64_t>(r.options.broker_pid));
  j.Field("workloadFile", r.options.workload_path);
  j.Field("driverSettingsFile", r.options.driver_settings_path);
  if (!r.error.empty()) j.Field("error", r.error);

  const Workload& w = r.workload;
  j.Key("workload");
  j.BeginObject();
  j.Field("name", w.name);
  j.Field("topics", w.topics);
  j.Field("partitionsPerTopic", w.partitions_per_topic);
  j.Field("messageSize", w.message_size);
  j.Field("payloadFile", w.payload_file);
  j.Field("keyDistributor", KeyDistributorName(w.key_distributor));
  j.Field("producersPerTopic", w.producers_per_topic);
  j.Field("subscriptionsPerTopic", w.subscriptions_per_topic);
  j.Field("consumerPerSubscription", w.consumer_per_subscription);
  j.Field("producerRate", w.producer_rate);
  j.Field("testDurationSeconds",
          r.options.duration_seconds >= 0 ? r.options.duration_seconds : w.test_duration_seconds);
  j.Field("warmupDurationSeconds",
          r.options.warmup_seconds >= 0 ? r.options.warmup_seconds : w.warmup_duration_seconds);
  j.Field("consumerBacklogSizeGB", w.consumer_backlog_size_gb);
  j.Field("consumerBacklogMessages", w.consumer_backlog_messages);
  j.Field("replayFromStart", w.replay_from_start);
  j.EndObject();

  j.Key("driver");
  j.BeginObject();
  j.Field("name", r.driver);
  j.Key("settings");
  j.BeginObject();
  for (const auto& [k, v] : r.driver_settings) j.Field(k, v);
  j.EndObject();
  j.EndObject();

  j.Key("summary");
  j.BeginObject();
  j.Field("measuredSeconds", r.measured_seconds);
  j.Field("published", r.published);
  j.Field("consumed", r.consumed);
  j.Field("publishedTotal", r.published_total);
  j.Field("consumedTotal", r.consumed_total);
  j.Field("failed", r.failed);
  j.Field("publishRate", r.publish_rate);
  j.Field("consumeRate", r.consume_rate);
  j.Field("publishMBps", r.publish_mbps);
  j.Field("consumeMBps", r.consume_mbps);
  j.Field("rateSearched", r.rate_searched);
  if (r.rate_searched) j.Field("maxSustainableRate", r.max_sustainable_rate);
  LatencyJson(j, "publishLatency", r.pub_latency);
  LatencyJson(j, "publishDelay", r.pub_delay);
  LatencyJson(j, "endToEndLatency", r.e2e);
  ResourceJson(j, "brokerResources", r.broker);
  ResourceJson(j, "clientResources", r.client);
  j.EndObject();

  if (r.backlog_mode) {
    const BacklogResult& b = r.backlog;
    j.Key("backlog");
    j.BeginObject();
    j.Field("targetBytes", b.target_bytes);
    j.Field("targetMessages", b.target_messages);
    j.Field("buildSeconds", b.build_seconds);
    j.Field("buildPublishRate", b.build_publish_rate);
    j.Field("peakBacklogMessages", b.peak_backlog);
    j.Field("brokerRssAtPeakBytes", b.rss_at_peak_bytes);
    j.Field("brokerRssMaxBytes", b.rss_max_bytes);
    j.Field("drained", b.drained);
    j.Field("drainSeconds", b.drain_seconds);
    j.Field("drainPublishRate", b.drain_publish_rate);
    j.Field("drainConsumeRate", b.drain_consume_rate);
    j.Field("drainNetRate", b.drain_net_rate);
    j.EndObject();
  }
  if (r.replay.ran) {
    j.Key("replay");
    j.BeginObject();
    if (!r.replay.error.empty()) j.Field("error", r.replay.error);
    j.Field("messages", r.replay.messages);
    j.Field("seconds", r.replay.seconds);
    j.Field("rate", r.replay.rate);
    j.Field("MBps", r.replay.mbps);
    if (r.replay.wire_ran) {
      j.Key("wire");
      j.BeginObject();
      if (!r.replay.wire_error.empty()) j.Field("error", r.replay.wire_error);
      j.Field("messages", r.replay.wire_messages);
      j.Field("bytes", r.replay.wire_bytes);
      j.Field("seconds", r.replay.wire_seconds);
      j.Field("MBps", r.replay.wire_mbps);
      j.EndObject();
    }
    j.EndObject();
  }

  j.Key("phases");
  j.BeginArray();
  for (const PhaseSpan& p : r.phases) {
    j.BeginObject();
    j.Field("name", p.name);
    j.Field("start", p.start);
    j.Field("end", p.end);
    j.EndObject();
  }
  j.EndArray();

  j.Key("timeSeries");
  j.BeginArray();
  for (const TimeSample& s : r.series) {
    j.BeginObject();
    j.Field("t", s.t);
    j.Field("phase", s.phase);
    j.Field("targetRate", s.target_rate);
    j.Field("publishRate", s.publish_rate);
    j.Field("consumeRate", s.consume_rate);
    j.Field("publishMBps", s.publish_mbps);
    j.Field("consumeMBps", s.consume_mbps);
    j.Field("backlog", s.backlog);
    j.Field("publishLatencyP50Us", Us(s.pub_latency_p50_ns));
    j.Field("publishLatencyP99Us", Us(s.pub_latency_p99_ns));
    j.Field("publishDelayP99Us", Us(s.pub_delay_p99_ns));
    j.Field("endToEndP50Us", Us(s.e2e_p50_ns));
    j.Field("endToEndP99Us", Us(s.e2e_p99_ns));
    j.Field("brokerCpuPercent", s.broker_cpu_pct);
    j.Field("brokerRssBytes", s.broker_rss_bytes);
    j.Field("clientCpuPercent", s.client_cpu_pct);
    j.EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.str();
}

std::string SummaryKv(const Results& r) {
  std::string out;
  // Values must not hold spaces or newlines: scripts split on them.
  auto kv = [&](absl::string_view k, const auto& v) {
    absl::StrAppend(&out, k, "=",
                    absl::StrReplaceAll(absl::StrCat(v), {{" ", "_"}, {"\n", "_"}, {"\t", "_"}}),
                    "\n");
  };
  auto kvf = [&](absl::string_view k, double v) {
    absl::StrAppend(&out, k, "=", absl::StrFormat("%.6g", v), "\n");
  };
  kv("workload", r.workload.name);
  kv("driver", r.driver);
  kv("broker", r.options.broker);
  kv("run_id", r.run_id);
  kv("error", r.error);
  kvf("measured_seconds", r.measured_seconds);
  kv("published", r.published);
  kv("consumed", r.consumed);
  kv("published_total", r.published_total);
  kv("consumed_total", r.consumed_total);
  kv("failed", r.failed);
  kvf("publish_rate", r.publish_rate);
  kvf("consume_rate", r.consume_rate);
  kvf("publish_mbps", r.publish_mbps);
  kvf("consume_mbps", r.consume_mbps);
  kvf("max_sustainable_rate", r.rate_searched ? r.max_sustainable_rate : 0);
  const std::pair<const char*, const Histogram*> hists[] = {
      {"pub_latency", &r.pub_latency}, {"pub_delay", &r.pub_delay}, {"e2e", &r.e2e}};
  for (const auto& [name, h] : hists) {
    for (double p : kReportPercentiles) {
      const std::string key = absl::StrCat(name, "_", PercentileKey(p), "_us");
      if (h->count() == 0) {
        kv(key, "");  // No samples: no value (0 would read as a measurement).
      } else {
        kvf(key, Us(h->ValueAtPercentile(p)));
      }
    }
    kv(absl::StrCat(name, "_count"), h->count());
  }
  kv("broker_sampled", r.broker.sampled ? 1 : 0);
  kvf("broker_cpu_seconds", r.broker.cpu_seconds);
  kvf("broker_cpu_us_per_msg", r.broker.cpu_us_per_msg);
  kv("broker_rss_max_bytes", r.broker.rss_max_bytes);
  kv("broker_rss_avg_bytes", r.broker.rss_avg_bytes);
  kvf("client_cpu_us_per_msg", r.client.cpu_us_per_msg);
  if (r.backlog_mode) {
    const BacklogResult& b = r.backlog;
    kvf("backlog_build_seconds", b.build_seconds);
    kvf("backlog_build_publish_rate", b.build_publish_rate);
    kv("backlog_peak_messages", b.peak_backlog);
    kv("backlog_rss_at_peak_bytes", b.rss_at_peak_bytes);
    kv("backlog_rss_max_bytes", b.rss_max_bytes);
    kv("backlog_drained", b.drained ? 1 : 0);
    kvf("backlog_drain_seconds", b.drain_seconds);
    kvf("backlog_drain_consume_rate", b.drain_consume_rate);
    kvf("backlog_drain_publish_rate", b.drain_publish_rate);
    kvf("backlog_drain_net_rate", b.drain_net_rate);
  }
  if (r.replay.ran) {
    kv("replay_error", r.replay.error);
    kv("replay_messages", r.replay.messages);
    kvf("replay_seconds", r.replay.seconds);
    kvf("replay_rate", r.replay.rate);
    kvf("replay_mbps", r.replay.mbps);
  }
  if (r.replay.wire_ran) {
    kv("replay_wire_error", r.replay.wire_error);
    kv("replay_wire_messages", r.replay.wire_messages);
    kv("replay_wire_bytes", r.replay.wire_bytes);
    kvf("replay_wire_seconds", r.replay.wire_seconds);
    kvf("replay_wire_mbps", r.replay.wire_mbps);
  }
  return out;
}

std::string TimeSeriesTsv(const Results& r) {
  std::string out =
      "t\tphase\ttarget_rate\tpublish_rate\tconsume_rate\tpublish_mbps\tconsume_mbps\tbacklog\t"
      "pub_latency_p50_us\tpub_latency_p99_us\tpub_delay_p99_us\te2e_p50_us\te2e_p99_us\t"
      "broker_cpu_pct\tbroker_rss_bytes\tclient_cpu_pct\n";
  for (const TimeSample& s : r.series) {
    absl::StrAppendFormat(&out,
                          "%.3f\t%s\t%.1f\t%.1f\t%.1f\t%.3f\t%.3f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%."
                          "1f\t%.1f\t%d\t%.1f\n",
                          s.t, s.phase, s.target_rate, s.publish_rate, s.consume_rate,
                          s.publish_mbps, s.consume_mbps, s.backlog, Us(s.pub_latency_p50_ns),
                          Us(s.pub_latency_p99_ns), Us(s.pub_delay_p99_ns), Us(s.e2e_p50_ns),
                          Us(s.e2e_p99_ns), s.broker_cpu_pct, s.broker_rss_bytes, s.client_cpu_pct);
  }
  return out;
}

// Percentiles written to percentiles.tsv and drawn in latency plots.
constexpr double kPlotPercentiles[] = {0,    25,    50,   75,    90,    95,     97.5,   99,
                                       99.5, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100};
constexpr double kMaxNines = 5;

std::vector<std::pair<double, std::string>> NinesTicks() {
  return {{0, "0%"},
          {PercentileToNines(90, kMaxNines), "90%"},
          {PercentileToNines(99, kMaxNines), "99%"},
          {PercentileToNines(99.9, kMaxNines), "99.9%"},
          {PercentileToNines(99.99, kMaxNines), "99.99%"},
          {kMaxNines, "max"}};
}

std::string PercentilesTsv(const Results& r) {
  std::string out = "percentile\tpub_latency_us\tpub_delay_us\te2e_us\n";
  for (double p : kPlotPercentiles) {
    absl::StrAppendFormat(&out, "%g\t%.1f\t%.1f\t%.1f\n", p, Us(r.pub_latency.ValueAtPercentile(p)),
                          Us(r.pub_delay.ValueAtPercentile(p)), Us(r.e2e.ValueAtPercentile(p)));
  }
  return out;
}

std::string ThroughputSvg(const Results& r) {
  PlotSpec spec;
  spec.title = absl::StrCat("Throughput: ", RunTitle(r));
  spec.x_label = "time (s)";
  spec.y_label = "messages / s";
  PlotSeries pub{"publish (confirmed)", "#1f77b4", {}};
  PlotSeries cons{"consume", "#d62728", {}};
  PlotSeries target{"target rate", "#888", {}, /*dashed=*/true};
  bool any_target = false;
  for (const TimeSample& s : r.series) {
    pub.points.push_back({s.t, s.publish_rate});
    cons.points.push_back({s.t, s.consume_rate});
    target.points.push_back({s.t, s.target_rate});
    any_target = any_target || s.target_rate > 0;
  }
  spec.series = {pub, cons};
  if (any_target) spec.series.push_back(target);
  spec.bands = Bands(r);
  return RenderLineChart(spec);
}

std::string LatencySvg(const Results& r) {
  PlotSpec spec;
  spec.title = absl::StrCat("Latency percentiles: ", RunTitle(r));
  spec.x_label = "percentile";
  spec.y_label = "latency (ms, log scale)";
  spec.log_y = true;
  spec.x_ticks = NinesTicks();
  const std::pair<const char*, const Histogram*> hists[] = {{"publish (send->ack)", &r.pub_latency},
                                                            {"publish delay", &r.pub_delay},
                                                            {"end-to-end", &r.e2e}};
  for (const auto& [name, h] : hists) {
    if (h->count() == 0) continue;
    PlotSeries s{name, "", {}};
    for (double p : kPlotPercentiles) {
      s.points.push_back({PercentileToNines(p, kMaxNines), h->ValueAtPercentile(p) / 1e6});
    }
    spec.series.push_back(s);
  }
  return RenderLineChart(spec);
}

std::string LatencyTimeSvg(const Results& r) {
  PlotSpec spec;
  spec.title = absl::StrCat("Latency p99 over time: ", RunTitle(r));
  spec.x_label = "time (s)";
  spec.y_label = "latency (ms, log scale)";
  spec.log_y = true;
  PlotSeries pub{"publish p99", "", {}}, delay{"publish delay p99", "", {}},
      e2e{"end-to-end p99", "", {}}, pub50{"publish p50", "", {}, true};
  for (const TimeSample& s : r.series) {
    pub.points.push_back({s.t, s.pub_latency_p99_ns / 1e6});
    pub50.points.push_back({s.t, s.pub_latency_p50_ns / 1e6});
    delay.points.push_back({s.t, s.pub_delay_p99_ns / 1e6});
    e2e.points.push_back({s.t, s.e2e_p99_ns / 1e6});
  }
  spec.series = {pub, pub50, delay, e2e};
  spec.bands = Bands(r);
  return RenderLineChart(spec);
}

std::string BacklogSvg(const Results& r) {
  PlotSpec spec;
  spec.title = absl::StrCat("Backlog and broker memory: ", RunTitle(r));
  spec.x_label = "time (s)";
  spec.y_label = "backlog (messages)";
  spec.y2_label = "broker RSS (MiB)";
  PlotSeries backlog{"backlog (messages)", "#9467bd", {}};
  PlotSeries rss{"broker RSS (MiB)", "#2ca02c", {}};
  rss.right_axis = true;
  bool any_rss = false;
  for (const TimeSample& s : r.series) {
    backlog.points.push_back({s.t, static_cast<double>(s.backlog)});
    if (s.broker_rss_bytes >= 0) {
      rss.points.push_back({s.t, s.broker_rss_bytes / 1048576.0});
      any_rss = true;
    }
  }
  spec.series = {backlog};
  if (any_rss) spec.series.push_back(rss);
  spec.bands = Bands(r);
  return RenderLineChart(spec);
}

namespace {

// A TSV file with a header line, read as columns by name.
struct Tsv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int Column(absl::string_view name) const {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return static_cast<int>(i);
    }
    return -1;
  }
};

absl::StatusOr<Tsv> ReadTsv(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  Tsv t;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> cells = absl::StrSplit(line, '\t');
    if (t.header.empty()) {
      t.header = std::move(cells);
    } else {
      t.rows.push_back(std::move(cells));
    }
  }
  if (t.header.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty"));
  return t;
}

// (x, y) points of two named columns; unparsable cells are skipped.
std::vector<std::pair<double, double>> Points(const Tsv& t, absl::string_view x_col,
                                              absl::string_view y_col, double y_scale) {
  std::vector<std::pair<double, double>> pts;
  const int xi = t.Column(x_col), yi = t.Column(y_col);
  if (xi < 0 || yi < 0) return pts;
  for (const auto& row : t.rows) {
    double x, y;
    if (static_cast<int>(row.size()) > std::max(xi, yi) && absl::SimpleAtod(row[xi], &x) &&
        absl::SimpleAtod(row[yi], &y)) {
      pts.push_back({x, y * y_scale});
    }
  }
  return pts;
}

}  // namespace

absl::Status WriteComparePlots(const std::vector<std::pair<std::string, std::string>>& runs,
                               const std::string& title, const std::string& out_prefix) {
  PlotSpec thr;
  thr.title = absl::StrCat("Throughput: ", title);
  thr.x_label = "time (s)";
  thr.y_label = "messages / s";
  PlotSpec lat;
  lat.title = absl::StrCat("Latency percentiles: ", title);
  lat.x_label = "percentile";
  lat.y_label = "latency (ms, log scale)";
  lat.log_y = true;
  lat.x_ticks = NinesTicks();
  int i = 0;
  constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};
  for (const auto& [label, dir] : runs) {
    const std::string color = kColors[i++ % 5];
    absl::StatusOr<Tsv> ts = ReadTsv(dir + "/timeseries.tsv");
    if (!ts.ok()) return ts.status();
    absl::StatusOr<Tsv> pct = ReadTsv(dir + "/percentiles.tsv");
    if (!pct.ok()) return pct.status();
    thr.series.push_back({label + " publish", color, Points(*ts, "t", "publish_rate", 1)});
    thr.series.push_back({label + " consume", color, Points(*ts, "t", "consume_rate", 1), true});
    std::vector<std::pair<double, double>> pub = Points(*pct, "percentile", "pub_latency_us", 1e-3);
    std::vector<std::pair<double, double>> e2e = Points(*pct, "percentile", "e2e_us", 1e-3);
    for (auto* series : {&pub, &e2e}) {
      for (auto& [x, y] : *series) x = PercentileToNines(x, kMaxNines);
    }
    lat.series.push_back({label + " publish", color, pub});
    lat.series.push_back({label + " e2e", color, e2e, true});
  }
  if (absl::Status s = WriteFile(out_prefix + "-throughput.svg", RenderLineChart(thr)); !s.ok()) {
    return s;
  }
  return WriteFile(out_prefix + "-latency.svg", RenderLineChart(lat));
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", tmp, ": ", strerror(errno)));
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("write ", tmp, ": ", strerror(err)));
    }
    done += n;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status WriteReports(const Results& r, const std::string& dir) {
  // mkdir -p.
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      const std::string part = dir.substr(0, i);
      if (mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::InternalError(absl::StrCat("mkdir ", part, ": ", strerror(errno)));
      }
    }
  }
  const std::string json = ResultsJson(r);
  if (absl::Status s = ValidateJson(json); !s.ok()) {
    return absl::InternalError(absl::StrCat("bug: results JSON is malformed: ", s.message()));
  }
  const std::pair<const char*, std::string> files[] = {{"result.json", json},
                                                       {"summary.txt", TextSummary(r)},
                                                       {"summary.kv", SummaryKv(r)},
                                                       {"timeseries.tsv", TimeSeriesTsv(r)},
                                                       {"percentiles.tsv", PercentilesTsv(r)},
                                                       {"throughput.svg", ThroughputSvg(r)},
                                                       {"latency.svg", LatencySvg(r)},
                                                       {"latency-time.svg", LatencyTimeSvg(r)},
                                                       {"backlog.svg", BacklogSvg(r)}};
  for (const auto& [name, contents] : files) {
    if (absl::Status s = WriteFile(absl::StrCat(dir, "/", name), contents); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace sluice::bench
