// Spec of PartitionLog: appends, reads, lookups, retention and recovery.
#include "log/partition_log.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/io_backend.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

// Counts operations while forwarding to a real backend (group commit observability).
class CountingBackend : public IoBackend {
 public:
  explicit CountingBackend(std::unique_ptr<IoBackend> inner) : inner_(std::move(inner)) {}
  IoBackendKind kind() const override { return inner_->kind(); }
  void Write(int fd, const uint8_t* d, uint32_t n, uint64_t p, IoCallback cb) override {
    ++writes;
    inner_->Write(fd, d, n, p, std::move(cb));
  }
  void WriteV(int fd, std::span<const iovec> iov, uint64_t p, IoCallback cb) override {
    ++writes;
    inner_->WriteV(fd, iov, p, std::move(cb));
  }
  void Sync(int fd, IoCallback cb) override {
    ++syncs;
    inner_->Sync(fd, std::move(cb));
  }
  void SyncDir(const std::string& path, IoCallback cb) override {
    ++dir_syncs;
    inner_->SyncDir(path, std::move(cb));
  }
  void Unlink(const std::string& path, IoCallback cb) override {
    inner_->Unlink(path, std::move(cb));
  }
  void Submit() override {
    ++submits;
    inner_->Submit();
  }
  int Poll(absl::Duration t) override { return inner_->Poll(t); }
  size_t pending() const override { return inner_->pending(); }
  int writes = 0, syncs = 0, dir_syncs = 0, submits = 0;

 private:
  std::unique_ptr<IoBackend> inner_;
};

class PartitionLogTest : public ::testing::TestWithParam<IoBackendKind> {
 protected:
  void SetUp() override { io_ = IoBackend::Create(GetParam()); }

  std::unique_ptr<PartitionLog> OpenLog(const LogConfig& config) {
    auto log = PartitionLog::Open(dir_.Sub("t-0"), config, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }

  static LogConfig SmallSegments() {
    LogConfig c;
    c.segment_bytes = 8192;
    c.index_interval_bytes = 256;
    c.max_index_bytes = 4096;
    c.retention_ms = -1;
    return c;
  }

  std::string SegmentPath(int64_t base, const char* suffix) {
    return dir_.Sub(absl::StrCat("t-0/", Segment::FileStem(base), suffix));
  }

  TempDir dir_;
  std::unique_ptr<IoBackend> io_;
};

INSTANTIATE_TEST_SUITE_P(Backends, PartitionLogTest,
                         ::testing::Values(IoBackendKind::kIoUring, IoBackendKind::kPwrite),
                         [](const auto& info) {
                           return std::string(IoBackendName(info.param)) == "io_uring" ? "IoUring"
                                                                                       : "Pwrite";
                         });

TEST_P(PartitionLogTest, EmptyLogStartsAtOffsetZero) {
  auto log = OpenLog(LogConfig());
  EXPECT_EQ(log->log_start_offset(), 0);
  EXPECT_EQ(log->high_watermark(), 0);
  EXPECT_EQ(log->log_end_offset(), 0);
  auto slice = log->Read(0, 1024);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->size, 0u);
}

// A segment's index files are made with its first index entry: a partition that holds less
// than index.interval.bytes costs its .log only, and opens again (cleanly or after a crash)
// without counting a rebuild; once an entry is due both files exist.
TEST_P(PartitionLogTest, IndexFilesAreMadeWithTheFirstIndexEntry) {
  LogConfig config;
  config.index_interval_bytes = 4096;
  {
    auto log = OpenLog(config);
    ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 100, 1000)).ok());
    EXPECT_FALSE(FileExists(SegmentPath(0, ".index")));
    EXPECT_FALSE(FileExists(SegmentPath(0, ".timeindex")));
  }  // a crash
  {
    auto log = OpenLog(config);
    EXPECT_EQ(log->recovery_report().indexes_rebuilt, 0);
    EXPECT_EQ(log->log_end_offset(), 2);
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = OpenLog(config);
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(log->recovery_report().indexes_rebuilt, 0);
  EXPECT_FALSE(FileExists(SegmentPath(0, ".index")));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 1000, 1000)).ok());
  EXPECT_TRUE(FileExists(SegmentPath(0, ".index")));
  EXPECT_TRUE(FileExists(SegmentPath(0, ".timeindex")));
  // Lookups work either way: read from the middle.
  auto slice = log->Read(5, 1 << 20);
  ASSERT_TRUE(slice.ok());
  EXPECT_GT(slice->size, 0u);
  EXPECT_LE(slice->first_offset, 5);
}

