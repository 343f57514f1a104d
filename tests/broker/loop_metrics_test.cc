// A shard's loop timing on /metrics (src/metrics.h: sluice_loop_iteration_seconds,
// sluice_loop_iteration_max_seconds, sluice_loop_ready_wait_seconds) and the slow-iteration
// warning (--slow-loop-iteration-ms), with a real Shard driven by RunOnce and an
// end-of-iteration hook that keeps the loop busy when asked to.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "log/file_util.h"
#include "src/broker_config.h"
#include "src/metrics.h"
#include "src/shard.h"

namespace sluice::broker {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-loop-metrics-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)storage::RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sends what this process writes to stderr (the broker's log lines) to a file meanwhile.
class CapturedStderr {
 public:
  explicit CapturedStderr(const std::string& path) : path_(path) {
    fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ~CapturedStderr() { Restore(); }
  // Restores stderr and returns what was written.
  std::string Restore() {
    if (saved_ >= 0) {
      fflush(stderr);
      dup2(saved_, STDERR_FILENO);
      close(saved_);
      saved_ = -1;
    }
    auto bytes = storage::ReadWholeFile(path_);
    return bytes.ok() ? std::string(bytes->begin(), bytes->end()) : std::string();
  }

 private:
  std::string path_;
  int saved_ = -1;
};

void Spin(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  while (absl::Now() < until) {
  }
}

// name{labels} -> value of every sample line of the exposition text.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double v = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &v)) << line;
    out[line.substr(0, space)] = v;
  }
  return out;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// A histogram of one shard as rendered: cumulative buckets in increasing "le" order ending with
// +Inf, which equals _count.
void ExpectWellFormedHistogram(const std::string& text, const std::string& family,
                               const std::string& shard) {
  SCOPED_TRACE(family);
  EXPECT_EQ(Count(text, "# TYPE " + family + " histogram\n"), 1u);
  const std::string prefix = family + "_bucket{shard=\"" + shard + "\",le=\"";
  std::vector<std::pair<std::string, double>> buckets;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t quote = line.find('"', prefix.size());
    double v = 0;
    ASSERT_TRUE(absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) << line;
    buckets.emplace_back(line.substr(prefix.size(), quote - prefix.size()), v);
  }
  ASSERT_EQ(buckets.size(), 20u);
  EXPECT_EQ(buckets.front().first, "1e-05");
  EXPECT_EQ(buckets[12].first, "0.1");
  EXPECT_EQ(buckets[18].first, "10");
  EXPECT_EQ(buckets.back().first, "+Inf");
  double last_le = 0;
  for (size_t i = 0; i + 1 < buckets.size(); ++i) {
    double le = 0;
    ASSERT_TRUE(absl::SimpleAtod(buckets[i].first, &le));
    EXPECT_GT(le, last_le);
    last_le = le;
    EXPECT_LE(buckets[i].second, buckets[i + 1].second) << "cumulative at le=" << buckets[i].first;
  }
  std::map<std::string, double> s = Samples(text);
  const std::string label = "{shard=\"" + shard + "\"}";
  ASSERT_TRUE(s.count(family + "_count" + label));
  ASSERT_TRUE(s.count(family + "_sum" + label));
  EXPECT_EQ(buckets.back().second, s[family + "_count" + label]);
  EXPECT_GE(s[family + "_sum" + label], 0);
}

TEST(LoopMetrics, ShardExportsIterationTimesAndWarnsAboutSlowIterations) {
  TempDir dir;
  BrokerConfig config;
  config.data_dir = dir.path() + "/data";
  config.slow_loop_iteration_ms = 20;
  auto shard = Shard::Create(config);
  ASSERT_TRUE(shard.ok()) << shard.status();
  Shard& s = **shard;
  bool slow_next = false;
  s.AddEndOfIterationHook([&] {
    if (!slow_next) return;
    slow_next = false;
    Spin(absl::Milliseconds(30));
  });

  CapturedStderr log(dir.path() + "/stderr");
  int iterations = 0;
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(s.RunOnce(absl::Milliseconds(5)).ok());
      ++iterations;
    }
  };
  run(3);
  slow_next = true;  // the iteration of the next RunOnce, recorded by the one after
  run(2);
  slow_next = true;  // a second one within 10 s: counted, not logged yet
  run(2);
  const std::string lines = log.Restore();

  std::vector<MetricSample> samples;
  CollectShardMetrics(s, 0, &samples);
  const std::string text = RenderMetrics(samples);
  ExpectWellFormedHistogram(text, "sluice_loop_iteration_seconds", "0");
  ExpectWellFormedHistogram(text, "sluice_loop_ready_wait_seconds", "0");
  std::map<std::string, double> m = Samples(text);
  // Every RunOnce but the first ends an iteration at its poll.
  EXPECT_EQ(m["sluice_loop_iteration_seconds_count{shard=\"0\"}"], iterations - 1);
  // The two hooked iterations were above 20 ms (others only if the machine preempted them).
  EXPECT_GE(m["sluice_loop_iteration_seconds_bucket{shard=\"0\",le=\"+Inf\"}"] -
                m["sluice_loop_iteration_seconds_bucket{shard=\"0\",le=\"0.02\"}"],
            2);
  EXPECT_GE(m["sluice_loop_iteration_seconds_sum{shard=\"0\"}"], 0.06);
  EXPECT_GE(m["sluice_loop_iteration_max_seconds{shard=\"0\"}"], 0.03);
  EXPECT_LT(m["sluice_loop_iteration_max_seconds{shard=\"0\"}"], 10);
  EXPECT_EQ(Count(text, "# TYPE sluice_loop_iteration_max_seconds gauge\n"), 1u);

  // One warning for the two slow iterations (at most one per 10 s), naming the flag.
  EXPECT_EQ(Count(lines, "shard 0: one event-loop iteration was busy for "), 1u) << lines;
  EXPECT_EQ(Count(lines, "(--slow-loop-iteration-ms 20)"), 1u) << lines;
  EXPECT_NE(lines.find(" WARN "), std::string::npos) << lines;
  ASSERT_TRUE(s.Close().ok());
}

TEST(LoopMetrics, NoWarningWhenOff) {
  TempDir dir;
  BrokerConfig config;
  config.data_dir = dir.path() + "/data";
  config.slow_loop_iteration_ms = 0;
  auto shard = Shard::Create(config);
  ASSERT_TRUE(shard.ok()) << shard.status();
  bool slow_next = true;
  (*shard)->AddEndOfIterationHook([&] {
    if (slow_next) Spin(absl::Milliseconds(30));
    slow_next = false;
  });
  CapturedStderr log(dir.path() + "/stderr");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shard)->RunOnce(absl::Milliseconds(5)).ok());
  const std::string lines = log.Restore();
  EXPECT_EQ(lines.find("event-loop iteration"), std::string::npos) << lines;
  EXPECT_GE((*shard)->reactor().loop_stats().iteration.Read().max_nanos, 30'000'000);
  ASSERT_TRUE((*shard)->Close().ok());
}

}  // namespace
}  // namespace sluice::broker
