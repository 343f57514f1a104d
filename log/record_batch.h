// Kafka RecordBatch v2 (magic 2): the unit Sluice stores, exactly as clients produce it.
// Field layout and the rules checked here are specified in log/FORMAT.md.
//
//   offset  size  field
//        0     8  baseOffset              (rewritten by the broker on append; outside the CRC)
//        8     4  batchLength             (bytes after this field)
//       12     4  partitionLeaderEpoch    (outside the CRC)
//       16     1  magic (= 2)
//       17     4  crc (CRC32C of bytes [21, end))
//       21     2  attributes
//       23     4  lastOffsetDelta
//       27     8  baseTimestamp
//       35     8  maxTimestamp
//       43     8  producerId
//       51     2  producerEpoch
//       53     4  baseSequence
//       57     4  recordsCount
//       61     …  records (possibly compressed)
// All integers big-endian.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::storage {

inline constexpr size_t kBatchHeaderSize = 61;
inline constexpr size_t kBatchLengthFieldEnd = 12;  // baseOffset + batchLength
inline constexpr size_t kBatchCrcStart = 21;        // CRC covers [21, end)
inline constexpr int8_t kBatchMagicV2 = 2;

enum class Compression : uint8_t { kNone = 0, kGzip = 1, kSnappy = 2, kLz4 = 3, kZstd = 4 };
enum class TimestampType : uint8_t { kCreateTime = 0, kLogAppendTime = 1 };

// A read-only view of one batch's header fields. Does not own the bytes. The accessors do not
// check anything; call ValidateBatch() (or parse with ParseBatchHeader()) first.
class RecordBatchView {
 public:
  explicit RecordBatchView(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  int64_t base_offset() const;
  int32_t batch_length() const;
  int32_t partition_leader_epoch() const;
  int8_t magic() const;
  uint32_t crc() const;
  int16_t attributes() const;
  Compression compression() const;       // attributes bits 0-2
  TimestampType timestamp_type() const;  // attribute bit 3
  bool is_transactional() const;         // attribute bit 4
  bool is_control() const;               // attribute bit 5
  int32_t last_offset_delta() const;
  int64_t base_timestamp() const;
  int64_t max_timestamp() const;
  int64_t producer_id() const;
  int16_t producer_epoch() const;
  int32_t base_sequence() const;
  int32_t records_count() const;

  int64_t last_offset() const { return base_offset() + last_offset_delta(); }
  // Total bytes of the batch on disk: 12 + batchLength.
  size_t size_bytes() const { return kBatchLengthFieldEnd + static_cast<uint32_t>(batch_length()); }
  std::span<const uint8_t> bytes() const { return bytes_; }
  std::span<const uint8_t> records_bytes() const { return bytes_.subspan(kBatchHeaderSize); }

 private:
  std::span<const uint8_t> bytes_;
};

// What the first 61 bytes of a batch say, checked for internal consistency only (magic, length
// bounds, counts). Used by recovery and readers that scan a file header by header.
struct BatchHeader {
  int64_t base_offset;
  int32_t batch_length;
  int8_t magic;
  uint32_t crc;
  int16_t attributes;
  int32_t last_offset_delta;
  int64_t base_timestamp;
  int64_t max_timestamp;
  int64_t producer_id;
  int16_t producer_epoch;
  int32_t base_sequence;
  int32_t records_count;

