// Spec of PartitionLog::TruncateTo (a follower cutting its divergent tail): where the cut may
// fall, what stays readable, waiters above the cut, appends reusing the offsets, restarts,
// time lookups, the recovery checkpoint, retention and compaction afterwards, and the logs of
// a LogManager (checkpoints in the shard's recovery-points file). Both I/O backends. Power
// cuts: power_cut_test.cc.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/cleaner.h"
#include "log/file_util.h"
#include "log/io_backend.h"
#include "log/log_manager.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

using Batches = std::map<int64_t, std::vector<uint8_t>>;  // base offset -> stored bytes

std::vector<std::vector<uint8_t>> Values(const Batches& m) {
  std::vector<std::vector<uint8_t>> out;
  for (const auto& [base, bytes] : m) out.push_back(bytes);
  return out;
}

// The batches of `m` below `offset`.
Batches Below(const Batches& m, int64_t offset) {
  return Batches(m.begin(), m.lower_bound(offset));
}

class TruncateTest : public ::testing::TestWithParam<IoBackendKind> {
 protected:
  void SetUp() override { io_ = IoBackend::Create(GetParam()); }

  static LogConfig SmallSegments() {
    LogConfig c;
    c.segment_bytes = 4096;
    c.index_interval_bytes = 256;
    c.max_index_bytes = 4096;
    c.retention_ms = -1;
    return c;
  }

  std::string dir() const { return dir_.Sub(name_); }
  std::string SegmentPath(int64_t base, const char* suffix) const {
    return absl::StrCat(dir(), "/", Segment::FileStem(base), suffix);
  }

