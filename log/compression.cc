#include "log/compression.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice::storage {
namespace {

// snappy-java (xerial) stream header: magic, then int32 BE version and int32 BE minimum
// compatible version, then blocks of [int32 BE compressed length][raw snappy block].
constexpr uint8_t kXerialMagic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
constexpr size_t kXerialHeaderSize = sizeof(kXerialMagic) + 8;
constexpr int32_t kXerialVersion = 1;
constexpr int32_t kXerialCompatVersion = 1;
constexpr size_t kXerialBlockSize = 32 * 1024;  // snappy-java's default

constexpr int kZstdLevel = 3;
// zstd's default ZSTD_d_windowLogMax (ZSTD_WINDOWLOG_LIMIT_DEFAULT, not in the stable API).
constexpr int kZstdWindowLogLimit = 27;
// The decoders take input lengths as 32-bit counts (zlib) or we pass windows of this size.
constexpr size_t kMaxChunk = size_t{1} << 30;
constexpr size_t kInitialOutput = 64 * 1024;

uint32_t LoadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
void AppendBe32(std::vector<uint8_t>* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
}

absl::Status Corrupt(Compression codec, std::string_view what) {
  return absl::DataLossError(absl::StrFormat("%s: %s", CompressionName(codec), what));
}
absl::Status TooLarge(Compression codec, size_t max) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s: decompressed records exceed max_output_bytes %d", CompressionName(codec), max));
}

// The decompressed bytes, never allocated past `max` (capacity included). Streaming decoders
// write into Window(); once the output is at `max` and the decoder is not done, the caller
// probes with a 1-byte buffer: any byte there means the input decompresses to more than `max`.
class Output {
 public:
  explicit Output(size_t max) : max_(max) {}

  // Expects about `n` bytes in all (e.g. a frame's declared content size).
  void Hint(size_t n) { Grow(std::min(n, max_)); }

  // Free space after the produced bytes, growing the buffer geometrically; empty at `max`.
  std::span<uint8_t> Window() {
    if (used_ == buf_.size()) {
      if (buf_.size() >= max_) return {};
      Grow(std::min(max_, std::max(kInitialOutput, 2 * buf_.size())));
    }
    return std::span<uint8_t>(buf_.data() + used_, std::min(buf_.size() - used_, kMaxChunk));
  }
  void Advance(size_t n) { used_ += n; }

  // Exactly `n` more bytes (a block whose size is known up front); nullptr past `max`.
  uint8_t* Extend(size_t n) {
    if (n > max_ - used_) return nullptr;
    if (used_ + n > buf_.size()) {
      Grow(std::min(max_, std::max(used_ + n, std::min(max_, 2 * buf_.size()))));
    }
    uint8_t* p = buf_.data() + used_;
    used_ += n;
    return p;
  }

  size_t used() const { return used_; }
  std::vector<uint8_t> Finish() {
    buf_.resize(used_);
    return std::move(buf_);
  }

 private:
  void Grow(size_t size) {
    if (size <= buf_.size()) return;
    buf_.reserve(size);  // exact: resize() alone may double past `max`
    buf_.resize(size);
  }

  const size_t max_;
  size_t used_ = 0;
  std::vector<uint8_t> buf_;
};

// ---- gzip ----

absl::StatusOr<std::vector<uint8_t>> GunzipRecords(std::span<const uint8_t> in, size_t max) {
  constexpr Compression kCodec = Compression::kGzip;
  if (in.size() > std::numeric_limits<uInt>::max()) return Corrupt(kCodec, "input too large");
  z_stream zs{};
  // 16 + 15: gzip wrapper only (RFC 1952), 32 KiB window.
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError("gzip: inflateInit2 failed");
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, inflateEnd);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  Output out(max);
  for (;;) {
    std::span<uint8_t> w = out.Window();
    uint8_t probe;
    const bool probing = w.empty();
    if (probing) w = std::span<uint8_t>(&probe, 1);
    zs.next_out = w.data();
    zs.avail_out = static_cast<uInt>(w.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = w.size() - zs.avail_out;
    if (probing && produced > 0) return TooLarge(kCodec, max);
    out.Advance(produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      // Another member follows (GZIPInputStream reads concatenated members too).
      if (inflateReset(&zs) != Z_OK) return absl::InternalError("gzip: inflateReset failed");
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) return Corrupt(kCodec, "truncated stream");
    if (rc != Z_OK) {
      return Corrupt(kCodec, zs.msg != nullptr ? zs.msg : absl::StrFormat("inflate error %d", rc));
    }
  }
  return out.Finish();
}

absl::StatusOr<std::vector<uint8_t>> GzipRecords(std::span<const uint8_t> in) {
  if (in.size() > std::numeric_limits<uInt>::max()) {
    return absl::InvalidArgumentError("gzip: input too large");
  }
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return absl::InternalError("gzip: deflateInit2 failed");
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, deflateEnd);
  std::vector<uint8_t> out(deflateBound(&zs, static_cast<uLong>(in.size())));
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  if (const int rc = deflate(&zs, Z_FINISH); rc != Z_STREAM_END) {
    return absl::InternalError(absl::StrFormat("gzip: deflate returned %d", rc));
  }
  out.resize(zs.total_out);
  return out;
}

