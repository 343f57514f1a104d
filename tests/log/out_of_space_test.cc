// Spec of PartitionLog under disk errors: out of space (ENOSPC on a write, an fdatasync or a
// segment roll) is retriable and the log resumes by itself when there is room again; an I/O
// error on fdatasync fences it. Faults come from an IoBackend wrapper, which sees the
// asynchronous completions of both backends; disk_error_test.cc injects them through the
// fault Env (every file-system call) instead.
#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

// Forwards to a real backend, except while a fault is set: then writes put only the first half
// of their bytes in the file (a short write) and complete with -write_errno, and syncs complete
// with -sync_errno without syncing. Failed completions are delivered by Poll, like real ones.
class FaultyBackend : public IoBackend {
 public:
  explicit FaultyBackend(std::unique_ptr<IoBackend> inner) : inner_(std::move(inner)) {}
  IoBackendKind kind() const override { return inner_->kind(); }
  void Write(int fd, const uint8_t* data, uint32_t len, uint64_t position,
             IoCallback done) override {
    if (write_errno != 0) {
      EXPECT_GE(::pwrite(fd, data, len / 2, static_cast<off_t>(position)), 0);
      Fail(write_errno, std::move(done));
      ++failed_writes;
      return;
    }
    inner_->Write(fd, data, len, position, std::move(done));
  }
  void WriteV(int fd, std::span<const iovec> iov, uint64_t position, IoCallback done) override {
    if (write_errno != 0) {
      if (!iov.empty()) {
        EXPECT_GE(::pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, static_cast<off_t>(position)),
                  0);
      }
      Fail(write_errno, std::move(done));
      ++failed_writes;
      return;
    }
    inner_->WriteV(fd, iov, position, std::move(done));
  }
  // Directory syncs (a new log's names, with its first sync) do not fail here.
  void SyncDir(const std::string& path, IoCallback done) override {
    inner_->SyncDir(path, std::move(done));
  }
  void Unlink(const std::string& path, IoCallback done) override {
    inner_->Unlink(path, std::move(done));
  }
  void Sync(int fd, IoCallback done) override {
    if (sync_errno != 0) {
      Fail(sync_errno, std::move(done));
      ++failed_syncs;
      return;
    }
    inner_->Sync(fd, std::move(done));
  }
  void Submit() override { inner_->Submit(); }
  int Poll(absl::Duration timeout) override {
    std::vector<std::pair<IoCallback, int>> failed = std::move(failed_);
    failed_.clear();
    for (auto& [done, err] : failed) done(-err);
    const int n = static_cast<int>(failed.size());
    return n + inner_->Poll(n > 0 ? absl::ZeroDuration() : timeout);
  }
  size_t pending() const override { return inner_->pending() + failed_.size(); }

  int write_errno = 0;
  int sync_errno = 0;
  int failed_writes = 0;
  int failed_syncs = 0;

 private:
  void Fail(int err, IoCallback done) { failed_.emplace_back(std::move(done), err); }
  std::unique_ptr<IoBackend> inner_;
  std::vector<std::pair<IoCallback, int>> failed_;
};

class OutOfSpaceTest : public ::testing::TestWithParam<IoBackendKind> {
 protected:
  void SetUp() override { io_ = std::make_unique<FaultyBackend>(IoBackend::Create(GetParam())); }