  // Opens (again: a crash, unless closed before) the log.
  PartitionLog* Open(const LogConfig& config) {
    log_.reset();
    auto log = PartitionLog::Open(dir(), config, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return nullptr;
    log_ = std::move(*log);
    log_->TEST_SetClock([this] { return now_; });
    return log_.get();
  }

  // Appends a batch of `records` records of `value_size` bytes stamped `ts`, waits until it is
  // written (durable with kDurable) and records it in `model_`.
  int64_t Put(int records, int64_t ts, size_t value_size = 40, AckLevel ack = AckLevel::kWritten) {
    std::vector<uint8_t> batch = MakeBatch(records, value_size, ts, ++seed_);
    auto r = AppendSync(*log_, *io_, batch, ack);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -1;
    SetBaseOffset(batch, r->base_offset);
    model_[r->base_offset] = std::move(batch);
    return r->base_offset;
  }

  // TruncateTo, and the model with it.
  absl::Status Truncate(int64_t offset) {
    absl::Status s = log_->TruncateTo(offset);
    if (s.ok()) model_ = Below(model_, offset);
    return s;
  }

  // The log holds exactly the model, readable from every offset of each batch.
  void ExpectHoldsModel() {
    ASSERT_EQ(ReadAllBatches(*log_), Values(model_));
    const int64_t end = model_.empty() ? log_->log_start_offset()
                                       : RecordBatchView(model_.rbegin()->second).last_offset() + 1;
    EXPECT_EQ(log_->high_watermark(), end);
    EXPECT_EQ(log_->log_end_offset(), end);
    for (const auto& [base, bytes] : model_) {
      for (int64_t o = std::max(base, log_->log_start_offset());
           o <= RecordBatchView(bytes).last_offset(); ++o) {
        auto slice = log_->Read(o, 1);
        ASSERT_TRUE(slice.ok()) << slice.status();
        EXPECT_EQ(slice->first_offset, base) << o;
      }
    }
    auto at_end = log_->Read(end, 1 << 20);
    ASSERT_TRUE(at_end.ok());
    EXPECT_EQ(at_end->size, 0u);
    EXPECT_TRUE(absl::IsOutOfRange(log_->Read(end + 1, 1 << 20).status()));
  }

  // The base offset of a batch inside the segment based at `base` (not its first).
  int64_t BatchInsideSegment(int64_t base) const {
    auto it = model_.upper_bound(base);
    EXPECT_NE(it, model_.end());
    return it->first;
  }

  TempDir dir_;
  std::string name_ = "t-0";
  std::unique_ptr<IoBackend> io_;
  std::unique_ptr<PartitionLog> log_;
  Batches model_;
  int64_t now_ = 1'000'000;
  uint64_t seed_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Backends, TruncateTest,
                         ::testing::Values(IoBackendKind::kIoUring, IoBackendKind::kPwrite),
                         [](const auto& info) {
                           return std::string(IoBackendName(info.param)) == "io_uring" ? "IoUring"
                                                                                       : "Pwrite";
                         });

TEST_P(TruncateTest, CutInsideTheActiveSegmentThenAppendsReuseTheOffsets) {
  ASSERT_NE(Open(LogConfig{}), nullptr);
  std::vector<int64_t> bases;
  for (int i = 0; i < 10; ++i) bases.push_back(Put(2, 1000 + i));
  uint64_t kept_bytes = 0;
  for (const auto& [base, bytes] : Below(model_, 10)) kept_bytes += bytes.size();
  ASSERT_TRUE(Truncate(10).ok());
  EXPECT_EQ(log_->log_end_offset(), 10);
  EXPECT_LE(log_->durable_offset(), 10);
  EXPECT_EQ(log_->segment_base_offsets(), std::vector<int64_t>{0});
  EXPECT_EQ(testing::SizeOf(SegmentPath(0, ".log")), kept_bytes);
  ExpectHoldsModel();
  EXPECT_EQ(Put(3, 2000), 10);
  EXPECT_EQ(Put(1, 2001), 13);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, CutAtASegmentBaseStartsAFreshSegmentThere) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 5) Put(2, 1000, 300);
  const std::vector<int64_t> bases = log_->segment_base_offsets();
  const int64_t cut = bases[2];
  ASSERT_TRUE(Truncate(cut).ok());
  EXPECT_EQ(log_->segment_base_offsets(), (std::vector<int64_t>{bases[0], bases[1], cut}));
  EXPECT_EQ(testing::SizeOf(SegmentPath(cut, ".log")), 0u);
  for (size_t i = 3; i < bases.size(); ++i) {
    EXPECT_FALSE(FileExists(SegmentPath(bases[i], ".log"))) << bases[i];
    EXPECT_FALSE(FileExists(SegmentPath(bases[i], ".index"))) << bases[i];
  }
  auto names = ListDir(dir());
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) EXPECT_FALSE(absl::EndsWith(name, ".deleted")) << name;
  ExpectHoldsModel();
  EXPECT_EQ(Put(2, 2000, 300), cut);
  while (log_->segment_count() < 5) Put(2, 2001, 300);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, CutInsideASealedSegmentRemovesTheLaterOnesAndRestartsCleanlyAndAfterACrash) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 4) Put(2, 1000, 300);
  const std::vector<int64_t> bases = log_->segment_base_offsets();
  const int64_t cut = BatchInsideSegment(bases[1]);
  ASSERT_LT(cut, bases[2]);
  ASSERT_TRUE(Truncate(cut).ok());
  // The cut segment's indexes are sealed: appends go on in a fresh segment.
  EXPECT_EQ(log_->segment_base_offsets(), (std::vector<int64_t>{bases[0], bases[1], cut}));
  ExpectHoldsModel();
  EXPECT_EQ(Put(3, 2000, 100), cut);
  ExpectHoldsModel();
  ASSERT_NE(Open(SmallSegments()), nullptr);  // a crash
  ExpectHoldsModel();
  EXPECT_EQ(log_->recovery_report().bytes_truncated, 0u);
  Put(1, 2001);
  ASSERT_TRUE(log_->Close().ok());
  ASSERT_NE(Open(SmallSegments()), nullptr);
  EXPECT_TRUE(log_->recovery_report().clean_shutdown);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, CutAcrossSeveralSegmentsToABatchOfTheFirst) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 6) Put(1 + static_cast<int>(seed_ % 3), 1000, 200);
  const int64_t cut = BatchInsideSegment(0);
  ASSERT_TRUE(Truncate(cut).ok());
  EXPECT_EQ(log_->segment_base_offsets(), (std::vector<int64_t>{0, cut}));
  ExpectHoldsModel();
  for (int i = 0; i < 30; ++i) Put(2, 2000 + i, 200);
  ExpectHoldsModel();
  ASSERT_NE(Open(SmallSegments()), nullptr);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, CutToTheLogStartEmptiesTheLog) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 3) Put(2, 1000, 300);
  ASSERT_TRUE(Truncate(0).ok());
  EXPECT_EQ(log_->segment_base_offsets(), std::vector<int64_t>{0});
  EXPECT_EQ(log_->log_end_offset(), 0);
  ExpectHoldsModel();
  // A log start at a batch boundary inside the log: the log ends where it starts.
  while (log_->segment_count() < 3) Put(2, 1000, 300);
  const int64_t start = BatchInsideSegment(log_->segment_base_offsets()[1]);
  ASSERT_TRUE(log_->AdvanceLogStart(start).ok());
  model_.erase(model_.begin(), model_.lower_bound(start));
  ASSERT_TRUE(Truncate(start).ok());
  EXPECT_EQ(log_->log_start_offset(), start);
  EXPECT_EQ(log_->log_end_offset(), start);
  ExpectHoldsModel();
  EXPECT_EQ(Put(1, 2000), start);
  ASSERT_TRUE(log_->Close().ok());  // checkpoints the log start
  ASSERT_NE(Open(SmallSegments()), nullptr);
  EXPECT_EQ(log_->log_start_offset(), start);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, TruncatingToTheEndChangesNothing) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  EXPECT_TRUE(Truncate(0).ok());  // an empty log
  while (log_->segment_count() < 2) Put(2, 1000, 300);
  const std::vector<int64_t> bases = log_->segment_base_offsets();
  const uint64_t size = log_->size_bytes();
  EXPECT_TRUE(Truncate(log_->log_end_offset()).ok());
  EXPECT_EQ(log_->segment_base_offsets(), bases);
  EXPECT_EQ(log_->size_bytes(), size);
  ExpectHoldsModel();
}

