// log.max.open.files (log/segment_cache.h): the segments of a LogManager's logs hold at most
// that many descriptors however many logs there are; a segment closed for the budget opens
// again on its next use and serves the same bytes; what it owed a sync is synced; restarts,
// clean or not, find everything.
#include "log/segment_cache.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "log/file_util.h"
#include "log/log_manager.h"
#include "tests/fs/fault_env.h"
#include "tests/log/durability_check.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::FaultEnv;
using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::StoreBigEndian64;
using testing::TempDir;

constexpr size_t kSegmentsOpen = 4;
constexpr size_t kBudget = kSegmentsOpen * SegmentCache::kFilesPerSegment;

int OpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

LogConfig SmallSegments() {
  LogConfig config;
  config.segment_bytes = 4096;  // several segments per log
  config.index_interval_bytes = 256;
  config.max_index_bytes = 4096;
  return config;
}

absl::StatusOr<std::unique_ptr<LogManager>> OpenManager(const std::string& dir,
                                                        size_t max_open_files,
                                                        Env* env = Env::Default()) {
  LogManager::Options options;
  options.data_dir = dir;
  options.env = env;
  options.max_open_files = max_open_files;
  options.config_for = [](const TopicPartition&) { return SmallSegments(); };
  return LogManager::Open(options);
}

TEST(SegmentCacheTest, ManyLogsUnderASmallBudgetHoldFewFilesAndLoseNothing) {
  TempDir tmp;
  constexpr int kLogs = 30;
  constexpr int kRounds = 12;
  std::vector<std::vector<std::vector<uint8_t>>> expected(kLogs);
  {
    auto mgr = OpenManager(tmp.path(), kBudget);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    const int fds_before = OpenFds();
    std::vector<PartitionLog*> logs;
    for (int p = 0; p < kLogs; ++p) {
      auto log = (*mgr)->CreateLog({"t", p}, SmallSegments());
      ASSERT_TRUE(log.ok()) << log.status();
      logs.push_back(*log);
    }
    const SegmentCache& cache = (*mgr)->segment_cache();
    for (int round = 0; round < kRounds; ++round) {
      for (int p = 0; p < kLogs; ++p) {
        std::vector<uint8_t> batch = MakeBatch(3, 200, 1000 + round, p * 100 + round);
        auto r = AppendSync(*logs[p], (*mgr)->io(), batch, AckLevel::kWritten);
        ASSERT_TRUE(r.ok()) << r.status();
        StoreBigEndian64(batch.data(), r->base_offset);
        expected[p].push_back(batch);
        // Only the log being written may hold more than the budget (its own segments are
        // never closed under it).
        EXPECT_LE(cache.open_files(),
                  kBudget + SegmentCache::kFilesPerSegment * logs[p]->segment_count());
      }
    }
    EXPECT_GT(logs[0]->segment_count(), 2u);
    EXPECT_GT(cache.reopens(), 0u);
    EXPECT_LE(cache.open_files(), kBudget + SegmentCache::kFilesPerSegment * 8);
    // Descriptors really closed: the process holds about the budget, not 3 per segment of 30
    // logs (~300 with these segment sizes).
    EXPECT_LE(OpenFds() - fds_before, static_cast<int>(kBudget) + 40);
    // Every log reads back whole, each read reopening what it needs.
    for (int p = 0; p < kLogs; ++p) {
      EXPECT_EQ(ReadAllBatches(*logs[p]), expected[p]) << p;
      EXPECT_LE(cache.open_files(),
                kBudget + SegmentCache::kFilesPerSegment * logs[p]->segment_count());
    }
    // Offsets by time go through the reopened time indexes.
    auto at = logs[7]->OffsetForTime(1000 + 5);
    ASSERT_TRUE(at.ok()) << at.status();
    EXPECT_EQ(*at, 5 * 3);
    ASSERT_TRUE((*mgr)->Close().ok());
  }
  auto mgr = OpenManager(tmp.path(), kBudget);
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  EXPECT_LE((*mgr)->segment_cache().open_files(), kBudget + SegmentCache::kFilesPerSegment * 8);
  for (int p = 0; p < kLogs; ++p) {
    PartitionLog* log = (*mgr)->GetLog({"t", p});
    ASSERT_NE(log, nullptr);
    EXPECT_TRUE(log->recovery_report().clean_shutdown) << p;
    EXPECT_EQ(ReadAllBatches(*log), expected[p]) << p;
  }
}

