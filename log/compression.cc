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
// A zstd frame's declared content size presizes DecompressRecords()'s output up to this much:
// a lying header must not make it zero-fill the whole limit up front.
constexpr size_t kMaxZstdHint = size_t{4} << 20;
// The most a snappy block can expand: its densest element is a 3-byte copy of 64 bytes. A block
// header announcing more than this per input byte is corrupt, and is refused before its
// announced length is allocated.
constexpr size_t kSnappyMaxExpansion = 22;

// The zstd window (decoder memory a frame header chooses) allowed for an output limit:
// 2^23 covers every level up to 19 (streaming encoders without a pledged size declare the
// level's full window even for tiny inputs); beyond that, only as large as the output may be,
// at most zstd's default limit of 2^27.
int ZstdWindowLogFor(size_t max_output_bytes) {
  int window_log = 23;
  while (window_log < kZstdWindowLogLimit && (size_t{1} << window_log) < max_output_bytes) {
    ++window_log;
  }
  return window_log;
}

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

// The decompressed bytes of DecompressRecords(), never allocated past `max` (capacity
// included); RecordsDecompressor::Read() writes into Window().
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

// ---- RecordsDecompressor ----

struct RecordsDecompressor::State {
  ~State() {
    if (zlib_ready) inflateEnd(&zs);
    if (lz4 != nullptr) LZ4F_freeDecompressionContext(lz4);
    if (zstd != nullptr) ZSTD_freeDCtx(zstd);
  }

  // The section.
  Compression codec = Compression::kNone;
  std::span<const uint8_t> in;
  size_t pos = 0;  // input consumed (lz4, snappy)
  size_t max = 0;
  size_t produced = 0;
  size_t hint = 0;
  bool active = false;
  bool finished = false;
  absl::Status error;  // sticky until the next Start()

  // Contexts, kept between sections (zstd's until the next one starts: see Start()).
  z_stream zs{};
  bool zlib_ready = false;
  LZ4F_dctx* lz4 = nullptr;
  ZSTD_DCtx* zstd = nullptr;
  ZSTD_inBuffer zin{};
  // What the first frame's header declares it holds, and what it produced so far. zstd checks
  // the declared size only when the frame ends, or at once when it happens to decode the
  // frame in one pass (into a large enough buffer): checked here as well, the same bytes get
  // the same answer whatever buffers and history the context has.
  uint64_t zstd_declared = UINT64_MAX;
  uint64_t zstd_frame_produced = 0;

  // snappy: a decoded block waiting to be handed out, [block_pos, block_size) of `block`.
  bool xerial = false;
  bool raw_pending = false;  // the raw block is not decoded yet
  size_t raw_length = 0;
  std::unique_ptr<uint8_t[]> block;  // default-initialized: nothing zero-filled
  size_t block_capacity = 0;
  size_t block_size = 0;
  size_t block_pos = 0;

  std::unique_ptr<uint8_t[]> window;  // Next() for the streaming codecs

  // Frees what a section made larger than is worth keeping (a hostile frame's window).
  void Trim() {
    if (block_capacity > kMaxRetainedDecompressorBytes) {
      block.reset();
      block_capacity = 0;
    }
    if (zstd != nullptr && ZSTD_sizeof_DCtx(zstd) > kMaxRetainedDecompressorBytes) {
      ZSTD_freeDCtx(zstd);
      zstd = nullptr;
    }
  }

  absl::StatusOr<size_t> Gunzip(std::span<uint8_t> out);
  absl::StatusOr<size_t> Unlz4(std::span<uint8_t> out);
  absl::StatusOr<size_t> Unzstd(std::span<uint8_t> out);
  absl::StatusOr<size_t> Unsnappy(std::span<uint8_t> out);
  absl::StatusOr<size_t> SnappyNextBlock(std::span<uint8_t> out);
};

RecordsDecompressor::RecordsDecompressor() : state_(std::make_unique<State>()) {}
RecordsDecompressor::~RecordsDecompressor() = default;

size_t RecordsDecompressor::produced() const { return state_->produced; }
void RecordsDecompressor::Trim() { state_->Trim(); }
size_t RecordsDecompressor::size_hint() const { return state_->hint; }

