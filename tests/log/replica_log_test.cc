// Spec of what replication asks of a partition's log (src/kafka/replica_manager.h): a
// follower's append at the leader's offsets, the leader epoch stamped into batches, readers
// held below the replicated offset, and the leader epoch file.
#include <algorithm>
#include <fstream>

#include "gtest/gtest.h"
#include "log/io_backend.h"
#include "log/leader_epoch_cache.h"
#include "log/partition_log.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

class ReplicaLogTest : public ::testing::Test {
 protected:
  void SetUp() override { io_ = IoBackend::Create(IoBackendKind::kIoUring); }

  std::unique_ptr<PartitionLog> OpenLog(const std::string& name, LogConfig config = {}) {
    auto log = PartitionLog::Open(dir_.Sub(name), config, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }

  absl::StatusOr<AppendResult> AppendReplicatedSync(PartitionLog& log,
                                                    std::span<const uint8_t> batch) {
    bool called = false;
    auto r = log.AppendReplicated(batch, AckLevel::kWritten,
                                  [&](absl::Status, const AppendResult&) { called = true; });
    if (!r.ok()) return r;
    log.SubmitBuffered();
    io_->Submit();
    for (int i = 0; i < 1000 && !called; ++i) io_->Poll(absl::Milliseconds(10));
    return r;
  }

  TempDir dir_;
  std::unique_ptr<IoBackend> io_;
};

TEST_F(ReplicaLogTest, LeaderStampsItsEpochAndAFollowerKeepsTheBatchAsTheLeaderStoredIt) {
  LogConfig config;
  config.timestamp_type = TimestampType::kLogAppendTime;
  auto leader = OpenLog("leader-0", config);
  auto follower = OpenLog("follower-0", config);
  leader->set_leader_epoch(7);
  ASSERT_TRUE(AppendSync(*leader, *io_, MakeBatch(3, 10, 1000)).ok());
  leader->set_leader_epoch(9);
  ASSERT_TRUE(AppendSync(*leader, *io_, MakeBatch(2, 10, 2000, 1)).ok());
  std::vector<std::vector<uint8_t>> stored = ReadAllBatches(*leader);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(RecordBatchView(stored[0]).partition_leader_epoch(), 7);
  EXPECT_EQ(RecordBatchView(stored[1]).partition_leader_epoch(), 9);

  // The follower stores the same bytes: offsets, epoch and the leader's LogAppendTime.
  for (const auto& b : stored) ASSERT_TRUE(AppendReplicatedSync(*follower, b).ok());
  EXPECT_EQ(ReadAllBatches(*follower), stored);
  EXPECT_EQ(follower->log_end_offset(), 5);
}

TEST_F(ReplicaLogTest, AReplicatedBatchMustStartAtTheLogEnd) {
  auto leader = OpenLog("leader-0");
  ASSERT_TRUE(AppendSync(*leader, *io_, MakeBatch(3, 10, 1000)).ok());
  ASSERT_TRUE(AppendSync(*leader, *io_, MakeBatch(2, 10, 1000, 1)).ok());
  std::vector<std::vector<uint8_t>> stored = ReadAllBatches(*leader);
  auto follower = OpenLog("follower-0");
  auto gap = follower->AppendReplicated(stored[1], AckLevel::kWritten, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(gap.status())) << gap.status();
  EXPECT_EQ(follower->log_end_offset(), 0);
  ASSERT_TRUE(AppendReplicatedSync(*follower, stored[0]).ok());
  auto again = follower->AppendReplicated(stored[0], AckLevel::kWritten, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(again.status())) << again.status();
  EXPECT_EQ(follower->log_end_offset(), 3);
}

TEST_F(ReplicaLogTest, ReadersSeeNothingAtOrPastTheReplicatedOffset) {
  auto log = OpenLog("t-0");
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 10, 1000 + i, i)).ok());
  ASSERT_EQ(log->written_offset(), 8);
  EXPECT_EQ(log->high_watermark(), 8);  // no replication: everything written
  log->set_replicated_offset(4);
  EXPECT_EQ(log->high_watermark(), 4);
  std::vector<std::vector<uint8_t>> visible = ReadAllBatches(*log);
  ASSERT_EQ(visible.size(), 2u);
  EXPECT_EQ(RecordBatchView(visible.back()).last_offset(), 3);
  // A read from below stops at the replicated offset; one from past it is empty, not an error.
  auto slice = log->Read(2, 1 << 20);
  ASSERT_TRUE(slice.ok());
  auto bytes = PartitionLog::ReadBytes(*slice);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), visible[1].size());
  auto past = log->Read(6, 1 << 20);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(past->size, 0u);
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(9, 1 << 20).status()));
  // A follower reads on to the written end.
  auto replica = log->ReadForReplica(4, 1 << 20);
  ASSERT_TRUE(replica.ok());
  EXPECT_EQ(replica->first_offset, 4);
  EXPECT_EQ(replica->size, visible[0].size() + visible[1].size());
  // Time lookups do not name an offset readers cannot see.
  EXPECT_EQ(*log->OffsetForTime(1001), 2);
  EXPECT_TRUE(absl::IsNotFound(log->OffsetForTime(1002).status()));
  log->set_replicated_offset(INT64_MAX);
  EXPECT_EQ(*log->OffsetForTime(1002), 4);
}

