// The shard's recovery-points file (log/recovery_points.h): appends and rewrites, torn tails,
// several files after a change of shard count, and the LogManager's use of it (clean close in
// one rewrite, crash recovery from a point, deleted-then-recreated logs, files of an older
// version read and removed).
#include "log/recovery_points.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/file_util.h"
#include "log/log_manager.h"
#include "tests/fs/fault_env.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::MakeBatch;
using testing::OpenLogManager;
using testing::TempDir;

RecoveryPoint Point(int64_t offset, bool clean = false) {
  RecoveryPoint p;
  p.cp.recovery_offset = offset;
  p.cp.segment_base = 0;
  p.cp.position = static_cast<uint64_t>(offset) * 100;
  p.cp.log_start_offset = 0;
  p.clean = clean;
  return p;
}

RecoveryPointFiles ReadAll(const std::string& dir) {
  auto files = ReadRecoveryPointFiles(dir);
  EXPECT_TRUE(files.ok()) << files.status();
  return files.ok() ? *files : RecoveryPointFiles{};
}

TEST(RecoveryPointsTest, ACommitThroughTheBackendIsDurableOnlyOnceItsSyncCompleted) {
  TempDir tmp;
  RecoveryPointStore store(tmp.path(), 0, 3, Env::Default());
  store.Stage("a-0", Point(1), nullptr);
  ASSERT_TRUE(store.Commit().ok());  // the first commit writes the file whole
  auto io = IoBackend::Create(IoBackendKind::kIoUring);
  store.Stage("a-0", Point(2), nullptr);
  store.Stage("b-0", Point(3), nullptr);
  int calls = 0;
  absl::Status result = absl::UnknownError("not called");
  store.CommitThrough(*io, [&](absl::Status s) {
    ++calls;
    result = s;
  });
  EXPECT_TRUE(store.commit_in_flight());
  EXPECT_FALSE(store.has_staged());  // what is staged now goes with the next round
  // Deleted while its first point is in flight: the point must not outlive the log.
  store.Remove("b-0");
  EXPECT_TRUE(store.has_staged());
  for (int i = 0; i < 1000 && store.commit_in_flight(); ++i) io->Poll(absl::Milliseconds(10));
  ASSERT_FALSE(store.commit_in_flight());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_EQ(store.rewrites(), 1u);  // appended, not rewritten
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.points["a-0"], Point(2));
  EXPECT_TRUE(files.points.contains("b-0"));  // durable until the removal is
  EXPECT_TRUE(store.removal_staged("b-0"));
  ASSERT_TRUE(store.Commit(false, io.get()).ok());
  files = ReadAll(tmp.path());
  EXPECT_FALSE(files.points.contains("b-0"));
  EXPECT_EQ(files.points["a-0"], Point(2));
}

TEST(RecoveryPointsTest, CommitsAppendAfterTheFirstRewriteAndReadBack) {
  TempDir tmp;
  RecoveryPointStore store(tmp.path(), 0, 7, Env::Default());
  store.Stage("a-0", Point(5), nullptr);
  store.Stage("b-0", Point(9), nullptr);
  ASSERT_TRUE(store.Commit().ok());
  EXPECT_EQ(store.rewrites(), 1u);  // no file of its own yet: written whole
  const size_t first = store.file_bytes();
  store.Stage("a-0", Point(6), nullptr);
  ASSERT_TRUE(store.Commit().ok());
  store.Remove("b-0");
  ASSERT_TRUE(store.Commit().ok());
  EXPECT_EQ(store.rewrites(), 1u);  // two appended frames
  EXPECT_GT(store.file_bytes(), first);
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.generation, 7u);
  ASSERT_EQ(files.points.size(), 1u);
  EXPECT_EQ(files.points["a-0"], Point(6));
  // Nothing staged: nothing written.
  const size_t bytes = store.file_bytes();
  ASSERT_TRUE(store.Commit().ok());
  EXPECT_EQ(store.file_bytes(), bytes);
}

