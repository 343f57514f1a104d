// Both CRC32C implementations, exposed so tests can compare them. Use Crc32c() elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::storage::internal {

// Portable slicing-by-8 implementation; same contract as Crc32c().
uint32_t Crc32cSoftware(uint32_t crc, const void* data, size_t n);
// SSE4.2 crc32 instruction. Only call when Crc32cIsHardwareAccelerated() is true.
uint32_t Crc32cHardware(uint32_t crc, const void* data, size_t n);
// Crc32cCopy() with the crc32 instruction; same precondition.
uint32_t Crc32cCopyHardware(uint32_t crc, void* dst, const void* src, size_t n);

}  // namespace sluice::storage::internal
