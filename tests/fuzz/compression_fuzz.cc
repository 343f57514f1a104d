// libFuzzer target for log/compression: every codec's decoder on arbitrary bytes must fail
// cleanly or return at most the output limit, never crash, hang or allocate past the limit
// (run under ASan + UBSan with -rss_limit_mb); compressing the input and decompressing it
// must give it back; the same bytes as a batch's records section go through
// DecompressAndDecodeRecords. RecordsDecompressor::Next() (one decompressor reused across
// inputs, as the produce validator keeps it) must hand out exactly what DecompressRecords()
// returns, or fail with the same code.
//
// Input: byte 0 picks the codec (bits 0-1: gzip, snappy, lz4, zstd) and the output limit
// (bits 2-3: 256 KiB, 256 bytes, 64 KiB, 0); the rest is the compressed records section.
// The largest limit was 1 MiB: a few dozen mutated bytes (an RLE run, an lz4 match chain)
// expand to the limit, and each input decompresses four times, so such inputs zero-filled,
// decompressed and compared megabytes under ASan (about 90 inputs a second). 256 KiB still
// takes Output's geometric growth past its 64 KiB start and RecordsDecompressor::Next()
// through several 64 KiB windows; the limit checks are the same whatever the limit.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/strings/match.h"
#include "log/compression.h"
#include "log/record_batch.h"

namespace sluice::storage {
namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

uint64_t Touch(std::optional<std::string_view> s) {
  uint64_t sum = 0;
  if (s) {
    for (char c : *s) sum += static_cast<uint8_t>(c);
  }
  return sum;
}

void Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const auto codec = static_cast<Compression>(1 + (data[0] & 3));
  constexpr size_t kLimits[] = {size_t{256} << 10, 256, size_t{64} << 10, 0};
  const size_t limit = kLimits[(data[0] >> 2) & 3];
  const std::span<const uint8_t> input(data + 1, size - 1);
  volatile uint64_t sink = 0;

  absl::StatusOr<std::vector<uint8_t>> out = DecompressRecords(codec, input, limit);
  if (out.ok()) {
    Check(out->size() <= limit);
    for (uint8_t b : *out) sink = sink + b;
  } else {
    const absl::StatusCode code = out.status().code();
    Check(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kResourceExhausted);
    Check(absl::StartsWith(out.status().message(), CompressionName(codec)));
  }

  // The streaming path, with contexts reused from earlier inputs.
  static RecordsDecompressor streaming;
  absl::Status s = streaming.Start(codec, input, limit);
  std::vector<uint8_t> pieces;
  while (s.ok()) {
    absl::StatusOr<std::span<const uint8_t>> piece = streaming.Next();
    if (!piece.ok()) {
      s = piece.status();
      break;
    }
    if (piece->empty()) break;
    Check(piece->size() <= limit - pieces.size());
    pieces.insert(pieces.end(), piece->begin(), piece->end());
  }
  Check(s.code() == out.status().code());
  if (out.ok()) Check(pieces == *out && streaming.produced() == out->size());
  streaming.Trim();

  // Round trip of the input as plain records bytes, exactly at the limit.
  absl::StatusOr<std::vector<uint8_t>> packed = CompressRecords(codec, input);
  Check(packed.ok());
  absl::StatusOr<std::vector<uint8_t>> unpacked = DecompressRecords(codec, *packed, input.size());
  Check(unpacked.ok());
  Check(unpacked->size() == input.size() &&
        (input.empty() || std::memcmp(unpacked->data(), input.data(), input.size()) == 0));
  if (!input.empty()) {
    Check(DecompressRecords(codec, *packed, input.size() - 1).status().code() ==
          absl::StatusCode::kResourceExhausted);
  }

  // The input as the records section of a batch claiming 0-3 records.
  RecordBatchBuilder builder(0, 1000);
  std::vector<uint8_t> batch = builder.Build();  // empty, uncompressed: header only
  batch.insert(batch.end(), input.begin(), input.end());
  const int32_t length = static_cast<int32_t>(batch.size() - kBatchLengthFieldEnd);
  for (int i = 0; i < 4; ++i) batch[8 + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  batch[22] = static_cast<uint8_t>(codec);
  batch[kBatchHeaderSize - 1] = static_cast<uint8_t>(data[0] >> 4 & 3);  // recordsCount
  std::vector<uint8_t> scratch;
  auto records = DecompressAndDecodeRecords(batch, limit, &scratch);
  if (records.ok()) {
    for (const RecordView& r : *records) {
      sink = sink + Touch(r.key) + Touch(r.value);
      for (const RecordHeaderView& h : r.headers) sink = sink + Touch(h.key) + Touch(h.value);
    }
  }
  auto plain = DecompressBatch(batch, limit);
  if (plain.ok()) {
    Check(ValidateBatch(*plain, UINT32_MAX >> 1).ok());
    Check(RecordBatchView(*plain).compression() == Compression::kNone);
  }
}

}  // namespace
}  // namespace sluice::storage

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::storage::Run(data, size);
  return 0;
}