TEST(RecoveryPointsTest, ATornLastFrameLeavesThePointsBeforeIt) {
  TempDir tmp;
  {
    RecoveryPointStore store(tmp.path(), 0, 1, Env::Default());
    store.Stage("a-0", Point(5), nullptr);
    ASSERT_TRUE(store.Commit().ok());
    store.Stage("a-0", Point(8), nullptr);
    store.Stage("c-1", Point(2), nullptr);
    ASSERT_TRUE(store.Commit().ok());
  }
  const std::string path = tmp.Sub(RecoveryPointFileName(0));
  auto size = FileSize(path);
  ASSERT_TRUE(size.ok());
  for (uint64_t cut : {uint64_t{1}, uint64_t{20}, uint64_t{40}}) {
    auto bytes = ReadWholeFile(path);
    ASSERT_TRUE(bytes.ok());
    bytes->resize(*size - cut);
    ParsedRecoveryPoints parsed = ParseRecoveryPoints(*bytes);
    EXPECT_FALSE(parsed.stop_reason.empty()) << cut;
    ASSERT_EQ(parsed.points.size(), 1u) << cut;
    EXPECT_EQ(parsed.points["a-0"], Point(5)) << cut;
  }
  // A flipped byte in the last frame: its checksum fails, the first frame stands.
  auto bytes = ReadWholeFile(path);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() - 3] ^= 0x40;
  ParsedRecoveryPoints parsed = ParseRecoveryPoints(*bytes);
  EXPECT_NE(parsed.stop_reason.find("checksum"), std::string::npos) << parsed.stop_reason;
  EXPECT_EQ(parsed.points["a-0"], Point(5));
}

TEST(RecoveryPointsTest, AFailedRewriteKeepsThePointsStagedAndTheFileAsItWas) {
  TempDir tmp;
  testing::FaultEnv env(tmp.path());
  RecoveryPointStore store(tmp.path(), 0, 1, &env);
  store.Stage("a-0", Point(5), nullptr);
  ASSERT_TRUE(store.Commit().ok());
  testing::FaultRule rule;
  rule.ops = testing::kOpRename;
  rule.error = EIO;
  env.AddRule(rule);
  store.Stage("a-0", Point(7), nullptr);
  store.Stage("b-0", Point(3), nullptr);
  EXPECT_FALSE(store.Commit(/*rewrite=*/true).ok());
  EXPECT_TRUE(store.has_staged());
  EXPECT_EQ(store.points(), 1u);
  auto files = ReadAll(tmp.path());
  ASSERT_EQ(files.points.size(), 1u);
  EXPECT_EQ(files.points["a-0"], Point(5));
  env.ClearRules();
  ASSERT_TRUE(store.Commit().ok());
  EXPECT_FALSE(store.has_staged());
  files = ReadAll(tmp.path());
  EXPECT_EQ(files.points["a-0"], Point(7));
  EXPECT_EQ(files.points["b-0"], Point(3));
}

TEST(RecoveryPointsTest, AppendsThatOutgrowTheSnapshotRewriteTheFile) {
  TempDir tmp;
  RecoveryPointStore store(tmp.path(), 0, 1, Env::Default());
  constexpr int kLogs = 3000;
  size_t peak = 0;
  for (int round = 0; round < 12; ++round) {
    for (int i = 0; i < kLogs; ++i) store.Stage(absl::StrCat("topic-", i), Point(round), nullptr);
    ASSERT_TRUE(store.Commit().ok());
    peak = std::max(peak, store.file_bytes());
  }
  EXPECT_GE(store.rewrites(), 2u);
  // Never more than the snapshot plus about 1 MiB of appends (and one frame).
  EXPECT_LT(peak, 3u << 20);
  auto files = ReadAll(tmp.path());
  ASSERT_EQ(files.points.size(), static_cast<size_t>(kLogs));
  EXPECT_EQ(files.points["topic-1234"], Point(11));
}

