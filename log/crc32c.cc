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

uint32_t Crc32cHardware(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  // Byte steps up to an 8-byte boundary so the wide loads below do not straddle cache lines.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(c, *p++);
    --n;
  }
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    c64 = _mm_crc32_u64(c64, w);
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

uint32_t Crc32c(uint32_t crc, const void* data, size_t n) {
  if (n == 0) return crc;
  return Crc32cIsHardwareAccelerated() ? internal::Crc32cHardware(crc, data, n)
                                       : internal::Crc32cSoftware(crc, data, n);
}

}  // namespace sluice::storage
