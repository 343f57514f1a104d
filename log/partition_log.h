// The commit log of one partition: a directory of segments (log/segment.h) with one active
// segment at the end, appended to through the shard's IoBackend.
//
// Threading: owned by one shard; every method runs on that shard's thread (the one that
// drives the IoBackend). Not thread-safe.
//
// Offsets, lowest to highest (each <= the next):
//   log_start_offset()  first offset readers may see (retention, AdvanceLogStart)
//   durable_offset()    every batch below it was fdatasync'ed ("flushed")
//   high_watermark()    every batch below it is written to the file (page cache) and readable
//   log_end_offset()    the next offset to assign; batches between high_watermark and this are
//                       buffered or in flight and invisible to readers
// Offsets are assigned once, except that TruncateTo (a follower cutting its divergent tail)
// lowers the log end, the high watermark and the durable offset to its cut: the offsets above
// it are assigned again.
//
// Durability contract of Append(): the batch is copied into the active segment's write buffer
// (or, when large and lent with a keep-alive, written from the caller's memory) and given its
// offsets at once. Its callback runs when it is readable (AckLevel::kWritten) or
// when it is durable (AckLevel::kDurable: fdatasync done). With flush.messages=1 every append
// is kDurable. Syncs are group commits: one fdatasync per dirty file covers every append whose
// write completed before it, however many producers they came from.
//
// Disk errors:
//  - Out of space (ENOSPC/EDQUOT on a write, an fdatasync or a segment roll) is retriable: the
//    log stops accepting appends (UnavailableError) and keeps what it had accepted; the failed
//    writes are issued again from Tick() (backing off to once every kSpaceRetryMaxMs) until
//    space returns, then appends resume. Offsets stay gap-free and none is given twice. Callbacks
//    of the batches caught by the failure run at once with the retriable error (a Kafka
//    connection answers in order: one held answer would hold all later ones); those batches
//    are still written when there is room, as a batch answered with a retriable error may be
//    in Kafka (a plain producer's retry then stores a duplicate; an idempotent producer's
//    retry is recognised, see WaitFor). After a failed fdatasync the bytes since the last
//    good sync are read back, checked batch by batch (CRC) and written again before the next
//    sync counts: the kernel may have marked them clean without writing them. Close() on a
//    still-full disk drops what was never written (nothing of it was acknowledged), cuts the
//    files back to the written prefix and leaves no clean-shutdown marker, so the next start
//    re-validates the tail.
//  - Any other write or fdatasync error (EIO) fences the log ("fsyncgate": the page cache may
//    have dropped dirty pages, so nothing after the last good sync can be trusted): every
//    pending and future append fails, nothing more is acknowledged, and it stays read-only
//    until a restart recovers it from its checkpoint, like Kafka taking a log dir offline.
//
// Recovery contract of Open(): after a clean shutdown nothing is re-read. After a crash, data
// below the recovery-point checkpoint is trusted (its index is rebuilt, with CRC checks, only
// when missing or damaged; a bad batch there fails Open with DataLossError and truncates
// nothing); data past it is re-validated batch by batch and the log is cut at the first
// invalid batch (torn write, zero fill, bad CRC), with later segments removed. The checkpoint
// never points past the log's end: TruncateTo lowers it durably to at most its cut before it
// cuts anything, and makes the cut and the removal of later segments durable before it returns,
// so no crash or power cut afterwards brings a removed batch back; one in the middle of it
// keeps every durable batch below the cut (some of what it was removing may come back).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "log/io_backend.h"
#include "log/log_config.h"
#include "log/recovery_points.h"
#include "log/segment.h"

