#include "bench/harness/report.h"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "bench/harness/json.h"
#include "bench/harness/proc_sampler.h"
#include "bench/harness/svg_plot.h"
#include "bench/harness/yaml_lite.h"
#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

TEST(JsonTest, WriterOutputIsValidAndEscaped) {
  JsonWriter j;
  j.BeginObject();
  j.Field("s", "quote \" backslash \\ newline \n tab \t ctrl \x01");
  j.Field("i", int64_t{-42});
  j.Field("d", 0.25);
  j.Field("nan", std::nan(""));
  j.Field("inf", INFINITY);
  j.Field("b", true);
  j.Key("empty_array");
  j.BeginArray();
  j.EndArray();
  j.Key("empty_object");
  j.BeginObject();
  j.EndObject();
  j.Key("nested");
  j.BeginArray();
  j.BeginObject();
  j.Field("k", "v");
  j.EndObject();
  j.Int(1);
  j.Null();
  j.EndArray();
  j.EndObject();
  const std::string& out = j.str();
  EXPECT_TRUE(ValidateJson(out).ok()) << ValidateJson(out) << "\n" << out;
  EXPECT_NE(out.find(R"("quote \" backslash \\ newline \n tab \t ctrl \u0001")"), std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("nan": null)"), std::string::npos);
  EXPECT_NE(out.find(R"("inf": null)"), std::string::npos);
}

TEST(JsonTest, ValidatorAcceptsJsonAndRejectsTheRest) {
  for (const char* ok : {"{}", "[]", "0", "-1.5e+3", "\"x\"", "true", " null ",
                         R"({"a": [1, 2, {"b": "\u00e9\n"}], "c": false})"}) {
    EXPECT_TRUE(ValidateJson(ok).ok()) << ok;
  }
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\" 1}", "{\"a\": 1,}", "01", "1.", "NaN", "\"unterminated",
        "\"bad \\q escape\"", "[1] [2]", "{'a': 1}", "\"tab\tinside\"", "tru"}) {
    EXPECT_FALSE(ValidateJson(bad).ok()) << bad;
  }
}

