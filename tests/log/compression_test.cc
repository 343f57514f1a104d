#include "log/compression.h"

#include <snappy-c.h>
#include <zstd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log/record_batch.h"

namespace sluice::storage {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Compression kCodecs[] = {Compression::kGzip, Compression::kSnappy, Compression::kLz4,
                                   Compression::kZstd};
constexpr size_t kNoLimit = size_t{1} << 30;

std::vector<uint8_t> Bytes(std::string_view s) { return {s.begin(), s.end()}; }

// Compressible but not trivial: words drawn from a small vocabulary by a simple generator.
std::vector<uint8_t> Text(size_t n, uint32_t seed = 1) {
  static constexpr std::string_view kWords[] = {
      "orders ", "sku=", "42 ", "qty ", "eu-west ", "\n", "{\"id\":", "} ", "pending ", "paid "};
  std::vector<uint8_t> out;
  while (out.size() < n) {
    seed = seed * 1103515245 + 12345;
    std::string_view w = kWords[(seed >> 16) % std::size(kWords)];
    out.insert(out.end(), w.begin(), w.end());
  }
  out.resize(n);
  return out;
}

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::vector<uint8_t> RawSnappy(std::span<const uint8_t> in) {
  size_t len = snappy_max_compressed_length(in.size());
  std::vector<uint8_t> out(len);
  EXPECT_EQ(snappy_compress(reinterpret_cast<const char*>(in.data()), in.size(),
                            reinterpret_cast<char*>(out.data()), &len),
            SNAPPY_OK);
  out.resize(len);
  return out;
}

void PutBe32(std::vector<uint8_t>* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<uint8_t>(v >> s));
}

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, RoundTrips) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{70000}, size_t{300000}}) {
    const std::vector<uint8_t> in = Text(n, static_cast<uint32_t>(n));
    auto c = CompressRecords(GetParam(), in);
    ASSERT_TRUE(c.ok()) << c.status();
    auto d = DecompressRecords(GetParam(), *c, n);  // exactly at the limit
    ASSERT_TRUE(d.ok()) << CompressionName(GetParam()) << " " << n << ": " << d.status();
    EXPECT_EQ(*d, in);
    if (n > 1000) EXPECT_LT(c->size(), n / 2) << CompressionName(GetParam());
  }
}

TEST_P(CodecTest, BombStopsAtTheLimit) {
  const std::vector<uint8_t> zeros(1 << 20, 0);
  auto c = CompressRecords(GetParam(), zeros);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_LT(c->size(), 64u << 10);
  for (size_t limit : {size_t{0}, size_t{64} << 10, (size_t{1} << 20) - 1}) {
    auto d = DecompressRecords(GetParam(), *c, limit);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted) << limit;
    EXPECT_THAT(std::string(d.status().message()), StartsWith(CompressionName(GetParam())));
    EXPECT_THAT(std::string(d.status().message()), HasSubstr("max_output_bytes"));
  }
  auto d = DecompressRecords(GetParam(), *c, size_t{1} << 20);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, zeros);
}

TEST_P(CodecTest, TruncatedInputFails) {
  const std::vector<uint8_t> in = Text(100000);
  auto c = CompressRecords(GetParam(), in);
  ASSERT_TRUE(c.ok()) << c.status();
  for (size_t n = 0; n < c->size(); n += (n < 64 ? 1 : 97)) {
    auto d = DecompressRecords(GetParam(), std::span<const uint8_t>(*c).first(n), kNoLimit);
    if (d.ok()) {
      // Only snappy's xerial framing has no end marker: a cut at a block boundary is a shorter,
      // valid stream.
      ASSERT_EQ(GetParam(), Compression::kSnappy) << n;
      EXPECT_TRUE(std::equal(d->begin(), d->end(), in.begin())) << n;
      continue;
    }
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << n << " " << d.status();
    EXPECT_THAT(std::string(d.status().message()), StartsWith(CompressionName(GetParam())));
  }
}

TEST_P(CodecTest, CorruptInputNeverCrashes) {
  const std::vector<uint8_t> in = Text(20000);
  auto c = CompressRecords(GetParam(), in);
  ASSERT_TRUE(c.ok()) << c.status();
  int failures = 0;
  for (size_t i = 0; i < c->size(); i += 7) {
    std::vector<uint8_t> bad = *c;
    bad[i] ^= static_cast<uint8_t>(1 + i % 255);
    auto d = DecompressRecords(GetParam(), bad, 1 << 20);
    if (!d.ok()) {
      ++failures;
      EXPECT_THAT(d.status().code(), testing::AnyOf(absl::StatusCode::kDataLoss,
                                                    absl::StatusCode::kResourceExhausted));
    } else {
      EXPECT_LE(d->size(), 1u << 20);
    }
  }
  EXPECT_GT(failures, 0);
}

