// One segment of a partition log: `<20-digit base offset>.log` holding whole RecordBatch v2
// batches back to back, plus its sparse `.index` and `.timeindex` (index/). See log/FORMAT.md.
//
// A Segment is owned by its PartitionLog and used only on the owning shard thread. Its .log
// file is shared (SegmentFile) with readers that send file ranges zero-copy, so the fd stays
// open until the last such send finishes, even after retention has deleted the segment.
//
// Open files: a segment in a SegmentCache (log/segment_cache.h) may have its files closed
// between two calls into its log, keeping what it knows about them (size, offsets, max
// timestamp, whether its indexes are sealed or full) in memory. Its own methods open them
// again when needed; callers of file(), fd(), offset_index() and time_index() call Acquire()
// first.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "index/offset_index.h"
#include "index/time_index.h"
#include "log/log_config.h"
#include "log/record_batch.h"
#include "log/segment_cache.h"

namespace sluice::storage {

class IoBackend;

// An open .log file: a real fd (sendfile/splice read it directly) opened through `env`, which
// closes it when the last holder lets go.
class SegmentFile {
 public:
  SegmentFile(int fd, std::string path, Env* env) : fd_(fd), path_(std::move(path)), env_(env) {}
  ~SegmentFile();
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  Env* env() const { return env_; }

 private:
  int fd_;
  std::string path_;
  Env* env_;
};

// Result of walking the batches of a .log file.
struct ScanResult {
  uint64_t end_position = 0;  // position after the last good batch
  int64_t next_offset = -1;   // last offset of the last good batch + 1 (-1: no batch)
  int64_t max_timestamp = -1;
  int64_t offset_of_max_timestamp = -1;
  uint64_t batches = 0;
  // OK when the walk reached `limit` exactly; otherwise why it stopped early (torn or
  // corrupt batch at end_position).
  absl::Status stop_reason;
};

// Walks batches of `fd` in [from, limit) of the segment whose base offset is `segment_base`.
// With `verify_crc`, each batch is fully validated; otherwise only headers are read. Offsets
// must increase, start at or above `segment_base` and stay within the u32 relative range of
// the index. `visit` sees each good batch's header and position. Reads go through `env`.
ScanResult ScanBatches(int fd, uint64_t from, uint64_t limit, bool verify_crc, int64_t segment_base,
                       const std::function<void(const BatchHeader&, uint64_t position)>& visit,
                       Env* env = Env::Default());

class Segment {
 public:
  static std::string FileStem(int64_t base_offset);  // 20-digit, zero-padded
  // Parses "<20 digits>.log"; false for any other name.
  static bool ParseLogFileName(const std::string& name, int64_t* base_offset);

  // A new, empty segment with fresh (preallocated) index files. Every file operation of a
  // segment goes through `env` (fs/env.h), which must outlive it.
  static absl::StatusOr<std::unique_ptr<Segment>> Create(const std::string& dir,
                                                         int64_t base_offset,
                                                         const LogConfig& config, Env* env);
  // A new, empty segment whose three files carry the extra suffix ".cleaned": the output of
  // the log cleaner (log/cleaner.h), renamed into place by its swap. Only OnAppend, Seal and
  // fd() are meaningful on it; it is dropped (not Delete()d) before the swap's renames.
  static absl::StatusOr<std::unique_ptr<Segment>> CreateCleaned(const std::string& dir,
                                                                int64_t base_offset,
                                                                const LogConfig& config, Env* env);
  // Opens an existing segment's .log file. Indexes are opened by OpenIndexes() or rebuilt by
  // RebuildIndexes(); until one of them succeeds the segment must not be read.
  static absl::StatusOr<std::unique_ptr<Segment>> Open(const std::string& dir, int64_t base_offset,
                                                       const LogConfig& config, Env* env);
  ~Segment();

