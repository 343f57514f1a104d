#include "log/record_batch.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log/compression.h"
#include "log/crc32c.h"
#include "log/varint.h"

namespace sluice::storage {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

constexpr uint32_t kMax = 1 << 30;

std::string_view Str(std::optional<std::string_view> s) { return s.value_or("<null>"); }

template <typename T>
void PutBe(std::vector<uint8_t>* out, T v) {
  for (int i = sizeof(T) - 1; i >= 0; --i) {
    out->push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i)));
  }
}

uint32_t GetBe32(const std::vector<uint8_t>& b, size_t pos) {
  return (uint32_t{b[pos]} << 24) | (uint32_t{b[pos + 1]} << 16) | (uint32_t{b[pos + 2]} << 8) |
         b[pos + 3];
}

void RewriteCrc(std::vector<uint8_t>* batch) {
  const uint32_t crc = Crc32c(0, batch->data() + kBatchCrcStart, batch->size() - kBatchCrcStart);
  for (int i = 0; i < 4; ++i) (*batch)[17 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
}

// A batch around a hand-made records section, with a correct CRC, so that DecodeRecords is the
// only thing that can object to it.
std::vector<uint8_t> Assemble(const std::vector<uint8_t>& records, int32_t count,
                              int16_t attributes = 0) {
  std::vector<uint8_t> b;
  PutBe<int64_t>(&b, 100);                                        // baseOffset
  PutBe<int32_t>(&b, static_cast<int32_t>(49 + records.size()));  // batchLength
  PutBe<int32_t>(&b, 0);                                          // partitionLeaderEpoch
  b.push_back(2);                                                 // magic
  PutBe<uint32_t>(&b, 0);                                         // crc, set below
  PutBe<int16_t>(&b, attributes);                                 // attributes
  PutBe<int32_t>(&b, count > 0 ? count - 1 : 0);                  // lastOffsetDelta
  PutBe<int64_t>(&b, 1000);                                       // baseTimestamp
  PutBe<int64_t>(&b, 1000);                                       // maxTimestamp
  PutBe<int64_t>(&b, -1);                                         // producerId
  PutBe<int16_t>(&b, -1);                                         // producerEpoch
  PutBe<int32_t>(&b, -1);                                         // baseSequence
  PutBe<int32_t>(&b, count);                                      // recordsCount
  b.insert(b.end(), records.begin(), records.end());
  RewriteCrc(&b);
  return b;
}

// One record body (without its length prefix): key "k", value "v", no headers.
const std::vector<uint8_t> kSimpleBody = {0x00, 0x00, 0x00, 0x02, 'k', 0x02, 'v', 0x00};

std::vector<uint8_t> WithLength(std::vector<uint8_t> body) {
  std::vector<uint8_t> out;
  AppendVarint32(&out, static_cast<int32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A two-record batch assembled byte by byte from the Kafka protocol guide; the CRC was computed
// with an independent bitwise CRC32C, not with this code.
const std::vector<uint8_t> kKnownBatch = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // baseOffset 0
    0x00, 0x00, 0x00, 0x45,                          // batchLength 69
    0xff, 0xff, 0xff, 0xff,                          // partitionLeaderEpoch -1
    0x02,                                            // magic 2
    0x48, 0x38, 0x18, 0xee,                          // crc 0x483818ee
    0x00, 0x00,                                      // attributes: none, CreateTime
    0x00, 0x00, 0x00, 0x01,                          // lastOffsetDelta 1
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,  // baseTimestamp 1700000000000
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05,  // maxTimestamp 1700000000005
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // producerId -1
    0xff, 0xff,                                      // producerEpoch -1
    0xff, 0xff, 0xff, 0xff,                          // baseSequence -1
    0x00, 0x00, 0x00, 0x02,                          // recordsCount 2
    // record 0
    0x12,            // length 9
    0x00,            // attributes
    0x00,            // timestampDelta 0
    0x00,            // offsetDelta 0
    0x02, 'k',       // key "k"
    0x04, 'v', '1',  // value "v1"
    0x00,            // 0 headers
    // record 1
    0x12,       // length 9
    0x00,       // attributes
    0x0a,       // timestampDelta 5
    0x02,       // offsetDelta 1
    0x01,       // key null
    0x00,       // value "" (empty, not null)
    0x02,       // 1 header
    0x02, 'h',  // header key "h"
    0x01,       // header value null
};

TEST(RecordBatchTest, KnownKafkaBatchDecodes) {
  ASSERT_EQ(kKnownBatch.size(), 81u);
  ASSERT_TRUE(ValidateBatch(kKnownBatch, kMax).ok());

  const RecordBatchView v(kKnownBatch);
  EXPECT_EQ(v.base_offset(), 0);
  EXPECT_EQ(v.batch_length(), 69);
  EXPECT_EQ(v.size_bytes(), 81u);
  EXPECT_EQ(v.partition_leader_epoch(), -1);
  EXPECT_EQ(v.magic(), 2);
  EXPECT_EQ(v.crc(), 0x483818eeu);
  EXPECT_EQ(v.attributes(), 0);
  EXPECT_EQ(v.compression(), Compression::kNone);
  EXPECT_EQ(v.timestamp_type(), TimestampType::kCreateTime);
  EXPECT_FALSE(v.is_transactional());
  EXPECT_FALSE(v.is_control());
  EXPECT_EQ(v.last_offset_delta(), 1);
  EXPECT_EQ(v.last_offset(), 1);
  EXPECT_EQ(v.base_timestamp(), 1700000000000);
  EXPECT_EQ(v.max_timestamp(), 1700000000005);
  EXPECT_EQ(v.producer_id(), -1);
  EXPECT_EQ(v.producer_epoch(), -1);
  EXPECT_EQ(v.base_sequence(), -1);
  EXPECT_EQ(v.records_count(), 2);
  EXPECT_EQ(v.records_bytes().size(), 20u);

  auto records = DecodeRecords(kKnownBatch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  const RecordView& r0 = (*records)[0];
  EXPECT_EQ(r0.offset, 0);
  EXPECT_EQ(r0.timestamp, 1700000000000);
  EXPECT_THAT(r0.key, Optional(std::string_view("k")));
  EXPECT_THAT(r0.value, Optional(std::string_view("v1")));
  EXPECT_TRUE(r0.headers.empty());
  const RecordView& r1 = (*records)[1];
  EXPECT_EQ(r1.offset, 1);
  EXPECT_EQ(r1.timestamp, 1700000000005);
  EXPECT_FALSE(r1.key.has_value());
  EXPECT_THAT(r1.value, Optional(std::string_view("")));
  ASSERT_EQ(r1.headers.size(), 1u);
  EXPECT_EQ(r1.headers[0].key, "h");
  EXPECT_FALSE(r1.headers[0].value.has_value());
}

TEST(RecordBatchTest, BuilderReproducesKnownBatchBytes) {
  RecordBatchBuilder b(0, 1700000000000);
  b.Add("k", "v1");
  const RecordBatchBuilder::Header h{"h", std::nullopt};
  b.Add(std::nullopt, "", std::span(&h, 1), 1700000000005);
  EXPECT_EQ(b.records(), 2u);
  EXPECT_EQ(b.estimated_size(), kKnownBatch.size());
  EXPECT_EQ(b.Build(), kKnownBatch);
}

TEST(RecordBatchTest, ParseBatchHeaderReadsEveryField) {
  auto h = ParseBatchHeader(std::span(kKnownBatch).first(kBatchHeaderSize), kMax);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->base_offset, 0);
  EXPECT_EQ(h->batch_length, 69);
  EXPECT_EQ(h->magic, 2);
  EXPECT_EQ(h->crc, 0x483818eeu);
  EXPECT_EQ(h->attributes, 0);
  EXPECT_EQ(h->last_offset_delta, 1);
  EXPECT_EQ(h->base_timestamp, 1700000000000);
  EXPECT_EQ(h->max_timestamp, 1700000000005);
  EXPECT_EQ(h->producer_id, -1);
  EXPECT_EQ(h->producer_epoch, -1);
  EXPECT_EQ(h->base_sequence, -1);
  EXPECT_EQ(h->records_count, 2);
  EXPECT_EQ(h->size_bytes(), 81u);
  EXPECT_EQ(h->last_offset(), 1);

  // The records section on its own decodes the same with the parsed header.
  auto records = DecodeRecords(*h, std::span(kKnownBatch).subspan(kBatchHeaderSize));
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);
}

TEST(RecordBatchTest, ViewReadsUnalignedBytes) {
  std::vector<uint8_t> buf(kKnownBatch.size() + 3);
  std::memcpy(buf.data() + 3, kKnownBatch.data(), kKnownBatch.size());
  const std::span<const uint8_t> batch = std::span(buf).subspan(3);
  EXPECT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(RecordBatchView(batch).max_timestamp(), 1700000000005);
  EXPECT_EQ(RecordBatchView(batch).producer_id(), -1);
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);
}

