#include "net/amqp/field_table.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/amqp/reply_codes.h"
#include "net/amqp/wire.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

using testing_util::B;
using testing_util::Be16;
using testing_util::Be32;
using testing_util::Be64;
using testing_util::Hex;

std::string Encode(const FieldTable& t) {
  std::string out;
  EXPECT_TRUE(EncodeFieldTable(t, &out).ok());
  return out;
}

std::string Entry(std::string_view name, char tag, std::string_view value) {
  std::string e = B({static_cast<int>(name.size())});
  e.append(name);
  e.push_back(tag);
  e.append(value);
  return e;
}

std::string Table(std::string_view body) {
  return Be32(static_cast<uint32_t>(body.size())) + std::string(body);
}

FieldTable EveryType() {
  FieldTable nested{{"inner", FieldValue("x")}};
  FieldArray array{FieldValue(int32_t{1}), FieldValue("two"), FieldValue(true), FieldValue()};
  return FieldTable{
      {"bool", FieldValue(true)},
      {"int8", FieldValue(int8_t{-5})},
      {"uint8", FieldValue(uint8_t{250})},
      {"int16", FieldValue(int16_t{-30000})},
      {"uint16", FieldValue(uint16_t{60000})},
      {"int32", FieldValue(int32_t{-2000000000})},
      {"uint32", FieldValue(uint32_t{4000000000u})},
      {"int64", FieldValue(int64_t{-9000000000000000000})},
      {"float", FieldValue(1.5f)},
      {"double", FieldValue(-2.25)},
      {"decimal", FieldValue(Decimal{2, -12345})},
      {"string", FieldValue("hello\0world")},
      {"bytes", FieldValue(ByteArray{std::string("\x00\x01\xff", 3)})},
      {"timestamp", FieldValue(Timestamp{1700000000})},
      {"array", FieldValue(array)},
      {"table", FieldValue(nested)},
      {"void", FieldValue()},
  };
}

TEST(FieldTableTest, EveryTypeHasRabbitMqWireForm) {
  // Built by hand from RabbitMQ's type tags, independently of the encoder.
  std::string body;
  body += Entry("bool", 't', B({1}));
  body += Entry("int8", 'b', B({0xfb}));
  body += Entry("uint8", 'B', B({250}));
  body += Entry("int16", 's', Be16(static_cast<uint16_t>(-30000)));
  body += Entry("uint16", 'u', Be16(60000));
  body += Entry("int32", 'I', Be32(static_cast<uint32_t>(-2000000000)));
  body += Entry("uint32", 'i', Be32(4000000000u));
  body += Entry("int64", 'l', Be64(static_cast<uint64_t>(int64_t{-9000000000000000000})));
  body += Entry("float", 'f', B({0x3f, 0xc0, 0x00, 0x00}));
  body += Entry("double", 'd', B({0xc0, 0x02, 0, 0, 0, 0, 0, 0}));
  body += Entry("decimal", 'D', B({2}) + Be32(static_cast<uint32_t>(-12345)));
  body += Entry("string", 'S', Be32(5) + "hello");
  body += Entry("bytes", 'x', Be32(3) + std::string("\x00\x01\xff", 3));
  body += Entry("timestamp", 'T', Be64(1700000000));
  const std::string array_body = "I" + Be32(1) + "S" + Be32(3) + "two" + "t" + B({1}) + "V";
  body += Entry("array", 'A', Be32(static_cast<uint32_t>(array_body.size())) + array_body);
  body += Entry("table", 'F', Table(Entry("inner", 'S', Be32(1) + "x")));
  body += Entry("void", 'V', "");
  const std::string wire = Table(body);

  // "hello\0world" above is a const char*: it stops at the NUL.
  EXPECT_EQ(Hex(Encode(EveryType())), Hex(wire));
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(wire);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, EveryType());
}

TEST(FieldTableTest, TagsMatchAlternatives) {
  const std::string tags = "tbBsuIilfdDSxTAFV";
  std::string seen;
  const FieldTable table = EveryType();
  for (const FieldEntry& e : table.entries()) seen.push_back(e.value.tag());
  EXPECT_EQ(seen, tags);
}