TEST(RecoveryPointsTest, TheNewestGenerationWinsAndUnusedFilesGo) {
  TempDir tmp;
  {
    RecoveryPointStore old_shard1(tmp.path(), 1, 3, Env::Default());
    old_shard1.Stage("x-0", Point(10), nullptr);
    old_shard1.Stage("y-0", Point(4), nullptr);
    ASSERT_TRUE(old_shard1.Commit().ok());
    RecoveryPointStore shard0(tmp.path(), 0, 4, Env::Default());
    shard0.Stage("x-0", Point(20), nullptr);
    ASSERT_TRUE(shard0.Commit().ok());
  }
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.generation, 4u);
  EXPECT_EQ(files.points["x-0"], Point(20));  // generation 4 over 3
  EXPECT_EQ(files.points["y-0"], Point(4));   // only in the older file
  ASSERT_TRUE(RemoveUnusedRecoveryPointFiles(tmp.path(), 1).ok());
  EXPECT_FALSE(FileExists(tmp.Sub(RecoveryPointFileName(1))));
  EXPECT_TRUE(FileExists(tmp.Sub(RecoveryPointFileName(0))));
  int index = -1;
  EXPECT_TRUE(ParseRecoveryPointFileName("recovery-points.12", &index));
  EXPECT_EQ(index, 12);
  EXPECT_FALSE(ParseRecoveryPointFileName("recovery-points.12.tmp", &index));
  EXPECT_FALSE(ParseRecoveryPointFileName("recovery-points.", &index));
  // Not a log directory name either: "points.3" is no partition number.
  TopicPartition tp;
  EXPECT_FALSE(TopicPartition::FromDirName(RecoveryPointFileName(3), &tp));
}

// ---- The LogManager's use of the store ----

