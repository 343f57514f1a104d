#include "log/record_batch.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <limits>
#include <type_traits>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log/compression.h"
#include "log/crc32c.h"
#include "log/varint.h"

namespace sluice::storage {
namespace {

// Header field offsets (see record_batch.h).
constexpr size_t kBaseOffsetPos = 0;
constexpr size_t kBatchLengthPos = 8;
constexpr size_t kLeaderEpochPos = 12;
constexpr size_t kMagicPos = 16;
constexpr size_t kCrcPos = 17;
constexpr size_t kAttributesPos = 21;
constexpr size_t kLastOffsetDeltaPos = 23;
constexpr size_t kBaseTimestampPos = 27;
constexpr size_t kMaxTimestampPos = 35;
constexpr size_t kProducerIdPos = 43;
constexpr size_t kProducerEpochPos = 51;
constexpr size_t kBaseSequencePos = 53;
constexpr size_t kRecordsCountPos = 57;
static_assert(kRecordsCountPos + 4 == kBatchHeaderSize);

// Smallest legal batchLength: everything after the batchLength field up to the records.
constexpr int32_t kMinBatchLength = static_cast<int32_t>(kBatchHeaderSize - kBatchLengthFieldEnd);

constexpr int16_t kCompressionMask = 0x07;
constexpr int16_t kTimestampTypeBit = 0x08;
constexpr int16_t kTransactionalBit = 0x10;
constexpr int16_t kControlBit = 0x20;

// Smallest encoded record: length, attributes, timestampDelta, offsetDelta, keyLength,
// valueLength and headerCount, one byte each. Bounds vector reservations on hostile counts.
constexpr size_t kMinRecordBytes = 7;
// Smallest encoded header: keyLength and valueLength, one byte each.
constexpr size_t kMinHeaderBytes = 2;

template <typename U>
U ByteSwapToHost(U v) {
  if constexpr (std::endian::native == std::endian::big || sizeof(U) == 1) {
    return v;
  } else if constexpr (sizeof(U) == 2) {
    return __builtin_bswap16(v);
  } else if constexpr (sizeof(U) == 4) {
    return __builtin_bswap32(v);
  } else {
    static_assert(sizeof(U) == 8);
    return __builtin_bswap64(v);
  }
}

// Big-endian load of a T at data[pos]. memcpy because batch bytes have no alignment guarantee.
template <typename T>
T LoadBe(const uint8_t* data, size_t pos) {
  using U = std::make_unsigned_t<T>;
  U u;
  std::memcpy(&u, data + pos, sizeof(u));
  return static_cast<T>(ByteSwapToHost(u));
}

template <typename T>
void StoreBe(uint8_t* data, size_t pos, T value) {
  using U = std::make_unsigned_t<T>;
  const U u = ByteSwapToHost(static_cast<U>(value));
  std::memcpy(data + pos, &u, sizeof(u));
}

// Hostile headers can hold any base, so offsets and timestamps wrap instead of overflowing.
int64_t WrappingAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t WrappingSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

uint32_t ComputeBatchCrc(std::span<const uint8_t> batch) {
  return Crc32c(0, batch.data() + kBatchCrcStart, batch.size() - kBatchCrcStart);
}

// Reads a varint length-prefixed byte string at records[*pos]. -1 means null; other negative
// lengths and lengths running past `records` are corruption.
absl::Status ReadNullableBytes(std::span<const uint8_t> records, size_t* pos, const char* what,
                               std::optional<std::string_view>* out) {
  int32_t len;
  if (!ReadVarint32(records, pos, &len)) {
    return absl::DataLossError(absl::StrFormat("%s length: malformed varint", what));
  }
  if (len == -1) {
    *out = std::nullopt;
    return absl::OkStatus();
  }
  if (len < 0) return absl::DataLossError(absl::StrFormat("%s length %d is negative", what, len));
  if (static_cast<size_t>(len) > records.size() - *pos) {
    return absl::DataLossError(absl::StrFormat("%s length %d past the end of the record (%d left)",
                                               what, len, records.size() - *pos));
  }
  *out = std::string_view(reinterpret_cast<const char*>(records.data() + *pos),
                          static_cast<size_t>(len));
  *pos += static_cast<size_t>(len);
  return absl::OkStatus();
}

// Decodes the body of one record (everything after its length varint).
absl::Status DecodeRecordBody(const BatchHeader& header, std::span<const uint8_t> body,
                              RecordView* rec) {
  size_t pos = 0;
  if (body.empty()) return absl::DataLossError("missing attributes");
  ++pos;  // record attributes: unused by Kafka so far
  int64_t timestamp_delta;
  if (!ReadVarint64(body, &pos, &timestamp_delta)) {
    return absl::DataLossError("timestampDelta: malformed varint");
  }
  int32_t offset_delta;
  if (!ReadVarint32(body, &pos, &offset_delta)) {
    return absl::DataLossError("offsetDelta: malformed varint");
  }
  rec->offset = WrappingAdd(header.base_offset, offset_delta);
  // With LogAppendTime the broker's time in maxTimestamp overrides every record's own.
  rec->timestamp = (header.attributes & kTimestampTypeBit)
                       ? header.max_timestamp
                       : WrappingAdd(header.base_timestamp, timestamp_delta);
  if (absl::Status s = ReadNullableBytes(body, &pos, "key", &rec->key); !s.ok()) return s;
  if (absl::Status s = ReadNullableBytes(body, &pos, "value", &rec->value); !s.ok()) return s;

  int32_t header_count;
  if (!ReadVarint32(body, &pos, &header_count)) {
    return absl::DataLossError("header count: malformed varint");
  }
  if (header_count < 0) {
    return absl::DataLossError(absl::StrFormat("header count %d is negative", header_count));
  }
  rec->headers.reserve(
      std::min(static_cast<size_t>(header_count), (body.size() - pos) / kMinHeaderBytes));
  for (int32_t h = 0; h < header_count; ++h) {
    std::optional<std::string_view> key;
    if (absl::Status s = ReadNullableBytes(body, &pos, "header key", &key); !s.ok()) return s;
    if (!key.has_value()) {
      return absl::DataLossError(absl::StrFormat("header %d has a null key", h));
    }
    RecordHeaderView hv{*key, std::nullopt};
    if (absl::Status s = ReadNullableBytes(body, &pos, "header value", &hv.value); !s.ok()) {
      return s;
    }
    rec->headers.push_back(hv);
  }
  if (pos != body.size()) {
    return absl::DataLossError(
        absl::StrFormat("%d bytes after the last field of the record", body.size() - pos));
  }
  return absl::OkStatus();
}

absl::Status WithRecordIndex(const absl::Status& s, int32_t index) {
  return absl::Status(s.code(), absl::StrFormat("record %d: %s", index, s.message()));
}

}  // namespace

// ---- RecordBatchView ----

int64_t RecordBatchView::base_offset() const {
  return LoadBe<int64_t>(bytes_.data(), kBaseOffsetPos);
}
int32_t RecordBatchView::batch_length() const {
  return LoadBe<int32_t>(bytes_.data(), kBatchLengthPos);
}
int32_t RecordBatchView::partition_leader_epoch() const {
  return LoadBe<int32_t>(bytes_.data(), kLeaderEpochPos);
}
int8_t RecordBatchView::magic() const { return static_cast<int8_t>(bytes_[kMagicPos]); }
uint32_t RecordBatchView::crc() const { return LoadBe<uint32_t>(bytes_.data(), kCrcPos); }
int16_t RecordBatchView::attributes() const {
  return LoadBe<int16_t>(bytes_.data(), kAttributesPos);
}
Compression RecordBatchView::compression() const {
  return static_cast<Compression>(attributes() & kCompressionMask);
}
TimestampType RecordBatchView::timestamp_type() const {
  return (attributes() & kTimestampTypeBit) ? TimestampType::kLogAppendTime
                                            : TimestampType::kCreateTime;
}
bool RecordBatchView::is_transactional() const { return attributes() & kTransactionalBit; }
bool RecordBatchView::is_control() const { return attributes() & kControlBit; }
int32_t RecordBatchView::last_offset_delta() const {
  return LoadBe<int32_t>(bytes_.data(), kLastOffsetDeltaPos);
}
int64_t RecordBatchView::base_timestamp() const {
  return LoadBe<int64_t>(bytes_.data(), kBaseTimestampPos);
}
int64_t RecordBatchView::max_timestamp() const {
  return LoadBe<int64_t>(bytes_.data(), kMaxTimestampPos);
}
int64_t RecordBatchView::producer_id() const {
  return LoadBe<int64_t>(bytes_.data(), kProducerIdPos);
}
int16_t RecordBatchView::producer_epoch() const {
  return LoadBe<int16_t>(bytes_.data(), kProducerEpochPos);
}
int32_t RecordBatchView::base_sequence() const {
  return LoadBe<int32_t>(bytes_.data(), kBaseSequencePos);
}
int32_t RecordBatchView::records_count() const {
  return LoadBe<int32_t>(bytes_.data(), kRecordsCountPos);
}

// ---- Header parsing and validation ----

absl::StatusOr<BatchHeader> ParseBatchHeader(std::span<const uint8_t> prefix,
                                             uint32_t max_batch_bytes) {
  if (prefix.size() < kBatchHeaderSize) {
    return absl::OutOfRangeError(
        absl::StrFormat("batch header needs %d bytes, have %d", kBatchHeaderSize, prefix.size()));
  }
  const RecordBatchView v(prefix);
  BatchHeader h;
  h.base_offset = v.base_offset();
  h.batch_length = v.batch_length();
  h.magic = v.magic();
  h.crc = v.crc();
  h.attributes = v.attributes();
  h.last_offset_delta = v.last_offset_delta();
  h.base_timestamp = v.base_timestamp();
  h.max_timestamp = v.max_timestamp();
  h.producer_id = v.producer_id();
  h.producer_epoch = v.producer_epoch();
  h.base_sequence = v.base_sequence();
  h.records_count = v.records_count();

  // Magic first: with another magic the remaining fields mean something else.
  if (h.magic != kBatchMagicV2) {
    return absl::DataLossError(absl::StrFormat("bad magic %d", h.magic));
  }
  if (h.batch_length < kMinBatchLength) {
    return absl::DataLossError(
        absl::StrFormat("batchLength %d below header size %d", h.batch_length, kMinBatchLength));
  }
  if (static_cast<uint32_t>(h.batch_length) > max_batch_bytes) {
    return absl::DataLossError(absl::StrFormat("batchLength %d above max_batch_bytes %d",
                                               h.batch_length, max_batch_bytes));
  }
  if (h.last_offset_delta < 0) {
    return absl::DataLossError(absl::StrFormat("negative lastOffsetDelta %d", h.last_offset_delta));
  }
  if (h.records_count < 0) {
    return absl::DataLossError(absl::StrFormat("negative recordsCount %d", h.records_count));
  }
  return h;
}

namespace {

// Every check of ValidateBatch() but the CRC; returns the stored CRC.
absl::StatusOr<uint32_t> CheckBatchFraming(std::span<const uint8_t> bytes,
                                           uint32_t max_batch_bytes) {
  // Every failure here is DataLoss, a short buffer included: the caller claims `bytes` is one
  // complete batch, so missing bytes are corruption, not "read more".
  if (bytes.size() < kBatchHeaderSize) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, header needs %d",
                                               bytes.size(), kBatchHeaderSize));
  }
  absl::StatusOr<BatchHeader> h = ParseBatchHeader(bytes, max_batch_bytes);
  if (!h.ok()) return h.status();
  if (bytes.size() < h->size_bytes()) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, 12 + batchLength = %d",
                                               bytes.size(), h->size_bytes()));
  }
  if (bytes.size() > h->size_bytes()) {
    return absl::DataLossError(absl::StrFormat("batch size %d exceeds 12 + batchLength = %d",
                                               bytes.size(), h->size_bytes()));
  }
  return h->crc;
}