Results SampleResults() {
  Results r;
  r.workload.name = "test \"workload\"";
  r.driver = "amqp";
  r.options.broker = "127.0.0.1:1";
  r.run_id = "abc";
  r.measured_seconds = 10;
  r.published = 1000;
  r.consumed = 990;
  r.publish_rate = 100;
  r.consume_rate = 99;
  r.rate_searched = true;
  r.max_sustainable_rate = 120;
  for (int i = 1; i <= 1000; ++i) {
    r.pub_latency.Record(i * 10'000);
    r.e2e.Record(i * 20'000);
  }
  r.broker.sampled = true;
  r.broker.cpu_seconds = 1.5;
  r.broker.cpu_us_per_msg = 1500;
  r.backlog_mode = true;
  r.backlog.peak_backlog = 500;
  r.backlog.drained = true;
  r.replay.ran = true;
  r.replay.messages = 1000;
  r.replay.seconds = 0.5;
  r.replay.rate = 2000;
  r.phases = {{"warmup", 0, 2}, {"test", 2, 12}, {"tail", 12, 13}};
  for (int t = 1; t <= 13; ++t) {
    TimeSample s;
    s.t = t;
    s.phase = t <= 2 ? "warmup" : t <= 12 ? "test" : "tail";
    s.publish_rate = 100 + t;
    s.consume_rate = 99 + t;
    s.backlog = t;
    s.pub_latency_p99_ns = 5'000'000;
    s.broker_cpu_pct = t == 1 ? -1 : 50;  // The first tick has no CPU delta.
    s.broker_rss_bytes = 100 << 20;
    r.series.push_back(s);
  }
  return r;
}

TEST(ReportTest, ResultsJsonIsWellFormedAndComplete) {
  const Results r = SampleResults();
  const std::string json = ResultsJson(r);
  ASSERT_TRUE(ValidateJson(json).ok()) << ValidateJson(json) << "\n" << json;
  for (const char* key :
       {"\"summary\"", "\"publishRate\"", "\"maxSustainableRate\"", "\"publishLatency\"",
        "\"p99.9Us\"", "\"p99.99Us\"", "\"maxUs\"", "\"endToEndLatency\"", "\"publishDelay\"",
        "\"brokerResources\"", "\"cpuUsPerMessage\"", "\"backlog\"", "\"drainConsumeRate\"",
        "\"replay\"", "\"timeSeries\"", "\"phases\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
}

TEST(ReportTest, SummaryKvHasStableKeys) {
  const std::string kv = SummaryKv(SampleResults());
  for (const char* key :
       {"\npublish_rate=100\n", "\nmax_sustainable_rate=120\n", "\npub_latency_p99_us=",
        "\npub_latency_p99_9_us=", "\npub_latency_max_us=", "\ne2e_p50_us=",
        "\nbroker_cpu_us_per_msg=1500\n", "\nbacklog_drained=1\n", "\nreplay_rate=2000\n"}) {
    EXPECT_NE(kv.find(key), std::string::npos) << key << "\n" << kv;
  }
  // Values never contain spaces (shell scripts split on them).
  for (size_t i = 0; i < kv.size(); ++i) ASSERT_NE(kv[i], ' ') << kv;
}

TEST(ReportTest, TextSummaryHasPercentileHeader) {
  const std::string text = TextSummary(SampleResults());
  EXPECT_NE(text.find("p99.99"), std::string::npos) << text;
  EXPECT_NE(text.find("max sustainable"), std::string::npos) << text;
  EXPECT_NE(text.find("drained"), std::string::npos) << text;
}

// Checks the SVG is one document with balanced elements (a cheap well-formedness test).
void ExpectSvg(const std::string& svg) {
  ASSERT_EQ(svg.rfind("<svg ", 0), 0u) << svg.substr(0, 80);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  int depth = 0;
  for (size_t i = 0; i < svg.size(); ++i) {
    if (svg[i] != '<') continue;
    const size_t end = svg.find('>', i);
    ASSERT_NE(end, std::string::npos);
    const std::string tag = svg.substr(i, end - i + 1);
    if (tag[1] == '/') {
      --depth;
    } else if (tag[tag.size() - 2] != '/') {
      ++depth;
    }
    ASSERT_GE(depth, 0) << tag;
    i = end;
  }
  EXPECT_EQ(depth, 0);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST(ReportTest, PlotsAreWellFormedSvg) {
  const Results r = SampleResults();
  ExpectSvg(ThroughputSvg(r));
  ExpectSvg(LatencySvg(r));
  ExpectSvg(LatencyTimeSvg(r));
  ExpectSvg(BacklogSvg(r));
  ExpectSvg(ThroughputSvg(Results{}));  // No data at all.
  ExpectSvg(LatencySvg(Results{}));
  EXPECT_NE(ThroughputSvg(r).find("test &quot;workload&quot;"), std::string::npos);
}

TEST(ReportTest, ComparePlotsReadWhatWriteReportsWrote) {
  char tmpl[] = "/tmp/sluice-report-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_TRUE(WriteReports(SampleResults(), dir + "/a").ok());
  ASSERT_TRUE(WriteReports(SampleResults(), dir + "/b").ok());
  const std::string tsv = PercentilesTsv(SampleResults());
  EXPECT_EQ(tsv.rfind("percentile\tpub_latency_us\tpub_delay_us\te2e_us\n", 0), 0u) << tsv;
  ASSERT_TRUE(WriteComparePlots({{"A", dir + "/a"}, {"B", dir + "/b"}}, "t", dir + "/cmp").ok());
  absl::StatusOr<std::string> thr = ReadFileToString(dir + "/cmp-throughput.svg");
  ASSERT_TRUE(thr.ok());
  ExpectSvg(*thr);
  EXPECT_NE(thr->find("B consume"), std::string::npos);
  absl::StatusOr<std::string> lat = ReadFileToString(dir + "/cmp-latency.svg");
  ASSERT_TRUE(lat.ok());
  ExpectSvg(*lat);
  EXPECT_NE(lat->find("A publish"), std::string::npos);
  EXPECT_FALSE(WriteComparePlots({{"A", dir + "/missing"}}, "t", dir + "/x").ok());
  std::filesystem::remove_all(dir);
}

TEST(ReportTest, HelpersForAxes) {
  EXPECT_EQ(FormatCompact(12'500), "12.5k");
  EXPECT_EQ(FormatCompact(8'000), "8k");
  EXPECT_EQ(FormatCompact(250), "250");
  EXPECT_EQ(FormatCompact(2'000'000), "2M");
  EXPECT_EQ(FormatCompact(0.25), "0.25");
  EXPECT_DOUBLE_EQ(PercentileToNines(90, 5), 1);
  EXPECT_NEAR(PercentileToNines(99.9, 5), 3, 1e-9);
  EXPECT_DOUBLE_EQ(PercentileToNines(100, 5), 5);
  EXPECT_DOUBLE_EQ(PercentileToNines(0, 5), 0);
}

TEST(ProcSamplerTest, ParsesStatWithAwkwardCommandNames) {
  // comm may contain spaces and ')' — fields are counted from the last ')'.
  const char* stat =
      "1234 (beam.smp) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 30 0 100 1 2";
  absl::StatusOr<double> ticks = ParseStatCpuTicks(stat);
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  EXPECT_EQ(*ticks, 325);
  EXPECT_FALSE(ParseStatCpuTicks("no parenthesis").ok());
  EXPECT_FALSE(ParseStatCpuTicks("1 (x) S 1").ok());
}

TEST(ProcSamplerTest, SamplesThisProcess) {
  absl::StatusOr<ProcSample> s = SampleProcess(0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->rss_bytes, 0);
  EXPECT_GE(s->cpu_seconds, 0);
  EXPECT_FALSE(SampleProcess(999'999'999).ok());
}

}  // namespace
}  // namespace sluice::bench
