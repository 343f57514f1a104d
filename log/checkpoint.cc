#include "log/checkpoint.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "log/file_util.h"

namespace sluice::storage {

namespace {

constexpr uint32_t kMagic = 0x50434c53;  // "SLCP" little-endian
constexpr uint16_t kVersion = 1;
constexpr size_t kSize = 48;
static_assert(kSize == 4 + 2 + 2 + 8 * 4 + 8, "checkpoint layout");

template <typename T>
void Put(uint8_t* p, T v) {
  memcpy(p, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64): see FORMAT.md
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  memcpy(&v, p, sizeof(T));
  return v;
}

constexpr uint32_t kCleanerMagic = 0x43434c53;  // "SLCC" little-endian
constexpr size_t kCleanerSize = 24;

}  // namespace

absl::Status WriteCleanerCheckpoint(const std::string& path, int64_t first_dirty_offset, Env* env) {
  uint8_t buf[kCleanerSize] = {};
  Put<uint32_t>(buf + 0, kCleanerMagic);
  Put<uint16_t>(buf + 4, kVersion);
  Put<int64_t>(buf + 8, first_dirty_offset);
  Put<uint64_t>(buf + 16, XXH3_64bits(buf, 16));
  return WriteFileAtomically(path, std::span<const uint8_t>(buf, kCleanerSize), env);
}

absl::StatusOr<int64_t> ReadCleanerCheckpoint(const std::string& path, Env* env) {
  auto bytes = ReadWholeFile(path, env);
  if (!bytes.ok()) return bytes.status();
  const std::vector<uint8_t>& b = *bytes;
  if (b.size() != kCleanerSize || Get<uint32_t>(b.data()) != kCleanerMagic ||
      Get<uint64_t>(b.data() + 16) != XXH3_64bits(b.data(), 16)) {
    return absl::DataLossError(path + ": not a valid cleaner checkpoint");
  }
  if (Get<uint16_t>(b.data() + 4) != kVersion) {
    return absl::DataLossError(
        absl::StrFormat("%s: unknown version %d", path, Get<uint16_t>(b.data() + 4)));
  }
  const int64_t offset = Get<int64_t>(b.data() + 8);
  if (offset < 0) return absl::DataLossError(path + ": negative offset");
  return offset;
}

absl::Status WriteRecoveryCheckpoint(const std::string& path, const RecoveryCheckpoint& cp,
                                     Env* env) {
  uint8_t buf[kSize] = {};
  Put<uint32_t>(buf + 0, kMagic);
  Put<uint16_t>(buf + 4, kVersion);
  Put<int64_t>(buf + 8, cp.recovery_offset);
  Put<int64_t>(buf + 16, cp.segment_base);
  Put<uint64_t>(buf + 24, cp.position);
  Put<int64_t>(buf + 32, cp.log_start_offset);
  Put<uint64_t>(buf + 40, XXH3_64bits(buf, 40));
  return WriteFileAtomically(path, std::span<const uint8_t>(buf, kSize), env);
}

absl::StatusOr<RecoveryCheckpoint> ReadRecoveryCheckpoint(const std::string& path, Env* env) {
  auto bytes = ReadWholeFile(path, env);
  if (!bytes.ok()) return bytes.status();
  const std::vector<uint8_t>& b = *bytes;
  if (b.size() != kSize) {
    return absl::DataLossError(absl::StrFormat("%s: %d bytes, expected %d", path, b.size(), kSize));
  }
  if (Get<uint32_t>(b.data()) != kMagic) return absl::DataLossError(path + ": bad magic");
  if (Get<uint64_t>(b.data() + 40) != XXH3_64bits(b.data(), 40)) {
    return absl::DataLossError(path + ": checksum mismatch");
  }
  if (Get<uint16_t>(b.data() + 4) != kVersion) {
    return absl::DataLossError(
        absl::StrFormat("%s: unknown version %d", path, Get<uint16_t>(b.data() + 4)));
  }
  RecoveryCheckpoint cp;
  cp.recovery_offset = Get<int64_t>(b.data() + 8);
  cp.segment_base = Get<int64_t>(b.data() + 16);
  cp.position = Get<uint64_t>(b.data() + 24);
  cp.log_start_offset = Get<int64_t>(b.data() + 32);
  if (cp.recovery_offset < 0 || cp.segment_base < 0 || cp.log_start_offset < 0 ||
      cp.segment_base > cp.recovery_offset) {
    return absl::DataLossError(path + ": inconsistent fields");
  }
  return cp;
}

}  // namespace sluice::storage
