// Framing rules: size prefix, header versions, DecodeRequest's error classes, ApiVersions.
#include "net/kafka/framing.h"

#include <cstdint>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/error_codes.h"
#include "net/kafka/messages/registry.h"

namespace sluice::kafka {
namespace {

std::vector<uint8_t> Header(int16_t key, int16_t version, int32_t correlation,
                            std::optional<std::string> client_id, int16_t header_version) {
  Writer w;
  EncodeRequestHeader({.api_key = key,
                       .api_version = version,
                       .correlation_id = correlation,
                       .client_id = std::move(client_id)},
                      header_version, w);
  return std::move(w).Finish().owned;
}

TEST(Framing, FrameSizeLimits) {
  const std::vector<uint8_t> ok = {0, 0, 1, 0};
  EXPECT_EQ(ParseFrameSize(ok).value(), 256u);
  const std::vector<uint8_t> negative = {0xff, 0xff, 0xff, 0xfe};
  EXPECT_EQ(ParseFrameSize(negative).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> huge = {0x7f, 0xff, 0xff, 0xff};
  EXPECT_EQ(ParseFrameSize(huge).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseFrameSize(huge, size_t{1} << 31).ok());
  const std::vector<uint8_t> short_prefix = {0, 0, 1};
  EXPECT_EQ(ParseFrameSize(short_prefix).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(Framing, HeaderVersionsFollowFlexibleVersions) {
  EXPECT_EQ(RequestHeaderVersion(3, 8), 1);  // Metadata v8: classic
  EXPECT_EQ(RequestHeaderVersion(3, 9), 2);  // Metadata v9: flexible
  EXPECT_EQ(ResponseHeaderVersion(3, 8), 0);
  EXPECT_EQ(ResponseHeaderVersion(3, 9), 1);
  EXPECT_EQ(RequestHeaderVersion(0, 9), 2);   // Produce v9
  EXPECT_EQ(RequestHeaderVersion(1, 11), 1);  // Fetch v11
  EXPECT_EQ(RequestHeaderVersion(1, 12), 2);
  EXPECT_EQ(RequestHeaderVersion(60, 0), 2);  // DescribeCluster is flexible from v0
  EXPECT_EQ(ResponseHeaderVersion(60, 0), 1);
  EXPECT_EQ(RequestHeaderVersion(17, 1), 1);  // SaslHandshake never flexible
  // ApiVersions: the request follows the rule, the response header is always v0.
  EXPECT_EQ(RequestHeaderVersion(18, 3), 2);
  EXPECT_EQ(ResponseHeaderVersion(18, 3), 0);
  EXPECT_EQ(RequestHeaderVersion(999, 0), 1);
}

TEST(Framing, RequestHeaderV2ClientIdIsClassicNotCompact) {
  const std::vector<uint8_t> b = Header(3, 12, 7, "ab", 2);
  EXPECT_EQ(b, (std::vector<uint8_t>{0, 3, 0, 12, 0, 0, 0, 7, 0, 2, 'a', 'b', 0}));
}

TEST(Framing, UnknownApiKeyKeepsHeader) {
  std::vector<uint8_t> b = Header(1000, 0, 42, "cli", 1);
  b.push_back(0);
  const DecodedRequest d = DecodeRequest(b);
  EXPECT_EQ(d.error, RequestError::kUnknownApiKey);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(d.header.has_value());
  EXPECT_EQ(d.header->api_key, 1000);
  EXPECT_EQ(d.header->correlation_id, 42);
  EXPECT_EQ(d.header->client_id, "cli");
}

TEST(Framing, UnsupportedVersionKeepsHeader) {
  // ApiVersions v4 (newer than we support) with a v2 header and a body we cannot know.
  std::vector<uint8_t> b = Header(18, 4, 77, "new-client", 2);
  b.insert(b.end(), {3, 'x', 'y', 2, '1', 0});
  DecodedRequest d = DecodeRequest(b);
  EXPECT_EQ(d.error, RequestError::kUnsupportedVersion);
  ASSERT_TRUE(d.header.has_value());
  EXPECT_EQ(d.header->correlation_id, 77);
  EXPECT_EQ(d.header->client_id, "new-client");
  EXPECT_EQ(d.header->api_version, 4);

  // ListOffsets v0 is older than we support.
  d = DecodeRequest(Header(2, 0, 5, std::nullopt, 1));
  EXPECT_EQ(d.error, RequestError::kUnsupportedVersion);
  EXPECT_EQ(d.header->correlation_id, 5);
  EXPECT_EQ(d.header->client_id, std::nullopt);

  // Even a header cut after the correlation id is enough to answer.
  const std::vector<uint8_t> cut = Header(18, 9, 6, "c", 1);
  d = DecodeRequest(std::span(cut).first(8));
  EXPECT_EQ(d.error, RequestError::kUnsupportedVersion);
  EXPECT_EQ(d.header->correlation_id, 6);
}

TEST(Framing, ShortHeaderIsMalformed) {
  const std::vector<uint8_t> b = {0, 3, 0, 1, 0, 0, 0};
  const DecodedRequest d = DecodeRequest(b);
  EXPECT_EQ(d.error, RequestError::kMalformedHeader);
  EXPECT_FALSE(d.header.has_value());
}

TEST(Framing, UnsupportedApiVersionsResponseIsV0WithOurVersions) {
  const EncodedFrame frame = EncodeUnsupportedApiVersionsResponse(31);
  absl::StatusOr<DecodedResponse> d = DecodeResponse(18, 0, std::span(frame.owned).subspan(4));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->header.correlation_id, 31);
  const auto& body = std::get<ApiVersionsResponse>(d->body);
  EXPECT_EQ(body.error_code, errors::kUnsupportedVersion);
  ASSERT_EQ(body.api_keys.size(), kSupportedApis.size());
  EXPECT_EQ(body.api_keys[0].api_key, 0);
  EXPECT_EQ(body.api_keys[0].min_version, 0);
  EXPECT_EQ(body.api_keys[0].max_version, 9);
}

TEST(Framing, ApiVersionsV3ResponseUsesHeaderV0AndCompactBody) {
  ApiVersionsResponse response;
  response.api_keys = SupportedApiVersions();
  const EncodedFrame frame = EncodeResponse(8, 3, response);
  // size(4) correlation(4) error_code(2) then the compact array count (n + 1), no header tags.
  ASSERT_GT(frame.owned.size(), 11u);
  EXPECT_EQ(frame.owned[4 + 4 + 2], kSupportedApis.size() + 1);
}

TEST(Framing, SupportedVersionTable) {
  const std::pair<int16_t, std::pair<int16_t, int16_t>> expected[] = {
      {18, {0, 3}}, {3, {0, 12}}, {0, {0, 9}},  {1, {2, 12}}, {2, {1, 7}},
      {19, {0, 7}}, {20, {0, 6}}, {37, {0, 3}}, {32, {0, 4}}, {44, {0, 1}},
      {22, {0, 4}}, {60, {0, 0}}, {10, {0, 4}}, {11, {0, 9}}, {14, {0, 5}},
      {12, {0, 4}}, {13, {0, 5}}, {8, {0, 8}},  {9, {0, 8}},  {16, {0, 4}},
      {15, {0, 5}}, {42, {0, 2}}, {47, {0, 0}}, {17, {0, 1}}, {36, {0, 2}},
  };
  for (const auto& [key, range] : expected) {
    const ApiInfo* api = FindApi(key);
    ASSERT_NE(api, nullptr) << key;
    EXPECT_EQ(api->min_version, range.first) << api->name;
    EXPECT_EQ(api->max_version, range.second) << api->name;
  }
  EXPECT_EQ(FindApi(4), nullptr);  // LeaderAndIsr: not for clients
}

static_assert(std::is_same_v<ResponseFor<ProduceRequest>, ProduceResponse>);
static_assert(std::is_same_v<ResponseFor<ApiVersionsRequest>, ApiVersionsResponse>);

TEST(Framing, ErrorCodeNames) {
  EXPECT_EQ(errors::ErrorCodeName(errors::kNone), "NONE");
  EXPECT_EQ(errors::ErrorCodeName(-1), "UNKNOWN_SERVER_ERROR");
  EXPECT_EQ(errors::ErrorCodeName(6), "NOT_LEADER_OR_FOLLOWER");
  EXPECT_EQ(errors::ErrorCodeName(79), "MEMBER_ID_REQUIRED");
  EXPECT_EQ(errors::ErrorCodeName(100), "UNKNOWN_TOPIC_ID");
  EXPECT_EQ(errors::ErrorCodeName(30000), "UNKNOWN_ERROR_CODE");
  EXPECT_EQ(errors::kUnsupportedVersion, 35);
  EXPECT_EQ(errors::kInvalidRecord, 87);
  EXPECT_TRUE(errors::IsRetriable(errors::kNotLeaderOrFollower));
  EXPECT_FALSE(errors::IsRetriable(errors::kTopicAuthorizationFailed));
}

}  // namespace
}  // namespace sluice::kafka
