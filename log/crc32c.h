// CRC32C (Castagnoli), the checksum of Kafka RecordBatch v2. Chooses at start-up (CPUID) from:
// VPCLMULQDQ carry-less-multiply folding run side by side with crc32 instruction chains
// (VPCLMULQDQ + AVX2), three interleaved SSE4.2 crc32 chains, or a table-driven fallback
// (log/crc32c_internal.h lists them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::storage {

// Extends `crc` (0 for a fresh checksum) over `data[0, n)`. Crc32c(0, "123456789", 9) ==
// 0xE3069283.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

// Copies src[0, n) to dst (non-overlapping) and returns Crc32c(crc, src, n), reading the
// input once: appends validate a batch while copying it into the write buffer.
uint32_t Crc32cCopy(uint32_t crc, void* dst, const void* src, size_t n);

// True when the CPU has the SSE4.2 crc32 instruction, i.e. a hardware path is in use (reported
// in the start-up log).
bool Crc32cIsHardwareAccelerated();
// The implementation Crc32c() uses on this CPU, e.g. "hybrid-avx2" (for the start-up log).
const char* Crc32cImplementationName();

}  // namespace sluice::storage
