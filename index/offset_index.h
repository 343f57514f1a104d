// Sparse offset index of one log segment: maps an offset to the byte position of the batch
// that starts at (or before) it. See index/FORMAT.md for the file layout.
//
// Lifetime: one OffsetIndex per segment, owned by the Segment. Not thread-safe: every call is
// made on the shard thread that owns the partition.
//
// Durability contract: Append() only stores into a shared mmap (visible to the OS at once, so
// it survives a process kill); Sync() makes entries durable against power loss; Seal() trims
// the preallocated file to its entries and writes the entry count and checksum into the header.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fs/env.h"

namespace sluice::storage {

class MappedIndexFile;  // index/mapped_index_file.h

struct OffsetPosition {
  int64_t offset;     // absolute offset of the first record of a batch
  uint32_t position;  // byte position of that batch in the segment's .log file
};

class OffsetIndex {
 public:
  static constexpr uint32_t kEntrySize = 8;

  // Creates a new, empty index file (truncating any existing file) preallocated to `max_bytes`.
  static absl::StatusOr<std::unique_ptr<OffsetIndex>> Create(
      const std::string& path, int64_t base_offset, uint32_t max_bytes, Env* env = Env::Default(),
      bool defer_file = false);  // see MappedIndexFile::Create
  // Opens an existing index file. Returns DataLossError when the header is damaged, the
  // checksum of a sealed index does not match, or entries are not strictly increasing; the
  // caller then rebuilds the index from the log. `max_bytes` is the preallocation used when the
  // file is reopened for appending (an unsealed index).
  static absl::StatusOr<std::unique_ptr<OffsetIndex>> Open(const std::string& path,
                                                           int64_t base_offset, uint32_t max_bytes,
                                                           Env* env = Env::Default());
  ~OffsetIndex();

  // Adds an entry. `offset` must be > the last entry's offset and >= base_offset, `offset -
  // base_offset` must fit in u32, and `position` must be >= the last entry's position.
  // Returns ResourceExhaustedError when the index is full, FailedPreconditionError if sealed.
  absl::Status Append(int64_t offset, uint32_t position);

  // The entry with the largest offset <= `target`; {base_offset, 0} when there is none.
  // Binary search: O(log entries).
  OffsetPosition Lookup(int64_t target) const;

  // The entry with the smallest position >= `position`, if any (used to bound scans).
  std::optional<OffsetPosition> LookupByPosition(uint32_t position) const;

  // Removes every entry whose offset >= `offset`.
  void TruncateTo(int64_t offset);
  // Removes every entry whose position >= `position`.
  void TruncateToPosition(uint32_t position);

  absl::Status Sync();
  // Makes the index read-only: trims the file to header + entries, stores count and checksum.
  absl::Status Seal();

  bool full() const;
  bool sealed() const;
  bool deferred() const;  // MappedIndexFile::deferred
  absl::Status Materialize();
  bool unsynced() const;  // MappedIndexFile::unsynced / MarkUnsynced
  void MarkUnsynced();
  int TakeUnsyncedFd();  // MappedIndexFile::TakeUnsyncedFd
  size_t entries() const;
  int64_t base_offset() const;
  std::optional<OffsetPosition> last() const;
  OffsetPosition entry(size_t i) const;
  const std::string& path() const;

 private:
  OffsetIndex(std::unique_ptr<MappedIndexFile> file);
  std::unique_ptr<MappedIndexFile> file_;
};

}  // namespace sluice::storage