TEST_P(TruncateTest, InvalidOffsetsAreRefusedAndChangeNothing) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 3) Put(3, 1000, 200);
  const int64_t start = model_.begin()->first + 3;
  ASSERT_TRUE(log_->AdvanceLogStart(start).ok());
  model_.erase(model_.begin());
  const int64_t end = log_->log_end_offset();
  const int64_t inside = BatchInsideSegment(log_->segment_base_offsets()[1]) + 1;
  for (int64_t offset : {start - 1, end + 1, inside, end - 1, int64_t{-1}}) {
    EXPECT_TRUE(absl::IsInvalidArgument(log_->TruncateTo(offset))) << offset;
  }
  ExpectHoldsModel();
  ASSERT_TRUE(log_->Close().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(log_->TruncateTo(start)));
}

// Buffered appends are written first: those below the cut stay (their callbacks succeed),
// those above fail with Aborted, as does a WaitFor above the cut; a durable waiter below the
// cut is answered by the next sync.
TEST_P(TruncateTest, BufferedAppendsAreWrittenAndWaitersAboveTheCutFail) {
  ASSERT_NE(Open(LogConfig{}), nullptr);
  Put(1, 1000);
  std::map<int64_t, absl::Status> outcome;  // base offset -> callback status
  std::vector<int64_t> bases;
  for (int i = 0; i < 6; ++i) {
    std::vector<uint8_t> batch = MakeBatch(2, 40, 1001 + i, 100 + i);
    const AckLevel ack = i % 2 == 1 ? AckLevel::kDurable : AckLevel::kWritten;
    auto r = log_->Append(batch, ack, [&outcome](absl::Status s, const AppendResult& res) {
      outcome[res.base_offset] = s;
    });
    ASSERT_TRUE(r.ok()) << r.status();
    SetBaseOffset(batch, r->base_offset);
    model_[r->base_offset] = batch;
    bases.push_back(r->base_offset);
  }
  std::optional<absl::Status> waited;
  ASSERT_TRUE(log_->WaitFor(bases[4] + 1, AckLevel::kWritten,
                            [&waited](absl::Status s, const AppendResult&) { waited = s; }));
  const int64_t cut = bases[3];
  ASSERT_TRUE(Truncate(cut).ok());
  for (int i = 0; i < 6; ++i) {
    if (i == 1) continue;  // durable: not yet
    ASSERT_TRUE(outcome.contains(bases[i])) << i;
    if (i < 3) {
      EXPECT_TRUE(outcome[bases[i]].ok()) << i << ": " << outcome[bases[i]];
    } else {
      EXPECT_TRUE(absl::IsAborted(outcome[bases[i]])) << i << ": " << outcome[bases[i]];
    }
  }
  ASSERT_TRUE(waited.has_value());
  EXPECT_TRUE(absl::IsAborted(*waited)) << *waited;
  for (int i = 0; i < 1000 && !outcome.contains(bases[1]); ++i) io_->Poll(absl::Milliseconds(1));
  ASSERT_TRUE(outcome.contains(bases[1]));
  EXPECT_TRUE(outcome[bases[1]].ok()) << outcome[bases[1]];
  EXPECT_GE(log_->durable_offset(), bases[1] + 2);
  ExpectHoldsModel();
  EXPECT_EQ(Put(2, 3000, 40, AckLevel::kDurable), cut);
  ExpectHoldsModel();
}

