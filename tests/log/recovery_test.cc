// Recovery of a partition log from what crashes, power cuts and disk errors leave behind that
// is not a torn tail: empty segments of interrupted rolls, read errors, removals that a power
// cut could undo. Found by power_cut_test and disk_error_test; pinned down here one by one.
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/file_util.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "tests/fs/fault_env.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::CrashModel;
using testing::FaultEnv;
using testing::FaultRule;
using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

constexpr int64_t kStartMs = 1'700'000'000'000;

// Segments roll when the clock passes segment.ms; no recovery checkpoint is ever written, so
// a crash re-validates everything.
LogConfig RollByTime() {
  LogConfig c;
  c.segment_ms = 1000;
  c.index_interval_bytes = 128;
  c.max_index_bytes = 1024;
  c.retention_ms = -1;
  c.flush_messages = 1;
  c.recovery_checkpoint_ms = int64_t{1} << 40;
  return c;
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CreateDirIfMissing(tmp_.Sub("data")).ok());
    ASSERT_TRUE(CreateDirIfMissing(dir_).ok());
  }

  std::unique_ptr<PartitionLog> Open(IoBackend* io, const LogConfig& config = RollByTime()) {
    auto log = PartitionLog::Open(dir_, config, io);
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return nullptr;
    (*log)->TEST_SetClock([this] { return now_ms_; });
    return std::move(*log);
  }

  // Appends `n` one-record batches, each acknowledged as durable.
  void AppendDurable(PartitionLog& log, IoBackend& io, int n) {
    for (int i = 0; i < n; ++i) {
      auto r = AppendSync(log, io, MakeBatch(1, 40, now_ms_, static_cast<uint64_t>(i)),
                          AckLevel::kDurable);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }

  // Every offset below the high watermark is found by Read.
  static void ExpectEveryOffsetReadable(const PartitionLog& log) {
    for (int64_t o = log.log_start_offset(); o < log.high_watermark(); ++o) {
      auto slice = log.Read(o, 1);
      ASSERT_TRUE(slice.ok()) << o << ": " << slice.status();
      EXPECT_GT(slice->size, 0u) << "offset " << o << " below the high watermark is not found";
      EXPECT_LE(slice->first_offset, o);
    }
  }

  std::string SegmentPath(int64_t base, const char* suffix = ".log") const {
    return absl::StrCat(dir_, "/", Segment::FileStem(base), suffix);
  }

  TempDir tmp_;
  const std::string dir_ = tmp_.Sub("data/t-0");
  int64_t now_ms_ = kStartMs;
};

TEST_F(RecoveryTest, AnEmptySegmentInsideTheLogIsRemovedAndHidesNoOffset) {
  auto io = IoBackend::CreatePwrite();
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 10);
    now_ms_ += 1000;
    AppendDurable(*log, *io, 5);  // rolls: segment 10
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 10}));
    ASSERT_TRUE(log->Close().ok());
  }
  // What a roll that failed after creating its .log leaves when appends went on in segment 0.
  testing::AppendToFile(SegmentPath(4), {});
  auto log = Open(io.get());
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 10}));
  EXPECT_FALSE(FileExists(SegmentPath(4)));
  EXPECT_EQ(log->high_watermark(), 15);
  ExpectEveryOffsetReadable(*log);
}

TEST_F(RecoveryTest, AnEmptyLastSegmentNamedBelowTheLogEndIsRemovedAndNoOffsetIsGivenTwice) {
  auto io = IoBackend::CreatePwrite();
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 10);
    ASSERT_TRUE(log->Close().ok());
  }
  testing::AppendToFile(SegmentPath(7), {});
  auto log = Open(io.get());
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0}));
  EXPECT_EQ(log->log_end_offset(), 10);
  auto r = AppendSync(*log, *io, MakeBatch(1, 40, now_ms_), AckLevel::kDurable);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base_offset, 10);
  EXPECT_EQ(ReadAllBatches(*log).size(), 11u);
}