  std::unique_ptr<PartitionLog> OpenLog(const LogConfig& config) {
    auto log = PartitionLog::Open(dir_.Sub("t-0"), config, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return nullptr;
    (*log)->TEST_SetClock([this] { return now_ms_; });
    return std::move(*log);
  }

  static LogConfig NoRetention() {
    LogConfig c;
    c.retention_ms = -1;
    return c;
  }

  // A log of 8 KiB segments whose first segment is filled up to where the next batch of
  // MakeBatch(2, 300, ...) needs a roll; `want` gets what it holds.
  std::unique_ptr<PartitionLog> OpenWithFullFirstSegment(std::vector<std::vector<uint8_t>>* want) {
    LogConfig c = NoRetention();
    c.segment_bytes = 8192;
    c.index_interval_bytes = 256;
    c.max_index_bytes = 4096;
    auto log = OpenLog(c);
    while (log != nullptr) {
      auto batch = MakeBatch(2, 300, 7000, want->size());
      if (log->segment_count() == 1 && log->size_bytes() + batch.size() > c.segment_bytes) break;
      auto r = testing::AppendSync(*log, *io_, batch);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) return nullptr;
      SetBaseOffset(batch, r->base_offset);
      want->push_back(batch);
    }
    return log;
  }

  // Hands buffered appends to the backend and runs completions until none is pending.
  void Drive(PartitionLog& log) {
    log.SubmitBuffered();
    io_->Submit();
    for (int i = 0; i < 200 && io_->pending() > 0; ++i) io_->Poll(absl::Milliseconds(10));
    io_->Poll(absl::ZeroDuration());
  }

  // Time passes by `ms`; the log's Tick runs (retries are due by then or not).
  void Advance(PartitionLog& log, int64_t ms) {
    now_ms_ += ms;
    log.Tick(now_ms_);
    Drive(log);
  }

  // Appends `batch` and records what its callback says.
  struct Pending {
    bool called = false;
    absl::Status status;
    AppendResult result;
  };
  absl::StatusOr<AppendResult> AppendAsync(PartitionLog& log, const std::vector<uint8_t>& batch,
                                           std::shared_ptr<Pending> p,
                                           AckLevel ack = AckLevel::kWritten) {
    return log.Append(batch, ack, [p](absl::Status s, const AppendResult& r) {
      p->called = true;
      p->status = s;
      p->result = r;
    });
  }

  // Every batch readable, each with offsets following the previous one's without a gap, and
  // the bytes appended (with their assigned base offsets).
  static void ExpectExactly(const PartitionLog& log,
                            const std::vector<std::vector<uint8_t>>& want) {
    auto got = ReadAllBatches(log);
    ASSERT_EQ(got.size(), want.size());
    int64_t next = log.log_start_offset();
    for (size_t i = 0; i < got.size(); ++i) {
      RecordBatchView v(got[i]);
      EXPECT_EQ(v.base_offset(), next) << "batch " << i;
      next = v.last_offset() + 1;
      EXPECT_EQ(got[i], want[i]) << "batch " << i;
    }
    EXPECT_EQ(next, log.high_watermark());
  }

  TempDir dir_;
  std::unique_ptr<FaultyBackend> io_;
  int64_t now_ms_ = 1'000'000;
};

INSTANTIATE_TEST_SUITE_P(Backends, OutOfSpaceTest,
                         ::testing::Values(IoBackendKind::kIoUring, IoBackendKind::kPwrite),
                         [](const auto& info) {
                           return std::string(IoBackendName(info.param)) == "io_uring" ? "IoUring"
                                                                                       : "Pwrite";
                         });

// Appends `n` batches that must succeed, returning them with their assigned offsets.
std::vector<std::vector<uint8_t>> AppendGood(PartitionLog& log, IoBackend& io, int n, int seed) {
  std::vector<std::vector<uint8_t>> out;
  for (int i = 0; i < n; ++i) {
    auto batch = MakeBatch(1 + i % 3, 100 + i, 1000 + i, seed + i);
    auto r = testing::AppendSync(log, io, batch);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    SetBaseOffset(batch, r->base_offset);
    out.push_back(batch);
  }
  return out;
}