TEST_P(PartitionLogTest, AppendAssignsConsecutiveOffsets) {
  auto log = OpenLog(LogConfig());
  for (int i = 0; i < 10; ++i) {
    auto batch = MakeBatch(i + 1, 10, 1000);
    auto r = AppendSync(*log, *io_, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->last_offset - r->base_offset, i);
  }
  EXPECT_EQ(log->log_end_offset(), 55);
  EXPECT_EQ(log->high_watermark(), 55);
}

TEST_P(PartitionLogTest, AppendThenReadRoundTripsAcrossSegmentRolls) {
  auto log = OpenLog(SmallSegments());
  std::vector<std::vector<uint8_t>> written;
  for (int i = 0; i < 300; ++i) {
    auto batch = MakeBatch(1 + i % 5, 20 + (i * 37) % 400, 1000 + i, i);
    auto r = AppendSync(*log, *io_, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    SetBaseOffset(batch, r->base_offset);
    written.push_back(batch);
  }
  EXPECT_GT(log->segment_count(), 5u);
  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), written.size());
  for (size_t i = 0; i < read.size(); ++i) EXPECT_EQ(read[i], written[i]) << "batch " << i;
}

TEST_P(PartitionLogTest, ReadAtEveryOffsetStartsWithTheBatchHoldingIt) {
  auto log = OpenLog(SmallSegments());
  for (int i = 0; i < 200; ++i) {
    auto batch = MakeBatch(1 + i % 4, 50 + i % 100, 1000 + i, i);
    ASSERT_TRUE(AppendSync(*log, *io_, batch).ok());
  }
  for (int64_t offset = 0; offset < log->high_watermark(); ++offset) {
    auto slice = log->Read(offset, 1);
    ASSERT_TRUE(slice.ok()) << slice.status();
    ASSERT_GT(slice->size, 0u);
    auto bytes = PartitionLog::ReadBytes(*slice);
    ASSERT_TRUE(bytes.ok());
    RecordBatchView v(*bytes);
    EXPECT_LE(v.base_offset(), offset);
    EXPECT_GE(v.last_offset(), offset);
    EXPECT_EQ(v.size_bytes(), bytes->size()) << "max_bytes=1 returns exactly one whole batch";
    EXPECT_TRUE(ValidateBatch(*bytes, 1 << 20).ok());
  }
}

TEST_P(PartitionLogTest, ReadReturnsOnlyWholeBatchesWithinMaxBytes) {
  auto log = OpenLog(SmallSegments());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 100, 5, i)).ok());
  for (uint32_t max : {200u, 500u, 1000u, 3000u, 8000u}) {
    for (int64_t offset = 0; offset < log->high_watermark(); offset += 7) {
      auto slice = log->Read(offset, max);
      ASSERT_TRUE(slice.ok());
      auto bytes = PartitionLog::ReadBytes(*slice);
      ASSERT_TRUE(bytes.ok());
      size_t pos = 0, batches = 0;
      while (pos < bytes->size()) {
        std::span<const uint8_t> rest(bytes->data() + pos, bytes->size() - pos);
        ASSERT_GE(rest.size(), kBatchHeaderSize);
        RecordBatchView v(rest);
        ASSERT_LE(v.size_bytes(), rest.size()) << "partial batch in slice";
        ASSERT_TRUE(ValidateBatch(rest.subspan(0, v.size_bytes()), 1 << 20).ok());
        pos += v.size_bytes();
        ++batches;
      }
      if (batches > 1) EXPECT_LE(bytes->size(), max);
    }
  }
}

TEST_P(PartitionLogTest, ReadAtHighWatermarkIsEmptyAndBeyondIsOutOfRange) {
  auto log = OpenLog(LogConfig());
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(3, 10, 1)).ok());
  auto at = log->Read(3, 1024);
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->size, 0u);
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(4, 1024).status()));
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(-1, 1024).status()));
}

