#include "log/checkpoint.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "log/file_util.h"

namespace sluice::storage {

bool Consistent(const RecoveryCheckpoint& cp) {
  return cp.recovery_offset >= 0 && cp.segment_base >= 0 && cp.log_start_offset >= 0 &&
         cp.segment_base <= cp.recovery_offset;
}

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

namespace {

// Version 2 (log/FORMAT.md): two slots, each alone in a 4 KiB page so that a torn or lost
// write of one never damages the other; a write overwrites the older slot in place, so the
// file keeps its inode and its name (no temp file, rename or directory sync per checkpoint).
constexpr uint16_t kSlotsVersion = 2;
constexpr size_t kSlotBytes = 56;
constexpr size_t kSlotStride = 4096;
constexpr size_t kSlotsFileBytes = 2 * kSlotStride;
static_assert(kSlotBytes == 4 + 2 + 2 + 8 + 8 * 4 + 8, "checkpoint slot layout");

struct Slot {
  uint64_t sequence = 0;  // 0: not a valid slot
  RecoveryCheckpoint cp;
};

void EncodeSlot(uint64_t sequence, const RecoveryCheckpoint& cp, uint8_t* buf) {
  memset(buf, 0, kSlotBytes);
  Put<uint32_t>(buf + 0, kMagic);
  Put<uint16_t>(buf + 4, kSlotsVersion);
  Put<uint64_t>(buf + 8, sequence);
  Put<int64_t>(buf + 16, cp.recovery_offset);
  Put<int64_t>(buf + 24, cp.segment_base);
  Put<uint64_t>(buf + 32, cp.position);
  Put<int64_t>(buf + 40, cp.log_start_offset);
  Put<uint64_t>(buf + 48, XXH3_64bits(buf, 48));
}

// A slot that fails its magic, version, checksum or field checks is not valid (sequence 0).
Slot DecodeSlot(const uint8_t* buf) {
  Slot slot;
  if (Get<uint32_t>(buf) != kMagic || Get<uint16_t>(buf + 4) != kSlotsVersion ||
      Get<uint64_t>(buf + 48) != XXH3_64bits(buf, 48) || Get<uint64_t>(buf + 8) == 0) {
    return slot;
  }
  slot.cp.recovery_offset = Get<int64_t>(buf + 16);
  slot.cp.segment_base = Get<int64_t>(buf + 24);
  slot.cp.position = Get<uint64_t>(buf + 32);
  slot.cp.log_start_offset = Get<int64_t>(buf + 40);
  if (Consistent(slot.cp)) slot.sequence = Get<uint64_t>(buf + 8);
  return slot;
}

// The first write (or an upgrade from version 1): the whole file, atomically.
absl::Status CreateSlotsFile(const std::string& path, const RecoveryCheckpoint& cp, Env* env) {
  std::vector<uint8_t> file(kSlotsFileBytes, 0);
  EncodeSlot(1, cp, file.data());
  return WriteFileAtomically(path, file, env);
}

}  // namespace

absl::Status WriteRecoveryCheckpoint(const std::string& path, const RecoveryCheckpoint& cp,
                                     Env* env) {
  int fd = env->Open(path, OpenMode::kReadWrite);
  if (fd == -ENOENT) return CreateSlotsFile(path, cp, env);
  if (fd < 0) return ErrnoStatus("open", path, -fd);
  struct Closer {
    Env* env;
    int fd;
    ~Closer() { (void)env->Close(fd); }
  } closer{env, fd};
  if (env->Size(fd) != static_cast<off_t>(kSlotsFileBytes)) return CreateSlotsFile(path, cp, env);
  Slot slots[2];
  for (int i = 0; i < 2; ++i) {
    uint8_t buf[kSlotBytes];
    auto got = PreadFully(fd, buf, kSlotBytes, i * kSlotStride, env);
    if (!got.ok()) return got.status();
    if (*got == kSlotBytes) slots[i] = DecodeSlot(buf);
  }
  // Overwrite the older (or invalid) slot: the newer one stays whole whatever happens to this
  // write, so a crash leaves the new checkpoint or the previous one.
  const int target = slots[0].sequence <= slots[1].sequence ? 0 : 1;
  const uint64_t sequence = std::max(slots[0].sequence, slots[1].sequence) + 1;
  uint8_t buf[kSlotBytes];
  EncodeSlot(sequence, cp, buf);
  if (absl::Status s = PwriteFully(fd, buf, kSlotBytes, target * kSlotStride, path, env); !s.ok()) {
    return s;
  }
  if (int rc = env->Fdatasync(fd); rc < 0) return ErrnoStatus("fdatasync", path, -rc);
  return absl::OkStatus();
}

absl::StatusOr<RecoveryCheckpoint> ReadRecoveryCheckpoint(const std::string& path, Env* env) {
  auto bytes = ReadWholeFile(path, env);
  if (!bytes.ok()) return bytes.status();
  const std::vector<uint8_t>& b = *bytes;
  if (b.size() == kSlotsFileBytes) {
    const Slot a = DecodeSlot(b.data());
    const Slot c = DecodeSlot(b.data() + kSlotStride);
    if (a.sequence == 0 && c.sequence == 0) {
      return absl::DataLossError(path + ": neither checkpoint slot is valid");
    }
    return a.sequence > c.sequence ? a.cp : c.cp;
  }
  // Version 1: one record (files written before version 2).
  if (b.size() != kSize) {
    return absl::DataLossError(
        absl::StrFormat("%s: %d bytes, expected %d or %d", path, b.size(), kSize, kSlotsFileBytes));
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
  if (!Consistent(cp)) return absl::DataLossError(path + ": inconsistent fields");
  return cp;
}

}  // namespace sluice::storage