// ---- snappy ----

// One raw snappy block, appended to `out`. Its decompressed length is in its first bytes, so
// the limit is checked before anything is allocated.
absl::Status UnsnappyBlock(std::span<const uint8_t> block, Output* out, size_t max) {
  constexpr Compression kCodec = Compression::kSnappy;
  const char* src = reinterpret_cast<const char*>(block.data());
  size_t len = 0;
  if (snappy_uncompressed_length(src, block.size(), &len) != SNAPPY_OK) {
    return Corrupt(kCodec, "bad block length header");
  }
  uint8_t* dst = out->Extend(len);
  if (dst == nullptr) return TooLarge(kCodec, max);
  size_t got = len;
  if (snappy_uncompress(src, block.size(), reinterpret_cast<char*>(dst), &got) != SNAPPY_OK ||
      got != len) {
    return Corrupt(kCodec, "corrupt block");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> UnsnappyRecords(std::span<const uint8_t> in, size_t max) {
  constexpr Compression kCodec = Compression::kSnappy;
  Output out(max);
  const bool xerial = in.size() >= sizeof(kXerialMagic) &&
                      std::memcmp(in.data(), kXerialMagic, sizeof(kXerialMagic)) == 0;
  if (!xerial) {
    if (absl::Status s = UnsnappyBlock(in, &out, max); !s.ok()) return s;
    return out.Finish();
  }
  // Version and minimum compatible version are not checked: every snappy-java version writes
  // the same block layout (snappy-java itself only rejects versions below 1).
  if (in.size() < kXerialHeaderSize) return Corrupt(kCodec, "truncated xerial header");
  size_t pos = kXerialHeaderSize;
  while (pos < in.size()) {
    if (in.size() - pos < 4) return Corrupt(kCodec, "truncated xerial block length");
    const uint32_t len = LoadBe32(in.data() + pos);
    pos += 4;
    if (len > in.size() - pos) {
      return Corrupt(kCodec, absl::StrFormat("xerial block of %d bytes past the end (%d left)", len,
                                             in.size() - pos));
    }
    if (absl::Status s = UnsnappyBlock(in.subspan(pos, len), &out, max); !s.ok()) return s;
    pos += len;
  }
  return out.Finish();
}

absl::StatusOr<std::vector<uint8_t>> SnappyRecords(std::span<const uint8_t> in) {
  std::vector<uint8_t> out(kXerialMagic, kXerialMagic + sizeof(kXerialMagic));
  AppendBe32(&out, kXerialVersion);
  AppendBe32(&out, kXerialCompatVersion);
  for (size_t pos = 0; pos < in.size(); pos += kXerialBlockSize) {
    const size_t n = std::min(kXerialBlockSize, in.size() - pos);
    const size_t at = out.size();
    size_t len = snappy_max_compressed_length(n);
    out.resize(at + 4 + len);
    if (snappy_compress(reinterpret_cast<const char*>(in.data() + pos), n,
                        reinterpret_cast<char*>(out.data() + at + 4), &len) != SNAPPY_OK) {
      return absl::InternalError("snappy: snappy_compress failed");
    }
    out.resize(at + 4 + len);
    for (int i = 0; i < 4; ++i) out[at + i] = static_cast<uint8_t>(len >> (24 - 8 * i));
  }
  return out;
}

// ---- lz4 ----

absl::StatusOr<std::vector<uint8_t>> Unlz4Records(std::span<const uint8_t> in, size_t max) {
  constexpr Compression kCodec = Compression::kLz4;
  LZ4F_dctx* dctx = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
    return absl::InternalError("lz4: LZ4F_createDecompressionContext failed");
  }
  std::unique_ptr<LZ4F_dctx, LZ4F_errorCode_t (*)(LZ4F_dctx*)> guard(dctx,
                                                                     LZ4F_freeDecompressionContext);
  Output out(max);
  size_t pos = 0;
  for (;;) {
    std::span<uint8_t> w = out.Window();
    uint8_t probe;
    const bool probing = w.empty();
    if (probing) w = std::span<uint8_t>(&probe, 1);
    size_t dst_size = w.size();
    size_t src_size = in.size() - pos;
    const size_t hint = LZ4F_decompress(dctx, w.data(), &dst_size, in.data() + pos, &src_size,
                                        /*dOptPtr=*/nullptr);
    if (LZ4F_isError(hint)) return Corrupt(kCodec, LZ4F_getErrorName(hint));
    pos += src_size;
    if (probing && dst_size > 0) return TooLarge(kCodec, max);
    out.Advance(dst_size);
    if (hint == 0) {
      // A frame ended; the context is ready for the next one.
      if (pos == in.size()) break;
      continue;
    }
    // Room left in the window and no input left: the frame is incomplete.
    if (pos == in.size() && dst_size < w.size()) return Corrupt(kCodec, "truncated frame");
  }
  return out.Finish();
}

absl::StatusOr<std::vector<uint8_t>> Lz4Records(std::span<const uint8_t> in) {
  LZ4F_preferences_t prefs;
  std::memset(&prefs, 0, sizeof(prefs));
  prefs.frameInfo.blockSizeID = LZ4F_max64KB;
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;  // KIP-57: Kafka's readers need this
  prefs.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
  prefs.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
  std::vector<uint8_t> out(LZ4F_compressFrameBound(in.size(), &prefs));
  const size_t n = LZ4F_compressFrame(out.data(), out.size(), in.data(), in.size(), &prefs);
  if (LZ4F_isError(n)) {
    return absl::InternalError(absl::StrFormat("lz4: %s", LZ4F_getErrorName(n)));
  }
  out.resize(n);
  return out;
}

// ---- zstd ----

absl::StatusOr<std::vector<uint8_t>> UnzstdRecords(std::span<const uint8_t> in, size_t max) {
  constexpr Compression kCodec = Compression::kZstd;
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return absl::InternalError("zstd: ZSTD_createDCtx failed");
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> guard(dctx, ZSTD_freeDCtx);
  // The decoder's window buffer is sized by what the frame header claims, not by the output:
  // bound it. 2^23 covers every level up to 19 (streaming encoders without a pledged size
  // declare the level's full window even for tiny inputs); beyond that, only as large as the
  // output may be, at most zstd's default limit of 2^27.
  int window_log = 23;
  while (window_log < kZstdWindowLogLimit && (size_t{1} << window_log) < max) {
    ++window_log;
  }
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, window_log);
  Output out(max);
  const unsigned long long content_size = ZSTD_getFrameContentSize(in.data(), in.size());
  if (content_size != ZSTD_CONTENTSIZE_UNKNOWN && content_size != ZSTD_CONTENTSIZE_ERROR) {
    if (content_size > max) return TooLarge(kCodec, max);
    // A lying header must not make us zero-fill `max` bytes up front: growth covers the rest.
    out.Hint(std::min<size_t>(static_cast<size_t>(content_size), 4 << 20));
  }
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  for (;;) {
    std::span<uint8_t> w = out.Window();
    uint8_t probe;
    const bool probing = w.empty();
    if (probing) w = std::span<uint8_t>(&probe, 1);
    ZSTD_outBuffer dst{w.data(), w.size(), 0};
    const size_t ret = ZSTD_decompressStream(dctx, &dst, &src);
    if (ZSTD_isError(ret)) return Corrupt(kCodec, ZSTD_getErrorName(ret));
    if (probing && dst.pos > 0) return TooLarge(kCodec, max);
    out.Advance(dst.pos);
    if (ret == 0) {
      // A frame ended and is fully flushed; another may follow.
      if (src.pos == src.size) break;
      continue;
    }
    if (src.pos == src.size && dst.pos < dst.size) return Corrupt(kCodec, "truncated frame");
  }
  return out.Finish();
}

