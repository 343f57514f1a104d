// All partition logs of one shard, and the IoBackend they share.
//
// The shard's loop drives it: appends during an iteration only fill write buffers; Submit()
// at the end of the iteration hands every dirty log's buffer to the IoBackend and submits them
// all at once (one io_uring_submit for every partition: the gathered write path); Poll() runs
// completions, which advance high watermarks, fire acks and start group-commit syncs; Tick()
// runs time-driven work (flush.ms, checkpoints, retention).
//
// Layout: `<data_dir>/<topic>-<partition>/` per log (Kafka's). Threading: one shard thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "log/io_backend.h"
#include "log/log_config.h"
#include "log/partition_log.h"
#include "log/recovery_points.h"
#include "log/segment_cache.h"

namespace sluice::storage {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  std::string DirName() const;
  // Parses "<topic>-<partition>"; false for names that are not log directories.
  static bool FromDirName(const std::string& name, TopicPartition* out);
  bool operator==(const TopicPartition& o) const {
    return partition == o.partition && topic == o.topic;
  }
  template <typename H>
  friend H AbslHashValue(H h, const TopicPartition& tp) {
    return H::combine(std::move(h), tp.topic, tp.partition);
  }
};

class LogManager {
 public:
  struct Options {
    std::string data_dir;
    IoBackendKind io = IoBackendKind::kIoUring;
    // Config of a log found on disk at start-up (the broker supplies per-topic configs).
    std::function<LogConfig(const TopicPartition&)> config_for;
    // Which log directories this manager opens at start-up (all when unset): several
    // managers (one per shard) share a data dir, each opening the partitions it owns.
    std::function<bool(const TopicPartition&)> owns;
    // Every file operation of the manager and its logs (fs/env.h); must outlive the manager.
    // Another Env than the default one (tests: a fault-injecting Env) gets the pwrite backend
    // over it whatever `io` says.
    Env* env = Env::Default();
    // log.max.open.files: descriptors the logs' segments may hold open together (three per
    // open segment); beyond it, segments not used recently close their files until used
    // again (log/segment_cache.h). The default keeps every segment open.
    size_t max_open_files = SIZE_MAX;
    // The recovery checkpoints of this manager's logs live in `recovery-points.<shard_index>`
    // in data_dir (log/recovery_points.h). `recovery_points` is what start-up read from every
    // such file; unset, Open reads them itself (a broker with several shards reads them once,
    // before any shard rewrites its own, then removes the files of shards it no longer has).
    int shard_index = 0;
    std::shared_ptr<const RecoveryPointFiles> recovery_points;
  };

  // Opens (recovering) every log directory under data_dir (that `owns` accepts).
  static absl::StatusOr<std::unique_ptr<LogManager>> Open(Options options);
  ~LogManager();

  absl::StatusOr<PartitionLog*> CreateLog(const TopicPartition& tp, const LogConfig& config);
  PartitionLog* GetLog(const TopicPartition& tp) const;
  absl::Status DeleteLog(const TopicPartition& tp);
  std::vector<TopicPartition> ListLogs() const;

  // Hands the buffered appends of every log appended to since the last call to the IoBackend
  // (write-behind allowed, see SubmitMode::kWriteBehind) and submits. Idle logs cost nothing.
  void Submit();
  // After Submit(): some log kept a partial page buffered; the caller's loop must run another
  // iteration soon without blocking (an iteration without appends writes it out).
  bool has_held_writes() const { return held_writes_; }
  int Poll(absl::Duration timeout);
  // Time-driven work of the logs that have any (PartitionLog::NeedsTicks: idle logs leave the
  // list until an append or another change brings them back), then due recovery checkpoints
  // for up to kCheckpointBudgetPerTick (the rest wait for the next tick).
  void Tick(int64_t now_ms);
  size_t logs_to_tick() const { return to_tick_.size(); }
  static constexpr absl::Duration kCheckpointBudgetPerTick = absl::Milliseconds(10);
  size_t checkpoints_waiting() const { return checkpoint_queue_.size(); }
  const RecoveryPointStore& recovery_points() const { return *recovery_points_; }
  // Closes every log, then marks those that closed cleanly so in one rewrite of the
  // recovery-points file. A log that could not be marked clean is named in the log and
  // recovered at the next start; the status then says how many, with the first reason:
  // UnavailableError when only disk space was missing, the fence error when a log was fenced.
  absl::Status Close();

  IoBackend& io() { return *io_; }
  const SegmentCache& segment_cache() const { return segment_cache_; }
  Env* env() const { return options_.env; }
  const std::string& data_dir() const { return options_.data_dir; }

 private:
  explicit LogManager(Options options);
  // Outcome of a recovery-points commit started by WriteQueuedCheckpoints at `now_ms`.
  void RecoveryPointsCommitted(const absl::Status& s, int64_t now_ms);
  void WriteQueuedCheckpoints(int64_t now_ms);
  // fsyncs every directory in `dirs` through the IoBackend at once and waits for them.
  absl::Status SyncDirs(const std::vector<std::string>& dirs);

  Options options_;
  std::unique_ptr<IoBackend> io_;
  SegmentCache segment_cache_;  // declared before logs_: outlives every log
  absl::flat_hash_map<TopicPartition, std::unique_ptr<PartitionLog>> logs_;
  // Logs with bytes for the next Submit() (PartitionLog::set_submit_list), and the list being
  // submitted (kept to reuse its memory).
  std::vector<PartitionLog*> to_submit_;
  std::vector<PartitionLog*> submitting_;
  // Logs the next Tick() visits (PartitionLog::set_tick_list), and the list being ticked.
  std::vector<PartitionLog*> to_tick_;
  std::vector<PartitionLog*> ticking_;
  // Logs whose recovery checkpoint is due (PartitionLog::set_checkpoint_queue), oldest first.
  std::deque<PartitionLog*> checkpoint_queue_;
  std::unique_ptr<RecoveryPointStore> recovery_points_;  // this shard's recovery-points file
  int64_t recovery_points_retry_ms_ = 0;                 // after a failed commit: not before then
  bool recovery_points_failing_ = false;  // logged once until a commit succeeds again
  bool held_writes_ = false;
};

}  // namespace sluice::storage
