// Spec of zero-copy appends: PartitionLog::Append with a keep-alive writes large batches from
// the caller's memory (CRC checked in place, a gather write with the rewritten header in its
// own piece) and holds the keep-alive until the write completed.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::MakeBatch;
using testing::ReadAllBatches;
using testing::TempDir;

constexpr size_t kZ = PartitionLog::kZeroCopyMinBytes;
constexpr size_t kA = PartitionLog::kWriteBehindAlignBytes;

// A batch of about `bytes` (4 records), large enough to be lent when bytes >= kZ.
std::vector<uint8_t> LargeBatch(size_t bytes, int64_t ts, uint64_t seed) {
  return MakeBatch(4, bytes / 4, ts, seed);
}

// The caller's buffer (as a produce request's would be), shared with the log.
std::shared_ptr<const std::vector<uint8_t>> Share(const std::vector<uint8_t>& bytes) {
  return std::make_shared<const std::vector<uint8_t>>(bytes);
}

// Forwards to a real backend, counting plain and gather writes and remembering the last
// gather list; with `defer_writes`, write completions are kept until Release().
class RecordingBackend : public IoBackend {
 public:
  explicit RecordingBackend(std::unique_ptr<IoBackend> inner) : inner_(std::move(inner)) {}
  IoBackendKind kind() const override { return inner_->kind(); }
  void Write(int fd, const uint8_t* d, uint32_t n, uint64_t p, IoCallback cb) override {
    ++writes;
    inner_->Write(fd, d, n, p, Wrap(std::move(cb)));
  }
  void WriteV(int fd, std::span<const iovec> iov, uint64_t p, IoCallback cb) override {
    ++gather_writes;
    last_iov.assign(iov.begin(), iov.end());
    inner_->WriteV(fd, iov, p, Wrap(std::move(cb)));
  }
  void Sync(int fd, IoCallback cb) override { inner_->Sync(fd, std::move(cb)); }
  void SyncDir(const std::string& path, IoCallback cb) override {
    inner_->SyncDir(path, std::move(cb));
  }
  void Unlink(const std::string& path, IoCallback cb) override {
    inner_->Unlink(path, std::move(cb));
  }
  void Submit() override { inner_->Submit(); }
  int Poll(absl::Duration t) override { return inner_->Poll(t); }
  size_t pending() const override { return inner_->pending(); }

  // Runs the i-th kept completion.
  void Release(size_t i) {
    auto cb = std::move(held[i].first);
    cb(held[i].second);
  }
  void Drain() {
    while (inner_->pending() > 0) inner_->Poll(absl::Milliseconds(10));
  }

  int writes = 0, gather_writes = 0;
  std::vector<iovec> last_iov;
  bool defer_writes = false;
  std::vector<std::pair<IoCallback, int>> held;

 private:
  IoCallback Wrap(IoCallback cb) {
    return [this, cb = std::move(cb)](int result) mutable {
      if (defer_writes) {
        held.emplace_back(std::move(cb), result);
      } else {
        cb(result);
      }
    };
  }
  std::unique_ptr<IoBackend> inner_;
};

enum class Backend { kPwrite, kIoUringInlineWrites, kIoUringRingWrites };

class ZeroCopyAppendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::unique_ptr<IoBackend> inner;
    switch (GetParam()) {
      case Backend::kPwrite:
        inner = IoBackend::CreatePwrite();
        break;
      case Backend::kIoUringInlineWrites:
        inner = IoBackend::Create(IoBackendKind::kIoUring);
        break;
      case Backend::kIoUringRingWrites:
        inner = IoBackend::TEST_CreateIoUringRingWrites();
        if (inner == nullptr) GTEST_SKIP() << "io_uring unavailable";
        break;
    }
    auto rec = std::make_unique<RecordingBackend>(std::move(inner));
    rec_ = rec.get();
    io_ = std::move(rec);
  }

  static LogConfig Config() {
    LogConfig c;
    c.max_batch_bytes = 4 << 20;
    c.retention_ms = -1;
    return c;
  }
  std::unique_ptr<PartitionLog> OpenLog(const LogConfig& config = Config()) {
    auto log = PartitionLog::Open(dir_.Sub("t-0"), config, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }
  // Submits (kAll unless told) and runs every completion.
  void SubmitAndComplete(PartitionLog& log, SubmitMode mode = SubmitMode::kAll) {
    log.SubmitBuffered(mode);
    io_->Submit();
    rec_->Drain();
  }
  absl::StatusOr<AppendResult> Lend(PartitionLog& log,
                                    const std::shared_ptr<const std::vector<uint8_t>>& shared,
                                    AckLevel ack = AckLevel::kWritten, AppendCallback done = {}) {
    return log.Append(*shared, shared, ack, std::move(done));
  }
  std::string SegmentPath(int64_t base) {
    return dir_.Sub(absl::StrCat("t-0/", Segment::FileStem(base), ".log"));
  }

  TempDir dir_;
  std::unique_ptr<IoBackend> io_;
  RecordingBackend* rec_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Backends, ZeroCopyAppendTest,
                         ::testing::Values(Backend::kPwrite, Backend::kIoUringInlineWrites,
                                           Backend::kIoUringRingWrites),
                         [](const auto& info) {
                           switch (info.param) {
                             case Backend::kPwrite:
                               return "Pwrite";
                             case Backend::kIoUringInlineWrites:
                               return "IoUring";
                             case Backend::kIoUringRingWrites:
                               return "IoUringRingWrites";
                           }
                           return "?";
                         });

TEST_P(ZeroCopyAppendTest, LargeBatchRoundTripsByteExactWithItsOffsetRewritten) {
  auto log = OpenLog();
  const auto small = MakeBatch(3, 100, 10, 1);
  const auto large = LargeBatch(kZ + 1000, 11, 2);
  ASSERT_GE(large.size(), kZ);
  auto shared = Share(large);
  ASSERT_TRUE(log->Append(small, AckLevel::kWritten, nullptr).ok());
  auto r = Lend(*log, shared);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->base_offset, 3);
  EXPECT_EQ(r->last_offset, 6);
  SubmitAndComplete(*log);
  EXPECT_EQ(log->high_watermark(), 7);
  EXPECT_EQ(rec_->writes, 0);
  EXPECT_EQ(rec_->gather_writes, 1);
  // The caller's bytes were written in place (one piece points into them) and not changed.
  bool from_caller = false;
  for (const iovec& piece : rec_->last_iov) {
    from_caller |= piece.iov_base >= static_cast<const void*>(shared->data()) &&
                   piece.iov_base < static_cast<const void*>(shared->data() + shared->size());
  }
  EXPECT_TRUE(from_caller);
  EXPECT_EQ(RecordBatchView(*shared).base_offset(), 0) << "the caller's bytes are not modified";

  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), 2u);
  auto want = large;
  SetBaseOffset(want, 3);
  EXPECT_EQ(read[0], small);
  EXPECT_EQ(read[1], want);
  EXPECT_TRUE(ValidateBatch(read[1], 4 << 20).ok());
  EXPECT_EQ(testing::SizeOf(SegmentPath(0)), small.size() + large.size());
}

TEST_P(ZeroCopyAppendTest, SmallBatchesAndPlainAppendsAreCopied) {
  auto log = OpenLog();
  const auto small = MakeBatch(2, 1000, 10, 1);
  auto shared_small = Share(small);
  std::weak_ptr<const std::vector<uint8_t>> weak = shared_small;
  ASSERT_TRUE(Lend(*log, shared_small).ok());
  shared_small.reset();
  EXPECT_TRUE(weak.expired()) << "a copied batch does not hold the caller's buffer";
  const auto large = LargeBatch(kZ + 1000, 11, 2);
  ASSERT_TRUE(log->Append(large, AckLevel::kWritten, nullptr).ok());  // no keep-alive: copied
  SubmitAndComplete(*log);
  EXPECT_EQ(rec_->gather_writes, 0);
  EXPECT_EQ(rec_->writes, 1);
  EXPECT_EQ(ReadAllBatches(*log).size(), 2u);
}

TEST_P(ZeroCopyAppendTest, KeepAliveIsReleasedWhenTheWriteCompletes) {
  auto log = OpenLog();
  auto shared = Share(LargeBatch(kZ, 11, 2));
  std::weak_ptr<const std::vector<uint8_t>> weak = shared;
  bool acked = false;
  ASSERT_TRUE(Lend(*log, shared, AckLevel::kWritten, [&](absl::Status s, const AppendResult&) {
                acked = s.ok();
                EXPECT_TRUE(weak.expired()) << "released before the ack runs";
              }).ok());
  shared.reset();
  EXPECT_FALSE(weak.expired()) << "the log holds the caller's buffer until it is written";
  log->SubmitBuffered();
  io_->Submit();
  EXPECT_FALSE(weak.expired());
  rec_->Drain();
  EXPECT_TRUE(acked);
  EXPECT_TRUE(weak.expired());
}

