// Log compaction (cleanup.policy=compact): keeps the latest record of each key in the sealed,
// durable part of a partition log and drops tombstones delete.retention.ms after they were
// first retained by a cleaning pass. File protocol and on-disk effects: log/FORMAT.md
// ("Compaction").
//
// Threading: like everything in log/, the cleaner runs on the shard thread that owns the log.
// PartitionLog::Tick() gives it a budget (LogConfig::cleaner_bytes_per_tick): each call reads
// at most that many bytes of segment data, writes and fdatasyncs at most that many, and then
// returns; a pass spans as many ticks as it needs. A compressed batch is charged its stored
// size plus its decompressed size (the codec work done on it). Readers keep their
// shared_ptr<SegmentFile>, so a zero-copy send of a segment that a swap replaces finishes from the
// old file.
//
// A pass:
//   1. Cleanable range: the sealed segments from the log start up to (not including) the first
//      segment that is active, not yet fully written, not below the recovery checkpoint on disk,
//      or younger than min.compaction.lag.ms. Its dirty part starts at the cleaner checkpoint.
//      A pass starts when dirty bytes / cleanable bytes >= min.cleanable.dirty.ratio (or a
//      dirty segment is older than max.compaction.lag.ms).
//   2. Map: key hash (XXH3-128) -> latest offset over the dirty part, bounded by
//      cleaner_dedupe_buffer_bytes at a segment boundary.
//   3. Rewrite: the cleanable segments, merged into groups of at most segment.bytes, are copied
//      into `<base>.log.cleaned` (+ indexes) keeping each record that is the latest of its key,
//      then swapped into place crash-safely, one group at a time. Compressed batches are
//      decompressed, filtered and recompressed with their own codec (log/compression.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "fs/env.h"
#include "log/log_config.h"
#include "log/record_batch.h"

namespace sluice::storage {

class PartitionLog;
class Segment;
class SegmentFile;

struct CleanerStats {
  int64_t passes = 0;          // passes completed
  int64_t passes_aborted = 0;  // the log changed under a pass (retention, close) or an error
  int64_t groups_swapped = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  int64_t records_removed = 0;     // superseded by a later record with the same key
  int64_t tombstones_removed = 0;  // past their delete horizon
  int64_t batches_removed = 0;
  uint64_t bytes_decompressed = 0;  // records sections of compressed batches, decompressed
};

// key hash -> latest offset of a record with that key in the dirty range.
class OffsetMap {
 public:
  static constexpr size_t kBytesPerEntry = 24;  // 16-byte hash + 8-byte offset
  void Put(std::string_view key, int64_t offset);
  // The latest offset of `key`, or -1 when the map has none.
  int64_t Get(std::string_view key) const;
  size_t size() const { return map_.size(); }
  void Clear() { map_.clear(); }