// Segments below the log start are deleted by a rename and an unlink that only a later
// directory sync makes durable; the checkpointed start is durable at once. A power cut can
// then bring deleted segments back, one of them empty (it was deleted before it was ever
// synced). Recovery took that hole for a torn roll and cut off the synced segment above it,
// acknowledged batches included (found by log_ops_fuzz; its input is in the corpus as
// synced_segment_above_a_deleted_unsynced_one).
TEST_F(RecoveryTest, DeletedSegmentsThatCameBackDoNotCutOffTheSegmentsAboveTheLogStart) {
  LogConfig config = RollByTime();
  config.recovery_checkpoint_ms = 1000;
  auto io = IoBackend::CreatePwrite();
  std::vector<uint8_t> first_segment;
  std::vector<std::vector<uint8_t>> acked;
  {
    auto log = Open(io.get(), config);
    AppendDurable(*log, *io, 3);
    now_ms_ += 1000;
    AppendDurable(*log, *io, 3);  // segment 3
    now_ms_ += 1000;
    AppendDurable(*log, *io, 2);  // segment 6
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 3, 6}));
    auto bytes = ReadWholeFile(SegmentPath(0));
    ASSERT_TRUE(bytes.ok());
    first_segment = *bytes;
    ASSERT_TRUE(log->AdvanceLogStart(6).ok());
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{6}));
    now_ms_ += 1000;
    log->Tick(now_ms_);
    io->Submit();
    io->Poll(absl::ZeroDuration());
    auto cp = ReadRecoveryCheckpoint(absl::StrCat(dir_, "/", kRecoveryCheckpointFile));
    ASSERT_TRUE(cp.ok()) << cp.status();
    ASSERT_EQ(cp->log_start_offset, 6);
    acked = ReadAllBatches(*log);
    ASSERT_EQ(acked.size(), 2u);
  }  // a crash: no clean shutdown
  // The deletions undone: segment 0 as it was synced, segment 3 never synced.
  testing::AppendToFile(SegmentPath(0), first_segment);
  testing::AppendToFile(SegmentPath(3), {});
  auto log = Open(io.get(), config);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{6}));
  EXPECT_FALSE(FileExists(SegmentPath(0)));
  EXPECT_FALSE(FileExists(SegmentPath(3)));
  EXPECT_EQ(log->log_start_offset(), 6);
  EXPECT_EQ(log->high_watermark(), 8);
  EXPECT_EQ(ReadAllBatches(*log), acked);
}

// A new segment makes only its .log (its index files come with its first index entry): a
// creation that fails leaves nothing behind, and the roll is retried.
TEST_F(RecoveryTest, AHalfCreatedSegmentLeavesNoFileBehind) {
  FaultEnv env(tmp_.Sub("data"));
  auto io = IoBackend::CreatePwrite(&env);
  auto log = Open(io.get());
  AppendDurable(*log, *io, 5);
  FaultRule rule;
  rule.ops = testing::kOpOpen;
  rule.path_contains = Segment::FileStem(5) + ".log";
  rule.error = ENOSPC;
  env.AddRule(rule);
  now_ms_ += 1000;
  auto failed = log->Append(MakeBatch(1, 40, now_ms_), AckLevel::kDurable, nullptr);
  ASSERT_FALSE(failed.ok());  // the roll could not make the next segment
  // Out of space: retriable, the roll is tried again later.
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_FALSE(FileExists(SegmentPath(5)));
  EXPECT_FALSE(FileExists(SegmentPath(5, ".index")));
  EXPECT_FALSE(FileExists(SegmentPath(5, ".timeindex")));
}

