// A partition's leader epochs: which epoch's leader wrote the log from which offset on
// (Kafka's leader-epoch-checkpoint, KIP-101). A follower asks its leader where its own last
// epoch ends (OffsetsForLeaderEpoch) and cuts its log there, so that a tail written by a
// deposed leader never stays beside what the new leader wrote at the same offsets.
//
// File `leader-epoch-checkpoint` in the partition's directory, text as Kafka's:
//   0                  format version
//   N                  number of entries
//   EPOCH START_OFFSET N lines, epochs and offsets strictly increasing
// Rewritten whole (temp file, fsync, rename) on every change; changes come with leadership
// changes and truncations, not with appends. A file lost or older than the log is safe: the
// follower then asks about an older epoch and cuts more, fetching the difference again.
//
// Threading: the partition's owning shard.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "fs/env.h"

namespace sluice::storage {

class LeaderEpochCache {
 public:
  static constexpr const char* kFileName = "leader-epoch-checkpoint";
  static constexpr int32_t kUndefinedEpoch = -1;
  static constexpr int64_t kUndefinedOffset = -1;

  // Reads the file of `dir` (none, or a damaged one: empty, with a warning). Entries that
  // start at or past `log_end` (the log lost its tail) are dropped.
  static LeaderEpochCache Load(const std::string& dir, int64_t log_end, Env* env = Env::Default());
  // The entries of a file's text, those starting at or past `log_end` dropped; nullopt when
  // it is not a valid checkpoint (bad version, count, numbers, or entries not increasing).
  static std::optional<std::vector<std::pair<int32_t, int64_t>>> Parse(std::string_view text,
                                                                       int64_t log_end);
  // The file's text for `entries`.
  static std::string Format(const std::vector<std::pair<int32_t, int64_t>>& entries);

  // `epoch` begins at `start_offset`: a new last entry when epoch is newer than the last
  // (an entry starting at or after `start_offset` with an older epoch is dropped first).
  // Saved when it changed.
  absl::Status Assign(int32_t epoch, int64_t start_offset);
  // The log was cut to `end`: entries starting at or past it go. Saved when it changed.
  absl::Status TruncateFromEnd(int64_t end);

  // Kafka's endOffsetFor: for a follower whose last epoch is `epoch`, the largest epoch here
  // that is <= `epoch` and the offset where it ends (the next epoch's start, or `log_end` for
  // the latest). {kUndefinedEpoch, kUndefinedOffset} when every epoch here is newer, or there
  // is none.
  std::pair<int32_t, int64_t> EndOffsetFor(int32_t epoch, int64_t log_end) const;

  int32_t latest_epoch() const {
    return entries_.empty() ? kUndefinedEpoch : entries_.back().first;
  }
  const std::vector<std::pair<int32_t, int64_t>>& entries() const { return entries_; }

 private:
  absl::Status Save() const;

  std::string path_;
  Env* env_ = Env::Default();
  std::vector<std::pair<int32_t, int64_t>> entries_;  // (epoch, start offset), increasing
};

}  // namespace sluice::storage