TEST_P(CodecTest, CompressedBatchRoundTrip) {
  RecordBatchBuilder b(0, 1700000000000);
  b.set_producer(7, 1, 100);
  const std::vector<RecordBatchBuilder::Header> headers = {{"h", "v"}, {"n", std::nullopt}};
  for (int i = 0; i < 50; ++i) {
    const std::string key = "key-" + std::to_string(i % 10);
    const std::string value = "value of record " + std::to_string(i) + std::string(200, 'x');
    b.Add(key, i % 13 == 12 ? std::nullopt : std::optional<std::string_view>(value),
          i == 0 ? std::span<const RecordBatchBuilder::Header>(headers)
                 : std::span<const RecordBatchBuilder::Header>(),
          1700000000000 + i);
  }
  RecordBatchBuilder copy = b;
  const std::vector<uint8_t> plain = copy.Build();
  auto batch = b.BuildCompressed(GetParam());
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_TRUE(ValidateBatch(*batch, 1 << 20).ok());
  RecordBatchView v(*batch);
  EXPECT_EQ(v.compression(), GetParam());
  EXPECT_EQ(v.records_count(), 50);
  EXPECT_EQ(v.producer_id(), 7);
  EXPECT_LT(batch->size(), plain.size() / 2);
  EXPECT_EQ(DecodeRecords(*batch).status().code(), absl::StatusCode::kInvalidArgument);

  std::vector<uint8_t> scratch;
  auto records = DecompressAndDecodeRecords(*batch, 1 << 20, &scratch);
  ASSERT_TRUE(records.ok()) << records.status();
  auto expected = DecodeRecords(plain);
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(records->size(), expected->size());
  for (size_t i = 0; i < records->size(); ++i) {
    EXPECT_EQ((*records)[i].offset, (*expected)[i].offset);
    EXPECT_EQ((*records)[i].timestamp, (*expected)[i].timestamp);
    EXPECT_EQ((*records)[i].key, (*expected)[i].key);
    EXPECT_EQ((*records)[i].value, (*expected)[i].value);
    EXPECT_EQ((*records)[i].headers.size(), (*expected)[i].headers.size());
  }
  EXPECT_EQ((*records)[0].headers[1].key, "n");
  EXPECT_EQ((*records)[0].headers[1].value, std::nullopt);

  // Decompressing gives back exactly the uncompressed batch (header, records, CRC).
  auto back = DecompressBatch(*batch, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, plain);
  EXPECT_EQ(CompressBatch(*batch, GetParam()).status().code(), absl::StatusCode::kInvalidArgument);

  // The limit applies to the records section.
  EXPECT_EQ(DecompressAndDecodeRecords(*batch, 1000, &scratch).status().code(),
            absl::StatusCode::kResourceExhausted);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecTest, ::testing::ValuesIn(kCodecs),
                         [](const auto& info) { return CompressionName(info.param); });

TEST(CompressionTest, UncompressedBatchDecodesIntoTheBatch) {
  RecordBatchBuilder b(5, 1000);
  b.Add("k", "v");
  const std::vector<uint8_t> batch = b.Build();
  std::vector<uint8_t> scratch = {1, 2, 3};
  auto records = DecompressAndDecodeRecords(batch, 0, &scratch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].offset, 5);
  EXPECT_EQ((*records)[0].value, "v");
  EXPECT_EQ(reinterpret_cast<const uint8_t*>((*records)[0].value->data()),
            &batch[batch.size() - 2]);
  EXPECT_EQ(scratch, (std::vector<uint8_t>{1, 2, 3}));
  auto same = DecompressBatch(batch, 0);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, batch);
}

TEST(CompressionTest, EmptyCompressedBatch) {
  for (Compression c : kCodecs) {
    RecordBatchBuilder b(0, 1000);
    auto batch = b.BuildCompressed(c);
    ASSERT_TRUE(batch.ok()) << batch.status();
    std::vector<uint8_t> scratch;
    auto records = DecompressAndDecodeRecords(*batch, 1 << 20, &scratch);
    ASSERT_TRUE(records.ok()) << CompressionName(c) << ": " << records.status();
    EXPECT_TRUE(records->empty());
  }
}

