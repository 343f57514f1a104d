// The LogManager's per-iteration work follows the logs in use: Submit() hands over only the
// logs appended to (and those holding a write-behind tail), and due recovery checkpoints wait
// in a queue that Tick() drains a few at a time instead of being written inside the flush.
#include "log/log_manager.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/file_util.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::MakeBatch;
using testing::OpenLogManager;
using testing::TempDir;

// A log's recovery point as the shards' files on disk say (log/recovery_points.h).
absl::StatusOr<RecoveryCheckpoint> PointOnDisk(const std::string& data_dir,
                                               const std::string& log) {
  auto files = ReadRecoveryPointFiles(data_dir);
  if (!files.ok()) return files.status();
  auto it = files->points.find(log);
  if (it == files->points.end()) return absl::NotFoundError(log);
  return it->second.cp;
}

// Runs the loop's end-of-iteration work (Submit, Poll) until `done` or about 5 s.
template <typename Pred>
bool DriveUntil(LogManager& mgr, Pred done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    mgr.Submit();
    mgr.Poll(absl::Milliseconds(1));
  }
  return true;
}

TEST(LogManagerTest, OneSubmitWritesTheAppendsOfEveryLogAppendedTo) {
  TempDir tmp;
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  std::vector<PartitionLog*> logs;
  for (int p = 0; p < 8; ++p) {
    auto log = mgr->CreateLog({"t", p}, LogConfig());
    ASSERT_TRUE(log.ok()) << log.status();
    logs.push_back(*log);
  }
  // Every other log gets an append whose caller waits for it (nothing held back).
  int acked = 0;
  for (int p = 0; p < 8; p += 2) {
    auto batch = MakeBatch(1, 50, 1000);
    ASSERT_TRUE(logs[p]
                    ->Append(batch, AckLevel::kWritten,
                             [&](absl::Status s, const AppendResult&) {
                               EXPECT_TRUE(s.ok()) << s;
                               ++acked;
                             })
                    .ok());
  }
  EXPECT_TRUE(DriveUntil(*mgr, [&] { return acked == 4; }));
  for (int p = 0; p < 8; ++p) EXPECT_EQ(logs[p]->high_watermark(), p % 2 == 0 ? 1 : 0) << p;
}

TEST(LogManagerTest, AHeldWriteBehindTailIsWrittenByLaterSubmitsWithoutAppends) {
  TempDir tmp;
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  auto log = mgr->CreateLog({"t", 0}, LogConfig());
  ASSERT_TRUE(log.ok()) << log.status();
  // Nobody waits for this batch: the first Submit may hold it back (write-behind) and only a
  // later one, with no append in between, writes it.
  auto batch = MakeBatch(3, 100, 1000);
  ASSERT_TRUE((*log)->Append(batch, AckLevel::kWritten, nullptr).ok());
  EXPECT_TRUE(DriveUntil(*mgr, [&] { return (*log)->high_watermark() == 3; }))
      << "high watermark " << (*log)->high_watermark();
  EXPECT_FALSE(mgr->has_held_writes());
}

TEST(LogManagerTest, DueCheckpointsWaitInAQueueThatTicksDrain) {
  TempDir tmp;
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  LogConfig config;
  config.flush_messages = 1;          // every append is synced...
  config.recovery_checkpoint_ms = 0;  // ...and each sync makes a checkpoint due
  constexpr int kLogs = 40;
  std::vector<PartitionLog*> logs;
  int acked = 0;
  for (int p = 0; p < kLogs; ++p) {
    auto log = mgr->CreateLog({"t", p}, config);
    ASSERT_TRUE(log.ok()) << log.status();
    logs.push_back(*log);
    auto batch = MakeBatch(1, 50, 1000);
    ASSERT_TRUE((*log)
                    ->Append(batch, AckLevel::kDurable,
                             [&](absl::Status s, const AppendResult&) {
                               EXPECT_TRUE(s.ok()) << s;
                               ++acked;
                             })
                    .ok());
  }
  ASSERT_TRUE(DriveUntil(*mgr, [&] { return acked == kLogs; }));
  // The flushes did not write the checkpoints themselves: they are queued, once per log.
  EXPECT_EQ(mgr->checkpoints_waiting(), static_cast<size_t>(kLogs));
  auto checkpointed = [&](int p) {
    auto cp = PointOnDisk(tmp.path(), absl::StrCat("t-", p));
    return cp.ok() && cp->recovery_offset == 1;
  };
  for (int p = 0; p < kLogs; ++p) EXPECT_FALSE(checkpointed(p)) << p;
  // A log deleted while it waits leaves the queue with it.
  ASSERT_TRUE(mgr->DeleteLog({"t", 0}).ok());
  EXPECT_EQ(mgr->checkpoints_waiting(), static_cast<size_t>(kLogs - 1));
  int64_t now = absl::ToUnixMillis(absl::Now());
  // Waiting in the queue is not work for Tick: the logs leave the tick list (each tick would
  // otherwise visit every waiting log while the queue drains a few).
  mgr->Tick(now++);
  EXPECT_EQ(mgr->logs_to_tick(), 0u);
  for (int tick = 0; tick < 1000 && mgr->checkpoints_waiting() > 0; ++tick) mgr->Tick(now++);
  EXPECT_EQ(mgr->checkpoints_waiting(), 0u);
  for (int p = 1; p < kLogs; ++p) EXPECT_TRUE(checkpointed(p)) << p;
  EXPECT_TRUE(mgr->Close().ok());
}

