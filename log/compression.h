// Kafka's record-section codecs (RecordBatch v2 attributes bits 0-2): gzip, snappy, lz4, zstd.
// Each function works on the bytes after `recordsCount`; the batch header stays uncompressed.
// What is accepted and what is written (framings, limits, error codes): log/FORMAT.md
// ("Compression").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "log/record_batch.h"

namespace sluice::storage {

// "none", "gzip", "snappy", "lz4", "zstd", or "codec N" for values Kafka does not define.
const char* CompressionName(Compression codec);

// Decompresses a records section compressed with `codec`. The output never grows past
// `max_output_bytes` (it is checked while decoding, so a decompression bomb costs at most that
// much memory): a larger result fails with ResourceExhaustedError. Input that is truncated or
// corrupt fails with DataLossError, a codec that is kNone or unknown with InvalidArgumentError.
// Error messages start with the codec's name.
//
//   gzip:   one or more gzip members (RFC 1952), as java.util.zip.GZIPOutputStream and zlib write.
//   snappy: the xerial / snappy-java block framing (Java clients, Kafka itself) or a raw snappy
//           block (librdkafka, kafkajs-snappy, sarama), told apart by the xerial magic.
//   lz4:    one or more LZ4 frames (the v2 format's KIP-57 framing, any block size/mode, with or
//           without checksums and content size).
//   zstd:   one or more zstd frames, with or without content size.
absl::StatusOr<std::vector<uint8_t>> DecompressRecords(Compression codec,
                                                       std::span<const uint8_t> compressed,
                                                       size_t max_output_bytes);

// Compresses a records section the way the Java producer and broker do: gzip (one member,
// default level), snappy (xerial framing, 32 KiB blocks), lz4 (one frame, independent 64 KiB
// blocks, no checksums), zstd (one frame, level 3, with content size). InvalidArgumentError for
// kNone or an unknown codec; InternalError if the library fails.
absl::StatusOr<std::vector<uint8_t>> CompressRecords(Compression codec,
                                                     std::span<const uint8_t> records);

}  // namespace sluice::storage