// Appends `n` one-record batches to `log` durably and drives the manager until acked.
void AppendDurably(LogManager& mgr, PartitionLog* log, int n) {
  int acked = 0;
  for (int i = 0; i < n; ++i) {
    auto batch = MakeBatch(1, 50, 1000 + i);
    ASSERT_TRUE(log->Append(batch, AckLevel::kDurable,
                            [&](absl::Status s, const AppendResult&) {
                              EXPECT_TRUE(s.ok()) << s;
                              ++acked;
                            })
                    .ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (acked < n && absl::Now() < deadline) {
    mgr.Submit();
    mgr.Poll(absl::Milliseconds(1));
  }
  ASSERT_EQ(acked, n);
}

// Ticks (1 s of log time per tick) until the store has nothing staged and no log waits.
void TickUntilCheckpointed(LogManager& mgr, int64_t& now) {
  for (int i = 0; i < 50; ++i) {
    now += 1000;
    mgr.Tick(now);
    mgr.Poll(absl::Milliseconds(2));
    if (mgr.logs_to_tick() == 0 && mgr.checkpoints_waiting() == 0 &&
        !mgr.recovery_points().has_staged()) {
      return;
    }
  }
  ADD_FAILURE() << "checkpoints not committed";
}

// A manager over `dir` with log t-0 holding `batches` durable batches, their point committed.
std::unique_ptr<LogManager> ManagerWithCheckpointedLog(const std::string& dir, int batches,
                                                       int64_t& now) {
  auto mgr = OpenLogManager(dir);
  if (mgr == nullptr) return nullptr;
  auto log = mgr->CreateLog({"t", 0}, LogConfig());
  EXPECT_TRUE(log.ok()) << log.status();
  if (!log.ok()) return nullptr;
  AppendDurably(*mgr, *log, batches);
  TickUntilCheckpointed(*mgr, now);
  EXPECT_EQ(ReadAll(dir).points["t-0"].cp.recovery_offset, batches);
  return mgr;
}

TEST(RecoveryPointsTest, CleanCloseMarksEveryWrittenLogInOneFileAndTheNextOpenTrustsIt) {
  TempDir tmp;
  {
    auto mgr = OpenLogManager(tmp.path());
    ASSERT_NE(mgr, nullptr);
    for (int p = 0; p < 20; ++p) {
      auto log = mgr->CreateLog({"t", p}, LogConfig());
      ASSERT_TRUE(log.ok()) << log.status();
      if (p % 2 == 0) AppendDurably(*mgr, *log, 3);
    }
    ASSERT_TRUE(mgr->Close().ok());
  }
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.points.size(), 20u);  // the empty logs too: they were closed cleanly
  for (int p = 0; p < 20; ++p) {
    const RecoveryPoint& point = files.points[absl::StrCat("t-", p)];
    EXPECT_TRUE(point.clean) << p;
    EXPECT_EQ(point.cp.recovery_offset, p % 2 == 0 ? 3 : 0) << p;
    // Nothing per log any more.
    EXPECT_FALSE(FileExists(tmp.Sub(absl::StrCat("t-", p, "/", kCleanShutdownFile))));
    EXPECT_FALSE(FileExists(tmp.Sub(absl::StrCat("t-", p, "/", kRecoveryCheckpointFile))));
  }
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  for (int p = 0; p < 20; ++p) {
    const RecoveryReport& r = mgr->GetLog({"t", p})->recovery_report();
    EXPECT_TRUE(r.clean_shutdown) << p;
    EXPECT_EQ(r.bytes_validated, 0u) << p;
    EXPECT_EQ(mgr->GetLog({"t", p})->log_end_offset(), p % 2 == 0 ? 3 : 0);
  }
  // Before any append the file no longer says clean: a crash now must re-validate.
  files = ReadAll(tmp.path());
  EXPECT_EQ(files.points.size(), 20u);
  for (const auto& [name, point] : files.points) EXPECT_FALSE(point.clean) << name;
  EXPECT_GT(files.generation, 1u);
  ASSERT_TRUE(mgr->Close().ok());
}

TEST(RecoveryPointsTest, OverIoUringAPointIsStagedOnlyOnceItsIndexSyncsCompleted) {
  TempDir tmp;
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  if (mgr->io().kind() != IoBackendKind::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  LogConfig config;
  config.index_interval_bytes = 1;  // an index entry per batch: the active indexes are dirty
  auto log = mgr->CreateLog({"t", 0}, config);
  ASSERT_TRUE(log.ok()) << log.status();
  int64_t now = absl::ToUnixMillis(absl::Now());
  AppendDurably(*mgr, *log, 3);
  ASSERT_FALSE(mgr->recovery_points().has_staged());
  // The tick takes the due checkpoint and queues the index syncs; the loop does not wait for
  // them, so nothing is staged or committed by the tick itself...
  now += 2000;
  mgr->Tick(now);
  EXPECT_FALSE(mgr->recovery_points().has_staged());
  EXPECT_FALSE(mgr->recovery_points().commit_in_flight());
  // ...and the point is staged from the syncs' completions.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!mgr->recovery_points().has_staged() && absl::Now() < deadline) {
    mgr->Poll(absl::Milliseconds(10));
  }
  EXPECT_TRUE(mgr->recovery_points().has_staged());
  TickUntilCheckpointed(*mgr, now);
  EXPECT_EQ(ReadAll(tmp.path()).points["t-0"].cp.recovery_offset, 3);
  ASSERT_TRUE(mgr->Close().ok());
}

TEST(RecoveryPointsTest, ACrashRecoversFromTheCommittedPoint) {
  TempDir tmp;
  int64_t now = absl::ToUnixMillis(absl::Now());
  {
    auto mgr = ManagerWithCheckpointedLog(tmp.path(), 4, now);
    ASSERT_NE(mgr, nullptr);
    EXPECT_FALSE(ReadAll(tmp.path()).points["t-0"].clean);
    AppendDurably(*mgr, mgr->GetLog({"t", 0}), 2);  // durable, past the point
    // No Close(): the manager goes as in a crash (the files stay as they are).
  }
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  const RecoveryReport& r = mgr->GetLog({"t", 0})->recovery_report();
  EXPECT_FALSE(r.clean_shutdown);
  EXPECT_EQ(r.recovery_offset, 4);
  EXPECT_GT(r.bytes_validated, 0u);  // the two batches past the point
  EXPECT_EQ(mgr->GetLog({"t", 0})->log_end_offset(), 6);
  ASSERT_TRUE(mgr->Close().ok());
}

TEST(RecoveryPointsTest, ARecreatedLogNeverInheritsTheDeletedOnesPoint) {
  TempDir tmp;
  int64_t now = absl::ToUnixMillis(absl::Now());
  auto mgr = ManagerWithCheckpointedLog(tmp.path(), 5, now);
  ASSERT_NE(mgr, nullptr);
  ASSERT_TRUE(mgr->DeleteLog({"t", 0}).ok());
  EXPECT_TRUE(mgr->recovery_points().removal_staged("t-0"));
  // Created again before the next tick: the removal is committed first.
  auto again = mgr->CreateLog({"t", 0}, LogConfig());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(mgr->recovery_points().removal_staged("t-0"));
  EXPECT_EQ(ReadAll(tmp.path()).points.count("t-0"), 0u);
  EXPECT_EQ((*again)->log_end_offset(), 0);
  ASSERT_TRUE(mgr->Close().ok());
}

TEST(RecoveryPointsTest, FilesOfTheOlderVersionAreReadThenRemoved) {
  TempDir tmp;
  {
    // A log closed by the per-log version: its own checkpoint and clean-shutdown marker.
    auto io = IoBackend::Create(IoBackendKind::kPwrite, tmp.path());
    auto log = PartitionLog::Open(tmp.Sub("t-0"), LogConfig(), io.get());
    ASSERT_TRUE(log.ok());
    auto batch = MakeBatch(3, 50, 1000);
    ASSERT_TRUE((*log)->Append(batch, AckLevel::kWritten, nullptr).ok());
    ASSERT_TRUE((*log)->Close().ok());
  }
  ASSERT_TRUE(FileExists(tmp.Sub(absl::StrCat("t-0/", kCleanShutdownFile))));
  ASSERT_TRUE(FileExists(tmp.Sub(absl::StrCat("t-0/", kRecoveryCheckpointFile))));
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  EXPECT_TRUE(mgr->GetLog({"t", 0})->recovery_report().clean_shutdown);
  EXPECT_EQ(mgr->GetLog({"t", 0})->log_end_offset(), 3);
  EXPECT_FALSE(FileExists(tmp.Sub(absl::StrCat("t-0/", kCleanShutdownFile))));
  EXPECT_FALSE(FileExists(tmp.Sub(absl::StrCat("t-0/", kRecoveryCheckpointFile))));
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.points["t-0"].cp.recovery_offset, 3);
  EXPECT_FALSE(files.points["t-0"].clean);
  ASSERT_TRUE(mgr->Close().ok());
}

