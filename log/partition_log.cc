#include "log/partition_log.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log/checkpoint.h"
#include "log/cleaner.h"
#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::storage {

namespace {

// A chunk is handed to the IoBackend when it reaches this size even mid-iteration, so one
// write never grows unbounded and large produce bursts start hitting the disk early.
constexpr size_t kChunkSubmitBytes = 1 << 20;
constexpr size_t kMaxSpareBuffers = 8;
// Preallocation reserve ahead of the write position: about the segment's size so far, within
// these bounds (so a quiet partition reserves little).
constexpr uint64_t kMinPreallocateBytes = 256 << 10;
constexpr uint64_t kMaxPreallocateBytes = 8 << 20;
// Write-behind (SubmitBuffered): how long a partial tail may stay buffered.
constexpr int64_t kMaxWriteBehindMs = 1;
// While out of space: a reminder in the log this often (the retries themselves are silent).
constexpr int64_t kStillOutOfSpaceLogMs = 60'000;
// A failed fallocate (no space) is tried again after this long.
constexpr int64_t kPreallocateRetryMs = 1000;
// A new segment is not created with less free space than this: its index files are mapped and
// their header written through the mapping, and a write fault on a full filesystem is SIGBUS,
// not an error (seen on tmpfs; index/ owns the mapping). The margin covers their first pages
// plus what another shard may write meanwhile (a chunk is at most about 1 MiB).
constexpr uint64_t kMinFreeBytesForNewSegment = 1 << 20;
// Rewriting the bytes since the last good sync (after an fdatasync failed for lack of space)
// reads and writes this much at a time.
constexpr size_t kRewriteBlockBytes = 1 << 20;

int64_t WallClockMs() { return absl::ToUnixMillis(absl::Now()); }

absl::Status IoStatus(absl::string_view what, const std::string& path, int result) {
  return ErrnoStatus(what, path, -result);
}

// Errors that go away when space is freed: the log waits and retries instead of failing.
bool IsOutOfSpace(int err) { return err == ENOSPC || err == EDQUOT; }

// Free bytes of the filesystem holding `dir` as this process may use them (root may use the
// blocks ext4 reserves for it), or UINT64_MAX when unknown.
uint64_t FreeBytes(const std::string& dir) {
  struct statvfs vfs;
  if (::statvfs(dir.c_str(), &vfs) != 0) return UINT64_MAX;
  const uint64_t blocks = ::geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
  return blocks * vfs.f_frsize;
}

// Why a scan of a segment stopped: a torn or corrupt batch (the file's contents), or an error
// reading the file, which says nothing about its contents and must never truncate it.
bool IsTornOrCorrupt(const absl::Status& stop) {
  return absl::IsDataLoss(stop) || absl::IsOutOfRange(stop);
}

}  // namespace

PartitionLog::PartitionLog(std::string dir, const LogConfig& config, IoBackend* io)
    : dir_(std::move(dir)), config_(config), io_(io), env_(io->env()), now_ms_(WallClockMs) {}

PartitionLog::~PartitionLog() {
  // The kernel may still be writing from our chunk buffers: wait for every write and sync.
  // (Dropping a log without Close() is otherwise like a crash: nothing more is made durable.)
  while (writes_outstanding_ > 0 || sync_in_flight_ || index_syncs_in_flight_ > 0) {
    if (io_->Poll(absl::Milliseconds(100)) == 0 && io_->pending() == 0) break;
  }
}

absl::StatusOr<std::unique_ptr<PartitionLog>> PartitionLog::Open(const std::string& dir,
                                                                 const LogConfig& config,
                                                                 IoBackend* io,
                                                                 MarkerSync marker_sync) {
  absl::Status s = CreateDirIfMissing(dir, io->env());
  if (!s.ok()) return s;
  auto log = std::unique_ptr<PartitionLog>(new PartitionLog(dir, config, io));
  log->open_marker_sync_ = marker_sync;
  absl::Time start = absl::Now();
  s = log->Recover();
  if (!s.ok()) return s;
  log->report_.took = absl::Now() - start;
  log->last_flush_ms_ = log->last_checkpoint_ms_ = log->Now();
  return log;
}

absl::StatusOr<std::unique_ptr<PartitionLog>> PartitionLog::OpenInStore(
    const std::string& dir, const LogConfig& config, IoBackend* io, RecoveryPointStore* store,
    std::optional<RecoveryPoint> point) {
  absl::Status s = CreateDirIfMissing(dir, io->env());
  if (!s.ok()) return s;
  auto log = std::unique_ptr<PartitionLog>(new PartitionLog(dir, config, io));
  log->open_marker_sync_ = MarkerSync::kByCaller;  // files of an older version, removed
  log->recovery_points_ = store;
  log->recovery_name_ = dir.substr(dir.rfind('/') + 1);
  log->open_point_ = std::move(point);
  absl::Time start = absl::Now();
  s = log->Recover();
  log->open_point_.reset();
  if (!s.ok()) return s;
  log->report_.took = absl::Now() - start;
  log->last_flush_ms_ = log->last_checkpoint_ms_ = log->Now();
  return log;
}

void PartitionLog::CheckpointCommitted(const RecoveryCheckpoint& cp) {
  checkpointed_offset_ = cp.recovery_offset;
  checkpointed_log_start_ = cp.log_start_offset;
  checkpointed_end_ = FilePosition{cp.segment_base, cp.position};
  // Not back on the tick list: a log whose durable offset moved on since it staged `cp` is
  // still on it (NeedsTicks), and one that is not needs nothing more.
}

std::optional<RecoveryCheckpoint> PartitionLog::checkpoint_on_disk() const {
  if (checkpointed_offset_ < 0) return std::nullopt;
  RecoveryCheckpoint cp;
  cp.recovery_offset = checkpointed_offset_;
  cp.segment_base = checkpointed_end_.segment_base;
  cp.position = checkpointed_end_.position;
  cp.log_start_offset = std::max<int64_t>(checkpointed_log_start_, 0);
  return cp;
}

