// Hostile and damaged input: every truncation of every valid message, declared counts and
// lengths that the remaining bytes cannot hold, negative lengths, unknown tagged fields.
// Decoding must fail cleanly (or skip what it may skip), never crash or over-allocate.
#include <cstdint>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/framing.h"
#include "net/kafka/messages/registry.h"
#include "net/kafka/messages/testing.h"

namespace sluice::kafka {
namespace {

std::vector<uint8_t> RequestPayload(int16_t key, int16_t version, const AnyRequest& body,
                                    std::optional<std::string> client_id = "hostile") {
  const EncodedFrame f = EncodeRequest(
      {.api_key = key, .api_version = version, .correlation_id = 11, .client_id = client_id}, body);
  return std::vector<uint8_t>(f.owned.begin() + kFrameSizePrefixBytes, f.owned.end());
}

// The request header v1 bytes, for hand-built bodies.
Writer HeaderV1(int16_t key, int16_t version) {
  Writer w;
  EncodeRequestHeader(
      {.api_key = key, .api_version = version, .correlation_id = 1, .client_id = "h"}, 1, w);
  return w;
}

DecodedRequest Decode(Writer&& w) {
  static std::vector<uint8_t> keep;  // the decoded views borrow from it
  keep = std::move(w).Finish().owned;
  return DecodeRequest(keep);
}

TEST(HostileInput, EveryTruncationOfEveryRequestFails) {
  for (const ApiInfo& api : kSupportedApis) {
    for (int16_t v = api.min_version; v <= api.max_version; ++v) {
      const std::vector<uint8_t> full =
          RequestPayload(api.api_key, v, MakeTestRequest(api.api_key, v, 2));
      ASSERT_TRUE(DecodeRequest(full).ok()) << api.name << " v" << v;
      for (size_t n = 0; n < full.size(); ++n) {
        // A fresh copy of exactly n bytes, so ASan sees any read past the end.
        const std::vector<uint8_t> cut(full.begin(), full.begin() + n);
        const DecodedRequest d = DecodeRequest(cut);
        ASSERT_FALSE(d.ok()) << api.name << " v" << v << " cut at " << n;
        EXPECT_EQ(d.error, n < 8 ? RequestError::kMalformedHeader : RequestError::kMalformedBody);
      }
    }
  }
}

TEST(HostileInput, EveryTruncationOfEveryResponseFails) {
  for (const ApiInfo& api : kSupportedApis) {
    for (int16_t v = api.min_version; v <= api.max_version; ++v) {
      const EncodedFrame f = EncodeResponse(1, v, MakeTestResponse(api.api_key, v, 2));
      const std::vector<uint8_t> full(f.owned.begin() + 4, f.owned.end());
      for (size_t n = 0; n < full.size(); ++n) {
        const std::vector<uint8_t> cut(full.begin(), full.begin() + n);
        ASSERT_FALSE(DecodeResponse(api.api_key, v, cut).ok())
            << api.name << " v" << v << " cut at " << n;
      }
    }
  }
}

TEST(HostileInput, HugeArrayCountWithFewBytesLeftIsRejectedBeforeAllocating) {
  Writer w = HeaderV1(0, 3);  // Produce v3
  w.WriteInt16(-1);           // transactional_id: null
  w.WriteInt16(1);            // acks
  w.WriteInt32(1000);         // timeout_ms
  w.WriteInt32(0x7fffffff);   // topic_data count
  for (int i = 0; i < 10; ++i) w.WriteInt8(0);
  const DecodedRequest d = Decode(std::move(w));
  EXPECT_EQ(d.error, RequestError::kMalformedBody);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kOutOfRange) << d.status;
}

TEST(HostileInput, HugeCompactCountIsRejected) {
  for (uint32_t raw : {0xffffffffu, 0x80000000u, 0x7fffffffu}) {
    Writer w;
    EncodeRequestHeader({.api_key = 3, .api_version = 12, .correlation_id = 1}, 2, w);
    w.WriteUnsignedVarint(raw);  // topics: compact count + 1
    for (int i = 0; i < 10; ++i) w.WriteInt8(1);
    const DecodedRequest d = Decode(std::move(w));
    EXPECT_EQ(d.error, RequestError::kMalformedBody) << raw;
  }
}

TEST(HostileInput, CountOfSmallElementsNeedsTheirBytes) {
  // Metadata v5 response: replica_nodes ([]int32) declares 5 elements with 16 bytes left, so
  // 5 * 4 > 16 fails before anything is reserved.
  Writer w;
  w.WriteInt32(0);   // throttle
  w.WriteInt32(0);   // brokers
  w.WriteInt16(-1);  // cluster id
  w.WriteInt32(0);   // controller
  w.WriteInt32(1);   // topics
  w.WriteInt16(0);
  w.WriteString(false, "t");
  w.WriteInt8(0);   // is_internal
  w.WriteInt32(1);  // partitions
  w.WriteInt16(0);
  w.WriteInt32(0);
  w.WriteInt32(0);
  w.WriteInt32(5);  // replica_nodes count
  for (int i = 0; i < 4; ++i) w.WriteInt32(i);
  const std::vector<uint8_t> b = std::move(w).Finish().owned;
  Reader r(b);
  MetadataResponse m;
  const absl::Status s = m.Decode(r, 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
}

TEST(HostileInput, NegativeLengthsAreErrors) {
  {  // string length -2 (topic name)
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(1);
    w.WriteInt16(-2);
    w.WriteInt32(0);  // enough bytes that the array count itself is plausible
    w.WriteInt32(0);
    const DecodedRequest d = Decode(std::move(w));
    EXPECT_EQ(d.error, RequestError::kMalformedBody);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInvalidArgument);
  }
  {  // null (-1) topic name where the field is not nullable
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(1);
    w.WriteInt16(-1);
    w.WriteInt32(0);
    w.WriteInt32(0);
    const DecodedRequest d = Decode(std::move(w));
    EXPECT_EQ(d.error, RequestError::kMalformedBody);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInvalidArgument);
  }
  {  // records length -7
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(1);
    w.WriteString(false, "t");
    w.WriteInt32(1);
    w.WriteInt32(0);   // partition index
    w.WriteInt32(-7);  // records
    const DecodedRequest d = Decode(std::move(w));
    EXPECT_EQ(d.error, RequestError::kMalformedBody);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kInvalidArgument);
  }
  {  // array count -2
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(-2);
    EXPECT_EQ(Decode(std::move(w)).error, RequestError::kMalformedBody);
  }
  {  // array count -1 (null) where the array is not nullable
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(-1);
    EXPECT_EQ(Decode(std::move(w)).error, RequestError::kMalformedBody);
  }
  {  // bytes length -5 (JoinGroup v0 protocol metadata)
    Writer w = HeaderV1(11, 0);
    w.WriteString(false, "g");
    w.WriteInt32(10000);
    w.WriteString(false, "");
    w.WriteString(false, "consumer");
    w.WriteInt32(1);
    w.WriteString(false, "range");
    w.WriteInt32(-5);
    EXPECT_EQ(Decode(std::move(w)).error, RequestError::kMalformedBody);
  }
  {  // records length larger than the frame
    Writer w = HeaderV1(0, 3);
    w.WriteInt16(-1);
    w.WriteInt16(1);
    w.WriteInt32(1000);
    w.WriteInt32(1);
    w.WriteString(false, "t");
    w.WriteInt32(1);
    w.WriteInt32(0);
    w.WriteInt32(0x7fffffff);
    w.WriteInt32(0);
    const DecodedRequest d = Decode(std::move(w));
    EXPECT_EQ(d.status.code(), absl::StatusCode::kOutOfRange);
  }
}