absl::Status RecordsDecompressor::Start(Compression codec, std::span<const uint8_t> compressed,
                                        size_t max_output_bytes) {
  State& s = *state_;
  s.Trim();
  s.codec = codec;
  s.in = compressed;
  s.pos = 0;
  s.max = max_output_bytes;
  s.produced = 0;
  s.hint = 0;
  s.active = true;
  s.finished = false;
  s.error = absl::OkStatus();
  s.block_size = s.block_pos = 0;
  auto fail = [&s](absl::Status e) {
    s.error = e;
    return e;
  };
  switch (codec) {
    case Compression::kGzip: {
      if (compressed.size() > std::numeric_limits<uInt>::max()) {
        return fail(Corrupt(codec, "input too large"));
      }
      if (!s.zlib_ready) {
        // 16 + 15: gzip wrapper only (RFC 1952), 32 KiB window.
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) {
          return fail(absl::InternalError("gzip: inflateInit2 failed"));
        }
        s.zlib_ready = true;
      } else if (inflateReset(&s.zs) != Z_OK) {
        return fail(absl::InternalError("gzip: inflateReset failed"));
      }
      s.zs.next_in = const_cast<Bytef*>(compressed.data());
      s.zs.avail_in = static_cast<uInt>(compressed.size());
      return absl::OkStatus();
    }
    case Compression::kSnappy: {
      s.xerial = compressed.size() >= sizeof(kXerialMagic) &&
                 std::memcmp(compressed.data(), kXerialMagic, sizeof(kXerialMagic)) == 0;
      if (s.xerial) {
        // Version and minimum compatible version are not checked: every snappy-java version
        // writes the same block layout (snappy-java itself only rejects versions below 1).
        if (compressed.size() < kXerialHeaderSize) {
          return fail(Corrupt(codec, "truncated xerial header"));
        }
        s.pos = kXerialHeaderSize;
        return absl::OkStatus();
      }
      size_t length = 0;
      if (snappy_uncompressed_length(reinterpret_cast<const char*>(compressed.data()),
                                     compressed.size(), &length) != SNAPPY_OK) {
        return fail(Corrupt(codec, "bad block length header"));
      }
      if (length > max_output_bytes) return fail(TooLarge(codec, max_output_bytes));
      if (length / kSnappyMaxExpansion > compressed.size()) {
        return fail(Corrupt(codec, absl::StrFormat("a block of %d bytes cannot hold %d bytes",
                                                   compressed.size(), length)));
      }
      s.raw_pending = true;
      s.raw_length = length;
      s.hint = length;
      return absl::OkStatus();
    }
    case Compression::kLz4:
      if (s.lz4 == nullptr) {
        if (LZ4F_isError(LZ4F_createDecompressionContext(&s.lz4, LZ4F_VERSION))) {
          s.lz4 = nullptr;
          return fail(absl::InternalError("lz4: LZ4F_createDecompressionContext failed"));
        }
      } else {
        LZ4F_resetDecompressionContext(s.lz4);
      }
      return absl::OkStatus();
    case Compression::kZstd: {
      // A fresh context for every section: zstd sizes its buffers by the first frame's window
      // and keeps larger ones from earlier frames, and a frame whose blocks outgrow its window
      // fails in buffers sized for it but decodes on in larger ones. The same bytes must get
      // the same answer whatever came before (compression_test: ...OutgrowingItsWindow...).
      // Creating one costs an allocation, no zeroing: small beside decoding a batch.
      if (s.zstd != nullptr) ZSTD_freeDCtx(s.zstd);
      s.zstd = ZSTD_createDCtx();
      if (s.zstd == nullptr) return fail(absl::InternalError("zstd: ZSTD_createDCtx failed"));
      // The decoder's window buffer is sized by what the frame header claims, not by the
      // output: bound it.
      ZSTD_DCtx_setParameter(s.zstd, ZSTD_d_windowLogMax, ZstdWindowLogFor(max_output_bytes));
      const unsigned long long content_size =
          ZSTD_getFrameContentSize(compressed.data(), compressed.size());
      s.zstd_declared = UINT64_MAX;
      s.zstd_frame_produced = 0;
      if (content_size != ZSTD_CONTENTSIZE_UNKNOWN && content_size != ZSTD_CONTENTSIZE_ERROR) {
        if (content_size > max_output_bytes) return fail(TooLarge(codec, max_output_bytes));
        s.hint = std::min<size_t>(static_cast<size_t>(content_size), kMaxZstdHint);
        s.zstd_declared = content_size;
      }
      s.zin = ZSTD_inBuffer{compressed.data(), compressed.size(), 0};
      return absl::OkStatus();
    }
    case Compression::kNone:
      break;
  }
  return fail(absl::InvalidArgumentError(
      absl::StrFormat("%s: not a compression codec", CompressionName(codec))));
}