absl::Status PartitionLog::Recover() {
  // A cleaner swap cut short by a crash is finished or undone before segments are listed.
  if (absl::Status s = RecoverInterruptedSwaps(dir_, env_); !s.ok()) return s;
  auto names = ListDir(dir_, env_);
  if (!names.ok()) return names.status();
  std::vector<int64_t> bases;
  for (const std::string& name : *names) {
    const std::string path = absl::StrCat(dir_, "/", name);
    // Leftovers of interrupted deletes and checkpoint writes.
    if (absl::EndsWith(name, ".deleted") || absl::EndsWith(name, ".tmp")) {
      (void)RemoveFile(path, env_);
      continue;
    }
    int64_t base;
    if (Segment::ParseLogFileName(name, &base)) bases.push_back(base);
  }
  std::sort(bases.begin(), bases.end());
  // Index files whose .log is gone belong to a deleted segment.
  for (const std::string& name : *names) {
    for (const char* suffix : {".index", ".timeindex"}) {
      if (absl::EndsWith(name, suffix)) {
        std::string log_name = name.substr(0, name.size() - strlen(suffix)) + ".log";
        int64_t base;
        if (!Segment::ParseLogFileName(log_name, &base) ||
            !std::binary_search(bases.begin(), bases.end(), base)) {
          (void)RemoveFile(absl::StrCat(dir_, "/", name), env_);
        }
      }
    }
  }

  const std::string marker = absl::StrCat(dir_, "/", kCleanShutdownFile);
  const std::string cp_file = absl::StrCat(dir_, "/", kRecoveryCheckpointFile);
  const bool has_marker =
      std::find(names->begin(), names->end(), kCleanShutdownFile) != names->end();
  const bool has_cp_file =
      std::find(names->begin(), names->end(), kRecoveryCheckpointFile) != names->end();
  bool clean = false;
  RecoveryCheckpoint cp;
  bool have_cp = false;
  if (open_point_) {
    // The shard's recovery-points file, newer than any file of an older version left here.
    clean = open_point_->clean;
    cp = open_point_->cp;
    have_cp = true;
  } else {
    clean = has_marker;
    auto read_cp = has_cp_file ? ReadRecoveryCheckpoint(cp_file, env_)
                               : absl::StatusOr<RecoveryCheckpoint>(absl::NotFoundError(cp_file));
    if (read_cp.ok()) {
      cp = *read_cp;
      have_cp = true;
    } else if (!absl::IsNotFound(read_cp.status())) {
      LogError("%s: recovery checkpoint unusable (%s); re-validating the whole log", dir_,
               read_cp.status().message());
    }
  }
  report_.clean_shutdown = clean;
  if (recovery_points_ != nullptr && (has_marker || has_cp_file)) {
    // Read above; the store's start-up rewrite records this log's point (not clean) before
    // any append. The files go, durably before the first append too (the caller syncs the
    // directory): left behind, a later start without a point in the store could trust a
    // marker over a torn tail.
    absl::Status s;
    if (has_marker) s = RemoveFile(marker, env_);
    if (s.ok() && has_cp_file) s = RemoveFile(cp_file, env_);
    if (!s.ok()) return s;
    needs_dir_sync_ = true;
  }

  if (bases.empty()) {
    int64_t base = have_cp ? std::max(cp.log_start_offset, cp.recovery_offset) : 0;
    auto seg = CreateSegment(base);
    if (!seg.ok()) return seg.status();
    segments_.push_back(std::move(*seg));
    log_start_offset_ = next_offset_ = written_offset_ = durable_offset_ = base;
    written_end_ = durable_end_ = FilePosition{base, 0};
    // An empty log has nothing to lose: if its names vanish in a crash it is made again.
    // They become durable with its first sync, before anything in it is acknowledged as
    // durable, so creating thousands of logs costs no synchronous fsync per log.
    names_pending_ = true;
    return absl::OkStatus();
  }

  // An earlier run that never synced this log (no checkpoint, no clean stop) may not have
  // made its names durable either (a new log's names go with its first sync): the first sync
  // of this run does, or a power cut after it could take the whole log with data it counted
  // as durable.
  if (!have_cp && !clean) names_pending_ = true;

  // Segments wholly below the checkpointed log start were deleted (acks, retention or
  // DeleteRecords had moved past them) even when a crash undid their unlink. What came back of
  // them (a file emptied or cut short, never synced) is no part of the log: kept, a hole in
  // them would make recovery cut off the synced segments above it.
  bool removed = false;  // files removed or cut: made durable before any append
  if (have_cp) {
    size_t below = 0;
    while (below + 1 < bases.size() && bases[below + 1] <= cp.log_start_offset) ++below;
    for (size_t i = 0; i < below; ++i) {
      auto doomed = Segment::Open(dir_, bases[i], config_, env_);
      if (!doomed.ok()) return doomed.status();
      if (absl::Status s = (*doomed)->Delete(); !s.ok()) return s;
      LogWarning("%s: removed segment %s below the checkpointed log start %d", dir_,
                 Segment::FileStem(bases[i]), cp.log_start_offset);
    }
    if (below > 0) {
      bases.erase(bases.begin(), bases.begin() + static_cast<std::ptrdiff_t>(below));
      removed = true;
    }
  }

  // Where re-validation starts: the checkpointed segment and position. Without a checkpoint,
  // or after a clean shutdown (everything flushed), trust accordingly.
  int64_t rp_base = bases.front();
  uint64_t rp_pos = 0;
  if (clean) {
    rp_base = bases.back();
    rp_pos = UINT64_MAX;  // nothing to re-validate
  } else if (have_cp) {
    auto it = std::upper_bound(bases.begin(), bases.end(), cp.segment_base);
    if (it == bases.begin()) {
      rp_base = bases.front();  // checkpointed segment deleted by retention since
    } else {
      rp_base = *(it - 1);
      if (rp_base == cp.segment_base) {
        rp_pos = cp.position;
      } else {
        LogError(
            "%s: segment %s named by the recovery checkpoint is missing; re-validating "
            "from segment %s",
            dir_, Segment::FileStem(cp.segment_base), Segment::FileStem(rp_base));
      }
    }
    report_.recovery_offset = cp.recovery_offset;
  }

  bool cut = false;
  for (int64_t base : bases) {
    // An empty segment that is not the active one holds nothing: a roll that failed or was
    // cut short left it, and appends went on in the previous segment. Kept, it would hide the
    // offsets it is named after, or (last) have them assigned twice.
    if (!cut) {
      auto size = FileSize(absl::StrCat(dir_, "/", Segment::FileStem(base), ".log"), env_);
      if (!size.ok()) return size.status();
      const bool continues = segments_.empty() || segments_.back()->next_offset() == base;
      if (*size == 0 && (base != bases.back() || !continues)) {
        auto empty = Segment::Open(dir_, base, config_, env_);
        if (!empty.ok()) return empty.status();
        if (absl::Status s = (*empty)->Delete(); !s.ok()) return s;
        LogWarning("%s: removed empty segment %s left by an interrupted roll", dir_,
                   Segment::FileStem(base));
        removed = true;
        continue;
      }
    }
    // A segment is named by the offset the previous one ended with when it rolled. If the
    // previous segment now ends earlier (its last writes never reached the file), this one
    // starts after a hole, and nothing in it was ever acknowledged: it goes.
    if (!cut && !segments_.empty() && segments_.back()->next_offset() != base && base >= rp_base &&
        !clean) {
      LogWarning("%s: segment %s does not continue the previous one (which ends at %d)", dir_,
                 Segment::FileStem(base), segments_.back()->next_offset());
      cut = true;
    }
    if (cut) {
      // Data after a truncation point cannot be attached to the log: remove it.
      auto doomed = Segment::Open(dir_, base, config_, env_);
      if (doomed.ok()) {
        report_.bytes_truncated += (*doomed)->size();
        (void)(*doomed)->Delete();
      }
      removed = true;
      LogWarning("%s: removed segment %s after the truncation point", dir_,
                 Segment::FileStem(base));
      continue;
    }
    auto opened = Segment::Open(dir_, base, config_, env_);
    if (!opened.ok()) return opened.status();
    std::unique_ptr<Segment> seg = std::move(*opened);
    const uint64_t file_size = seg->size();
    ++report_.segments;
    if (base < rp_base || (clean && base == rp_base)) {
      // Trusted: below the recovery point (or everything, after a clean shutdown).
      absl::Status s = seg->OpenIndexes(file_size);
      if (!s.ok()) {
        LogWarning("%s: rebuilding indexes of segment %s: %s", dir_, Segment::FileStem(base),
                   s.message());
        ++report_.indexes_rebuilt;
        auto r = seg->RebuildIndexes(file_size, /*verify_crc=*/true);
        if (!r.ok()) return r.status();
        if (!r->stop_reason.ok() && !IsTornOrCorrupt(r->stop_reason)) return r->stop_reason;
        if (!r->stop_reason.ok()) {
          LogError(
              "CORRUPTION in %s below the recovery point at position %d: %s. Committed "
              "data is not truncated; the log stays offline until repaired.",
              seg->file()->path(), r->end_position, r->stop_reason.message());
          return absl::DataLossError(
              absl::StrFormat("%s: corrupt batch below the recovery point at position %d: %s",
                              seg->file()->path(), r->end_position, r->stop_reason.message()));
        }
        // The next open trusts these indexes again: a power cut must not leave it the old
        // (unreadable or stale) ones.
        if (absl::Status synced = seg->SyncIndexes(); !synced.ok()) return synced;
      }
    } else {
      // At or past the recovery point: trust [0, from), re-validate [from, end).
      uint64_t from = base == rp_base ? rp_pos : 0;
      if (from > file_size) {
        LogError("CORRUPTION in %s: file is %d bytes but %d were checkpointed as durable",
                 seg->file()->path(), file_size, from);
        return absl::DataLossError(absl::StrFormat("%s: durable data missing (%d < %d)",
                                                   seg->file()->path(), file_size, from));
      }
      absl::Status s = seg->OpenIndexes(from);
      const bool rebuilt = !s.ok();
      // What an earlier run wrote here after its last checkpoint (entries, or the zeroes of
      // a truncation) may still be only in the page cache: a crash of the process keeps it,
      // a power cut does not. Synced before a checkpoint trusts it, or a later power cut
      // brings back entries that describe batches rewritten since.
      if (!rebuilt) seg->MarkIndexesUnsynced();
      if (!s.ok()) {
        ++report_.indexes_rebuilt;
        auto r = seg->RebuildIndexes(from, /*verify_crc=*/true);
        if (!r.ok()) return r.status();
        if (!r->stop_reason.ok() && !IsTornOrCorrupt(r->stop_reason)) return r->stop_reason;
        if (!r->stop_reason.ok()) {
          LogError("CORRUPTION in %s below the recovery point at position %d: %s",
                   seg->file()->path(), r->end_position, r->stop_reason.message());
          return absl::DataLossError(
              absl::StrFormat("%s: corrupt batch below the recovery point at position %d: %s",
                              seg->file()->path(), r->end_position, r->stop_reason.message()));
        }
      }
      std::optional<ScanResult> tail = seg->RecoverTail(from, file_size);
      report_.bytes_validated += tail->end_position - from;
      // A read error is no torn write: the open fails and nothing is cut.
      if (!tail->stop_reason.ok() && !IsTornOrCorrupt(tail->stop_reason)) {
        return tail->stop_reason;
      }
      if (!tail->stop_reason.ok()) {
        LogWarning("%s: truncating segment %s at position %d (%d bytes): %s", dir_,
                   Segment::FileStem(base), tail->end_position, file_size - tail->end_position,
                   tail->stop_reason.message());
        report_.bytes_truncated += file_size - tail->end_position;
        absl::Status t = seg->TruncateTo(tail->end_position, seg->next_offset());
        // The cut itself is durable before anything is appended: once a later segment is
        // checkpointed this one is trusted, and a power cut that undid the ftruncate would
        // bring the torn tail back below the recovery point.
        if (t.ok()) {
          if (int rc = env_->Fdatasync(seg->fd()); rc < 0) {
            t = IoStatus("fdatasync", seg->file()->path(), rc);
          }
        }
        // Indexes rebuilt for the cut segment replace sealed ones that describe the old bytes:
        // a power cut must not bring those back.
        if (t.ok()) t = seg->SyncIndexes();
        if (!t.ok()) return t;
        cut = true;
        removed = true;
      } else if (rebuilt || base != bases.back()) {
        // Indexes rebuilt or extended here, of a segment that a later checkpoint makes
        // trusted: synced, or a power cut could leave stale ones that the next open believes.
        if (absl::Status synced = seg->SyncIndexes(); !synced.ok()) return synced;
      }
    }
    segments_.push_back(std::move(seg));
  }

  // A trailing segment whose indexes were sealed (crash between roll steps) cannot take
  // appends: start a fresh one.
  if (segments_.back()->offset_index().sealed() || segments_.back()->time_index().sealed()) {
    // No longer the active segment: its indexes (re-validated above) must be on disk before
    // a checkpoint past it makes them trusted.
    if (absl::Status synced = segments_.back()->SyncIndexes(); !synced.ok()) return synced;
    next_offset_ = segments_.back()->next_offset();
    auto seg = CreateSegment(next_offset_);
    if (!seg.ok()) return seg.status();
    if (absl::Status s = SyncDir(dir_, env_); !s.ok()) return s;  // as in Roll()
    segments_.push_back(std::move(*seg));
    removed = false;  // that SyncDir covered the removals too
  }
  // Less came back than the checkpointed log start: a crash took an unsynced tail that lay
  // wholly below a start already durable (acks, retention or DeleteRecords had moved past it).
  // The log continues at that start, as Kafka's does, so that its start never moves back: a
  // start lowered to the recovered end would hand out the offsets below the checkpointed one
  // again, and the next open, taking the checkpointed start, would hide what they then hold.
  const int64_t recovered_end = segments_.back()->next_offset();
  bool restarted_at_start = false;
  if (have_cp && cp.log_start_offset > recovered_end) {
    LogWarning(
        "%s: recovered end %d is below the checkpointed log start %d (the lost tail had "
        "been deleted); the log continues at %d",
        dir_, recovered_end, cp.log_start_offset, cp.log_start_offset);
    auto seg = CreateSegment(cp.log_start_offset);
    if (!seg.ok()) return seg.status();
    for (auto& old : segments_) {
      if (absl::Status s = old->Delete(); !s.ok()) return s;
    }
    segments_.clear();
    segments_.push_back(std::move(*seg));
    removed = true;
    restarted_at_start = true;
  }
  // What recovery removed or cut stays so: else, after a power cut, a segment removed for
  // following a hole could come back once appends have filled the hole again.
  if (removed) {
    if (absl::Status s = SyncDir(dir_, env_); !s.ok()) return s;
  }

  next_offset_ = written_offset_ = segments_.back()->next_offset();
  written_end_ = FilePosition{segments_.back()->base_offset(), segments_.back()->size()};
  log_start_offset_ = segments_.front()->base_offset();
  if (have_cp) log_start_offset_ = std::max(log_start_offset_, cp.log_start_offset);
  log_start_offset_ = std::min(log_start_offset_, next_offset_);
  if (clean) {
    durable_offset_ = next_offset_;
    durable_end_ = written_end_;
  } else {
    // What was only in the page cache at the crash is readable but not yet known durable:
    // the next sync covers it.
    durable_offset_ = have_cp ? std::min(cp.recovery_offset, next_offset_) : log_start_offset_;
    durable_end_ = have_cp ? FilePosition{rp_base, std::min<uint64_t>(rp_pos, UINT32_MAX)}
                           : FilePosition{segments_.front()->base_offset(), 0};
    if (restarted_at_start) {  // one empty segment, its name synced above
      durable_offset_ = next_offset_;
      durable_end_ = written_end_;
    }
    for (auto& seg : segments_) {
      if (seg->base_offset() >= rp_base) unsynced_segments_.push_back(seg->base_offset());
    }
    flush_target_ = next_offset_;
    // The active segment may keep blocks that a preallocation reserved before the crash:
    // released as this process's own reserve is, when the segment is sealed or the log closed.
    preallocated_segment_ = segments_.back()->base_offset();
    preallocated_end_ = segments_.back()->size();
  }
  checkpointed_offset_ = have_cp ? cp.recovery_offset : -1;
  checkpointed_log_start_ = have_cp ? cp.log_start_offset : -1;
  if (have_cp) checkpointed_end_ = FilePosition{cp.segment_base, cp.position};
  if (clean && recovery_points_ == nullptr) {
    // The removal is durable before anything is appended: else a crash could leave the
    // marker over a torn tail, which the next start would trust.
    absl::Status s = RemoveFile(marker, env_);
    if (s.ok() && open_marker_sync_ == MarkerSync::kNow) s = SyncDir(dir_, env_);
    if (!s.ok()) return s;
    needs_dir_sync_ = open_marker_sync_ == MarkerSync::kByCaller;
  }
  return absl::OkStatus();
}

