// The file layer shared by OffsetIndex and TimeIndex: a 64-byte header followed by fixed-width
// entries, memory-mapped. It knows nothing about what an entry means; the index classes pass a
// successor predicate that says whether one entry may follow another. See index/FORMAT.md.
//
// Every file operation, the mapping included, goes through the Env given to Create/Open
// (fs/env.h); stores into the mapping are durable after Sync() or Seal().
//
// Not thread-safe (same contract as the indexes that own it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fs/env.h"

namespace sluice::storage {

// Fixed-width little-endian integer access; entries are not aligned (12-byte time entries).
uint16_t LoadLe16(const uint8_t* p);
uint32_t LoadLe32(const uint8_t* p);
uint64_t LoadLe64(const uint8_t* p);
void StoreLe16(uint8_t* p, uint16_t v);
void StoreLe32(uint8_t* p, uint32_t v);
void StoreLe64(uint8_t* p, uint64_t v);

// First i in [0, n) for which `pred(i)` is false, given `pred` is true up to some point and false
// after it. O(log n) calls of `pred`.
template <typename Pred>
size_t PartitionPoint(size_t n, Pred pred) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

class MappedIndexFile {
 public:
  static constexpr size_t kHeaderSize = 64;
  static constexpr uint16_t kFormatVersion = 1;
  static constexpr uint32_t kFlagSealed = 1u << 0;
  // Entry 0 holds a real entry. Needed because an all-zero entry 0 (offset base, position 0)
  // is legitimate, so zero bytes alone cannot tell an empty index from a one-entry one.
  static constexpr uint32_t kFlagNonEmpty = 1u << 1;
  static constexpr uint32_t kKnownFlags = kFlagSealed | kFlagNonEmpty;

  // Header field offsets (all little-endian).
  static constexpr size_t kMagicAt = 0;             // u32
  static constexpr size_t kVersionAt = 4;           // u16
  static constexpr size_t kEntrySizeAt = 6;         // u16
  static constexpr size_t kBaseOffsetAt = 8;        // i64
  static constexpr size_t kFlagsAt = 16;            // u32
  static constexpr size_t kCountAt = 20;            // u32
  static constexpr size_t kEntriesChecksumAt = 24;  // u64
  static constexpr size_t kReservedAt = 32;         // 24 zero bytes
  static constexpr size_t kHeaderChecksumAt = 56;   // u64 = XXH3_64bits(header[0, 56))

  // Returns whether `cur` may follow `prev` in the index. `prev` is null for entry 0. The
  // all-zero entry must never be a valid successor of anything, so that zeroed slots (the
  // unused tail and truncated entries) end the list.
  using SuccessorFn = bool (*)(const uint8_t* prev, const uint8_t* cur);

  struct Format {
    uint32_t magic;
    uint16_t entry_size;
    const char* kind;  // for error messages: "offset index" / "time index"
    SuccessorFn valid_successor;
  };

  // With `defer_file`, the file is made (created, sized, mapped, header written) only when
  // first needed: by the first Append, by Seal, or by Materialize. Until then the index is
  // empty, holds no fd or mapping, and Sync has nothing to do: a partition that never gets an
  // index entry (less than index.interval.bytes in its segment) costs no index files.
  static absl::StatusOr<std::unique_ptr<MappedIndexFile>> Create(const std::string& path,
                                                                 const Format& format,
                                                                 int64_t base_offset,
                                                                 uint32_t max_bytes, Env* env,
                                                                 bool defer_file = false);
  static absl::StatusOr<std::unique_ptr<MappedIndexFile>> Open(const std::string& path,
                                                               const Format& format,
                                                               int64_t base_offset,
                                                               uint32_t max_bytes, Env* env);
  ~MappedIndexFile();
  MappedIndexFile(const MappedIndexFile&) = delete;
  MappedIndexFile& operator=(const MappedIndexFile&) = delete;