absl::Status CrcMismatch(uint32_t stored, uint32_t computed) {
  return absl::DataLossError(
      absl::StrFormat("crc mismatch: stored 0x%08x computed 0x%08x", stored, computed));
}

}  // namespace

absl::Status ValidateBatch(std::span<const uint8_t> bytes, uint32_t max_batch_bytes) {
  absl::StatusOr<uint32_t> stored = CheckBatchFraming(bytes, max_batch_bytes);
  if (!stored.ok()) return stored.status();
  const uint32_t computed = ComputeBatchCrc(bytes);
  if (computed != *stored) return CrcMismatch(*stored, computed);
  return absl::OkStatus();
}

absl::Status CopyValidBatch(std::span<const uint8_t> bytes, uint8_t* dst,
                            uint32_t max_batch_bytes) {
  absl::StatusOr<uint32_t> stored = CheckBatchFraming(bytes, max_batch_bytes);
  if (!stored.ok()) return stored.status();
  std::memcpy(dst, bytes.data(), kBatchCrcStart);
  const uint32_t computed = Crc32cCopy(0, dst + kBatchCrcStart, bytes.data() + kBatchCrcStart,
                                       bytes.size() - kBatchCrcStart);
  if (computed != *stored) return CrcMismatch(*stored, computed);
  return absl::OkStatus();
}