absl::StatusOr<AppendResult> PartitionLog::Append(std::span<const uint8_t> batch, AckLevel ack,
                                                  AppendCallback done) {
  return AppendImpl(batch, nullptr, ack, std::move(done));
}

absl::StatusOr<AppendResult> PartitionLog::Append(std::span<const uint8_t> batch,
                                                  std::shared_ptr<const void> keep_alive,
                                                  AckLevel ack, AppendCallback done) {
  return AppendImpl(batch, keep_alive != nullptr ? &keep_alive : nullptr, ack, std::move(done));
}

absl::StatusOr<AppendResult> PartitionLog::AppendReplicated(std::span<const uint8_t> batch,
                                                            AckLevel ack, AppendCallback done) {
  if (batch.size() >= kBatchHeaderSize) {
    const int64_t base = RecordBatchView(batch).base_offset();
    if (base != next_offset_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "replicated batch at offset %d, but the log ends at %d", base, next_offset_));
    }
  }
  replica_append_ = true;
  auto result = AppendImpl(batch, nullptr, ack, std::move(done));
  replica_append_ = false;
  return result;
}

absl::StatusOr<AppendResult> PartitionLog::AppendImpl(std::span<const uint8_t> batch,
                                                      std::shared_ptr<const void>* keep_alive,
                                                      AckLevel ack, AppendCallback done) {
  if (!failure_.ok()) return failure_;
  if (closed_) return absl::FailedPreconditionError("log is closed");
  if (!stall_.ok()) return stall_;
  if (batch.size() > config_.max_batch_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "batch of %d bytes exceeds max.message.bytes %d", batch.size(), config_.max_batch_bytes));
  }
  // Header checks first (a corrupt header must not roll the segment); the CRC is checked
  // below while the batch is copied into the write buffer (or in place, for a lent batch).
  if (batch.size() < kBatchHeaderSize) return ValidateBatch(batch, config_.max_batch_bytes);
  absl::StatusOr<BatchHeader> parsed = ParseBatchHeader(batch, config_.max_batch_bytes);
  if (!parsed.ok()) return parsed.status();
  // Zero-copy ("lent" batch): the batch stays where the caller has it and its CRC is checked
  // in place; only its header is copied (to carry the new base offset), the rest is written
  // from the caller's memory. LogAppendTime rewrites the timestamp and CRC: copied.
  const bool stamp_time =
      config_.timestamp_type == TimestampType::kLogAppendTime && !replica_append_;
  const bool lend = keep_alive != nullptr && batch.size() >= zero_copy_min_bytes_ && !stamp_time;
  if (lend) {
    if (absl::Status valid = ValidateBatch(batch, config_.max_batch_bytes); !valid.ok()) {
      return valid;
    }
  }

  const int64_t now = Now();
  absl::Status rolled = MaybeRoll(batch.size(), parsed->last_offset_delta, now);
  if (!rolled.ok()) return rolled;
  Segment& active = *segments_.back();
  // Its files may have been closed while the log was idle (log/segment_cache.h).
  if (absl::Status s = active.Acquire(); !s.ok()) return s;

  if (open_chunk_ == nullptr) {
    open_chunk_ = NewChunk();
    open_chunk_->file = active.file();
    open_chunk_->segment_base = active.base_offset();
    open_chunk_->position = active.size();
  }
  Chunk& chunk = *open_chunk_;
  WriteBuffer& buf = chunk.bytes;
  const uint64_t position = chunk.position + chunk.size();
  const size_t at = buf.size();
  std::span<uint8_t> copy;  // the stored copy: the whole batch, or only its header if lent
  if (lend) {
    buf.resize(at + kBatchHeaderSize);
    std::memcpy(buf.data() + at, batch.data(), kBatchHeaderSize);
    copy = std::span<uint8_t>(buf.data() + at, kBatchHeaderSize);
    chunk.lent.push_back(Chunk::Lent{static_cast<uint32_t>(buf.size()),
                                     batch.subspan(kBatchHeaderSize), std::move(*keep_alive)});
    chunk.lent_bytes += static_cast<uint32_t>(batch.size() - kBatchHeaderSize);
  } else {
    buf.resize(at + batch.size());
    if (absl::Status valid = CopyValidBatch(batch, buf.data() + at, config_.max_batch_bytes);
        !valid.ok()) {
      buf.resize(at);
      return valid;
    }
    copy = std::span<uint8_t>(buf.data() + at, batch.size());
  }

  // The header parsed above, updated with what the rewrites below change in the stored copy.
  BatchHeader& header = *parsed;
  AppendResult result;
  result.base_offset = next_offset_;
  SetBaseOffset(copy, next_offset_);
  header.base_offset = next_offset_;
  if (leader_epoch_ >= 0 && !replica_append_) SetPartitionLeaderEpoch(copy, leader_epoch_);
  if (stamp_time) {
    SetLogAppendTime(copy, now);
    header.max_timestamp = now;
    result.log_append_time_ms = now;
  }
  result.last_offset = header.last_offset();
  if (active.empty()) active.set_first_append_ms(now);
  active.OnAppend(header, position, static_cast<uint32_t>(batch.size()));
  if (active.TakeIndexFilesCreated()) index_names_pending_ = true;
  next_offset_ = result.last_offset + 1;
  chunk.end_offset = next_offset_;
  chunk.visible_bytes = static_cast<uint32_t>(chunk.size());
  MarkAppended();
  unflushed_messages_ += std::max(header.records_count, 1);

  if (config_.flush_messages <= 1) ack = AckLevel::kDurable;
  if (done) {
    (ack == AckLevel::kDurable ? durable_waiters_ : written_waiters_)
        .push_back(Waiter{result.last_offset, result, std::move(done)});
  }
  if (unflushed_messages_ >= config_.flush_messages) flush_target_ = next_offset_;
  if (chunk.size() >= kChunkSubmitBytes) SubmitBuffered(SubmitMode::kWriteBehind);
  return result;
}

absl::Status PartitionLog::MaybeRoll(size_t batch_size, int32_t last_offset_delta, int64_t now_ms) {
  Segment& active = *segments_.back();
  if (active.empty()) return absl::OkStatus();
  const bool full = active.size() + batch_size > config_.segment_bytes ||
                    next_offset_ + last_offset_delta - active.base_offset() >=
                        static_cast<int64_t>(UINT32_MAX);  // index offsets are u32-relative
  const bool old =
      active.first_append_ms() >= 0 && now_ms - active.first_append_ms() >= config_.segment_ms;
  if (!full && !old && !active.indexes_full()) return absl::OkStatus();
  return Roll();
}

absl::Status PartitionLog::Roll() {
  SubmitBuffered();
  auto seg = CreateSegment(next_offset_);
  if (!seg.ok()) {
    // Any other error (EIO...) fails this append only; the next one tries the roll again.
    if (!absl::IsUnavailable(seg.status())) return seg.status();
    // Out of space. Nothing changed: the roll (and every append) waits until a retry creates
    // the segment.
    roll_pending_ = true;
    EnterStall(seg.status());
    return stall_;
  }
  // A batch in the new segment may be acknowledged as durable after an fdatasync of its file,
  // which does not make the file's name durable: without this, a power cut could take the
  // whole segment with it.
  if (absl::Status s = SyncDir(dir_, env_); !s.ok()) {
    (void)(*seg)->Delete();  // appends go on in the old segment; recovery drops it otherwise
    return s;
  }
  roll_pending_ = false;
  Segment* old = segments_.back().get();
  Track(**seg);
  segments_.push_back(std::move(*seg));
  // The old segment is sealed once its last write completed (its index must describe
  // bytes that are in the file); a flush makes it durable so the checkpoint can move on.
  if (old->sealed()) return absl::OkStatus();
  pending_seal_.push_back(old);
  flush_target_ = next_offset_;
  if (in_flight_.empty()) {
    written_end_ = FilePosition{segments_.back()->base_offset(), 0};
    OnWriteDone(nullptr, 0);
  }
  return absl::OkStatus();
}

void PartitionLog::set_segment_cache(SegmentCache* cache) {
  segment_cache_ = cache;
  for (auto& seg : segments_) Track(*seg);
}

void PartitionLog::Track(Segment& segment) {
  if (segment_cache_ != nullptr) segment.set_cache(segment_cache_, this);
}

absl::StatusOr<std::unique_ptr<Segment>> PartitionLog::CreateSegment(int64_t base_offset) {
  if (test_failing_creations_ > 0) {
    --test_failing_creations_;
    return ErrnoStatus("create segment (test)", dir_, test_creation_errno_);
  }
  if (const uint64_t free_bytes = FreeBytes(dir_); free_bytes < kMinFreeBytesForNewSegment) {
    return ErrnoStatus(absl::StrFormat("create segment (%d bytes free)", free_bytes),
                       absl::StrCat(dir_, "/", Segment::FileStem(base_offset), ".log"), ENOSPC);
  }
  auto seg = Segment::Create(dir_, base_offset, config_, env_);
  if (!seg.ok()) {
    // Half-created files would only hold space (and a name the retry truncates anyway).
    for (const char* suffix : {".log", ".index", ".timeindex"}) {
      (void)RemoveFile(absl::StrCat(dir_, "/", Segment::FileStem(base_offset), suffix), env_);
    }
  }
  return seg;
}

std::unique_ptr<PartitionLog::Chunk> PartitionLog::NewChunk() {
  auto chunk = std::make_unique<Chunk>();
  if (!spare_buffers_.empty()) {
    chunk->bytes = std::move(spare_buffers_.back());
    spare_buffers_.pop_back();
    chunk->bytes.clear();
  }
  return chunk;
}

// Write-behind: the kernel's buffered write costs much less per byte for large writes that
// start and end on large aligned boundaries (whole pages, and large folios in the page cache)
// than for writes of whatever size producers' batches have. Measured on ext4 here with 1 KiB
// records in 16,317-byte batches: 1.0-1.1 GB/s writing each batch, 2.3-2.8 GB/s with
// writes cut at 256 KiB boundaries (bench/results/). So when nobody waits for the newest
// bytes, the tail past the last kWriteBehindAlignBytes boundary stays in the buffer and goes
// out with the next write. It is written anyway by the next iteration that appends nothing to
// this log (the shard does not block while has_held_writes()), by any ack or flush that needs
// it, or once it has waited about kMaxWriteBehindMs. Readers see a batch once all its bytes are
// written; a crash loses only bytes nobody was told were written.
bool PartitionLog::MayHoldBack() const {
  return written_waiters_.empty() && durable_waiters_.empty() && flush_target_ <= written_offset_;
}

void PartitionLog::MarkAppended() {
  appended_since_submit_ = true;
  JoinSubmitList();
  JoinTickList();
}