TEST_P(PartitionLogTest, UnwrittenAppendsAreInvisibleToReaders) {
  auto log = OpenLog(LogConfig());
  auto batch = MakeBatch(1, 10, 1);
  auto r = log->Append(batch, AckLevel::kWritten, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(log->log_end_offset(), 1);
  EXPECT_EQ(log->high_watermark(), 0) << "buffered, not yet written";
  EXPECT_EQ(log->Read(0, 100)->size, 0u);
  ASSERT_TRUE(log->Flush().ok());
  EXPECT_EQ(log->high_watermark(), 1);
}

TEST_P(PartitionLogTest, OffsetForTimeAtEveryBoundary) {
  auto log = OpenLog(SmallSegments());
  // Batch i holds 3 records with timestamps 1000+10i, +1, +2.
  for (int i = 0; i < 150; ++i) {
    RecordBatchBuilder b(0, 1000 + 10 * i);
    for (int j = 0; j < 3; ++j) b.Add("k", std::string(40, 'v'), {}, 1000 + 10 * i + j);
    auto batch = b.Build();
    ASSERT_TRUE(AppendSync(*log, *io_, batch).ok());
  }
  EXPECT_EQ(*log->OffsetForTime(0), 0);
  EXPECT_EQ(*log->OffsetForTime(1000), 0);
  for (int i = 0; i < 150; ++i) {
    const int64_t ts = 1000 + 10 * i;
    EXPECT_EQ(*log->OffsetForTime(ts), 3 * i) << i;
    EXPECT_EQ(*log->OffsetForTime(ts + 1), 3 * i + 1) << i;
    EXPECT_EQ(*log->OffsetForTime(ts + 2), 3 * i + 2) << i;
    if (i + 1 < 150) EXPECT_EQ(*log->OffsetForTime(ts + 3), 3 * (i + 1)) << i;
  }
  EXPECT_TRUE(absl::IsNotFound(log->OffsetForTime(1000 + 10 * 149 + 3).status()));
}

TEST_P(PartitionLogTest, OffsetForTimeSurvivesReopen) {
  {
    auto log = OpenLog(SmallSegments());
    for (int i = 0; i < 100; ++i)
      ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 60, 500 + i)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = OpenLog(SmallSegments());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(*log->OffsetForTime(500 + i), i);
}

TEST_P(PartitionLogTest, MaxBytesSmallerThanFirstBatchReturnsExactlyOneBatch) {
  auto log = OpenLog(LogConfig());
  auto big = MakeBatch(1, 5000, 1);
  ASSERT_TRUE(AppendSync(*log, *io_, big).ok());
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  auto slice = log->Read(0, 100);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->size, big.size());
}

TEST_P(PartitionLogTest, TooLargeBatchIsRejected) {
  LogConfig c;
  c.max_batch_bytes = 1000;
  auto log = OpenLog(c);
  auto r = log->Append(MakeBatch(1, 2000, 1), AckLevel::kWritten, nullptr);
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_EQ(log->log_end_offset(), 0);
}

TEST_P(PartitionLogTest, CorruptBatchIsRejected) {
  auto log = OpenLog(LogConfig());
  auto batch = MakeBatch(2, 30, 1);
  batch[batch.size() - 1] ^= 0x01;
  auto r = log->Append(batch, AckLevel::kWritten, nullptr);
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_EQ(log->log_end_offset(), 0);
}

// The CRC is checked while the batch is copied into the write buffer: a rejected batch must
// leave no bytes behind between the good batches around it, in the same buffer.
TEST_P(PartitionLogTest, RejectedBatchLeavesNoTraceBetweenGoodOnes) {
  auto log = OpenLog(LogConfig());
  auto first = MakeBatch(2, 3000, 1);
  auto second = MakeBatch(3, 5000, 2);
  auto corrupt = MakeBatch(4, 20000, 3);
  corrupt[corrupt.size() / 2] ^= 0x10;
  ASSERT_TRUE(log->Append(first, AckLevel::kWritten, nullptr).ok());
  EXPECT_TRUE(absl::IsDataLoss(log->Append(corrupt, AckLevel::kWritten, nullptr).status()));
  auto r = AppendSync(*log, *io_, second);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base_offset, 2);
  SetBaseOffset(second, 2);
  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0], first);
  EXPECT_EQ(read[1], second);
}