  // Raw bytes of entry `i` (< entries()).
  const uint8_t* entry(size_t i) const {
    return data_ + kHeaderSize + i * static_cast<size_t>(format_.entry_size);
  }
  size_t entries() const { return entries_; }
  size_t capacity() const { return capacity_; }
  bool full() const { return entries_ >= capacity_; }
  bool sealed() const { return sealed_; }
  int64_t base_offset() const { return base_offset_; }
  const std::string& path() const { return path_; }

  // The entry-relative form of `offset` for an append: FailedPreconditionError if sealed,
  // InvalidArgumentError unless base_offset <= offset < base_offset + 2^32.
  absl::StatusOr<uint32_t> RelativeOffsetForAppend(int64_t offset) const;

  // Stores `bytes` (entry_size of them) as the next entry. The caller has already checked
  // that it is a valid successor of the last entry.
  absl::Status Append(const uint8_t* bytes);
  // Keeps the first `n` entries. Unsealed: zeroes the rest. Sealed: rewrites the file as a
  // smaller sealed index (best effort: a failure leaves a file that Open rejects or the old one).
  void TruncateTo(size_t n);
  // Makes every store into the mapping durable (msync); nothing to do when there was none
  // since the last Sync.
  absl::Status Sync();
  absl::Status Seal();
  // The file of a deferred Create is not made yet (see Create).
  bool deferred() const { return deferred_; }
  absl::Status Materialize();
  // Stores into the mapping that no Sync() has made durable yet.
  bool unsynced() const { return dirty_; }
  // For a sync made elsewhere (an fdatasync of the file through the storage backend, which
  // covers pages dirtied through the mapping as msync does): the fd to sync when there are
  // unsynced stores, which then count as synced, else -1. A failed sync calls MarkUnsynced.
  int TakeUnsyncedFd() {
    if (sealed_ || data_ == nullptr || !dirty_) return -1;
    dirty_ = false;
    return fd_;
  }
  // The file holds stores made through an earlier mapping (since unmapped) that no sync covered:
  // the next Sync() syncs the whole mapping, which covers the file's pages whoever dirtied them.
  void MarkUnsynced() {
    if (!sealed_) dirty_ = true;
  }

 private:
  MappedIndexFile(std::string path, const Format& format, int64_t base_offset, Env* env, int fd);

  // Builds a complete header (checksum included) for the current state into `out`.
  void BuildHeader(uint8_t* out, bool sealed, uint32_t count, uint64_t entries_checksum) const;
  // Rewrites the in-mapping header of an unsealed file (after the non-empty flag changes).
  void WriteUnsealedHeader();
  absl::Status Map(size_t len, bool writable);
  void Unmap();
  absl::Status Corrupt(const std::string& what) const;
  absl::Status ValidateHeader(uint64_t file_size);
  absl::Status OpenSealed(uint64_t file_size);
  absl::Status OpenUnsealed(uint64_t file_size, uint32_t max_bytes);
  uint64_t EntriesChecksum(size_t n) const;

  std::string path_;
  Format format_;
  int64_t base_offset_;
  Env* const env_;
  int fd_;
  uint8_t* data_ = nullptr;  // mapping of [0, mapped_len_)
  size_t mapped_len_ = 0;
  bool writable_ = false;
  size_t entries_ = 0;
  size_t capacity_ = 0;  // entry slots this file may hold
  bool sealed_ = false;
  uint32_t header_flags_ = 0;  // flags as last read or written
  // The mapping holds stores (header, entries, zeroed entries) that no Sync has made durable
  // yet. Not set by Open's zeroing of the tail past the entries: until an entry is appended
  // after them, stale bytes there end the list where they ended it before.
  bool dirty_ = false;
  uint64_t sealed_checksum_ = 0;  // entries checksum from a sealed header, checked on Open
  bool deferred_ = false;         // see Create(defer_file)
};

}  // namespace sluice::storage