TEST(FieldTableTest, RoundTripKeepsOrderAndDuplicates) {
  FieldTable t;
  t.Append("b", FieldValue(int32_t{1}));
  t.Append("a", FieldValue(int32_t{2}));
  t.Append("b", FieldValue(int32_t{3}));
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(Encode(t));
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->size(), 3u);
  EXPECT_EQ(decoded->entries()[0].name, "b");
  EXPECT_EQ(decoded->entries()[1].name, "a");
  EXPECT_EQ(decoded->Find("b")->AsInt64(), 1);
  t.Set("b", FieldValue("replaced"));
  EXPECT_EQ(*t.Find("b")->AsString(), "replaced");
  EXPECT_EQ(t.size(), 3u);
  t.Set("c", FieldValue(false));
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.Find("missing"), nullptr);
}

TEST(FieldTableTest, SpecialFloatsRoundTripBitForBit) {
  FieldTable t{{"nan", FieldValue(std::numeric_limits<double>::quiet_NaN())},
               {"inf", FieldValue(-std::numeric_limits<float>::infinity())},
               {"zero", FieldValue(-0.0)}};
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(Encode(t));
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(std::isnan(*decoded->Find("nan")->get_if<double>()));
  EXPECT_EQ(*decoded->Find("inf")->get_if<float>(), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::signbit(*decoded->Find("zero")->get_if<double>()));
  EXPECT_EQ(Encode(*decoded), Encode(t));
}