void PartitionLog::SubmitBuffered(SubmitMode mode) {
  const bool appended = appended_since_submit_;
  appended_since_submit_ = false;
  // Out of space: what was accepted before waits in the buffer for the retries to succeed.
  if (open_chunk_ == nullptr || open_chunk_->bytes.empty() || !stall_.ok()) {
    held_since_ms_ = -1;
    return;
  }
  Chunk* chunk = open_chunk_.get();
  // A chunk with lent batches goes out whole at once: it is already a large write, and the
  // callers' buffers should not be held longer than needed (a held tail before a lent batch
  // is flushed with it, in the same gather write).
  if (mode == SubmitMode::kWriteBehind && appended && MayHoldBack() && chunk->lent.empty()) {
    const int64_t now = Now();
    if (held_since_ms_ < 0 || now - held_since_ms_ <= kMaxWriteBehindMs) {
      const uint64_t end = chunk->position + chunk->bytes.size();
      const uint64_t cut = end & ~(kWriteBehindAlignBytes - 1);
      if (cut <= chunk->position) {  // no boundary crossed yet: hold it all
        if (held_since_ms_ < 0) held_since_ms_ = now;
        return;
      }
      if (cut < end) {
        // Everything held before is below `cut`; the new tail is held from now on.
        std::unique_ptr<Chunk> tail = SplitAt(*chunk, static_cast<uint32_t>(cut - chunk->position));
        held_since_ms_ = now;
        Preallocate(*chunk);
        in_flight_.push_back(std::move(open_chunk_));
        open_chunk_ = std::move(tail);
        StartWrite(chunk);
        return;
      }
    }
  }
  held_since_ms_ = -1;
  Preallocate(*chunk);
  in_flight_.push_back(std::move(open_chunk_));
  StartWrite(chunk);
}

void PartitionLog::StartWrite(Chunk* chunk) {
  ++writes_outstanding_;
  auto done = [this, chunk](int result) { OnWriteDone(chunk, result); };
  if (chunk->lent.empty()) {
    io_->Write(chunk->file->fd(), chunk->bytes.data(), static_cast<uint32_t>(chunk->bytes.size()),
               chunk->position, std::move(done));
    return;
  }
  // Owned bytes and lent batches interleaved, in file order.
  std::vector<iovec> iov;
  iov.reserve(2 * chunk->lent.size() + 1);
  uint32_t owned = 0;
  for (const Chunk::Lent& l : chunk->lent) {
    iov.push_back(iovec{chunk->bytes.data() + owned, l.owned_at - owned});
    iov.push_back(iovec{const_cast<uint8_t*>(l.bytes.data()), l.bytes.size()});
    owned = l.owned_at;
  }
  iov.push_back(iovec{chunk->bytes.data() + owned, chunk->bytes.size() - owned});
  io_->WriteV(chunk->file->fd(), iov, chunk->position, std::move(done));
}

// Cuts `chunk` at `cut` (0 < cut < size): returns the bytes from `cut` on as a new chunk and
// sets what a completed write of the head makes visible (the batches that end by `cut`).
std::unique_ptr<PartitionLog::Chunk> PartitionLog::SplitAt(Chunk& chunk, uint32_t cut) {
  assert(chunk.lent.empty());  // written whole (SubmitBuffered)
  const uint32_t size = static_cast<uint32_t>(chunk.bytes.size());
  int64_t end_offset = -1;
  uint32_t visible = 0;
  uint32_t pos = chunk.first_boundary;
  if (pos > 0 && pos <= cut) {
    end_offset = chunk.first_boundary_offset;
    visible = pos;
  }
  // Walk the batches (their headers are in the buffer, base offsets already assigned).
  uint32_t straddle_end = 0;
  int64_t straddle_offset = -1;
  while (pos < size) {
    RecordBatchView batch(std::span<const uint8_t>(chunk.bytes.data() + pos, size - pos));
    const uint32_t end = pos + static_cast<uint32_t>(batch.size_bytes());
    const int64_t next = batch.base_offset() + batch.last_offset_delta() + 1;
    if (end > cut) {
      if (pos < cut) {
        straddle_end = end;
        straddle_offset = next;
      }
      break;
    }
    end_offset = next;
    visible = end;
    pos = end;
  }
  std::unique_ptr<Chunk> tail = NewChunk();
  tail->file = chunk.file;
  tail->segment_base = chunk.segment_base;
  tail->position = chunk.position + cut;
  tail->bytes.assign(chunk.bytes.begin() + cut, chunk.bytes.end());
  tail->end_offset = chunk.end_offset;
  tail->visible_bytes = size - cut;
  if (chunk.first_boundary > cut) {  // the batch begun before this chunk runs past `cut` too
    straddle_end = chunk.first_boundary;
    straddle_offset = chunk.first_boundary_offset;
  }
  if (straddle_offset >= 0) {
    tail->first_boundary = straddle_end - cut;
    tail->first_boundary_offset = straddle_offset;
  }
  chunk.bytes.resize(cut);
  chunk.end_offset = end_offset;
  chunk.visible_bytes = visible;
  return tail;
}

// Appending into blocks allocated ahead with fallocate(KEEP_SIZE) is much cheaper for ext4
// than delayed allocation of every page as it is written (measured: 1 MiB writes 3.0 -> 4.2
// GB/s, 16 KB writes 1.0 -> 1.35 GB/s; bench/results/). The file size does not change, so
// readers and recovery see only written bytes; the reserve grows with the segment (small for
// quiet partitions) and is released when the segment is sealed or the log closed.
void PartitionLog::Preallocate(const Chunk& chunk) {
  if (!preallocate_) return;
  if (preallocate_failing_ && Now() < preallocate_retry_ms_) return;
  if (chunk.segment_base != preallocated_segment_) {
    preallocated_segment_ = chunk.segment_base;
    preallocated_end_ = chunk.position;
  }
  const uint64_t end = chunk.position + chunk.size();
  if (end <= preallocated_end_) return;
  const uint64_t step = std::clamp<uint64_t>(end, kMinPreallocateBytes, kMaxPreallocateBytes);
  const uint64_t limit = std::max<uint64_t>(config_.segment_bytes, end);
  const uint64_t target = std::min(end + step, limit);
  if (int rc = env_->Allocate(chunk.file->fd(), preallocated_end_, target - preallocated_end_);
      rc < 0) {
    const int err = -rc;
    if (IsOutOfSpace(err)) {
      // Plain appends may still fit (and report ENOSPC themselves): try again later.
      if (!preallocate_failing_) {
        LogInfo("%s: fallocate: %s; appending without preallocation until there is room", dir_,
                strerror(err));
      }
      preallocate_failing_ = true;
      preallocate_retry_ms_ = Now() + kPreallocateRetryMs;
      return;
    }
    // Not supported here: plain appends work as well.
    LogInfo("%s: fallocate: %s; appending without preallocation", dir_, strerror(err));
    preallocate_ = false;
    return;
  }
  preallocate_failing_ = false;
  preallocated_end_ = target;
}

// Gives back blocks reserved past the end of a segment that will not grow any more.
void PartitionLog::ReleasePreallocation(Segment& segment) {
  if (!preallocate_) return;
  const bool reserved_here = segment.base_offset() == preallocated_segment_;
  if (reserved_here) preallocated_segment_ = -1;
  // A segment closed by the cache and not preallocated since the log opened is not reopened
  // just for this (a reserve left by a crash stays until the segment is deleted, as above).
  if (!segment.files_open() && !reserved_here) return;
  if (absl::Status s = segment.Acquire(); !s.ok()) {
    LogError("%s: releasing preallocated blocks of %s: %s", dir_,
             Segment::FileStem(segment.base_offset()), s.message());
    return;
  }
  if (int rc = env_->Truncate(segment.file()->fd(), segment.size()); rc < 0) {
    LogError("%s: releasing preallocated blocks of %s: %s", dir_,
             Segment::FileStem(segment.base_offset()), strerror(-rc));
  }
}

void PartitionLog::OnWriteDone(Chunk* chunk, int result) {
  if (chunk != nullptr) {
    --writes_outstanding_;
    if (result < 0) {
      // Never done: the high watermark stops before it, so readers never see bytes that may
      // not be in the file.
      chunk->failed = true;
      if (IsOutOfSpace(-result) && failure_.ok() && !closed_) {
        // Kept (with its lent bytes) and written again once there is room.
        ++failed_chunks_;
        EnterStall(IoStatus("write", chunk->file->path(), result));
      } else {
        chunk->lent.clear();
        if (!closed_) Fail(IoStatus("write", chunk->file->path(), result));
      }
    } else {
      chunk->done = true;
      chunk->lent.clear();  // the callers' buffers are no longer needed
    }
  }
  // Readers see a prefix of the log: advance only over chunks completed in order.
  while (!in_flight_.empty() && in_flight_.front()->done) {
    std::unique_ptr<Chunk> c = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (c->end_offset >= 0) {  // a write-behind head may complete no batch
      written_offset_ = c->end_offset;
      written_end_ = FilePosition{c->segment_base, c->position + c->visible_bytes};
    }
    if (unsynced_segments_.empty() || unsynced_segments_.back() != c->segment_base) {
      unsynced_segments_.push_back(c->segment_base);
    }
    if (spare_buffers_.size() < kMaxSpareBuffers && c->bytes.capacity() <= 4 * kChunkSubmitBytes) {
      spare_buffers_.push_back(std::move(c->bytes));
    }
  }
  if (in_flight_.empty() && open_chunk_ == nullptr && written_offset_ == next_offset_ &&
      !segments_.empty()) {
    // Everything is written: the written end is the end of the active segment.
    written_end_ = FilePosition{segments_.back()->base_offset(), segments_.back()->size()};
  }
  // Seal rolled segments whose writes are all done.
  while (!pending_seal_.empty() &&
         pending_seal_.front()->base_offset() < written_end_.segment_base) {
    Segment* seg = pending_seal_.front();
    pending_seal_.erase(pending_seal_.begin());
    ReleasePreallocation(*seg);
    absl::Status s = seg->Seal();
    if (!s.ok())
      LogError("%s: sealing segment %s: %s", dir_, Segment::FileStem(seg->base_offset()),
               s.message());
  }
  if (failure_.ok()) FireWaiters(written_waiters_, written_offset_);
  if (failed_chunks_ > 0) {
    // Producers are answered now (retriable), not when there is room again: a Kafka
    // connection answers in order, so one held answer would hold every later one.
    const int64_t from = EndBeforeFailedWrite();
    FailWaiters(written_waiters_, stall_, from);
    FailWaiters(durable_waiters_, stall_, from);
  }
  MaybeStartSync();
  MaybeEndStall();
}

int64_t PartitionLog::EndBeforeFailedWrite() const {
  int64_t end = written_offset_;
  for (const auto& c : in_flight_) {
    if (c->failed) break;
    if (c->end_offset >= 0) end = c->end_offset;
  }
  return end;
}