namespace sluice::storage {

class LogCleaner;  // log/cleaner.h
struct CleanerStats;

enum class AckLevel { kWritten, kDurable };

// How much of the buffered appends SubmitBuffered() hands to the IoBackend.
enum class SubmitMode {
  kAll,  // everything (rolls, flushes, ticks, tests)
  // The shard loop's per-iteration submission: when nobody waits for the newest bytes (no
  // ack, no flush), the tail past the last 256 KiB boundary may stay buffered for about a
  // millisecond (see "write-behind" in docs/ARCHITECTURE.md), so that writes are large and
  // aligned.
  kWriteBehind,
};

// std::allocator whose resize() leaves new bytes uninitialised: the write buffer grows by a
// batch and is filled by the copy right after, so zeroing it first would be wasted work.
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using WriteBuffer = std::vector<uint8_t, DefaultInitAllocator<uint8_t>>;

struct AppendResult {
  int64_t base_offset = -1;
  int64_t last_offset = -1;
  int64_t log_append_time_ms = -1;  // set when the log stamps LogAppendTime
};
using AppendCallback = absl::AnyInvocable<void(absl::Status, const AppendResult&)>;

// A byte range of one segment file holding whole batches, for sending as is (sendfile/splice)
// or reading with pread. `file` keeps the fd open as long as the slice lives.
struct FileSlice {
  std::shared_ptr<SegmentFile> file;
  uint64_t position = 0;
  uint32_t size = 0;          // 0: nothing readable at the requested offset yet
  int64_t first_offset = -1;  // base offset of the first batch in the slice
};

struct RecoveryReport {
  bool clean_shutdown = false;
  int segments = 0;
  int indexes_rebuilt = 0;
  uint64_t bytes_validated = 0;  // re-checked past the recovery point
  uint64_t bytes_truncated = 0;  // cut off as torn/invalid
  int64_t recovery_offset = 0;   // from the checkpoint (0 when there was none)
  absl::Duration took;
};

// Who makes the clean-shutdown marker's creation (Close) or removal (Open) durable.
enum class MarkerSync {
  kNow,  // the log, with an fsync of its directory
  // The caller, which syncs the directories of many logs at once through the IoBackend
  // (LogManager): after Open, before the log's first append; after Close, before it counts
  // as closed cleanly. needs_dir_sync() says whether there is anything to sync.
  kByCaller,
};

class PartitionLog {
 public:
  // Opens (creating if needed) the log in `dir`, recovering it as described above.
  // `io` must outlive the log; every file operation of the log goes through io->env().
  static absl::StatusOr<std::unique_ptr<PartitionLog>> Open(
      const std::string& dir, const LogConfig& config, IoBackend* io,
      MarkerSync marker_sync = MarkerSync::kNow);
  // Opens the log of a LogManager, whose logs keep their recovery checkpoints in the shard's
  // `store` (log/recovery_points.h) instead of files of their own: `point` is what start-up
  // read for this log (none for a new log, or one whose directory still holds the files of an
  // older version: those are read, then removed, and the caller must sync dir()).
  static absl::StatusOr<std::unique_ptr<PartitionLog>> OpenInStore(
      const std::string& dir, const LogConfig& config, IoBackend* io, RecoveryPointStore* store,
      std::optional<RecoveryPoint> point);
  ~PartitionLog();
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;

