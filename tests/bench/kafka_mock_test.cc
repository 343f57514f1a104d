// Runs the Kafka driver end to end against librdkafka's built-in mock cluster (real TCP on
// 127.0.0.1, in this process): produce with delivery reports, a consumer group, and a
// replay from offset 0. Checks that messages flowed; no timing assertions.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <string>

#include "bench/harness/benchmark.h"
#include "bench/harness/driver.h"
#include "bench/harness/json.h"
#include "bench/harness/report.h"
#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

class MockCluster {
 public:
  MockCluster() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err));
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk_ != nullptr) cluster_ = rd_kafka_mock_cluster_new(rk_, 1);
  }
  ~MockCluster() {
    if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }
  bool ok() const { return cluster_ != nullptr; }
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  void CreateTopic(const std::string& name, int partitions) {
    rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

TEST(KafkaMockTest, ProduceConsumeAndReplayAgainstMockCluster) {
  MockCluster cluster;
  ASSERT_TRUE(cluster.ok());
  // The mock may not implement CreateTopics: the driver then relies on the topic existing
  // (or on auto-creation), as it would with a broker that lacks the API.
  cluster.CreateTopic("sluice-bench-mock-0", 4);

  absl::StatusOr<DriverSettings> settings = DriverSettings::Parse(R"(
acks: 1
linger.ms: 1
adminTimeoutMs: 2000
deleteAtEnd: false
commonConfig: |
  log_level=2
consumerConfig: |
  fetch.wait.max.ms=10
)");
  ASSERT_TRUE(settings.ok()) << settings.status();
  absl::StatusOr<std::unique_ptr<Driver>> driver =
      MakeDriver("kafka", cluster.bootstraps(), *std::move(settings));
  ASSERT_TRUE(driver.ok()) << driver.status();
  ASSERT_TRUE((*driver)->Probe(5000).ok());

  absl::StatusOr<Workload> w = ParseWorkload(R"(
name: kafka-mock
partitionsPerTopic: 4
messageSize: 200
keyDistributor: KEY_ROUND_ROBIN
producerRate: 500
warmupDurationSeconds: 0
testDurationSeconds: 3
replayFromStart: true
)",
                                             ".");
  ASSERT_TRUE(w.ok()) << w.status();
  RunOptions opts;
  opts.broker = cluster.bootstraps();
  opts.progress = RunOptions::Progress::kNever;
  opts.run_id = "mock";
  absl::StatusOr<Results> r = RunBenchmark(*w, driver->get(), opts);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->error, "");
  EXPECT_GT(r->published, 0u);
  EXPECT_GT(r->pub_latency.count(), 0u);
  EXPECT_GT(r->e2e.count(), 0u);
  EXPECT_TRUE(r->replay.ran);
  EXPECT_EQ(r->replay.error, "");
  EXPECT_GT(r->replay.messages, 0u);
  EXPECT_TRUE(ValidateJson(ResultsJson(*r)).ok());
}

}  // namespace
}  // namespace sluice::bench
