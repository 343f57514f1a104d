// Round trips for every supported API and version: a request and a response with every field
// of that version set to a non-default value (generated FillForTest) encode, decode back to an
// equal value, and re-encode to the same bytes.
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/framing.h"
#include "net/kafka/messages/registry.h"
#include "net/kafka/messages/testing.h"

namespace sluice::kafka {
namespace {

struct ApiVersionCase {
  int16_t api_key;
  int16_t version;
  std::string name;
};

void PrintTo(const ApiVersionCase& c, std::ostream* os) { *os << c.name; }

std::vector<ApiVersionCase> AllApiVersions() {
  std::vector<ApiVersionCase> cases;
  for (const ApiInfo& api : kSupportedApis) {
    for (int16_t v = api.min_version; v <= api.max_version; ++v) {
      cases.push_back({api.api_key, v, std::string(api.name) + "V" + std::to_string(v)});
    }
  }
  return cases;
}

std::span<const uint8_t> Payload(const EncodedFrame& frame) {
  return std::span(frame.owned).subspan(kFrameSizePrefixBytes);
}

class RoundTripTest : public testing::TestWithParam<ApiVersionCase> {};

TEST_P(RoundTripTest, RequestWithEveryFieldSet) {
  const ApiVersionCase& c = GetParam();
  for (uint32_t seed : {1u, 7u}) {
    const AnyRequest original = MakeTestRequest(c.api_key, c.version, seed);
    ASSERT_EQ(ApiKeyOf(original), c.api_key);
    const RequestHeader header{.api_key = c.api_key,
                               .api_version = c.version,
                               .correlation_id = 0x1234567,
                               .client_id = "roundtrip-client"};
    const EncodedFrame frame = EncodeRequest(header, original);
    ASSERT_TRUE(frame.externals.empty());
    ASSERT_EQ(ParseFrameSize(frame.owned).value(), frame.owned.size() - kFrameSizePrefixBytes);

    const DecodedRequest decoded = DecodeRequest(Payload(frame));
    ASSERT_TRUE(decoded.ok()) << decoded.status;
    EXPECT_EQ(*decoded.header, header);
    EXPECT_TRUE(decoded.body == original);

    const EncodedFrame again = EncodeRequest(*decoded.header, decoded.body);
    EXPECT_EQ(again.owned, frame.owned);
  }
}

TEST_P(RoundTripTest, ResponseWithEveryFieldSet) {
  const ApiVersionCase& c = GetParam();
  for (uint32_t seed : {1u, 7u}) {
    const AnyResponse original = MakeTestResponse(c.api_key, c.version, seed);
    ASSERT_EQ(ApiKeyOf(original), c.api_key);
    const EncodedFrame frame = EncodeResponse(-5, c.version, original);
    ASSERT_EQ(ParseFrameSize(frame.owned).value(), frame.owned.size() - kFrameSizePrefixBytes);

    absl::StatusOr<DecodedResponse> decoded = DecodeResponse(c.api_key, c.version, Payload(frame));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->header.correlation_id, -5);
    EXPECT_TRUE(decoded->body == original);

    const EncodedFrame again = EncodeResponse(-5, c.version, decoded->body);
    EXPECT_EQ(again.owned, frame.owned);
  }
}

TEST_P(RoundTripTest, DefaultValuesRoundTrip) {
  const ApiVersionCase& c = GetParam();
  AnyRequest request;
  Reader none({});
  // A default-constructed message of the right type: decode fails on empty input but leaves
  // the variant holding the type, which we then reset.
  (void)DecodeRequestBody(c.api_key, c.version, none, &request);
  std::visit([](auto& m) { m = std::decay_t<decltype(m)>(); }, request);
  ASSERT_EQ(ApiKeyOf(request), c.api_key);
  // MinWireSize, which bounds array counts before reserving, is a true lower bound: the
  // default message (empty strings and arrays) is the smallest encoding.
  std::visit(
      [&](const auto& m) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(m)>, std::monostate>) {
          Writer w;
          m.Encode(w, c.version);
          EXPECT_EQ(std::decay_t<decltype(m)>::MinWireSize(c.version), w.size());
        }
      },
      request);
  const RequestHeader header{.api_key = c.api_key, .api_version = c.version};
  const EncodedFrame frame = EncodeRequest(header, request);
  const DecodedRequest decoded = DecodeRequest(Payload(frame));
  ASSERT_TRUE(decoded.ok()) << decoded.status;
  EXPECT_TRUE(decoded.body == request);
  EXPECT_EQ(decoded.header->client_id, std::nullopt);

  AnyResponse response;
  (void)DecodeResponseBody(c.api_key, c.version, none, &response);
  std::visit([](auto& m) { m = std::decay_t<decltype(m)>(); }, response);
  const EncodedFrame rframe = EncodeResponse(3, c.version, response);
  absl::StatusOr<DecodedResponse> rdecoded = DecodeResponse(c.api_key, c.version, Payload(rframe));
  ASSERT_TRUE(rdecoded.ok()) << rdecoded.status();
  EXPECT_TRUE(rdecoded->body == response);
}

