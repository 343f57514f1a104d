// libFuzzer target for log/record_batch: header parsing, validation and record decoding on
// arbitrary bytes must never crash or read outside the input (run under ASan + UBSan). The
// produce validator runs on the input as sent and with its CRC repaired; whatever it accepts
// must decode into recordsCount records at offsets baseOffset .. baseOffset + lastOffsetDelta,
// and it must judge the same records alike uncompressed and compressed (the harness compresses
// the input's records section with the codec its size picks, so the fuzzer reaches the records
// parser behind every decompressor without having to write compressed bytes).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "log/compression.h"
#include "log/crc32c.h"
#include "log/record_batch.h"

namespace sluice::storage {
namespace {

// Touches every byte a view points at, so ASan sees any view that escapes the input.
uint64_t Touch(std::optional<std::string_view> s) {
  uint64_t sum = 0;
  if (s) {
    for (char c : *s) sum += static_cast<uint8_t>(c);
  }
  return sum;
}

uint64_t TouchAll(const std::vector<RecordView>& records) {
  uint64_t sum = 0;
  for (const RecordView& r : records) {
    sum += Touch(r.key) + Touch(r.value) + static_cast<uint64_t>(r.offset ^ r.timestamp);
    for (const RecordHeaderView& h : r.headers) sum += Touch(h.key) + Touch(h.value);
  }
  return sum;
}

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void RepairCrc(std::vector<uint8_t>* batch) {
  const uint32_t crc = Crc32c(0, batch->data() + kBatchCrcStart, batch->size() - kBatchCrcStart);
  for (int i = 0; i < 4; ++i) (*batch)[17 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
}

// What every reader relies on for a batch the produce validator accepted.
void CheckReadable(std::span<const uint8_t> batch) {
  std::vector<uint8_t> scratch;
  const absl::StatusOr<std::vector<RecordView>> records =
      DecompressAndDecodeRecords(batch, kDefaultMaxDecompressedRecordsBytes, &scratch);
  Check(records.ok());
  const RecordBatchView v(batch);
  Check(v.records_count() == v.last_offset_delta() + 1);
  Check(records->size() == static_cast<size_t>(v.records_count()));
  for (size_t i = 0; i < records->size(); ++i) {
    Check((*records)[i].offset == v.base_offset() + static_cast<int64_t>(i));
  }
}

// The validator on `batch`, with and without the compacted-topic rule; checks what it accepts.
absl::Status ValidateProduced(ProducedBatchValidator& validator, std::span<const uint8_t> batch) {
  ProduceRules rules;
  rules.max_decompressed_bytes = size_t{1} << 20;
  const absl::Status loose = validator.Validate(batch, rules);
  rules.require_keys = true;
  const absl::Status strict = validator.Validate(batch, rules);
  Check(loose.ok() || !strict.ok());
  for (const absl::Status& s : {loose, strict}) {
    Check(s.ok() || absl::IsInvalidArgument(s) || absl::IsDataLoss(s));
  }
  if (loose.ok()) CheckReadable(batch);
  return loose;
}

void RunProduceValidation(std::span<const uint8_t> input) {
  static ProducedBatchValidator validator;  // reused, as on a shard
  (void)ValidateProduced(validator, input);
  if (input.size() < kBatchHeaderSize || input[16] != kBatchMagicV2) return;
  // The same batch framed right, uncompressed, with a matching CRC...
  std::vector<uint8_t> plain(input.begin(), input.end());
  const int32_t length = static_cast<int32_t>(plain.size() - kBatchLengthFieldEnd);
  for (int i = 0; i < 4; ++i) plain[8 + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  plain[22] &= static_cast<uint8_t>(~0x07);
  RepairCrc(&plain);
  const absl::Status plain_status = ValidateProduced(validator, plain);
  // ...and compressed: judged alike.
  const auto codec = static_cast<Compression>(1 + input.size() % 4);
  const absl::StatusOr<std::vector<uint8_t>> packed = CompressBatch(plain, codec);
  if (!packed.ok()) return;  // a header CompressBatch refuses (negative counts)
  const absl::Status packed_status = ValidateProduced(validator, *packed);
  Check(plain_status.ok() == packed_status.ok());
}

void Run(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  volatile uint64_t sink = 0;

  RunProduceValidation(input);

  const absl::Status valid = ValidateBatch(input, 1u << 24);
  const absl::StatusOr<BatchHeader> header = ParseBatchHeader(input, 1u << 24);
  Check(!valid.ok() || header.ok());
  if (!header.ok()) {
    Check(valid.code() == header.status().code() ||
          header.status().code() == absl::StatusCode::kOutOfRange);
  }

  // Record decoding does not look at the CRC, so decode whatever parses: random bytes rarely
  // carry a matching CRC, and the decoder must be safe without one.
  if (header.ok()) {
    const bool compressed = (header->attributes & 0x07) != 0;
    const absl::StatusOr<std::vector<RecordView>> records = DecodeRecords(input);
    if (compressed) Check(records.status().code() == absl::StatusCode::kInvalidArgument);
    if (records.ok()) {
      Check(records->size() == static_cast<size_t>(header->records_count));
      sink = sink + TouchAll(*records);
    }

    // Same records section through the two-argument overload, bounded by the input.
    const auto section = input.subspan(kBatchHeaderSize);
    const absl::StatusOr<std::vector<RecordView>> again = DecodeRecords(*header, section);
    if (again.ok()) sink = sink + TouchAll(*again);

    // With the CRC repaired, a batch whose size matches its batchLength must validate, and the
    // in-place rewrites must keep it valid.
    if (size == header->size_bytes()) {
      std::vector<uint8_t> copy(input.begin(), input.end());
      const uint32_t crc = Crc32c(0, copy.data() + kBatchCrcStart, copy.size() - kBatchCrcStart);
      for (int i = 0; i < 4; ++i) copy[17 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
      Check(ValidateBatch(copy, 1u << 24).ok());
      SetBaseOffset(copy, 12345);
      SetPartitionLeaderEpoch(copy, 7);
      SetLogAppendTime(copy, 99);
      Check(ValidateBatch(copy, 1u << 24).ok());
      const RecordBatchView v(copy);
      Check(v.base_offset() == 12345 && v.max_timestamp() == 99 &&
            v.timestamp_type() == TimestampType::kLogAppendTime);
    }
  }
}

}  // namespace
}  // namespace sluice::storage

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::storage::Run(data, size);
  return 0;
}