  // Validates `batch` (size against max.message.bytes, then header and CRC), assigns its
  // offsets and queues it for writing. Errors: ResourceExhaustedError (too large),
  // DataLossError (corrupt batch), FailedPreconditionError (log failed or closed), or the
  // error of creating a new segment. `done` may be empty.
  absl::StatusOr<AppendResult> Append(std::span<const uint8_t> batch, AckLevel ack,
                                      AppendCallback done);
  // The same, for a caller that can lend the batch bytes until they are written: `keep_alive`
  // owns (or keeps alive) the memory `batch` points into, e.g. the produce request's buffer.
  // A batch of at least kZeroCopyMinBytes is then not copied into the write buffer: its CRC
  // is checked in place and it is written straight from `batch` with a gather write (the
  // rewritten header goes in its own small piece; baseOffset is outside the CRC). The log
  // holds a reference to `keep_alive` until that write completed (or failed, or the log is
  // destroyed), and the bytes must not change meanwhile. Smaller batches, and batches of
  // LogAppendTime logs (whose timestamp and CRC are rewritten), are copied as by the overload
  // above, which then drops `keep_alive` at once. A null `keep_alive` means: copy.
  absl::StatusOr<AppendResult> Append(std::span<const uint8_t> batch,
                                      std::shared_ptr<const void> keep_alive, AckLevel ack,
                                      AppendCallback done);
  // A follower's append of a batch its leader stored: the batch keeps the offsets, leader
  // epoch and timestamps the leader gave it (no LogAppendTime stamp, no epoch stamp), and its
  // base offset must be log_end_offset() (InvalidArgument otherwise: the follower fetched
  // from where its log ends). Otherwise as Append (validation, ack levels, callbacks).
  absl::StatusOr<AppendResult> AppendReplicated(std::span<const uint8_t> batch, AckLevel ack,
                                                AppendCallback done);
  // Replication (src/replication/): the leader epoch Append stamps into every batch's
  // partitionLeaderEpoch field (-1, the default of a single node: leave what the producer
  // sent), and the offset below which batches count as replicated. Readers (Read,
  // high_watermark) see nothing at or past it; the default (no replication) is unbounded.
  void set_leader_epoch(int32_t epoch) { leader_epoch_ = epoch; }
  int32_t leader_epoch() const { return leader_epoch_; }
  void set_replicated_offset(int64_t offset) { replicated_offset_ = offset; }
  // Batches at least this large are written from the caller's memory when it lends it (the
  // Append overload above). Why 256 KiB: a batch this large no longer stays in L2 (512 KiB
  // per core here) between the copy into the write buffer and the kernel's copy into the page
  // cache, so the copy costs a second trip through memory; a smaller batch is still in L2
  // when the kernel reads it, and copying it lets write-behind merge it with its neighbours
  // into large aligned writes (worth more than the copy: docs/ARCHITECTURE.md).
  static constexpr size_t kZeroCopyMinBytes = 256 << 10;
  // Hands buffered appends to the IoBackend (the caller then calls io->Submit()). The
  // LogManager does both once per loop iteration; appends also do it when a buffer fills.
  void SubmitBuffered(SubmitMode mode = SubmitMode::kAll);
  // The list the log puts itself on when an append leaves bytes for SubmitBuffered(), at
  // most once until its owner takes it off (LeftSubmitList): the LogManager submits only the
  // logs on it, not every log of the shard. Null (the default): no list is kept.
  void set_submit_list(std::vector<PartitionLog*>* list) { submit_list_ = list; }
  void JoinSubmitList() {
    if (submit_list_ == nullptr || in_submit_list_) return;
    in_submit_list_ = true;
    submit_list_->push_back(this);
  }
  void LeftSubmitList() { in_submit_list_ = false; }
  // The queue a due recovery checkpoint waits in (at most once) when one is set: its owner
  // writes them with WriteQueuedCheckpoint() a few at a time, so that thousands of logs
  // flushed together do not stall the shard for thousands of synchronous file writes. Null
  // (the default): a due checkpoint is written at once.
  void set_checkpoint_queue(std::deque<PartitionLog*>* queue) { checkpoint_queue_ = queue; }
  void WriteQueuedCheckpoint();
  // The store made this log's staged checkpoint `cp` durable (OpenInStore logs only).
  void CheckpointCommitted(const RecoveryCheckpoint& cp);
  // The recovery checkpoint on disk, if any (read at open, or written since).
  std::optional<RecoveryCheckpoint> checkpoint_on_disk() const;
  // True while a write-behind tail is buffered: the loop must come back soon (without
  // blocking) to submit it, which an idle iteration does.
  bool has_held_writes() const { return held_since_ms_ >= 0 && open_chunk_ != nullptr; }
  // Write-behind cuts writes at multiples of this (file positions).
  static constexpr uint64_t kWriteBehindAlignBytes = 256 << 10;
  // Time-driven work: flush.ms, background flush + recovery checkpoint, retention.
  void Tick(int64_t now_ms);
  // Whether Tick() has, or may later have, work without another call into this log: false
  // once everything appended is written, synced and checkpointed, nothing can expire (one
  // segment), no cleaner runs and the disk is not full. Every call that can change that
  // (appends, log-start moves, config changes, flushes, waits) joins the tick list again.
  bool NeedsTicks() const;
  // The list of logs to tick (LogManager::Tick visits only these), joined as the submit list
  // is: at most once, until the owner takes the log off (LeftTickList). Setting it joins it.
  void set_tick_list(std::vector<PartitionLog*>* list) {
    tick_list_ = list;
    JoinTickList();
  }
  void JoinTickList() {
    if (tick_list_ == nullptr || in_tick_list_) return;
    in_tick_list_ = true;
    tick_list_->push_back(this);
  }
  void LeftTickList() { in_tick_list_ = false; }
  // Bounds the files this log's segments keep open (log/segment_cache.h), shared with the
  // other logs of its LogManager; must outlive the log. Without one, every segment keeps its
  // files open.
  void set_segment_cache(SegmentCache* cache);

