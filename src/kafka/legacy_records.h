// Kafka message format v0/v1 ("message sets", magic 0 and 1) for Produce v0-2 and Fetch v2-3.
//
// Sluice stores only RecordBatch v2. Like Kafka, it up-converts legacy message sets on produce
// and down-converts stored batches on fetch:
//
//   message (v0/v1)  offset int64, size int32 (bytes after this field), crc int32 (CRC-32 IEEE
//                    of magic..end), magic int8, attributes int8 (bits 0-2 codec, bit 3
//                    timestamp type in v1), [timestamp int64: v1 only], key bytes, value bytes
//                    (int32 length, -1 = null).
//   compressed       a "wrapper" message whose attributes name the codec (1 gzip, 2 snappy,
//                    3 lz4) and whose value is an inner message set, compressed. In v1 the inner
//                    offsets are relative (0..n-1), the wrapper's offset is that of the last one.
//
// This lives in src/kafka/ (not net/kafka/) because it needs log/ (codecs, batch builder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "log/record_batch.h"

namespace sluice::broker::legacy {

inline constexpr int8_t kMagicV0 = 0;
inline constexpr int8_t kMagicV1 = 1;
// offset + size + crc + magic + attributes + key length + value length.
inline constexpr size_t kMessageOverheadV0 = 8 + 4 + 4 + 1 + 1 + 4 + 4;
inline constexpr size_t kMessageOverheadV1 = kMessageOverheadV0 + 8;  // + timestamp

// CRC-32 (IEEE 802.3, the zlib/java.util.zip.CRC32 one) of data[0, n), continuing from `crc`
// (0 for a fresh checksum).
uint32_t Crc32Ieee(uint32_t crc, const void* data, size_t n);

// The magic byte of the first entry of a Produce records field (byte 16 in both formats), or
// -1 when the field is too short to tell.
int MagicOfFirstEntry(std::span<const uint8_t> records);

// Converts a legacy message set (every entry magic 0 or 1) to one RecordBatch v2 with base
// offset 0: every message in order, timestamps kept (v0: -1), no headers, no producer id. If
// the set holds compressed wrappers the batch is compressed with the first wrapper's codec,
// else it is uncompressed. The wrappers' inner message sets together decompress to at most
// `max_decompressed_bytes`. The result passes storage::ProducedBatchValidator (count, offset
// deltas 0..n-1, base offset 0) unless its records break a rule of the topic (keys).
//
// Errors: DataLoss for a CRC mismatch, a truncated or malformed message or inner message set,
// a corrupt compressed value, an empty set or a magic-2 entry among legacy ones;
// InvalidArgument for a codec other than gzip/snappy/lz4, a compressed message inside a
// wrapper, or inner sets above `max_decompressed_bytes` (a decompression bomb).
absl::StatusOr<std::vector<uint8_t>> UpConvertMessageSet(std::span<const uint8_t> message_set,
                                                         size_t max_decompressed_bytes);

struct DownConvertResult {
  int64_t messages = 0;     // messages written
  int64_t next_offset = 0;  // offset after the last message written (or fetch_offset)
};

// Appends to `*out` the records of `batches` (whole RecordBatch v2 batches as stored, possibly
// followed by a partial one, which is ignored) with offsets >= `fetch_offset`, each as an
// uncompressed magic-1 message with its absolute offset, timestamp (attribute bit 3 set for
// LogAppendTime batches), key and value; headers are dropped and control batches skipped, as
// Kafka does. Stops before the message that would make `*out` grow by more than `max_bytes`,
// except that with `at_least_one` the first message is always written. Errors: those of
// DecompressAndDecodeRecords() for a batch that cannot be decoded (DataLoss when its header is
// malformed).
absl::StatusOr<DownConvertResult> DownConvertToV1(std::span<const uint8_t> batches,
                                                  int64_t fetch_offset, size_t max_bytes,
                                                  bool at_least_one, std::vector<uint8_t>* out);

}  // namespace sluice::broker::legacy