// Write-behind (SubmitMode::kWriteBehind): without waiters only whole aligned units (A =
// kWriteBehindAlignBytes) are written; the rest follows with the next write, or with a
// submission that has no appends before it.
constexpr size_t kA = PartitionLog::kWriteBehindAlignBytes;

class WriteBehindTest : public PartitionLogTest {
 protected:
  void Submit(PartitionLog& log, SubmitMode mode) {
    log.SubmitBuffered(mode);
    io_->Submit();
    while (io_->pending() > 0) io_->Poll(absl::Milliseconds(10));
  }
  static uint64_t FileSize(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
  static LogConfig Config() {
    LogConfig c;
    c.max_batch_bytes = 4 << 20;
    return c;
  }
};
INSTANTIATE_TEST_SUITE_P(Backends, WriteBehindTest,
                         ::testing::Values(IoBackendKind::kIoUring, IoBackendKind::kPwrite),
                         [](const auto& info) {
                           return info.param == IoBackendKind::kIoUring ? "IoUring" : "Pwrite";
                         });

TEST_P(WriteBehindTest, WritesWholeUnitsAndShowsOnlyCompleteBatches) {
  auto log = OpenLog(Config());
  log->TEST_SetClock([] { return int64_t{5000}; });  // no time passes: only the size rule
  const std::string file = SegmentPath(0, ".log");
  auto a = MakeBatch(3, kA / 2, 1);       // 1.5 A: crosses the first boundary
  auto b = MakeBatch(1, kA * 6 / 10, 2);  // ends at 2.1 A
  auto big = MakeBatch(5, kA / 2, 3);     // ends at 4.6 A
  ASSERT_TRUE(log->Append(a, AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(FileSize(file), kA);  // one whole unit, `a` not complete: invisible
  EXPECT_EQ(log->high_watermark(), 0);
  EXPECT_TRUE(log->has_held_writes());

  ASSERT_TRUE(log->Append(b, AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(FileSize(file), 2 * kA);
  EXPECT_EQ(log->high_watermark(), 3);  // `a` complete, `b` straddles 2 A

  ASSERT_TRUE(log->Append(big, AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(FileSize(file), 4 * kA);
  EXPECT_EQ(log->high_watermark(), 4);  // `b` complete; `big` ends past 4 A

  // A submission with no appends since the last one writes the rest.
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_FALSE(log->has_held_writes());
  EXPECT_EQ(log->high_watermark(), 9);
  EXPECT_EQ(FileSize(file), a.size() + b.size() + big.size());
  SetBaseOffset(b, 3);
  SetBaseOffset(big, 4);
  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[0], a);
  EXPECT_EQ(read[1], b);
  EXPECT_EQ(read[2], big);
}

TEST_P(WriteBehindTest, NothingIsHeldForAWaiterOrAFlush) {
  auto log = OpenLog(LogConfig());
  bool acked = false;
  ASSERT_TRUE(log->Append(MakeBatch(3, 2000, 1), AckLevel::kWritten,
                          [&](absl::Status s, const AppendResult&) { acked = s.ok(); })
                  .ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_TRUE(acked);
  EXPECT_EQ(log->high_watermark(), 3);
  EXPECT_FALSE(log->has_held_writes());

  ASSERT_TRUE(log->Append(MakeBatch(3, 2000, 2), AckLevel::kWritten, nullptr).ok());
  ASSERT_TRUE(log->Flush().ok());
  EXPECT_EQ(log->high_watermark(), 6);
  EXPECT_EQ(log->durable_offset(), 6);
}

TEST_P(WriteBehindTest, APartialPageIsHeldForAboutAMillisecondAtMost) {
  auto log = OpenLog(LogConfig());
  int64_t now = 5000;
  log->TEST_SetClock([&] { return now; });
  ASSERT_TRUE(log->Append(MakeBatch(1, 100, 1), AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(log->high_watermark(), 0);  // under one page: held whole
  EXPECT_TRUE(log->has_held_writes());
  now += 1;
  ASSERT_TRUE(log->Append(MakeBatch(1, 100, 2), AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(log->high_watermark(), 0);  // still within the bound
  now += 1;
  ASSERT_TRUE(log->Append(MakeBatch(1, 100, 3), AckLevel::kWritten, nullptr).ok());
  Submit(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(log->high_watermark(), 3);  // held 2 ms: written although appends keep coming
  EXPECT_FALSE(log->has_held_writes());
}

TEST_P(WriteBehindTest, CrashLosesOnlyUnwrittenBatchesAndRecoveryCutsThePartialOne) {
  const auto a = MakeBatch(3, kA / 2, 1);
  {
    auto log = OpenLog(Config());
    log->TEST_SetClock([] { return int64_t{5000}; });
    ASSERT_TRUE(log->Append(a, AckLevel::kWritten, nullptr).ok());
    ASSERT_TRUE(log->Append(MakeBatch(1, kA * 6 / 10, 2), AckLevel::kWritten, nullptr).ok());
    Submit(*log, SubmitMode::kWriteBehind);
    ASSERT_EQ(log->high_watermark(), 3);
    // Dropped without Close(): like a crash, the held tail is never written.
  }
  auto log = OpenLog(Config());
  EXPECT_EQ(log->log_end_offset(), 3);
  EXPECT_EQ(ReadAllBatches(*log).size(), 1u);
  // The head of batch 2 written up to the 2 A boundary was cut.
  EXPECT_EQ(log->recovery_report().bytes_truncated, 2 * kA - a.size());
}

TEST_P(PartitionLogTest, LogAppendTimeStampsBatches) {
  LogConfig c;
  c.timestamp_type = TimestampType::kLogAppendTime;
  auto log = OpenLog(c);
  log->TEST_SetClock([] { return int64_t{777000}; });
  auto r = AppendSync(*log, *io_, MakeBatch(2, 10, 5));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->log_append_time_ms, 777000);
  auto batches = ReadAllBatches(*log);
  ASSERT_EQ(batches.size(), 1u);
  RecordBatchView v(batches[0]);
  EXPECT_EQ(v.timestamp_type(), TimestampType::kLogAppendTime);
  EXPECT_EQ(v.max_timestamp(), 777000);
  EXPECT_TRUE(ValidateBatch(batches[0], 1 << 20).ok());
}

TEST_P(PartitionLogTest, DurableAckFiresOnlyAfterSync) {
  LogConfig c;
  c.flush_messages = 1;
  auto log = OpenLog(c);
  int64_t durable_at_callback = -1;
  auto batch = MakeBatch(1, 10, 1);
  auto r = log->Append(batch, AckLevel::kWritten, [&](absl::Status s, const AppendResult&) {
    ASSERT_TRUE(s.ok());
    durable_at_callback = log->durable_offset();
  });
  ASSERT_TRUE(r.ok());
  log->SubmitBuffered();
  io_->Submit();
  for (int i = 0; i < 1000 && durable_at_callback < 0; ++i) io_->Poll(absl::Milliseconds(10));
  EXPECT_EQ(durable_at_callback, 1) << "flush.messages=1 makes every ack wait for fdatasync";
}

TEST_P(PartitionLogTest, GroupCommitCoversConcurrentAppends) {
  auto counting = std::make_unique<CountingBackend>(IoBackend::Create(GetParam()));
  CountingBackend* io = counting.get();
  LogConfig c;
  c.flush_messages = 1;
  std::vector<std::unique_ptr<PartitionLog>> logs;
  for (int p = 0; p < 4; ++p) {
    auto log = PartitionLog::Open(dir_.Sub(absl::StrCat("g-", p)), c, io);
    ASSERT_TRUE(log.ok());
    logs.push_back(std::move(*log));
  }
  int acked = 0;
  // 4 partitions x 50 producers' batches arriving in one loop iteration.
  for (int i = 0; i < 50; ++i) {
    for (auto& log : logs) {
      auto batch = MakeBatch(1, 100, 1, i);
      ASSERT_TRUE(log->Append(batch, AckLevel::kDurable,
                              [&](absl::Status s, const AppendResult&) { acked += s.ok(); })
                      .ok());
    }
  }
  for (auto& log : logs) log->SubmitBuffered();
  io->Submit();
  for (int i = 0; i < 1000 && acked < 200; ++i) io->Poll(absl::Milliseconds(10));
  EXPECT_EQ(acked, 200);
  EXPECT_EQ(io->writes, 4) << "one write per partition";
  EXPECT_EQ(io->syncs, 4) << "one fdatasync per partition covers all 50 appends";
  logs.clear();
}

TEST_P(PartitionLogTest, RetentionBytesDeletesOldestSegmentsButNeverTheActiveOne) {
  LogConfig c = SmallSegments();
  c.retention_bytes = 20000;
  auto log = OpenLog(c);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 300, i)).ok());
  const size_t before = log->segment_count();
  log->Tick(absl::ToUnixMillis(absl::Now()));
  EXPECT_LT(log->segment_count(), before);
  EXPECT_GE(log->segment_count(), 1u);
  EXPECT_LE(log->size_bytes(), 20000u + c.segment_bytes);
  EXPECT_GT(log->log_start_offset(), 0);
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(0, 100).status()));
  auto batches = ReadAllBatches(*log);
  EXPECT_EQ(RecordBatchView(batches.back()).last_offset(), 199);
  EXPECT_FALSE(testing::SizeOf(SegmentPath(0, ".log")) > 0);
}

TEST_P(PartitionLogTest, RetentionMsDeletesExpiredSegments) {
  LogConfig c = SmallSegments();
  c.retention_ms = 60000;
  int64_t now = 1'000'000;  // declared first: the log's clock reads it until the log is gone
  auto log = OpenLog(c);
  log->TEST_SetClock([&] { return now; });
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 300, 1000 + i)).ok());
  for (int i = 0; i < 30; ++i)
    ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 300, 990'000 + i)).ok());
  log->Tick(now);
  // Timestamps 1000.. are older than now - 60s; the segments holding 990000.. are not. The
  // segment holding both kinds stays, so the start lands within one segment below 100.
  EXPECT_GE(log->log_start_offset(), 100 - 8192 / 300);
  EXPECT_LE(log->log_start_offset(), 100);
  EXPECT_EQ(log->log_end_offset(), 130);
}

TEST_P(PartitionLogTest, AdvanceLogStartDeletesWholeSegmentsBelowIt) {
  auto log = OpenLog(SmallSegments());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 300, i)).ok());
  auto bases = log->segment_base_offsets();
  ASSERT_GT(bases.size(), 3u);
  ASSERT_TRUE(log->AdvanceLogStart(bases[2] + 1).ok());
  EXPECT_EQ(log->log_start_offset(), bases[2] + 1);
  EXPECT_EQ(log->segment_base_offsets().front(), bases[2]);
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(bases[2], 100).status()));
  EXPECT_TRUE(log->Read(bases[2] + 1, 100).ok());
}