// ---- In-place rewrites ----

void SetBaseOffset(std::span<uint8_t> batch, int64_t base_offset) {
  assert(batch.size() >= kBatchHeaderSize);
  if (batch.size() < kBatchHeaderSize) return;
  StoreBe<int64_t>(batch.data(), kBaseOffsetPos, base_offset);
}

void SetPartitionLeaderEpoch(std::span<uint8_t> batch, int32_t epoch) {
  assert(batch.size() >= kBatchHeaderSize);
  if (batch.size() < kBatchHeaderSize) return;
  StoreBe<int32_t>(batch.data(), kLeaderEpochPos, epoch);
}

void SetLogAppendTime(std::span<uint8_t> batch, int64_t timestamp) {
  assert(batch.size() >= kBatchHeaderSize);
  if (batch.size() < kBatchHeaderSize) return;
  const int16_t attributes = LoadBe<int16_t>(batch.data(), kAttributesPos);
  StoreBe<int16_t>(batch.data(), kAttributesPos, attributes | kTimestampTypeBit);
  StoreBe<int64_t>(batch.data(), kMaxTimestampPos, timestamp);
  // The CRC covers the batch itself only, even if the span runs on into following bytes.
  const size_t size = std::min(RecordBatchView(batch).size_bytes(), batch.size());
  StoreBe<uint32_t>(batch.data(), kCrcPos, ComputeBatchCrc(batch.first(size)));
}

// ---- Record decoding ----

absl::StatusOr<std::vector<RecordView>> DecodeRecords(std::span<const uint8_t> batch) {
  if (batch.size() < kBatchHeaderSize) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, header needs %d",
                                               batch.size(), kBatchHeaderSize));
  }
  absl::StatusOr<BatchHeader> h = ParseBatchHeader(batch, std::numeric_limits<uint32_t>::max());
  if (!h.ok()) return h.status();
  const auto codec = static_cast<Compression>(h->attributes & kCompressionMask);
  if (codec != Compression::kNone) {
    return absl::InvalidArgumentError(
        absl::StrFormat("batch is compressed (codec %d); decompress the records section first",
                        static_cast<int>(codec)));
  }
  if (batch.size() < h->size_bytes()) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, 12 + batchLength = %d",
                                               batch.size(), h->size_bytes()));
  }
  // Bytes after this batch (e.g. the next batch of a segment) are not ours to decode.
  return DecodeRecords(*h, batch.subspan(kBatchHeaderSize, h->size_bytes() - kBatchHeaderSize));
}

