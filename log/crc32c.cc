#include "log/crc32c.h"

#include <nmmintrin.h>

#include <array>
#include <bit>
#include <cstring>

#include "log/crc32c_internal.h"

namespace sluice::storage {
namespace {

// Castagnoli polynomial 0x1EDC6F41, bit-reflected (CRC32C processes bits LSB first).
constexpr uint32_t kPolyReflected = 0x82F63B78;

// kTables[0] is the classic byte table; kTables[k][b] is the CRC of byte b followed by k zero
// bytes, which lets the slicing-by-8 loop fold eight input bytes with eight independent lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ kPolyReflected : c >> 1;
    t[0][i] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));  // memcpy: input may be unaligned
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

bool DetectSse42() {
  // Initialise the CPU model explicitly: we may run before other static constructors.
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

}  // namespace

namespace internal {

uint32_t Crc32cSoftware(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint64_t w = LoadLe64(p) ^ c;
    c = kTables[7][w & 0xff] ^ kTables[6][(w >> 8) & 0xff] ^ kTables[5][(w >> 16) & 0xff] ^
        kTables[4][(w >> 24) & 0xff] ^ kTables[3][(w >> 32) & 0xff] ^ kTables[2][(w >> 40) & 0xff] ^
        kTables[1][(w >> 48) & 0xff] ^ kTables[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return ~c;
}

// The crc32 instruction has a latency of about three cycles but can start one per cycle, so
// one dependent chain uses a third of it. Long inputs are cut into three adjacent blocks whose
// CRCs run as three independent chains and are then joined: for the raw register (no pre/post
// inversion) crc(X || Y) = shift(crc(X), |Y|) ^ crc(0, Y), where shift(c, L) multiplies c by
// x^(8L) mod P. shift() is linear in c, so it is four table lookups for a fixed L.
namespace {

struct ShiftTable {
  std::array<std::array<uint32_t, 256>, 4> t;

  // Tables for shift(., len); len must be a multiple of 8.
  explicit ShiftTable(size_t len) {
    // shift() of each basis bit, by running the register over `len` zero bytes.
    std::array<uint32_t, 32> basis;
    for (int bit = 0; bit < 32; ++bit) {
      uint64_t c = uint64_t{1} << bit;
      for (size_t i = 0; i < len; i += 8) c = _mm_crc32_u64(c, 0);
      basis[bit] = static_cast<uint32_t>(c);
    }
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = 0;
        for (int bit = 0; bit < 8; ++bit) {
          if (b & (1u << bit)) v ^= basis[8 * k + bit];
        }
        t[k][b] = v;
      }
    }
  }
  uint32_t Shift(uint32_t c) const {
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
  }
};

uint64_t Load64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

// Runs the register over blocks of `kBlock` bytes, three at a time, while they last.
template <size_t kBlock>
uint32_t ThreeWay(uint32_t c, const uint8_t*& p, size_t& n) {
  static const ShiftTable table(kBlock);
  while (n >= 3 * kBlock) {
    uint64_t a = c, b = 0, d = 0;
    for (size_t i = 0; i < kBlock; i += 8) {
      a = _mm_crc32_u64(a, Load64(p + i));
      b = _mm_crc32_u64(b, Load64(p + kBlock + i));
      d = _mm_crc32_u64(d, Load64(p + 2 * kBlock + i));
    }
    c = table.Shift(table.Shift(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
        static_cast<uint32_t>(d);
    p += 3 * kBlock;
    n -= 3 * kBlock;
  }
  return c;
}

// ThreeWay() that also copies what it reads to `dst`: the batch is read once, not twice.
template <size_t kBlock>
uint32_t ThreeWayCopy(uint32_t c, uint8_t*& dst, const uint8_t*& p, size_t& n) {
  static const ShiftTable table(kBlock);
  while (n >= 3 * kBlock) {
    uint64_t a = c, b = 0, d = 0;
    for (size_t i = 0; i < kBlock; i += 8) {
      const uint64_t wa = Load64(p + i), wb = Load64(p + kBlock + i),
                     wd = Load64(p + 2 * kBlock + i);
      a = _mm_crc32_u64(a, wa);
      b = _mm_crc32_u64(b, wb);
      d = _mm_crc32_u64(d, wd);
      std::memcpy(dst + i, &wa, 8);
      std::memcpy(dst + kBlock + i, &wb, 8);
      std::memcpy(dst + 2 * kBlock + i, &wd, 8);
    }
    c = table.Shift(table.Shift(static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b)) ^
        static_cast<uint32_t>(d);
    p += 3 * kBlock;
    dst += 3 * kBlock;
    n -= 3 * kBlock;
  }
  return c;
}

}  // namespace

uint32_t Crc32cCopyHardware(uint32_t crc, void* dst, const void* src, size_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  const auto* p = static_cast<const uint8_t*>(src);
  uint32_t c = ~crc;
  c = ThreeWayCopy<4096>(c, out, p, n);
  c = ThreeWayCopy<256>(c, out, p, n);
  uint64_t c64 = c;
  while (n >= 8) {
    const uint64_t w = Load64(p);
    c64 = _mm_crc32_u64(c64, w);
    std::memcpy(out, &w, 8);
    p += 8;
    out += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n-- > 0) {
    c = _mm_crc32_u8(c, *p);
    *out++ = *p++;
  }
  return ~c;
}

uint32_t Crc32cHardware(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  // Byte steps up to an 8-byte boundary so the wide loads below do not straddle cache lines.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  c = ThreeWay<4096>(c, p, n);
  c = ThreeWay<256>(c, p, n);
  uint64_t c64 = c;
  while (n >= 8) {
    c64 = _mm_crc32_u64(c64, Load64(p));
    p += 8;
    n -= 8;
  }
  c = static_cast<uint32_t>(c64);
  while (n-- > 0) c = _mm_crc32_u8(c, *p++);
  return ~c;
}

}  // namespace internal

bool Crc32cIsHardwareAccelerated() {
  static const bool hw = DetectSse42();
  return hw;
}

uint32_t Crc32cCopy(uint32_t crc, void* dst, const void* src, size_t n) {
  if (n == 0) return crc;
  if (Crc32cIsHardwareAccelerated()) return internal::Crc32cCopyHardware(crc, dst, src, n);
  std::memcpy(dst, src, n);
  return internal::Crc32cSoftware(crc, dst, n);
}

uint32_t Crc32c(uint32_t crc, const void* data, size_t n) {
  if (n == 0) return crc;
  return Crc32cIsHardwareAccelerated() ? internal::Crc32cHardware(crc, data, n)
                                       : internal::Crc32cSoftware(crc, data, n);
}

}  // namespace sluice::storage