TEST(RecordBatchTest, RoundTripNullKeyNullValueEmptyValue) {
  RecordBatchBuilder b(7, 5000);
  b.Add(std::nullopt, "value");
  b.Add("key", std::nullopt);
  b.Add("", "");
  b.Add(std::nullopt, std::nullopt);
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  EXPECT_FALSE((*records)[0].key.has_value());
  EXPECT_EQ(Str((*records)[0].value), "value");
  EXPECT_EQ(Str((*records)[1].key), "key");
  EXPECT_FALSE((*records)[1].value.has_value());
  EXPECT_THAT((*records)[2].key, Optional(std::string_view("")));
  EXPECT_THAT((*records)[2].value, Optional(std::string_view("")));
  EXPECT_FALSE((*records)[3].key.has_value());
  EXPECT_FALSE((*records)[3].value.has_value());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ((*records)[i].offset, 7 + i);
    EXPECT_EQ((*records)[i].timestamp, 5000);
  }
}

TEST(RecordBatchTest, RoundTripHeadersWithNullValue) {
  const std::vector<RecordBatchBuilder::Header> headers = {
      {"trace-id", "abc"}, {"empty", ""}, {"null", std::nullopt}, {"", "keyless"}};
  RecordBatchBuilder b(0, 1);
  b.Add("k", "v", headers);
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  const auto& got = (*records)[0].headers;
  ASSERT_EQ(got.size(), headers.size());
  for (size_t i = 0; i < headers.size(); ++i) {
    EXPECT_EQ(got[i].key, headers[i].key);
    EXPECT_EQ(got[i].value.has_value(), headers[i].value.has_value());
    if (got[i].value) EXPECT_EQ(*got[i].value, *headers[i].value);
  }
}

TEST(RecordBatchTest, RoundTripManyRecords) {
  constexpr int kCount = 10000;
  RecordBatchBuilder b(1'000'000, 1'600'000'000'000);
  b.set_producer(42, 3, 17);
  for (int i = 0; i < kCount; ++i) {
    const std::string key = "key-" + std::to_string(i);
    const std::string value(static_cast<size_t>(i % 300), static_cast<char>('a' + i % 26));
    b.Add(key, value, {}, 1'600'000'000'000 + (i * 7919) % 100'000 - 50'000);
  }
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  const RecordBatchView v(batch);
  EXPECT_EQ(v.records_count(), kCount);
  EXPECT_EQ(v.last_offset_delta(), kCount - 1);
  EXPECT_EQ(v.last_offset(), 1'000'000 + kCount - 1);
  EXPECT_EQ(v.producer_id(), 42);
  EXPECT_EQ(v.producer_epoch(), 3);
  EXPECT_EQ(v.base_sequence(), 17);

  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), static_cast<size_t>(kCount));
  int64_t max_ts = std::numeric_limits<int64_t>::min();
  for (int i = 0; i < kCount; ++i) {
    const RecordView& r = (*records)[i];
    ASSERT_EQ(r.offset, 1'000'000 + i);
    ASSERT_EQ(r.timestamp, 1'600'000'000'000 + (i * 7919) % 100'000 - 50'000);
    ASSERT_EQ(Str(r.key), "key-" + std::to_string(i));
    ASSERT_EQ(Str(r.value).size(), static_cast<size_t>(i % 300));
    max_ts = std::max(max_ts, r.timestamp);
  }
  EXPECT_EQ(v.max_timestamp(), max_ts);
}

TEST(RecordBatchTest, RoundTripLargeValue1MiB) {
  std::string value(1 << 20, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 131 + (i >> 9));
  RecordBatchBuilder b(0, 0);
  b.Add("big", value);
  EXPECT_GE(b.estimated_size(), value.size());
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(ValidateBatch(batch, 1 << 20).code(), absl::StatusCode::kDataLoss);
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_TRUE((*records)[0].value == std::string_view(value));
}