absl::StatusOr<std::vector<RecordView>> DecodeRecords(const BatchHeader& header,
                                                      std::span<const uint8_t> records) {
  if (header.records_count < 0) {
    return absl::DataLossError(absl::StrFormat("negative recordsCount %d", header.records_count));
  }
  std::vector<RecordView> out;
  // A hostile recordsCount must not drive the allocation; the bytes present bound it.
  out.reserve(
      std::min(static_cast<size_t>(header.records_count), records.size() / kMinRecordBytes));
  size_t pos = 0;
  for (int32_t i = 0; i < header.records_count; ++i) {
    if (pos == records.size()) {
      return absl::DataLossError(
          absl::StrFormat("record count mismatch: recordsCount %d, records section holds %d",
                          header.records_count, i));
    }
    int32_t length;
    if (!ReadVarint32(records, &pos, &length)) {
      return absl::DataLossError(absl::StrFormat("record %d: length: malformed varint", i));
    }
    if (length < 0 || static_cast<size_t>(length) > records.size() - pos) {
      return absl::DataLossError(
          absl::StrFormat("record %d: length %d past the end of the records section (%d left)", i,
                          length, records.size() - pos));
    }
    RecordView rec;
    if (absl::Status s =
            DecodeRecordBody(header, records.subspan(pos, static_cast<size_t>(length)), &rec);
        !s.ok()) {
      return WithRecordIndex(s, i);
    }
    pos += static_cast<size_t>(length);
    out.push_back(std::move(rec));
  }
  if (pos != records.size()) {
    return absl::DataLossError(
        absl::StrFormat("record count mismatch: %d bytes left after recordsCount %d records",
                        records.size() - pos, header.records_count));
  }
  return out;
}

// ---- Compressed batches ----

namespace {

// The header of a batch that must be whole (its records section is handed to a codec).
absl::StatusOr<BatchHeader> WholeBatchHeader(std::span<const uint8_t> batch) {
  if (batch.size() < kBatchHeaderSize) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, header needs %d",
                                               batch.size(), kBatchHeaderSize));
  }
  absl::StatusOr<BatchHeader> h = ParseBatchHeader(batch, std::numeric_limits<uint32_t>::max());
  if (!h.ok()) return h.status();
  if (batch.size() < h->size_bytes()) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, 12 + batchLength = %d",
                                               batch.size(), h->size_bytes()));
  }
  return h;
}

std::span<const uint8_t> RecordsSection(std::span<const uint8_t> batch, const BatchHeader& h) {
  return batch.subspan(kBatchHeaderSize, h.size_bytes() - kBatchHeaderSize);
}

// `batch`'s header followed by `records`, with the codec bits set to `codec`.
absl::StatusOr<std::vector<uint8_t>> WithRecords(std::span<const uint8_t> batch,
                                                 std::span<const uint8_t> records,
                                                 Compression codec) {
  constexpr size_t kMaxRecords =
      static_cast<size_t>(std::numeric_limits<int32_t>::max()) - kMinBatchLength;
  if (records.size() > kMaxRecords) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("records section of %d bytes does not fit a batch", records.size()));
  }
  std::vector<uint8_t> out;
  out.reserve(kBatchHeaderSize + records.size());
  out.insert(out.end(), batch.begin(), batch.begin() + kBatchHeaderSize);
  out.insert(out.end(), records.begin(), records.end());
  uint8_t* p = out.data();
  const int16_t attributes = LoadBe<int16_t>(p, kAttributesPos);
  StoreBe<int16_t>(p, kAttributesPos,
                   static_cast<int16_t>((attributes & ~kCompressionMask) |
                                        (static_cast<int16_t>(codec) & kCompressionMask)));
  StoreBe<int32_t>(p, kBatchLengthPos, static_cast<int32_t>(out.size() - kBatchLengthFieldEnd));
  StoreBe<uint32_t>(p, kCrcPos, ComputeBatchCrc(out));
  return out;
}

}  // namespace

absl::StatusOr<std::vector<RecordView>> DecompressAndDecodeRecords(std::span<const uint8_t> batch,
                                                                   size_t max_records_bytes,
                                                                   std::vector<uint8_t>* scratch) {
  absl::StatusOr<BatchHeader> h = WholeBatchHeader(batch);
  if (!h.ok()) return h.status();
  const auto codec = static_cast<Compression>(h->attributes & kCompressionMask);
  if (codec == Compression::kNone) return DecodeRecords(*h, RecordsSection(batch, *h));
  absl::StatusOr<std::vector<uint8_t>> records =
      DecompressRecords(codec, RecordsSection(batch, *h), max_records_bytes);
  if (!records.ok()) return records.status();
  *scratch = std::move(*records);
  return DecodeRecords(*h, *scratch);
}