absl::StatusOr<std::vector<uint8_t>> ZstdRecords(std::span<const uint8_t> in) {
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  const size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), kZstdLevel);
  if (ZSTD_isError(n)) {
    return absl::InternalError(absl::StrFormat("zstd: %s", ZSTD_getErrorName(n)));
  }
  out.resize(n);
  return out;
}

}  // namespace

const char* CompressionName(Compression codec) {
  switch (codec) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kSnappy:
      return "snappy";
    case Compression::kLz4:
      return "lz4";
    case Compression::kZstd:
      return "zstd";
  }
  switch (static_cast<int>(codec)) {
    case 5:
      return "codec 5";
    case 6:
      return "codec 6";
    case 7:
      return "codec 7";
    default:
      return "unknown codec";
  }
}

absl::StatusOr<std::vector<uint8_t>> DecompressRecords(Compression codec,
                                                       std::span<const uint8_t> compressed,
                                                       size_t max_output_bytes) {
  switch (codec) {
    case Compression::kGzip:
      return GunzipRecords(compressed, max_output_bytes);
    case Compression::kSnappy:
      return UnsnappyRecords(compressed, max_output_bytes);
    case Compression::kLz4:
      return Unlz4Records(compressed, max_output_bytes);
    case Compression::kZstd:
      return UnzstdRecords(compressed, max_output_bytes);
    case Compression::kNone:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: not a compression codec", CompressionName(codec)));
}

absl::StatusOr<std::vector<uint8_t>> CompressRecords(Compression codec,
                                                     std::span<const uint8_t> records) {
  switch (codec) {
    case Compression::kGzip:
      return GzipRecords(records);
    case Compression::kSnappy:
      return SnappyRecords(records);
    case Compression::kLz4:
      return Lz4Records(records);
    case Compression::kZstd:
      return ZstdRecords(records);
    case Compression::kNone:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: not a compression codec", CompressionName(codec)));
}

}  // namespace sluice::storage