void PartitionLog::MaybeStartSync() {
  // After a sync failed for lack of space, nothing counts as durable before the rewrite.
  if (sync_in_flight_ || !failure_.ok() || resync_ == Resync::kRewrite) return;
  const bool waiters =
      !durable_waiters_.empty() && durable_waiters_.front().last_offset < written_offset_;
  if (!waiters && durable_offset_ >= flush_target_) return;
  // Only completed writes can be covered; the rest waits for the next round.
  if (written_offset_ <= durable_offset_ || unsynced_segments_.empty()) return;
  // The files to sync, opened again if the segment cache closed them (fdatasync through any
  // descriptor of a file covers its pages). Segments deleted since hold nothing to keep, but
  // their deletion must be durable before the offsets above them are: undone by a power cut,
  // a deleted segment whose writes were never synced comes back with a hole, and recovery
  // cuts the log at the first hole, synced segments above it included.
  std::vector<std::shared_ptr<SegmentFile>> files;
  bool deleted_unsynced = false;
  for (int64_t base : unsynced_segments_) {
    const size_t i = SegmentIndexFor(base);
    if (i >= segments_.size() || segments_[i]->base_offset() != base) {
      deleted_unsynced = true;
      continue;
    }
    if (absl::Status s = segments_[i]->Acquire(); !s.ok()) {
      // Out of descriptors, say: nothing is lost, the sync is tried again by the next tick.
      LogError("%s: cannot open segment %s to sync it: %s", dir_, Segment::FileStem(base),
               s.message());
      JoinTickList();
      return;
    }
    if (files.empty() || files.back() != segments_[i]->file()) {
      files.push_back(segments_[i]->file());
    }
  }
  unsynced_segments_.clear();
  sync_in_flight_ = true;
  const int64_t target = written_offset_;
  const FilePosition target_end = written_end_;
  const int64_t messages_covered = unflushed_messages_;
  // A new log's directory (its segment names) and its entry in the data directory go with
  // its first sync (see Recover).
  std::vector<std::string> dirs;
  if (names_pending_) {
    dirs = {dir_, DirName(dir_)};
  } else if (index_names_pending_ || deleted_unsynced) {
    // Index files made by an append (durable before a checkpoint trusts them), or the
    // renames that deleted segments (above).
    dirs = {dir_};
  }
  index_names_pending_ = false;  // set again if the directory sync fails
  auto remaining = std::make_shared<size_t>(files.size() + dirs.size());
  auto first_error = std::make_shared<int>(0);
  auto error_path = std::make_shared<std::string>();
  for (const std::string& dir : dirs) {
    io_->SyncDir(dir, [this, dir, remaining, first_error, error_path, target, target_end,
                       messages_covered](int result) {
      if (result < 0 && *first_error == 0) {
        *first_error = result;
        *error_path = dir;
      }
      if (result < 0) index_names_pending_ = true;
      if (result < 0 && !IsOutOfSpace(-result)) Fail(IoStatus("fsync dir", dir, result));
      if (--*remaining == 0) {
        unflushed_messages_ = std::max<int64_t>(0, unflushed_messages_ - messages_covered);
        OnSyncDone(target, target_end, *first_error, *error_path);
      }
    });
  }
  for (auto& file : files) {
    io_->Sync(file->fd(), [this, file, remaining, first_error, error_path, target, target_end,
                           messages_covered](int result) {
      if (result < 0 && *first_error == 0) {
        *first_error = result;
        *error_path = file->path();
      }
      // fsyncgate: after a failed fdatasync the kernel may have dropped the dirty pages (or
      // marked them clean unwritten), so a later sync proves nothing about them. Out of space
      // is handled by checking and rewriting them (OnSyncDone); anything else fences the log.
      if (result < 0 && !IsOutOfSpace(-result)) Fail(IoStatus("fdatasync", file->path(), result));
      if (--*remaining == 0) {
        unflushed_messages_ = std::max<int64_t>(0, unflushed_messages_ - messages_covered);
        OnSyncDone(target, target_end, *first_error, *error_path);
      }
    });
  }
}

void PartitionLog::OnSyncDone(int64_t target, FilePosition target_end, int result,
                              const std::string& error_path) {
  sync_in_flight_ = false;
  const int64_t now = Now();
  last_flush_ms_ = now;
  if (result < 0 && failure_.ok() && !closed_) {
    // Out of space (other errors fenced the log): nothing past the last good sync counts as
    // durable until it has been checked and written again (RetryAfterStall). Whoever waits
    // for durability is answered now (retriable), as after a failed write.
    resync_ = Resync::kRewrite;
    EnterStall(IoStatus("fdatasync", error_path, result));
    FailWaiters(durable_waiters_, stall_, durable_offset_);
    return;
  }
  if (result >= 0 && failure_.ok()) {
    names_pending_ = false;
    durable_offset_ = std::max(durable_offset_, target);
    durable_end_ = target_end;
    if (resync_ == Resync::kSyncing) resync_ = Resync::kNone;
    FireWaiters(durable_waiters_, durable_offset_);
    // Checkpoint right after a flush (at most once per interval): the tail a crash leaves to
    // re-validate is then about one interval of appends.
    if (!closed_ && now - last_checkpoint_ms_ >= CheckpointIntervalMs() &&
        durable_offset_ != checkpointed_offset_) {
      ScheduleCheckpoint(now);
    }
  }
  MaybeStartSync();
  MaybeEndStall();
}

int64_t PartitionLog::CheckpointIntervalMs() const {
  // The cleaner never compacts past the recovery checkpoint. A compacted log with a sealed
  // segment waiting for it is checkpointed ten times as often, or a fast writer (a group
  // committing offsets) would outrun the cleaner by a whole interval of appends.
  const int64_t interval = config_.recovery_checkpoint_ms;
  if (!config_.compact() || segments_.size() < 2) return interval;
  const Segment& newest_sealed = *segments_[segments_.size() - 2];
  return newest_sealed.next_offset() >= checkpointed_offset_ ? interval / 10 : interval;
}

void PartitionLog::ScheduleCheckpoint(int64_t now_ms) {
  last_checkpoint_ms_ = now_ms;
  if (checkpoint_queue_ == nullptr) {
    CheckpointNow();
    return;
  }
  if (in_checkpoint_queue_) return;
  in_checkpoint_queue_ = true;
  checkpoint_queue_->push_back(this);
}

void PartitionLog::WriteQueuedCheckpoint() {
  in_checkpoint_queue_ = false;
  // Close() writes its own; a fenced log trusts nothing new.
  if (closed_ || !failure_.ok()) return;
  CheckpointNow();
}

void PartitionLog::CheckpointNow() {
  absl::Status s = WriteCheckpoint();
  // Index syncs in flight report the outcome when they complete.
  if (s.ok() && index_syncs_in_flight_ > 0) return;
  CheckpointOutcome(s);
}

void PartitionLog::CheckpointOutcome(const absl::Status& s) {
  if (!s.ok()) {
    // Retried every recovery_checkpoint_ms; one line until it works again.
    if (!checkpoint_failing_) {
      LogWarning(
          "%s: writing recovery checkpoint: %s (retried every %d ms; meanwhile a crash "
          "re-validates more of the log)",
          dir_, s.message(), config_.recovery_checkpoint_ms);
    }
    checkpoint_failing_ = true;
    JoinTickList();  // retried from Tick
  } else if (checkpoint_failing_) {
    LogInfo("%s: recovery checkpoint written again", dir_);
    checkpoint_failing_ = false;
  }
}

void PartitionLog::EnterStall(const absl::Status& why) {
  const int64_t now = Now();
  if (stall_.ok()) {
    stall_ = absl::UnavailableError(absl::StrCat(
        why.message(), " (retriable: appends resume by themselves once the disk has room)"));
    stall_since_ms_ = stall_reported_ms_ = now;
    retry_delay_ms_ = kSpaceRetryMinMs;
    stall_retries_ = 0;
    std::string kept;
    if (written_offset_ < next_offset_) {
      kept = absl::StrFormat("; offsets [%d, %d), accepted before, are kept and written then",
                             written_offset_, next_offset_);
    } else if (resync_ != Resync::kNone && durable_offset_ < written_offset_) {
      kept = absl::StrFormat(
          "; offsets [%d, %d), written since the last good fdatasync, are checked and written "
          "again then",
          durable_offset_, written_offset_);
    }
    LogWarning(
        "%s: out of disk space (%s): appends refused with a retriable error until there "
        "is room%s",
        dir_, why.message(), kept);
  }
  next_retry_ms_ = now + retry_delay_ms_;
}

void PartitionLog::RetryAfterStall(int64_t now_ms) {
  // One attempt at a time: wait for the last one's writes and sync.
  if (stall_.ok() || writes_outstanding_ > 0 || sync_in_flight_) return;
  ++stall_retries_;
  retry_delay_ms_ = std::min(retry_delay_ms_ * 2, kSpaceRetryMaxMs);
  next_retry_ms_ = now_ms + retry_delay_ms_;
  if (now_ms - stall_reported_ms_ >= kStillOutOfSpaceLogMs) {
    stall_reported_ms_ = now_ms;
    LogWarning("%s: still out of disk space after %d s (%d retries): %s", dir_,
               (now_ms - stall_since_ms_) / 1000, stall_retries_, stall_.message());
  }
  if (failed_chunks_ > 0) {
    // In file order, as first submitted; any that fails again puts the log back to waiting.
    for (auto& c : in_flight_) {
      if (!c->failed) continue;
      c->failed = false;
      --failed_chunks_;
      StartWrite(c.get());
    }
    return;
  }
  if (resync_ == Resync::kRewrite) {
    absl::Status s = RewriteSinceLastSync();
    if (!s.ok()) {
      if (absl::IsUnavailable(s)) {
        EnterStall(s);
      } else {
        Fail(s);
      }
      return;
    }
    resync_ = Resync::kSyncing;
    flush_target_ = std::max(flush_target_, written_offset_);
    MaybeStartSync();
    if (!sync_in_flight_) resync_ = Resync::kNone;  // nothing was left to sync
    return;
  }
  if (roll_pending_ && !segments_.back()->empty()) {
    if (!Roll().ok()) return;  // still no room: Roll scheduled the next retry
  }
  roll_pending_ = false;
  MaybeEndStall();
}

void PartitionLog::MaybeEndStall() {
  if (stall_.ok() || !failure_.ok() || closed_ || failed_chunks_ > 0 || roll_pending_ ||
      resync_ != Resync::kNone || writes_outstanding_ > 0) {
    return;
  }
  LogInfo("%s: disk space available again: appends resumed after %d ms (%d retries)", dir_,
          Now() - stall_since_ms_, stall_retries_);
  stall_ = absl::OkStatus();
  // What was accepted before the stall and still buffered goes out with the next submission.
  if (open_chunk_ != nullptr && !open_chunk_->bytes.empty()) MarkAppended();
  SubmitBuffered();
  MaybeStartSync();
}

// After an fdatasync failed for lack of space, Linux may have marked the pages it could not
// write clean (and may evict them), so a later sync would succeed without writing them. The
// bytes since the last good sync are therefore read back, checked batch by batch, and written
// again (dirtying the pages) before the next sync. A batch that no longer checks out was
// dropped by the kernel: the log is fenced (the checkpoint still marks the last good sync).
absl::Status PartitionLog::RewriteSinceLastSync() {
  std::vector<uint8_t> block;
  for (const auto& seg : segments_) {
    if (seg->base_offset() < durable_end_.segment_base) continue;
    if (seg->base_offset() > written_end_.segment_base) break;
    const uint64_t from =
        seg->base_offset() == durable_end_.segment_base ? durable_end_.position : 0;
    const uint64_t to =
        seg->base_offset() == written_end_.segment_base ? written_end_.position : seg->size();
    if (to <= from) continue;
    if (absl::Status s = seg->Acquire(); !s.ok()) return s;
    ScanResult scan =
        ScanBatches(seg->fd(), from, to, /*verify_crc=*/true, seg->base_offset(), nullptr, env_);
    if (!scan.stop_reason.ok() || scan.end_position != to) {
      return absl::DataLossError(absl::StrFormat(
          "%s: bytes [%d, %d) written after the last good fdatasync no longer read back intact "
          "(%s)",
          seg->file()->path(), from, to, scan.stop_reason.message()));
    }
    for (uint64_t pos = from; pos < to;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kRewriteBlockBytes, to - pos));
      block.resize(n);
      auto got = PreadFully(seg->fd(), block.data(), n, pos, env_);
      if (!got.ok()) return got.status();
      if (*got != n) return absl::DataLossError(seg->file()->path() + ": shorter than written");
      absl::Status w = PwriteFully(seg->fd(), block.data(), n, pos, seg->file()->path(), env_);
      if (!w.ok()) return w;
      pos += n;
    }
    unsynced_segments_.push_back(seg->base_offset());
  }
  return absl::OkStatus();
}