absl::StatusOr<std::vector<uint8_t>> DecompressBatch(std::span<const uint8_t> batch,
                                                     size_t max_records_bytes) {
  absl::StatusOr<BatchHeader> h = WholeBatchHeader(batch);
  if (!h.ok()) return h.status();
  const auto codec = static_cast<Compression>(h->attributes & kCompressionMask);
  if (codec == Compression::kNone) {
    return std::vector<uint8_t>(batch.begin(), batch.begin() + h->size_bytes());
  }
  absl::StatusOr<std::vector<uint8_t>> records =
      DecompressRecords(codec, RecordsSection(batch, *h), max_records_bytes);
  if (!records.ok()) return records.status();
  return WithRecords(batch, *records, Compression::kNone);
}

absl::StatusOr<std::vector<uint8_t>> CompressBatch(std::span<const uint8_t> batch,
                                                   Compression codec) {
  absl::StatusOr<BatchHeader> h = WholeBatchHeader(batch);
  if (!h.ok()) return h.status();
  const auto current = static_cast<Compression>(h->attributes & kCompressionMask);
  if (current != Compression::kNone) {
    return absl::InvalidArgumentError(
        absl::StrFormat("batch is already compressed (%s)", CompressionName(current)));
  }
  if (codec == Compression::kNone) {
    return std::vector<uint8_t>(batch.begin(), batch.begin() + h->size_bytes());
  }
  absl::StatusOr<std::vector<uint8_t>> records = CompressRecords(codec, RecordsSection(batch, *h));
  if (!records.ok()) return records.status();
  return WithRecords(batch, *records, codec);
}

// ---- Produce validation ----

namespace {

// Reads a records section front to back: a span (uncompressed), or piece by piece from a
// RecordsDecompressor. Only varints that straddle two pieces are read byte by byte.
class RecordsReader {
 public:
  explicit RecordsReader(std::span<const uint8_t> records) : piece_(records) {}
  explicit RecordsReader(RecordsDecompressor* decompressor) : decompressor_(decompressor) {}

  // Bytes of the section read so far.
  size_t position() const { return before_ + pos_; }
  // Why the section could not be read further, if it was the decompressor.
  const absl::Status& error() const { return error_; }

  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ReadByte(uint8_t* b) {
    if (pos_ == piece_.size() && !Refill()) return false;
    *b = piece_[pos_++];
    return true;
  }

  // A varint of at most `max_bytes` bytes, with ReadUnsignedVarint()'s rules. Inlined: the
  // produce path reads about eight per record.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ReadVarint(size_t max_bytes, uint64_t* out) {
    // Most varints in a record are one byte (small lengths and deltas).
    if (pos_ < piece_.size() && piece_[pos_] < 0x80) {
      *out = piece_[pos_++];
      return true;
    }
    if (piece_.size() - pos_ < max_bytes) return ReadVarintAcrossPieces(max_bytes, out);
    // ReadUnsignedVarint()'s rules, unrolled: only the last possible byte can carry bits beyond
    // the width (a 5th byte above 0x0f, a 10th above 0x01).
    const uint8_t* p = piece_.data() + pos_;
    uint64_t value = 0;
    for (size_t i = 0; i < max_bytes; ++i) {
      const uint8_t b = p[i];
      value |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) {
        if (i + 1 == max_bytes && b > (max_bytes == kMaxVarint32Bytes ? 0x0f : 0x01)) {
          return false;
        }
        pos_ += i + 1;
        *out = value;
        return true;
      }
    }
    return false;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ReadVarint32(int32_t* out) {
    uint64_t raw;
    if (!ReadVarint(kMaxVarint32Bytes, &raw)) return false;
    *out = ZigZagDecode32(static_cast<uint32_t>(raw));
    return true;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool ReadVarint64(int64_t* out) {
    uint64_t raw;
    if (!ReadVarint(kMaxVarint64Bytes, &raw)) return false;
    *out = ZigZagDecode64(raw);
    return true;
  }

  ABSL_ATTRIBUTE_ALWAYS_INLINE bool Skip(size_t n) {
    if (n <= piece_.size() - pos_) {
      pos_ += n;
      return true;
    }
    return SkipAcrossPieces(n);
  }

  // True at the clean end of the section (for a compressed one: every frame complete).
  bool AtEnd() { return pos_ == piece_.size() && !Refill() && error_.ok(); }

 private:
  // Near the end of a piece (or of the section): byte by byte.
  ABSL_ATTRIBUTE_NOINLINE bool ReadVarintAcrossPieces(size_t max_bytes, uint64_t* out) {
    if (decompressor_ == nullptr) return ReadUnsignedVarint(piece_, &pos_, max_bytes, out);
    const unsigned width = max_bytes == kMaxVarint32Bytes ? 32 : 64;
    uint64_t value = 0;
    for (size_t i = 0; i < max_bytes; ++i) {
      uint8_t b;
      if (!ReadByte(&b)) return false;
      const unsigned shift = static_cast<unsigned>(7 * i);
      const uint64_t group = b & 0x7f;
      if (shift + 7 > width && (group >> (width - shift)) != 0) return false;
      value |= group << shift;
      if ((b & 0x80) == 0) {
        *out = value;
        return true;
      }
    }
    return false;
  }

  ABSL_ATTRIBUTE_NOINLINE bool SkipAcrossPieces(size_t n) {
    while (n > piece_.size() - pos_) {
      n -= piece_.size() - pos_;
      pos_ = piece_.size();
      if (!Refill()) return false;
    }
    pos_ += n;
    return true;
  }

  ABSL_ATTRIBUTE_NOINLINE bool Refill() {
    if (decompressor_ == nullptr || !error_.ok()) return false;
    absl::StatusOr<std::span<const uint8_t>> next = decompressor_->Next();
    if (!next.ok()) {
      error_ = next.status();
      return false;
    }
    before_ += piece_.size();
    piece_ = *next;
    pos_ = 0;
    return !piece_.empty();
  }

  RecordsDecompressor* decompressor_ = nullptr;
  std::span<const uint8_t> piece_;
  size_t pos_ = 0;
  size_t before_ = 0;  // bytes in earlier pieces
  absl::Status error_;
};

absl::Status Invalid(const absl::FormatSpec<int32_t, std::string>& format, int32_t index,
                     std::string what) {
  return absl::InvalidArgumentError(absl::StrFormat(format, index, what));
}

// A decompressor's error as a broken rule: the CRC matched, so the producer's encoder is at
// fault (or it sent a bomb), not the network.
absl::Status DecompressionFailure(const absl::Status& error, size_t max_decompressed_bytes) {
  if (absl::IsResourceExhausted(error)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "records section decompresses to more than %d bytes (max-decompressed-batch-bytes)",
        max_decompressed_bytes));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("records section does not decompress: ", error.message()));
}

