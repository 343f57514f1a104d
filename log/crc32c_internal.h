// The CRC32C implementations and their folding constants, exposed so tests and benchmarks can
// compare them. Use Crc32c() elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::storage::internal {

// Castagnoli polynomial 0x1EDC6F41, bit-reflected (CRC32C processes bits LSB first).
inline constexpr uint32_t kCrc32cPolyReflected = 0x82F63B78;

// x^n mod P in the CRC register's bit order: bit i holds the coefficient of x^(31-i), so x^0
// is 0x80000000 and multiplying by x is a right shift (reducing when x^32 appears).
constexpr uint32_t XPowModP(uint64_t n) {
  uint32_t v = 0x80000000u;
  for (; n > 0; --n) v = (v & 1) ? (v >> 1) ^ kCrc32cPolyReflected : v >> 1;
  return v;
}

// Multipliers that move a 128-bit chunk of the message `bits` bits further on, modulo P (the
// carry-less-multiply folding of Intel's "Fast CRC Computation for Generic Polynomials Using
// PCLMULQDQ", bit-reflected). A chunk loaded little-endian holds the coefficient of x^(127-i)
// in bit i: its low 64-bit half H is the high-degree half. Chunk * x^bits =
// H * x^(bits+64) + L * x^bits, and a 64x32-bit carry-less product of reflected operands
// lands one bit "early" in a 128-bit register, i.e. already multiplied by x^33. Hence
// low_half = x^(bits+31) mod P (multiplies H), high_half = x^(bits-33) mod P (multiplies L).
struct FoldConstants {
  uint64_t low_half;
  uint64_t high_half;
  friend constexpr bool operator==(const FoldConstants&, const FoldConstants&) = default;
};
constexpr FoldConstants FoldBy(uint64_t bits) { return {XPowModP(bits + 31), XPowModP(bits - 33)}; }

// Layouts of the folding paths.
inline constexpr int kClmulLanes = 8;    // PCLMULQDQ: 8 x 16 bytes a step
inline constexpr int kVpclmulLanes = 8;  // VPCLMULQDQ: 8 x 32 bytes a step
// The hybrid path cuts the message into blocks [C0 | C1 | C2 | F]: three crc32 instruction
// chains run over the C parts while VPCLMULQDQ folds F, in the same loop, so both execution
// units work at once. Each of the kHybridSteps steps reads kHybridChainBytes of every chain
// and 256 bytes of F.
inline constexpr size_t kHybridSteps = 16;
inline constexpr size_t kHybridChainBytes = 80;
inline constexpr size_t kHybridChainLen = kHybridSteps * kHybridChainBytes;   // |Cj|
inline constexpr size_t kHybridFoldLen = kHybridSteps * 32 * kVpclmulLanes;   // |F|
inline constexpr size_t kHybridBlock = 3 * kHybridChainLen + kHybridFoldLen;  // bytes
// A chain's CRC r_j equals the 4 bytes after C_j holding r_j: it is folded from the chunk at
// (j + 1) * |Cj| to the chunk ending the block.
constexpr uint64_t HybridChainFoldBits(int j) {
  return 8 * (kHybridBlock - (j + 1) * kHybridChainLen - 16);
}

// Every fold distance the implementations use, in bits.
inline constexpr uint64_t kFoldDistances[] = {128,
                                              256,
                                              512,
                                              128 * kClmulLanes,
                                              256 * kVpclmulLanes,
                                              8 * kHybridBlock,
                                              HybridChainFoldBits(0),
                                              HybridChainFoldBits(1),
                                              HybridChainFoldBits(2)};

// The implementations Crc32c() chooses from. On AMD EPYC (Zen 3) kSse42 and kVpclmulAvx2 both
// run about 8 bytes a cycle, kClmul 4, kHybridAvx2 about 11 (bench/storage/log_bench.cc).
enum class Crc32cImpl {
  kSoftware,     // slicing-by-8 tables
  kSse42,        // three interleaved crc32 instruction chains
  kClmul,        // PCLMULQDQ folding of 8 x 128-bit lanes, crc32 instruction for the rest
  kVpclmulAvx2,  // VPCLMULQDQ folding of 8 x 256-bit lanes
  kHybridAvx2,   // VPCLMULQDQ folding and crc32 chains side by side; copies as kVpclmulAvx2
};
inline constexpr Crc32cImpl kAllCrc32cImpls[] = {Crc32cImpl::kSoftware, Crc32cImpl::kSse42,
                                                 Crc32cImpl::kClmul, Crc32cImpl::kVpclmulAvx2,
                                                 Crc32cImpl::kHybridAvx2};
const char* Crc32cImplName(Crc32cImpl impl);
// Whether this CPU can run `impl` (CPUID, checked once).
bool Crc32cImplSupported(Crc32cImpl impl);
// The fastest supported implementation: what Crc32c() uses unless forced.
Crc32cImpl Crc32cBestImpl();
// Crc32c() / Crc32cCopy() with the given implementation; it must be supported.
uint32_t Crc32cWith(Crc32cImpl impl, uint32_t crc, const void* data, size_t n);
uint32_t Crc32cCopyWith(Crc32cImpl impl, uint32_t crc, void* dst, const void* src, size_t n);
// Test hook: makes Crc32c() and Crc32cCopy() use `impl` (must be supported) until the next call.
void ForceCrc32cImplForTesting(Crc32cImpl impl);
Crc32cImpl ActiveCrc32cImpl();

// Portable slicing-by-8 implementation; same contract as Crc32c().
uint32_t Crc32cSoftware(uint32_t crc, const void* data, size_t n);
// SSE4.2 crc32 instruction. Only call when Crc32cIsHardwareAccelerated() is true.
uint32_t Crc32cHardware(uint32_t crc, const void* data, size_t n);
// Crc32cCopy() with the crc32 instruction; same precondition.
uint32_t Crc32cCopyHardware(uint32_t crc, void* dst, const void* src, size_t n);

}  // namespace sluice::storage::internal