  // Whole batches starting with the one that holds `offset`, at most `max_bytes` unless the
  // first batch alone is larger (then exactly that batch, as Kafka does), none at or past
  // high_watermark(). An empty slice when offset is at or past the high watermark (up to the
  // written end); OutOfRangeError below log start or past the written end.
  absl::StatusOr<FileSlice> Read(int64_t offset, uint32_t max_bytes) const {
    return ReadBelow(offset, max_bytes, high_watermark());
  }
  // The same up to the written end, past the replicated offset: what a follower fetches.
  absl::StatusOr<FileSlice> ReadForReplica(int64_t offset, uint32_t max_bytes) const {
    return ReadBelow(offset, max_bytes, written_offset_);
  }
  // Earliest offset whose record timestamp >= `timestamp_ms`; NotFoundError if none.
  absl::StatusOr<int64_t> OffsetForTime(int64_t timestamp_ms) const;
  // The largest batch max-timestamp among readable batches (from the segments' headers,
  // no I/O) and the base offset of the first batch that has it; NotFound in an empty log.
  // Kafka's ListOffsets MAX_TIMESTAMP (-3).
  absl::StatusOr<std::pair<int64_t, int64_t>> MaxTimestamp() const;

  // Blocks (driving the IoBackend) until everything appended so far is durable. Returns at
  // once the out-of-space (Unavailable) or fence error instead when the log has one.
  absl::Status Flush();
  // Flush, checkpoint, clean-shutdown marker. Further appends fail. Without the marker (the
  // next start then recovers the log from its checkpoint) it returns why: UnavailableError
  // when the disk was too full, the fence error when the log was fenced.
  absl::Status Close(MarkerSync marker_sync = MarkerSync::kNow);
  // Open or Close with MarkerSync::kByCaller changed the directory's names: the caller must
  // fsync dir() (see MarkerSync).
  bool needs_dir_sync() const { return needs_dir_sync_; }
  // Raises the log start offset; segments wholly below it are deleted (AMQP acks, DeleteRecords).
  absl::Status AdvanceLogStart(int64_t offset);
  // Deletes every file of the log and the directory. The object must not be used afterwards.
  absl::Status DeleteAll();
  // Cuts the log's tail so that `offset` becomes its log end offset: a replica that becomes a
  // follower removes its divergent tail before fetching from the new leader (Kafka's KIP-101).
  // Appends then go on at `offset` (the offsets above it are given again), readers see exactly
  // [log start, offset), and OffsetForTime, MaxTimestamp, retention and compaction no longer
  // see the removed batches. Meant for role changes: it waits for the log's own I/O and does
  // a few synchronous file operations on the calling (shard) thread.
  //  - `offset` must be in [log_start_offset(), log_end_offset()] and a batch boundary: the
  //    base offset of a segment, or of a batch that directly follows the batch before it (not
  //    after a gap that compaction left: the log could not end there), or the log end (a
  //    no-op). Otherwise InvalidArgumentError and nothing changes. A fenced or closed log
  //    returns its error; one out of disk space returns UnavailableError and changes nothing.
  //  - Waiters (append callbacks, WaitFor) for offsets at or above `offset` fail with
  //    AbortedError (none of them is acknowledged once TruncateTo is called; they are put back
  //    when it fails before the cut); those below stay. Buffered appends are written and the
  //    log's writes and syncs waited for before the cut.
  //  - Crash safety: the recovery checkpoint is lowered durably to at most `offset` before
  //    any file changes; the segment holding the cut is cut at the batch boundary and
  //    fdatasync'ed (indexes cut and synced), later segments are deleted, a fresh active
  //    segment is made at `offset` when the cut is at a segment's base or the segment left
  //    last is sealed, and the directory is fsync'ed, all before it returns. After it returned
  //    OK, no crash or power cut brings back a removed batch; one during it keeps every batch
  //    below `offset` that was durable, and the checkpoint never points past the end. The
  //    cleaner's pass in progress is abandoned and its checkpoint lowered to `offset`.
  //  - An error once files began to change fences the log (the next open recovers it as
  //    above).
  absl::Status TruncateTo(int64_t offset);
  void UpdateConfig(const LogConfig& config) {
    config_ = config;
    JoinTickList();  // compaction, flush.ms or retention may now apply
  }
  // Log compaction (log/cleaner.h; these are defined in log/cleaner.cc). CleanStep does at
  // most `max_bytes` of cleaning now (Tick calls it with cleaner_bytes_per_tick on compacted
  // logs); `force` ignores min.cleanable.dirty.ratio. True while a pass is in progress.
  bool CleanStep(int64_t now_ms, uint64_t max_bytes, bool force = false);
  const LogCleaner* cleaner() const { return cleaner_.get(); }