// Why reading record `index` stopped at `what`: the decompressor's error, or the records.
absl::Status ReadFailure(const RecordsReader& r, int32_t index, const char* what,
                         size_t max_decompressed_bytes) {
  if (!r.error().ok()) return DecompressionFailure(r.error(), max_decompressed_bytes);
  return Invalid("record %d: %s is malformed or past the end of the records section", index, what);
}

// One pass over `count` records: the checks of DecodeRecords() (so that every reader can decode
// the batch) plus offsetDelta == index and, with `require_keys`, a key on every record.
absl::Status CheckRecords(RecordsReader& r, int32_t count, const ProduceRules& rules) {
  // Smallest record body: attributes, timestampDelta, offsetDelta, keyLength, valueLength,
  // headerCount.
  constexpr int32_t kMinRecordBodyBytes = 6;
  const size_t max_decompressed = rules.max_decompressed_bytes;
  for (int32_t i = 0; i < count; ++i) {
    int32_t length;
    if (!r.ReadVarint32(&length)) return ReadFailure(r, i, "length", max_decompressed);
    if (length < kMinRecordBodyBytes) {
      return Invalid("record %d: %s", i, absl::StrFormat("length %d is too short", length));
    }
    const size_t start = r.position();
    const size_t end = start + static_cast<size_t>(length);
    // Bytes of the record left for a field of `n` bytes starting at the current position.
    auto fits = [&r, end](int32_t n) {
      return r.position() <= end && static_cast<size_t>(n) <= end - r.position();
    };
    uint8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    if (!r.ReadByte(&attributes)) return ReadFailure(r, i, "attributes", max_decompressed);
    if (!r.ReadVarint64(&timestamp_delta)) {
      return ReadFailure(r, i, "timestampDelta", max_decompressed);
    }
    if (!r.ReadVarint32(&offset_delta)) return ReadFailure(r, i, "offsetDelta", max_decompressed);
    if (offset_delta != i) {
      return Invalid(
          "record %d: %s", i,
          absl::StrFormat("offsetDelta %d (records must be numbered 0, 1, 2, ...)", offset_delta));
    }
    int32_t key_length;
    if (!r.ReadVarint32(&key_length)) return ReadFailure(r, i, "keyLength", max_decompressed);
    if (key_length < -1 || (key_length >= 0 && !fits(key_length))) {
      return Invalid("record %d: %s", i,
                     absl::StrFormat("keyLength %d does not fit the record", key_length));
    }
    if (key_length == -1 && rules.require_keys) {
      return Invalid("record %d: %s", i, "no key (a compacted topic needs a key on every record)");
    }
    if (key_length > 0 && !r.Skip(static_cast<size_t>(key_length))) {
      return ReadFailure(r, i, "key", max_decompressed);
    }
    int32_t value_length;
    if (!r.ReadVarint32(&value_length)) return ReadFailure(r, i, "valueLength", max_decompressed);
    if (value_length < -1 || (value_length >= 0 && !fits(value_length))) {
      return Invalid("record %d: %s", i,
                     absl::StrFormat("valueLength %d does not fit the record", value_length));
    }
    if (value_length > 0 && !r.Skip(static_cast<size_t>(value_length))) {
      return ReadFailure(r, i, "value", max_decompressed);
    }
    int32_t header_count;
    if (!r.ReadVarint32(&header_count)) return ReadFailure(r, i, "headerCount", max_decompressed);
    if (header_count < 0) {
      return Invalid("record %d: %s", i, absl::StrFormat("header count %d", header_count));
    }
    // Every header takes at least 2 bytes, so the record's length bounds this loop.
    for (int32_t h = 0; h < header_count; ++h) {
      int32_t n;
      if (!fits(0) || !r.ReadVarint32(&n)) {
        return ReadFailure(r, i, "header key length", max_decompressed);
      }
      if (n < 0 || !fits(n)) {
        return Invalid("record %d: %s", i,
                       absl::StrFormat("header %d key length %d (keys are never null)", h, n));
      }
      if (n > 0 && !r.Skip(static_cast<size_t>(n))) {
        return ReadFailure(r, i, "header key", max_decompressed);
      }
      if (!r.ReadVarint32(&n)) return ReadFailure(r, i, "header value length", max_decompressed);
      if (n < -1 || (n >= 0 && !fits(n))) {
        return Invalid("record %d: %s", i,
                       absl::StrFormat("header %d value length %d does not fit the record", h, n));
      }
      if (n > 0 && !r.Skip(static_cast<size_t>(n))) {
        return ReadFailure(r, i, "header value", max_decompressed);
      }
    }
    if (r.position() != end) {
      return Invalid("record %d: %s", i,
                     absl::StrFormat("its fields take %d bytes, its length says %d",
                                     r.position() - start, length));
    }
  }
  if (!r.AtEnd()) {
    if (!r.error().ok()) return ReadFailure(r, count, "end", max_decompressed);
    return absl::InvalidArgumentError(absl::StrFormat(
        "bytes left after the last of recordsCount %d records (%d read)", count, r.position()));
  }
  return absl::OkStatus();
}

}  // namespace