TEST_P(OutOfSpaceTest, WriteOutOfSpaceIsRetriableAndTheLogResumesWhenThereIsRoom) {
  auto log = OpenLog(NoRetention());
  auto want = AppendGood(*log, *io_, 10, 0);
  const int64_t hw = log->high_watermark();

  io_->write_errno = ENOSPC;
  auto held = MakeBatch(3, 200, 2000, 77);
  auto pending = std::make_shared<Pending>();
  auto r = AppendAsync(*log, held, pending);
  ASSERT_TRUE(r.ok()) << r.status();  // accepted before the disk turned out full
  EXPECT_EQ(r->base_offset, hw);
  Drive(*log);
  // Answered at once with the retriable error (not held: Kafka answers in order), and kept
  // for the retry.
  ASSERT_TRUE(pending->called);
  EXPECT_TRUE(absl::IsUnavailable(pending->status)) << pending->status;
  EXPECT_TRUE(log->out_of_space());
  EXPECT_TRUE(log->health().ok()) << "out of space is not a failure";
  EXPECT_EQ(log->high_watermark(), hw) << "readers never see the unwritten batch";
  ExpectExactly(*log, want);

  // Refused at once with a retriable error, nothing assigned.
  auto refused = log->Append(MakeBatch(1, 10, 2001), AckLevel::kWritten, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_EQ(log->log_end_offset(), r->last_offset + 1);

  // Retries back off: the first after kSpaceRetryMinMs, then twice as long.
  const int failed = io_->failed_writes;
  Advance(*log, PartitionLog::kSpaceRetryMinMs - 1);
  EXPECT_EQ(io_->failed_writes, failed);
  Advance(*log, 1);
  EXPECT_EQ(io_->failed_writes, failed + 1);
  Advance(*log, 2 * PartitionLog::kSpaceRetryMinMs - 1);
  EXPECT_EQ(io_->failed_writes, failed + 1);
  Advance(*log, 1);
  EXPECT_EQ(io_->failed_writes, failed + 2);
  EXPECT_TRUE(log->out_of_space());
  EXPECT_EQ(log->high_watermark(), hw);

  // Space returns: the failed write is issued again whole, the batch becomes readable at the
  // offsets it was given, and appends continue right after it.
  io_->write_errno = 0;
  Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  EXPECT_FALSE(log->out_of_space());
  EXPECT_EQ(log->high_watermark(), r->last_offset + 1);
  SetBaseOffset(held, r->base_offset);
  want.push_back(held);
  auto more = AppendGood(*log, *io_, 5, 100);
  ASSERT_EQ(more.size(), 5u);
  EXPECT_EQ(RecordBatchView(more[0]).base_offset(), r->last_offset + 1);
  want.insert(want.end(), more.begin(), more.end());
  ExpectExactly(*log, want);

  ASSERT_TRUE(log->Close().ok());
  log.reset();
  log = OpenLog(NoRetention());
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  ExpectExactly(*log, want);
}

TEST_P(OutOfSpaceTest, LentBatchesWaitingForSpaceAreWrittenFromTheKeptBuffer) {
  auto log = OpenLog(NoRetention());
  log->TEST_SetZeroCopyMinBytes(1);  // every lent batch is written from the caller's memory
  auto want = AppendGood(*log, *io_, 3, 0);
  io_->write_errno = ENOSPC;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> lent;
  std::vector<std::shared_ptr<Pending>> pendings;
  for (int i = 0; i < 3; ++i) {
    auto buf = std::make_shared<std::vector<uint8_t>>(MakeBatch(2, 5000, 3000 + i, 40 + i));
    auto p = std::make_shared<Pending>();
    auto r = log->Append(*buf, buf, AckLevel::kWritten, [p](absl::Status s, const AppendResult& a) {
      p->called = true;
      p->status = s;
      p->result = a;
    });
    ASSERT_TRUE(r.ok()) << r.status();
    lent.push_back(buf);
    pendings.push_back(p);
  }
  Drive(*log);
  ASSERT_TRUE(log->out_of_space());
  for (auto& p : pendings) EXPECT_TRUE(p->called && absl::IsUnavailable(p->status));
  std::vector<std::weak_ptr<std::vector<uint8_t>>> watch;
  for (auto& b : lent) watch.push_back(b);
  std::vector<std::vector<uint8_t>> copies;
  for (auto& b : lent) copies.push_back(*b);
  lent.clear();
  for (auto& w : watch) EXPECT_FALSE(w.expired()) << "the log keeps lent bytes for the retry";

  io_->write_errno = 0;
  Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  EXPECT_FALSE(log->out_of_space());
  for (size_t i = 0; i < pendings.size(); ++i) {
    SetBaseOffset(copies[i], pendings[i]->result.base_offset);
    want.push_back(copies[i]);
  }
  for (auto& w : watch) EXPECT_TRUE(w.expired()) << "released once written";
  ExpectExactly(*log, want);
}

TEST_P(OutOfSpaceTest, SyncOutOfSpaceRewritesWhatFollowsTheLastGoodSyncThenResumes) {
  LogConfig c = NoRetention();
  c.flush_messages = 1;  // every append waits for fdatasync
  auto log = OpenLog(c);
  auto want = AppendGood(*log, *io_, 5, 0);
  const int64_t durable = log->durable_offset();
  ASSERT_EQ(durable, log->log_end_offset());

  io_->sync_errno = ENOSPC;
  auto held = MakeBatch(2, 300, 4000, 9);
  auto pending = std::make_shared<Pending>();
  auto r = AppendAsync(*log, held, pending, AckLevel::kDurable);
  ASSERT_TRUE(r.ok());
  Drive(*log);
  ASSERT_TRUE(pending->called);
  EXPECT_TRUE(absl::IsUnavailable(pending->status)) << "not acknowledged: " << pending->status;
  EXPECT_TRUE(log->out_of_space());
  EXPECT_EQ(log->durable_offset(), durable);
  EXPECT_TRUE(
      absl::IsUnavailable(log->Append(MakeBatch(1, 1, 1), AckLevel::kDurable, nullptr).status()));
  // Still failing: a retry makes nothing durable either.
  Advance(*log, PartitionLog::kSpaceRetryMinMs);
  EXPECT_EQ(log->durable_offset(), durable);
  EXPECT_TRUE(log->out_of_space());

  // Space returns: the bytes since the last good sync are written again and synced.
  io_->sync_errno = 0;
  const int syncs_before = io_->failed_syncs;
  for (int i = 0; i < 3 && log->out_of_space(); ++i) Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  EXPECT_EQ(io_->failed_syncs, syncs_before);
  EXPECT_EQ(log->durable_offset(), r->last_offset + 1);
  EXPECT_FALSE(log->out_of_space());
  SetBaseOffset(held, r->base_offset);
  want.push_back(held);
  auto more = AppendGood(*log, *io_, 3, 50);
  ASSERT_EQ(more.size(), 3u);
  want.insert(want.end(), more.begin(), more.end());
  ExpectExactly(*log, want);
}

TEST_P(OutOfSpaceTest, SyncOutOfSpaceFencesWhenTheUnsyncedBytesNoLongerReadBackIntact) {
  LogConfig c = NoRetention();
  c.flush_messages = 1;
  auto log = OpenLog(c);
  auto want = AppendGood(*log, *io_, 3, 0);
  const uint64_t good_end = log->size_bytes();
  io_->sync_errno = ENOSPC;
  auto pending = std::make_shared<Pending>();
  ASSERT_TRUE(AppendAsync(*log, MakeBatch(2, 300, 5000, 3), pending, AckLevel::kDurable).ok());
  Drive(*log);
  ASSERT_TRUE(log->out_of_space());
  // The kernel dropped the page it could not write back: the bytes read back differ.
  testing::PatchFile(dir_.Sub("t-0/" + Segment::FileStem(0) + ".log"), good_end + 70, 0xff);
  io_->sync_errno = 0;
  Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  ASSERT_TRUE(pending->called);
  EXPECT_FALSE(pending->status.ok()) << "never acknowledged";
  EXPECT_TRUE(log->fenced());
  EXPECT_FALSE(
      absl::IsUnavailable(log->Append(MakeBatch(1, 1, 1), AckLevel::kWritten, nullptr).status()));
}

TEST_P(OutOfSpaceTest, SyncIoErrorFencesTheLogAndARestartRecoversFromTheCheckpoint) {
  LogConfig c = NoRetention();
  c.flush_messages = 1;
  auto log = OpenLog(c);
  auto want = AppendGood(*log, *io_, 4, 0);
  const int64_t durable = log->durable_offset();

  io_->sync_errno = EIO;
  auto pending = std::make_shared<Pending>();
  ASSERT_TRUE(AppendAsync(*log, MakeBatch(2, 100, 6000, 5), pending, AckLevel::kDurable).ok());
  Drive(*log);
  ASSERT_TRUE(pending->called);
  EXPECT_FALSE(pending->status.ok()) << "nothing after the last good sync is acknowledged";
  EXPECT_FALSE(absl::IsUnavailable(pending->status)) << "not retriable on this log";
  EXPECT_TRUE(log->fenced());
  EXPECT_FALSE(log->out_of_space());
  EXPECT_EQ(log->durable_offset(), durable);

  // Read-only for good, even once syncs would work again: a later fdatasync could succeed
  // without the pages the failed one lost.
  io_->sync_errno = 0;
  Advance(*log, 10 * PartitionLog::kSpaceRetryMaxMs);
  EXPECT_TRUE(log->fenced());
  auto later = std::make_shared<Pending>();
  EXPECT_FALSE(AppendAsync(*log, MakeBatch(1, 10, 6001), later, AckLevel::kWritten).ok());
  EXPECT_EQ(log->durable_offset(), durable);
  auto closed = log->Close();
  EXPECT_FALSE(closed.ok());
  EXPECT_FALSE(absl::IsUnavailable(closed)) << closed;
  EXPECT_NE(::access(dir_.Sub("t-0/clean-shutdown").c_str(), F_OK), 0)
      << "a fenced log is not marked clean";
  log.reset();

  // A restart re-validates past the checkpoint: everything acknowledged is there, and the log
  // takes appends again.
  log = OpenLog(c);
  EXPECT_FALSE(log->recovery_report().clean_shutdown);
  EXPECT_FALSE(log->fenced());
  auto got = ReadAllBatches(*log);
  ASSERT_GE(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]);
  auto more = AppendGood(*log, *io_, 2, 70);
  EXPECT_EQ(more.size(), 2u);
}