  // Opens the existing index files, trusting them (and the log) only below `trusted_limit`, a
  // batch boundary: unsealed entries at or past it are dropped, and the bookkeeping (next
  // offset, max timestamp) is recovered by walking the headers after the last entry below it.
  // DataLossError (or NotFound) means the indexes must be rebuilt.
  absl::Status OpenIndexes(uint64_t trusted_limit);
  // Recreates both indexes by walking the log's batches in [0, limit). Returns the walk.
  absl::StatusOr<ScanResult> RebuildIndexes(uint64_t limit, bool verify_crc);
  // Re-validates [from, limit) batch by batch (after OpenIndexes(from) or
  // RebuildIndexes(from)), extending the indexes; used for the tail past the recovery point.
  // The segment then ends at the returned end_position; the caller truncates the file when
  // stop_reason is not OK.
  ScanResult RecoverTail(uint64_t from, uint64_t limit);

  // Records a batch appended at `position` (already in the file or queued for writing):
  // updates sizes, max timestamp and, every index.interval.bytes, the indexes.
  void OnAppend(const BatchHeader& header, uint64_t position, uint32_t size);

  // Cuts the segment at `position` (a batch boundary, where the batches before it end at
  // `next_offset`): file, indexes and bookkeeping (the max timestamp recomputed from what
  // stays). Makes nothing durable: the caller fdatasyncs the file and syncs the indexes (a
  // sealed index is rewritten and synced in place, best effort: one left stale names a
  // position past the file's end, which the next open reports and rebuilds).
  absl::Status TruncateTo(uint64_t position, int64_t next_offset);
  // Called when the segment stops being active: final time index entry, indexes sealed.
  absl::Status Seal();
  // Renames the .log to *.deleted (the commit point: start-up removes what is left of a
  // deleted segment) and unlinks the files. Open SegmentFile handles stay readable. With
  // `io`, the unlinks are queued on it instead of made here: on a file system mounted with
  // `discard`, unlinking a full segment takes tens of milliseconds, which a shard's loop must
  // not spend.
  absl::Status Delete(IoBackend* io = nullptr);
  // fdatasync of the index files (the .log file is synced through the IoBackend). Nothing
  // to do for a segment whose files are closed, unless stores made before they were closed
  // still need it (then they are opened again).
  // Instead of SyncIndexes, for a caller that syncs through the storage backend: appends the
  // fds of index files with unsynced stores to `fds` (they count as synced from here on;
  // MarkIndexesUnsynced after a failed sync).
  absl::Status TakeUnsyncedIndexFds(std::vector<int>* fds);
  void MarkIndexesUnsynced();
  absl::Status SyncIndexes();

  // Puts the segment under `cache` (files opened and closed by it from now on), as part of
  // the log `owner`; null takes it out. Trims the cache when the segment's files are open.
  void set_cache(SegmentCache* cache, const void* owner);
  // Opens the files again if the cache closed them, and marks the segment used.
  absl::Status Acquire() const;
  // Closes the files (a no-op when closed). Index stores no sync has covered yet are synced by
  // the next SyncIndexes. References to file() held elsewhere stay valid.
  void ReleaseFiles() const;
  bool files_open() const { return file_ != nullptr; }
  // An append made this segment's index files (their first entry): their names are durable
  // only once the directory is synced, which the caller's next sync does. Clears the flag.
  bool TakeIndexFilesCreated() { return std::exchange(index_files_created_, false); }
  // Whether the offset index is sealed (known while the files are closed too).
  bool sealed() const { return offset_index_ ? offset_index_->sealed() : released_sealed_; }

