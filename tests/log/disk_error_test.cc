// Disk errors injected through the fault Env (tests/fs/fault_env.h): ENOSPC and EIO on any
// call, short writes, a disk that fills up and frees again. Whatever fails, the log answers
// with errors (a failed Append or a callback with a non-OK status), never crashes, never
// acknowledges as durable what a failed sync did not cover, and after the fault is gone (and a
// power cut on top) a reopen finds every batch acknowledged as durable, byte for byte, and
// nothing that was not appended.
#include <cerrno>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "log/file_util.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "tests/fs/fault_env.h"
#include "tests/log/durability_check.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::Batch;
using testing::CheckRecovered;
using testing::CrashModel;
using testing::FaultEnv;
using testing::FaultRule;
using testing::Model;
using testing::TempDir;

LogConfig SmallConfig() {
  LogConfig c;
  c.segment_bytes = 8 * 1024;
  c.index_interval_bytes = 256;
  c.max_index_bytes = 512;
  c.retention_ms = -1;
  return c;
}

// A log in <tmp>/data/t-0 written through a FaultEnv rooted at <tmp>/data, with a model of
// what was appended and acknowledged.
class DiskErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CreateDirIfMissing(tmp_.Sub("data")).ok());
    ASSERT_TRUE(CreateDirIfMissing(dir_).ok());
    env_ = std::make_unique<FaultEnv>(tmp_.Sub("data"));
    io_ = IoBackend::Create(IoBackendKind::kIoUring, "", env_.get());
  }
  void TearDown() override {
    log_.reset();
    io_.reset();
  }

  absl::Status Open(const LogConfig& config = SmallConfig()) {
    config_ = config;
    auto log = PartitionLog::Open(dir_, config, io_.get());
    if (!log.ok()) return log.status();
    log_ = std::move(*log);
    log_->TEST_SetClock([this] { return now_ms_; });
    return absl::OkStatus();
  }

  void Drive() {
    for (int i = 0; i < 3; ++i) {
      log_->SubmitBuffered();
      io_->Submit();
      io_->Poll(absl::ZeroDuration());
    }
  }

  // Appends one batch; returns whether Append accepted it. Its callback's status is recorded.
  bool AppendOne(AckLevel ack = AckLevel::kDurable, size_t value_size = 300) {
    ++now_ms_;
    auto bytes = testing::MakeBatch(1 + static_cast<int>(rng_() % 3), value_size, now_ms_,
                                    static_cast<uint64_t>(appended_));
    ++appended_;
    auto r = log_->Append(bytes, ack, [this, ack](absl::Status s, const AppendResult& res) {
      if (s.ok() && ack == AckLevel::kDurable) {
        model_.must_survive.insert(res.base_offset);
        ++durable_ok_;
      }
      if (!s.ok()) ++callback_errors_;
    });
    if (!r.ok()) {
      ++append_errors_;
      last_append_error_ = r.status();
      return false;
    }
    Batch b;
    b.base = r->base_offset;
    b.last = r->last_offset;
    b.timestamp = now_ms_;
    b.bytes = bytes;
    testing::StoreBigEndian64(b.bytes.data(), b.base);
    // An offset lost with an unwritten tail is given again: the new batch replaces the old.
    model_.appended.erase(model_.appended.lower_bound(b.base), model_.appended.end());
    model_.appended[b.base] = std::move(b);
    return true;
  }

  void AppendMany(int n, AckLevel ack = AckLevel::kDurable) {
    for (int i = 0; i < n; ++i) {
      AppendOne(ack);
      if (i % 3 == 2) Drive();
    }
    Drive();
  }

  // Drops the log without a clean close, cuts the power, and checks the POSIX view.
  void PowerCutAndCheck(const CrashModel& model = {}) {
    log_.reset();
    env_->ClearRules();
    env_->SetSpaceLimit(-1);
    env_->CutPowerNow();
    ASSERT_TRUE(env_->RestoreAfterPowerCut(model).ok());
    CheckPosixView();
  }

  void CheckPosixView() {
    auto io = IoBackend::Create(IoBackendKind::kIoUring);
    auto log = PartitionLog::Open(dir_, config_, io.get());
    ASSERT_TRUE(log.ok()) << log.status();
    auto held = CheckRecovered(**log, model_, (*log)->log_start_offset(), /*compacted=*/false);
    ASSERT_TRUE(held.ok()) << held.status();
    ASSERT_TRUE((*log)->Close().ok());
  }

  TempDir tmp_;
  const std::string dir_ = tmp_.Sub("data/t-0");
  std::unique_ptr<FaultEnv> env_;
  std::unique_ptr<IoBackend> io_;
  std::unique_ptr<PartitionLog> log_;
  LogConfig config_;
  Model model_;
  std::mt19937_64 rng_{7};
  int64_t now_ms_ = 1'700'000'000'000;
  int appended_ = 0;
  int durable_ok_ = 0;
  int callback_errors_ = 0;
  int append_errors_ = 0;
  absl::Status last_append_error_;
};

