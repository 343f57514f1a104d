// Driver construction and settings validation; no broker needed.
#include <string>

#include "bench/harness/driver.h"
#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

DriverSettings Settings(const char* text) {
  absl::StatusOr<DriverSettings> s = DriverSettings::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return *std::move(s);
}

TEST(DriverTest, ParseHostPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:5673", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 5673);
  for (const char* bad : {"127.0.0.1", ":5", "h:0", "h:70000", "h:x"}) {
    EXPECT_FALSE(ParseHostPort(bad, &host, &port).ok()) << bad;
  }
}

TEST(DriverTest, UnknownDriverKind) {
  EXPECT_FALSE(MakeDriver("pulsar", "127.0.0.1:1", DriverSettings()).ok());
}

TEST(AmqpDriverTest, AcceptsTheRepositorySettingsAndDescribesThem) {
  absl::StatusOr<std::unique_ptr<Driver>> d = MakeDriver("amqp", "127.0.0.1:1", Settings(R"(
name: x
driver: amqp
confirmWindow: 64
persistent: true
prefetch: 100
exchangeType: direct
queueType: stream
streamOffset: first
password: secret
)"));
  ASSERT_TRUE(d.ok()) << d.status();
  const std::map<std::string, std::string> desc = (*d)->Describe();
  EXPECT_EQ(desc.at("confirmWindow"), "64");
  EXPECT_EQ(desc.at("queueType"), "stream");
  EXPECT_EQ(desc.at("ackEvery"), "25");          // prefetch / 4 by default.
  EXPECT_EQ(desc.find("password"), desc.end());  // Never written to results.
}

TEST(AmqpDriverTest, RejectsInvalidSettings) {
  for (const char* text :
       {"confirmWindow: -1\n", "exchangeType: headers\n", "queueType: lazy\n",
        "queueType: stream\nautoAck: true\n", "queueType: stream\nprefetch: 0\n",
        "queueType: stream\nqueueDurable: false\n", "prefetch: 70000\n", "confirmWindw: 10\n"}) {
    EXPECT_FALSE(MakeDriver("amqp", "127.0.0.1:1", Settings(text)).ok()) << text;
  }
}

TEST(AmqpDriverTest, ProbeFailsWhenNothingListens) {
  absl::StatusOr<std::unique_ptr<Driver>> d =
      MakeDriver("amqp", "127.0.0.1:1", Settings("connectTimeoutMs: 500\n"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->Probe(500).ok());
}

TEST(KafkaDriverTest, MapsShorthandsAndBlocksToClientProperties) {
  absl::StatusOr<std::unique_ptr<Driver>> d = MakeDriver("kafka", "127.0.0.1:1", Settings(R"(
name: k
driver: kafka
acks: -1
linger.ms: 1
producerConfig: |
  batch.size=65536
consumerConfig:
  fetch.wait.max.ms: 5
topicConfig: |
  flush.messages=1
)"));
  ASSERT_TRUE(d.ok()) << d.status();
  const std::map<std::string, std::string> desc = (*d)->Describe();
  EXPECT_EQ(desc.at("producer.acks"), "-1");
  EXPECT_EQ(desc.at("producer.linger.ms"), "1");
  EXPECT_EQ(desc.at("producer.batch.size"), "65536");
  EXPECT_EQ(desc.at("consumer.fetch.wait.max.ms"), "5");
  EXPECT_EQ(desc.at("topic.flush.messages"), "1");
}

TEST(KafkaDriverTest, RejectsUnknownKeysAndBadClientProperties) {
  EXPECT_FALSE(MakeDriver("kafka", "127.0.0.1:1", Settings("lingerms: 1\n")).ok());
  // librdkafka itself rejects the property when a client is made.
  absl::StatusOr<std::unique_ptr<Driver>> d =
      MakeDriver("kafka", "127.0.0.1:1", Settings("producerConfig: |\n  no.such.property=1\n"));
  ASSERT_TRUE(d.ok());
  ProducerStats stats;
  EXPECT_FALSE((*d)->CreateProducer("t", &stats).ok());
}

TEST(KafkaDriverTest, ProbeFailsWhenNothingListens) {
  absl::StatusOr<std::unique_ptr<Driver>> d =
      MakeDriver("kafka", "127.0.0.1:1", Settings("commonConfig: |\n  log_level=0\n"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->Probe(1000).ok());
}

}  // namespace
}  // namespace sluice::bench
