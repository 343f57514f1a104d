// Message format v0/v1 conversions of Produce v2 / Fetch v2-3 (src/kafka/legacy_records.h).
// The legacy messages are built here by a small writer that follows the Kafka spec.
#include "src/kafka/legacy_records.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "log/compression.h"
#include "log/record_batch.h"

namespace sluice::broker::legacy {
namespace {

using storage::Compression;

struct Msg {
  std::optional<std::string> key;
  std::optional<std::string> value;
  int64_t timestamp = -1;
};

void Be(std::vector<uint8_t>* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void Field(std::vector<uint8_t>* out, const std::optional<std::string>& f) {
  if (!f) {
    Be(out, 0xFFFFFFFFu, 4);
    return;
  }
  Be(out, f->size(), 4);
  out->insert(out->end(), f->begin(), f->end());
}

// One legacy message with a correct CRC.
void AppendMessage(std::vector<uint8_t>* out, int64_t offset, int8_t magic, uint8_t attributes,
                   const Msg& m) {
  std::vector<uint8_t> body;  // magic..end
  body.push_back(static_cast<uint8_t>(magic));
  body.push_back(attributes);
  if (magic == 1) Be(&body, static_cast<uint64_t>(m.timestamp), 8);
  Field(&body, m.key);
  Field(&body, m.value);
  Be(out, static_cast<uint64_t>(offset), 8);
  Be(out, body.size() + 4, 4);
  Be(out, Crc32Ieee(0, body.data(), body.size()), 4);
  out->insert(out->end(), body.begin(), body.end());
}

std::vector<uint8_t> MessageSet(int8_t magic, const std::vector<Msg>& msgs, int64_t first = 0) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < msgs.size(); ++i) AppendMessage(&out, first + i, magic, 0, msgs[i]);
  return out;
}

// A compressed wrapper around `msgs` (inner offsets relative for magic 1, as producers write).
std::vector<uint8_t> Wrapper(int8_t magic, Compression codec, const std::vector<Msg>& msgs) {
  std::vector<uint8_t> inner = MessageSet(magic, msgs);
  auto compressed = storage::CompressRecords(codec, inner);
  EXPECT_TRUE(compressed.ok()) << compressed.status();
  std::vector<uint8_t> out;
  Msg w;
  w.value = std::string(compressed->begin(), compressed->end());
  w.timestamp = msgs.back().timestamp;
  AppendMessage(&out, static_cast<int64_t>(msgs.size()) - 1, magic, static_cast<uint8_t>(codec), w);
  return out;
}

const std::vector<Msg> kMsgs = {
    {"k1", "v1", 1000},
    {std::nullopt, "v2", 1001},
    {"k3", std::nullopt, 1005},
};

void ExpectBatchHolds(const std::vector<uint8_t>& batch, const std::vector<Msg>& msgs,
                      Compression codec, bool timestamps = true) {
  ASSERT_TRUE(storage::ValidateBatch(batch, UINT32_MAX).ok());
  // Up-converted batches are as valid as a v3+ producer's must be.
  storage::ProducedBatchValidator validator;
  EXPECT_TRUE(validator.Validate(batch, storage::ProduceRules{}).ok())
      << validator.Validate(batch, storage::ProduceRules{});
  storage::RecordBatchView view(batch);
  EXPECT_EQ(view.compression(), codec);
  EXPECT_EQ(view.base_offset(), 0);
  EXPECT_EQ(view.producer_id(), -1);
  std::vector<uint8_t> scratch;
  auto records = storage::DecompressAndDecodeRecords(batch, 1 << 20, &scratch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), msgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) {
    const storage::RecordView& r = (*records)[i];
    EXPECT_EQ(r.offset, static_cast<int64_t>(i));
    EXPECT_EQ(r.key.has_value(), msgs[i].key.has_value());
    if (r.key && msgs[i].key) EXPECT_EQ(*r.key, *msgs[i].key);
    EXPECT_EQ(r.value.has_value(), msgs[i].value.has_value());
    if (r.value && msgs[i].value) EXPECT_EQ(*r.value, *msgs[i].value);
    if (timestamps) EXPECT_EQ(r.timestamp, msgs[i].timestamp);
    EXPECT_TRUE(r.headers.empty());
  }
}