TEST_P(PartitionLogTest, SegmentMsRollsAnOldActiveSegment) {
  LogConfig c;
  c.segment_ms = 1000;
  int64_t now = 5000;
  auto log = OpenLog(c);
  log->TEST_SetClock([&] { return now; });
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  now += 999;
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  EXPECT_EQ(log->segment_count(), 1u);
  now += 1;
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  EXPECT_EQ(log->segment_count(), 2u);
}

TEST_P(PartitionLogTest, ReopenAfterCleanCloseValidatesNothing) {
  std::vector<std::vector<uint8_t>> before;
  {
    auto log = OpenLog(SmallSegments());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 100, i, i)).ok());
    before = ReadAllBatches(*log);
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = OpenLog(SmallSegments());
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(log->recovery_report().bytes_validated, 0u);
  EXPECT_EQ(log->recovery_report().indexes_rebuilt, 0);
  EXPECT_EQ(ReadAllBatches(*log), before);
  EXPECT_EQ(log->log_end_offset(), 200);
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  EXPECT_EQ(log->log_end_offset(), 201);
}

TEST_P(PartitionLogTest, MissingOrDamagedIndexIsRebuilt) {
  std::vector<std::vector<uint8_t>> before;
  std::vector<int64_t> bases;
  {
    auto log = OpenLog(SmallSegments());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(2, 100, i, i)).ok());
    before = ReadAllBatches(*log);
    bases = log->segment_base_offsets();
    ASSERT_TRUE(log->Close().ok());
  }
  ASSERT_GE(bases.size(), 4u);
  ASSERT_EQ(::unlink(SegmentPath(bases[1], ".index").c_str()), 0);
  testing::PatchFile(SegmentPath(bases[2], ".timeindex"), 70, 0x40);
  testing::PatchFile(SegmentPath(bases[3], ".index"), 3, 0xff);
  auto log = OpenLog(SmallSegments());
  EXPECT_EQ(log->recovery_report().indexes_rebuilt, 3);
  EXPECT_EQ(ReadAllBatches(*log), before);
  for (int64_t o = 0; o < log->high_watermark(); ++o) {
    auto slice = log->Read(o, 1);
    ASSERT_TRUE(slice.ok());
    auto bytes = PartitionLog::ReadBytes(*slice);
    ASSERT_TRUE(bytes.ok());
    RecordBatchView v(*bytes);
    EXPECT_LE(v.base_offset(), o);
    EXPECT_GE(v.last_offset(), o);
  }
}

