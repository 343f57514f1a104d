// Kafka's record-section codecs (RecordBatch v2 attributes bits 0-2): gzip, snappy, lz4, zstd.
// Each function works on the bytes after `recordsCount`; the batch header stays uncompressed.
// What is accepted and what is written (framings, limits, error codes): log/FORMAT.md
// ("Compression").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
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

// Decompresses records sections one at a time, piece by piece, keeping its codec contexts and
// buffers for the next section: the produce validator keeps one per shard thread, so a warm
// decompressor allocates little per batch (zstd's context excepted: a fresh one per section,
// as zstd's answer to a corrupt frame depends on the buffers it kept). Not thread-safe; one
// section at a time.
//
// Accepts exactly what DecompressRecords() accepts (DecompressRecords() is built on it), with
// the same errors. Memory besides the caller's buffers: a 64 KiB window (Next() only), zlib's
// 32 KiB history, lz4's block buffer (the frame's block size, at most 4 MiB, plus 64 KiB of
// history), zstd's window (what the frame header asks for, at most the window limit described
// in log/FORMAT.md "Compression"), and for snappy one whole block (its declared size, checked
// against the output limit and against what its input can expand to before it is allocated).
// Whatever grew past kMaxRetainedDecompressorBytes is released by Trim() and by the next Start().
class RecordsDecompressor {
 public:
  // Contexts and buffers larger than this are not kept between sections.
  static constexpr size_t kMaxRetainedDecompressorBytes = size_t{8} << 20;
  // Next() hands out at most this many bytes at a time (except snappy blocks, whole).
  static constexpr size_t kWindowBytes = size_t{64} << 10;

  RecordsDecompressor();
  ~RecordsDecompressor();
  RecordsDecompressor(const RecordsDecompressor&) = delete;
  RecordsDecompressor& operator=(const RecordsDecompressor&) = delete;

  // Starts a section: `compressed` (borrowed until the section ends or the next Start()) holds
  // records compressed with `codec`; its output may not exceed `max_output_bytes`. Errors:
  // InvalidArgument for kNone and codecs 5-7; ResourceExhausted when a declared size (a snappy
  // block's length, a zstd frame's content size) is above the limit; DataLoss for a malformed
  // snappy header. After an error the section is over (Read() and Next() return it again).
  absl::Status Start(Compression codec, std::span<const uint8_t> compressed,
                     size_t max_output_bytes);

  // Decompresses into `out` (not empty): the number of bytes written, at least 1, or 0 once the
  // section ended cleanly (every frame or member complete and nothing after them). Errors as
  // DecompressRecords(): ResourceExhausted as soon as the output would pass the limit, DataLoss
  // for truncated or corrupt input. Errors end the section.
  absl::StatusOr<size_t> Read(std::span<uint8_t> out);
  // Read() into the decompressor's own buffer: the next piece of output (valid until the next
  // call), empty once the section ended cleanly. A snappy block comes whole, without a copy.
  absl::StatusOr<std::span<const uint8_t>> Next();

  // Frees contexts and buffers that grew past kMaxRetainedDecompressorBytes (a hostile zstd
  // frame's window, a large snappy block). Invalidates what Next() returned.
  void Trim();

  // Bytes of output so far in this section.
  size_t produced() const;
  // What the input announces as its whole output, to size a buffer: a raw snappy block's length
  // (exact), a zstd frame's content size (at most 4 MiB of it: headers can lie), else 0. Never
  // above the limit.
  size_t size_hint() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Compresses a records section the way the Java producer and broker do: gzip (one member,
// default level), snappy (xerial framing, 32 KiB blocks), lz4 (one frame, independent 64 KiB
// blocks, no checksums), zstd (one frame, level 3, with content size). InvalidArgumentError for
// kNone or an unknown codec; InternalError if the library fails.
absl::StatusOr<std::vector<uint8_t>> CompressRecords(Compression codec,
                                                     std::span<const uint8_t> records);

}  // namespace sluice::storage