TEST(CompressionTest, NotACodec) {
  for (int c : {0, 5, 6, 7}) {
    auto d = DecompressRecords(static_cast<Compression>(c), Bytes("abc"), kNoLimit);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c;
    EXPECT_EQ(CompressRecords(static_cast<Compression>(c), Bytes("abc")).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  // A batch claiming codec 6 has no decoder.
  RecordBatchBuilder b(0, 1000);
  b.Add("k", "v");
  std::vector<uint8_t> batch = b.Build();
  batch[22] |= 6;
  std::vector<uint8_t> scratch;
  EXPECT_EQ(DecompressAndDecodeRecords(batch, kNoLimit, &scratch).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Framings other producers send ----

// Python's gzip.compress(b"hello", mtime=0): a header with flags and OS byte zlib does not set.
TEST(CompressionTest, GzipFromAnotherEncoder) {
  auto d = DecompressRecords(Compression::kGzip,
                             FromHex("1f8b0800000000000203cb48cdc9c9070086a6103605000000"), 100);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, Bytes("hello"));
}

TEST(CompressionTest, GzipConcatenatedMembersAndTrailingGarbage) {
  auto a = CompressRecords(Compression::kGzip, Bytes("hello "));
  auto b = CompressRecords(Compression::kGzip, Bytes("world"));
  std::vector<uint8_t> both = *a;
  both.insert(both.end(), b->begin(), b->end());
  auto d = DecompressRecords(Compression::kGzip, both, 100);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, Bytes("hello world"));
  both.push_back(0);
  EXPECT_EQ(DecompressRecords(Compression::kGzip, both, 100).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(CompressionTest, ZlibWrapperIsNotGzip) {
  // zlib.compress(b"hello"): a zlib (RFC 1950) stream, which Kafka's gzip codec never sends.
  auto d = DecompressRecords(Compression::kGzip, FromHex("789ccb48cdc9c90700062c0215"), 100);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(d.status().message()), StartsWith("gzip: "));
}

// snappy-java's SnappyOutputStream (the Java producer, Kafka's broker): the 16-byte xerial
// header then [int32 BE length][raw block]*. Built here byte by byte from that description.
TEST(CompressionTest, SnappyXerialFraming) {
  const std::vector<uint8_t> hello = FromHex(
      "82534e41505059000000000100000001"  // magic, version 1, compatible version 1
      "00000007"                          // block of 7 bytes
      "051068656c6c6f");                  // raw snappy: length 5, literal "hello"
  auto d = DecompressRecords(Compression::kSnappy, hello, 100);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, Bytes("hello"));

  // Several blocks, as snappy-java writes for records sections above its 32 KiB block size.
  const std::vector<uint8_t> in = Text(80000);
  std::vector<uint8_t> framed = FromHex("82534e41505059000000000100000001");
  for (size_t pos = 0; pos < in.size(); pos += 32768) {
    std::vector<uint8_t> block = RawSnappy(
        std::span<const uint8_t>(in).subspan(pos, std::min<size_t>(32768, in.size() - pos)));
    PutBe32(&framed, static_cast<uint32_t>(block.size()));
    framed.insert(framed.end(), block.begin(), block.end());
  }
  d = DecompressRecords(Compression::kSnappy, framed, kNoLimit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, in);
  // The limit counts every block.
  EXPECT_EQ(DecompressRecords(Compression::kSnappy, framed, 70000).status().code(),
            absl::StatusCode::kResourceExhausted);

  // Our own output uses the same framing.
  auto ours = CompressRecords(Compression::kSnappy, Bytes("hello"));
  ASSERT_TRUE(ours.ok());
  EXPECT_EQ(*ours, hello);

  // Header cut short, block length past the end.
  EXPECT_EQ(DecompressRecords(Compression::kSnappy, FromHex("82534e415050590000000001"), 100)
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecompressRecords(Compression::kSnappy,
                              FromHex("82534e41505059000000000100000001000000ff0510"), 100)
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

// librdkafka (kcat, confluent-kafka) and kafkajs-snappy send one raw snappy block, no framing.
TEST(CompressionTest, SnappyRawBlock) {
  const std::vector<uint8_t> in = Text(50000);
  auto d = DecompressRecords(Compression::kSnappy, RawSnappy(in), kNoLimit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, in);
  // The block's header announces its length: the limit is checked before decoding.
  EXPECT_EQ(DecompressRecords(Compression::kSnappy, RawSnappy(in), 49999).status().code(),
            absl::StatusCode::kResourceExhausted);
  // A length header announcing 2^32-1 bytes, and nothing after it.
  auto bomb = DecompressRecords(Compression::kSnappy, FromHex("ffffffff0f"), kNoLimit);
  EXPECT_FALSE(bomb.ok());
}

TEST(CompressionTest, ZstdFrameWithoutContentSizeAndSeveralFrames) {
  const std::vector<uint8_t> in = Text(200000);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ASSERT_EQ(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)), 0u);
  std::vector<uint8_t> frame(ZSTD_compressBound(in.size()));
  const size_t n = ZSTD_compress2(cctx, frame.data(), frame.size(), in.data(), in.size());
  ZSTD_freeCCtx(cctx);
  ASSERT_FALSE(ZSTD_isError(n));
  frame.resize(n);
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  auto d = DecompressRecords(Compression::kZstd, frame, kNoLimit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, in);
  EXPECT_EQ(DecompressRecords(Compression::kZstd, frame, 1 << 16).status().code(),
            absl::StatusCode::kResourceExhausted);

  std::vector<uint8_t> two = frame;
  two.insert(two.end(), frame.begin(), frame.end());
  d = DecompressRecords(Compression::kZstd, two, kNoLimit);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 2 * in.size());

  // A frame that claims a huge content size is refused before anything is allocated.
  auto ours = CompressRecords(Compression::kZstd, in);
  ASSERT_TRUE(ours.ok());
  EXPECT_EQ(DecompressRecords(Compression::kZstd, *ours, 1000).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// A batch kcat (librdkafka 2.0.2, -X compression.codec=zstd) produced to Sluice: 20 records,
// keys k0..k3, as stored in the segment file. librdkafka streams zstd without a content size.
TEST(CompressionTest, RealLibrdkafkaZstdBatch) {
  const std::vector<uint8_t> batch = FromHex(
      "0000000000000000000001080000000002f564093d000400000013000001a2119a6656000001a2119a6656ff"
      "ffffffffffffffffffffffffff0000001428b52ffd005875060042c81e2450e5a60312bbadabaa1ee900ba34"
      "8efe3a3333d1d4444484b8cf8ff47896c7b31cf243a657c482540f6a2787d4f83332e456c69f91a16b5dfc19"
      "61d4aaf83332845a137fc60b611d2a03559808d2208a5a0510d4aaccad813fb7bfec3d4cb392a77100b6a259"
      "3eab61935e4c664359b759e7827932c0b5fecf2d2720a09392c20e9584bb88324e02bd1c0b54b88b28e32410"
      "bd4be4d43149864c1a2629909d5f9200c4d92579b3abbc060b24f145c4620974631648e28b41ec289688ee4b"
      "81ae9762a04bd9f794c85f06");
  ASSERT_TRUE(ValidateBatch(batch, 1 << 20).ok());
  ASSERT_EQ(RecordBatchView(batch).compression(), Compression::kZstd);
  std::vector<uint8_t> scratch;
  auto records = DecompressAndDecodeRecords(batch, 1 << 20, &scratch);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ((*records)[i].offset, i);
    EXPECT_EQ((*records)[i].key, "k" + std::to_string(i % 4));
    EXPECT_EQ((*records)[i].value,
              "value " + std::to_string(i) +
                  " from kcat with zstd, padded padded padded padded padded padded");
  }
}

TEST(CompressionTest, EmptyInputIsCorrupt) {
  for (Compression c : kCodecs) {
    auto d = DecompressRecords(c, {}, kNoLimit);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << CompressionName(c);
  }
}

// Reads a started decompressor's windows to the end (at most 100 of them): the first error,
// or OK.
absl::Status DrainWindows(RecordsDecompressor& d) {
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::span<const uint8_t>> piece = d.Next();
    if (!piece.ok()) return piece.status();
    if (piece->empty()) break;
  }
  return absl::OkStatus();
}

// Found by compression_fuzz: a frame that declares 260 bytes but decodes to more got
// CORRUPT from a fresh context (zstd decoded it in one pass into a large enough buffer) and
// "too large" from a context that had decoded another frame before. The same bytes must get
// the same answer, however the decompressor was used before.
TEST(CompressionTest, ZstdFrameHoldingMoreThanItDeclaresIsCorruptWhateverTheContextDidBefore) {
  const std::vector<uint8_t> earlier = {0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x65, 0x00, 0x00,
                                        0x30, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x01, 0x00,
                                        0x31, 0x4a, 0x11, 0xa2, 0xed, 0x1e, 0x0c};
  const std::vector<uint8_t> lying = {0x28, 0xb5, 0x2f, 0xfd, 0x51, 0x58, 0x00, 0x04, 0x00,
                                      0x12, 0x00, 0x04, 0x00, 0x12, 0x00, 0x00, 0x00, 0x02,
                                      0x6b, 0x04, 0x76, 0x31, 0x41, 0x00, 0x8b, 0xd0, 0xb4,
                                      0x0f, 0xf7, 0x00, 0x00, 0x00, 0x01};
  constexpr size_t kLimit = 64 << 10;
  EXPECT_EQ(DecompressRecords(Compression::kZstd, lying, kLimit).status().code(),
            absl::StatusCode::kDataLoss);
  RecordsDecompressor reused;
  for (const std::vector<uint8_t>* input : {&earlier, &lying}) {
    ASSERT_TRUE(reused.Start(Compression::kZstd, *input, kLimit).ok());
    const absl::Status status = DrainWindows(reused);
    EXPECT_EQ(status.code(),
              input == &lying
                  ? absl::StatusCode::kDataLoss
                  : DecompressRecords(Compression::kZstd, *input, kLimit).status().code());
  }
}

// Found by compression_fuzz: the same history, then a frame without a declared size whose
// header allows a 1 KiB window but whose blocks decode to more. A fresh context fails it
// ("destination buffer is too small": zstd's buffers are sized by the window), a context that
// kept the larger buffers of an earlier frame decoded on until the output limit ("too large").
// zstd's answer depends on the buffers it kept, so each section starts with a fresh context.
TEST(CompressionTest, ZstdFrameOutgrowingItsWindowGetsTheSameAnswerWhateverTheContextDidBefore) {
  const std::vector<uint8_t> earlier = {0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x65, 0x00, 0x00,
                                        0x30, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x01, 0x00,
                                        0x31, 0x4a, 0x11, 0xa2, 0xed, 0x1e, 0x0c};
  const std::vector<uint8_t> outgrowing = {
      0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0xc9, 0x00, 0x00, 0x10, 0xc9, 0x00, 0x00,
      0x10, 0x23, 0x11, 0x01, 0x04, 0x04, 0x02, 0x00, 0x00, 0x10, 0x68, 0x81, 0x00,
      0x00, 0x0c, 0x10, 0x2b, 0x11, 0x01, 0x00, 0x13, 0x28, 0xb5, 0x2f, 0xfd, 0x51,
      0x58, 0x00, 0x04, 0x00, 0x12, 0x12, 0x0a, 0x00, 0x00, 0xd8};
  constexpr size_t kLimit = 64 << 10;
  const absl::StatusCode fresh =
      DecompressRecords(Compression::kZstd, outgrowing, kLimit).status().code();
  EXPECT_EQ(fresh, absl::StatusCode::kDataLoss);
  RecordsDecompressor reused;
  for (const std::vector<uint8_t>* input : {&earlier, &outgrowing, &earlier, &outgrowing}) {
    ASSERT_TRUE(reused.Start(Compression::kZstd, *input, kLimit).ok());
    const absl::Status status = DrainWindows(reused);
    EXPECT_EQ(status.code(),
              DecompressRecords(Compression::kZstd, *input, kLimit).status().code())
        << status;
  }
}

// Found by compression_fuzz: a frame whose header declares 65,585 bytes but whose only block
// is empty. DecompressRecords() (one buffer: zstd checks the size) said DATA_LOSS, the
// windowed RecordsDecompressor said OK with 0 bytes: produce validation and readers must not
// disagree about a batch.
TEST(CompressionTest, ZstdFrameHoldingLessThanItDeclaresIsCorruptForBothDecoders) {
  const std::vector<uint8_t> short_frame = {0x28, 0xb5, 0x2f, 0xfd, 0x51, 0x58,
                                            0x00, 0x31, 0xff, 0x01, 0x00, 0x00};
  constexpr size_t kLimit = 256 << 10;
  EXPECT_EQ(DecompressRecords(Compression::kZstd, short_frame, kLimit).status().code(),
            absl::StatusCode::kDataLoss);
  RecordsDecompressor windows;
  ASSERT_TRUE(windows.Start(Compression::kZstd, short_frame, kLimit).ok());
  const absl::Status status = DrainWindows(windows);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

}  // namespace
}  // namespace sluice::storage