TEST(HostileInput, NullMetadataTopicsMeansAllTopicsFromV1) {
  Writer w = HeaderV1(3, 1);
  w.WriteInt32(-1);
  const DecodedRequest d = Decode(std::move(w));
  ASSERT_TRUE(d.ok()) << d.status;
  EXPECT_FALSE(std::get<MetadataRequest>(d.body).topics.has_value());
  Writer v0 = HeaderV1(3, 0);
  v0.WriteInt32(-1);  // v0 topics are not nullable
  EXPECT_EQ(Decode(std::move(v0)).error, RequestError::kMalformedBody);
}

TEST(HostileInput, UnknownTaggedFieldsAreSkipped) {
  const AnyRequest original = MakeTestRequest(3, 12, 4);  // Metadata v12: no known tags
  std::vector<uint8_t> b = RequestPayload(3, 12, original);
  // Header v2: 2+2+4 + client id (2 + 7) then the header's tag count.
  const size_t header_tags = 8 + 2 + 7;
  ASSERT_EQ(b[header_tags], 0);
  ASSERT_EQ(b.back(), 0);  // the body's top-level tag count
  b.pop_back();
  const uint8_t body_tags[] = {2, 5, 3, 'x', 'y', 'z', 0x64, 0};  // tags 5 (3 bytes), 100 (0)
  b.insert(b.end(), std::begin(body_tags), std::end(body_tags));
  const uint8_t head_tags[] = {1, 0x80, 0x01, 2, 0xaa, 0xbb};  // tag 128, 2 bytes
  b[header_tags] = head_tags[0];
  b.insert(b.begin() + header_tags + 1, std::begin(head_tags) + 1, std::end(head_tags));
  const DecodedRequest d = DecodeRequest(b);
  ASSERT_TRUE(d.ok()) << d.status;
  EXPECT_TRUE(d.body == original);
  EXPECT_EQ(d.header->client_id, "hostile");
}