// A recovery checkpoint past the cut is lowered before anything is cut: a crash restart
// finds it at or below the new end, and the cut stays cut.
TEST_P(TruncateTest, ACheckpointPastTheCutIsLoweredFirst) {
  LogConfig config = SmallSegments();
  config.recovery_checkpoint_ms = 10;
  ASSERT_NE(Open(config), nullptr);
  while (log_->segment_count() < 3) Put(2, 1000, 300, AckLevel::kDurable);
  now_ += 1000;
  log_->Tick(now_);
  const std::string cp_path = absl::StrCat(dir(), "/", kRecoveryCheckpointFile);
  auto before = ReadRecoveryCheckpoint(cp_path);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->recovery_offset, log_->log_end_offset());
  const int64_t cut = BatchInsideSegment(log_->segment_base_offsets()[1]);
  ASSERT_TRUE(Truncate(cut).ok());
  auto after = ReadRecoveryCheckpoint(cp_path);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->recovery_offset, cut);
  EXPECT_EQ(log_->durable_offset(), cut);
  ASSERT_EQ(log_->checkpoint_on_disk()->recovery_offset, cut);
  Put(1, 2000);  // written, not durable
  ASSERT_NE(Open(config), nullptr);
  EXPECT_EQ(log_->recovery_report().recovery_offset, cut);
  ExpectHoldsModel();
  // Nothing past the cut was checkpointed: the checkpoint written next describes the new
  // batches.
  ASSERT_TRUE(log_->Flush().ok());
  now_ += 1000;
  log_->Tick(now_);
  EXPECT_EQ(ReadRecoveryCheckpoint(cp_path)->recovery_offset, log_->log_end_offset());
  ASSERT_NE(Open(config), nullptr);
  ExpectHoldsModel();
}

// The removed batches held the largest timestamps: time lookups and MaxTimestamp no longer
// see them, in the active segment and in a sealed one that was cut, live and after restarts.
TEST_P(TruncateTest, TimeLookupsAndMaxTimestampForgetTheRemovedBatches) {
  for (bool sealed_holder : {false, true}) {
    SCOPED_TRACE(sealed_holder ? "cut in a sealed segment" : "cut in the active segment");
    name_ = sealed_holder ? "t-1" : "t-0";
    model_.clear();
    ASSERT_NE(Open(SmallSegments()), nullptr);
    std::map<int64_t, int64_t> ts_of;  // base offset -> timestamp
    for (int i = 0; log_->segment_count() < (sealed_holder ? 3u : 1u) || i < 12; ++i) {
      const int64_t ts = 1000 + 10 * i;
      ts_of[Put(2, ts, 200)] = ts;
    }
    const int64_t cut = sealed_holder ? BatchInsideSegment(log_->segment_base_offsets()[1])
                                      : std::next(ts_of.begin(), 6)->first;
    const int64_t last_kept = std::prev(ts_of.lower_bound(cut))->first;
    const int64_t first_cut = ts_of.lower_bound(cut)->first;
    ASSERT_TRUE(Truncate(cut).ok());
    auto check = [&](int64_t max_ts, int64_t max_at) {
      auto max = log_->MaxTimestamp();
      ASSERT_TRUE(max.ok()) << max.status();
      EXPECT_EQ(max->first, max_ts);
      EXPECT_EQ(max->second, max_at);
      EXPECT_EQ(*log_->OffsetForTime(ts_of[last_kept]), last_kept);
      EXPECT_EQ(*log_->OffsetForTime(1000), 0);
      EXPECT_TRUE(absl::IsNotFound(log_->OffsetForTime(max_ts + 1).status()));
    };
    check(ts_of[last_kept], last_kept);
    ASSERT_NE(Open(SmallSegments()), nullptr);
    check(ts_of[last_kept], last_kept);
    // New batches stamped below the removed ones' times.
    const int64_t again = Put(1, ts_of[first_cut] - 5, 200);
    EXPECT_EQ(again, cut);
    ts_of.erase(ts_of.lower_bound(cut), ts_of.end());
    ts_of[again] = ts_of[last_kept] + 5;
    check(ts_of[again], again);
    EXPECT_EQ(*log_->OffsetForTime(ts_of[last_kept] + 1), again);
    ASSERT_TRUE(log_->Close().ok());
    ASSERT_NE(Open(SmallSegments()), nullptr);
    check(ts_of[again], again);
    ExpectHoldsModel();
  }
}