TEST(RecordBatchTest, EmptyBuilderBuildsValidBatch) {
  RecordBatchBuilder b(3, 99);
  EXPECT_EQ(b.estimated_size(), kBatchHeaderSize);
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_EQ(batch.size(), kBatchHeaderSize);
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(RecordBatchView(batch).records_count(), 0);
  EXPECT_EQ(RecordBatchView(batch).max_timestamp(), 99);
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_TRUE(records->empty());
}

TEST(RecordBatchTest, BuilderMaxTimestampIsMaxOfRecordTimestamps) {
  RecordBatchBuilder b(0, 1000);
  b.Add("a", "1", {}, 900);
  b.Add("b", "2", {}, 1200);
  b.Add("c", "3", {}, 1100);
  const std::vector<uint8_t> batch = b.Build();
  EXPECT_EQ(RecordBatchView(batch).max_timestamp(), 1200);
  EXPECT_EQ(RecordBatchView(batch).base_timestamp(), 1000);
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[0].timestamp, 900);  // negative timestampDelta
  EXPECT_EQ((*records)[1].timestamp, 1200);
  EXPECT_EQ((*records)[2].timestamp, 1100);
}

TEST(RecordBatchTest, BuilderLogAppendTimeSetsAttributeBit) {
  RecordBatchBuilder b(0, 1000);
  b.set_timestamp_type(TimestampType::kLogAppendTime);
  b.Add("a", "1");
  const std::vector<uint8_t> batch = b.Build();
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(RecordBatchView(batch).attributes(), 0x08);
  EXPECT_EQ(RecordBatchView(batch).timestamp_type(), TimestampType::kLogAppendTime);
}

TEST(RecordBatchTest, AttributeBitsAreDecoded) {
  std::vector<uint8_t> batch =
      Assemble(WithLength(kSimpleBody), 1, 0x0034);  // zstd, transactional, control
  const RecordBatchView v(batch);
  EXPECT_EQ(v.compression(), Compression::kZstd);
  EXPECT_TRUE(v.is_transactional());
  EXPECT_TRUE(v.is_control());
  EXPECT_EQ(v.timestamp_type(), TimestampType::kCreateTime);
}

// ---- Validation ----

TEST(RecordBatchTest, CrcMismatchIsDataLoss) {
  std::vector<uint8_t> batch = kKnownBatch;
  batch[17] ^= 0x01;  // stored crc now 0x493818ee
  const absl::Status s = ValidateBatch(batch, kMax);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("crc mismatch: stored 0x493818ee computed 0x483818ee"));
}

TEST(RecordBatchTest, EverySingleBitFlipInCrcRegionIsDetected) {
  RecordBatchBuilder b(0, 1234);
  b.set_producer(9, 1, 0);
  for (int i = 0; i < 5; ++i) b.Add("key" + std::to_string(i), "value " + std::to_string(i));
  const std::vector<uint8_t> good = b.Build();
  ASSERT_TRUE(ValidateBatch(good, kMax).ok());
  // The stored CRC itself (17..20) and everything it covers (21..end).
  for (size_t byte = 17; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bad = good;
      bad[byte] ^= static_cast<uint8_t>(1 << bit);
      EXPECT_EQ(ValidateBatch(bad, kMax).code(), absl::StatusCode::kDataLoss)
          << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(RecordBatchTest, TruncatedBatchIsDataLossAtEveryLength) {
  for (size_t len = 0; len < kKnownBatch.size(); ++len) {
    const absl::Status s = ValidateBatch(std::span(kKnownBatch).first(len), kMax);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << len << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("truncated")) << len;
  }
}

TEST(RecordBatchTest, ShortPrefixIsOutOfRangeForParseBatchHeader) {
  for (size_t len = 0; len < kBatchHeaderSize; ++len) {
    EXPECT_EQ(ParseBatchHeader(std::span(kKnownBatch).first(len), kMax).status().code(),
              absl::StatusCode::kOutOfRange)
        << len;
  }
  EXPECT_TRUE(ParseBatchHeader(std::span(kKnownBatch).first(kBatchHeaderSize), kMax).ok());
}

TEST(RecordBatchTest, TrailingBytesAreDataLoss) {
  std::vector<uint8_t> batch = kKnownBatch;
  batch.push_back(0);
  const absl::Status s = ValidateBatch(batch, kMax);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("exceeds"));
}

TEST(RecordBatchTest, BadMagicIsDataLoss) {
  std::vector<uint8_t> batch = kKnownBatch;
  batch[16] = 1;
  const auto h = ParseBatchHeader(batch, kMax);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(h.status().message(), HasSubstr("bad magic 1"));
  EXPECT_THAT(ValidateBatch(batch, kMax).message(), HasSubstr("bad magic 1"));
}

TEST(RecordBatchTest, BatchLengthBelowHeaderSizeIsDataLoss) {
  for (int32_t len : {-1, 0, 12, 48}) {
    std::vector<uint8_t> batch = kKnownBatch;
    for (int i = 0; i < 4; ++i) batch[8 + i] = static_cast<uint8_t>(len >> (24 - 8 * i));
    const auto h = ParseBatchHeader(batch, kMax);
    EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss) << len;
    EXPECT_THAT(h.status().message(),
                HasSubstr("batchLength " + std::to_string(len) + " below header size"));
  }
}

TEST(RecordBatchTest, BatchLengthAboveMaxIsDataLoss) {
  EXPECT_TRUE(ParseBatchHeader(kKnownBatch, 69).ok());
  const auto h = ParseBatchHeader(kKnownBatch, 68);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(h.status().message(), HasSubstr("batchLength 69 above max_batch_bytes 68"));
  EXPECT_EQ(ValidateBatch(kKnownBatch, 68).code(), absl::StatusCode::kDataLoss);
}

TEST(RecordBatchTest, NegativeLastOffsetDeltaIsDataLoss) {
  std::vector<uint8_t> batch = kKnownBatch;
  for (int i = 0; i < 4; ++i) batch[23 + i] = 0xff;
  const auto h = ParseBatchHeader(batch, kMax);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(h.status().message(), HasSubstr("negative lastOffsetDelta -1"));
}

TEST(RecordBatchTest, NegativeRecordsCountIsDataLoss) {
  std::vector<uint8_t> batch = kKnownBatch;
  batch[57] = 0x80;
  const auto h = ParseBatchHeader(batch, kMax);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(h.status().message(), HasSubstr("negative recordsCount"));
}