  int64_t log_start_offset() const { return log_start_offset_; }
  int64_t durable_offset() const { return durable_offset_; }
  // What readers may see: written, and replicated where replication applies.
  int64_t high_watermark() const { return std::min(written_offset_, replicated_offset_); }
  // Every batch below it is written to the file (page cache): a follower's log end as its
  // leader counts it (what it has fetched and stored).
  int64_t written_offset() const { return written_offset_; }
  int64_t log_end_offset() const { return next_offset_; }
  uint64_t size_bytes() const;
  size_t segment_count() const { return segments_.size(); }
  const std::string& dir() const { return dir_; }
  const LogConfig& config() const { return config_; }
  const RecoveryReport& recovery_report() const { return report_; }
  absl::Status health() const { return failure_; }
  // Appends are refused for lack of disk space (retriable; see "Disk errors" above).
  bool out_of_space() const { return !stall_.ok(); }
  // Read-only after an I/O error until a restart (see "Disk errors" above).
  bool fenced() const { return !failure_.ok(); }
  // Runs `done` once every offset up to `last_offset` (an offset already assigned) is written
  // (kWritten) or durable (kDurable), or at once with the log's error while it is out of space
  // or fenced: for answering a producer's retry of a batch that may not be stored yet. Returns
  // false, without running `done`, when it is stored already.
  bool WaitFor(int64_t last_offset, AckLevel ack, AppendCallback done);
  // Retries of writes that failed for lack of space: the first after kSpaceRetryMinMs, then
  // doubling up to kSpaceRetryMaxMs.
  static constexpr int64_t kSpaceRetryMinMs = 100;
  static constexpr int64_t kSpaceRetryMaxMs = 1000;
  std::vector<int64_t> segment_base_offsets() const;

  // Reads a slice's bytes with pread (tools, tests, the AMQP layer).
  static absl::StatusOr<std::vector<uint8_t>> ReadBytes(const FileSlice& slice);
  // For tests and fuzzers: lend (zero-copy) batches from this size on, so that small batches
  // exercise the zero-copy path too.
  void TEST_SetZeroCopyMinBytes(size_t bytes) { zero_copy_min_bytes_ = bytes; }
  // For tests: the next `count` segment creations (rolls) fail with `err` (an errno).
  void TEST_FailSegmentCreations(int count, int err) {
    test_failing_creations_ = count;
    test_creation_errno_ = err;
  }
  // For tests: the wall clock used for timestamps, rolling and retention.
  void TEST_SetClock(std::function<int64_t()> now_ms) {
    now_ms_ = std::move(now_ms);
    last_flush_ms_ = last_checkpoint_ms_ = now_ms_();
  }