void PartitionLog::FireWaiters(std::deque<Waiter>& waiters, int64_t below) {
  while (!waiters.empty() && waiters.front().last_offset < below) {
    Waiter w = std::move(waiters.front());
    waiters.pop_front();
    w.done(absl::OkStatus(), w.result);
  }
}

void PartitionLog::Fail(absl::Status status) {
  if (failure_.ok()) {
    LogError(
        "%s: LOG FENCED, read-only until restart: %s. Nothing written after offset %d (the "
        "last good fdatasync) will be acknowledged; a restart recovers the log from its "
        "recovery checkpoint.",
        dir_, status.message(), durable_offset_);
    // Internal whatever the cause: the protocols answer it as a storage error (Kafka
    // KAFKA_STORAGE_ERROR), never as a problem with the client's batch.
    failure_ = absl::InternalError(
        absl::StrCat("log fenced until restart: ", dir_, ": ", status.message()));
  }
  for (auto& c : in_flight_) c->lent.clear();  // failed chunks are never written now
  FailAllWaiters(failure_);
}

void PartitionLog::FailAllWaiters(const absl::Status& status) {
  FailWaiters(written_waiters_, status, INT64_MIN);
  FailWaiters(durable_waiters_, status, INT64_MIN);
}

// Fails every waiting callback whose batch ends at or after `from_offset` (waiters are in
// offset order: those are the last ones).
void PartitionLog::FailWaiters(std::deque<Waiter>& waiters, const absl::Status& status,
                               int64_t from_offset) {
  std::deque<Waiter> failed;
  while (!waiters.empty() && waiters.back().last_offset >= from_offset) {
    failed.push_front(std::move(waiters.back()));
    waiters.pop_back();
  }
  for (Waiter& w : failed) w.done(status, w.result);
}

bool PartitionLog::WaitFor(int64_t last_offset, AckLevel ack, AppendCallback done) {
  JoinTickList();
  if (config_.flush_messages <= 1) ack = AckLevel::kDurable;
  last_offset = std::min(last_offset, next_offset_ - 1);
  if (last_offset < (ack == AckLevel::kDurable ? durable_offset_ : written_offset_)) return false;
  if (!failure_.ok() || closed_ || !stall_.ok()) {
    // Out of space: answered at once (retriable), like an append, never held.
    done(!failure_.ok() ? failure_
         : closed_      ? absl::FailedPreconditionError("log is closed")
                        : stall_,
         {});
    return true;
  }
  // Waiters are kept in offset order: queued behind the newest one, it runs no earlier than
  // its own offset is reached.
  std::deque<Waiter>& waiters = ack == AckLevel::kDurable ? durable_waiters_ : written_waiters_;
  const int64_t at =
      waiters.empty() ? last_offset : std::max(last_offset, waiters.back().last_offset);
  waiters.push_back(Waiter{at, AppendResult{}, std::move(done)});
  if (ack == AckLevel::kDurable) {
    flush_target_ = std::max(flush_target_, at + 1);
    MaybeStartSync();
  }
  return true;
}

bool PartitionLog::NeedsTicks() const {
  if (closed_ || !failure_.ok()) return false;  // Tick() does nothing for them
  if (!stall_.ok() || resync_ != Resync::kNone) return true;
  if (open_chunk_ != nullptr || !in_flight_.empty() || writes_outstanding_ > 0 || sync_in_flight_ ||
      !pending_seal_.empty() || !unsynced_segments_.empty()) {
    return true;
  }
  if (durable_offset_ != next_offset_ || flush_target_ > durable_offset_ ||
      !written_waiters_.empty() || !durable_waiters_.empty()) {
    return true;
  }
  // A checkpoint waiting in the manager's queue is written by the queue, not by a tick: with
  // thousands of logs flushed together, visiting every waiting log on every tick was most of
  // the CPU spent while they drained. A failed write comes back to the tick list (retried).
  if (!in_checkpoint_queue_ && !NeverWritten() &&
      (durable_offset_ != checkpointed_offset_ || log_start_offset_ != checkpointed_log_start_)) {
    return true;
  }
  if (checkpoint_failing_) return true;
  return segments_.size() > 1 || config_.compact() || cleaner_ != nullptr;
}

void PartitionLog::Tick(int64_t now_ms) {
  if (!failure_.ok() || closed_) return;
  if (!stall_.ok() && now_ms >= next_retry_ms_) RetryAfterStall(now_ms);
  if (config_.flush_ms != kNever && now_ms - last_flush_ms_ >= config_.flush_ms &&
      durable_offset_ < next_offset_) {
    flush_target_ = next_offset_;
  }
  const int64_t checkpoint_interval = CheckpointIntervalMs();
  if (now_ms - last_flush_ms_ >= checkpoint_interval / 2) {
    flush_target_ = next_offset_;  // background flush; its completion writes the checkpoint
  }
  // A log that never held a batch needs no checkpoint (a start without one re-validates the
  // empty log): thousands of new partitions must not each write one.
  if (now_ms - last_checkpoint_ms_ >= checkpoint_interval && !NeverWritten() &&
      (durable_offset_ != checkpointed_offset_ || log_start_offset_ != checkpointed_log_start_)) {
    ScheduleCheckpoint(now_ms);
  }
  ApplyRetention(now_ms);
  SubmitBuffered();
  MaybeStartSync();
  // A pass left behind by a switch away from compact is abandoned by CleanStep. The cleaner
  // writes too: not while the disk is full.
  if ((config_.compact() || cleaner_ != nullptr) && stall_.ok()) {
    CleanStep(now_ms, config_.cleaner_bytes_per_tick);
  }
}

RecoveryCheckpoint PartitionLog::CurrentCheckpoint() const {
  RecoveryCheckpoint cp;
  cp.recovery_offset = durable_offset_;
  cp.segment_base = durable_end_.segment_base;
  cp.position = durable_end_.position;
  cp.log_start_offset = log_start_offset_;
  return cp;
}

absl::Status PartitionLog::StageCheckpointAfterIndexSyncs() {
  if (index_syncs_in_flight_ > 0) return absl::OkStatus();  // a later checkpoint stages it
  const RecoveryCheckpoint cp = CurrentCheckpoint();
  std::vector<int> fds;
  std::vector<int64_t> bases;  // segments whose indexes are being synced
  for (auto& seg : segments_) {
    if (seg->base_offset() < durable_end_.segment_base || seg->sealed()) continue;
    const size_t before = fds.size();
    if (absl::Status s = seg->TakeUnsyncedIndexFds(&fds); !s.ok()) return s;
    if (fds.size() > before) bases.push_back(seg->base_offset());
  }
  if (fds.empty()) {
    recovery_points_->Stage(recovery_name_, RecoveryPoint{cp, false}, this);
    return absl::OkStatus();
  }
  index_syncs_in_flight_ = static_cast<int>(fds.size());
  auto failed = std::make_shared<int>(0);
  for (int fd : fds) {
    io_->Sync(fd, [this, cp, bases, failed](int result) {
      if (result < 0 && *failed == 0) *failed = result;
      if (--index_syncs_in_flight_ > 0) return;
      if (*failed < 0) {
        for (const auto& seg : segments_) {
          if (std::find(bases.begin(), bases.end(), seg->base_offset()) != bases.end()) {
            seg->MarkIndexesUnsynced();
          }
        }
        CheckpointOutcome(IoStatus("fdatasync of the indexes", dir_, *failed));
        return;
      }
      // Durable with the store's next commit (LogManager::Tick), which calls
      // CheckpointCommitted: until then the log counts the previous checkpoint as its own.
      if (!closed_ && failure_.ok()) {
        recovery_points_->Stage(recovery_name_, RecoveryPoint{cp, false}, this);
        CheckpointOutcome(absl::OkStatus());
      }
    });
  }
  io_->Submit();
  return absl::OkStatus();
}

absl::Status PartitionLog::WriteCheckpoint() {
  if (recovery_points_ != nullptr && io_->kind() == IoBackendKind::kIoUring) {
    return StageCheckpointAfterIndexSyncs();
  }
  // Index pages below the recovery point must survive power loss too, or a restart would
  // walk whole segments to rebuild them.
  for (auto& seg : segments_) {
    if (seg->base_offset() >= durable_end_.segment_base && !seg->sealed()) {
      absl::Status s = seg->SyncIndexes();
      if (!s.ok()) return s;
    }
  }
  const RecoveryCheckpoint cp = CurrentCheckpoint();
  if (recovery_points_ != nullptr) {
    // Durable with the store's next commit (LogManager::Tick), which calls
    // CheckpointCommitted: until then the log counts the previous checkpoint as its own.
    recovery_points_->Stage(recovery_name_, RecoveryPoint{cp, false}, this);
    return absl::OkStatus();
  }
  absl::Status s =
      WriteRecoveryCheckpoint(absl::StrCat(dir_, "/", kRecoveryCheckpointFile), cp, env_);
  if (s.ok()) {
    checkpointed_offset_ = cp.recovery_offset;
    checkpointed_log_start_ = cp.log_start_offset;
    checkpointed_end_ = durable_end_;
  }
  return s;
}

uint64_t PartitionLog::size_bytes() const {
  uint64_t total = 0;
  for (const auto& seg : segments_) total += seg->size();
  return total;
}

std::vector<int64_t> PartitionLog::segment_base_offsets() const {
  std::vector<int64_t> out;
  for (const auto& seg : segments_) out.push_back(seg->base_offset());
  return out;
}

void PartitionLog::ApplyRetention(int64_t now_ms) {
  uint64_t total = size_bytes();
  while (segments_.size() > 1) {
    Segment& first = *segments_.front();
    const int64_t next_base = segments_[1]->base_offset();
    // Never delete what is not fully written (or still waiting to be sealed).
    if (first.base_offset() >= written_end_.segment_base) break;
    if (!pending_seal_.empty() && pending_seal_.front() == &first) break;
    const bool below_start = next_base <= log_start_offset_;
    // A compact-only log is shortened by the cleaner, never by retention.ms/bytes.
    const bool by_bytes = config_.delete_retention() && config_.retention_bytes >= 0 &&
                          total - first.size() >= static_cast<uint64_t>(config_.retention_bytes);
    const bool by_time = config_.delete_retention() && config_.retention_ms >= 0 &&
                         first.max_timestamp() >= 0 &&
                         now_ms - first.max_timestamp() > config_.retention_ms;
    if (!below_start && !by_bytes && !by_time) break;
    total -= first.size();
    absl::Status s = first.Delete(io_);
    if (!s.ok()) {
      LogError("%s: deleting segment: %s", dir_, s.message());
      break;
    }
    segments_.erase(segments_.begin());
    log_start_offset_ = std::max(log_start_offset_, segments_.front()->base_offset());
  }
}

absl::Status PartitionLog::AdvanceLogStart(int64_t offset) {
  if (offset > written_offset_) {
    return absl::OutOfRangeError(
        absl::StrFormat("log start %d past high watermark %d", offset, written_offset_));
  }
  if (offset <= log_start_offset_) return absl::OkStatus();
  log_start_offset_ = offset;
  JoinTickList();  // a checkpoint to write
  ApplyRetention(Now());
  return absl::OkStatus();
}