// Crash recovery: the last batch lies past the recovery point and is cut at every byte.
class TornTailTest : public PartitionLogTest {
 protected:
  // Writes 20 checkpointed batches, then one more that is written but not checkpointed, and
  // drops the log without Close() (a crash). Returns the last batch's position and size.
  std::pair<uint64_t, uint64_t> WriteThenCrash() {
    LogConfig c;
    c.index_interval_bytes = 128;
    int64_t now = 1000;
    auto log = OpenLog(c);
    log->TEST_SetClock([&] { return now; });
    for (int i = 0; i < 20; ++i) EXPECT_TRUE(AppendSync(*log, *io_, MakeBatch(3, 50, 7, i)).ok());
    EXPECT_TRUE(log->Flush().ok());
    now += 10 * c.recovery_checkpoint_ms;
    log->Tick(now);  // checkpoint at offset 60
    auto last = MakeBatch(2, 300, 8, 99);
    EXPECT_TRUE(AppendSync(*log, *io_, last).ok());
    uint64_t size = testing::SizeOf(SegmentPath(0, ".log"));
    return {size - last.size(), last.size()};
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, TornTailTest, ::testing::Values(IoBackendKind::kPwrite));

TEST_P(TornTailTest, TornTailAtEveryByteOfTheLastBatchIsTruncated) {
  auto [pos, size] = WriteThenCrash();
  const std::string log_path = SegmentPath(0, ".log");
  auto original = ReadWholeFile(log_path);
  ASSERT_TRUE(original.ok());
  for (uint64_t cut = 0; cut < size; ++cut) {
    std::vector<uint8_t> torn(original->begin(), original->begin() + pos + cut);
    ASSERT_TRUE(WriteFileAtomically(log_path, torn).ok());
    auto log = OpenLog(LogConfig());
    ASSERT_NE(log, nullptr);
    EXPECT_FALSE(log->recovery_report().clean_shutdown);
    EXPECT_EQ(log->log_end_offset(), 60) << "cut at " << cut;
    EXPECT_EQ(log->recovery_report().bytes_truncated, cut);
    EXPECT_EQ(testing::SizeOf(log_path), pos);
    EXPECT_EQ(ReadAllBatches(*log).size(), 20u);
    log.reset();
  }
}

TEST_P(TornTailTest, RecoveryRevalidatesOnlyPastTheCheckpoint) {
  auto [pos, size] = WriteThenCrash();
  auto log = OpenLog(LogConfig());
  EXPECT_EQ(log->recovery_report().recovery_offset, 60);
  EXPECT_EQ(log->recovery_report().bytes_validated, size);
  EXPECT_EQ(log->log_end_offset(), 62);
}

TEST_P(TornTailTest, BitFlipInTheTailTruncatesAtThatBatch) {
  auto [pos, size] = WriteThenCrash();
  for (uint64_t at : {pos + 17, pos + 21, pos + 40, pos + 61, pos + size - 1}) {
    auto copy = ReadWholeFile(SegmentPath(0, ".log"));
    testing::PatchFile(SegmentPath(0, ".log"), at, 0x10);
    auto log = OpenLog(LogConfig());
    EXPECT_EQ(log->log_end_offset(), 60) << "flip at " << at - pos;
    log.reset();
    // Restore the batch for the next round (the log truncated it).
    ASSERT_TRUE(WriteFileAtomically(SegmentPath(0, ".log"), *copy).ok());
  }
}

TEST_P(TornTailTest, ZeroFilledTailIsTruncated) {
  auto [pos, size] = WriteThenCrash();
  testing::AppendToFile(SegmentPath(0, ".log"), std::vector<uint8_t>(4096, 0));
  auto log = OpenLog(LogConfig());
  EXPECT_EQ(log->log_end_offset(), 62);
  EXPECT_EQ(log->recovery_report().bytes_truncated, 4096u);
  EXPECT_EQ(testing::SizeOf(SegmentPath(0, ".log")), pos + size);
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  EXPECT_EQ(ReadAllBatches(*log).size(), 22u);
}

TEST_P(TornTailTest, CrcErrorBelowTheRecoveryPointIsReportedNotTruncated) {
  WriteThenCrash();
  const std::string log_path = SegmentPath(0, ".log");
  const uint64_t before = testing::SizeOf(log_path);
  testing::PatchFile(log_path, 100, 0x01);  // inside the first batches, below the checkpoint
  // A damaged index forces a re-read of that range (a missing one would not here: a segment
  // this small may never have made its index files).
  testing::PatchFile(SegmentPath(0, ".index"), 0, 0xff);
  auto log = PartitionLog::Open(dir_.Sub("t-0"), LogConfig(), io_.get());
  EXPECT_TRUE(absl::IsDataLoss(log.status())) << log.status();
  EXPECT_NE(log.status().message().find("below the recovery point"), std::string::npos);
  EXPECT_EQ(testing::SizeOf(log_path), before) << "committed data must not be truncated";
}

TEST_P(TornTailTest, DamagedCheckpointMeansRevalidateEverythingNotTrustEverything) {
  auto [pos, size] = WriteThenCrash();
  // Both slots (log/FORMAT.md): with one left, the log would start from that older point.
  testing::PatchFile(dir_.Sub(absl::StrCat("t-0/", kRecoveryCheckpointFile)), 9, 0x01);
  testing::PatchFile(dir_.Sub(absl::StrCat("t-0/", kRecoveryCheckpointFile)), 4096 + 9, 0x01);
  testing::PatchFile(SegmentPath(0, ".log"), pos + size - 1, 0x01);
  auto log = OpenLog(LogConfig());
  // Everything from offset 0 was re-checked (nothing trusted), up to the damaged batch.
  EXPECT_EQ(log->recovery_report().bytes_validated, pos);
  EXPECT_EQ(log->recovery_report().bytes_truncated, size);
  EXPECT_EQ(log->log_end_offset(), 60);
}

}  // namespace
}  // namespace sluice::storage