TEST_P(ZeroCopyAppendTest, ReadersNeverSeeALargeBatchBeforeItsWriteCompletes) {
  auto log = OpenLog();
  auto a = Share(LargeBatch(kZ, 1, 1));
  auto b = Share(LargeBatch(kZ, 2, 2));
  std::weak_ptr<const std::vector<uint8_t>> weak_a = a, weak_b = b;
  ASSERT_TRUE(Lend(*log, a).ok());
  log->SubmitBuffered();
  ASSERT_TRUE(Lend(*log, b).ok());
  log->SubmitBuffered();
  a.reset();
  b.reset();
  EXPECT_EQ(log->high_watermark(), 0);
  auto slice = log->Read(0, 1 << 20);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->size, 0u) << "nothing readable before a write completed";

  rec_->defer_writes = true;
  io_->Submit();
  rec_->Drain();
  ASSERT_EQ(rec_->held.size(), 2u);
  // The second write completes first: the high watermark waits for the first.
  rec_->Release(1);
  EXPECT_EQ(log->high_watermark(), 0);
  EXPECT_TRUE(absl::IsOutOfRange(log->Read(4, 1 << 20).status()));
  EXPECT_TRUE(weak_b.expired()) << "a completed write releases its buffer at once";
  EXPECT_FALSE(weak_a.expired());
  rec_->Release(0);
  EXPECT_EQ(log->high_watermark(), 8);
  EXPECT_TRUE(weak_a.expired());
  EXPECT_EQ(ReadAllBatches(*log).size(), 2u);
}

TEST_P(ZeroCopyAppendTest, HeldWriteBehindTailGoesOutWithTheLargeBatchInOneGatherWrite) {
  auto log = OpenLog();
  log->TEST_SetClock([] { return int64_t{5000}; });  // no time passes: only the size rule
  std::vector<std::vector<uint8_t>> want;
  int64_t next = 0;
  auto add_small = [&](size_t value, uint64_t seed) {
    auto batch = MakeBatch(2, value, 3, seed);
    auto r = log->Append(batch, AckLevel::kWritten, nullptr);
    ASSERT_TRUE(r.ok());
    SetBaseOffset(batch, next);
    next = r->last_offset + 1;
    want.push_back(std::move(batch));
  };
  auto add_large = [&](size_t bytes, uint64_t seed) {
    auto batch = LargeBatch(bytes, 4, seed);
    auto r = Lend(*log, Share(batch));
    ASSERT_TRUE(r.ok());
    SetBaseOffset(batch, next);
    next = r->last_offset + 1;
    want.push_back(std::move(batch));
  };
  // 1.3 A of small batches: one A is written, the tail held.
  for (int i = 0; i < 13; ++i) add_small(kA / 20, i);
  SubmitAndComplete(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(testing::SizeOf(SegmentPath(0)), kA);
  EXPECT_TRUE(log->has_held_writes());
  const int64_t hw_before = log->high_watermark();
  EXPECT_LT(hw_before, next);

  // A large lent batch: the held tail and the batch go out together, in one gather write.
  const int writes_before = rec_->writes + rec_->gather_writes;
  add_large(kZ + 5000, 100);
  add_small(500, 101);  // after it, in the same chunk
  SubmitAndComplete(*log, SubmitMode::kWriteBehind);
  EXPECT_EQ(rec_->writes + rec_->gather_writes, writes_before + 1);
  EXPECT_FALSE(log->has_held_writes());
  EXPECT_EQ(log->high_watermark(), next);
  uint64_t total = 0;
  for (const auto& b : want) total += b.size();
  EXPECT_EQ(testing::SizeOf(SegmentPath(0)), total);

  // Write-behind goes on as before after it; more lent batches mixed in.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 7; ++i) add_small(kA / 20, 200 + round * 10 + i);
    SubmitAndComplete(*log, SubmitMode::kWriteBehind);
    add_large(kZ + 777 * round, 300 + round);
    add_large(kZ + 999, 400 + round);  // two lent batches in one chunk
    SubmitAndComplete(*log, SubmitMode::kWriteBehind);
  }
  SubmitAndComplete(*log, SubmitMode::kWriteBehind);  // no appends since: writes the rest
  EXPECT_EQ(log->high_watermark(), next);
  EXPECT_FALSE(log->has_held_writes());
  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(read[i], want[i]) << "batch " << i;
}

