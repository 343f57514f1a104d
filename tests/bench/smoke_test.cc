// Smoke test of the sluice-bench binary: a private RabbitMQ node on free ports (started by
// bench/harness/rabbitmq-node, stopped here by PID), ~3 s of AMQP traffic, then checks that
// messages flowed and that the results are well-formed. No timing assertions.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/harness/json.h"
#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> ParseKv(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

bool Alive(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  // A zombie is dead for our purposes.
  const std::string stat = ReadAll("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

void StopPid(pid_t pid) {
  if (pid <= 0 || !Alive(pid)) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 300 && Alive(pid); ++i) usleep(100'000);
  if (Alive(pid)) kill(pid, SIGKILL);
}

// The RabbitMQ node and its epmd; stopped by PID when this goes out of scope.
class RabbitNode {
 public:
  ~RabbitNode() {
    // Broker first (a clean shutdown on SIGTERM), then the wrapper shell, then epmd.
    StopPid(beam_pid);
    StopPid(sh_pid);
    StopPid(epmd_pid);
  }
  int amqp_port = 0;
  pid_t beam_pid = 0, sh_pid = 0, epmd_pid = 0;
};

// In CI (CI=true) a check that skips checks nothing: what would be skipped fails instead.
bool InCi() {
  const char* ci = getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

bool RabbitMqInstalled() {
  for (const auto& e : std::filesystem::directory_iterator(
           "/usr/lib/rabbitmq/lib", std::filesystem::directory_options::skip_permission_denied)) {
    if (std::filesystem::exists(e.path() / "sbin" / "rabbitmq-server")) return true;
  }
  return false;
}

class BenchSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-bench-smoke-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    node_.reset();  // Stop the broker before removing its files.
    std::error_code ec;
    if (!HasFailure()) std::filesystem::remove_all(dir_, ec);
  }

  std::string dir_;
  std::unique_ptr<RabbitNode> node_;
};

TEST_F(BenchSmokeTest, AmqpRunAgainstPrivateRabbitMq) {
  std::error_code ec;
  if (!std::filesystem::exists("/usr/lib/rabbitmq/lib", ec) || !RabbitMqInstalled()) {
    if (InCi()) FAIL() << "rabbitmq-server is not installed (tools/lib/deps.sh installs it)";
    GTEST_SKIP() << "rabbitmq-server is not installed; skipping the sluice-bench smoke run";
  }
  const std::string src = SLUICE_SOURCE_DIR;
  const std::string cmd = "RABBITMQ_START_TIMEOUT=60 " + src +
                          "/bench/harness/rabbitmq-node start " + dir_ + "/rabbit 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof(buf), p) != nullptr) out += buf;
  const int rc = pclose(p);
  // Record the PIDs even on failure: the script may have left something running.
  const std::map<std::string, std::string> kv =
      ParseKv(out + "\n" + ReadAll(dir_ + "/rabbit/pids"));
  node_ = std::make_unique<RabbitNode>();
  auto num = [&](const char* key) {
    int v = 0;
    auto it = kv.find(key);
    if (it != kv.end()) (void)absl::SimpleAtoi(it->second, &v);
    return v;
  };
  node_->amqp_port = num("amqp_port");
  node_->beam_pid = num("beam_pid");
  node_->sh_pid = num("sh_pid");
  node_->epmd_pid = num("epmd_pid");
  if (rc != 0 || node_->amqp_port == 0 || node_->beam_pid == 0) {
    if (InCi()) FAIL() << "RabbitMQ could not start within 60 s:\n" << out;
    GTEST_SKIP() << "RabbitMQ could not start within 60 s, skipping the smoke run:\n" << out;
  }

  const std::string results = dir_ + "/out";
  const std::string bench =
      std::string(SLUICE_BENCH_BINARY) +
      " --driver amqp --broker 127.0.0.1:" + std::to_string(node_->amqp_port) + " --workload " +
      src + "/bench/workloads/smoke-amqp.yaml --driver-config " + src +
      "/bench/workloads/drivers/amqp-confirms.yaml --out " + results +
      " --duration-seconds 3 --warmup-seconds 0 --progress never" + " --broker-pid " +
      std::to_string(node_->beam_pid) + " > " + dir_ + "/bench.log 2>&1";
  const int status = system(bench.c_str());
  const std::string log = ReadAll(dir_ + "/bench.log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_EQ(WEXITSTATUS(status), 0) << log;

  const std::string json = ReadAll(results + "/result.json");
  ASSERT_FALSE(json.empty()) << log;
  EXPECT_TRUE(ValidateJson(json).ok()) << ValidateJson(json);

  const std::map<std::string, std::string> summary = ParseKv(ReadAll(results + "/summary.kv"));
  uint64_t published = 0, consumed = 0;
  ASSERT_TRUE(absl::SimpleAtoi(summary.at("published"), &published)) << log;
  ASSERT_TRUE(absl::SimpleAtoi(summary.at("consumed"), &consumed)) << log;
  EXPECT_GT(published, 0u) << log;
  EXPECT_GT(consumed, 0u) << log;
  EXPECT_EQ(summary.at("error"), "") << log;
  EXPECT_EQ(summary.at("broker_sampled"), "1") << log;
  for (const char* svg : {"throughput.svg", "latency.svg", "latency-time.svg", "backlog.svg"}) {
    EXPECT_NE(ReadAll(results + "/" + svg).find("</svg>"), std::string::npos) << svg;
  }
}

}  // namespace
}  // namespace sluice::bench