namespace {

// The header of the batch at `position` of `segment` (whose files are open), which holds
// `limit` bytes.
absl::StatusOr<BatchHeader> ReadBatchHeader(const Segment& segment, uint64_t position,
                                            uint64_t limit, Env* env) {
  uint8_t head[kBatchHeaderSize];
  auto got = PreadFully(segment.fd(), head, sizeof(head), position, env);
  if (!got.ok()) return got.status();
  auto header =
      ParseBatchHeader(std::span<const uint8_t>(head, *got),
                       static_cast<uint32_t>(std::min<uint64_t>(limit - position, UINT32_MAX)));
  if (!header.ok()) {
    return absl::DataLossError(absl::StrFormat("%s: bad batch at %d: %s", segment.file()->path(),
                                               position, header.status().message()));
  }
  return header;
}

}  // namespace

absl::StatusOr<uint64_t> PartitionLog::CutPosition(const Segment& segment, int64_t offset) const {
  const auto not_a_boundary = [&] {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: offset %d is not a batch boundary (inside a batch, or after a gap left by "
        "compaction)",
        dir_, offset));
  };
  if (absl::Status s = segment.Acquire(); !s.ok()) return s;
  const uint64_t limit = segment.size();  // everything is written (TruncateTo waited)
  // The batch holding offset - 1 must end there: the segment then ends at `offset` once cut.
  auto before = segment.FindPosition(offset - 1, limit);
  if (absl::IsNotFound(before.status())) return not_a_boundary();
  if (!before.ok()) return before.status();
  auto prev = ReadBatchHeader(segment, *before, limit, env_);
  if (!prev.ok()) return prev.status();
  if (prev->last_offset() != offset - 1) return not_a_boundary();
  const uint64_t position = *before + prev->size_bytes();
  if (position >= limit) return not_a_boundary();
  auto next = ReadBatchHeader(segment, position, limit, env_);
  if (!next.ok()) return next.status();
  if (next->base_offset != offset) return not_a_boundary();
  return position;
}

absl::Status PartitionLog::LowerCheckpoint(const RecoveryCheckpoint& cp) {
  // The index of the checkpointed segment is trusted below the checkpoint from now on (as
  // WriteCheckpoint syncs it); the segments before it are sealed, hence synced.
  for (auto& seg : segments_) {
    if (seg->base_offset() == cp.segment_base && !seg->sealed()) {
      if (absl::Status s = seg->SyncIndexes(); !s.ok()) return s;
    }
  }
  if (recovery_points_ != nullptr) {
    // Staged, it replaces any higher point staged for this log. A higher point on disk, or
    // one a commit in flight may be writing, must be replaced durably before the cut: the
    // commit waits for the one in flight, then writes this one after it.
    recovery_points_->Stage(recovery_name_, RecoveryPoint{cp, false}, this);
    if (checkpointed_offset_ > cp.recovery_offset || recovery_points_->commit_in_flight()) {
      return recovery_points_->Commit(/*rewrite=*/false, io_);
    }
    return absl::OkStatus();
  }
  absl::Status s =
      WriteRecoveryCheckpoint(absl::StrCat(dir_, "/", kRecoveryCheckpointFile), cp, env_);
  if (!s.ok()) return s;
  checkpointed_offset_ = cp.recovery_offset;
  checkpointed_log_start_ = cp.log_start_offset;
  checkpointed_end_ = FilePosition{cp.segment_base, cp.position};
  return absl::OkStatus();
}

absl::Status PartitionLog::TruncateTo(int64_t offset) {
  if (!failure_.ok()) return failure_;
  if (closed_) return absl::FailedPreconditionError("log is closed");
  if (!stall_.ok()) return stall_;
  if (offset < log_start_offset_ || offset > next_offset_) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: truncation offset %d outside [%d, %d]",
                                                      dir_, offset, log_start_offset_,
                                                      next_offset_));
  }
  if (offset == next_offset_) return absl::OkStatus();
  // Nothing at or above the cut is acknowledged from here on, although it is written first:
  // its waiters wait aside, answered Aborted once the cut is made (or put back if it is not).
  std::deque<Waiter> written = TakeWaiters(written_waiters_, offset);
  std::deque<Waiter> durable = TakeWaiters(durable_waiters_, offset);
  if (absl::Status s = CutTail(offset); !s.ok()) {
    RestoreWaiters(written, durable);
    return s;
  }
  FireWaiters(durable_waiters_, durable_offset_);
  const absl::Status truncated =
      absl::AbortedError(absl::StrFormat("%s: truncated to offset %d", dir_, offset));
  for (auto* waiters : {&written, &durable}) {
    for (Waiter& w : *waiters) w.done(truncated, w.result);
  }
  // Any a callback run meanwhile added (WaitFor) for an offset that is now gone too.
  FailWaiters(written_waiters_, truncated, offset);
  FailWaiters(durable_waiters_, truncated, offset);
  JoinTickList();
  MaybeStartSync();  // for durable waiters below the cut
  return absl::OkStatus();
}

std::deque<PartitionLog::Waiter> PartitionLog::TakeWaiters(std::deque<Waiter>& waiters,
                                                           int64_t from_offset) {
  std::deque<Waiter> taken;
  while (!waiters.empty() && waiters.back().last_offset >= from_offset) {
    taken.push_front(std::move(waiters.back()));
    waiters.pop_back();
  }
  return taken;
}

// As if they had never been taken: answered as the completions since would have answered them.
void PartitionLog::RestoreWaiters(std::deque<Waiter>& written, std::deque<Waiter>& durable) {
  for (Waiter& w : written) written_waiters_.push_back(std::move(w));
  for (Waiter& w : durable) durable_waiters_.push_back(std::move(w));
  if (!failure_.ok()) {
    FailAllWaiters(failure_);
    return;
  }
  FireWaiters(written_waiters_, written_offset_);
  FireWaiters(durable_waiters_, durable_offset_);
  if (failed_chunks_ > 0) {  // as OnWriteDone answers them
    const int64_t from = EndBeforeFailedWrite();
    FailWaiters(written_waiters_, stall_, from);
    FailWaiters(durable_waiters_, stall_, from);
  }
  if (resync_ != Resync::kNone) FailWaiters(durable_waiters_, stall_, durable_offset_);
  MaybeStartSync();
}

absl::Status PartitionLog::CutTail(int64_t offset) {
  // What stays below the cut is written first, and no write or sync of this log may land
  // after the cut.
  SubmitBuffered();
  io_->Submit();
  WaitForIo();
  if (!failure_.ok()) return failure_;
  if (!stall_.ok()) return stall_;  // a write failed for lack of space: nothing is cut
  if (open_chunk_ != nullptr || !in_flight_.empty() || written_offset_ != next_offset_) {
    return absl::InternalError(absl::StrCat(dir_, ": appends still unwritten; not truncated"));
  }

  const size_t at = SegmentIndexFor(offset);
  Segment& holder = *segments_[at];
  uint64_t position = 0;  // of `offset` in `holder`
  if (holder.base_offset() != offset) {
    auto cut = CutPosition(holder, offset);
    if (!cut.ok()) return cut.status();
    position = *cut;
  }
  // Segments from `first_doomed` on are deleted. A fresh active segment follows when none
  // that can take appends is left (its indexes sealed, or none at all).
  const size_t first_doomed = position > 0 ? at + 1 : at;
  const bool fresh = position == 0 || holder.sealed();
  if (fresh && FreeBytes(dir_) < kMinFreeBytesForNewSegment) {
    return absl::UnavailableError(
        absl::StrCat(dir_, ": no room for the segment a truncation would start; not truncated"));
  }
  // Where the log ends once cut, in the segment that keeps the batch before the cut (or at
  // the fresh segment's start when nothing stays).
  FilePosition cut_end{offset, 0};
  if (position > 0) {
    cut_end = FilePosition{holder.base_offset(), position};
  } else if (at > 0) {
    cut_end = FilePosition{segments_[at - 1]->base_offset(), segments_[at - 1]->size()};
  }

  // The cleaner would rewrite segments that change under it.
  if (cleaner_ != nullptr) {
    cleaner_->LogTruncated(offset);
  } else if (absl::Status s = LowerCleanerCheckpoint(dir_, offset, env_); !s.ok()) {
    LogError("%s: lowering the cleaner checkpoint to %d: %s", dir_, offset, s.message());
  }
  // No checkpoint may trust bytes past the cut once the files change: the one on disk (or
  // being written, or staged) is lowered durably first. A crash from here on recovers every
  // batch below the cut that is durable; what was past it may come back until the cut and
  // the deletions are durable.
  const bool lower_durable = durable_offset_ > offset;
  if (checkpointed_offset_ > offset || (recovery_points_ != nullptr && lower_durable)) {
    RecoveryCheckpoint cp = CurrentCheckpoint();
    if (lower_durable) {
      cp.recovery_offset = offset;
      cp.segment_base = cut_end.segment_base;
      cp.position = cut_end.position;
    }
    if (absl::Status s = LowerCheckpoint(cp); !s.ok()) return s;
    last_checkpoint_ms_ = Now();
  }
  if (lower_durable) {
    durable_offset_ = offset;
    durable_end_ = cut_end;
  }

  // From here on the files change: an error fences the log, and the next open recovers it.
  const auto fence = [this](const absl::Status& s) {
    Fail(absl::Status(s.code(), absl::StrCat("truncation: ", s.message())));
    return failure_;
  };
  const size_t segments_before = segments_.size();
  if (position > 0) {
    if (absl::Status s = holder.TruncateTo(position, offset); !s.ok()) return fence(s);
    // Durable before any later segment goes: a power cut may then bring back a deleted
    // segment, but after a hole, which recovery removes.
    if (int rc = env_->Fdatasync(holder.fd()); rc < 0) {
      return fence(IoStatus("fdatasync", holder.file()->path(), rc));
    }
    // The zeroed entries too: else a power cut could bring back entries that describe the
    // removed batches, below a later checkpoint that trusts them.
    if (absl::Status s = holder.SyncIndexes(); !s.ok()) return fence(s);
    if (preallocated_segment_ == holder.base_offset()) {
      preallocated_end_ = std::min<uint64_t>(preallocated_end_, position);
    }
  }
  // Newest first: a power cut that keeps only some of the deletions leaves a log that ends
  // earlier, never one without its first segments (recovery cannot tell a missing first
  // segment from one that retention deleted). Unlinked here, not through the backend: a fresh
  // segment may take the last one's names at once.
  while (segments_.size() > first_doomed) {
    Segment* doomed = segments_.back().get();
    std::erase(pending_seal_, doomed);
    if (absl::Status s = doomed->Delete(); !s.ok()) return fence(s);
    segments_.pop_back();
  }
  if (preallocated_segment_ >= offset) preallocated_segment_ = -1;
  if (fresh) {
    // As a roll makes it (and Recover, after a crash between a roll's steps).
    auto seg = CreateSegment(offset);
    if (!seg.ok()) return fence(seg.status());
    Track(**seg);
    segments_.push_back(std::move(*seg));
  }
  if (fresh || segments_before > first_doomed) {
    if (absl::Status s = SyncDir(dir_, env_); !s.ok()) return fence(s);
  }

  LogInfo("%s: truncated from %d to %d (%d segments removed%s)", dir_, next_offset_, offset,
          segments_before - first_doomed, fresh ? ", a fresh one started" : "");
  next_offset_ = written_offset_ = offset;
  written_end_ = FilePosition{segments_.back()->base_offset(), segments_.back()->size()};
  flush_target_ = std::min(flush_target_, offset);
  // Deleted segments (and the fresh one) hold nothing to sync; the holder's cut was synced,
  // but what it kept of its earlier writes may not be: it stays listed.
  std::erase_if(unsynced_segments_, [offset](int64_t base) { return base >= offset; });
  if (unsynced_segments_.empty() && durable_offset_ < offset) {
    // No segment left was written since its last sync: what was not durable was in the
    // deleted ones (or below the log start, after a crash), and no sync would move the
    // durable offset up to the end again.
    durable_offset_ = offset;
    durable_end_ = cut_end;
  }
  return absl::OkStatus();
}