absl::StatusOr<size_t> RecordsDecompressor::Read(std::span<uint8_t> out) {
  State& s = *state_;
  if (!s.error.ok()) return s.error;
  if (s.finished) return 0;
  if (!s.active) return absl::FailedPreconditionError("no section started");
  if (out.empty()) return absl::InvalidArgumentError("Read() into an empty buffer");
  // One byte past the limit is enough to tell that the output is too large.
  const size_t remaining = s.max - s.produced;
  if (remaining < out.size()) out = out.first(remaining + 1);
  absl::StatusOr<size_t> n;
  switch (s.codec) {
    case Compression::kGzip:
      n = s.Gunzip(out);
      break;
    case Compression::kSnappy:
      n = s.Unsnappy(out);
      break;
    case Compression::kLz4:
      n = s.Unlz4(out);
      break;
    case Compression::kZstd:
      n = s.Unzstd(out);
      break;
    case Compression::kNone:
      n = absl::InvalidArgumentError("none: not a compression codec");
      break;
  }
  if (n.ok() && *n > remaining) n = TooLarge(s.codec, s.max);
  if (!n.ok()) {
    s.error = n.status();
    s.active = false;
    return s.error;
  }
  s.produced += *n;
  if (s.finished) s.active = false;
  return *n;
}

absl::StatusOr<std::span<const uint8_t>> RecordsDecompressor::Next() {
  State& s = *state_;
  if (s.codec == Compression::kSnappy && s.error.ok() && s.active && !s.finished) {
    // Hand out decoded blocks where they are.
    while (s.block_pos == s.block_size && !s.finished) {
      absl::StatusOr<size_t> n = s.SnappyNextBlock({});
      if (!n.ok()) {
        s.error = n.status();
        s.active = false;
        return s.error;
      }
    }
    const std::span<const uint8_t> piece(s.block.get() + s.block_pos, s.block_size - s.block_pos);
    s.block_pos = s.block_size;
    s.produced += piece.size();  // SnappyNextBlock() checked the limit
    if (s.finished) s.active = false;
    return piece;
  }
  if (s.window == nullptr) s.window = std::make_unique<uint8_t[]>(kWindowBytes);
  absl::StatusOr<size_t> n = Read(std::span<uint8_t>(s.window.get(), kWindowBytes));
  if (!n.ok()) return n.status();
  return std::span<const uint8_t>(s.window.get(), *n);
}

absl::StatusOr<size_t> RecordsDecompressor::State::Gunzip(std::span<uint8_t> out) {
  constexpr Compression kCodec = Compression::kGzip;
  const size_t room = std::min(out.size(), kMaxChunk);
  for (;;) {
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t n = room - zs.avail_out;
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) {
        finished = true;
        return n;
      }
      // Another member follows (GZIPInputStream reads concatenated members too).
      if (inflateReset(&zs) != Z_OK) return absl::InternalError("gzip: inflateReset failed");
      if (n > 0) return n;
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) return Corrupt(kCodec, "truncated stream");
    if (rc != Z_OK) {
      return Corrupt(kCodec, zs.msg != nullptr ? zs.msg : absl::StrFormat("inflate error %d", rc));
    }
    if (n > 0) return n;
  }
}

absl::StatusOr<size_t> RecordsDecompressor::State::Unlz4(std::span<uint8_t> out) {
  constexpr Compression kCodec = Compression::kLz4;
  for (;;) {
    size_t dst_size = out.size();
    size_t src_size = in.size() - pos;
    const size_t hint = LZ4F_decompress(lz4, out.data(), &dst_size, in.data() + pos, &src_size,
                                        /*dOptPtr=*/nullptr);
    if (LZ4F_isError(hint)) return Corrupt(kCodec, LZ4F_getErrorName(hint));
    pos += src_size;
    // hint 0: a frame ended; the context is ready for the next one.
    if (hint == 0 && pos == in.size()) {
      finished = true;
      return dst_size;
    }
    if (dst_size > 0) return dst_size;
    if (pos == in.size()) return Corrupt(kCodec, "truncated frame");
    if (src_size == 0) return Corrupt(kCodec, "decoder made no progress");
  }
}