ProducedBatchValidator::ProducedBatchValidator() = default;
ProducedBatchValidator::~ProducedBatchValidator() = default;

absl::Status ProducedBatchValidator::Validate(std::span<const uint8_t> batch,
                                              const ProduceRules& rules) {
  absl::Status s = CheckRules(batch, rules);
  if (decompressor_ != nullptr) decompressor_->Trim();
  if (s.ok() || !absl::IsInvalidArgument(s) || RecordBatchView(batch).magic() != kBatchMagicV2) {
    return s;
  }
  // Only a batch that arrived intact is judged by its contents: damage on the way is
  // CORRUPT_MESSAGE (a producer retries it), a rule broken by the producer is not.
  const uint32_t stored = LoadBe<uint32_t>(batch.data(), kCrcPos);
  const uint32_t computed = ComputeBatchCrc(batch);
  if (computed != stored) return CrcMismatch(stored, computed);
  return s;
}

absl::Status ProducedBatchValidator::CheckRules(std::span<const uint8_t> batch,
                                                const ProduceRules& rules) {
  if (batch.size() < kBatchHeaderSize) {
    return absl::DataLossError(absl::StrFormat("truncated batch: %d bytes, header needs %d",
                                               batch.size(), kBatchHeaderSize));
  }
  const RecordBatchView v(batch);
  if (v.magic() != kBatchMagicV2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("magic %d: produced batches must be RecordBatch v2 (magic 2)", v.magic()));
  }
  if (v.batch_length() < kMinBatchLength || v.size_bytes() != batch.size()) {
    return absl::DataLossError(absl::StrFormat("batchLength %d does not match a batch of %d bytes",
                                               v.batch_length(), batch.size()));
  }
  const int16_t attributes = v.attributes();
  const auto codec = static_cast<Compression>(attributes & kCompressionMask);
  if (static_cast<int>(codec) > static_cast<int>(Compression::kZstd)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("compression codec %d does not exist", static_cast<int>(codec)));
  }
  if (attributes & kControlBit) {
    return absl::InvalidArgumentError("control batches are written by the broker, not by clients");
  }
  if (attributes & kTransactionalBit) {
    return absl::InvalidArgumentError("transactional batch: Sluice has no transactions");
  }
  if (v.base_offset() != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("baseOffset %d: a produced batch starts at 0", v.base_offset()));
  }
  const int32_t count = v.records_count();
  const int32_t last_offset_delta = v.last_offset_delta();
  if (count <= 0 || last_offset_delta < 0 || static_cast<int64_t>(last_offset_delta) + 1 != count) {
    return absl::InvalidArgumentError(
        absl::StrFormat("recordsCount %d does not match lastOffsetDelta %d (it must be %d + 1)",
                        count, last_offset_delta, last_offset_delta));
  }
  if (v.producer_id() >= 0 && v.base_sequence() < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "producerId %d with baseSequence %d: an idempotent batch needs a sequence number",
        v.producer_id(), v.base_sequence()));
  }
  const std::span<const uint8_t> section = batch.subspan(kBatchHeaderSize);
  // A hostile recordsCount is refused before anything is read: every record takes 7 bytes.
  const size_t max_records_bytes =
      codec == Compression::kNone ? section.size() : rules.max_decompressed_bytes;
  if (static_cast<size_t>(count) > max_records_bytes / kMinRecordBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "recordsCount %d cannot fit %d bytes of records", count, max_records_bytes));
  }
  if (codec == Compression::kNone) {
    RecordsReader reader(section);
    return CheckRecords(reader, count, rules);
  }
  if (decompressor_ == nullptr) decompressor_ = std::make_unique<RecordsDecompressor>();
  if (absl::Status s = decompressor_->Start(codec, section, rules.max_decompressed_bytes);
      !s.ok()) {
    return DecompressionFailure(s, rules.max_decompressed_bytes);
  }
  RecordsReader reader(decompressor_.get());
  return CheckRecords(reader, count, rules);
}

