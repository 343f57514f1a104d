#include "log/log_manager.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::storage {

std::string TopicPartition::DirName() const { return absl::StrCat(topic, "-", partition); }

bool TopicPartition::FromDirName(const std::string& name, TopicPartition* out) {
  size_t dash = name.rfind('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == name.size()) return false;
  int32_t p;
  if (!absl::SimpleAtoi(name.substr(dash + 1), &p) || p < 0) return false;
  out->topic = name.substr(0, dash);
  out->partition = p;
  return true;
}

LogManager::LogManager(Options options)
    : options_(std::move(options)), segment_cache_(options_.max_open_files) {}

LogManager::~LogManager() {
  // Logs must go before the backend their in-flight operations belong to.
  logs_.clear();
}

absl::StatusOr<std::unique_ptr<LogManager>> LogManager::Open(Options options) {
  absl::Status s = CreateDirIfMissing(options.data_dir, options.env);
  if (!s.ok()) return s;
  auto mgr = std::unique_ptr<LogManager>(new LogManager(std::move(options)));
  mgr->io_ = IoBackend::Create(mgr->options_.io, mgr->options_.data_dir, mgr->options_.env);
  LogInfo("storage: data directory %s, I/O backend %s", mgr->options_.data_dir,
          IoBackendName(mgr->io_->kind()));
  std::shared_ptr<const RecoveryPointFiles> points = mgr->options_.recovery_points;
  if (points == nullptr) {
    auto read = ReadRecoveryPointFiles(mgr->options_.data_dir, mgr->options_.env);
    if (!read.ok()) return read.status();
    points = std::make_shared<const RecoveryPointFiles>(std::move(*read));
  }
  mgr->recovery_points_ = std::make_unique<RecoveryPointStore>(
      mgr->options_.data_dir, mgr->options_.shard_index, points->generation + 1, mgr->options_.env);
  auto names = ListDir(mgr->options_.data_dir, mgr->options_.env);
  if (!names.ok()) return names.status();
  std::sort(names->begin(), names->end());
  std::vector<std::string> marker_dirs;
  for (const std::string& name : *names) {
    TopicPartition tp;
    if (!TopicPartition::FromDirName(name, &tp)) continue;
    if (mgr->options_.owns && !mgr->options_.owns(tp)) continue;
    LogConfig config = mgr->options_.config_for ? mgr->options_.config_for(tp) : LogConfig();
    std::optional<RecoveryPoint> point;
    if (auto it = points->points.find(name); it != points->points.end()) point = it->second;
    auto log = PartitionLog::OpenInStore(absl::StrCat(mgr->options_.data_dir, "/", name), config,
                                         mgr->io_.get(), mgr->recovery_points_.get(), point);
    if (!log.ok()) {
      LogError("storage: log %s could not be opened: %s", name, log.status().message());
      return log.status();
    }
    const RecoveryReport& r = (*log)->recovery_report();
    LogInfo(
        "storage: opened %s: %d segments, offsets [%d, %d), %s, validated %d bytes, "
        "truncated %d bytes, %d index rebuilds, %s",
        name, r.segments, (*log)->log_start_offset(), (*log)->log_end_offset(),
        r.clean_shutdown ? "clean shutdown" : "recovered after crash", r.bytes_validated,
        r.bytes_truncated, r.indexes_rebuilt, absl::FormatDuration(r.took));
    (*log)->set_submit_list(&mgr->to_submit_);
    (*log)->set_checkpoint_queue(&mgr->checkpoint_queue_);
    (*log)->set_tick_list(&mgr->to_tick_);
    (*log)->set_segment_cache(&mgr->segment_cache_);  // may close other logs' files
    if ((*log)->needs_dir_sync()) marker_dirs.push_back((*log)->dir());
    mgr->logs_[tp] = std::move(*log);
  }
  // The shard's file rewritten with every log's point, none of them clean any more, before
  // any append: a crash from now on must re-validate what follows each point. Points of logs
  // that are gone (or now belong to another shard) are left out.
  for (auto& [tp, log] : mgr->logs_) {
    if (auto cp = log->checkpoint_on_disk()) {
      mgr->recovery_points_->Stage(tp.DirName(), RecoveryPoint{*cp, false}, nullptr);
    }
  }
  if (absl::Status s = mgr->recovery_points_->Commit(/*rewrite=*/true); !s.ok()) {
    LogError("storage: writing %s after opening: %s", mgr->recovery_points_->path(), s.message());
    return s;
  }
  // Files of an older version (per-log checkpoints, clean-shutdown markers) removed above,
  // made durable all at once before any append.
  if (absl::Status s = mgr->SyncDirs(marker_dirs); !s.ok()) {
    LogError("storage: syncing log directories after opening: %s", s.message());
    return s;
  }
  return mgr;
}

absl::StatusOr<PartitionLog*> LogManager::CreateLog(const TopicPartition& tp,
                                                    const LogConfig& config) {
  if (auto it = logs_.find(tp); it != logs_.end()) return it->second.get();
  // A log of the same name deleted since the last commit: its point must be gone from the
  // file first, or a crash would give it to the new log.
  const std::string name = tp.DirName();
  if (recovery_points_->removal_staged(name)) {
    if (absl::Status s = recovery_points_->Commit(false, io_.get()); !s.ok()) return s;
  }
  // No fsync of the data directory here: a new log's entry in it becomes durable with the
  // log's first sync (PartitionLog::Recover).
  auto log = PartitionLog::OpenInStore(absl::StrCat(options_.data_dir, "/", name), config,
                                       io_.get(), recovery_points_.get(), std::nullopt);
  if (!log.ok()) return log.status();
  PartitionLog* raw = log->get();
  raw->set_submit_list(&to_submit_);
  raw->set_checkpoint_queue(&checkpoint_queue_);
  raw->set_tick_list(&to_tick_);
  raw->set_segment_cache(&segment_cache_);
  if (raw->needs_dir_sync()) {
    if (absl::Status s = SyncDir(raw->dir(), options_.env); !s.ok()) return s;
  }
  logs_[tp] = std::move(*log);
  return raw;
}

PartitionLog* LogManager::GetLog(const TopicPartition& tp) const {
  auto it = logs_.find(tp);
  return it == logs_.end() ? nullptr : it->second.get();
}

absl::Status LogManager::DeleteLog(const TopicPartition& tp) {
  auto it = logs_.find(tp);
  if (it == logs_.end()) return absl::NotFoundError(tp.DirName());
  absl::Status s = it->second->DeleteAll();
  std::erase(to_submit_, it->second.get());
  std::erase(checkpoint_queue_, it->second.get());
  std::erase(to_tick_, it->second.get());
  std::replace(ticking_.begin(), ticking_.end(), it->second.get(),
               static_cast<PartitionLog*>(nullptr));
  recovery_points_->Remove(tp.DirName());  // also forgets the log as the owner of a point
  logs_.erase(it);
  if (s.ok()) s = SyncDir(options_.data_dir, options_.env);
  return s;
}

std::vector<TopicPartition> LogManager::ListLogs() const {
  std::vector<TopicPartition> out;
  for (const auto& [tp, log] : logs_) out.push_back(tp);
  return out;
}

void LogManager::Submit() {
  held_writes_ = false;
  // Only the logs appended to since the last submission (or still holding a write-behind
  // tail) have anything to hand over: the cost follows the appends, not the number of logs.
  submitting_.swap(to_submit_);
  for (PartitionLog* log : submitting_) {
    log->LeftSubmitList();
    log->SubmitBuffered(SubmitMode::kWriteBehind);
    if (log->has_held_writes()) {
      held_writes_ = true;
      log->JoinSubmitList();  // its tail goes out in a later iteration, appended to or not
    }
  }
  submitting_.clear();
  io_->Submit();
}

int LogManager::Poll(absl::Duration timeout) { return io_->Poll(timeout); }

void LogManager::Tick(int64_t now_ms) {
  // Idle logs are not visited: with thousands of them, touching each every tick was most of an
  // idle broker's CPU. A log deleted meanwhile is nulled out here by DeleteLog.
  ticking_.swap(to_tick_);
  for (size_t i = 0; i < ticking_.size(); ++i) {
    PartitionLog* log = ticking_[i];
    if (log == nullptr) continue;
    log->LeftTickList();
    log->Tick(now_ms);
    if (log->NeedsTicks()) log->JoinTickList();
  }
  ticking_.clear();
  WriteQueuedCheckpoints(now_ms);
  io_->Submit();
}

void LogManager::WriteQueuedCheckpoints(int64_t now_ms) {
  // Staging a checkpoint may cost a synchronous msync of the log's active indexes: a few per
  // tick, oldest first, at least one. A log waiting here only re-validates a little more
  // after a crash. Then one append to the shard's file covers all of them.
  const absl::Time deadline = absl::Now() + kCheckpointBudgetPerTick;
  bool first = true;
  while (!checkpoint_queue_.empty() && (first || absl::Now() < deadline)) {
    PartitionLog* log = checkpoint_queue_.front();
    checkpoint_queue_.pop_front();
    log->WriteQueuedCheckpoint();
    first = false;
  }
  if (!recovery_points_->has_staged() || recovery_points_->commit_in_flight() ||
      now_ms < recovery_points_retry_ms_) {
    return;
  }
  // Written and synced through the backend: the loop does not wait for the disk.
  recovery_points_->CommitThrough(
      *io_, [this, now_ms](absl::Status s) { RecoveryPointsCommitted(s, now_ms); });
}

void LogManager::RecoveryPointsCommitted(const absl::Status& s, int64_t now_ms) {
  if (!s.ok()) {
    // The checkpoints stay staged; meanwhile a crash re-validates from the older ones.
    recovery_points_retry_ms_ = now_ms + 1000;
    if (!recovery_points_failing_) {
      LogWarning(
          "storage: writing %s: %s (retried every second; meanwhile a crash re-validates "
          "more of the logs)",
          recovery_points_->path(), s.message());
    }
    recovery_points_failing_ = true;
  } else if (recovery_points_failing_) {
    LogInfo("storage: %s written again", recovery_points_->path());
    recovery_points_failing_ = false;
  }
}

absl::Status LogManager::SyncDirs(const std::vector<std::string>& dirs) {
  // Queued together, the fsyncs share journal commits instead of waiting for one each. Each
  // holds a directory fd while in flight: a window keeps that bounded (the logs' own fds
  // may already be close to the limit).
  constexpr size_t kMaxInFlight = 128;
  size_t in_flight = 0;
  absl::Status first;
  for (const std::string& dir : dirs) {
    while (in_flight >= kMaxInFlight) io_->Poll(absl::Milliseconds(100));
    ++in_flight;
    io_->SyncDir(dir, [&in_flight, &first, dir](int result) {
      if (result < 0 && first.ok()) first = ErrnoStatus("fsync dir", dir, -result);
      --in_flight;
    });
    io_->Submit();
  }
  while (in_flight > 0) io_->Poll(absl::Milliseconds(100));
  return first;
}

absl::Status LogManager::Close() {
  checkpoint_queue_.clear();  // each log's Close() stages its final point
  absl::Status first;
  int unclean = 0;
  int clean = 0;
  for (auto& [tp, log] : logs_) {
    absl::Status s = log->Close();
    if (s.ok()) {
      ++clean;
      continue;
    }
    ++unclean;
    LogWarning(
        "storage: %s not marked clean at close (%s); the next start recovers it from its "
        "recovery checkpoint",
        tp.DirName(), s.message());
    // A fenced log outranks a full disk in what the caller is told.
    if (first.ok() || (absl::IsUnavailable(first) && !absl::IsUnavailable(s))) first = s;
  }
  // One rewrite marks them all clean. Without it the next start only recovers more than it
  // needed to.
  if (absl::Status s = recovery_points_->Commit(/*rewrite=*/true, io_.get()); !s.ok()) {
    LogWarning("storage: %s not written at close (%s); the next start recovers every log",
               recovery_points_->path(), s.message());
    if (first.ok()) first = s;
    unclean += clean;
  }
  if (first.ok()) return first;
  return absl::Status(first.code(), absl::StrFormat("%d logs not marked clean at close (%s)",
                                                    unclean, first.message()));
}

}  // namespace sluice::storage
