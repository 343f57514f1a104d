// Golden request frames captured from real clients (kcat/librdkafka 2.0.2, confluent-kafka-python
// on librdkafka, kafka-python 2.0.2, kafkajs 2.2) talking to tests/kafka/capture_requests.py.
// Each file in vectors/ is one whole frame, size prefix included. The *_response.bin files are
// the capture server's answers that those clients accepted (they went on to the next step):
// they check that our encoder writes what real clients read.
#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/framing.h"
#include "net/kafka/messages/registry.h"

namespace sluice::kafka {
namespace {

std::vector<uint8_t> ReadVector(const std::string& name) {
  std::ifstream in(std::string(SLUICE_KAFKA_VECTORS_DIR) + "/" + name, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool Contains(std::span<const uint8_t> haystack, std::string_view needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

struct Vector {
  const char* file;
  int16_t api_key;
  int16_t version;
  const char* client_id;
};

constexpr Vector kVectors[] = {
    {"kcat_api_versions_v3.bin", 18, 3, "sluice-kcat"},
    {"kcat_metadata_v4.bin", 3, 4, "sluice-kcat"},
    {"kcat_produce_v7.bin", 0, 7, "sluice-kcat"},
    {"kcat_find_coordinator_v2.bin", 10, 2, "sluice-kcat-group"},
    {"kcat_join_group_v5.bin", 11, 5, "sluice-kcat-group"},
    {"confluent_init_producer_id_v4.bin", 22, 4, "sluice-confluent"},
    {"confluent_produce_v7.bin", 0, 7, "sluice-confluent"},
    {"confluent_join_group_v5.bin", 11, 5, "sluice-confluent-consumer"},
    {"kafkapython_api_versions_v0.bin", 18, 0, "sluice-kafka-python"},
    {"kafkapython_metadata_v1.bin", 3, 1, "sluice-kafka-python"},
    {"kafkapython_produce_v7.bin", 0, 7, "sluice-kafka-python"},
    {"kafkapython_find_coordinator_v0.bin", 10, 0, "sluice-kafka-python-consumer"},
    {"kafkapython_join_group_v2.bin", 11, 2, "sluice-kafka-python-consumer"},
    {"kafkajs_api_versions_v2.bin", 18, 2, "sluice-kafkajs"},
    {"kafkajs_metadata_v6.bin", 3, 6, "sluice-kafkajs"},
    {"kafkajs_produce_v7.bin", 0, 7, "sluice-kafkajs"},
    {"kafkajs_join_group_v5.bin", 11, 5, "sluice-kafkajs"},
    {"kafkajs_create_topics_v3.bin", 19, 3, "sluice-kafkajs"},
};

void PrintTo(const Vector& v, std::ostream* os) { *os << v.file; }

class ClientVectorTest : public testing::TestWithParam<Vector> {};

TEST_P(ClientVectorTest, DecodesAndReencodesIdentically) {
  const Vector& v = GetParam();
  const std::vector<uint8_t> frame = ReadVector(v.file);
  ASSERT_GT(frame.size(), 4u) << v.file;
  absl::StatusOr<size_t> size = ParseFrameSize(frame);
  ASSERT_TRUE(size.ok()) << size.status();
  ASSERT_EQ(*size, frame.size() - 4);
  const std::span<const uint8_t> payload = std::span(frame).subspan(4);

  const DecodedRequest d = DecodeRequest(payload);
  ASSERT_TRUE(d.ok()) << v.file << ": " << d.status;
  EXPECT_EQ(d.header->api_key, v.api_key);
  EXPECT_EQ(d.header->api_version, v.version);
  EXPECT_EQ(d.header->client_id, v.client_id);
  EXPECT_EQ(ApiKeyOf(d.body), v.api_key);

  // Our encoder writes what the client wrote, byte for byte.
  const EncodedFrame again = EncodeRequest(*d.header, d.body);
  EXPECT_EQ(again.owned, frame) << v.file;
}

INSTANTIATE_TEST_SUITE_P(RealClients, ClientVectorTest, testing::ValuesIn(kVectors),
                         [](const testing::TestParamInfo<Vector>& info) {
                           std::string name = info.param.file;
                           name = name.substr(0, name.find('.'));
                           return name;
                         });

DecodedRequest DecodeFile(const char* file, std::vector<uint8_t>* keep) {
  *keep = ReadVector(file);
  return DecodeRequest(std::span<const uint8_t>(*keep).subspan(4));
}

TEST(ClientVectors, ApiVersionsV3CarriesClientSoftware) {
  std::vector<uint8_t> keep;
  const DecodedRequest d = DecodeFile("kcat_api_versions_v3.bin", &keep);
  ASSERT_TRUE(d.ok()) << d.status;
  const auto& req = std::get<ApiVersionsRequest>(d.body);
  EXPECT_EQ(req.client_software_name, "librdkafka");
  EXPECT_EQ(req.client_software_version, "2.0.2");
}

TEST(ClientVectors, MetadataNamesTheTopic) {
  for (const char* file :
       {"kcat_metadata_v4.bin", "kafkapython_metadata_v1.bin", "kafkajs_metadata_v6.bin"}) {
    std::vector<uint8_t> keep;
    const DecodedRequest d = DecodeFile(file, &keep);
    ASSERT_TRUE(d.ok()) << d.status;
    const auto& req = std::get<MetadataRequest>(d.body);
    if (!req.topics.has_value() || req.topics->empty()) continue;  // "all topics"
    EXPECT_EQ(req.topics->at(0).name, "sluice-test") << file;
  }
}

TEST(ClientVectors, ProduceRecordsAreARecordBatchViewIntoTheFrame) {
  const std::pair<const char*, const char*> cases[] = {
      {"kcat_produce_v7.bin", "hello"},
      {"confluent_produce_v7.bin", "confluent-value"},
      {"kafkapython_produce_v7.bin", "kafka-python-value"},
      {"kafkajs_produce_v7.bin", "kafkajs-value"},
  };
  for (const auto& [file, value] : cases) {
    std::vector<uint8_t> keep;
    const DecodedRequest d = DecodeFile(file, &keep);
    ASSERT_TRUE(d.ok()) << d.status;
    const auto& req = std::get<ProduceRequest>(d.body);
    ASSERT_EQ(req.topic_data.size(), 1u) << file;
    EXPECT_EQ(req.topic_data[0].name, "sluice-test");
    ASSERT_EQ(req.topic_data[0].partition_data.size(), 1u);
    EXPECT_EQ(req.topic_data[0].partition_data[0].index, 0);
    const std::span<const uint8_t> records =
        req.topic_data[0].partition_data[0].records.contiguous();
    ASSERT_GT(records.size(), 61u) << file;
    // Borrowed, not copied: the view lies inside the frame buffer.
    EXPECT_GE(records.data(), keep.data());
    EXPECT_LE(records.data() + records.size(), keep.data() + keep.size());
    EXPECT_EQ(records[16], 2) << "RecordBatch magic";
    EXPECT_TRUE(Contains(records, value)) << file;
  }
}

TEST(ClientVectors, IdempotentProducerAsksForAProducerId) {
  std::vector<uint8_t> keep;
  const DecodedRequest d = DecodeFile("confluent_init_producer_id_v4.bin", &keep);
  ASSERT_TRUE(d.ok()) << d.status;
  const auto& req = std::get<InitProducerIdRequest>(d.body);
  EXPECT_EQ(req.transactional_id, std::nullopt);
  EXPECT_EQ(req.producer_id, -1);
}

TEST(ClientVectors, FindCoordinatorNamesTheGroup) {
  for (const char* file : {"kcat_find_coordinator_v2.bin", "kafkapython_find_coordinator_v0.bin"}) {
    std::vector<uint8_t> keep;
    const DecodedRequest d = DecodeFile(file, &keep);
    ASSERT_TRUE(d.ok()) << d.status;
    EXPECT_EQ(std::get<FindCoordinatorRequest>(d.body).key, "sluice-group") << file;
  }
}

TEST(ClientVectors, JoinGroupMetadataIsAConsumerProtocolSubscription) {
  for (const char* file : {"kcat_join_group_v5.bin", "confluent_join_group_v5.bin",
                           "kafkapython_join_group_v2.bin", "kafkajs_join_group_v5.bin"}) {
    std::vector<uint8_t> keep;
    const DecodedRequest d = DecodeFile(file, &keep);
    ASSERT_TRUE(d.ok()) << d.status;
    const auto& req = std::get<JoinGroupRequest>(d.body);
    EXPECT_EQ(req.group_id, "sluice-group") << file;
    EXPECT_EQ(req.protocol_type, "consumer") << file;
    ASSERT_FALSE(req.protocols.empty()) << file;
    for (const auto& protocol : req.protocols) {
      absl::StatusOr<ConsumerProtocolSubscription> sub =
          ConsumerProtocolSubscription::DecodeVersioned(protocol.metadata);
      ASSERT_TRUE(sub.ok()) << file << " " << protocol.name << ": " << sub.status();
      ASSERT_EQ(sub->topics.size(), 1u) << file;
      EXPECT_EQ(sub->topics[0], "sluice-test") << file;
    }
  }
}

TEST(ClientVectors, CreateTopicsFromKafkaJsAdmin) {
  std::vector<uint8_t> keep;
  const DecodedRequest d = DecodeFile("kafkajs_create_topics_v3.bin", &keep);
  ASSERT_TRUE(d.ok()) << d.status;
  const auto& req = std::get<CreateTopicsRequest>(d.body);
  ASSERT_EQ(req.topics.size(), 1u);
  EXPECT_EQ(req.topics[0].name, "sluice-new");
  EXPECT_EQ(req.topics[0].num_partitions, 3);
}

struct ResponseVector {
  const char* file;
  int16_t api_key;
  int16_t version;
};

void PrintTo(const ResponseVector& v, std::ostream* os) { *os << v.file; }

constexpr ResponseVector kResponseVectors[] = {
    {"kcat_api_versions_v3_response.bin", 18, 3},
    {"kcat_metadata_v4_response.bin", 3, 4},
    {"kcat_produce_v7_response.bin", 0, 7},
    {"kcat_find_coordinator_v2_response.bin", 10, 2},
    {"confluent_init_producer_id_v4_response.bin", 22, 4},
    {"kafkapython_api_versions_v0_response.bin", 18, 0},
    {"kafkapython_metadata_v1_response.bin", 3, 1},
    {"kafkapython_produce_v7_response.bin", 0, 7},
    {"kafkapython_find_coordinator_v0_response.bin", 10, 0},
    {"kafkajs_api_versions_v2_response.bin", 18, 2},
    {"kafkajs_metadata_v6_response.bin", 3, 6},
    {"kafkajs_produce_v7_response.bin", 0, 7},
};

class AcceptedResponseTest : public testing::TestWithParam<ResponseVector> {};

TEST_P(AcceptedResponseTest, DecodesAndReencodesIdentically) {
  const ResponseVector& v = GetParam();
  const std::vector<uint8_t> frame = ReadVector(v.file);
  ASSERT_GT(frame.size(), 4u) << v.file;
  ASSERT_EQ(ParseFrameSize(frame).value(), frame.size() - 4);
  absl::StatusOr<DecodedResponse> d =
      DecodeResponse(v.api_key, v.version, std::span(frame).subspan(4));
  ASSERT_TRUE(d.ok()) << v.file << ": " << d.status();
  const EncodedFrame again = EncodeResponse(d->header.correlation_id, v.version, d->body);
  EXPECT_EQ(again.owned, frame) << v.file;
}

INSTANTIATE_TEST_SUITE_P(RealClients, AcceptedResponseTest, testing::ValuesIn(kResponseVectors),
                         [](const testing::TestParamInfo<ResponseVector>& info) {
                           std::string name = info.param.file;
                           return name.substr(0, name.find('.'));
                         });

TEST(ClientVectors, AcceptedMetadataResponseNamesTheBroker) {
  const std::vector<uint8_t> frame = ReadVector("kafkajs_metadata_v6_response.bin");
  absl::StatusOr<DecodedResponse> d = DecodeResponse(3, 6, std::span(frame).subspan(4));
  ASSERT_TRUE(d.ok()) << d.status();
  const auto& m = std::get<MetadataResponse>(d->body);
  ASSERT_EQ(m.brokers.size(), 1u);
  EXPECT_EQ(m.brokers[0].host, "127.0.0.1");
  ASSERT_EQ(m.topics.size(), 1u);
  EXPECT_EQ(m.topics[0].name, "sluice-test");
  EXPECT_EQ(m.cluster_id, "sluice-capture");
}

}  // namespace
}  // namespace sluice::kafka