// ---- Builder ----

// records_ holds the whole batch: 61 header bytes reserved up front, filled in by Build(), so
// Build() hands the buffer over without copying the records.
RecordBatchBuilder::RecordBatchBuilder(int64_t base_offset, int64_t base_timestamp)
    : base_offset_(base_offset),
      base_timestamp_(base_timestamp),
      max_timestamp_(std::numeric_limits<int64_t>::min()),
      records_(kBatchHeaderSize, 0) {}

RecordBatchBuilder& RecordBatchBuilder::set_producer(int64_t producer_id, int16_t epoch,
                                                     int32_t base_sequence) {
  producer_id_ = producer_id;
  producer_epoch_ = epoch;
  base_sequence_ = base_sequence;
  return *this;
}

RecordBatchBuilder& RecordBatchBuilder::set_timestamp_type(TimestampType type) {
  timestamp_type_ = type;
  return *this;
}

void RecordBatchBuilder::Add(std::optional<std::string_view> key,
                             std::optional<std::string_view> value, std::span<const Header> headers,
                             int64_t timestamp) {
  if (timestamp == -1) timestamp = base_timestamp_;
  max_timestamp_ = std::max(max_timestamp_, timestamp);
  const int64_t timestamp_delta = WrappingSub(timestamp, base_timestamp_);
  const int32_t offset_delta = count_;

  auto bytes_size = [](std::optional<std::string_view> b) {
    return b ? VarintSize32(static_cast<int32_t>(b->size())) + b->size() : VarintSize32(-1);
  };
  // Size the body first: the record starts with its own length.
  size_t body = 1 + VarintSize64(timestamp_delta) + VarintSize32(offset_delta) + bytes_size(key) +
                bytes_size(value) + VarintSize32(static_cast<int32_t>(headers.size()));
  for (const Header& h : headers) {
    body += bytes_size(h.key);
    body += bytes_size(h.value ? std::optional<std::string_view>(*h.value) : std::nullopt);
  }
  // Grow geometrically: reserving the exact size on every Add would make building quadratic.
  const size_t needed = records_.size() + kMaxVarint32Bytes + body;
  if (needed > records_.capacity()) records_.reserve(std::max(needed, 2 * records_.capacity()));

  auto append_bytes = [this](std::optional<std::string_view> b) {
    if (!b) {
      AppendVarint32(&records_, -1);
      return;
    }
    AppendVarint32(&records_, static_cast<int32_t>(b->size()));
    records_.insert(records_.end(), b->begin(), b->end());
  };
  AppendVarint32(&records_, static_cast<int32_t>(body));
  records_.push_back(0);  // record attributes
  AppendVarint64(&records_, timestamp_delta);
  AppendVarint32(&records_, offset_delta);
  append_bytes(key);
  append_bytes(value);
  AppendVarint32(&records_, static_cast<int32_t>(headers.size()));
  for (const Header& h : headers) {
    append_bytes(h.key);
    append_bytes(h.value ? std::optional<std::string_view>(*h.value) : std::nullopt);
  }
  ++count_;
}

size_t RecordBatchBuilder::records() const { return static_cast<size_t>(count_); }

size_t RecordBatchBuilder::estimated_size() const { return records_.size(); }

std::vector<uint8_t> RecordBatchBuilder::Build() {
  uint8_t* p = records_.data();
  const int16_t attributes =
      timestamp_type_ == TimestampType::kLogAppendTime ? kTimestampTypeBit : 0;
  StoreBe<int64_t>(p, kBaseOffsetPos, base_offset_);
  StoreBe<int32_t>(p, kBatchLengthPos,
                   static_cast<int32_t>(records_.size() - kBatchLengthFieldEnd));
  StoreBe<int32_t>(p, kLeaderEpochPos, -1);  // producers send "no epoch"; the leader sets it
  p[kMagicPos] = static_cast<uint8_t>(kBatchMagicV2);
  StoreBe<int16_t>(p, kAttributesPos, attributes);
  // An empty batch keeps lastOffsetDelta 0: a negative delta would fail validation.
  StoreBe<int32_t>(p, kLastOffsetDeltaPos, count_ > 0 ? count_ - 1 : 0);
  StoreBe<int64_t>(p, kBaseTimestampPos, base_timestamp_);
  StoreBe<int64_t>(p, kMaxTimestampPos, count_ > 0 ? max_timestamp_ : base_timestamp_);
  StoreBe<int64_t>(p, kProducerIdPos, producer_id_);
  StoreBe<int16_t>(p, kProducerEpochPos, producer_epoch_);
  StoreBe<int32_t>(p, kBaseSequencePos, base_sequence_);
  StoreBe<int32_t>(p, kRecordsCountPos, count_);
  StoreBe<uint32_t>(p, kCrcPos, ComputeBatchCrc(records_));
  return std::move(records_);
}

absl::StatusOr<std::vector<uint8_t>> RecordBatchBuilder::BuildCompressed(Compression codec) {
  const std::vector<uint8_t> plain = Build();
  return CompressBatch(plain, codec);
}

}  // namespace sluice::storage