TEST_F(DiskErrorTest, ShortWritesAreCompletedAndEveryAppendIsDurable) {
  FaultRule rule;
  rule.ops = testing::kOpWrite;
  rule.short_write = true;
  rule.probability = 0.5;
  env_->AddRule(rule);
  ASSERT_TRUE(Open().ok());
  AppendMany(60);
  EXPECT_GT(env_->failures(), 10);
  EXPECT_EQ(append_errors_, 0);
  EXPECT_EQ(callback_errors_, 0);
  EXPECT_EQ(durable_ok_, 60);
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, FailedPreallocationOnlyTurnsPreallocationOff) {
  FaultRule rule;
  rule.ops = testing::kOpAllocate;
  rule.error = ENOSPC;
  env_->AddRule(rule);
  ASSERT_TRUE(Open().ok());
  AppendMany(40);
  EXPECT_EQ(env_->calls_of(testing::kOpAllocate), 1);  // tried once, then not again
  EXPECT_EQ(durable_ok_, 40);
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, EnospcOnSegmentWritesFailsAppendsButKeepsEveryDurableBatch) {
  ASSERT_TRUE(Open().ok());
  AppendMany(20);
  const int durable_before = durable_ok_;
  FaultRule rule;
  rule.ops = testing::kOpWrite;
  rule.path_contains = ".log";
  rule.error = ENOSPC;
  env_->AddRule(rule);
  AppendMany(20);
  EXPECT_EQ(durable_ok_, durable_before);  // nothing acknowledged that was not written
  EXPECT_GT(callback_errors_ + append_errors_, 0);
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, EioOnFdatasyncNeverAcknowledgesDurability) {
  ASSERT_TRUE(Open().ok());
  AppendMany(10);
  const int durable_before = durable_ok_;
  FaultRule rule;
  rule.ops = testing::kOpSync;
  rule.path_contains = ".log";
  env_->AddRule(rule);
  AppendMany(10);
  env_->ClearRules();
  AppendMany(10);  // a sync that works again must not acknowledge what a failed one covered
  EXPECT_EQ(durable_ok_, durable_before);
  EXPECT_GT(callback_errors_, 0);
  EXPECT_FALSE(log_->health().ok());
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, FailedIndexSyncsAndCheckpointWritesAreReportedAndRecovered) {
  FaultRule msync;
  msync.ops = testing::kOpSyncMapped;
  env_->AddRule(msync);
  FaultRule checkpoint;
  // The first checkpoint is created (renamed into place), later ones are synced in place.
  checkpoint.ops = testing::kOpRename | testing::kOpSync;
  checkpoint.path_contains = "recovery-point";
  env_->AddRule(checkpoint);
  ASSERT_TRUE(Open().ok());
  for (int round = 0; round < 10; ++round) {
    AppendMany(5);
    now_ms_ += 1500;
    log_->Tick(now_ms_);
    Drive();
  }
  EXPECT_GT(env_->failures(), 0);
  EXPECT_GT(durable_ok_, 0);
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, FailingSegmentCreationIsRetriableAndAppendsResumeOnceItSucceeds) {
  ASSERT_TRUE(Open().ok());
  FaultRule rule;
  rule.ops = testing::kOpOpen;
  rule.path_contains = ".log";
  rule.error = ENOSPC;
  env_->AddRule(rule);
  for (int i = 0; i < 60 && append_errors_ == 0; ++i) {
    AppendOne();
    Drive();
  }
  ASSERT_GT(append_errors_, 0);  // the roll could not create the next segment
  // Out of space is retriable (Unavailable), not the batch's fault (ResourceExhausted is
  // "too large" to the protocols).
  EXPECT_EQ(last_append_error_.code(), absl::StatusCode::kUnavailable) << last_append_error_;
  env_->ClearRules();
  bool resumed = false;
  for (int i = 0; i < 60 && !resumed; ++i) {
    now_ms_ += 1000;
    log_->Tick(now_ms_);
    Drive();
    resumed = AppendOne();
    Drive();
  }
  EXPECT_TRUE(resumed) << "appends did not resume once the segment could be created";
  PowerCutAndCheck();
}

TEST_F(DiskErrorTest, RandomFailuresOfEveryCallNeverCrashOrCorrupt) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    FaultRule rule;
    rule.ops = testing::kOpAll & ~(testing::kOpClose | testing::kOpUnmap);
    rule.probability = 0.03;
    rule.error = seed % 2 == 0 ? EIO : ENOSPC;
    env_->AddRule(rule);
    for (int attempt = 0; attempt < 5 && log_ == nullptr; ++attempt) (void)Open();
    if (log_ != nullptr) {
      for (int i = 0; i < 40; ++i) {
        AppendOne(i % 2 == 0 ? AckLevel::kDurable : AckLevel::kWritten);
        if (i % 4 == 3) {
          now_ms_ += 700;
          log_->Tick(now_ms_);
        }
        Drive();
      }
      if (seed % 3 == 0) (void)log_->Close();
    }
    CrashModel model;
    model.data = static_cast<CrashModel::Data>(seed % 4);
    model.seed = seed;
    PowerCutAndCheck(model);
    if (HasFatalFailure()) return;
    // The next round starts from what survived.
    ASSERT_TRUE(env_->ResetModel().ok());
    io_ = IoBackend::Create(IoBackendKind::kIoUring, "", env_.get());
  }
}

TEST_F(DiskErrorTest, AfterTheDiskFilledAndSpaceReturnedAReopenKeepsEverythingAndAppends) {
  ASSERT_TRUE(Open().ok());
  AppendMany(10);
  env_->SetSpaceLimit(env_->space_used() + 20 * 1024);
  for (int i = 0; i < 200 && append_errors_ + callback_errors_ == 0; ++i) {
    AppendOne(AckLevel::kDurable, 1000);
    Drive();
  }
  ASSERT_GT(append_errors_ + callback_errors_, 0) << "the disk never filled";
  const int durable_when_full = durable_ok_;
  env_->SetSpaceLimit(-1);  // space returns
  log_.reset();
  ASSERT_TRUE(Open().ok());
  {
    auto held = CheckRecovered(*log_, model_, log_->log_start_offset(), /*compacted=*/false);
    ASSERT_TRUE(held.ok()) << held.status();
  }
  AppendMany(10);
  EXPECT_EQ(durable_ok_, durable_when_full + 10);
  PowerCutAndCheck();
}

}  // namespace
}  // namespace sluice::storage
