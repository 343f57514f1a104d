// The recovery checkpoints of every log of one shard in one file, `recovery-points.<shard>` in
// the data directory (Kafka's recovery-point-offset-checkpoint, one per shard instead of one
// per log dir). A checkpoint round costs one append and one fdatasync however many logs it
// covers; a clean stop marks every log clean in one rewrite instead of creating a marker file
// per log. Layout and rules: log/FORMAT.md ("Recovery points").
//
// The file is a sequence of checksummed frames, each a set of records (a log's checkpoint, or
// its removal) applied in order. A round appends one frame; once the appended frames outgrow
// the last full snapshot, or after a failed write, the file is rewritten as one frame (temp
// file, fdatasync, rename, directory fsync). A torn last frame is ignored: the frames before it
// hold older checkpoints, which are always safe to start from.
//
// Threading: one shard thread, like the LogManager that owns the store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fs/env.h"
#include "log/checkpoint.h"
#include "log/io_backend.h"

namespace sluice::storage {

class PartitionLog;

struct RecoveryPoint {
  RecoveryCheckpoint cp;
  // The log was closed cleanly at cp (everything flushed, indexes synced): nothing to
  // re-validate. Cleared on disk by the start-up rewrite, before anything is appended.
  bool clean = false;
  bool operator==(const RecoveryPoint& o) const {
    return clean == o.clean && cp.recovery_offset == o.cp.recovery_offset &&
           cp.segment_base == o.cp.segment_base && cp.position == o.cp.position &&
           cp.log_start_offset == o.cp.log_start_offset;
  }
};

// The file name of shard `index` ("recovery-points.<index>"), and the parse of such a name.
std::string RecoveryPointFileName(int index);
bool ParseRecoveryPointFileName(const std::string& name, int* index);

// One file's bytes, decoded. Parsing stops at the first frame that is not whole and valid.
struct ParsedRecoveryPoints {
  absl::flat_hash_map<std::string, RecoveryPoint> points;  // by log directory name
  uint64_t generation = 0;  // of the file's frames (all frames of a file share it)
  size_t valid_bytes = 0;   // the prefix made of valid frames
  std::string stop_reason;  // why parsing stopped before the end (empty: it did not)
};
ParsedRecoveryPoints ParseRecoveryPoints(std::span<const uint8_t> bytes);

// What start-up read from every recovery-points file of a data directory. A log named in
// several files (the shard count changed and a crash came before the old files were removed)
// takes its point from the file of the highest generation.
struct RecoveryPointFiles {
  absl::flat_hash_map<std::string, RecoveryPoint> points;
  uint64_t generation = 0;  // the highest read; the next start-up writes generation + 1
};
absl::StatusOr<RecoveryPointFiles> ReadRecoveryPointFiles(const std::string& data_dir,
                                                          Env* env = Env::Default());
// Removes the files of shards >= `shard_count` (and temp files): call once every shard of
// this start has rewritten its own file, which then holds every point they had.
absl::Status RemoveUnusedRecoveryPointFiles(const std::string& data_dir, int shard_count,
                                            Env* env = Env::Default());

class RecoveryPointStore {
 public:
  RecoveryPointStore(std::string data_dir, int index, uint64_t generation, Env* env);
  ~RecoveryPointStore();
  RecoveryPointStore(const RecoveryPointStore&) = delete;
  RecoveryPointStore& operator=(const RecoveryPointStore&) = delete;

  // Stages `point` for the log `name` (replacing what was staged for it); `owner`, if set,
  // hears of it with CheckpointCommitted once it is durable.
  void Stage(const std::string& name, const RecoveryPoint& point, PartitionLog* owner);
  // The log is deleted: stages its removal and forgets its owner.
  void Remove(const std::string& name);
  // A removal of `name` is staged, not yet durable: a new log of that name must not be
  // created before it is (else a crash would give the new log the old one's point).
  bool removal_staged(const std::string& name) const;
  bool has_staged() const { return !staged_.empty(); }

  // Makes the staged records durable: one appended frame and an fdatasync, or a rewrite of
  // the whole file when the appended frames outgrew the last snapshot, after a failed write,
  // or when `rewrite` is set. On failure the records stay staged for the next call. Waits for
  // a commit in flight (CommitThrough) first, polling `io` if one is.
  absl::Status Commit(bool rewrite = false, IoBackend* io = nullptr);
  // The same without waiting for the disk: the frame is written and fdatasync'ed through
  // `io` (the shard's storage backend) and owners hear of it from io's Poll, where `done`
  // then runs. A round that must rewrite the whole file does it here, synchronously (at most
  // once per appended snapshot's size, or after a failure). One at a time: not called while
  // commit_in_flight(); what is staged meanwhile goes with the next round.
  void CommitThrough(IoBackend& io, absl::AnyInvocable<void(absl::Status)> done);
  bool commit_in_flight() const { return !in_flight_.empty(); }

  const std::string& path() const { return path_; }
  size_t file_bytes() const { return file_bytes_; }
  size_t points() const { return live_.size(); }
  uint64_t commits() const { return commits_; }
  uint64_t rewrites() const { return rewrites_; }

 private:
  struct Staged {
    std::optional<RecoveryPoint> point;  // nullopt: removal
    PartitionLog* owner = nullptr;
  };
  // Applies `records` to live_, recording in `undo` (if set) what each replaced.
  void Apply(const absl::flat_hash_map<std::string, Staged>& records,
             std::vector<std::pair<std::string, std::optional<RecoveryPoint>>>* undo);
  // The file is to be rewritten whole rather than appended to (see Commit).
  bool RewriteDue() const;
  // One frame of the staged records, to append.
  std::vector<uint8_t> StagedFrame() const;
  // Completion of CommitThrough's write (`step` 0) and sync (1).
  void InFlightDone(IoBackend& io, int step, int result,
                    absl::AnyInvocable<void(absl::Status)> done);
  // Owners of `records` learn their points are durable.
  static void NotifyOwners(const absl::flat_hash_map<std::string, Staged>& records);
  absl::Status Append(const std::vector<uint8_t>& frame);
  absl::Status Rewrite();
  void CloseFile();

  const std::string data_dir_;
  const std::string path_;
  const uint64_t generation_;
  Env* const env_;
  absl::flat_hash_map<std::string, RecoveryPoint> live_;  // what the file says once committed
  absl::flat_hash_map<std::string, Staged> staged_;
  // The records of the commit in flight (CommitThrough) and its frame, written from there.
  absl::flat_hash_map<std::string, Staged> in_flight_;
  std::vector<uint8_t> in_flight_frame_;
  // Shared with the in-flight commit's callbacks, which may outlive the store.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  int fd_ = -1;                // open for appends once the file was (re)written by this store
  size_t file_bytes_ = 0;      // where the next frame goes
  size_t snapshot_bytes_ = 0;  // size of the last full rewrite
  bool must_rewrite_ = true;   // no file of ours yet, or an append failed
  uint64_t commits_ = 0;
  uint64_t rewrites_ = 0;
};

}  // namespace sluice::storage
