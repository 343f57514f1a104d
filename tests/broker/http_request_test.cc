// The admin listener's request-head parser (net/http/request.h) and the metrics text
// (src/metrics.h).
#include "gtest/gtest.h"
#include "net/http/request.h"
#include "src/metrics.h"

namespace sluice {
namespace {

using http::ParseRequestHead;
using http::ParseResult;
using http::RequestHead;

TEST(HttpRequestHead, ParsesAGetWithHeaders) {
  RequestHead r;
  std::string err;
  const std::string in =
      "GET /metrics?name=x HTTP/1.1\r\nHost: localhost:8080\r\nAccept:  text/plain \r\n\r\nrest";
  ASSERT_EQ(ParseRequestHead(in, &r, &err), ParseResult::kOk) << err;
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/metrics?name=x");
  EXPECT_EQ(r.path(), "/metrics");
  EXPECT_EQ(r.minor_version, 1);
  ASSERT_NE(r.Find("accept"), nullptr);
  EXPECT_EQ(*r.Find("accept"), "text/plain");
  EXPECT_EQ(r.head_bytes, in.size() - 4);
}

TEST(HttpRequestHead, WaitsForTheBlankLineUpToTheLimit) {
  RequestHead r;
  std::string err;
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.1\r\nHost: a\r\n", &r, &err), ParseResult::kIncomplete);
  std::string big =
      "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(http::kMaxRequestHeadBytes, 'a');
  EXPECT_EQ(ParseRequestHead(big, &r, &err), ParseResult::kTooLarge);
  EXPECT_EQ(ParseRequestHead(big + "\r\n\r\n", &r, &err), ParseResult::kTooLarge);
}

TEST(HttpRequestHead, RefusesMalformedHeads) {
  const char* bad[] = {
      "GET /\r\n\r\n",                                 // no version
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n",             // unsupported version
      "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n",     // absolute-form
      "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",             // bad method
      "GET / HTTP/1.1\r\n\r\n",                        // 1.1 without Host
      "GET / HTTP/1.1\r\nHost a\r\n\r\n",              // no colon
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  // obs-fold
      "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",         // control character
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",  // space in target
  };
  for (const char* in : bad) {
    RequestHead r;
    std::string err;
    EXPECT_EQ(ParseRequestHead(in, &r, &err), ParseResult::kBad) << in;
    EXPECT_FALSE(err.empty());
  }
  RequestHead r;
  std::string err;
  EXPECT_EQ(ParseRequestHead("GET / HTTP/1.0\r\n\r\n", &r, &err), ParseResult::kOk) << err;
}

TEST(Metrics, RendersFamiliesContiguouslyWithEscapedLabels) {
  std::vector<broker::MetricSample> s = {
      {"sluice_log_end_offset", {{"topic", "a"}, {"partition", "0"}}, 10},
      {"sluice_up", {}, 1},
      {"sluice_log_end_offset", {{"topic", "q\"\\\n"}, {"partition", "1"}}, 12345678901},
      {"not_a_family", {}, 3},
  };
  const std::string text = broker::RenderMetrics(s);
  EXPECT_EQ(text,
            "# HELP sluice_up 1 while the broker serves requests.\n"
            "# TYPE sluice_up gauge\n"
            "sluice_up 1\n"
            "# HELP sluice_log_end_offset Next offset to assign, per partition log.\n"
            "# TYPE sluice_log_end_offset gauge\n"
            "sluice_log_end_offset{topic=\"a\",partition=\"0\"} 10\n"
            "sluice_log_end_offset{topic=\"q\\\"\\\\\\n\",partition=\"1\"} 12345678901\n");
}

TEST(Metrics, RendersHistogramSamplesUnderOneFamily) {
  std::vector<broker::MetricSample> s = {
      {"sluice_loop_iteration_seconds_bucket", {{"shard", "0"}, {"le", "0.001"}}, 2},
      {"sluice_loop_iteration_seconds_bucket", {{"shard", "0"}, {"le", "+Inf"}}, 3},
      {"sluice_loop_iteration_seconds_sum", {{"shard", "0"}}, 0.0125},
      {"sluice_loop_iteration_seconds_count", {{"shard", "0"}}, 3},
      {"sluice_up", {}, 1},
      {"sluice_loop_iteration_seconds_bucket", {{"shard", "1"}, {"le", "+Inf"}}, 0},
      {"sluice_loop_iteration_seconds_sum", {{"shard", "1"}}, 0},
      {"sluice_loop_iteration_seconds_count", {{"shard", "1"}}, 0},
      {"sluice_up_count", {}, 1},  // not a histogram: unknown
  };
  const std::string text = broker::RenderMetrics(s);
  const std::string histogram = text.substr(text.find("# HELP sluice_loop_iteration_seconds "));
  EXPECT_EQ(histogram.substr(histogram.find('\n') + 1),
            "# TYPE sluice_loop_iteration_seconds histogram\n"
            "sluice_loop_iteration_seconds_bucket{shard=\"0\",le=\"0.001\"} 2\n"
            "sluice_loop_iteration_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3\n"
            "sluice_loop_iteration_seconds_sum{shard=\"0\"} 0.0125\n"
            "sluice_loop_iteration_seconds_count{shard=\"0\"} 3\n"
            "sluice_loop_iteration_seconds_bucket{shard=\"1\",le=\"+Inf\"} 0\n"
            "sluice_loop_iteration_seconds_sum{shard=\"1\"} 0\n"
            "sluice_loop_iteration_seconds_count{shard=\"1\"} 0\n");
  EXPECT_EQ(text.find("sluice_up_count"), std::string::npos);
  EXPECT_LT(text.find("sluice_up 1"), text.find("# HELP sluice_loop_iteration_seconds "));
}

}  // namespace
}  // namespace sluice
