// Content headers and basic properties: flag layout, every combination of present
// properties, malformed headers.

#include "net/amqp/content.h"

#include <string>

#include "gtest/gtest.h"
#include "net/amqp/reply_codes.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

using testing_util::B;
using testing_util::Be16;
using testing_util::Be32;
using testing_util::Be64;
using testing_util::Hex;

constexpr int kPropertyCount = 14;

// Sets property i (flag order) to a distinctive value when bit i of `mask` is set.
struct FillSelected {
  uint32_t mask;
  int i = 0;
  template <typename T>
  void operator()(std::string_view name, std::optional<T>& p) {
    const int index = i++;
    if ((mask & (1u << index)) == 0) return;
    if constexpr (std::is_same_v<T, std::string>) {
      p = std::string(name) + "=" + std::to_string(index);
    } else if constexpr (std::is_same_v<T, FieldTable>) {
      p = FieldTable{{"h", FieldValue(int32_t{index})}};
    } else {
      p = static_cast<T>(200 + index);
    }
  }
};

BasicProperties Selected(uint32_t mask) {
  BasicProperties p;
  p.ForEachField(FillSelected{mask});
  return p;
}

TEST(BasicPropertiesTest, FlagOrderFollowsTheSpec) {
  const uint16_t expected[kPropertyCount] = {
      BasicProperties::kContentTypeFlag, BasicProperties::kContentEncodingFlag,
      BasicProperties::kHeadersFlag,     BasicProperties::kDeliveryModeFlag,
      BasicProperties::kPriorityFlag,    BasicProperties::kCorrelationIdFlag,
      BasicProperties::kReplyToFlag,     BasicProperties::kExpirationFlag,
      BasicProperties::kMessageIdFlag,   BasicProperties::kTimestampFlag,
      BasicProperties::kTypeFlag,        BasicProperties::kUserIdFlag,
      BasicProperties::kAppIdFlag,       BasicProperties::kClusterIdFlag};
  for (int i = 0; i < kPropertyCount; ++i) {
    EXPECT_EQ(expected[i], 0x8000 >> i);
    std::string out;
    ASSERT_TRUE(Selected(1u << i).Encode(&out).ok());
    EXPECT_EQ(out.substr(0, 2), Be16(expected[i])) << i;
  }
}

TEST(BasicPropertiesTest, EveryFlagCombinationRoundTrips) {
  for (uint32_t mask = 0; mask < (1u << kPropertyCount); ++mask) {
    const BasicProperties p = Selected(mask);
    std::string out;
    ASSERT_TRUE(p.Encode(&out).ok());
    uint16_t flags = 0;
    for (int i = 0; i < kPropertyCount; ++i) {
      if (mask & (1u << i)) flags |= static_cast<uint16_t>(0x8000 >> i);
    }
    ASSERT_EQ(out.substr(0, 2), Be16(flags)) << mask;
    absl::StatusOr<BasicProperties> decoded = BasicProperties::Decode(out);
    ASSERT_TRUE(decoded.ok()) << mask << ": " << decoded.status();
    ASSERT_EQ(*decoded, p) << mask;
  }
}

TEST(BasicPropertiesTest, HandMadeBytes) {
  BasicProperties p;
  p.content_type = "text/plain";
  p.delivery_mode = 2;
  p.timestamp = 0x0102030405060708;
  std::string out;
  ASSERT_TRUE(p.Encode(&out).ok());
  EXPECT_EQ(Hex(out),
            Hex(Be16(0x9040) + B({10}) + "text/plain" + B({2}) + Be64(0x0102030405060708)));
}

TEST(BasicPropertiesTest, TruncatedValuesAreSyntaxErrors) {
  std::string out;
  ASSERT_TRUE(Selected((1u << kPropertyCount) - 1).Encode(&out).ok());
  for (size_t n = 0; n < out.size(); ++n) {
    absl::StatusOr<BasicProperties> decoded = BasicProperties::Decode(out.substr(0, n));
    ASSERT_FALSE(decoded.ok()) << n;
    EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
  }
  EXPECT_EQ(ReplyCodeOf(BasicProperties::Decode(out + "x").status()), ReplyCode::kSyntaxError);
}

TEST(BasicPropertiesTest, UnknownFlagsAreSyntaxErrors) {
  // Bit 1 would be a fifteenth property.
  EXPECT_EQ(ReplyCodeOf(BasicProperties::Decode(Be16(0x0002)).status()), ReplyCode::kSyntaxError);
  // A continuation word with flags for properties basic does not have.
  EXPECT_EQ(ReplyCodeOf(BasicProperties::Decode(Be16(0x0001) + Be16(0x8000)).status()),
            ReplyCode::kSyntaxError);
  // An empty continuation word is harmless.
  absl::StatusOr<BasicProperties> decoded =
      BasicProperties::Decode(Be16(0x8001) + Be16(0x0000) + B({1, 'a'}));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->content_type, "a");
  // Flag words alone never end if every one announces another: bounded by the input.
  std::string endless;
  for (int i = 0; i < 1000; ++i) endless += Be16(0x0001);
  EXPECT_EQ(ReplyCodeOf(BasicProperties::Decode(endless).status()), ReplyCode::kSyntaxError);
}

TEST(ContentHeaderTest, RoundTrip) {
  ContentHeader h;
  h.body_size = 0x0102030405060708;
  h.properties = Selected(0x2aaa);
  std::string out;
  ASSERT_TRUE(EncodeContentHeader(h, &out).ok());
  EXPECT_EQ(out.substr(0, 12), Be16(60) + Be16(0) + Be64(0x0102030405060708));
  absl::StatusOr<ContentHeader> decoded = DecodeContentHeader(out);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, h);
  absl::StatusOr<ContentHeaderView> view = PeekContentHeader(out);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->class_id, 60);
  EXPECT_EQ(view->body_size, h.body_size);
  EXPECT_EQ(view->encoded_properties.data(), out.data() + 12);
  EXPECT_EQ(*BasicProperties::Decode(view->encoded_properties), h.properties);
}

TEST(ContentHeaderTest, ShortPayloadIsSyntaxError) {
  const std::string full = Be16(60) + Be16(0) + Be64(5) + Be16(0);
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_EQ(ReplyCodeOf(DecodeContentHeader(full.substr(0, n)).status()), ReplyCode::kSyntaxError)
        << n;
  }
  EXPECT_TRUE(DecodeContentHeader(full).ok());
}

TEST(ContentHeaderTest, ClassWithoutContentIsCommandInvalid) {
  const std::string payload = Be16(10) + Be16(0) + Be64(0) + Be16(0);
  EXPECT_EQ(ReplyCodeOf(DecodeContentHeader(payload).status()), ReplyCode::kCommandInvalid);
}

}  // namespace
}  // namespace sluice::amqp