TEST(RecordBatchTest, RecordsCountBelowLastOffsetDeltaPlusOneIsAccepted) {
  // Compaction leaves offset gaps: 1 record whose offsetDelta is 5, lastOffsetDelta 5.
  std::vector<uint8_t> body = {0x00, 0x00, 0x0a, 0x02, 'k', 0x02, 'v', 0x00};
  std::vector<uint8_t> batch = Assemble(WithLength(body), 1);
  batch[26] = 5;  // lastOffsetDelta
  RewriteCrc(&batch);
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[0].offset, 105);
}

// ---- In-place rewrites ----

TEST(RecordBatchTest, SetBaseOffsetKeepsCrcValid) {
  std::vector<uint8_t> batch = kKnownBatch;
  SetBaseOffset(batch, 0x0102030405060708);
  EXPECT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(RecordBatchView(batch).base_offset(), 0x0102030405060708);
  EXPECT_EQ(GetBe32(batch, 17), 0x483818eeu);
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[1].offset, 0x0102030405060709);
}

TEST(RecordBatchTest, SetPartitionLeaderEpochKeepsCrcValid) {
  std::vector<uint8_t> batch = kKnownBatch;
  SetPartitionLeaderEpoch(batch, 77);
  EXPECT_TRUE(ValidateBatch(batch, kMax).ok());
  EXPECT_EQ(RecordBatchView(batch).partition_leader_epoch(), 77);
}

TEST(RecordBatchTest, SetLogAppendTimeRecomputesCrc) {
  std::vector<uint8_t> batch = kKnownBatch;
  SetLogAppendTime(batch, 1800000000000);
  ASSERT_TRUE(ValidateBatch(batch, kMax).ok());
  const RecordBatchView v(batch);
  EXPECT_NE(v.crc(), 0x483818eeu);
  EXPECT_EQ(v.timestamp_type(), TimestampType::kLogAppendTime);
  EXPECT_EQ(v.attributes(), 0x08);
  EXPECT_EQ(v.max_timestamp(), 1800000000000);
  EXPECT_EQ(v.base_timestamp(), 1700000000000);  // untouched
  auto records = DecodeRecords(batch);
  ASSERT_TRUE(records.ok()) << records.status();
  for (const RecordView& r : *records) EXPECT_EQ(r.timestamp, 1800000000000);
}

TEST(RecordBatchTest, SetLogAppendTimeIgnoresBytesAfterTheBatch) {
  std::vector<uint8_t> buf = kKnownBatch;
  buf.insert(buf.end(), {0xde, 0xad, 0xbe, 0xef});
  SetLogAppendTime(buf, 5);
  EXPECT_TRUE(ValidateBatch(std::span(buf).first(kKnownBatch.size()), kMax).ok());
}

// ---- Hostile records sections ----

TEST(RecordBatchTest, CompressedBatchIsInvalidArgument) {
  for (int16_t codec = 1; codec <= 4; ++codec) {
    std::vector<uint8_t> batch = Assemble(WithLength(kSimpleBody), 1, codec);
    EXPECT_EQ(DecodeRecords(batch).status().code(), absl::StatusCode::kInvalidArgument) << codec;
  }
}

TEST(RecordBatchTest, HandAssembledRecordDecodes) {
  const std::vector<uint8_t> batch = Assemble(WithLength(kSimpleBody), 1);
  auto records = DecodeRecords(batch);  // views into `batch`
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(Str((*records)[0].key), "k");
  EXPECT_EQ(Str((*records)[0].value), "v");
  EXPECT_EQ((*records)[0].offset, 100);
  EXPECT_EQ((*records)[0].timestamp, 1000);
}