TEST_P(TruncateTest, RetentionKeepsWorkingAfterACut) {
  LogConfig config = SmallSegments();
  config.retention_bytes = 12 * 1024;
  ASSERT_NE(Open(config), nullptr);
  for (int i = 0; i < 60; ++i) Put(2, 1000 + i, 300);
  now_ += 1000;
  log_->Tick(now_);
  const int64_t start = log_->log_start_offset();
  ASSERT_GT(start, 0);
  model_.erase(model_.begin(), model_.lower_bound(start));
  ASSERT_TRUE(Truncate(BatchInsideSegment(log_->segment_base_offsets()[1])).ok());
  ExpectHoldsModel();
  for (int i = 0; i < 60; ++i) Put(2, 2000 + i, 300);
  now_ += 1000;
  log_->Tick(now_);
  EXPECT_GT(log_->log_start_offset(), start);
  EXPECT_LE(log_->size_bytes(), config.retention_bytes + config.segment_bytes);
  model_.erase(model_.begin(), model_.lower_bound(log_->log_start_offset()));
  ExpectHoldsModel();
}

// Compaction leaves gaps between batches: the base of a batch after a gap is no cut point (the
// log could not end there). A pass in progress is abandoned by a cut, the cleaner checkpoint
// lowered to it, and cleaning goes on afterwards.
TEST_P(TruncateTest, CompactedLogsAreCutAtBoundariesOnlyAndTheCleanerStartsOver) {
  LogConfig config = SmallSegments();
  config.cleanup_policy = kCleanupCompact;
  config.segment_bytes = 2048;
  config.recovery_checkpoint_ms = 0;  // every flush writes the checkpoint the cleaner needs
  ASSERT_NE(Open(config), nullptr);
  auto put_keys = [&](int n) {
    for (int i = 0; i < n; ++i) {
      RecordBatchBuilder b(0, now_);
      const std::string value(60, static_cast<char>('a' + i % 26));
      b.Add(absl::StrCat("k", i % 5), value, {}, now_);
      ASSERT_TRUE(log_->Append(b.Build(), AckLevel::kWritten, nullptr).ok());
    }
    now_ += 5000;
    ASSERT_TRUE(log_->Flush().ok());
  };
  put_keys(120);
  put_keys(5);  // the last segments' checkpoint
  for (int i = 0; i < 1000 && log_->CleanStep(now_, 1 << 30, /*force=*/true); ++i) {
  }
  io_->Submit();
  for (int i = 0; i < 100 && io_->pending() > 0; ++i) io_->Poll(absl::Milliseconds(10));
  ASSERT_GT(log_->cleaner()->stats().groups_swapped, 0);
  std::vector<std::vector<uint8_t>> batches = ReadAllBatches(*log_);
  int64_t after_gap = -1;
  for (size_t i = 1; i < batches.size() && after_gap < 0; ++i) {
    if (RecordBatchView(batches[i]).base_offset() !=
        RecordBatchView(batches[i - 1]).last_offset() + 1) {
      after_gap = RecordBatchView(batches[i]).base_offset();
    }
  }
  ASSERT_GT(after_gap, 0);
  EXPECT_TRUE(absl::IsInvalidArgument(log_->TruncateTo(after_gap)));
  EXPECT_EQ(ReadAllBatches(*log_), batches);

  // A pass in progress, then a cut below what it cleans.
  put_keys(120);
  put_keys(5);
  ASSERT_TRUE(log_->CleanStep(now_, 1, /*force=*/true));
  ASSERT_TRUE(log_->cleaner()->in_progress());
  const int64_t passes_aborted = log_->cleaner()->stats().passes_aborted;
  const int64_t first_dirty = log_->cleaner()->first_dirty_offset();
  ASSERT_EQ(*ReadCleanerCheckpoint(absl::StrCat(dir(), "/", kCleanerCheckpointFile)), first_dirty);
  // A segment's base is a cut point even after a gap: the segment before ends there.
  int64_t cut = -1;
  for (int64_t base : log_->segment_base_offsets()) {
    if (base > 0 && base < first_dirty) cut = base;
  }
  ASSERT_GT(cut, 0);
  ASSERT_TRUE(log_->TruncateTo(cut).ok());
  EXPECT_FALSE(log_->cleaner()->in_progress());
  EXPECT_EQ(log_->cleaner()->stats().passes_aborted, passes_aborted + 1);
  auto names = ListDir(dir());
  ASSERT_TRUE(names.ok());
  for (const std::string& name : *names) EXPECT_FALSE(absl::EndsWith(name, ".cleaned")) << name;
  EXPECT_EQ(log_->cleaner()->first_dirty_offset(), cut);
  EXPECT_EQ(*ReadCleanerCheckpoint(absl::StrCat(dir(), "/", kCleanerCheckpointFile)), cut);
  put_keys(120);
  put_keys(5);
  for (int i = 0; i < 1000 && log_->CleanStep(now_, 1 << 30, /*force=*/true); ++i) {
  }
  EXPECT_EQ(log_->cleaner()->stats().passes_aborted, passes_aborted + 1);
  // Every key's latest value is there, once.
  std::map<std::string, int64_t> latest;
  for (const auto& batch : ReadAllBatches(*log_)) {
    auto records = DecodeRecords(batch);
    ASSERT_TRUE(records.ok());
    for (const RecordView& r : *records) latest[std::string(*r.key)] = r.offset;
  }
  EXPECT_EQ(latest.size(), 5u);
  ASSERT_NE(Open(config), nullptr);
  EXPECT_EQ(log_->log_end_offset(), cut + 125);
}