TEST_P(OutOfSpaceTest, WriteIoErrorFencesTheLogAndReadersNeverSeeTheFailedWrite) {
  auto log = OpenLog(NoRetention());
  auto want = AppendGood(*log, *io_, 4, 0);
  const int64_t hw = log->high_watermark();
  io_->write_errno = EIO;
  auto pending = std::make_shared<Pending>();
  ASSERT_TRUE(AppendAsync(*log, MakeBatch(3, 400, 6500, 6), pending).ok());
  Drive(*log);
  ASSERT_TRUE(pending->called);
  EXPECT_FALSE(pending->status.ok());
  EXPECT_FALSE(absl::IsUnavailable(pending->status)) << pending->status;
  EXPECT_TRUE(log->fenced());
  EXPECT_EQ(log->high_watermark(), hw) << "half a batch in the file is not readable";
  ExpectExactly(*log, want);
  io_->write_errno = 0;
  EXPECT_FALSE(log->Append(MakeBatch(1, 10, 6501), AckLevel::kWritten, nullptr).ok());
}

TEST_P(OutOfSpaceTest, RollOutOfSpaceRefusesAppendsUntilTheNewSegmentCanBeCreated) {
  std::vector<std::vector<uint8_t>> want;
  auto log = OpenWithFullFirstSegment(&want);
  ASSERT_NE(log, nullptr);
  log->TEST_FailSegmentCreations(3, ENOSPC);
  auto batch = MakeBatch(2, 300, 7100, 99);
  auto refused = log->Append(batch, AckLevel::kWritten, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_TRUE(log->out_of_space());
  EXPECT_EQ(log->segment_count(), 1u);
  // Further appends do not try the roll again (refused at once) until a retry is due.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(absl::IsUnavailable(log->Append(batch, AckLevel::kWritten, nullptr).status()));
  }
  // Two more failed creations, then the retry makes the segment and appends resume.
  for (int i = 0; i < 3 && log->out_of_space(); ++i) Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  EXPECT_FALSE(log->out_of_space());
  auto r = testing::AppendSync(*log, *io_, batch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base_offset, RecordBatchView(want.back()).last_offset() + 1);
  SetBaseOffset(batch, r->base_offset);
  want.push_back(batch);
  EXPECT_EQ(log->segment_count(), 2u);
  ExpectExactly(*log, want);
}