TEST(FieldTableTest, EmptyTableIsFourZeroBytes) {
  EXPECT_EQ(Encode(FieldTable()), B({0, 0, 0, 0}));
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(B({0, 0, 0, 0}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(FieldTableTest, BoolAcceptsAnyNonZeroOctet) {
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(Table(Entry("b", 't', B({7}))));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->Find("b")->AsBool(), true);
}

TEST(FieldTableTest, AsInt64ReadsEveryIntegerWidth) {
  EXPECT_EQ(FieldValue(int8_t{-1}).AsInt64(), -1);
  EXPECT_EQ(FieldValue(uint8_t{255}).AsInt64(), 255);
  EXPECT_EQ(FieldValue(int16_t{-2}).AsInt64(), -2);
  EXPECT_EQ(FieldValue(uint16_t{65535}).AsInt64(), 65535);
  EXPECT_EQ(FieldValue(int32_t{-3}).AsInt64(), -3);
  EXPECT_EQ(FieldValue(uint32_t{4294967295u}).AsInt64(), 4294967295);
  EXPECT_EQ(FieldValue(int64_t{-4}).AsInt64(), -4);
  EXPECT_EQ(FieldValue(true).AsInt64(), std::nullopt);
  EXPECT_EQ(FieldValue("7").AsInt64(), std::nullopt);
  EXPECT_EQ(FieldValue(1.0).AsInt64(), std::nullopt);
}

TEST(FieldTableTest, DeepNestingWithinLimitRoundTrips) {
  // kMaxFieldNesting levels in all: the outermost table plus 31 nested ones, alternating
  // tables and arrays.
  FieldValue v("leaf");
  for (int level = kMaxFieldNesting; level >= 2; --level) {
    if (level % 2 == 0) {
      v = FieldValue(FieldArray{v});
    } else {
      v = FieldValue(FieldTable{{"n", v}});
    }
  }
  FieldTable outer{{"n", v}};
  std::string wire;
  ASSERT_TRUE(EncodeFieldTable(outer, &wire).ok());
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(wire);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, outer);
}

// A hostile table: `depth` nested tables, each a single entry "n" -> table.
std::string NestedTablesWire(int depth) {
  std::string inner = Table("");
  for (int i = 1; i < depth; ++i) inner = Table(Entry("n", 'F', inner));
  return inner;
}

TEST(FieldTableTest, NestingBombIsRejected) {
  EXPECT_TRUE(DecodeFieldTable(NestedTablesWire(kMaxFieldNesting)).ok());
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(NestedTablesWire(kMaxFieldNesting + 1));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
  EXPECT_THAT(std::string(decoded.status().message()), testing::HasSubstr("nested deeper"));
  // Far deeper than any stack would take if recursion were unbounded.
  EXPECT_FALSE(DecodeFieldTable(NestedTablesWire(3000)).ok());
}

TEST(FieldTableTest, ArrayNestingBombIsRejected) {
  std::string v = "A" + Be32(0);
  for (int i = 0; i < 1000; ++i) v = "A" + Be32(static_cast<uint32_t>(v.size())) + v;
  absl::StatusOr<FieldTable> decoded = DecodeFieldTable(Table(Entry("a", v[0], v.substr(1))));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
}

TEST(FieldTableTest, EncodingTooDeepFails) {
  FieldValue v;
  for (int i = 0; i < kMaxFieldNesting + 1; ++i) v = FieldValue(FieldTable{{"n", v}});
  std::string out;
  absl::Status st = EncodeFieldTable(FieldTable{{"n", v}}, &out);
  EXPECT_EQ(ReplyCodeOf(st), ReplyCode::kSyntaxError);
}

TEST(FieldTableTest, LongNameFailsToEncode) {
  std::string out;
  absl::Status st = EncodeFieldTable(FieldTable{{std::string(256, 'n'), FieldValue()}}, &out);
  EXPECT_EQ(ReplyCodeOf(st), ReplyCode::kSyntaxError);
  EXPECT_TRUE(EncodeFieldTable(FieldTable{{std::string(255, 'n'), FieldValue()}}, &out).ok());
}

TEST(FieldTableTest, UnknownTagIsSyntaxError) {
  for (char tag : std::string("LUcqz\x00\xff", 7)) {
    absl::StatusOr<FieldTable> decoded = DecodeFieldTable(Table(Entry("k", tag, Be64(1))));
    ASSERT_FALSE(decoded.ok()) << "tag " << static_cast<int>(tag);
    EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
  }
}

TEST(FieldTableTest, TruncationAtEveryByteIsSyntaxError) {
  const std::string wire = Encode(EveryType());
  for (size_t n = 0; n < wire.size(); ++n) {
    absl::StatusOr<FieldTable> decoded = DecodeFieldTable(wire.substr(0, n));
    ASSERT_FALSE(decoded.ok()) << "prefix " << n;
    EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
  }
}

TEST(FieldTableTest, LengthsBeyondInputDoNotAllocate) {
  // Declared table, string and array lengths of 4 GiB - 1 in a few bytes of input.
  EXPECT_FALSE(DecodeFieldTable(B({0xff, 0xff, 0xff, 0xff})).ok());
  EXPECT_FALSE(DecodeFieldTable(Table(Entry("s", 'S', B({0xff, 0xff, 0xff, 0xff})))).ok());
  EXPECT_FALSE(DecodeFieldTable(Table(Entry("x", 'x', B({0xff, 0xff, 0xff, 0xff})))).ok());
  EXPECT_FALSE(DecodeFieldTable(Table(Entry("a", 'A', B({0xff, 0xff, 0xff, 0xff})))).ok());
  // An entry name longer than the table.
  EXPECT_FALSE(DecodeFieldTable(Table(B({200}) + "abc")).ok());
}

TEST(FieldTableTest, InnerLengthMustMatchContents) {
  // An array whose length cuts its last value in half.
  const std::string array_body = "I" + Be32(1);
  std::string entry = Entry("a", 'A', Be32(3) + array_body);
  EXPECT_FALSE(DecodeFieldTable(Table(entry)).ok());
  // Trailing bytes after the table.
  EXPECT_FALSE(DecodeFieldTable(Encode(EveryType()) + "x").ok());
}

TEST(FieldTableTest, DebugStringShowsTypes) {
  FieldTable t{{"s", FieldValue("v\n")},
               {"n", FieldValue(int64_t{5})},
               {"a", FieldValue(FieldArray{FieldValue(true)})}};
  EXPECT_EQ(t.DebugString(), "{\"s\": \"v\\n\", \"n\": 5l, \"a\": [true]}");
}

}  // namespace
}  // namespace sluice::amqp