TEST(LeaderEpochCacheTest, EndOffsetsFollowKafkasRules) {
  TempDir dir;
  LeaderEpochCache cache = LeaderEpochCache::Load(dir.path(), 0);
  EXPECT_EQ(cache.latest_epoch(), -1);
  EXPECT_EQ(cache.EndOffsetFor(0, 100), std::make_pair(-1, int64_t{-1}));
  ASSERT_TRUE(cache.Assign(1, 0).ok());
  ASSERT_TRUE(cache.Assign(3, 40).ok());
  ASSERT_TRUE(cache.Assign(2, 50).ok());  // older than the latest: ignored
  ASSERT_TRUE(cache.Assign(5, 70).ok());
  EXPECT_EQ(cache.latest_epoch(), 5);
  EXPECT_EQ(cache.EndOffsetFor(0, 100), std::make_pair(-1, int64_t{-1}));  // before the first
  EXPECT_EQ(cache.EndOffsetFor(1, 100), std::make_pair(1, int64_t{40}));
  EXPECT_EQ(cache.EndOffsetFor(2, 100),
            std::make_pair(1, int64_t{40}));  // never led: the one below
  EXPECT_EQ(cache.EndOffsetFor(4, 100), std::make_pair(3, int64_t{70}));
  EXPECT_EQ(cache.EndOffsetFor(5, 100), std::make_pair(5, int64_t{100}));  // latest: the log end
  EXPECT_EQ(cache.EndOffsetFor(9, 100), std::make_pair(5, int64_t{100}));

  // Saved: a new load (of a log that ends at 60) keeps the entries that start below its end.
  LeaderEpochCache again = LeaderEpochCache::Load(dir.path(), 60);
  EXPECT_EQ(again.entries(), (std::vector<std::pair<int32_t, int64_t>>{{1, 0}, {3, 40}}));
  ASSERT_TRUE(cache.TruncateFromEnd(40).ok());
  EXPECT_EQ(cache.entries(), (std::vector<std::pair<int32_t, int64_t>>{{1, 0}}));
  EXPECT_EQ(LeaderEpochCache::Load(dir.path(), 100).entries(), cache.entries());
  // A new epoch starting where an older one did replaces it.
  ASSERT_TRUE(cache.Assign(6, 0).ok());
  EXPECT_EQ(cache.entries(), (std::vector<std::pair<int32_t, int64_t>>{{6, 0}}));
}

TEST(LeaderEpochCacheTest, ADamagedFileIsIgnored) {
  TempDir dir;
  {
    std::ofstream f(dir.Sub(LeaderEpochCache::kFileName));
    f << "0\n2\n3 10\n2 20\n";  // epochs going down
  }
  LeaderEpochCache cache = LeaderEpochCache::Load(dir.path(), 100);
  EXPECT_TRUE(cache.entries().empty());
}

}  // namespace
}  // namespace sluice::storage