// Tick() visits only logs with time-driven work: new and idle logs leave the list after one
// tick; an append brings a log back until it is written, synced and checkpointed; a log-start
// move (AMQP acks) or a config change brings it back too, and its work then gets done.
TEST(LogManagerTest, IdleLogsLeaveTheTickListAndChangesBringThemBack) {
  TempDir tmp;
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  LogConfig config;
  config.recovery_checkpoint_ms = 1000;
  constexpr int kLogs = 50;
  std::vector<PartitionLog*> logs;
  for (int p = 0; p < kLogs; ++p) {
    auto log = mgr->CreateLog({"t", p}, config);
    ASSERT_TRUE(log.ok()) << log.status();
    logs.push_back(*log);
  }
  EXPECT_EQ(mgr->logs_to_tick(), static_cast<size_t>(kLogs));  // created: ticked once
  int64_t now = absl::ToUnixMillis(absl::Now());
  mgr->Tick(now);
  EXPECT_EQ(mgr->logs_to_tick(), 0u);

  bool acked = false;
  auto batch = MakeBatch(3, 50, 1000);
  ASSERT_TRUE(logs[7]
                  ->Append(batch, AckLevel::kWritten,
                           [&](absl::Status s, const AppendResult&) { acked = s.ok(); })
                  .ok());
  EXPECT_EQ(mgr->logs_to_tick(), 1u);
  ASSERT_TRUE(DriveUntil(*mgr, [&] { return acked; }));
  auto checkpoint = [&](int p) { return PointOnDisk(tmp.path(), absl::StrCat("t-", p)); };
  // Ticked until its background flush and its checkpoint are done, then idle again.
  for (int tick = 0; tick < 100 && mgr->logs_to_tick() > 0; ++tick) {
    now += 200;
    mgr->Tick(now);
    mgr->Poll(absl::Milliseconds(5));
  }
  EXPECT_EQ(mgr->logs_to_tick(), 0u);
  EXPECT_EQ(logs[7]->durable_offset(), 3);
  ASSERT_TRUE(checkpoint(7).ok());
  EXPECT_EQ(checkpoint(7)->recovery_offset, 3);

  // An idle log whose start moves must still checkpoint the new start.
  ASSERT_TRUE(logs[7]->AdvanceLogStart(2).ok());
  EXPECT_EQ(mgr->logs_to_tick(), 1u);
  for (int tick = 0; tick < 100 && mgr->logs_to_tick() > 0; ++tick) {
    now += 200;
    mgr->Tick(now);
    mgr->Poll(absl::Milliseconds(5));
  }
  EXPECT_EQ(mgr->logs_to_tick(), 0u);
  EXPECT_EQ(checkpoint(7)->log_start_offset, 2);

  // A config change (here: compaction) brings a log back; a compacted log stays ticked.
  LogConfig compact = config;
  compact.cleanup_policy = kCleanupCompact;
  logs[3]->UpdateConfig(compact);
  EXPECT_EQ(mgr->logs_to_tick(), 1u);
  mgr->Tick(now += 200);
  EXPECT_EQ(mgr->logs_to_tick(), 1u);

  // A log deleted while listed leaves the list with it.
  ASSERT_TRUE(mgr->DeleteLog({"t", 3}).ok());
  EXPECT_EQ(mgr->logs_to_tick(), 0u);
  mgr->Tick(now += 200);
  EXPECT_TRUE(mgr->Close().ok());
}

}  // namespace
}  // namespace sluice::storage
