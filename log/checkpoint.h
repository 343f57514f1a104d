// The recovery-point checkpoint of one partition log (`recovery-point` in the partition's
// directory): two checksummed slots, the older overwritten in place and fdatasync'ed, so a
// crash leaves the new checkpoint or the previous one and a write costs no new file, rename or
// directory sync (log/FORMAT.md). A file with no valid slot is reported as DataLoss and never
// trusted. The cleaner checkpoint below is written atomically (temp file, rename).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fs/env.h"

namespace sluice::storage {

struct RecoveryCheckpoint {
  int64_t recovery_offset = 0;   // every batch below this offset was fdatasync'ed
  int64_t segment_base = 0;      // base offset of the segment holding recovery_offset
  uint64_t position = 0;         // batch-aligned byte position of recovery_offset in it
  int64_t log_start_offset = 0;  // first offset readers may see (retention / AMQP acks)
};

// Whether the fields can describe a log at all (what a checksum cannot catch: a writer's bug).
bool Consistent(const RecoveryCheckpoint& cp);

inline constexpr char kRecoveryCheckpointFile[] = "recovery-point";
inline constexpr char kCleanShutdownFile[] = "clean-shutdown";

// The cleaner checkpoint (`cleaner-point`): the first offset the log cleaner has not yet
// compacted (Kafka's cleaner-offset-checkpoint, per partition). Same envelope as above; layout
// in log/FORMAT.md ("Compaction"). Losing it only makes the next pass redo work.
inline constexpr char kCleanerCheckpointFile[] = "cleaner-point";
absl::Status WriteCleanerCheckpoint(const std::string& path, int64_t first_dirty_offset,
                                    Env* env = Env::Default());
// NotFoundError when absent; DataLossError when damaged or of an unknown version.
absl::StatusOr<int64_t> ReadCleanerCheckpoint(const std::string& path, Env* env = Env::Default());

absl::Status WriteRecoveryCheckpoint(const std::string& path, const RecoveryCheckpoint& cp,
                                     Env* env = Env::Default());
// NotFoundError when absent; DataLossError when damaged or of an unknown version.
absl::StatusOr<RecoveryCheckpoint> ReadRecoveryCheckpoint(const std::string& path,
                                                          Env* env = Env::Default());

}  // namespace sluice::storage