// Without a cleaner in this process (a log that was compacted before a restart), the cleaner
// checkpoint on disk is lowered too.
TEST_P(TruncateTest, ACleanerCheckpointOnDiskIsLowered) {
  ASSERT_NE(Open(LogConfig{}), nullptr);
  for (int i = 0; i < 10; ++i) Put(1, 1000 + i);
  const std::string path = absl::StrCat(dir(), "/", kCleanerCheckpointFile);
  ASSERT_TRUE(WriteCleanerCheckpoint(path, 8).ok());
  ASSERT_TRUE(Truncate(9).ok());
  EXPECT_EQ(*ReadCleanerCheckpoint(path), 8);  // below the cut: kept
  ASSERT_TRUE(Truncate(5).ok());
  EXPECT_EQ(*ReadCleanerCheckpoint(path), 5);
}

// A failure once the files began to change fences the log; the next open finishes the cut
// (segments after the hole removed) and keeps everything below it.
TEST_P(TruncateTest, AFailureAfterTheFilesChangedFencesTheLog) {
  ASSERT_NE(Open(SmallSegments()), nullptr);
  while (log_->segment_count() < 4) Put(2, 1000, 300, AckLevel::kDurable);
  const int64_t cut = BatchInsideSegment(log_->segment_base_offsets()[1]);
  log_->TEST_FailSegmentCreations(1, EIO);
  absl::Status s = log_->TruncateTo(cut);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(log_->fenced());
  EXPECT_EQ(log_->TruncateTo(cut), log_->health());
  EXPECT_FALSE(log_->Append(MakeBatch(1, 10, 1), AckLevel::kWritten, nullptr).ok());
  model_ = Below(model_, cut);
  ASSERT_NE(Open(SmallSegments()), nullptr);
  ExpectHoldsModel();
  EXPECT_EQ(Put(1, 2000), cut);
}

