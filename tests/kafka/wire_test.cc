// Byte-level tests of the wire primitives and of zero-copy records encoding.
#include "net/kafka/wire.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/framing.h"
#include "net/kafka/messages/fetch.h"

namespace sluice::kafka {
namespace {

std::vector<uint8_t> Bytes(Writer&& w) { return std::move(w).Finish().owned; }

TEST(Wire, IntegersAreBigEndian) {
  Writer w;
  w.WriteInt16(0x0102);
  w.WriteInt32(-2);
  w.WriteInt64(0x0102030405060708);
  w.WriteUint32(0xfffffffe);
  EXPECT_EQ(Bytes(std::move(w)), (std::vector<uint8_t>{1, 2, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5,
                                                       6, 7, 8, 0xff, 0xff, 0xff, 0xfe}));
}

TEST(Wire, UnsignedVarintMatchesProtocolExamples) {
  const std::pair<uint32_t, std::vector<uint8_t>> cases[] = {
      {0, {0x00}},         {1, {0x01}},         {127, {0x7f}},
      {128, {0x80, 0x01}}, {300, {0xac, 0x02}}, {0xffffffff, {0xff, 0xff, 0xff, 0xff, 0x0f}},
  };
  for (const auto& [value, bytes] : cases) {
    Writer w;
    w.WriteUnsignedVarint(value);
    EXPECT_EQ(Bytes(std::move(w)), bytes) << value;
    Reader r(bytes);
    uint32_t got = 0;
    ASSERT_TRUE(r.ReadUnsignedVarint(&got).ok());
    EXPECT_EQ(got, value);
    EXPECT_EQ(r.remaining(), 0u);
  }
}

TEST(Wire, ZigZagVarintsRoundTrip) {
  for (int32_t v : {0, -1, 1, -64, 63, 64, std::numeric_limits<int32_t>::min(),
                    std::numeric_limits<int32_t>::max()}) {
    Writer w;
    w.WriteVarint(v);
    const std::vector<uint8_t> b = Bytes(std::move(w));
    Reader r(b);
    int32_t got = 0;
    ASSERT_TRUE(r.ReadVarint(&got).ok());
    EXPECT_EQ(got, v);
  }
  for (int64_t v : {int64_t{0}, int64_t{-1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    Writer w;
    w.WriteVarlong(v);
    const std::vector<uint8_t> b = Bytes(std::move(w));
    Reader r(b);
    int64_t got = 0;
    ASSERT_TRUE(r.ReadVarlong(&got).ok());
    EXPECT_EQ(got, v);
  }
  Writer w;
  w.WriteVarint(-1);
  EXPECT_EQ(Bytes(std::move(w)), std::vector<uint8_t>{0x01});
}

TEST(Wire, OverlongVarintsAreRejected) {
  const std::vector<uint8_t> six = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  uint32_t u = 0;
  EXPECT_FALSE(Reader(six).ReadUnsignedVarint(&u).ok());
  const std::vector<uint8_t> too_big = {0xff, 0xff, 0xff, 0xff, 0x1f};
  EXPECT_FALSE(Reader(too_big).ReadUnsignedVarint(&u).ok());
  const std::vector<uint8_t> eleven(11, 0x80);
  int64_t l = 0;
  EXPECT_FALSE(Reader(eleven).ReadVarlong(&l).ok());
}

TEST(Wire, ClassicAndCompactStrings) {
  Writer w;
  w.WriteString(/*compact=*/false, "ab");
  w.WriteString(/*compact=*/true, "ab");
  w.WriteNullableString(false, true, std::nullopt);
  w.WriteNullableString(true, true, std::nullopt);
  w.WriteNullableString(true, /*nullable=*/false, std::nullopt);  // written as empty
  const std::vector<uint8_t> b = Bytes(std::move(w));
  EXPECT_EQ(b, (std::vector<uint8_t>{0, 2, 'a', 'b', 3, 'a', 'b', 0xff, 0xff, 0, 1}));
  Reader r(b);
  std::string s;
  std::optional<std::string> ns;
  ASSERT_TRUE(r.ReadString(false, &s).ok());
  EXPECT_EQ(s, "ab");
  ASSERT_TRUE(r.ReadString(true, &s).ok());
  EXPECT_EQ(s, "ab");
  ASSERT_TRUE(r.ReadNullableString(false, true, &ns).ok());
  EXPECT_EQ(ns, std::nullopt);
  ASSERT_TRUE(r.ReadNullableString(true, true, &ns).ok());
  EXPECT_EQ(ns, std::nullopt);
  ASSERT_TRUE(r.ReadNullableString(true, true, &ns).ok());
  EXPECT_EQ(ns, "");
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(Wire, NullInNonNullableFieldIsAnError) {
  const std::vector<uint8_t> b = {0xff, 0xff};
  std::string s;
  EXPECT_EQ(Reader(b).ReadString(false, &s).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> c = {0x00};
  EXPECT_EQ(Reader(c).ReadString(true, &s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Wire, DecodedRecordsBorrowFromTheInput) {
  std::vector<uint8_t> b = {0, 0, 0, 3, 7, 8, 9, 0xaa};
  Records records;
  Reader r(b);
  ASSERT_TRUE(r.ReadRecords(false, true, &records).ok());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records.contiguous().data(), b.data() + 4);  // no copy
  EXPECT_EQ(r.remaining(), 1u);
}

TEST(Wire, RecordsEquality) {
  const uint8_t a[] = {1, 2, 3, 4};
  Records split;
  split.AppendBorrowed(std::span(a, 2));
  split.AppendBorrowed(std::span(a + 2, 2));
  EXPECT_EQ(split, Records::Borrowed(a));
  EXPECT_NE(Records::Null(), Records());
  Records ext;
  ext.AppendExternal(10, 1);
  Records ext2;
  ext2.AppendExternal(10, 2);
  EXPECT_NE(ext, ext2);
  EXPECT_TRUE(ext.has_external());
}

TEST(Wire, AppendKeepsExternalPositions) {
  Writer a;
  a.WriteInt8(1);
  Writer b;
  b.WriteInt8(2);
  b.AppendExternal(100, 42);
  b.WriteInt8(3);
  a.Append(std::move(b));
  EXPECT_EQ(a.size(), 103u);
  const EncodedFrame f = std::move(a).Finish();
  ASSERT_EQ(f.externals.size(), 1u);
  EXPECT_EQ(f.externals[0].position, 2u);
  EXPECT_EQ(f.externals[0].length, 100u);
  EXPECT_EQ(f.wire_size(), 103u);
}

// A fetch response whose records are a file range: the frame holds a gap the sender fills,
// the size prefix and the records length count it, and filling it yields a frame that decodes
// to the same records.
TEST(ZeroCopyRecords, FetchResponseWithExternalRange) {
  const uint8_t inline_bytes[] = {0xa0, 0xa1, 0xa2};
  for (int16_t version : {4, 11, 12}) {
    FetchResponse response;
    auto& topic = response.responses.emplace_back();
    topic.topic = "t";
    auto& partition = topic.partitions.emplace_back();
    partition.partition_index = 3;
    partition.high_watermark = 99;
    partition.records.AppendBorrowed(inline_bytes);
    partition.records.AppendExternal(/*length=*/1000, /*token=*/77);
    partition.records.AppendExternal(/*length=*/24, /*token=*/78);

    const EncodedFrame frame = EncodeResponse(9, version, response);
    ASSERT_EQ(frame.externals.size(), 2u);
    EXPECT_EQ(ParseFrameSize(frame.owned).value(), frame.wire_size() - 4);
    EXPECT_EQ(frame.wire_size(), frame.owned.size() + 1024);

    const std::vector<EncodedFrame::Chunk> chunks = frame.Chunks();
    // owned, external 77, external 78, then (flexible versions) the tagged-field bytes after
    // the records; before v12 the records end the frame.
    ASSERT_EQ(chunks.size(), version >= 12 ? 4u : 3u);
    EXPECT_FALSE(chunks[0].is_external);
    EXPECT_TRUE(chunks[1].is_external);
    EXPECT_EQ(chunks[1].token, 77u);
    EXPECT_EQ(chunks[1].length, 1000u);
    EXPECT_TRUE(chunks[2].is_external);
    EXPECT_EQ(chunks[2].token, 78u);
    if (version >= 12) EXPECT_FALSE(chunks[3].is_external);
    // The owned bytes just before the gap are the inline records.
    EXPECT_EQ(0, std::memcmp(chunks[0].bytes.data() + chunks[0].bytes.size() - 3, inline_bytes, 3));

    const std::vector<uint8_t> flat = frame.Flatten([](uint64_t token, std::span<uint8_t> out) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(token + i);
    });
    ASSERT_EQ(flat.size(), frame.wire_size());
    absl::StatusOr<DecodedResponse> decoded =
        DecodeResponse(1, version, std::span(flat).subspan(4));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    const auto& got = std::get<FetchResponse>(decoded->body);
    const Records& records = got.responses.at(0).partitions.at(0).records;
    ASSERT_EQ(records.size(), 1027u);
    const std::span<const uint8_t> data = records.contiguous();
    EXPECT_EQ(data[0], 0xa0);
    EXPECT_EQ(data[3], 77);
    EXPECT_EQ(data[3 + 999], static_cast<uint8_t>(77 + 999));
    EXPECT_EQ(data[1003], 78);
    EXPECT_EQ(got.responses[0].partitions[0].high_watermark, 99);
  }
}

}  // namespace
}  // namespace sluice::kafka