  int64_t base_offset() const { return base_offset_; }
  const std::shared_ptr<SegmentFile>& file() const { return file_; }
  int fd() const { return file_->fd(); }
  uint64_t size() const { return size_; }
  int64_t next_offset() const { return next_offset_; }
  bool empty() const { return size_ == 0; }
  int64_t max_timestamp() const { return max_timestamp_; }
  // Base offset of the first batch carrying max_timestamp() (-1 when empty).
  int64_t offset_of_max_timestamp() const { return offset_of_max_timestamp_; }
  // Wall-clock ms when the first batch was appended (segment.ms rolling).
  int64_t first_append_ms() const { return first_append_ms_; }
  void set_first_append_ms(int64_t ms) { first_append_ms_ = ms; }
  OffsetIndex& offset_index() { return *offset_index_; }
  TimeIndex& time_index() { return *time_index_; }
  const OffsetIndex& offset_index() const { return *offset_index_; }
  bool indexes_full() const {
    return offset_index_ ? offset_index_->full() || time_index_->full() : released_full_;
  }
  const std::string& dir() const { return dir_; }
  Env* env() const { return env_; }

  // Position of the batch containing `offset`, searched from the index entry at or below it.
  // NotFoundError when `offset` >= next_offset(). Reads at most `limit` bytes of the file.
  absl::StatusOr<uint64_t> FindPosition(int64_t offset, uint64_t limit) const;
  // Largest batch-aligned position p with p <= `position_limit` (and >= `from`), walking at
  // most one index interval of headers; `from` must be a batch boundary.
  absl::StatusOr<uint64_t> FindBatchBoundaryAtOrBelow(uint64_t from, uint64_t position_limit,
                                                      uint64_t written_limit) const;
  // First offset >= the first batch whose max timestamp >= `timestamp`, or NotFound.
  absl::StatusOr<int64_t> FindOffsetForTime(int64_t timestamp, uint64_t limit) const;

 private:
  Segment(std::string dir, int64_t base_offset, std::shared_ptr<SegmentFile> file,
          const LogConfig& config, Env* env);
  static absl::StatusOr<std::unique_ptr<Segment>> CreateWithSuffix(const std::string& dir,
                                                                   int64_t base_offset,
                                                                   const LogConfig& config,
                                                                   const char* extra_suffix,
                                                                   Env* env);
  std::string PathWithSuffix(const char* suffix) const;
  void ResetIndexBookkeeping();
  // Sets size, next offset, max timestamp and the bytes since the last index entry for the
  // batches in [0, limit) (a batch boundary), from the indexes and a walk of the headers
  // after the last offset index entry at or below `limit`.
  absl::Status RecoverBookkeeping(uint64_t limit);

  friend class SegmentCache;  // reads owner_, referenced_, cache_slot_

  const std::string dir_;
  Env* const env_;
  const int64_t base_offset_;
  std::string extra_suffix_;  // ".cleaned" for cleaner output, else empty
  // The open files: all three set, or (closed by the cache) all null. Mutable because a
  // const lookup may have to open them again.
  mutable std::shared_ptr<SegmentFile> file_;
  const uint32_t index_interval_bytes_;
  const uint32_t max_index_bytes_;
  mutable std::unique_ptr<OffsetIndex> offset_index_;
  mutable std::unique_ptr<TimeIndex> time_index_;
  // While closed: the index state last seen, and whether their stores still need a sync.
  mutable bool released_sealed_ = false;
  mutable bool released_full_ = false;
  mutable bool released_oi_deferred_ = false;  // index files never made (see Acquire)
  mutable bool released_ti_deferred_ = false;
  bool index_files_created_ = false;  // see TakeIndexFilesCreated
  mutable bool sync_owed_ = false;
  SegmentCache* cache_ = nullptr;  // see set_cache
  const void* owner_ = nullptr;
  mutable bool referenced_ = false;  // CLOCK reference bit
  size_t cache_slot_ = 0;            // position in the cache's list while the files are open
  uint64_t size_ = 0;
  int64_t next_offset_;
  int64_t max_timestamp_ = -1;
  int64_t offset_of_max_timestamp_ = -1;
  uint64_t bytes_since_index_entry_ = 0;
  int64_t first_append_ms_ = -1;
};

}  // namespace sluice::storage