namespace sluice::storage {
namespace {

TEST_P(TornTailTest, SegmentAfterAHoleIsRemoved) {
  // A roll created the next segment, but the previous segment's last batch never reached the
  // file (the crash came first). Nothing after the hole was acknowledged: it must go.
  LogConfig c;
  c.segment_bytes = 2048;
  std::vector<int64_t> bases;
  {
    auto log = OpenLog(c);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 200, 5, i)).ok());
    bases = log->segment_base_offsets();
  }
  ASSERT_GE(bases.size(), 3u);
  const int64_t cut_base = bases[bases.size() - 2];
  const std::string path = SegmentPath(cut_base, ".log");
  const uint64_t size = testing::SizeOf(path);
  testing::TruncateFile(path, size - 1);  // its last batch is torn
  auto log = OpenLog(c);
  EXPECT_LT(log->log_end_offset(), bases.back());
  EXPECT_EQ(log->segment_base_offsets().back(), cut_base);
  EXPECT_EQ(testing::SizeOf(SegmentPath(bases.back(), ".log")), 0u) << "removed";
  int64_t expect = 0;
  for (auto& b : ReadAllBatches(*log)) {
    EXPECT_EQ(RecordBatchView(b).base_offset(), expect);
    expect = RecordBatchView(b).last_offset() + 1;
  }
  EXPECT_EQ(expect, log->log_end_offset());
  ASSERT_TRUE(AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
}

}  // namespace
}  // namespace sluice::storage