size_t PartitionLog::SegmentIndexFor(int64_t offset) const {
  auto it = std::upper_bound(
      segments_.begin(), segments_.end(), offset,
      [](int64_t o, const std::unique_ptr<Segment>& s) { return o < s->base_offset(); });
  return it == segments_.begin() ? 0 : static_cast<size_t>(it - segments_.begin()) - 1;
}

uint64_t PartitionLog::ReadableLimit(const Segment& segment) const {
  if (segment.base_offset() < written_end_.segment_base) return segment.size();
  if (segment.base_offset() == written_end_.segment_base) return written_end_.position;
  return 0;
}

absl::StatusOr<FileSlice> PartitionLog::ReadBelow(int64_t offset, uint32_t max_bytes,
                                                  int64_t end) const {
  if (offset < log_start_offset_ || offset > written_offset_) {
    return absl::OutOfRangeError(
        absl::StrFormat("offset %d outside [%d, %d]", offset, log_start_offset_, written_offset_));
  }
  FileSlice slice;
  slice.first_offset = offset;
  if (offset >= end) return slice;
  for (size_t i = SegmentIndexFor(offset); i < segments_.size(); ++i) {
    const Segment& seg = *segments_[i];
    uint64_t limit = ReadableLimit(seg);
    if (limit == 0 || seg.base_offset() >= end) break;
    if (end < written_offset_ && end < seg.next_offset()) {
      // `end` (the replicated offset) is a batch boundary: stop at that batch.
      auto end_pos = seg.FindPosition(end, limit);
      if (end_pos.ok()) limit = std::min(limit, *end_pos);
      if (limit == 0) break;
    }
    auto pos = seg.FindPosition(std::max(offset, seg.base_offset()), limit);
    if (absl::IsNotFound(pos.status())) continue;  // offset in a gap: next segment
    if (!pos.ok()) return pos.status();
    uint8_t head[kBatchHeaderSize];
    auto got = PreadFully(seg.fd(), head, sizeof(head), *pos, env_);
    if (!got.ok()) return got.status();
    auto header =
        ParseBatchHeader(std::span<const uint8_t>(head, *got), static_cast<uint32_t>(limit - *pos));
    if (!header.ok()) return absl::DataLossError(header.status().message());
    auto end = seg.FindBatchBoundaryAtOrBelow(*pos, *pos + max_bytes, limit);
    if (!end.ok()) return end.status();
    uint64_t stop = *end;
    if (stop == *pos) stop = *pos + header->size_bytes();  // at least one whole batch
    slice.file = seg.file();
    slice.position = *pos;
    slice.size = static_cast<uint32_t>(stop - *pos);
    slice.first_offset = header->base_offset;
    return slice;
  }
  return slice;
}

absl::StatusOr<int64_t> PartitionLog::OffsetForTime(int64_t timestamp_ms) const {
  for (size_t i = SegmentIndexFor(log_start_offset_); i < segments_.size(); ++i) {
    const Segment& seg = *segments_[i];
    const uint64_t limit = ReadableLimit(seg);
    if (limit == 0) break;
    if (seg.max_timestamp() < timestamp_ms) continue;
    auto off = seg.FindOffsetForTime(timestamp_ms, limit);
    if (absl::IsNotFound(off.status())) continue;
    if (!off.ok()) return off.status();
    const int64_t result = std::max(*off, log_start_offset_);
    if (result >= high_watermark())
      break;  // only records below the log start (or unreplicated ones) matched
    return result;
  }
  return absl::NotFoundError(absl::StrFormat("no record with timestamp >= %d", timestamp_ms));
}

absl::StatusOr<std::pair<int64_t, int64_t>> PartitionLog::MaxTimestamp() const {
  int64_t best_ts = -1;
  int64_t best_offset = -1;
  for (size_t i = SegmentIndexFor(log_start_offset_); i < segments_.size(); ++i) {
    const Segment& seg = *segments_[i];
    if (ReadableLimit(seg) == 0) break;
    const int64_t offset = seg.offset_of_max_timestamp();
    // A batch not yet readable, or below the log start, does not count.
    if (offset < log_start_offset_ || offset >= written_offset_) continue;
    if (seg.max_timestamp() > best_ts) {
      best_ts = seg.max_timestamp();
      best_offset = offset;
    }
  }
  if (best_offset < 0) return absl::NotFoundError("no readable batch");
  return std::make_pair(best_ts, best_offset);
}

absl::Status PartitionLog::Flush() {
  JoinTickList();  // a checkpoint to write
  flush_target_ = next_offset_;
  SubmitBuffered();
  io_->Submit();
  MaybeStartSync();
  while (failure_.ok() && stall_.ok() && durable_offset_ < next_offset_) {
    io_->Poll(absl::Milliseconds(100));
    MaybeStartSync();
  }
  if (!failure_.ok()) return failure_;
  return stall_;
}

// Close on a still-full disk: what was never written is dropped. None of it was acknowledged
// (its callbacks fail now) and readers never saw it; the files are cut back to the written
// prefix so that they hold no torn batch. True when anything was dropped.
bool PartitionLog::DropUnwritten(const absl::Status& why) {
  if (stall_.ok()) return false;
  const int64_t dropped_from = written_offset_;
  const int64_t dropped_to = next_offset_;
  if (dropped_to == dropped_from) {
    // Only a roll (or a sync) was waiting: nothing to drop.
    roll_pending_ = false;
    if (resync_ == Resync::kNone) stall_ = absl::OkStatus();
    return false;
  }
  FailWaiters(written_waiters_, why, written_offset_);
  FailWaiters(durable_waiters_, why, written_offset_);
  for (auto& c : in_flight_) c->lent.clear();
  in_flight_.clear();
  failed_chunks_ = 0;
  open_chunk_.reset();
  held_since_ms_ = -1;
  roll_pending_ = false;
  // Segments rolled after the written end hold nothing written.
  while (segments_.size() > 1 && segments_.back()->base_offset() > written_end_.segment_base) {
    Segment* doomed = segments_.back().get();
    std::erase(pending_seal_, doomed);
    if (absl::Status s = doomed->Delete(); !s.ok()) {
      LogWarning("%s: removing unwritten segment: %s (the next start removes it)", dir_,
                 s.message());
    }
    segments_.pop_back();
  }
  Segment& last = *segments_.back();
  std::erase(pending_seal_, &last);
  if (last.base_offset() == written_end_.segment_base && last.size() > written_end_.position) {
    if (absl::Status s = last.TruncateTo(written_end_.position, written_offset_); !s.ok()) {
      LogWarning("%s: cutting unwritten bytes: %s (the next start cuts them)", dir_, s.message());
    }
  }
  next_offset_ = written_offset_;
  flush_target_ = std::min(flush_target_, next_offset_);
  LogWarning(
      "%s: closing out of disk space: offsets [%d, %d) were never written and are dropped "
      "(none was acknowledged)",
      dir_, dropped_from, dropped_to);
  // The written part may still be made durable (unless its sync is what failed).
  if (resync_ == Resync::kNone) stall_ = absl::OkStatus();
  return true;
}

void PartitionLog::WaitForIo() {
  while (writes_outstanding_ > 0 || sync_in_flight_ || index_syncs_in_flight_ > 0) {
    io_->Poll(absl::Milliseconds(100));
  }
}

absl::Status PartitionLog::Close(MarkerSync marker_sync) {
  if (closed_) return absl::OkStatus();
  // A last try at what waits for space (there may be room again since the last retry); each
  // step (rewrite failed writes, redo a failed sync) takes one attempt.
  roll_pending_ = false;  // only the next append needs the new segment
  for (int attempt = 0; attempt < 3 && !stall_.ok() && failure_.ok(); ++attempt) {
    WaitForIo();
    RetryAfterStall(Now());
    WaitForIo();
  }
  absl::Status s = Flush();
  WaitForIo();
  const absl::Status out_of_space = stall_;
  const bool dropped = DropUnwritten(out_of_space);
  if (!out_of_space.ok() && stall_.ok() && failure_.ok()) {
    s = Flush();  // what was written can still be made durable
    WaitForIo();
  }
  closed_ = true;
  // Whatever still waits for a sync that did not happen: not acknowledged.
  if (!s.ok()) FailAllWaiters(s);
  if (!failure_.ok()) return failure_;  // fenced: nothing more is written
  if (!segments_.empty()) ReleasePreallocation(*segments_.back());
  bool indexes_synced = true;
  for (auto& seg : segments_) {
    if (!seg->sealed()) {
      if (absl::Status synced = seg->SyncIndexes(); !synced.ok()) {
        indexes_synced = false;
        if (s.ok()) s = synced;
      }
    }
  }
  if (recovery_points_ != nullptr) {
    // The shard's store marks every log clean in one rewrite (LogManager::Close), instead of
    // a checkpoint write and a marker file per log. Without synced indexes the point on disk
    // stays the last committed one. An empty log gets one too: the next start then knows it
    // was closed cleanly rather than finding nothing to re-validate.
    if (indexes_synced) {
      recovery_points_->Stage(recovery_name_,
                              RecoveryPoint{CurrentCheckpoint(), s.ok() && !dropped}, nullptr);
    }
    if (s.ok() && dropped) s = out_of_space;
    return s;
  }
  // An unchanged checkpoint is not rewritten, and a log that never held a batch needs none:
  // idle logs close cleanly on a full disk too.
  const bool checkpoint_current = NeverWritten() || (durable_offset_ == checkpointed_offset_ &&
                                                     log_start_offset_ == checkpointed_log_start_ &&
                                                     durable_end_ == checkpointed_end_);
  if (!checkpoint_current) {
    if (absl::Status cp = WriteCheckpoint(); !cp.ok() && s.ok()) s = cp;
  }
  // Without the marker the next start re-validates past the checkpoint: the safe default
  // whenever something could not be done.
  if (s.ok() && !dropped) {
    const std::string marker = absl::StrCat(dir_, "/", kCleanShutdownFile);
    if (marker_sync == MarkerSync::kNow) {
      s = WriteFileAtomically(marker, {}, env_);
    } else {
      // Empty: its name is all it says, so no temporary file and no data sync are needed,
      // only the directory's fsync, which the caller does for many logs at once.
      s = CreateEmptyFile(marker, env_);
      needs_dir_sync_ = s.ok();
    }
  }
  if (s.ok() && dropped) s = out_of_space;
  return s;
}

absl::Status PartitionLog::DeleteAll() {
  closed_ = true;
  while (writes_outstanding_ > 0 || sync_in_flight_ || index_syncs_in_flight_ > 0) {
    io_->Poll(absl::Milliseconds(100));
  }
  FailAllWaiters(absl::FailedPreconditionError(absl::StrCat(dir_, ": log deleted")));
  for (auto& c : in_flight_) c->lent.clear();
  segments_.clear();
  return RemoveTree(dir_, env_);
}

absl::StatusOr<std::vector<uint8_t>> PartitionLog::ReadBytes(const FileSlice& slice) {
  std::vector<uint8_t> out(slice.size);
  if (slice.size == 0) return out;
  auto got =
      PreadFully(slice.file->fd(), out.data(), out.size(), slice.position, slice.file->env());
  if (!got.ok()) return got.status();
  if (*got != out.size()) return absl::DataLossError("file shorter than the slice");
  return out;
}

}  // namespace sluice::storage