 private:
  // Bytes of consecutive batches of one segment, written with one write operation.
  // Batches are whole within a chunk, except that a write-behind split (SplitAt) can leave
  // the end of a batch at the start of the next chunk, before `first_boundary`.
  struct Chunk {
    std::shared_ptr<SegmentFile> file;
    int64_t segment_base = 0;
    uint64_t position = 0;
    WriteBuffer bytes;
    // Next offset after the chunk's last complete batch (-1: no batch ends in this chunk),
    // and where that batch ends (relative to `position`): what a completed write makes visible.
    int64_t end_offset = 0;
    uint32_t visible_bytes = 0;
    // Where the first batch starting in this chunk starts; a batch begun in the previous
    // chunk ends there, with `first_boundary_offset` as the next offset after it.
    uint32_t first_boundary = 0;
    int64_t first_boundary_offset = -1;
    bool done = false;
    // Large batches written from the caller's memory (Append with a keep-alive): their bytes
    // after the header go between bytes[owned_at - 1] and bytes[owned_at] in the file (their
    // header, with the base offset rewritten, is copied into `bytes` just before owned_at).
    // A chunk holding any is written whole, never split by write-behind.
    struct Lent {
      uint32_t owned_at = 0;
      std::span<const uint8_t> bytes;
      std::shared_ptr<const void> keep_alive;
    };
    std::vector<Lent> lent;
    uint32_t lent_bytes = 0;
    // Its write failed: never `done`. For lack of space it is written again by
    // RetryAfterStall (lent bytes kept); otherwise the log is fenced.
    bool failed = false;
    // Bytes this chunk writes to the file.
    size_t size() const { return bytes.size() + lent_bytes; }
  };
  struct Waiter {
    int64_t last_offset;
    AppendResult result;
    AppendCallback done;
  };
  struct FilePosition {
    int64_t segment_base = 0;
    uint64_t position = 0;
    bool operator==(const FilePosition&) const = default;
  };