TEST(RecoveryPointsTest, LogsMovingToAnotherShardKeepTheirPoints) {
  TempDir tmp;
  auto even = [](const TopicPartition& tp) { return tp.partition % 2 == 0; };
  {
    // Two shards: even partitions in file 0, odd ones in file 1.
    for (int shard = 0; shard < 2; ++shard) {
      LogManager::Options options;
      options.data_dir = tmp.path();
      options.shard_index = shard;
      options.owns = [&, shard](const TopicPartition& tp) { return even(tp) == (shard == 0); };
      auto mgr = LogManager::Open(options);
      ASSERT_TRUE(mgr.ok());
      for (int p = shard; p < 6; p += 2) {
        auto log = (*mgr)->CreateLog({"t", p}, LogConfig());
        ASSERT_TRUE(log.ok());
        AppendDurably(**mgr, *log, p + 1);
      }
      ASSERT_TRUE((*mgr)->Close().ok());
    }
  }
  EXPECT_TRUE(FileExists(tmp.Sub(RecoveryPointFileName(1))));
  // One shard now: it reads both files and writes every point into its own.
  auto mgr = OpenLogManager(tmp.path());
  ASSERT_NE(mgr, nullptr);
  for (int p = 0; p < 6; ++p) {
    EXPECT_TRUE(mgr->GetLog({"t", p})->recovery_report().clean_shutdown) << p;
  }
  ASSERT_TRUE(RemoveUnusedRecoveryPointFiles(tmp.path(), 1).ok());
  auto files = ReadAll(tmp.path());
  EXPECT_EQ(files.points.size(), 6u);
  EXPECT_EQ(files.points["t-5"].cp.recovery_offset, 6);
  EXPECT_FALSE(FileExists(tmp.Sub(RecoveryPointFileName(1))));
  ASSERT_TRUE(mgr->Close().ok());
}

}  // namespace
}  // namespace sluice::storage