TEST_P(ZeroCopyAppendTest, CrcErrorInALargeBatchIsRejectedWithNothingAppended) {
  auto log = OpenLog();
  ASSERT_TRUE(testing::AppendSync(*log, *io_, MakeBatch(1, 10, 1)).ok());
  const uint64_t size_before = testing::SizeOf(SegmentPath(0));
  auto bad = LargeBatch(kZ + 100, 2, 2);
  bad[bad.size() / 2] ^= 0x20;  // a bit flip in the records
  auto shared = Share(bad);
  std::weak_ptr<const std::vector<uint8_t>> weak = shared;
  bool called = false;
  auto r = Lend(*log, shared, AckLevel::kWritten,
                [&](absl::Status, const AppendResult&) { called = true; });
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("crc"), std::string::npos) << r.status();
  shared.reset();
  EXPECT_TRUE(weak.expired()) << "a rejected batch's buffer is not kept";
  EXPECT_EQ(log->log_end_offset(), 1);
  ASSERT_TRUE(log->Flush().ok());
  EXPECT_FALSE(called);
  EXPECT_EQ(testing::SizeOf(SegmentPath(0)), size_before);
  // The next batch takes the offset the rejected one would have had.
  auto good = Share(LargeBatch(kZ + 100, 3, 3));
  auto ok = Lend(*log, good);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->base_offset, 1);
  SubmitAndComplete(*log);
  EXPECT_EQ(ReadAllBatches(*log).size(), 2u);
}

TEST_P(ZeroCopyAppendTest, LogAppendTimeBatchesAreCopiedAndStamped) {
  LogConfig c = Config();
  c.timestamp_type = TimestampType::kLogAppendTime;
  auto log = OpenLog(c);
  log->TEST_SetClock([] { return int64_t{777000}; });
  auto shared = Share(LargeBatch(kZ + 100, 5, 1));
  std::weak_ptr<const std::vector<uint8_t>> weak = shared;
  auto r = Lend(*log, shared);
  ASSERT_TRUE(r.ok());
  shared.reset();
  EXPECT_TRUE(weak.expired()) << "copied: the timestamp and CRC are rewritten";
  SubmitAndComplete(*log);
  auto read = ReadAllBatches(*log);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(RecordBatchView(read[0]).max_timestamp(), 777000);
  EXPECT_TRUE(ValidateBatch(read[0], 4 << 20).ok());
}

TEST_P(ZeroCopyAppendTest, DurableAcksAndSegmentRolls) {
  LogConfig c = Config();
  c.segment_bytes = 1 << 20;  // about three lent batches per segment
  c.index_interval_bytes = 4096;
  c.flush_messages = 1;
  auto log = OpenLog(c);
  std::vector<std::vector<uint8_t>> want;
  int acked = 0;
  for (int i = 0; i < 10; ++i) {
    auto batch = i % 3 == 2 ? MakeBatch(3, 200, 7, i) : LargeBatch(kZ + 1000 * i, 7, i);
    auto r = Lend(*log, Share(batch), AckLevel::kDurable,
                  [&](absl::Status s, const AppendResult& result) {
                    EXPECT_TRUE(s.ok());
                    ++acked;
                    EXPECT_GT(log->durable_offset(), result.last_offset);
                  });
    ASSERT_TRUE(r.ok()) << r.status();
    SetBaseOffset(batch, r->base_offset);
    want.push_back(std::move(batch));
  }
  log->SubmitBuffered();
  io_->Submit();
  for (int i = 0; i < 1000 && acked < 10; ++i) io_->Poll(absl::Milliseconds(10));
  EXPECT_EQ(acked, 10);
  EXPECT_GT(log->segment_count(), 2u);
  EXPECT_EQ(ReadAllBatches(*log), want);
  // Every offset finds its batch (the index covers lent batches like copied ones).
  for (const auto& b : want) {
    RecordBatchView v(b);
    for (int64_t o = v.base_offset(); o <= v.last_offset(); ++o) {
      auto slice = log->Read(o, 1);
      ASSERT_TRUE(slice.ok());
      EXPECT_EQ(slice->first_offset, v.base_offset());
    }
  }
  ASSERT_TRUE(log->Close().ok());
  log.reset();
  log = OpenLog(c);
  EXPECT_TRUE(log->recovery_report().clean_shutdown);
  EXPECT_EQ(ReadAllBatches(*log), want);
}