  friend class LogCleaner;  // swaps cleaned segments into segments_ (log/cleaner.cc)
  PartitionLog(std::string dir, const LogConfig& config, IoBackend* io);
  absl::Status Recover();
  absl::StatusOr<FileSlice> ReadBelow(int64_t offset, uint32_t max_bytes, int64_t end) const;
  absl::StatusOr<AppendResult> AppendImpl(std::span<const uint8_t> batch,
                                          std::shared_ptr<const void>* keep_alive, AckLevel ack,
                                          AppendCallback done);
  void StartWrite(Chunk* chunk);
  // An append left bytes in the open chunk: flag it and join the submit list.
  void MarkAppended();
  absl::Status MaybeRoll(size_t batch_size, int32_t last_offset_delta, int64_t now_ms);
  absl::Status Roll();
  absl::StatusOr<std::unique_ptr<Segment>> CreateSegment(int64_t base_offset);
  void Track(Segment& segment);  // puts a new segment under segment_cache_
  // Out of space: refuse appends and schedule a retry (see "Disk errors").
  void EnterStall(const absl::Status& why);
  void RetryAfterStall(int64_t now_ms);
  void MaybeEndStall();
  absl::Status RewriteSinceLastSync();
  void WaitForIo();  // until no write or sync of this log is in flight
  bool DropUnwritten(const absl::Status& why);
  static void FailWaiters(std::deque<Waiter>& waiters, const absl::Status& status,
                          int64_t from_offset);
  void FailAllWaiters(const absl::Status& status);
  // Where the batches before the first write that failed for lack of space end.
  int64_t EndBeforeFailedWrite() const;
  // Logs a checkpoint's failure once (and has it retried from Tick) or its recovery.
  void CheckpointOutcome(const absl::Status& s);
  void CheckpointNow();
  // A checkpoint is due: written now, or queued (set_checkpoint_queue).
  void ScheduleCheckpoint(int64_t now_ms);
  // recovery_checkpoint_ms, or a tenth of it while a compacted log's cleaner waits for the
  // checkpoint.
  int64_t CheckpointIntervalMs() const;
  // No batch was ever appended and no checkpoint written: nothing for a checkpoint to protect.
  bool NeverWritten() const {
    return checkpointed_offset_ < 0 && next_offset_ == 0 && segments_.size() == 1 &&
           segments_.front()->empty();
  }
  void Preallocate(const Chunk& chunk);
  bool MayHoldBack() const;
  std::unique_ptr<Chunk> SplitAt(Chunk& chunk, uint32_t cut);
  std::unique_ptr<Chunk> NewChunk();
  void ReleasePreallocation(Segment& segment);
  void OnWriteDone(Chunk* chunk, int result);
  void MaybeStartSync();
  void OnSyncDone(int64_t target, FilePosition target_end, int result,
                  const std::string& error_path);
  void Fail(absl::Status status);
  // TruncateTo's work once its waiters above the cut are taken aside (see TruncateTo).
  absl::Status CutTail(int64_t offset);
  // Takes the waiters whose batch ends at or after `from_offset` out of `waiters`, in order.
  static std::deque<Waiter> TakeWaiters(std::deque<Waiter>& waiters, int64_t from_offset);
  // Puts taken waiters back (TruncateTo failed) and answers those that are due.
  void RestoreWaiters(std::deque<Waiter>& written, std::deque<Waiter>& durable);
  // TruncateTo: where the batch starting at `offset` (> the segment's base) is in `segment`,
  // when the batch before it ends there; else InvalidArgumentError.
  absl::StatusOr<uint64_t> CutPosition(const Segment& segment, int64_t offset) const;
  // TruncateTo: makes `cp` (at or below the cut) the recovery checkpoint before the cut.
  absl::Status LowerCheckpoint(const RecoveryCheckpoint& cp);
  void FireWaiters(std::deque<Waiter>& waiters, int64_t below);
  void ApplyRetention(int64_t now_ms);
  absl::Status WriteCheckpoint();
  // WriteCheckpoint for a log in the shard's store over io_uring: the active indexes are
  // synced through the backend (not msync on the loop thread), and the point is staged when
  // those syncs completed.
  absl::Status StageCheckpointAfterIndexSyncs();
  // What a checkpoint written now would say: the durable end and the log start.
  RecoveryCheckpoint CurrentCheckpoint() const;
  int64_t Now() const { return now_ms_(); }
  // How far readers may read in `segment`.
  uint64_t ReadableLimit(const Segment& segment) const;
  size_t SegmentIndexFor(int64_t offset) const;  // last segment with base <= offset

  const std::string dir_;
  LogConfig config_;
  IoBackend* const io_;
  Env* const env_;  // io_->env()
  std::function<int64_t()> now_ms_;

  std::vector<std::unique_ptr<Segment>> segments_;  // by base offset; back() is active
  SegmentCache* segment_cache_ = nullptr;           // see set_segment_cache
  std::vector<Segment*> pending_seal_;              // rolled, sealed once their writes completed
  std::unique_ptr<Chunk> open_chunk_;
  std::deque<std::unique_ptr<Chunk>> in_flight_;  // submission (= file position) order
  std::vector<WriteBuffer> spare_buffers_;
  size_t zero_copy_min_bytes_ = kZeroCopyMinBytes;
  bool appended_since_submit_ = false;
  std::vector<PartitionLog*>* submit_list_ = nullptr;  // see set_submit_list
  bool in_submit_list_ = false;
  std::vector<PartitionLog*>* tick_list_ = nullptr;  // see set_tick_list
  bool in_tick_list_ = false;
  std::deque<PartitionLog*>* checkpoint_queue_ = nullptr;  // see set_checkpoint_queue
  RecoveryPointStore* recovery_points_ = nullptr;          // see OpenInStore (null: own files)
  std::string recovery_name_;                              // this log's name in the store
  std::optional<RecoveryPoint> open_point_;                // what OpenInStore was given
  bool in_checkpoint_queue_ = false;
  int64_t held_since_ms_ = -1;         // a write-behind tail is buffered since then (-1: none)
  bool preallocate_ = true;            // off after fallocate failed once
  int64_t preallocated_segment_ = -1;  // segment whose blocks are reserved up to...
  uint64_t preallocated_end_ = 0;      // ...this position