// After a crash the durable offset is the checkpoint's, here below the log start (retention
// deleted the checkpointed segment since). A cut at the start removes every segment that a
// sync would have covered: what is left (nothing) is durable, and a flush or close must not
// wait for a sync that nothing would start (log_ops_fuzz found Close spinning there).
TEST_P(TruncateTest, ACutOfEverythingUnsyncedLeavesTheLogDurable) {
  LogConfig config = SmallSegments();
  config.recovery_checkpoint_ms = 10;
  ASSERT_NE(Open(config), nullptr);
  Put(2, 1000, 300);
  now_ += 1000;
  log_->Tick(now_);  // a checkpoint at durable offset 0, written before its flush
  while (log_->segment_count() < 3) Put(2, 1000, 300);  // no checkpoint: the clock stands
  const int64_t start = log_->segment_base_offsets()[2];
  ASSERT_TRUE(log_->AdvanceLogStart(start).ok());
  ASSERT_EQ(log_->segment_base_offsets(), std::vector<int64_t>{start});
  model_.erase(model_.begin(), model_.lower_bound(start));
  auto cp = ReadRecoveryCheckpoint(absl::StrCat(dir(), "/", kRecoveryCheckpointFile));
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_EQ(cp->recovery_offset, 0);
  ASSERT_NE(Open(config), nullptr);  // a crash
  ASSERT_EQ(log_->log_start_offset(), start);
  ASSERT_LT(log_->durable_offset(), start);
  ASSERT_TRUE(Truncate(start).ok());
  ASSERT_EQ(log_->durable_offset(), start);
  EXPECT_TRUE(log_->Flush().ok());
  EXPECT_TRUE(log_->Close().ok());
  ASSERT_NE(Open(config), nullptr);
  ExpectHoldsModel();
  EXPECT_EQ(Put(1, 2000, 10, AckLevel::kDurable), start);
}

// A LogManager's log keeps its checkpoint in the shard's recovery-points file: a point past
// the cut is replaced there before the cut, and a crash restart opens the log at the cut.
TEST(TruncateLogManagerTest, APointPastTheCutIsReplacedInTheShardsFile) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  LogConfig config;
  config.recovery_checkpoint_ms = 10;
  std::vector<std::vector<uint8_t>> kept;
  int64_t cut = -1;
  {
    auto mgr = testing::OpenLogManager(data);
    ASSERT_NE(mgr, nullptr);
    auto log = mgr->CreateLog(TopicPartition{"t", 0}, config);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(
          AppendSync(**log, mgr->io(), MakeBatch(2, 40, 1000 + i, i), AckLevel::kDurable).ok());
    }
    int64_t now = absl::ToUnixMillis(absl::Now());
    for (int i = 0;
         i < 100 &&
         (*log)->checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset != 20;
         ++i) {
      mgr->Tick(now += 1000);
      mgr->Poll(absl::Milliseconds(2));
    }
    ASSERT_EQ((*log)->checkpoint_on_disk()->recovery_offset, 20);
    cut = 8;
    ASSERT_TRUE((*log)->TruncateTo(cut).ok());
    ASSERT_EQ((*log)->checkpoint_on_disk()->recovery_offset, cut);
    kept = ReadAllBatches(**log);
    ASSERT_EQ(kept.size(), 4u);
    // The shard's file says so already (read as a restart would).
    auto points = ReadRecoveryPointFiles(data);
    ASSERT_TRUE(points.ok()) << points.status();
    EXPECT_EQ(points->points.at("t-0").cp.recovery_offset, cut);
  }  // a crash: no close
  auto mgr = testing::OpenLogManager(data);
  ASSERT_NE(mgr, nullptr);
  PartitionLog* log = mgr->GetLog(TopicPartition{"t", 0});
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->log_end_offset(), cut);
  EXPECT_EQ(ReadAllBatches(*log), kept);
  auto again = AppendSync(*log, mgr->io(), MakeBatch(1, 40, 2000), AckLevel::kDurable);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->base_offset, cut);
}

}  // namespace
}  // namespace sluice::storage