 private:
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, int64_t> map_;
};

// What the cleaner decides for one batch.
struct BatchFilterInput {
  const OffsetMap* map = nullptr;
  int64_t now_ms = 0;
  int64_t delete_retention_ms = 0;
  // Keep the batch's header (as an empty batch) even when no record survives: the last batch
  // of a group (so segments stay contiguous) or a producer's last batch (sequence state).
  bool keep_if_empty = false;
};
struct BatchFilterResult {
  enum Fate { kKeepAsIs, kRewritten, kDropped } fate = kKeepAsIs;
  int records_removed = 0;
  int tombstones_removed = 0;
  size_t decompressed_bytes = 0;  // size of the decompressed batch (0 when not compressed)
};
// Filters one validated batch: records whose key has a later offset in `map` go, tombstones
// whose batch's delete horizon has passed go, records without a key stay. A compressed batch is
// decompressed (at most kDefaultMaxDecompressedRecordsBytes) and filtered the same way; when
// rewritten it is compressed again with its own codec (Kafka keeps the producer's codec), except
// that a batch left without records is written uncompressed. Control batches, and batches whose
// records do not decompress or parse, are kept as they are. When the fate is kRewritten, `out`
// holds the new batch (same base offset, lastOffsetDelta, producer fields, partition leader
// epoch, maxTimestamp and record timestamps; new CRC); a batch that retains a tombstone and has
// no delete horizon yet gets one (attribute bit 6, baseTimestamp = now + delete.retention.ms,
// record timestamp deltas re-encoded against it).
BatchFilterResult FilterBatch(std::span<const uint8_t> batch, const BatchFilterInput& in,
                              std::vector<uint8_t>* out);
// Adds every keyed record of a non-control batch to `map`, decompressing a compressed one as
// FilterBatch() does (a batch FilterBatch() would keep whole adds nothing). Returns the size of
// the decompressed batch (0 when not compressed), for the cleaner's work budget.
size_t MapBatch(std::span<const uint8_t> batch, OffsetMap* map);

// Finishes or discards a cleaner swap that a crash interrupted (log/FORMAT.md "Compaction"):
// a `<base>.log.swap` is committed (the segments it replaces are removed, it is renamed into
// place, its indexes rebuilt later by the open); any `*.cleaned` file is uncommitted output and
// removed. Run by PartitionLog::Recover before it lists the segments.
absl::Status RecoverInterruptedSwaps(const std::string& dir, Env* env);

// Lowers the cleaner checkpoint of the log in `dir` to `offset` when it is above it (a missing
// or damaged one is left alone: it means "all dirty" already). A checkpoint left above a
// truncated log's end would count the offsets appended there again as cleaned, so a pass would
// not map their keys: older records of those keys would be kept longer, never a record lost.
absl::Status LowerCleanerCheckpoint(const std::string& dir, int64_t offset, Env* env);

// Points of the swap at which a test can "crash" (stop, leaving the files as they are).
enum class SwapStep {
  kOutputWritten = 0,  // .cleaned files written and synced
  kCommitted = 1,      // .log.cleaned renamed to .log.swap (+ dir fsync)
  kFirstSourceDeleted = 2,
  kSourcesDeleted = 3,
  kIndexesRenamed = 4,  // .index/.timeindex.cleaned renamed to their final names
  kLogRenamed = 5,      // .log.swap renamed to .log: on disk, the swap is complete
};

class LogCleaner {
 public:
  explicit LogCleaner(PartitionLog* log);
  ~LogCleaner();
  LogCleaner(const LogCleaner&) = delete;
  LogCleaner& operator=(const LogCleaner&) = delete;

  // Does at most `budget_bytes` of work. `force` starts a pass below the dirty ratio.
  // Returns true while a pass is in progress.
  bool Step(int64_t now_ms, uint64_t budget_bytes, bool force);
  // Abandons a pass in progress and removes its uncommitted output.
  void Abort(absl::string_view why);
  // The log was cut back to `offset` (PartitionLog::TruncateTo): a pass in progress is
  // abandoned (its sources change) and the dirty part starts at `offset` at the latest, in
  // the cleaner checkpoint too (LowerCleanerCheckpoint).
  void LogTruncated(int64_t offset);

  bool in_progress() const { return pass_ != nullptr; }
  int64_t first_dirty_offset() const { return first_dirty_; }
  const CleanerStats& stats() const { return stats_; }
  // Dirty bytes / cleanable bytes now; -1 when nothing is cleanable.
  double DirtyRatio(int64_t now_ms) const;

  // Tests: stop the next swap after `step` as if the process died there (-1: never). The
  // cleaner does nothing more afterwards; drop the log without Close() and reopen it.
  static void TEST_CrashAfter(int step);

 private:
  struct Pass;
  struct Source;
  struct Range {
    size_t count = 0;  // cleanable segments from the front
    uint64_t dirty_bytes = 0;
    uint64_t total_bytes = 0;
    bool overdue = false;  // a dirty segment is older than max.compaction.lag.ms
  };
  Range CleanableRange(int64_t now_ms) const;
  bool StartPass(int64_t now_ms, bool force);
  bool SourcesStillThere() const;
  void PlanGroups();
  absl::Status MapStep(uint64_t* budget);
  absl::Status RewriteStep(uint64_t* budget);
  absl::Status FlushOutput(bool sync);
  absl::Status SwapGroup();
  void FinishPass();
  void RemoveCleanedFiles();
  bool CrashHere(SwapStep step);

  PartitionLog* const log_;
  int64_t first_dirty_ = 0;
  std::unique_ptr<Pass> pass_;
  CleanerStats stats_;
  bool crashed_ = false;
};

}  // namespace sluice::storage