  int64_t log_start_offset_ = 0;
  int64_t next_offset_ = 0;
  int64_t written_offset_ = 0;
  int64_t replicated_offset_ = INT64_MAX;  // set_replicated_offset
  int32_t leader_epoch_ = -1;              // set_leader_epoch
  bool replica_append_ = false;            // inside AppendReplicated
  FilePosition written_end_;
  int64_t durable_offset_ = 0;
  FilePosition durable_end_;
  int64_t unflushed_messages_ = 0;

  std::deque<Waiter> written_waiters_;
  std::deque<Waiter> durable_waiters_;
  // Segments (base offsets) written since the last sync. Not their files: a log must not
  // hold descriptors beyond the segment cache's budget while it waits for a flush.
  std::vector<int64_t> unsynced_segments_;
  bool sync_in_flight_ = false;
  // Index fdatasyncs of a checkpoint in flight (StageCheckpointAfterIndexSyncs).
  int index_syncs_in_flight_ = 0;
  // A new log whose directory names (segment files, its own entry in the data directory) no
  // sync has made durable yet: the first sync includes them (see Recover).
  bool names_pending_ = false;
  // An append made the active segment's index files (Segment::TakeIndexFilesCreated): the
  // next sync fsyncs the log's directory too.
  bool index_names_pending_ = false;
  MarkerSync open_marker_sync_ = MarkerSync::kNow;  // how Open syncs the marker's removal
  bool needs_dir_sync_ = false;                     // see needs_dir_sync()
  int64_t flush_target_ = 0;  // durability requested up to here (flush policy, Flush())
  int64_t last_flush_ms_ = 0;
  int64_t last_checkpoint_ms_ = 0;
  int64_t checkpointed_offset_ = -1;
  int64_t checkpointed_log_start_ = -1;
  FilePosition checkpointed_end_;

  bool preallocate_failing_ = false;  // fallocate hit ENOSPC: retried after...
  int64_t preallocate_retry_ms_ = 0;  // ...this time
  int writes_outstanding_ = 0;        // chunk writes handed to io_ whose callback has not run

  // Out of space (see "Disk errors"): why appends are refused (OK: they are not), and what
  // must succeed before they are accepted again.
  absl::Status stall_;
  int failed_chunks_ = 0;      // chunks in in_flight_ whose write must be issued again
  bool roll_pending_ = false;  // a roll failed: retried before appends resume
  // An fdatasync failed for lack of space: the bytes since the last good sync must be checked
  // and written again (kRewrite), then synced (kSyncing), before durability moves on.
  enum class Resync { kNone, kRewrite, kSyncing };
  Resync resync_ = Resync::kNone;
  int64_t stall_since_ms_ = 0;
  int64_t stall_reported_ms_ = 0;  // last "still out of space" line
  int64_t next_retry_ms_ = 0;
  int64_t retry_delay_ms_ = kSpaceRetryMinMs;
  int stall_retries_ = 0;
  bool checkpoint_failing_ = false;  // logged once until a checkpoint succeeds again
  int test_failing_creations_ = 0;
  int test_creation_errno_ = 0;

  absl::Status failure_;  // fenced (see "Disk errors"): every append fails with this
  bool closed_ = false;
  RecoveryReport report_;
  std::unique_ptr<LogCleaner> cleaner_;  // created by the first CleanStep
};

}  // namespace sluice::storage