TEST(HostileInput, KnownTaggedFieldIsDecodedAndMustFitItsSize) {
  FetchRequest fetch;
  std::vector<uint8_t> b = RequestPayload(1, 12, fetch);
  ASSERT_EQ(b.back(), 0);
  b.pop_back();
  std::vector<uint8_t> ok = b;
  ok.insert(ok.end(), {1, 0, 2, 2, 'c'});  // tag 0 (cluster_id), 2 bytes: compact "c"
  DecodedRequest d = DecodeRequest(ok);
  ASSERT_TRUE(d.ok()) << d.status;
  EXPECT_EQ(std::get<FetchRequest>(d.body).cluster_id, "c");

  std::vector<uint8_t> extra = b;
  extra.insert(extra.end(), {1, 0, 3, 2, 'c', 'z'});  // one byte more than the value
  d = DecodeRequest(extra);
  EXPECT_EQ(d.error, RequestError::kMalformedBody);

  std::vector<uint8_t> overrun = b;
  overrun.insert(overrun.end(), {1, 0, 1, 2, 'c'});  // value runs past the declared size
  d = DecodeRequest(overrun);
  EXPECT_EQ(d.error, RequestError::kMalformedBody);

  std::vector<uint8_t> many = b;
  many.insert(many.end(), {0xff, 0xff, 0xff, 0xff, 0x07, 9, 0});  // count 2^31-1, 1 field
  d = DecodeRequest(many);
  EXPECT_EQ(d.error, RequestError::kMalformedBody);
}

TEST(HostileInput, GarbageAfterHeaderOfUnknownApiIsNotRead) {
  std::vector<uint8_t> b = {0x7f, 0xff, 0, 0, 0, 0, 0, 1, 0x80, 0x00};  // client id len -32768
  const DecodedRequest d = DecodeRequest(b);
  EXPECT_EQ(d.error, RequestError::kUnknownApiKey);
  EXPECT_EQ(d.header->correlation_id, 1);
  EXPECT_EQ(d.header->client_id, std::nullopt);
}

}  // namespace
}  // namespace sluice::kafka