TEST(LegacyRecords, Crc32IsTheIeeeOne) {
  EXPECT_EQ(Crc32Ieee(0, "123456789", 9), 0xCBF43926u);
  EXPECT_EQ(Crc32Ieee(Crc32Ieee(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

TEST(LegacyRecords, MagicOfFirstEntry) {
  EXPECT_EQ(MagicOfFirstEntry(MessageSet(0, kMsgs)), 0);
  EXPECT_EQ(MagicOfFirstEntry(MessageSet(1, kMsgs)), 1);
  storage::RecordBatchBuilder b(0, 1);
  b.Add("k", "v");
  EXPECT_EQ(MagicOfFirstEntry(b.Build()), 2);
  EXPECT_EQ(MagicOfFirstEntry(std::vector<uint8_t>(16)), -1);
}

TEST(LegacyRecords, UpConvertsUncompressedV0AndV1) {
  auto v1 = UpConvertMessageSet(MessageSet(1, kMsgs), 1 << 20);
  ASSERT_TRUE(v1.ok()) << v1.status();
  ExpectBatchHolds(*v1, kMsgs, Compression::kNone);

  std::vector<Msg> v0_msgs = kMsgs;
  for (Msg& m : v0_msgs) m.timestamp = -1;  // v0 has no timestamps
  auto v0 = UpConvertMessageSet(MessageSet(0, kMsgs), 1 << 20);
  ASSERT_TRUE(v0.ok()) << v0.status();
  ExpectBatchHolds(*v0, v0_msgs, Compression::kNone);
}

TEST(LegacyRecords, UpConvertsCompressedWrappersKeepingTheCodec) {
  for (Compression codec : {Compression::kGzip, Compression::kSnappy, Compression::kLz4}) {
    SCOPED_TRACE(storage::CompressionName(codec));
    auto batch = UpConvertMessageSet(Wrapper(1, codec, kMsgs), 1 << 20);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ExpectBatchHolds(*batch, kMsgs, codec);
  }
  // Two wrappers and a plain message: one batch, in order, the first wrapper's codec.
  std::vector<uint8_t> set = Wrapper(1, Compression::kGzip, {kMsgs[0]});
  std::vector<uint8_t> second = Wrapper(1, Compression::kSnappy, {kMsgs[1]});
  set.insert(set.end(), second.begin(), second.end());
  AppendMessage(&set, 2, 1, 0, kMsgs[2]);
  auto batch = UpConvertMessageSet(set, 1 << 20);
  ASSERT_TRUE(batch.ok()) << batch.status();
  ExpectBatchHolds(*batch, kMsgs, Compression::kGzip);
}

TEST(LegacyRecords, LogAppendTimeWrapperOverridesInnerTimestamps) {
  std::vector<uint8_t> inner = MessageSet(1, kMsgs);
  auto compressed = storage::CompressRecords(Compression::kGzip, inner);
  ASSERT_TRUE(compressed.ok());
  std::vector<uint8_t> set;
  AppendMessage(&set, 2, 1, 0x08 | 1,
                {std::nullopt, std::string(compressed->begin(), compressed->end()), 7777});
  auto batch = UpConvertMessageSet(set, 1 << 20);
  ASSERT_TRUE(batch.ok()) << batch.status();
  std::vector<Msg> expected = kMsgs;
  for (Msg& m : expected) m.timestamp = 7777;
  ExpectBatchHolds(*batch, expected, Compression::kGzip);
}

TEST(LegacyRecords, UpConvertRejectsBadInput) {
  std::vector<uint8_t> good = MessageSet(1, kMsgs);
  // CRC mismatch: flip a value byte.
  std::vector<uint8_t> bad = good;
  bad[bad.size() - 1] ^= 1;
  EXPECT_TRUE(absl::IsDataLoss(UpConvertMessageSet(bad, 1 << 20).status()));
  // Truncated (a partial last message), empty, size too small.
  EXPECT_TRUE(absl::IsDataLoss(
      UpConvertMessageSet(std::span(good).first(good.size() - 3), 1 << 20).status()));
  EXPECT_TRUE(absl::IsDataLoss(UpConvertMessageSet({}, 1 << 20).status()));
  bad = good;
  bad[11] = 3;  // size field of the first message
  EXPECT_TRUE(absl::IsDataLoss(UpConvertMessageSet(bad, 1 << 20).status()));
  // A magic-2 batch after legacy messages.
  storage::RecordBatchBuilder b(0, 1);
  b.Add("k", "v");
  std::vector<uint8_t> v2 = b.Build();
  bad = good;
  bad.insert(bad.end(), v2.begin(), v2.end());
  EXPECT_TRUE(absl::IsDataLoss(UpConvertMessageSet(bad, 1 << 20).status()));
  // zstd does not exist in message format v0/v1.
  std::vector<uint8_t> zstd;
  AppendMessage(&zstd, 0, 1, 4, {std::nullopt, "xx", 1});
  EXPECT_TRUE(absl::IsInvalidArgument(UpConvertMessageSet(zstd, 1 << 20).status()));
  // A compressed message inside a wrapper.
  std::vector<uint8_t> nested_inner = Wrapper(1, Compression::kGzip, kMsgs);
  auto compressed = storage::CompressRecords(Compression::kGzip, nested_inner);
  ASSERT_TRUE(compressed.ok());
  std::vector<uint8_t> nested;
  AppendMessage(&nested, 0, 1, 1,
                {std::nullopt, std::string(compressed->begin(), compressed->end()), 1});
  EXPECT_TRUE(absl::IsInvalidArgument(UpConvertMessageSet(nested, 1 << 20).status()));
  // Corrupt compressed value (CRC fine).
  std::vector<uint8_t> garbage;
  AppendMessage(&garbage, 0, 1, 1, {std::nullopt, "not gzip at all", 1});
  EXPECT_TRUE(absl::IsDataLoss(UpConvertMessageSet(garbage, 1 << 20).status()));
  // Decompression limit: a bomb is a broken rule (INVALID_RECORD), for all wrappers together.
  EXPECT_TRUE(absl::IsInvalidArgument(
      UpConvertMessageSet(Wrapper(1, Compression::kGzip, kMsgs), 10).status()));
  std::vector<uint8_t> two = Wrapper(1, Compression::kGzip, kMsgs);
  const size_t one_inner = MessageSet(1, kMsgs).size();
  ASSERT_TRUE(UpConvertMessageSet(two, one_inner).ok());
  std::vector<uint8_t> second = Wrapper(1, Compression::kGzip, kMsgs);
  two.insert(two.end(), second.begin(), second.end());
  EXPECT_TRUE(UpConvertMessageSet(two, 2 * one_inner).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(UpConvertMessageSet(two, 2 * one_inner - 1).status()));
}

// Parses magic-1 messages written by DownConvertToV1, checking size and CRC.
struct Parsed {
  int64_t offset;
  uint8_t attributes;
  int64_t timestamp;
  std::optional<std::string> key, value;
};
std::vector<Parsed> ParseV1(const std::vector<uint8_t>& in) {
  auto be = [&](size_t pos, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | in[pos + i];
    return v;
  };
  std::vector<Parsed> out;
  size_t pos = 0;
  while (pos < in.size()) {
    Parsed p;
    p.offset = static_cast<int64_t>(be(pos, 8));
    const size_t size = be(pos + 8, 4);
    EXPECT_LE(pos + 12 + size, in.size());
    EXPECT_EQ(be(pos + 12, 4), Crc32Ieee(0, in.data() + pos + 16, size - 4));
    EXPECT_EQ(in[pos + 16], 1);
    p.attributes = in[pos + 17];
    p.timestamp = static_cast<int64_t>(be(pos + 18, 8));
    size_t f = pos + 26;
    for (std::optional<std::string>* field : {&p.key, &p.value}) {
      const int32_t len = static_cast<int32_t>(be(f, 4));
      f += 4;
      if (len >= 0) {
        *field = std::string(in.begin() + f, in.begin() + f + len);
        f += len;
      }
    }
    EXPECT_EQ(f, pos + 12 + size);
    pos += 12 + size;
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<uint8_t> StoredBatch(int64_t base, Compression codec, bool log_append_time = false) {
  storage::RecordBatchBuilder b(base, 1000);
  if (log_append_time) b.set_timestamp_type(storage::TimestampType::kLogAppendTime);
  const storage::RecordBatchBuilder::Header h[] = {{"h", "dropped"}};
  b.Add("k1", "v1", h, 1000);
  b.Add(std::nullopt, "v2", {}, 1001);
  b.Add("k3", std::nullopt, {}, 1005);
  if (codec == Compression::kNone) return b.Build();
  auto out = b.BuildCompressed(codec);
  EXPECT_TRUE(out.ok());
  return *out;
}

TEST(LegacyRecords, DownConvertsEveryCodecToUncompressedV1) {
  for (Compression codec : {Compression::kNone, Compression::kGzip, Compression::kSnappy,
                            Compression::kLz4, Compression::kZstd}) {
    SCOPED_TRACE(storage::CompressionName(codec));
    std::vector<uint8_t> stored = StoredBatch(10, codec);
    std::vector<uint8_t> more = StoredBatch(13, codec);
    stored.insert(stored.end(), more.begin(), more.end());
    std::vector<uint8_t> out;
    auto r = DownConvertToV1(stored, 11, 1 << 20, true, &out);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->messages, 5);
    EXPECT_EQ(r->next_offset, 16);
    std::vector<Parsed> msgs = ParseV1(out);
    ASSERT_EQ(msgs.size(), 5u);
    EXPECT_EQ(msgs[0].offset, 11);
    EXPECT_EQ(msgs[0].key, std::nullopt);
    EXPECT_EQ(msgs[0].value, "v2");
    EXPECT_EQ(msgs[0].timestamp, 1001);
    EXPECT_EQ(msgs[0].attributes, 0);
    EXPECT_EQ(msgs[1].offset, 12);
    EXPECT_EQ(msgs[1].value, std::nullopt);
    EXPECT_EQ(msgs[2].offset, 13);
    EXPECT_EQ(msgs[2].key, "k1");
    EXPECT_EQ(msgs[2].value, "v1");
    EXPECT_EQ(msgs[4].offset, 15);
  }
}

TEST(LegacyRecords, DownConvertLimitsPartialBatchesAndControlBatches) {
  std::vector<uint8_t> stored = StoredBatch(0, Compression::kGzip);
  const size_t one = kMessageOverheadV1 + 4;  // "k1" + "v1"
  std::vector<uint8_t> out;
  // max_bytes below one message: nothing, unless at_least_one.
  auto r = DownConvertToV1(stored, 0, one - 1, false, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 0);
  EXPECT_TRUE(out.empty());
  r = DownConvertToV1(stored, 0, 1, true, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 1);
  EXPECT_EQ(out.size(), one);
  out.clear();
  r = DownConvertToV1(stored, 0, one + kMessageOverheadV1 + 2, false, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 2);
  // A partial batch at the end (a read cut at max_bytes) is ignored.
  std::vector<uint8_t> partial = stored;
  std::vector<uint8_t> next = StoredBatch(3, Compression::kNone);
  partial.insert(partial.end(), next.begin(), next.begin() + 70);
  out.clear();
  r = DownConvertToV1(partial, 0, 1 << 20, true, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 3);
  // Control batches are skipped (attribute bit 5; the CRC is not what is checked here).
  std::vector<uint8_t> control = StoredBatch(3, Compression::kNone);
  control[22] |= 0x20;
  std::vector<uint8_t> with_control = stored;
  with_control.insert(with_control.end(), control.begin(), control.end());
  out.clear();
  r = DownConvertToV1(with_control, 0, 1 << 20, true, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->messages, 3);
  // LogAppendTime batches: attribute bit 3, the batch's max timestamp.
  std::vector<uint8_t> lat = StoredBatch(0, Compression::kNone, true);
  out.clear();
  r = DownConvertToV1(lat, 0, 1 << 20, true, &out);
  ASSERT_TRUE(r.ok());
  for (const Parsed& p : ParseV1(out)) EXPECT_EQ(p.attributes, 0x08);
  // A malformed stored header is an error.
  std::vector<uint8_t> broken = stored;
  broken[16] = 7;
  EXPECT_FALSE(DownConvertToV1(broken, 0, 1 << 20, true, &out).ok());
}

TEST(LegacyRecords, UpThenDownConvertRoundTrips) {
  auto batch = UpConvertMessageSet(Wrapper(1, Compression::kLz4, kMsgs), 1 << 20);
  ASSERT_TRUE(batch.ok());
  std::vector<uint8_t> out;
  auto r = DownConvertToV1(*batch, 0, 1 << 20, true, &out);
  ASSERT_TRUE(r.ok());
  std::vector<Parsed> msgs = ParseV1(out);
  ASSERT_EQ(msgs.size(), kMsgs.size());
  for (size_t i = 0; i < msgs.size(); ++i) {
    EXPECT_EQ(msgs[i].offset, static_cast<int64_t>(i));
    EXPECT_EQ(msgs[i].key, kMsgs[i].key);
    EXPECT_EQ(msgs[i].value, kMsgs[i].value);
    EXPECT_EQ(msgs[i].timestamp, kMsgs[i].timestamp);
  }
}

}  // namespace
}  // namespace sluice::broker::legacy
