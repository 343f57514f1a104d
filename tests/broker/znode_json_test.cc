// The znodes' JSON (src/cluster/znode_json.h): what Sluice writes reads back, Kafka's own
// registrations are understood, and anything else is refused rather than half-read.
#include "src/cluster/znode_json.h"

#include <set>

#include "gtest/gtest.h"

namespace sluice::cluster {
namespace {

TEST(ZnodeJsonTest, RegistrationRoundTripsAndNamesThePlaintextEndpoint) {
  const std::string data = EncodeRegistration("10.1.2.3", 19092, 1700000000000);
  auto b = DecodeRegistration(7, data);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->id, 7);
  EXPECT_EQ(b->host, "10.1.2.3");
  EXPECT_EQ(b->port, 19092);
  EXPECT_NE(data.find("\"endpoints\":[\"PLAINTEXT://10.1.2.3:19092\"]"), std::string::npos);
  EXPECT_NE(data.find("\"version\":5"), std::string::npos);
}

TEST(ZnodeJsonTest, AKafkaRegistrationWithoutHostIsReadFromItsEndpoints) {
  // Kafka writes "host": null and port -1 when its only listener is not PLAINTEXT-named.
  auto b = DecodeRegistration(
      2, R"({"features":{},"listener_security_protocol_map":{"INTERNAL":"PLAINTEXT"},)"
         R"("endpoints":["INTERNAL://k2:9093","PLAINTEXT://k2.example:9092"],"jmx_port":-1,)"
         R"("port":-1,"host":null,"version":5,"timestamp":"1"})");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->host, "k2.example");
  EXPECT_EQ(b->port, 9092);
}

TEST(ZnodeJsonTest, BadRegistrationsAreRefused) {
  for (const char* data :
       {"", "null", "[]", "{", R"({"host":"h","port":0})", R"({"host":"h","port":65536})",
        R"({"host":"","port":9092})", R"({"host":"h","port":"9092"})",
        R"({"endpoints":["PLAINTEXT://:9092"]})", R"({"endpoints":["PLAINTEXT://h:99999"]})",
        R"({"endpoints":[1,2]})", R"({"host":"h","port":18446744073709551615})"}) {
    EXPECT_FALSE(DecodeRegistration(1, data).has_value()) << data;
  }
}

TEST(ZnodeJsonTest, ControllerRoundTripsAndRefusesWhatNamesNoBroker) {
  EXPECT_EQ(DecodeController(EncodeController(3, 1)), 3);
  EXPECT_EQ(DecodeController(R"({"version":1,"brokerid":0,"timestamp":"5"})"), 0);
  for (const char* data : {"", "3", R"({"brokerid":-1})", R"({"brokerid":2147483648})",
                           R"({"brokerid":"3"})", R"({"version":1})"}) {
    EXPECT_FALSE(DecodeController(data).has_value()) << data;
  }
}

TEST(ZnodeJsonTest, ClusterIdsRoundTripAndNewOnesLookLikeKafkas) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewClusterId();
    ASSERT_EQ(id.size(), 22u);
    for (char c : id) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
    EXPECT_EQ(DecodeClusterId(EncodeClusterId(id)), id);
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_FALSE(DecodeClusterId(R"({"version":"1","id":""})").has_value());
  EXPECT_FALSE(DecodeClusterId(R"({"version":"1","id":5})").has_value());
}

TEST(ZnodeJsonTest, ControllerEpochsAreDecimalAndLeaveRoomForTheNext) {
  EXPECT_EQ(DecodeControllerEpoch("0"), 0);
  EXPECT_EQ(DecodeControllerEpoch("41"), 41);
  EXPECT_EQ(DecodeControllerEpoch("2147483646"), 2147483646);
  for (const char* data : {"", "-1", "x", "2147483647", "1.5", "99999999999"}) {
    EXPECT_FALSE(DecodeControllerEpoch(data).has_value()) << data;
  }
}

TEST(ZnodeJsonTest, ProducerIdBlocksUseKafkasStringsAndRefuseBadRanges) {
  const std::string data = EncodeProducerIdBlock({2, 1000, 1999});
  EXPECT_NE(data.find("\"block_start\":\"1000\""), std::string::npos);
  EXPECT_NE(data.find("\"block_end\":\"1999\""), std::string::npos);
  auto b = DecodeProducerIdBlock(data);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->broker, 2);
  EXPECT_EQ(b->start, 1000);
  EXPECT_EQ(b->end, 1999);
  for (const char* bad :
       {"", R"({"block_start":"5","block_end":"4"})", R"({"block_start":"-1","block_end":"4"})",
        R"({"block_start":5,"block_end":9})", R"({"block_start":"0"})",
        R"({"block_start":"0","block_end":"9223372036854775807"})"}) {
    EXPECT_FALSE(DecodeProducerIdBlock(bad).has_value()) << bad;
  }
}

TEST(ZnodeJsonTest, PartitionStatesReadKafkasLayoutAndRefuseBadOnes) {
  auto s = DecodePartitionState(
      R"({"controller_epoch":12,"leader":2,"version":1,"leader_epoch":7,"isr":[2,3]})");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->leader, 2);
  EXPECT_EQ(s->leader_epoch, 7);
  EXPECT_EQ(s->controller_epoch, 12);
  EXPECT_EQ(s->isr, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(s->version, -1);  // the znode's version is not in its data
  PartitionState none;
  none.isr = {4};
  EXPECT_EQ(DecodePartitionState(EncodePartitionState(none)), none);
  for (const char* bad : {"", R"({"leader":-2,"leader_epoch":0,"controller_epoch":0,"isr":[]})",
                          R"({"leader":1,"leader_epoch":-1,"controller_epoch":0,"isr":[1]})",
                          R"({"leader":1,"leader_epoch":0,"controller_epoch":0,"isr":[1,1]})",
                          R"({"leader":1,"leader_epoch":0,"controller_epoch":0})",
                          R"({"leader":1,"leader_epoch":0,"controller_epoch":0,"isr":["1"]})"}) {
    EXPECT_FALSE(DecodePartitionState(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace sluice::cluster
