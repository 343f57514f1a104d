#include "bench/harness/workload.h"

#include <string>

#include "bench/harness/yaml_lite.h"
#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

TEST(YamlLiteTest, ScalarsCommentsAndQuotes) {
  absl::StatusOr<YamlDoc> d = ParseYamlLite(R"(# a comment
name: "my # workload"   # trailing comment
size: 1024
empty:
single: 'x: y'
)");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->Find("name")->scalar, "my # workload");
  EXPECT_EQ(d->Find("size")->scalar, "1024");
  EXPECT_EQ(d->Find("empty")->scalar, "");
  EXPECT_EQ(d->Find("single")->scalar, "x: y");
  EXPECT_EQ(d->Find("missing"), nullptr);
}

TEST(YamlLiteTest, ListsBlockScalarsAndNestedMaps) {
  absl::StatusOr<YamlDoc> d = ParseYamlLite(R"(inline: [a, "b c", 3]
block:
  - one
  - two
flat:
- x
producerConfig: |
  acks=all
  linger.ms=1

topic:
  config:
    flush.messages: 1
  name: t
after: end
)");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(d->Find("inline")->is_list);
  EXPECT_EQ(d->Find("inline")->list, (std::vector<std::string>{"a", "b c", "3"}));
  EXPECT_EQ(d->Find("block")->list, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(d->Find("flat")->list, (std::vector<std::string>{"x"}));
  EXPECT_EQ(d->Find("producerConfig")->scalar, "acks=all\nlinger.ms=1\n");
  EXPECT_EQ(d->Find("topic.config.flush.messages")->scalar, "1");
  EXPECT_EQ(d->Find("topic.name")->scalar, "t");
  EXPECT_EQ(d->Find("after")->scalar, "end");
  EXPECT_EQ(d->Find("topic"), nullptr);  // Parents of nested maps are not entries.
}

TEST(YamlLiteTest, ErrorsNameTheLine) {
  struct Case {
    const char* text;
    const char* want;
  } cases[] = {
      {"a: 1\na: 2\n", "line 2"},
      {"a: 1\n\tb: 2\n", "tabs"},
      {"just words\n", "expected 'key: value'"},
      {"- item\n", "list item without a key"},
      {"a: [1, 2\n", "unterminated"},
      {"a: {b: 1}\n", "flow maps"},
      {"a:\n  - b: 1\n", "lists of maps"},
      {"a: 'open\n", "unterminated quote"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<YamlDoc> d = ParseYamlLite(c.text);
    ASSERT_FALSE(d.ok()) << c.text;
    EXPECT_NE(d.status().message().find(c.want), absl::string_view::npos)
        << c.text << " -> " << d.status();
  }
}

TEST(WorkloadTest, ParsesOpenMessagingBenchmarkFile) {
  // The shape of OMB's workloads/1-topic-16-partitions-1kb.yaml.
  absl::StatusOr<Workload> w = ParseWorkload(R"(
name: 1 topic / 16 partitions / 1Kb
topics: 1
partitionsPerTopic: 16
messageSize: 1024
useRandomizedPayloads: true
randomBytesRatio: 0.5
randomizedPayloadPoolSize: 1000
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producersPerTopic: 1
producerRate: 50000
consumerBacklogSizeGB: 0
testDurationMinutes: 15
warmupDurationMinutes: 1
keyDistributor: KEY_ROUND_ROBIN
)",
                                             ".");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->name, "1 topic / 16 partitions / 1Kb");
  EXPECT_EQ(w->partitions_per_topic, 16);
  EXPECT_EQ(w->message_size, 1024);
  EXPECT_EQ(w->producer_rate, 50000);
  EXPECT_EQ(w->test_duration_seconds, 900);
  EXPECT_EQ(w->warmup_duration_seconds, 60);
  EXPECT_EQ(w->key_distributor, KeyDistributor::kKeyRoundRobin);
  EXPECT_FALSE(w->backlog_mode());
}