INSTANTIATE_TEST_SUITE_P(AllApis, RoundTripTest, testing::ValuesIn(AllApiVersions()),
                         [](const testing::TestParamInfo<ApiVersionCase>& info) {
                           return info.param.name;
                         });

TEST(RoundTripCoverage, EveryApiAndVersionIsListed) {
  // 26 APIs (OffsetForLeaderEpoch, 0-4, the latest); the version counts follow the supported
  // ranges.
  EXPECT_EQ(kSupportedApis.size(), 26u);
  EXPECT_EQ(AllApiVersions().size(), 152u);
}

TEST(ConsumerProtocolRoundTrip, SubscriptionEveryVersion) {
  for (int16_t v = ConsumerProtocolSubscription::kMinVersion;
       v <= ConsumerProtocolSubscription::kMaxVersion; ++v) {
    ConsumerProtocolSubscription original;
    FillForTest(&original, v, 3);
    const std::vector<uint8_t> bytes = original.EncodeVersioned(v);
    absl::StatusOr<ConsumerProtocolSubscription> decoded =
        ConsumerProtocolSubscription::DecodeVersioned(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, original) << "version " << v;
  }
}

TEST(ConsumerProtocolRoundTrip, AssignmentEveryVersion) {
  for (int16_t v = ConsumerProtocolAssignment::kMinVersion;
       v <= ConsumerProtocolAssignment::kMaxVersion; ++v) {
    ConsumerProtocolAssignment original;
    FillForTest(&original, v, 4);
    const std::vector<uint8_t> bytes = original.EncodeVersioned(v);
    absl::StatusOr<ConsumerProtocolAssignment> decoded =
        ConsumerProtocolAssignment::DecodeVersioned(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, original) << "version " << v;
  }
}

TEST(ConsumerProtocolRoundTrip, NewerVersionIsReadAsLatestIgnoringAppendedFields) {
  ConsumerProtocolSubscription original;
  FillForTest(&original, ConsumerProtocolSubscription::kMaxVersion, 5);
  std::vector<uint8_t> bytes = original.EncodeVersioned(ConsumerProtocolSubscription::kMaxVersion);
  bytes[1] = 9;                                         // a future version 9 ...
  bytes.insert(bytes.end(), {0xde, 0xad, 0xbe, 0xef});  // ... with fields we do not know
  absl::StatusOr<ConsumerProtocolSubscription> decoded =
      ConsumerProtocolSubscription::DecodeVersioned(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, original);
}

TEST(ConsumerProtocolRoundTrip, NegativeVersionIsRejected) {
  const std::vector<uint8_t> bytes = {0xff, 0xff, 0, 0, 0, 0};
  EXPECT_FALSE(ConsumerProtocolAssignment::DecodeVersioned(bytes).ok());
}

}  // namespace
}  // namespace sluice::kafka