TEST(RecordBatchTest, OverlongVarintIsDataLoss) {
  // offsetDelta as a 6-byte varint (int32 allows 5).
  std::vector<uint8_t> body = {0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80,
                               0x00, 0x02, 'k',  0x02, 'v',  0x00};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(body), 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // timestampDelta as an 11-byte varint (int64 allows 10).
  std::vector<uint8_t> ts = {0x00};
  for (int i = 0; i < 10; ++i) ts.push_back(0x80);
  ts.insert(ts.end(), {0x00, 0x00, 0x01, 0x01, 0x00});
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(ts), 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // A record length varint that never terminates.
  EXPECT_EQ(DecodeRecords(Assemble({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(RecordBatchTest, NegativeLengthOtherThanMinusOneIsDataLoss) {
  // key length -2 (zigzag 3)
  std::vector<uint8_t> key = {0x00, 0x00, 0x00, 0x03, 0x02, 'v', 0x00};
  auto s = DecodeRecords(Assemble(WithLength(key), 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("key length -2"));
  // header value length -5 (zigzag 9)
  std::vector<uint8_t> hdr = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x02, 'h', 0x09};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(hdr), 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // header count -1
  std::vector<uint8_t> hc = {0x00, 0x00, 0x00, 0x01, 0x01, 0x01};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(hc), 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // record length -1
  EXPECT_EQ(DecodeRecords(Assemble({0x01, 0x00}, 1)).status().code(), absl::StatusCode::kDataLoss);
}

TEST(RecordBatchTest, NullHeaderKeyIsDataLoss) {
  std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01};
  auto s = DecodeRecords(Assemble(WithLength(body), 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("null key"));
}

TEST(RecordBatchTest, LengthPastEndIsDataLoss) {
  // value claims 100 bytes, 1 present
  std::vector<uint8_t> value = {0x00, 0x00, 0x00, 0x01, 0xc8, 0x01, 'v', 0x00};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(value), 1)).status().code(),
            absl::StatusCode::kDataLoss);
  // record length 50 with 8 bytes of body
  std::vector<uint8_t> rec = {0x64};
  rec.insert(rec.end(), kSimpleBody.begin(), kSimpleBody.end());
  EXPECT_EQ(DecodeRecords(Assemble(rec, 1)).status().code(), absl::StatusCode::kDataLoss);
  // huge key length that would overflow a 32-bit position sum
  std::vector<uint8_t> huge = {0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0x0f};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(huge), 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(RecordBatchTest, FieldsOverrunningTheRecordLengthAreDataLoss) {
  // The record says 4 bytes, but its fields need 8: the next record's bytes are not borrowed.
  std::vector<uint8_t> records = {0x08};
  records.insert(records.end(), kSimpleBody.begin(), kSimpleBody.end());
  EXPECT_EQ(DecodeRecords(Assemble(records, 1)).status().code(), absl::StatusCode::kDataLoss);
  // The record says 9 bytes, its fields use 8.
  records = {0x12};
  records.insert(records.end(), kSimpleBody.begin(), kSimpleBody.end());
  records.push_back(0);
  auto s = DecodeRecords(Assemble(records, 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("record 0"));
}

TEST(RecordBatchTest, RecordCountMismatchIsDataLoss) {
  const std::vector<uint8_t> one = WithLength(kSimpleBody);
  std::vector<uint8_t> two = one;
  two.insert(two.end(), one.begin(), one.end());
  auto too_many = DecodeRecords(Assemble(one, 2)).status();
  EXPECT_EQ(too_many.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(too_many.message(), HasSubstr("record count mismatch"));
  auto too_few = DecodeRecords(Assemble(two, 1)).status();
  EXPECT_EQ(too_few.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(too_few.message(), HasSubstr("record count mismatch"));
  EXPECT_TRUE(DecodeRecords(Assemble(two, 2)).ok());
}

TEST(RecordBatchTest, HugeRecordsCountWithFewBytesFailsWithoutAllocating) {
  std::vector<uint8_t> batch = Assemble(WithLength(kSimpleBody), 1);
  batch[57] = 0x7f;  // recordsCount ~2^31
  auto s = DecodeRecords(batch).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  // Many headers claimed, none present.
  std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x01, 0x01, 0xfe, 0xff, 0xff, 0xff, 0x07};
  EXPECT_EQ(DecodeRecords(Assemble(WithLength(body), 1)).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(RecordBatchTest, DecodeRecordsOfTruncatedBatchIsDataLoss) {
  for (size_t len = 0; len < kKnownBatch.size(); ++len) {
    EXPECT_EQ(DecodeRecords(std::span(kKnownBatch).first(len)).status().code(),
              absl::StatusCode::kDataLoss)
        << len;
  }
}

TEST(RecordBatchTest, DecodeRecordsStopsAtTheBatchEnd) {
  std::vector<uint8_t> buf = kKnownBatch;
  buf.insert(buf.end(), kKnownBatch.begin(), kKnownBatch.end());  // the next batch
  auto records = DecodeRecords(buf);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);
}

TEST(RecordBatchTest, ExtremeBaseOffsetWrapsInsteadOfOverflowing) {
  std::vector<uint8_t> batch = kKnownBatch;
  SetBaseOffset(batch, std::numeric_limits<int64_t>::max());
  auto records = DecodeRecords(batch);  // UBSan would flag a signed overflow here
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ((*records)[1].offset, std::numeric_limits<int64_t>::min());
}

// ---- Produce validation (ProducedBatchValidator) ----

// Header fields of a produced batch; lastOffsetDelta defaults to recordsCount - 1.
struct Fields {
  int64_t base_offset = 0;
  int16_t attributes = 0;
  int32_t count = 1;
  std::optional<int32_t> last_offset_delta;
  int64_t producer_id = -1;
  int32_t base_sequence = -1;
};

// A batch around `section` with a correct CRC: only the validator's rules can object to it.
std::vector<uint8_t> Produced(const std::vector<uint8_t>& section, const Fields& f) {
  std::vector<uint8_t> b;
  PutBe<int64_t>(&b, f.base_offset);
  PutBe<int32_t>(&b, static_cast<int32_t>(49 + section.size()));
  PutBe<int32_t>(&b, -1);  // partitionLeaderEpoch
  b.push_back(2);
  PutBe<uint32_t>(&b, 0);  // crc, set below
  PutBe<int16_t>(&b, f.attributes);
  PutBe<int32_t>(&b, f.last_offset_delta.value_or(f.count - 1));
  PutBe<int64_t>(&b, 1000);
  PutBe<int64_t>(&b, 1000);
  PutBe<int64_t>(&b, f.producer_id);
  PutBe<int16_t>(&b, f.producer_id >= 0 ? 0 : -1);
  PutBe<int32_t>(&b, f.base_sequence);
  PutBe<int32_t>(&b, f.count);
  b.insert(b.end(), section.begin(), section.end());
  RewriteCrc(&b);
  return b;
}

// Records with the given offset deltas, each with key "k" (or none) and value "v".
std::vector<uint8_t> Records(std::initializer_list<int32_t> offset_deltas, bool keys = true) {
  std::vector<uint8_t> out;
  for (int32_t delta : offset_deltas) {
    std::vector<uint8_t> body = {0x00, 0x00};  // attributes, timestampDelta
    AppendVarint32(&body, delta);
    if (keys) {
      body.insert(body.end(), {0x02, 'k'});
    } else {
      body.push_back(0x01);  // null key
    }
    body.insert(body.end(), {0x02, 'v', 0x00});
    std::vector<uint8_t> rec = WithLength(body);
    out.insert(out.end(), rec.begin(), rec.end());
  }
  return out;
}

std::vector<uint8_t> Compressed(Compression codec, const std::vector<uint8_t>& records) {
  absl::StatusOr<std::vector<uint8_t>> c = CompressRecords(codec, records);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : std::vector<uint8_t>{};
}

int16_t CodecBits(Compression codec) { return static_cast<int16_t>(codec); }

absl::Status Validate(const std::vector<uint8_t>& batch, ProduceRules rules = {}) {
  ProducedBatchValidator validator;
  return validator.Validate(batch, rules);
}

MATCHER_P(IsInvalidRecord, what, "") {
  *result_listener << arg;
  return absl::IsInvalidArgument(arg) && arg.message().find(what) != std::string_view::npos;
}

constexpr Compression kCodecs[] = {Compression::kGzip, Compression::kSnappy, Compression::kLz4,
                                   Compression::kZstd};

TEST(ProduceValidationTest, AcceptsBuilderBatchesOfEveryCodec) {
  RecordBatchBuilder b(0, 1700000000000);
  b.set_producer(7, 0, 42);
  const std::vector<RecordBatchBuilder::Header> headers = {{"h", "v"}, {"n", std::nullopt}};
  for (int i = 0; i < 300; ++i) {
    const std::string value(i % 7 == 0 ? 2000 : 30, static_cast<char>('a' + i % 26));
    b.Add(i % 5 == 0 ? std::nullopt : std::optional<std::string_view>("key"),
          i % 11 == 0 ? std::nullopt : std::optional<std::string_view>(value),
          i % 3 == 0 ? std::span<const RecordBatchBuilder::Header>(headers)
                     : std::span<const RecordBatchBuilder::Header>(),
          1700000000000 - 5 + i);
  }
  ProducedBatchValidator validator;  // one validator for all: contexts are reused
  RecordBatchBuilder plain = b;
  EXPECT_TRUE(validator.Validate(plain.Build(), {}).ok());
  for (Compression codec : kCodecs) {
    RecordBatchBuilder copy = b;
    absl::StatusOr<std::vector<uint8_t>> batch = copy.BuildCompressed(codec);
    ASSERT_TRUE(batch.ok()) << batch.status();
    EXPECT_TRUE(validator.Validate(*batch, {}).ok())
        << CompressionName(codec) << ": " << validator.Validate(*batch, {});
  }
  // The protocol guide's batch.
  std::vector<uint8_t> known = kKnownBatch;
  EXPECT_TRUE(validator.Validate(known, {}).ok()) << validator.Validate(known, {});
}

TEST(ProduceValidationTest, RecordsCountMustBeLastOffsetDeltaPlusOne) {
  for (int32_t count : {0, 1000, std::numeric_limits<int32_t>::max(), -1}) {
    EXPECT_THAT(Validate(Produced(Records({0}), {.count = count, .last_offset_delta = 0})),
                IsInvalidRecord("recordsCount"))
        << count;
  }
  for (int32_t last : {1000, std::numeric_limits<int32_t>::max(), -1}) {
    EXPECT_THAT(Validate(Produced(Records({0}), {.count = 1, .last_offset_delta = last})),
                IsInvalidRecord("recordsCount"))
        << last;
  }
  // Both lying the same way: the records section holds one record, not 1001.
  EXPECT_THAT(Validate(Produced(Records({0}), {.count = 1001})), IsInvalidRecord("record"));
  EXPECT_TRUE(Validate(Produced(Records({0, 1, 2}), {.count = 3})).ok());
}

TEST(ProduceValidationTest, OffsetDeltasMustCountFromZero) {
  for (auto deltas : {std::vector<int32_t>{0, 2, 1}, {0, 0, 1}, {1, 2, 3}, {0, 1, 1000}}) {
    std::vector<uint8_t> records;
    for (int32_t d : deltas) {
      std::vector<uint8_t> one = Records({d});
      records.insert(records.end(), one.begin(), one.end());
    }
    EXPECT_THAT(Validate(Produced(records, {.count = 3})), IsInvalidRecord("offsetDelta"));
    EXPECT_THAT(Validate(Produced(Compressed(Compression::kLz4, records),
                                  {.attributes = CodecBits(Compression::kLz4), .count = 3})),
                IsInvalidRecord("offsetDelta"));
  }
}

TEST(ProduceValidationTest, RecordLengthsMustStayInsideTheRecordsSection) {
  // A record claiming 100 bytes with 8 present, uncompressed and compressed.
  std::vector<uint8_t> records = {0xc8, 0x01};  // length 100
  records.insert(records.end(), kSimpleBody.begin(), kSimpleBody.end());
  EXPECT_THAT(Validate(Produced(records, {})), IsInvalidRecord("record 0"));
  EXPECT_THAT(Validate(Produced(Compressed(Compression::kZstd, records),
                                {.attributes = CodecBits(Compression::kZstd)})),
              IsInvalidRecord("record 0"));
  // The second record's length varint cut short at the end of the section.
  std::vector<uint8_t> long_value = {0x00, 0x00, 0x00, 0x01, 0x28};  // null key, value of 20
  long_value.resize(long_value.size() + 20, 'v');
  long_value.push_back(0x00);
  std::vector<uint8_t> two = WithLength(long_value);
  two.push_back(0x80);
  EXPECT_THAT(Validate(Produced(two, {.count = 2})), IsInvalidRecord("record 1: length"));
  // Key and value lengths past the record (but inside the section).
  std::vector<uint8_t> next = Records({1});
  std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x14, 'k', 0x02, 'v', 0x00};  // key of 10
  std::vector<uint8_t> bad = WithLength(body);
  bad.insert(bad.end(), next.begin(), next.end());
  EXPECT_THAT(Validate(Produced(bad, {.count = 2})), IsInvalidRecord("keyLength 10"));
  // Fields ending before the record's length does.
  body = kSimpleBody;
  body.push_back(0);
  EXPECT_THAT(Validate(Produced(WithLength(body), {})), IsInvalidRecord("its length says 9"));
  // Too short to be a record at all.
  EXPECT_THAT(Validate(Produced({0, 0, 0, 0, 0, 0, 0, 0}, {})), IsInvalidRecord("too short"));
  // Bytes after the last record.
  std::vector<uint8_t> trailing = Records({0});
  trailing.push_back(0);
  EXPECT_THAT(Validate(Produced(trailing, {})), IsInvalidRecord("bytes left after the last"));
  EXPECT_THAT(Validate(Produced(Compressed(Compression::kGzip, trailing),
                                {.attributes = CodecBits(Compression::kGzip)})),
              IsInvalidRecord("bytes left after the last"));
}

TEST(ProduceValidationTest, HeadersFollowTheDecoderRules) {
  // Header count -1, a null header key, a header value past the record.
  for (std::vector<uint8_t> tail :
       {std::vector<uint8_t>{0x01}, {0x02, 0x01, 0x02, 'v'}, {0x02, 0x02, 'h', 0x14}}) {
    std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x02, 'k', 0x02, 'v'};
    body.insert(body.end(), tail.begin(), tail.end());
    EXPECT_THAT(Validate(Produced(WithLength(body), {})), IsInvalidRecord("record 0: header"));
    EXPECT_FALSE(DecodeRecords(Produced(WithLength(body), {})).ok());
  }
}

TEST(ProduceValidationTest, UnknownCodecsAndUndecompressableSectionsAreRefused) {
  for (int codec : {5, 6, 7}) {
    EXPECT_THAT(Validate(Produced(Records({0}), {.attributes = static_cast<int16_t>(codec)})),
                IsInvalidRecord("compression codec"));
  }
  const std::vector<uint8_t> garbage = {'n', 'o', 't', ' ', 'c', 'o', 'm', 'p', 'r', 'e', 's',
                                        's', 'e', 'd', ' ', 'a', 't', ' ', 'a', 'l', 'l'};
  for (Compression codec : kCodecs) {
    EXPECT_THAT(Validate(Produced(garbage, {.attributes = CodecBits(codec)})),
                IsInvalidRecord("does not decompress"))
        << CompressionName(codec);
    // Uncompressed records under a codec flag.
    EXPECT_THAT(Validate(Produced(Records({0}), {.attributes = CodecBits(codec)})),
                IsInvalidRecord("records section"))
        << CompressionName(codec);
    // A stream cut short.
    std::vector<uint8_t> cut = Compressed(codec, Records({0, 1, 2, 3, 4, 5, 6, 7}));
    if (codec != Compression::kSnappy) {  // xerial framing has no end marker
      cut.resize(cut.size() - 3);
      EXPECT_THAT(Validate(Produced(cut, {.attributes = CodecBits(codec), .count = 8})),
                  IsInvalidRecord(""))
          << CompressionName(codec);
    }
  }
  // A raw snappy block announcing far more than its bytes can hold is refused before the
  // announced length is allocated.
  EXPECT_THAT(Validate(Produced({0x80, 0x80, 0x80, 0x20, 0x00},
                                {.attributes = CodecBits(Compression::kSnappy)})),
              IsInvalidRecord("cannot hold"));
}

TEST(ProduceValidationTest, ControlAndTransactionalBatchesAreRefused) {
  EXPECT_THAT(Validate(Produced(Records({0}), {.attributes = 0x20})), IsInvalidRecord("control"));
  EXPECT_THAT(
      Validate(Produced(Records({0}), {.attributes = 0x10, .producer_id = 3, .base_sequence = 0})),
      IsInvalidRecord("transactions"));
}

TEST(ProduceValidationTest, ProducerFieldsAndBaseOffset) {
  EXPECT_THAT(Validate(Produced(Records({0}), {.producer_id = 5, .base_sequence = -1})),
              IsInvalidRecord("sequence"));
  EXPECT_TRUE(Validate(Produced(Records({0}), {.producer_id = 5, .base_sequence = 0})).ok());
  EXPECT_THAT(Validate(Produced(Records({0}), {.base_offset = 7})), IsInvalidRecord("baseOffset"));
}

TEST(ProduceValidationTest, CompactedTopicsNeedKeys) {
  const ProduceRules compacted{.require_keys = true};
  EXPECT_TRUE(Validate(Produced(Records({0, 1}), {.count = 2}), compacted).ok());
  EXPECT_THAT(Validate(Produced(Records({0, 1}, /*keys=*/false), {.count = 2}), compacted),
              IsInvalidRecord("key"));
  EXPECT_TRUE(Validate(Produced(Records({0, 1}, /*keys=*/false), {.count = 2})).ok());
}

TEST(ProduceValidationTest, FramingAndCrc) {
  std::vector<uint8_t> good = Produced(Records({0}), {});
  // Framing: DataLoss (CORRUPT_MESSAGE).
  EXPECT_EQ(Validate(std::vector<uint8_t>(good.begin(), good.begin() + 60)).code(),
            absl::StatusCode::kDataLoss);
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_EQ(Validate(longer).code(), absl::StatusCode::kDataLoss);
  // Another magic is a broken rule.
  std::vector<uint8_t> magic1 = good;
  magic1[16] = 1;
  EXPECT_THAT(Validate(magic1), IsInvalidRecord("magic 1"));
  // A lying batch whose CRC does not match was damaged on the way: DataLoss, not judged.
  std::vector<uint8_t> lying = Produced(Records({0}), {.count = 5, .last_offset_delta = 4});
  lying[lying.size() - 1] ^= 1;
  EXPECT_EQ(Validate(lying).code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Validate(lying).message(), HasSubstr("crc mismatch"));
  // The CRC of a batch that follows the rules is left to PartitionLog::Append.
  good[good.size() - 2] ^= 1;  // the value
  EXPECT_TRUE(Validate(good).ok());
  EXPECT_EQ(ValidateBatch(good, kMax).code(), absl::StatusCode::kDataLoss);
}

// A zstd frame (window 128 KiB, no content size) of a raw block holding `prefix`, then `rle`
// bytes of zeros as RLE blocks of 128 KiB: 4 bytes per 128 KiB, so 32 KiB for 1 GiB.
std::vector<uint8_t> ZstdZeros(const std::vector<uint8_t>& prefix, uint64_t rle) {
  std::vector<uint8_t> f = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38};  // magic, descriptor, window
  auto block_header = [&f](bool last, int type, uint32_t size) {
    const uint32_t h = (last ? 1u : 0u) | (static_cast<uint32_t>(type) << 1) | (size << 3);
    f.insert(f.end(), {static_cast<uint8_t>(h), static_cast<uint8_t>(h >> 8),
                       static_cast<uint8_t>(h >> 16)});
  };
  block_header(rle == 0, 0, static_cast<uint32_t>(prefix.size()));
  f.insert(f.end(), prefix.begin(), prefix.end());
  constexpr uint32_t kBlock = 128 << 10;
  for (uint64_t left = rle; left > 0;) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(left, kBlock));
    left -= n;
    block_header(left == 0, 1, n);
    f.push_back(0);
  }
  return f;
}

long MaxRssKb() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

TEST(ProduceValidationTest, DecompressionBombIsRefusedWithoutALargeAllocation) {
  // One record whose value claims 1 GiB - 64 bytes, all zeros: the record is well formed as far
  // as it goes, so only the bound stops it.
  constexpr int32_t kValue = (1 << 30) - 64;
  std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x01};  // attributes, ts, offsetDelta, null key
  AppendVarint32(&body, kValue);
  std::vector<uint8_t> prefix;
  AppendVarint32(&prefix, static_cast<int32_t>(body.size() + kValue + 1));
  prefix.insert(prefix.end(), body.begin(), body.end());
  const std::vector<uint8_t> frame = ZstdZeros(prefix, uint64_t{kValue} + 1);
  ASSERT_LT(frame.size(), 40u << 10);
  const std::vector<uint8_t> bomb = Produced(frame, {.attributes = CodecBits(Compression::kZstd)});
  // The frame is real zstd: the library agrees on its size.
  EXPECT_EQ(DecompressRecords(Compression::kZstd, frame, 1 << 20).status().code(),
            absl::StatusCode::kResourceExhausted);

  ProducedBatchValidator validator;
  const long rss_before = MaxRssKb();
  EXPECT_THAT(validator.Validate(bomb, {}), IsInvalidRecord("decompresses to more than 67108864"));
  EXPECT_THAT(validator.Validate(bomb, {.max_decompressed_bytes = 1 << 20}),
              IsInvalidRecord("decompresses to more than 1048576"));
  // 64 MiB were decompressed through a 64 KiB window: the peak RSS barely moved.
  EXPECT_LT(MaxRssKb() - rss_before, 16 * 1024);

  // Zeros as records fail at the first one, long before the bound.
  const std::vector<uint8_t> zeros =
      Produced(ZstdZeros({}, uint64_t{1} << 30), {.attributes = CodecBits(Compression::kZstd)});
  EXPECT_THAT(validator.Validate(zeros, {}), IsInvalidRecord("record 0"));

  // The validator is still good for honest batches afterwards.
  RecordBatchBuilder b(0, 1000);
  b.Add("k", "v");
  absl::StatusOr<std::vector<uint8_t>> honest = b.BuildCompressed(Compression::kZstd);
  ASSERT_TRUE(honest.ok());
  EXPECT_TRUE(validator.Validate(*honest, {}).ok());
}