TEST(WorkloadTest, ExtensionsAndDefaults) {
  absl::StatusOr<Workload> w = ParseWorkload(R"(
name: backlog
payloadFile: payload/1KB.data
producerRate: 0
testDurationSeconds: 20
warmupDurationSeconds: 2.5
consumerBacklogSizeGB: 1.5
drainProducerRateFraction: 0.5
replayFromStart: yes
keyDistributor: RANDOM_NANO
)",
                                             "/base/dir");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->payload_file, "/base/dir/payload/1KB.data");
  EXPECT_EQ(w->producer_rate, 0);  // Max-rate search.
  EXPECT_EQ(w->test_duration_seconds, 20);
  EXPECT_EQ(w->warmup_duration_seconds, 2.5);
  EXPECT_TRUE(w->backlog_mode());
  EXPECT_EQ(w->BacklogTargetBytes(), 3LL << 29);
  EXPECT_TRUE(w->replay_from_start);
  EXPECT_EQ(w->key_distributor, KeyDistributor::kRandomNano);
  // Defaults.
  EXPECT_EQ(w->topics, 1);
  EXPECT_EQ(w->subscriptions_per_topic, 1);

  absl::StatusOr<Workload> abs = ParseWorkload("payloadFile: /abs/p.bin\n", "/base");
  ASSERT_TRUE(abs.ok());
  EXPECT_EQ(abs->payload_file, "/abs/p.bin");
  EXPECT_EQ(abs->name, "unnamed");
}

TEST(WorkloadTest, RejectsMistakes) {
  const char* bad[] = {
      "topics: 0\n",
      "partitionsPerTopic: two\n",
      "producerRate: -1\n",
      "keyDistributor: ZIPF\n",
      "testDurationMinutes: 1\ntestDurationSeconds: 60\n",
      "warmupDurationMinutes: 1\nwarmupDurationSeconds: 60\n",
      "consumerBacklogSizeGB: 1\nsubscriptionsPerTopic: 0\n",
      "producerRat: 100\n",  // Typo: unknown keys are errors, not silently ignored.
      "replayFromStart: maybe\n",
  };
  for (const char* text : bad) {
    EXPECT_FALSE(ParseWorkload(text, ".").ok()) << text;
  }
  absl::StatusOr<Workload> typo = ParseWorkload("name: x\nproducerRat: 100\n", ".");
  EXPECT_NE(typo.status().message().find("line 2"), absl::string_view::npos) << typo.status();
}

TEST(WorkloadTest, RepositoryWorkloadFilesParse) {
  for (const char* name : {"amqp-1k-persistent", "amqp-100b-persistent", "amqp-backlog-2m",
                           "amqp-stream-replay", "kafka-1k-1p", "kafka-1k-16p", "kafka-100b-1p",
                           "kafka-100b-16p", "kafka-backlog-10g", "smoke-amqp"}) {
    const std::string path = std::string(SLUICE_SOURCE_DIR "/bench/workloads/") + name + ".yaml";
    absl::StatusOr<Workload> w = LoadWorkload(path);
    EXPECT_TRUE(w.ok()) << path << ": " << w.status();
  }
}

TEST(DriverSettingsTest, PropertiesFromBlocksNestedMapsAndTopLevel) {
  absl::StatusOr<DriverSettings> s = DriverSettings::Parse(R"(
name: kafka
producerConfig: |
  acks=all
  # comment
  linger.ms = 5
consumerConfig:
  auto.offset.reset: earliest
confirmWindow: 64
persistent: false
)");
  ASSERT_TRUE(s.ok()) << s.status();
  absl::StatusOr<std::map<std::string, std::string>> p = s->GetProperties("producerConfig");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->at("acks"), "all");
  EXPECT_EQ(p->at("linger.ms"), "5");
  absl::StatusOr<std::map<std::string, std::string>> c = s->GetProperties("consumerConfig");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->at("auto.offset.reset"), "earliest");
  EXPECT_EQ(*s->GetInt("confirmWindow", 0), 64);
  EXPECT_EQ(*s->GetBool("persistent", true), false);
  EXPECT_EQ(*s->GetInt("absent", 7), 7);
  // "name" was never asked for.
  absl::Status unused = s->CheckAllUsed();
  EXPECT_FALSE(unused.ok());
  EXPECT_NE(unused.message().find("name"), absl::string_view::npos) << unused;
  (void)s->GetString("name", "");
  EXPECT_TRUE(s->CheckAllUsed().ok());
}

TEST(DriverSettingsTest, TypeErrors) {
  absl::StatusOr<DriverSettings> s = DriverSettings::Parse("n: many\nb: perhaps\nl: [1]\n");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->GetInt("n", 0).ok());
  EXPECT_FALSE(s->GetBool("b", false).ok());
  EXPECT_FALSE(s->GetString("l", "").ok());
}

}  // namespace
}  // namespace sluice::bench