TEST_P(ZeroCopyAppendTest, CrashKeepsWrittenLargeBatchesAndCutsATornOne) {
  std::vector<std::vector<uint8_t>> want;
  {
    auto log = OpenLog();
    for (int i = 0; i < 3; ++i) {
      auto batch = LargeBatch(kZ + 300 * i, 9, i);
      auto r = Lend(*log, Share(batch));
      ASSERT_TRUE(r.ok());
      SetBaseOffset(batch, r->base_offset);
      want.push_back(std::move(batch));
      SubmitAndComplete(*log);
    }
    // Appended but never submitted: lost in the crash, and its buffer released.
    auto unsent = Share(LargeBatch(kZ, 9, 99));
    std::weak_ptr<const std::vector<uint8_t>> weak = unsent;
    ASSERT_TRUE(Lend(*log, unsent).ok());
    unsent.reset();
    EXPECT_FALSE(weak.expired());
    log.reset();  // dropped without Close(): a crash
    EXPECT_TRUE(weak.expired());
  }
  const std::string path = SegmentPath(0);
  uint64_t written = 0;
  for (const auto& b : want) written += b.size();
  ASSERT_EQ(testing::SizeOf(path), written);
  {
    auto log = OpenLog();
    EXPECT_FALSE(log->recovery_report().clean_shutdown);
    EXPECT_EQ(ReadAllBatches(*log), want);
    log.reset();
  }
  // The last batch torn in the middle of the lent part (a crash during its write).
  testing::TruncateFile(path, written - want.back().size() / 2);
  auto log = OpenLog();
  EXPECT_EQ(log->recovery_report().bytes_truncated, want.back().size() - want.back().size() / 2);
  want.pop_back();
  EXPECT_EQ(ReadAllBatches(*log), want);
  EXPECT_EQ(log->log_end_offset(), RecordBatchView(want.back()).last_offset() + 1);
  ASSERT_TRUE(Lend(*log, Share(LargeBatch(kZ, 9, 5))).ok());
  SubmitAndComplete(*log);
  EXPECT_EQ(ReadAllBatches(*log).size(), want.size() + 1);
}

// The backends' gather write on its own: pieces in order, empty pieces skipped, and more
// pieces than one pwritev/IORING_OP_WRITEV takes (IOV_MAX) continued where it stopped.
TEST_P(ZeroCopyAppendTest, GatherWriteWritesEveryPieceInOrder) {
  const std::string path = dir_.Sub("gather");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::vector<std::vector<uint8_t>> pieces;
  std::vector<uint8_t> want(100, 0xEE);  // the write starts at position 100
  for (int i = 0; i < 1500; ++i) {
    pieces.emplace_back(static_cast<size_t>(i % 7 == 3 ? 0 : 1 + (i * 13) % 300),
                        static_cast<uint8_t>(i));
    want.insert(want.end(), pieces.back().begin(), pieces.back().end());
  }
  std::vector<iovec> iov;
  for (auto& p : pieces) iov.push_back(iovec{p.data(), p.size()});
  ASSERT_EQ(::pwrite(fd, want.data(), 100, 0), 100);
  int result = -1;
  io_->WriteV(fd, iov, 100, [&](int r) { result = r; });
  iov.clear();  // the backend keeps its own copy of the list
  io_->Submit();
  rec_->Drain();
  EXPECT_EQ(result, static_cast<int>(want.size() - 100));
  std::vector<uint8_t> got(want.size() + 10);
  EXPECT_EQ(::pread(fd, got.data(), got.size(), 0), static_cast<ssize_t>(want.size()));
  got.resize(want.size());
  EXPECT_EQ(got, want);
  ::close(fd);
}

}  // namespace
}  // namespace sluice::storage
