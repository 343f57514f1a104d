// Sparse time index of one log segment: maps a timestamp to the first offset whose batch has a
// max timestamp >= it. See index/FORMAT.md for the file layout.
//
// Same lifetime, threading and durability contract as OffsetIndex.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fs/env.h"

namespace sluice::storage {

class MappedIndexFile;

struct TimestampOffset {
  int64_t timestamp;  // max timestamp seen in the segment up to and including `offset`'s batch
  int64_t offset;     // absolute offset of the first record of that batch
};

class TimeIndex {
 public:
  static constexpr uint32_t kEntrySize = 12;

  static absl::StatusOr<std::unique_ptr<TimeIndex>> Create(
      const std::string& path, int64_t base_offset, uint32_t max_bytes, Env* env = Env::Default(),
      bool defer_file = false);  // see MappedIndexFile::Create
  // DataLossError on a damaged header/checksum or entries whose timestamps or offsets decrease.
  static absl::StatusOr<std::unique_ptr<TimeIndex>> Open(const std::string& path,
                                                         int64_t base_offset, uint32_t max_bytes,
                                                         Env* env = Env::Default());
  ~TimeIndex();

  // Adds an entry if `timestamp` is greater than the last entry's timestamp (otherwise it is a
  // no-op returning OK). `offset` must be >= the last entry's offset.
  absl::Status MaybeAppend(int64_t timestamp, int64_t offset);

  // The entry with the largest timestamp <= `target`, or {-1, base_offset} if none.
  // Scanning the log from that entry's offset finds the first batch with max timestamp >= target.
  TimestampOffset Lookup(int64_t target) const;

  void TruncateTo(int64_t offset);  // removes entries with offset >= `offset`
  absl::Status Sync();
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
  std::optional<TimestampOffset> last() const;
  TimestampOffset entry(size_t i) const;
  const std::string& path() const;

 private:
  TimeIndex(std::unique_ptr<MappedIndexFile> file);
  std::unique_ptr<MappedIndexFile> file_;
};

}  // namespace sluice::storage