  size_t size_bytes() const { return kBatchLengthFieldEnd + static_cast<uint32_t>(batch_length); }
  int64_t last_offset() const { return base_offset + last_offset_delta; }
};

// Parses the header from `prefix` (at least kBatchHeaderSize bytes). Returns DataLossError for
// a wrong magic, a batchLength below the header size or above `max_batch_bytes`, a negative
// lastOffsetDelta or recordsCount, or (uncompressed only) recordsCount != lastOffsetDelta + 1
// is NOT required (compaction can leave gaps). OutOfRangeError if `prefix` is too short.
absl::StatusOr<BatchHeader> ParseBatchHeader(std::span<const uint8_t> prefix,
                                             uint32_t max_batch_bytes);

// Full validation of one complete batch, as done on append and on recovery: header as above,
// `bytes.size()` equals 12 + batchLength, and the CRC32C matches. DataLossError naming the
// failed check otherwise.
absl::Status ValidateBatch(std::span<const uint8_t> bytes, uint32_t max_batch_bytes);
// ValidateBatch() while copying `bytes` to `dst` (bytes.size() writable bytes), reading the
// batch once. On error `dst` holds garbage.
absl::Status CopyValidBatch(std::span<const uint8_t> bytes, uint8_t* dst, uint32_t max_batch_bytes);

// Rewrites baseOffset in place. The CRC does not cover it, so it stays valid.
void SetBaseOffset(std::span<uint8_t> batch, int64_t base_offset);
// Rewrites partitionLeaderEpoch in place (outside the CRC).
void SetPartitionLeaderEpoch(std::span<uint8_t> batch, int32_t epoch);
// Marks the batch LogAppendTime with `timestamp` as maxTimestamp and recomputes the CRC.
void SetLogAppendTime(std::span<uint8_t> batch, int64_t timestamp);

// One record of an uncompressed batch (or of a decompressed records section).
struct RecordHeaderView {
  std::string_view key;
  std::optional<std::string_view> value;  // nullopt = null header value
};
struct RecordView {
  int64_t offset;     // base offset + offsetDelta
  int64_t timestamp;  // base timestamp + timestampDelta (or maxTimestamp for LogAppendTime)
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
  std::vector<RecordHeaderView> headers;
};

// Decodes the records of an uncompressed batch. The views point into `batch`.
// InvalidArgumentError for a compressed batch (see DecompressAndDecodeRecords() below);
// DataLossError for malformed records (varints out of range, lengths past the end, record count
// mismatch).
absl::StatusOr<std::vector<RecordView>> DecodeRecords(std::span<const uint8_t> batch);
// Same, over an already decompressed records section, with the batch's header fields.
absl::StatusOr<std::vector<RecordView>> DecodeRecords(const BatchHeader& header,
                                                      std::span<const uint8_t> records);

// ---- Compressed batches (codecs: log/compression.h; spec: log/FORMAT.md "Compression") ----

// The bound on one batch's decompressed records section that readers decode with (the log
// cleaner, AMQP stream consumers, Fetch down-conversion). Kafka has none; 64 MiB is 64 times
// the default max.message.bytes. The produce validator's bound may not exceed it, so every
// stored batch can be read.
inline constexpr size_t kDefaultMaxDecompressedRecordsBytes = size_t{64} << 20;

// Decodes the records of any batch, compressed or not. For a compressed batch the records
// section is decompressed into `*scratch` (replacing its contents; at most `max_records_bytes`
// bytes, else ResourceExhaustedError) and the views point into `*scratch`; for an uncompressed
// one `*scratch` is left alone and the views point into `batch`. Either way the views live as
// long as `batch` and `*scratch` stay unchanged. Errors: those of DecodeRecords(), DataLoss for
// a corrupt compressed section, InvalidArgument for codecs 5-7. Does not check the CRC.
absl::StatusOr<std::vector<RecordView>> DecompressAndDecodeRecords(std::span<const uint8_t> batch,
                                                                   size_t max_records_bytes,
                                                                   std::vector<uint8_t>* scratch);

// The same batch with its records section decompressed: every header field kept except the
// codec bits (0), batchLength and the CRC (recomputed). An uncompressed batch is copied as is.
// Errors as DecompressAndDecodeRecords(); also ResourceExhausted when the result would not fit
// a batch (batchLength above INT32_MAX).
absl::StatusOr<std::vector<uint8_t>> DecompressBatch(std::span<const uint8_t> batch,
                                                     size_t max_records_bytes);
// The inverse: an uncompressed batch with its records section compressed by `codec` (codec bits
// set, batchLength and CRC recomputed, every other field kept). InvalidArgumentError if `batch`
// is already compressed; kNone returns a copy.
absl::StatusOr<std::vector<uint8_t>> CompressBatch(std::span<const uint8_t> batch,
                                                   Compression codec);

// ---- Produce validation (spec: log/FORMAT.md "Produce validation") ----

// What a batch from a producer must satisfy beyond framing and CRC, besides the rules every
// produced batch follows.
struct ProduceRules {
  // Largest decompressed records section of a compressed batch (--max-decompressed-batch-bytes).
  // At most kDefaultMaxDecompressedRecordsBytes.
  size_t max_decompressed_bytes = kDefaultMaxDecompressedRecordsBytes;
  // Compacted topics: every record needs a key (Kafka refuses keyless records there too).
  bool require_keys = false;
};

class RecordsDecompressor;  // log/compression.h

// Checks one batch as a client produced it, before it is stored, the way Kafka's LogValidator
// checks client appends: a batch that passes can be decoded by every reader, and its records'
// offsets are exactly baseOffset .. baseOffset + lastOffsetDelta. One pass over the record
// varints (key, value and header bytes are skipped, not read); a compressed records section is
// decompressed piece by piece through a reused 64 KiB window, never held whole, and stops at
// `max_decompressed_bytes`. Nothing is allocated per batch once the validator is warm, so keep
// one per thread.
//
// Returns InvalidArgument (Kafka's INVALID_RECORD) naming the first rule broken, or DataLoss
// (CORRUPT_MESSAGE) for a batch whose framing is broken or whose CRC does not match: the CRC is
// computed only when a rule is broken, to tell damage in transit from a lying producer. The CRC
// of a batch that passes is not checked here (PartitionLog::Append checks it while copying).
class ProducedBatchValidator {
 public:
  ProducedBatchValidator();
  ~ProducedBatchValidator();
  ProducedBatchValidator(const ProducedBatchValidator&) = delete;
  ProducedBatchValidator& operator=(const ProducedBatchValidator&) = delete;