TEST(ProduceValidationTest, EveryBatchItAcceptsDecodes) {
  // Flip every bit of a small compressed and uncompressed batch (CRC repaired): whatever the
  // validator accepts, DecompressAndDecodeRecords decodes to recordsCount records at offsets
  // base .. base + lastOffsetDelta.
  RecordBatchBuilder b(0, 1000);
  const std::vector<RecordBatchBuilder::Header> headers = {{"h", "v"}};
  b.Add("k", "value", headers);
  b.Add(std::nullopt, "v2");
  b.Add("k3", std::nullopt);
  std::vector<std::vector<uint8_t>> batches;
  RecordBatchBuilder plain = b;
  batches.push_back(plain.Build());
  RecordBatchBuilder lz4 = b;
  batches.push_back(*lz4.BuildCompressed(Compression::kLz4));
  ProducedBatchValidator validator;
  int accepted = 0;
  for (const std::vector<uint8_t>& original : batches) {
    for (size_t bit = 0; bit < original.size() * 8; ++bit) {
      std::vector<uint8_t> batch = original;
      batch[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
      RewriteCrc(&batch);
      absl::Status s = validator.Validate(batch, {});
      if (!s.ok()) {
        EXPECT_TRUE(absl::IsInvalidArgument(s) || absl::IsDataLoss(s)) << s;
        continue;
      }
      ++accepted;
      std::vector<uint8_t> scratch;
      auto records =
          DecompressAndDecodeRecords(batch, kDefaultMaxDecompressedRecordsBytes, &scratch);
      ASSERT_TRUE(records.ok()) << "bit " << bit << ": " << records.status();
      const RecordBatchView v(batch);
      ASSERT_EQ(records->size(), static_cast<size_t>(v.records_count()));
      for (size_t i = 0; i < records->size(); ++i) {
        EXPECT_EQ((*records)[i].offset, v.base_offset() + static_cast<int64_t>(i));
      }
    }
  }
  EXPECT_GT(accepted, 100);  // timestamps, values, producer fields: many flips stay valid
}

// ---- Varints ----

TEST(VarintTest, ZigZagRoundTripsBoundaryValues) {
  for (int32_t v : {0, 1, -1, 63, -64, 64, -65, 8191, -8192, std::numeric_limits<int32_t>::max(),
                    std::numeric_limits<int32_t>::min()}) {
    std::vector<uint8_t> buf;
    AppendVarint32(&buf, v);
    EXPECT_EQ(buf.size(), VarintSize32(v));
    size_t pos = 0;
    int32_t got = 0;
    ASSERT_TRUE(ReadVarint32(buf, &pos, &got)) << v;
    EXPECT_EQ(got, v);
    EXPECT_EQ(pos, buf.size());
  }
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1} << 40, -(int64_t{1} << 40),
                    std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()}) {
    std::vector<uint8_t> buf;
    AppendVarint64(&buf, v);
    EXPECT_EQ(buf.size(), VarintSize64(v));
    size_t pos = 0;
    int64_t got = 0;
    ASSERT_TRUE(ReadVarint64(buf, &pos, &got)) << v;
    EXPECT_EQ(got, v);
  }
}

