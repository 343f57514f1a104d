// Produce validation on the produce hot path (Google Benchmark): ProducedBatchValidator against
// the CRC32C every append already computes, in the same run. Bytes processed are the batch's
// bytes as sent (compressed ones: the compressed size), so MiB/s compare per produced MiB.
//
//   BM_Crc32cOfBatch         the CRC Append computes (in place) over the same batch.
//   BM_CopyValidBatch        what Append does with a batch: copy + CRC in one pass.
//   BM_ValidateProduced      ProducedBatchValidator::Validate, warm (one per thread, as in the
//                            broker): args batch bytes (16 KiB, 1 MiB), record value bytes
//                            (1 KiB, 100 B), codec (0 none, 3 lz4, 4 zstd).
//   BM_RejectZstdBomb        a 32 KiB zstd frame of 1 GiB whose single record's value only the
//                            bound stops, at the default 64 MiB bound and at 1 MiB.
//   BM_RejectGzipBomb        the same with an 80 MiB value, gzip (about 80 KiB sent).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "log/compression.h"
#include "log/crc32c.h"
#include "log/record_batch.h"
#include "log/varint.h"

namespace sluice::storage {
namespace {

// A producer's batch of about `batch_bytes` of records with `value_bytes` values (random
// letters: compressible about as much as text), compressed with `codec`.
std::vector<uint8_t> MakeBatch(size_t batch_bytes, size_t value_bytes, Compression codec) {
  RecordBatchBuilder b(0, 1700000000000);
  std::mt19937 rng(1);
  std::string value(value_bytes, 'x');
  while (b.estimated_size() + value_bytes + 20 <= batch_bytes || b.records() == 0) {
    for (char& c : value) c = static_cast<char>('a' + rng() % 26);
    b.Add("key-" + std::to_string(b.records() % 100), value);
  }
  if (codec == Compression::kNone) return b.Build();
  return *b.BuildCompressed(codec);
}

void SetLabel(benchmark::State& state, const std::vector<uint8_t>& batch) {
  state.SetLabel(absl::StrCat(CompressionName(RecordBatchView(batch).compression()), " ",
                              RecordBatchView(batch).records_count(), " records, ", batch.size(),
                              " bytes sent"));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
}

void BM_Crc32cOfBatch(benchmark::State& state) {
  const std::vector<uint8_t> batch =
      MakeBatch(state.range(0), state.range(1), static_cast<Compression>(state.range(2)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        Crc32c(0, batch.data() + kBatchCrcStart, batch.size() - kBatchCrcStart));
  }
  SetLabel(state, batch);
}

void BM_CopyValidBatch(benchmark::State& state) {
  const std::vector<uint8_t> batch =
      MakeBatch(state.range(0), state.range(1), static_cast<Compression>(state.range(2)));
  std::vector<uint8_t> dst(batch.size());
  for (auto _ : state) {
    if (!CopyValidBatch(batch, dst.data(), UINT32_MAX >> 1).ok()) state.SkipWithError("invalid");
    benchmark::ClobberMemory();
  }
  SetLabel(state, batch);
}

void BM_ValidateProduced(benchmark::State& state) {
  const std::vector<uint8_t> batch =
      MakeBatch(state.range(0), state.range(1), static_cast<Compression>(state.range(2)));
  ProducedBatchValidator validator;
  const ProduceRules rules;
  for (auto _ : state) {
    if (!validator.Validate(batch, rules).ok()) state.SkipWithError("invalid");
  }
  SetLabel(state, batch);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int codec : {0, 3, 4}) {
    for (int64_t batch : {16 << 10, 1 << 20}) {
      for (int64_t value : {1024, 100}) b->Args({batch, value, codec});
    }
  }
}
BENCHMARK(BM_Crc32cOfBatch)->Apply(Args);
BENCHMARK(BM_CopyValidBatch)->Apply(Args);
BENCHMARK(BM_ValidateProduced)->Apply(Args);

// One record whose value is 1 GiB of zeros, as a zstd frame of RLE blocks (see
// record_batch_test.cc): only the decompression bound stops it.
std::vector<uint8_t> ZstdBomb() {
  constexpr int32_t kValue = (1 << 30) - 64;
  std::vector<uint8_t> body = {0x00, 0x00, 0x00, 0x01};
  AppendVarint32(&body, kValue);
  std::vector<uint8_t> prefix;
  AppendVarint32(&prefix, static_cast<int32_t>(body.size() + kValue + 1));
  prefix.insert(prefix.end(), body.begin(), body.end());
  std::vector<uint8_t> frame = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38};
  auto block_header = [&frame](bool last, int type, uint32_t size) {
    const uint32_t h = (last ? 1u : 0u) | (static_cast<uint32_t>(type) << 1) | (size << 3);
    frame.insert(frame.end(), {static_cast<uint8_t>(h), static_cast<uint8_t>(h >> 8),
                               static_cast<uint8_t>(h >> 16)});
  };
  block_header(false, 0, static_cast<uint32_t>(prefix.size()));
  frame.insert(frame.end(), prefix.begin(), prefix.end());
  for (uint64_t left = uint64_t{kValue} + 1; left > 0;) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(left, 128 << 10));
    left -= n;
    block_header(left == 0, 1, n);
    frame.push_back(0);
  }
  RecordBatchBuilder b(0, 1000);
  b.Add("k", "v");
  std::vector<uint8_t> batch = b.Build();
  batch.resize(kBatchHeaderSize);
  batch.insert(batch.end(), frame.begin(), frame.end());
  const uint32_t length = static_cast<uint32_t>(batch.size() - kBatchLengthFieldEnd);
  for (int i = 0; i < 4; ++i) batch[8 + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  batch[22] = static_cast<uint8_t>(Compression::kZstd);
  const uint32_t crc = Crc32c(0, batch.data() + kBatchCrcStart, batch.size() - kBatchCrcStart);
  for (int i = 0; i < 4; ++i) batch[17 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  return batch;
}

void BM_RejectZstdBomb(benchmark::State& state) {
  const std::vector<uint8_t> batch = ZstdBomb();
  ProducedBatchValidator validator;
  ProduceRules rules;
  rules.max_decompressed_bytes = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    if (validator.Validate(batch, rules).ok()) state.SkipWithError("bomb accepted");
  }
  state.SetLabel(absl::StrCat(batch.size(), " bytes sent"));
}
BENCHMARK(BM_RejectZstdBomb)->Arg(64 << 20)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

// The same record with 80 MiB of zeros, gzip (deflate tops out near 1000:1): inflate speed is
// what a gzip bomb costs up to the bound.
void BM_RejectGzipBomb(benchmark::State& state) {
  constexpr int32_t kValue = 80 << 20;
  RecordBatchBuilder b(0, 1000);
  b.Add(std::nullopt, std::string(kValue, '\0'));
  const std::vector<uint8_t> batch = *b.BuildCompressed(Compression::kGzip);
  ProducedBatchValidator validator;
  ProduceRules rules;
  rules.max_decompressed_bytes = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    if (validator.Validate(batch, rules).ok()) state.SkipWithError("bomb accepted");
  }
  state.SetLabel(absl::StrCat(batch.size(), " bytes sent"));
}
BENCHMARK(BM_RejectGzipBomb)->Arg(64 << 20)->Arg(1 << 20)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sluice::storage

BENCHMARK_MAIN();