  // `batch` is exactly one batch.
  absl::Status Validate(std::span<const uint8_t> batch, const ProduceRules& rules);

 private:
  absl::Status CheckRules(std::span<const uint8_t> batch, const ProduceRules& rules);

  std::unique_ptr<RecordsDecompressor> decompressor_;
};

// Builds a RecordBatch v2 (for the AMQP layer, tools, tests and benchmarks); uncompressed unless
// built with BuildCompressed().
class RecordBatchBuilder {
 public:
  struct Header {
    std::string key;
    std::optional<std::string> value;
  };

  RecordBatchBuilder(int64_t base_offset, int64_t base_timestamp);
  RecordBatchBuilder& set_producer(int64_t producer_id, int16_t epoch, int32_t base_sequence);
  RecordBatchBuilder& set_timestamp_type(TimestampType type);

  // Adds one record with offsetDelta = number of records added so far.
  void Add(std::optional<std::string_view> key, std::optional<std::string_view> value,
           std::span<const Header> headers = {}, int64_t timestamp = -1 /* base */);

  size_t records() const;
  size_t estimated_size() const;
  // The finished batch with CRC. The builder may not be used afterwards.
  std::vector<uint8_t> Build();
  // Build(), then the records section compressed with `codec` (CompressBatch()), as a producer
  // with compression.type=`codec` would send it.
  absl::StatusOr<std::vector<uint8_t>> BuildCompressed(Compression codec);

 private:
  int64_t base_offset_;
  int64_t base_timestamp_;
  int64_t max_timestamp_;
  int64_t producer_id_ = -1;
  int16_t producer_epoch_ = -1;
  int32_t base_sequence_ = -1;
  TimestampType timestamp_type_ = TimestampType::kCreateTime;
  int32_t count_ = 0;
  std::vector<uint8_t> records_;
};

}  // namespace sluice::storage
