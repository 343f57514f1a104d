// Zigzag varints as used inside Kafka RecordBatch v2 records (protobuf-style base-128, least
// significant group first, zigzag so that small negative numbers stay short).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace sluice::storage {

inline constexpr size_t kMaxVarint32Bytes = 5;
inline constexpr size_t kMaxVarint64Bytes = 10;

inline constexpr uint32_t ZigZagEncode32(int32_t v) {
  // Arithmetic right shift is well defined for negative values since C++20.
  return (static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31);
}
inline constexpr uint64_t ZigZagEncode64(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline constexpr int32_t ZigZagDecode32(uint32_t v) {
  return static_cast<int32_t>((v >> 1) ^ (0u - (v & 1u)));
}
inline constexpr int64_t ZigZagDecode64(uint64_t v) {
  return static_cast<int64_t>((v >> 1) ^ (uint64_t{0} - (v & 1u)));
}

inline constexpr size_t UnsignedVarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
inline constexpr size_t VarintSize32(int32_t v) { return UnsignedVarintSize(ZigZagEncode32(v)); }
inline constexpr size_t VarintSize64(int64_t v) { return UnsignedVarintSize(ZigZagEncode64(v)); }

inline void AppendUnsignedVarint(std::vector<uint8_t>* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<uint8_t>(v));
}
inline void AppendVarint32(std::vector<uint8_t>* out, int32_t v) {
  AppendUnsignedVarint(out, ZigZagEncode32(v));
}
inline void AppendVarint64(std::vector<uint8_t>* out, int64_t v) {
  AppendUnsignedVarint(out, ZigZagEncode64(v));
}

// Reads an unsigned varint of at most `max_bytes` bytes (5 or 10) from data[*pos, end) whose
// value fits in `max_bytes == 5 ? 32 : 64` bits. Advances *pos on success. Returns false for a
// truncated varint, one longer than `max_bytes`, or one whose last byte sets bits beyond the
// width (encoders never produce those; accepting them would let two encodings mean one value).
inline bool ReadUnsignedVarint(std::span<const uint8_t> data, size_t* pos, size_t max_bytes,
                               uint64_t* out) {
  const unsigned width = max_bytes == kMaxVarint32Bytes ? 32 : 64;
  uint64_t value = 0;
  size_t p = *pos;
  for (size_t i = 0; i < max_bytes; ++i) {
    if (p >= data.size()) return false;
    const uint8_t b = data[p++];
    const unsigned shift = static_cast<unsigned>(7 * i);
    const uint64_t group = b & 0x7f;
    if (shift + 7 > width && (group >> (width - shift)) != 0) return false;
    value |= group << shift;
    if ((b & 0x80) == 0) {
      *pos = p;
      *out = value;
      return true;
    }
  }
  return false;  // continuation bit still set after max_bytes
}

inline bool ReadVarint32(std::span<const uint8_t> data, size_t* pos, int32_t* out) {
  uint64_t raw;
  if (!ReadUnsignedVarint(data, pos, kMaxVarint32Bytes, &raw)) return false;
  *out = ZigZagDecode32(static_cast<uint32_t>(raw));
  return true;
}
inline bool ReadVarint64(std::span<const uint8_t> data, size_t* pos, int64_t* out) {
  uint64_t raw;
  if (!ReadUnsignedVarint(data, pos, kMaxVarint64Bytes, &raw)) return false;
  *out = ZigZagDecode64(raw);
  return true;
}

}  // namespace sluice::storage