absl::StatusOr<size_t> RecordsDecompressor::State::Unzstd(std::span<uint8_t> out) {
  constexpr Compression kCodec = Compression::kZstd;
  for (;;) {
    ZSTD_outBuffer dst{out.data(), out.size(), 0};
    const size_t before = zin.pos;
    const size_t ret = ZSTD_decompressStream(zstd, &dst, &zin);
    if (ZSTD_isError(ret)) return Corrupt(kCodec, ZSTD_getErrorName(ret));
    zstd_frame_produced += dst.pos;
    if (zstd_frame_produced > zstd_declared) {
      return Corrupt(kCodec, "a frame holds more than its header declares");
    }
    if (ret == 0) {
      // zstd checks the declared size itself only when the output buffer held the whole
      // frame; through windows a frame that ends short would pass as a shorter one.
      if (zstd_declared != UINT64_MAX && zstd_frame_produced != zstd_declared) {
        return Corrupt(kCodec, "a frame holds less than its header declares");
      }
      zstd_declared = UINT64_MAX;  // the first frame ended: later ones unchecked
    }
    // 0: a frame ended and is fully flushed; another may follow.
    if (ret == 0 && zin.pos == zin.size) {
      finished = true;
      return dst.pos;
    }
    if (dst.pos > 0) return dst.pos;
    if (zin.pos == zin.size) return Corrupt(kCodec, "truncated frame");
    if (zin.pos == before) return Corrupt(kCodec, "decoder made no progress");
  }
}

absl::StatusOr<size_t> RecordsDecompressor::State::Unsnappy(std::span<uint8_t> out) {
  for (;;) {
    if (block_pos < block_size) {
      const size_t n = std::min(out.size(), block_size - block_pos);
      std::memcpy(out.data(), block.get() + block_pos, n);
      block_pos += n;
      if (block_pos == block_size && pos == in.size() && !raw_pending) finished = true;
      return n;
    }
    if (finished) return 0;
    absl::StatusOr<size_t> n = SnappyNextBlock(out);
    if (!n.ok() || *n > 0 || finished) return n;
  }
}

// Decodes the next block: straight into `out` when it fits (returns its length), else into
// `block` (returns 0). Sets `finished` after the last block.
absl::StatusOr<size_t> RecordsDecompressor::State::SnappyNextBlock(std::span<uint8_t> out) {
  constexpr Compression kCodec = Compression::kSnappy;
  std::span<const uint8_t> src;
  size_t length = 0;
  if (!xerial) {
    if (!raw_pending) {
      finished = true;
      return 0;
    }
    raw_pending = false;
    src = in;
    length = raw_length;  // checked by Start()
    pos = in.size();
  } else {
    if (pos == in.size()) {
      finished = true;
      return 0;
    }
    if (in.size() - pos < 4) return Corrupt(kCodec, "truncated xerial block length");
    const uint32_t len = LoadBe32(in.data() + pos);
    pos += 4;
    if (len > in.size() - pos) {
      return Corrupt(kCodec, absl::StrFormat("xerial block of %d bytes past the end (%d left)", len,
                                             in.size() - pos));
    }
    src = in.subspan(pos, len);
    pos += len;
    if (snappy_uncompressed_length(reinterpret_cast<const char*>(src.data()), src.size(),
                                   &length) != SNAPPY_OK) {
      return Corrupt(kCodec, "bad block length header");
    }
    if (length > max - produced) return TooLarge(kCodec, max);
    if (length / kSnappyMaxExpansion > src.size()) {
      return Corrupt(
          kCodec, absl::StrFormat("a block of %d bytes cannot hold %d bytes", src.size(), length));
    }
  }
  const bool direct = length <= out.size() && !out.empty();
  if (!direct && length > block_capacity) {
    block.reset(new uint8_t[length]);  // not zero-filled: snappy writes every byte it returns
    block_capacity = length;
  }
  uint8_t probe;
  uint8_t* dst = direct ? out.data() : (length > 0 ? block.get() : &probe);
  size_t got = length;
  if (snappy_uncompress(reinterpret_cast<const char*>(src.data()), src.size(),
                        reinterpret_cast<char*>(dst), &got) != SNAPPY_OK ||
      got != length) {
    return Corrupt(kCodec, "corrupt block");
  }
  if (!xerial || pos == in.size()) {
    // The last block: the section ends once it has been handed out.
    if (direct || length == 0) finished = true;
  }
  if (direct) return length;
  block_size = length;
  block_pos = 0;
  return 0;
}

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
  RecordsDecompressor d;
  if (absl::Status s = d.Start(codec, compressed, max_output_bytes); !s.ok()) return s;
  Output out(max_output_bytes);
  out.Hint(d.size_hint());
  for (;;) {
    std::span<uint8_t> w = out.Window();
    uint8_t probe;
    // At the limit: any further byte makes Read() fail with ResourceExhausted.
    if (w.empty()) w = std::span<uint8_t>(&probe, 1);
    absl::StatusOr<size_t> n = d.Read(w);
    if (!n.ok()) return n.status();
    if (*n == 0) return out.Finish();
    out.Advance(*n);
  }
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