TEST_F(RecoveryTest, AReadErrorDuringRecoveryFailsTheOpenAndCutsNothing) {
  FaultEnv env(tmp_.Sub("data"));
  auto io = IoBackend::CreatePwrite(&env);
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 20);
  }  // a crash: the whole log is re-validated at the next open
  FaultRule rule;
  rule.ops = testing::kOpRead;
  rule.path_contains = ".log";
  rule.max_failures = 1;
  env.AddRule(rule);
  auto failed = PartitionLog::Open(dir_, RollByTime(), io.get());
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(env.failures(), 1);
  auto log = Open(io.get());
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->high_watermark(), 20);
  EXPECT_EQ(ReadAllBatches(*log).size(), 20u);
}

TEST_F(RecoveryTest, ARolledSegmentIsNamedDurablyBeforeItsFirstDurableAck) {
  FaultEnv env(tmp_.Sub("data"));
  auto io = IoBackend::CreatePwrite(&env);
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 3);
    now_ms_ += 1000;
    AppendDurable(*log, *io, 3);  // in segment 3
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 3}));
    env.CutPowerNow();
  }
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  auto posix = IoBackend::CreatePwrite();
  auto log = Open(posix.get());
  EXPECT_EQ(log->high_watermark(), 6);
}

TEST_F(RecoveryTest, SegmentsRemovedByRecoveryStayRemovedAfterAPowerCut) {
  FaultEnv env(tmp_.Sub("data"));
  auto io = IoBackend::CreatePwrite(&env);
  uint64_t batch_size = 0;
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 10);
    batch_size = log->size_bytes() / 10;
    now_ms_ += 1000;
    AppendDurable(*log, *io, 3);  // segment 10
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 10}));
  }  // a crash
  // Damage past the (absent) recovery point: batch 8 of segment 0 (e.g. a sector gone bad).
  testing::PatchFile(SegmentPath(0), 8 * batch_size + 30, 0xff);
  ASSERT_TRUE(env.ResetModel().ok());
  {
    // Recovery cuts segment 0 at batch 8 and removes segment 10, which no longer continues it.
    auto log = Open(io.get());
    ASSERT_EQ(log->high_watermark(), 8);
    ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0}));
    AppendDurable(*log, *io, 2);  // offsets 8 and 9 again: segment 0 ends at 10 once more
    env.CutPowerNow();
  }
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  // Had the removal not been made durable, segment 10 would be back, continuing segment 0,
  // with batches that were never appended after the new 8 and 9.
  auto posix = IoBackend::CreatePwrite();
  auto log = Open(posix.get());
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0}));
  EXPECT_EQ(log->high_watermark(), 10);
}

TEST_F(RecoveryTest, IndexesRebuiltForACutSegmentDoNotRevertToStaleSealedOnes) {
  FaultEnv env(tmp_.Sub("data"));
  auto io = IoBackend::CreatePwrite(&env);
  uint64_t batch_size = 0;
  {
    auto log = Open(io.get());
    AppendDurable(*log, *io, 10);
    batch_size = log->size_bytes() / 10;
    now_ms_ += 1000;
    AppendDurable(*log, *io, 1);  // rolls: segment 0 and its indexes are sealed
  }                               // a crash
  testing::PatchFile(SegmentPath(0), 3 * batch_size + 30, 0xff);
  ASSERT_TRUE(env.ResetModel().ok());
  {
    auto log = Open(io.get());  // cuts segment 0 at batch 3, rebuilds its indexes
    ASSERT_EQ(log->high_watermark(), 3);
    // Larger batches: the old sealed index's positions are wrong for them.
    for (int i = 0; i < 7; ++i) {
      auto r = AppendSync(*log, *io, MakeBatch(2, 90, now_ms_, 100 + i), AckLevel::kDurable);
      ASSERT_TRUE(r.ok()) << r.status();
    }
    env.CutPowerNow();
  }
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  auto posix = IoBackend::CreatePwrite();
  auto log = Open(posix.get());
  ASSERT_EQ(log->high_watermark(), 17);
  ExpectEveryOffsetReadable(*log);
  EXPECT_EQ(ReadAllBatches(*log).size(), 10u);
}

}  // namespace
}  // namespace sluice::storage