// Another error creating the segment (EIO) is no lack of space: the append that needed the
// roll fails with it (a storage error to the protocols), the log does not wait for room, and
// the next append tries the roll again.
TEST_P(OutOfSpaceTest, RollFailingWithAnotherErrorFailsThatAppendOnlyAndIsNotOutOfSpace) {
  std::vector<std::vector<uint8_t>> want;
  auto log = OpenWithFullFirstSegment(&want);
  ASSERT_NE(log, nullptr);
  log->TEST_FailSegmentCreations(1, EIO);
  auto batch = MakeBatch(2, 300, 7100, 99);
  auto refused = log->Append(batch, AckLevel::kWritten, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_FALSE(absl::IsUnavailable(refused.status())) << refused.status();
  EXPECT_FALSE(log->out_of_space());
  EXPECT_FALSE(log->fenced());
  auto r = testing::AppendSync(*log, *io_, batch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base_offset, RecordBatchView(want.back()).last_offset() + 1);
  SetBaseOffset(batch, r->base_offset);
  want.push_back(batch);
  EXPECT_EQ(log->segment_count(), 2u);
  ExpectExactly(*log, want);
}

TEST_P(OutOfSpaceTest, CloseOnAFullDiskDropsOnlyWhatWasNeverWrittenAndTheNextStartRecovers) {
  auto log = OpenLog(NoRetention());
  auto want = AppendGood(*log, *io_, 6, 0);
  const int64_t end = log->log_end_offset();
  io_->write_errno = ENOSPC;
  auto pending = std::make_shared<Pending>();
  ASSERT_TRUE(AppendAsync(*log, MakeBatch(3, 500, 8000, 8), pending).ok());
  Drive(*log);
  ASSERT_TRUE(log->out_of_space());

  ASSERT_TRUE(pending->called);
  EXPECT_FALSE(pending->status.ok()) << "never acknowledged";
  absl::Status closed = log->Close();
  EXPECT_TRUE(absl::IsUnavailable(closed)) << closed;
  EXPECT_NE(::access(dir_.Sub("t-0/clean-shutdown").c_str(), F_OK), 0);
  EXPECT_EQ(log->log_end_offset(), end);
  log.reset();

  io_->write_errno = 0;
  log = OpenLog(NoRetention());
  EXPECT_FALSE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(log->recovery_report().bytes_truncated, 0u) << "the files were cut back at close";
  EXPECT_EQ(log->log_end_offset(), end);
  ExpectExactly(*log, want);
  auto more = AppendGood(*log, *io_, 2, 90);
  ASSERT_EQ(more.size(), 2u);
  EXPECT_EQ(RecordBatchView(more[0]).base_offset(), end);
}

TEST_P(OutOfSpaceTest, ARetriedBatchIsAcknowledgedOnlyOnceItsOriginalIsStored) {
  auto log = OpenLog(NoRetention());
  AppendGood(*log, *io_, 2, 0);
  EXPECT_FALSE(log->WaitFor(log->high_watermark() - 1, AckLevel::kWritten, nullptr))
      << "already written: nothing to wait for";
  io_->write_errno = ENOSPC;
  auto r = log->Append(MakeBatch(2, 100, 9000, 4), AckLevel::kWritten, nullptr);
  ASSERT_TRUE(r.ok());
  Drive(*log);
  ASSERT_TRUE(log->out_of_space());
  // While it is not stored, the retry is answered at once with the retriable error.
  bool called = false;
  absl::Status status;
  auto record = [&](absl::Status s, const AppendResult&) {
    called = true;
    status = s;
  };
  ASSERT_TRUE(log->WaitFor(r->last_offset, AckLevel::kWritten, record));
  EXPECT_TRUE(called);
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  io_->write_errno = 0;
  Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  EXPECT_EQ(log->high_watermark(), r->last_offset + 1);
  EXPECT_FALSE(log->WaitFor(r->last_offset, AckLevel::kWritten, record)) << "stored now";

  // Not yet written, with room: the retry's answer waits for the original's write.
  called = false;
  auto r2 = log->Append(MakeBatch(2, 100, 9001, 5), AckLevel::kWritten, nullptr);
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(log->WaitFor(r2->last_offset, AckLevel::kWritten, record));
  EXPECT_FALSE(called);
  Drive(*log);
  EXPECT_TRUE(called);
  EXPECT_TRUE(status.ok()) << status;
}

// TruncateTo on a log out of space changes nothing (UnavailableError), also when the disk
// turns out full while it writes the buffered appends: the waiters it had taken aside (those
// above the cut) get the retriable error as the others do. Once space returns the cut works. A
// fenced log refuses it with its error.
TEST_P(OutOfSpaceTest, TruncateToChangesNothingWhileOutOfSpaceAndIsRefusedWhenFenced) {
  auto log = OpenLog(NoRetention());
  auto want = AppendGood(*log, *io_, 10, 0);
  const int64_t cut = RecordBatchView(want[6]).base_offset();

  // The buffered appends' write fails for lack of space during the truncation.
  io_->write_errno = ENOSPC;
  auto below = std::make_shared<Pending>();
  auto above = std::make_shared<Pending>();
  ASSERT_TRUE(AppendAsync(*log, MakeBatch(1, 50, 2000, 1), below).ok());
  auto held = AppendAsync(*log, MakeBatch(1, 50, 2001, 2), above);
  ASSERT_TRUE(held.ok());
  const int64_t end = log->log_end_offset();
  absl::Status s = log->TruncateTo(held->base_offset);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_TRUE(log->out_of_space());
  EXPECT_EQ(log->log_end_offset(), end);
  ASSERT_TRUE(below->called && above->called);
  EXPECT_TRUE(absl::IsUnavailable(below->status)) << below->status;
  EXPECT_TRUE(absl::IsUnavailable(above->status)) << above->status;
  ExpectExactly(*log, want);
  // Refused at once while the disk stays full.
  s = log->TruncateTo(cut);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(log->log_end_offset(), end);

  io_->write_errno = 0;
  Advance(*log, PartitionLog::kSpaceRetryMaxMs);
  ASSERT_FALSE(log->out_of_space());
  ASSERT_TRUE(log->TruncateTo(cut).ok());
  want.resize(6);
  ExpectExactly(*log, want);
  EXPECT_EQ(log->log_end_offset(), cut);

  auto more = AppendGood(*log, *io_, 1, 50);
  want.insert(want.end(), more.begin(), more.end());
  io_->sync_errno = EIO;
  ASSERT_FALSE(log->Flush().ok());
  ASSERT_TRUE(log->fenced());
  EXPECT_EQ(log->TruncateTo(RecordBatchView(want[2]).base_offset()), log->health());
  ExpectExactly(*log, want);
}

}  // namespace
}  // namespace sluice::storage