// Durable appends (a sync per batch) to logs whose segments keep being closed: each sync
// reopens what it must cover; after a crash (no Close) recovery finds every acked batch.
TEST(SegmentCacheTest, DurableAppendsSyncSegmentsTheCacheClosedAndSurviveACrash) {
  TempDir tmp;
  constexpr int kLogs = 10;
  std::vector<std::vector<std::vector<uint8_t>>> acked(kLogs);
  {
    auto mgr = OpenManager(tmp.path(), SegmentCache::kFilesPerSegment);  // one segment open
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    std::vector<PartitionLog*> logs;
    for (int p = 0; p < kLogs; ++p) {
      auto log = (*mgr)->CreateLog({"d", p}, SmallSegments());
      ASSERT_TRUE(log.ok()) << log.status();
      logs.push_back(*log);
    }
    for (int round = 0; round < 6; ++round) {
      for (int p = 0; p < kLogs; ++p) {
        std::vector<uint8_t> batch = MakeBatch(2, 300, 2000 + round, p * 7 + round);
        auto r = AppendSync(*logs[p], (*mgr)->io(), batch, AckLevel::kDurable);
        ASSERT_TRUE(r.ok()) << r.status();
        StoreBigEndian64(batch.data(), r->base_offset);
        acked[p].push_back(batch);
      }
    }
    EXPECT_GT((*mgr)->segment_cache().reopens(), 0u);
    // Dropped without Close: like a crash (nothing more is made durable).
  }
  auto mgr = OpenManager(tmp.path(), SegmentCache::kFilesPerSegment);
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  for (int p = 0; p < kLogs; ++p) {
    PartitionLog* log = (*mgr)->GetLog({"d", p});
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery_report().clean_shutdown);
    EXPECT_EQ(ReadAllBatches(*log), acked[p]) << p;
  }
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// Blocks that a preallocation reserved past a segment's end before a crash are given back by
// the next clean stop, also when the cache had closed the segment's files by then.
TEST(SegmentCacheTest, BlocksReservedBeforeACrashAreReleasedByTheNextCleanStop) {
  TempDir tmp;
  const std::string log_file = absl::StrCat(tmp.path(), "/r-0/", Segment::FileStem(0), ".log");
  {
    auto mgr = OpenManager(tmp.path(), SegmentCache::kFilesPerSegment);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    auto r = (*mgr)->CreateLog({"r", 0}, LogConfig());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(AppendSync(**r, (*mgr)->io(), MakeBatch(1, 100, 1)).ok());
    if (AllocatedBytes(log_file) < (128u << 10)) GTEST_SKIP() << "no preallocation here";
    // Dropped without Close: a crash, the reserve stays.
  }
  {
    auto mgr = OpenManager(tmp.path(), SegmentCache::kFilesPerSegment);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    // The restart's flush of what the crash left unsynced, then another log takes the only
    // slot: r's files close before the stop.
    PartitionLog* r = (*mgr)->GetLog({"r", 0});
    ASSERT_NE(r, nullptr);
    ASSERT_TRUE(r->Flush().ok());
    auto s = (*mgr)->CreateLog({"s", 0}, LogConfig());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_LE((*mgr)->segment_cache().open_segments(), 1u);
    ASSERT_TRUE((*mgr)->Close().ok());
  }
  EXPECT_LE(AllocatedBytes(log_file), 16u << 10);
}

// Index entries stored through a mapping that the cache then closed still owe a sync: the next
// SyncIndexes (here the one of a clean Close) opens the index again and syncs it, so a power
// cut right after the stop leaves the index whole. Without that, the index would be lost with
// the page cache and the restarted log would have to rebuild it from the log.
TEST(SegmentCacheTest, IndexStoresMadeBeforeTheCacheClosedTheSegmentAreSyncedLater) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  ASSERT_TRUE(CreateDirIfMissing(data).ok());
  {
    FaultEnv env(data);
    auto mgr = OpenManager(data, SegmentCache::kFilesPerSegment, &env);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    LogConfig config = SmallSegments();
    config.segment_bytes = 1 << 20;  // one segment: the active one holds the entries
    auto a = (*mgr)->CreateLog({"a", 0}, config);
    ASSERT_TRUE(a.ok()) << a.status();
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(AppendSync(**a, (*mgr)->io(), MakeBatch(2, 200, 3000 + i, i)).ok());
    }
    // Another log's segment takes the only slot: a's segment closes, its index unsynced.
    auto b = (*mgr)->CreateLog({"b", 0}, config);
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_TRUE(AppendSync(**b, (*mgr)->io(), MakeBatch(1, 10, 1)).ok());
    ASSERT_LE((*mgr)->segment_cache().open_segments(), 1u);
    ASSERT_TRUE((*mgr)->Close().ok());
    env.CutPowerNow();
    mgr->reset();
    ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  }
  // What a has in its index now (after the power cut) must be what it wrote: 8 batches of
  // ~450 bytes with an entry every 256 bytes.
  auto mgr = OpenManager(data, SIZE_MAX);
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  PartitionLog* a = (*mgr)->GetLog({"a", 0});
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->log_end_offset(), 16);
  // Found whole, not rebuilt from the log (a lost index fails validation and is rebuilt).
  EXPECT_EQ(a->recovery_report().indexes_rebuilt, 0);
  auto index = OffsetIndex::Open(absl::StrCat(a->dir(), "/", Segment::FileStem(0), ".index"), 0,
                                 4096, Env::Default());
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ((*index)->entries(), 7u);  // one per batch after the first
}

}  // namespace
}  // namespace sluice::storage