TEST(VarintTest, KnownEncodings) {
  auto enc = [](int32_t v) {
    std::vector<uint8_t> b;
    AppendVarint32(&b, v);
    return b;
  };
  EXPECT_EQ(enc(0), (std::vector<uint8_t>{0x00}));
  EXPECT_EQ(enc(-1), (std::vector<uint8_t>{0x01}));
  EXPECT_EQ(enc(1), (std::vector<uint8_t>{0x02}));
  EXPECT_EQ(enc(-64), (std::vector<uint8_t>{0x7f}));
  EXPECT_EQ(enc(64), (std::vector<uint8_t>{0x80, 0x01}));
  EXPECT_EQ(enc(-65), (std::vector<uint8_t>{0x81, 0x01}));
  EXPECT_EQ(enc(std::numeric_limits<int32_t>::min()),
            (std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff, 0x0f}));
}

TEST(VarintTest, RejectsTruncatedOverlongAndOverwideEncodings) {
  int32_t v32;
  int64_t v64;
  size_t pos = 0;
  const std::vector<uint8_t> truncated = {0x80, 0x80};
  EXPECT_FALSE(ReadVarint32(truncated, &pos, &v32));
  EXPECT_EQ(pos, 0u);  // untouched on failure
  const std::vector<uint8_t> six = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
  EXPECT_FALSE(ReadVarint32(six, &pos, &v32));
  EXPECT_TRUE(ReadVarint64(six, &pos, &v64));
  const std::vector<uint8_t> overwide32 = {0xff, 0xff, 0xff, 0xff, 0x1f};  // 33 bits
  pos = 0;
  EXPECT_FALSE(ReadVarint32(overwide32, &pos, &v32));
  std::vector<uint8_t> eleven(10, 0x80);
  eleven.push_back(0x00);
  pos = 0;
  EXPECT_FALSE(ReadVarint64(eleven, &pos, &v64));
  std::vector<uint8_t> overwide64(9, 0xff);
  overwide64.push_back(0x03);  // 65 bits
  pos = 0;
  EXPECT_FALSE(ReadVarint64(overwide64, &pos, &v64));
  overwide64.back() = 0x01;
  EXPECT_TRUE(ReadVarint64(overwide64, &pos, &v64));
}

}  // namespace
}  // namespace sluice::storage
