// Crash consistency of the partition log under simulated power cuts (tests/fs/fault_env.h).
//
// A seeded random workload drives a PartitionLog through a FaultEnv: appends of varied
// batches acknowledged kDurable or kWritten (some lent, zero-copy), I/O rounds, ticks of a
// fake clock (background flushes, recovery checkpoints, retention, compaction), log-start
// moves, flushes, clean close and reopen. Each "life" of the log ends with a power cut after
// a number of Env calls that sweeps the whole life (the cut may fall inside recovery, a roll,
// a checkpoint write, a cleaner swap...). The tree is then rewritten to what a machine finds
// after the power loss (each life uses another CrashModel: unsynced data dropped, a torn
// prefix kept, pages mixed, garbage tails; name changes reverted or a prefix kept), and:
//   1. a copy of it is opened with the default Env (the POSIX view). Opening must succeed;
//      every batch whose kDurable callback reported OK, and every batch an earlier recovery
//      showed, is readable at its offsets byte for byte (unless below the log start the log
//      had reached); what is readable is a gap-free run of batches, each byte-identical to a
//      batch appended at that offset; Read finds every batch from its first and last offset
//      and OffsetForTime from its timestamp (the indexes agree with the data). After a clean
//      close the copy is opened again (indexes then trusted, nothing re-read): the same holds.
//      Compacted logs are checked per record instead (offsets kept, latest value of every
//      key at or after the latest one acknowledged as durable).
//   2. the original is reopened through the FaultEnv (its recovery can be cut too) and the
//      workload goes on.
//
// SLUICE_POWER_CUTS sets the number of power cuts per scenario (default: a short run for
// ctest); SLUICE_POWER_CUT_SEED the seed. A long run:
//   SLUICE_POWER_CUTS=100 build/test/tests/log/power_cut_test --gtest_filter='*Workload*'
#include <stdlib.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/cleaner.h"
#include "log/file_util.h"
#include "log/io_backend.h"
#include "log/log_manager.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "tests/fs/fault_env.h"
#include "tests/log/durability_check.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::AppendSync;
using testing::Batch;
using testing::CheckRecovered;
using testing::CrashModel;
using testing::EnvOp;
using testing::FaultEnv;
using testing::FaultRule;
using testing::MakeBatch;
using testing::Model;
using testing::ReadAllBatches;
using testing::StoreBigEndian64;
using testing::TempDir;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? strtoll(v, nullptr, 10) : fallback;
}

enum class Scenario { kDurableEveryAppend, kMixedAcks, kRetention, kCompaction, kTruncation };

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kDurableEveryAppend:
      return "DurableEveryAppend";
    case Scenario::kMixedAcks:
      return "MixedAcks";
    case Scenario::kRetention:
      return "Retention";
    case Scenario::kCompaction:
      return "Compaction";
    case Scenario::kTruncation:
      return "Truncation";
  }
  return "?";
}

LogConfig ConfigFor(Scenario s) {
  LogConfig c;
  c.segment_bytes = 6 * 1024;
  c.index_interval_bytes = 200;
  // 24 offset entries, 16 time entries: segments also roll because an index is full.
  c.max_index_bytes = 256;
  c.retention_ms = -1;
  c.recovery_checkpoint_ms = 1000;
  switch (s) {
    case Scenario::kDurableEveryAppend:
      c.flush_messages = 1;
      break;
    case Scenario::kMixedAcks:
      break;
    case Scenario::kRetention:
      c.retention_bytes = 16 * 1024;
      break;
    case Scenario::kCompaction:
      c.cleanup_policy = kCleanupCompact;
      c.min_cleanable_dirty_ratio = 0.01;
      c.cleaner_bytes_per_tick = 8 * 1024;
      c.max_index_bytes = 1024;
      break;
    case Scenario::kTruncation:  // mixed acks, retention by size, and cuts of the tail
      c.retention_bytes = 24 * 1024;
      break;
  }
  return c;
}

// The 4 data models x (names reverted | a prefix of name changes kept).
CrashModel ModelForLife(int life, uint64_t seed) {
  CrashModel m;
  m.data = static_cast<CrashModel::Data>(life % 4);
  m.keep_name_change_prefix = (life / 4) % 2 == 1;
  m.seed = seed;
  return m;
}

std::string ModelName(const CrashModel& m) {
  static const char* kData[] = {"drop-unsynced", "keep-random-prefix", "random-pages",
                                "garbage-tail"};
  return absl::StrCat(kData[static_cast<int>(m.data)],
                      m.keep_name_change_prefix ? "+name-prefix" : "+names-reverted");
}

// One scenario: lives of a log in one directory, each ended by a power cut.
class PowerCutRun {
 public:
  PowerCutRun(Scenario scenario, uint64_t seed)
      : scenario_(scenario),
        config_(ConfigFor(scenario)),
        seed_(seed),
        rng_(seed),
        log_dir_(tmp_.Sub("data/t-0")),
        copy_dir_(tmp_.Sub("copy")) {
    // Made before the FaultEnv: the directories are durable from the start.
    EXPECT_TRUE(CreateDirIfMissing(tmp_.Sub("data")).ok());
    EXPECT_TRUE(CreateDirIfMissing(log_dir_).ok());
    env_ = std::make_unique<FaultEnv>(tmp_.Sub("data"), Env::Default(), seed);
  }

  // Runs `cuts` lives; returns false (after reporting) at the first inconsistency.
  bool Run(int cuts) {
    for (int life = 0; life < cuts; ++life) {
      if (!Life(life)) return false;
    }
    return true;
  }

  int durable_acks() const { return durable_acks_; }
  // How many cuts fell at each kind of call.
  const std::map<std::string, int>& cut_calls() const { return cut_calls_; }
  int cut_in_recovery() const { return cut_in_recovery_; }

 private:
  enum class StepKind { kAppend, kIo, kTick, kFlush, kAdvanceStart, kReopen, kRead, kTruncate };

  std::string Where(int life) const {
    return absl::StrFormat(
        "%s seed %d life %d (cut after %d calls of the %s, %s)", ScenarioName(scenario_), seed_,
        life, cut_at_, cut_in_recovery_now_ ? "recovery" : "workload", ModelName(model_of_life_));
  }

  int64_t Now() const { return now_ms_; }

  // Opens (recovers) the log through the FaultEnv; an error is only acceptable when the power
  // was cut meanwhile.
  absl::Status OpenThroughFaultEnv() {
    if (io_ == nullptr) io_ = IoBackend::Create(IoBackendKind::kIoUring, "", env_.get());
    auto opened = PartitionLog::Open(log_dir_, config_, io_.get());
    if (!opened.ok()) return opened.status();
    log_ = std::move(*opened);
    log_->TEST_SetClock([this] { return Now(); });
    log_->TEST_SetZeroCopyMinBytes(512);
    max_start_ = std::max(max_start_, log_->log_start_offset());
    return absl::OkStatus();
  }

  void Drive() {
    for (int i = 0; i < 3 && log_ != nullptr; ++i) {
      log_->SubmitBuffered(SubmitMode::kWriteBehind);
      io_->Submit();
      io_->Poll(absl::ZeroDuration());
    }
  }

  void Append() {
    now_ms_ += 1;  // strictly increasing timestamps from batch to batch
    const int records = 1 + static_cast<int>(rng_() % 4);
    const size_t value_size = rng_() % 8 == 0 ? 1500 : rng_() % 300;
    RecordBatchBuilder builder(0, now_ms_);
    for (int i = 0; i < records; ++i) {
      std::string key = scenario_ == Scenario::kCompaction
                            ? absl::StrCat("key", rng_() % 12)
                            : absl::StrCat("k", appended_count_, "-", i);
      std::string value(value_size, static_cast<char>('a' + rng_() % 26));
      value += absl::StrCat("#", appended_count_, "/", i);
      builder.Add(key, value, {}, now_ms_);
    }
    auto bytes = std::make_shared<std::vector<uint8_t>>(builder.Build());
    ++appended_count_;
    const AckLevel ack = scenario_ == Scenario::kDurableEveryAppend || rng_() % 2 == 0
                             ? AckLevel::kDurable
                             : AckLevel::kWritten;
    auto done = [this, ack](absl::Status s, const AppendResult& r) {
      if (s.ok() && ack == AckLevel::kDurable) {
        model_.must_survive.insert(r.base_offset);
        ++durable_acks_;
      }
    };
    absl::StatusOr<AppendResult> r = rng_() % 4 == 0
                                         ? log_->Append(*bytes, bytes, ack, std::move(done))
                                         : log_->Append(*bytes, ack, std::move(done));
    if (!r.ok()) return;
    Batch b;
    b.base = r->base_offset;
    b.last = r->last_offset;
    b.timestamp = now_ms_;
    b.bytes = *bytes;
    StoreBigEndian64(b.bytes.data(), b.base);
    // An offset lost in an earlier power cut is given again: the new batch replaces the old.
    model_.appended.erase(model_.appended.lower_bound(b.base), model_.appended.end());
    model_.must_survive.erase(model_.must_survive.lower_bound(b.base), model_.must_survive.end());
    model_.appended[b.base] = std::move(b);
  }

  // A follower's cut of its tail: at one of the last few batches (or the log start).
  void Truncate(int life) {
    const int64_t start = log_->log_start_offset();
    const int64_t end = log_->log_end_offset();
    std::vector<int64_t> points;
    for (auto it = model_.appended.lower_bound(start);
         it != model_.appended.end() && it->first <= end; ++it) {
      points.push_back(it->first);
    }
    if (points.empty()) return;
    const size_t back = std::min<size_t>(points.size(), 1 + rng_() % 6);
    const int64_t cut = points[points.size() - back];
    const bool powered = !env_->power_cut();
    absl::Status s = log_->TruncateTo(cut);
    if (s.ok()) {
      // Nothing from the cut on may come back: the model forgets it.
      model_.appended.erase(model_.appended.lower_bound(cut), model_.appended.end());
      model_.must_survive.erase(model_.must_survive.lower_bound(cut), model_.must_survive.end());
    } else if (powered && env_->power_cut()) {
      // Cut short by the power: what was durable below the cut must survive; above it, the
      // removed batches may be back or not.
      model_.must_survive.erase(model_.must_survive.lower_bound(cut), model_.must_survive.end());
    } else if (powered && !absl::IsUnavailable(s)) {
      ADD_FAILURE() << Where(life) << ": TruncateTo(" << cut << "): " << s;
    }
  }

  StepKind PickStep() {
    const int r = static_cast<int>(rng_() % 100);
    if (r < 50) return StepKind::kAppend;
    if (r < 70) return StepKind::kIo;
    if (r < 86) return StepKind::kTick;
    if (r < 90) return StepKind::kFlush;
    if (r < 94) {
      if (scenario_ == Scenario::kCompaction) return StepKind::kTick;
      if (scenario_ == Scenario::kTruncation && r < 93) return StepKind::kTruncate;
      return StepKind::kAdvanceStart;
    }
    if (r < 97) return StepKind::kReopen;
    return StepKind::kRead;
  }

  // One workload step; false once the log is gone (cut during a reopen).
  bool Step(StepKind kind, int life) {
    switch (kind) {
      case StepKind::kAppend:
        Append();
        break;
      case StepKind::kIo:
        Drive();
        break;
      case StepKind::kTick:
        now_ms_ += static_cast<int64_t>(rng_() % 700);
        log_->Tick(now_ms_);
        Drive();
        break;
      case StepKind::kFlush:
        (void)log_->Flush();
        break;
      case StepKind::kAdvanceStart: {
        const int64_t lo = log_->log_start_offset();
        const int64_t hi = log_->high_watermark();
        if (hi > lo) {
          const int64_t target = lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo));
          max_start_ = std::max(max_start_, target);
          (void)log_->AdvanceLogStart(target);
        }
        break;
      }
      case StepKind::kTruncate:
        Truncate(life);
        break;
      case StepKind::kReopen:
        (void)log_->Close();
        log_.reset();
        if (absl::Status s = OpenThroughFaultEnv(); !s.ok()) {
          if (!env_->power_cut()) ADD_FAILURE() << Where(life) << ": reopen: " << s;
          return false;
        }
        break;
      case StepKind::kRead: {
        const int64_t lo = log_->log_start_offset();
        const int64_t hi = log_->high_watermark();
        if (hi > lo) {
          const int64_t offset = lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo));
          // A live read sees exactly what was appended there (unless the power went meanwhile).
          auto slice = log_->Read(offset, 1);
          if (slice.ok() && slice->size > 0) {
            auto bytes = PartitionLog::ReadBytes(*slice);
            auto it = model_.appended.find(slice->first_offset);
            if (!env_->power_cut()) {
              EXPECT_TRUE(bytes.ok() && it != model_.appended.end() &&
                          (scenario_ == Scenario::kCompaction || *bytes == it->second.bytes))
                  << Where(life) << ": live read at " << offset << " found batch "
                  << slice->first_offset << ": " << bytes.status();
            }
          }
        }
        break;
      }
    }
    max_start_ = std::max(max_start_, log_->log_start_offset());
    return true;
  }

  bool Life(int life) {
    const int kSteps = 80;
    model_of_life_ = ModelForLife(life, seed_ * 1000003 + static_cast<uint64_t>(life));
    // Where the power goes: life 0 runs uncut and measures how many Env calls a recovery and a
    // workload make; in later lives about one cut in four falls inside the recovery, the others
    // inside the workload, at points that sweep those ranges evenly (low-discrepancy strides).
    const double sweep = std::fmod(life * 0.6180339887498949, 1.0);
    const bool cut_recovery = life > 0 && std::fmod(life * 0.7548776662466927, 1.0) < 0.25;
    cut_at_ = -1;
    cut_in_recovery_now_ = cut_recovery;
    if (cut_recovery) {
      cut_at_ = static_cast<int64_t>(sweep * static_cast<double>(recovery_calls_));
      env_->CutPowerAfter(cut_at_);
    }
    StepKind last_step = StepKind::kIo;
    const int64_t before_open = env_->calls();
    absl::Status opened = OpenThroughFaultEnv();
    if (!opened.ok() && !env_->power_cut()) {
      ADD_FAILURE() << Where(life) << ": opening through the fault env: " << opened;
      return false;
    }
    if (!opened.ok() || env_->power_cut()) {
      ++cut_in_recovery_;
    } else {
      recovery_calls_ = std::max<int64_t>(env_->calls() - before_open, 10);
      env_->CutPowerAfter(-1);  // a cut meant for the recovery that missed it
      cut_in_recovery_now_ = false;
      if (need_check_after_open_) {
        // The live recovery through the FaultEnv must agree with the POSIX view's.
        auto checked = CheckRecovered(*log_, model_, max_start_, compacted());
        if (!checked.ok()) {
          ADD_FAILURE() << Where(life) << ": recovery through the fault env: " << checked.status();
          return false;
        }
      }
      if (life > 0) {
        cut_at_ = static_cast<int64_t>(sweep * static_cast<double>(workload_calls_));
        env_->CutPowerAfter(cut_at_);
      }
    }
    need_check_after_open_ = false;
    const int64_t before_workload = env_->calls();
    for (int step = 0; step < kSteps && log_ != nullptr && !env_->power_cut(); ++step) {
      last_step = PickStep();
      if (!Step(last_step, life)) break;
    }
    if (life == 0) workload_calls_ = std::max<int64_t>(env_->calls() - before_workload, 50);
    // Which kind of call the power went at (for the run's summary).
    const std::string cut_call = env_->power_cut_call();
    ++cut_calls_[cut_call.empty() ? "after the workload"
                                  : cut_call.substr(0, cut_call.find(' ')) +
                                        (cut_in_recovery_now_ ? " (recovery)" : "")];
    env_->CutPowerNow();  // if the sweep's cut did not fall inside this life

    // A cut during retention may leave the segment being deleted gone: the log start may
    // then reach the next segment.
    int64_t allowed_start = max_start_;
    if (log_ != nullptr) {
      allowed_start = std::max(allowed_start, log_->log_start_offset());
      std::vector<int64_t> bases = log_->segment_base_offsets();
      if ((last_step == StepKind::kTick || last_step == StepKind::kAdvanceStart) &&
          bases.size() > 1) {
        allowed_start = std::max(allowed_start, bases[1]);
      }
    }
    log_.reset();
    io_.reset();
    absl::Status restored = env_->RestoreAfterPowerCut(model_of_life_);
    if (!restored.ok()) {
      ADD_FAILURE() << Where(life) << ": " << restored;
      return false;
    }
    if (!CheckPosixView(life, allowed_start)) return false;
    need_check_after_open_ = true;
    return true;
  }

  bool compacted() const { return scenario_ == Scenario::kCompaction; }

  // Opens a copy of the tree with the default Env, checks it, closes it cleanly and checks it
  // again; the model becomes what it holds.
  bool CheckPosixView(int life, int64_t allowed_start) {
    std::error_code ec;
    std::filesystem::remove_all(copy_dir_, ec);
    std::filesystem::copy(log_dir_, copy_dir_, std::filesystem::copy_options::recursive, ec);
    if (ec) {
      ADD_FAILURE() << Where(life) << ": copy: " << ec.message();
      return false;
    }
    std::vector<Batch> held;
    for (int pass = 0; pass < 2; ++pass) {
      auto io = IoBackend::Create(pass == 0 ? IoBackendKind::kIoUring : IoBackendKind::kPwrite);
      auto log = PartitionLog::Open(copy_dir_, config_, io.get());
      if (!log.ok()) {
        ADD_FAILURE() << Where(life) << ": reopening after the power cut"
                      << (pass == 1 ? " and a clean close" : "") << ": " << log.status();
        return false;
      }
      if (pass == 1 && !(*log)->recovery_report().clean_shutdown) {
        ADD_FAILURE() << Where(life) << ": clean close not recognised";
        return false;
      }
      auto checked = CheckRecovered(**log, model_, allowed_start, compacted());
      if (!checked.ok()) {
        ADD_FAILURE() << Where(life) << (pass == 1 ? " (after a clean close)" : "") << ": "
                      << checked.status();
        return false;
      }
      held = std::move(*checked);
      if (pass == 0) {
        max_start_ = (*log)->log_start_offset();
        if (absl::Status s = (*log)->Close(); !s.ok()) {
          ADD_FAILURE() << Where(life) << ": clean close: " << s;
          return false;
        }
      }
    }
    // What survived a power cut is on disk: it must survive the next ones too.
    model_.appended.clear();
    model_.must_survive.clear();
    for (Batch& b : held) {
      model_.must_survive.insert(b.base);
      model_.appended[b.base] = std::move(b);
    }
    std::filesystem::remove_all(copy_dir_, ec);
    return true;
  }

  const Scenario scenario_;
  const LogConfig config_;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  TempDir tmp_;
  std::string log_dir_;
  std::string copy_dir_;
  std::unique_ptr<FaultEnv> env_;
  std::unique_ptr<IoBackend> io_;
  std::unique_ptr<PartitionLog> log_;
  Model model_;
  int64_t now_ms_ = 1'700'000'000'000;
  int64_t max_start_ = 0;
  int64_t appended_count_ = 0;
  int64_t recovery_calls_ = 50;   // Env calls of the last uncut recovery
  int64_t workload_calls_ = 200;  // Env calls of life 0's workload
  int64_t cut_at_ = -1;
  CrashModel model_of_life_;
  bool need_check_after_open_ = false;
  int durable_acks_ = 0;
  int cut_in_recovery_ = 0;
  bool cut_in_recovery_now_ = false;  // this life's cut is meant for the recovery
  std::map<std::string, int> cut_calls_;
};

class PowerCutWorkloadTest : public ::testing::TestWithParam<Scenario> {};

TEST_P(PowerCutWorkloadTest, EveryDurableBatchSurvivesAndNothingElseAppears) {
  const int cuts = static_cast<int>(EnvInt("SLUICE_POWER_CUTS", 24));
  const uint64_t seed = static_cast<uint64_t>(EnvInt("SLUICE_POWER_CUT_SEED", 1));
  PowerCutRun run(GetParam(), seed);
  ASSERT_TRUE(run.Run(cuts));
  RecordProperty("power_cuts", cuts);
  std::string where;
  for (const auto& [call, n] : run.cut_calls()) absl::StrAppend(&where, " ", call, ":", n);
  printf("%s: %d power cuts (%d inside recovery), %d durable acks checked; cut at%s\n",
         ScenarioName(GetParam()), cuts, run.cut_in_recovery(), run.durable_acks(), where.c_str());
  EXPECT_GT(run.durable_acks(), 0);
}

INSTANTIATE_TEST_SUITE_P(Scenarios, PowerCutWorkloadTest,
                         ::testing::Values(Scenario::kDurableEveryAppend, Scenario::kMixedAcks,
                                           Scenario::kRetention, Scenario::kCompaction,
                                           Scenario::kTruncation),
                         [](const ::testing::TestParamInfo<Scenario>& info) {
                           return std::string(ScenarioName(info.param));
                         });

// Runs that once failed (seed 20261206, found by 250 cuts per scenario), kept as regressions:
//   MixedAcks life 127: a segment cut by recovery without an fdatasync of the cut; a later
//     checkpoint made it trusted, and a power cut brought the torn tail back below the
//     recovery point (the log stayed offline, "corrupt batch below the recovery point").
//   DurableEveryAppend life 172: indexes rebuilt by recovery and not synced; a power cut left
//     the stale ones, trusted at the next open (OffsetForTime missed a batch).
TEST(PowerCutRegressionTest, RecoveryMakesItsCutsAndRebuiltIndexesDurable) {
  for (const auto& [scenario, cuts] :
       {std::pair{Scenario::kMixedAcks, 130}, std::pair{Scenario::kDurableEveryAppend, 175}}) {
    SCOPED_TRACE(ScenarioName(scenario));
    PowerCutRun run(scenario, 20261206);
    EXPECT_TRUE(run.Run(cuts));
  }
}

// One log in a FaultEnv with a fake clock, for the regression tests below: opened, and
// opened again after a power cut that loses everything not fdatasync'ed.
class CutLog {
 public:
  explicit CutLog(LogConfig config) : env_(tmp_.path()), config(config) {
    io = IoBackend::CreatePwrite(&env_);
  }
  // Opens (or reopens) the log; null, with a test failure, if that fails.
  PartitionLog* Open() {
    log.reset();
    auto opened = PartitionLog::Open(dir(), config, io.get());
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (!opened.ok()) return nullptr;
    (*opened)->TEST_SetClock([this] { return now; });
    log = std::move(*opened);
    return log.get();
  }
  PartitionLog* CutPowerAndReopen(const CrashModel& model = {}) {
    env_.CutPowerNow();
    log.reset();
    EXPECT_TRUE(env_.RestoreAfterPowerCut(model).ok());
    return Open();
  }
  std::string dir() const { return tmp_.Sub("log"); }
  FaultEnv& env() { return env_; }

 private:
  TempDir tmp_;
  FaultEnv env_;

 public:
  const LogConfig config;
  std::unique_ptr<IoBackend> io;
  int64_t now = 1'000'000;
  std::unique_ptr<PartitionLog> log;
};

// A power cut takes an unsynced tail that lay wholly below a checkpointed log start (AMQP acks
// or DeleteRecords had moved the start past it). The log must continue at that start. It came
// back with its start lowered to the recovered end instead: appends reused the offsets below
// the checkpointed start, and the next crash restart took that start again and hid them,
// although they were acknowledged as durable (log_ops_fuzz input
// crash_restart_after_power_cut_raises_log_start).
TEST(PowerCutRegressionTest, ALostTailBelowTheCheckpointedStartLeavesTheLogAtThatStart) {
  CutLog c{LogConfig{}};
  const std::string dir = c.dir();
  const LogConfig& config = c.config;
  IoBackend* io = c.io.get();
  int64_t& now = c.now;
  std::unique_ptr<PartitionLog>& log = c.log;
  auto open = [&] { return c.Open(); };
  auto cut_power_and_reopen = [&] { c.CutPowerAndReopen(); };
  open();
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(AppendSync(*log, *io, MakeBatch(12, 10, 1000), AckLevel::kDurable).ok());
  ASSERT_TRUE(AppendSync(*log, *io, MakeBatch(2, 10, 1001)).ok());  // 12..13, not synced
  ASSERT_TRUE(log->AdvanceLogStart(14).ok());
  now += config.recovery_checkpoint_ms;
  log->Tick(now);  // checkpoint: start 14, recovery point 12; its flush is never submitted
  ASSERT_EQ(
      ReadRecoveryCheckpoint(absl::StrCat(dir, "/", kRecoveryCheckpointFile))->log_start_offset,
      14);
  cut_power_and_reopen();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->log_start_offset(), 14);
  EXPECT_EQ(log->high_watermark(), 14);
  auto appended = AppendSync(*log, *io, MakeBatch(3, 10, 1002), AckLevel::kDurable);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->base_offset, 14);
  const std::vector<std::vector<uint8_t>> acked = ReadAllBatches(*log);
  ASSERT_EQ(acked.size(), 1u);

  // A crash (no power cut): everything acknowledged is still there, under the same start.
  open();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->log_start_offset(), 14);
  EXPECT_EQ(log->high_watermark(), 17);
  EXPECT_EQ(ReadAllBatches(*log), acked);
  // And after another power cut too.
  cut_power_and_reopen();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->log_start_offset(), 14);
  EXPECT_EQ(ReadAllBatches(*log), acked);
}

// Segments below the log start are deleted by renames that only a directory sync makes
// durable. One of them was deleted before its writes were ever synced; the sync that then made
// the offsets above it durable did not sync the directory, and no checkpoint held the new start
// yet. A power cut brought the deleted segments back, the unsynced one empty: recovery read a
// hole after the first segment and cut off the synced segments above it, so the log ended
// below its durable offset and would have handed those offsets out again (log_ops_fuzz input
// power_cut_empties_a_rolled_segment_counted_durable).
TEST(PowerCutRegressionTest, ASyncAfterDeletingUnsyncedSegmentsMakesTheirDeletionDurable) {
  LogConfig config;
  config.segment_bytes = 1000;  // a large batch fills a segment; small ones fit beside it
  CutLog c(config);
  IoBackend* io = c.io.get();
  std::unique_ptr<PartitionLog>& log = c.log;
  ASSERT_NE(c.Open(), nullptr);
  // A first durable batch makes the new log's names durable (its first sync syncs the
  // directory too).
  ASSERT_TRUE(AppendSync(*log, *io, MakeBatch(1, 10, 1000), AckLevel::kDurable).ok());
  // Three segments written; the sync that starts when the first write completes covers
  // segment 0 alone, as the others complete while it is in flight.
  auto append = [&](std::vector<uint8_t> batch) {
    ASSERT_TRUE(
        log->Append(batch, AckLevel::kWritten, [](absl::Status, const AppendResult&) {}).ok());
    log->SubmitBuffered();
    io->Submit();
  };
  append(MakeBatch(3, 250, 1001));  // 1..3
  append(MakeBatch(3, 250, 1002));  // 4..6, in segment 4 (a roll)
  append(MakeBatch(3, 50, 1003));   // 7..9, in segment 7
  io->Poll(absl::ZeroDuration());
  ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{0, 4, 7}));
  ASSERT_EQ(log->high_watermark(), 10);
  ASSERT_TRUE(log->AdvanceLogStart(7).ok());
  ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{7}));
  // Segment 4 was deleted before any sync covered it. Into segment 7, durably (no roll, whose
  // directory sync would make the deletions durable):
  ASSERT_TRUE(AppendSync(*log, *io, MakeBatch(3, 50, 1004), AckLevel::kDurable).ok());
  ASSERT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{7}));
  const int64_t durable = log->durable_offset();
  ASSERT_EQ(durable, 13);
  const std::vector<std::vector<uint8_t>> acked = ReadAllBatches(*log);
  ASSERT_EQ(acked.size(), 2u);

  ASSERT_NE(c.CutPowerAndReopen(), nullptr);
  EXPECT_GE(log->high_watermark(), durable);
  EXPECT_EQ(log->log_start_offset(), 7);
  EXPECT_EQ(ReadAllBatches(*log), acked);
}

// A new log's names (its directory entry and its first segment's) become durable with its
// first sync. A crash before that sync left them unsynced, and the restarted log, which found
// its segment, never synced them: its later fdatasyncs covered data in a file whose name a
// power cut could still take (log_ops_fuzz input crash_restart_before_the_first_sync).
TEST(PowerCutRegressionTest, ALogRestartedBeforeItsFirstSyncSyncsItsNames) {
  CutLog c{LogConfig{}};
  ASSERT_NE(c.Open(), nullptr);
  ASSERT_TRUE(AppendSync(*c.log, *c.io, MakeBatch(2, 10, 1000)).ok());  // written, not synced
  ASSERT_NE(c.Open(), nullptr);                                         // a crash restart
  ASSERT_TRUE(AppendSync(*c.log, *c.io, MakeBatch(2, 10, 1001), AckLevel::kDurable).ok());
  const int64_t durable = c.log->durable_offset();
  ASSERT_EQ(durable, 4);
  const std::vector<std::vector<uint8_t>> acked = ReadAllBatches(*c.log);
  ASSERT_NE(c.CutPowerAndReopen(), nullptr);
  EXPECT_GE(c.log->high_watermark(), durable);
  EXPECT_EQ(ReadAllBatches(*c.log), acked);
}

// WriteFileAtomically (recovery checkpoints, the clean-shutdown marker, and the broker's topic
// registry, AMQP metadata and cursor journal) under a power cut at each of its calls: the file
// then holds the old bytes or the new ones, never a mix, never nothing; and the new ones once
// the call returned OK.
TEST(PowerCutAtomicWriteTest, FileHoldsOldOrNewBytesAfterACutAtAnyCall) {
  TempDir tmp;
  const std::string path = tmp.Sub("meta");
  const std::vector<uint8_t> old_bytes(100, 'o');
  const std::vector<uint8_t> new_bytes(5000, 'n');
  int combinations = 0;
  for (int data = 0; data < 4; ++data) {
    for (bool prefix : {false, true}) {
      for (int64_t cut = 0;; ++cut) {
        ASSERT_TRUE(WriteFileAtomically(path, old_bytes).ok());
        FaultEnv env(tmp.path());
        env.CutPowerAfter(cut);
        absl::Status s = WriteFileAtomically(path, new_bytes, &env);
        const bool finished = !env.power_cut();
        env.CutPowerNow();
        CrashModel model;
        model.data = static_cast<CrashModel::Data>(data);
        model.keep_name_change_prefix = prefix;
        model.seed = static_cast<uint64_t>(cut);
        ASSERT_TRUE(env.RestoreAfterPowerCut(model).ok());
        auto got = ReadWholeFile(path);
        ASSERT_TRUE(got.ok()) << "cut after " << cut << " calls: " << got.status();
        if (s.ok()) {
          EXPECT_EQ(*got, new_bytes) << "cut after " << cut << " calls";
        } else {
          EXPECT_TRUE(*got == old_bytes || *got == new_bytes) << "cut after " << cut << " calls";
        }
        ++combinations;
        if (finished) break;
      }
    }
  }
  EXPECT_GT(combinations, 8 * 5);
}

TEST(PowerCutAtomicWriteTest, RecoveryCheckpointIsOldOrNewAfterACut) {
  TempDir tmp;
  const std::string path = tmp.Sub("recovery-point");
  RecoveryCheckpoint old_cp{10, 0, 1000, 0};
  RecoveryCheckpoint new_cp{20, 15, 200, 5};
  for (int64_t cut = 0;; ++cut) {
    ASSERT_TRUE(WriteRecoveryCheckpoint(path, old_cp).ok());
    FaultEnv env(tmp.path());
    env.CutPowerAfter(cut);
    absl::Status s = WriteRecoveryCheckpoint(path, new_cp, &env);
    const bool finished = !env.power_cut();
    env.CutPowerNow();
    CrashModel model;
    model.data = CrashModel::Data::kRandomPages;
    model.keep_name_change_prefix = true;
    model.seed = static_cast<uint64_t>(cut);
    ASSERT_TRUE(env.RestoreAfterPowerCut(model).ok());
    auto got = ReadRecoveryCheckpoint(path);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->recovery_offset == (s.ok() ? 20 : got->recovery_offset));
    EXPECT_TRUE(got->recovery_offset == 10 || got->recovery_offset == 20);
    if (finished) break;
  }
}

// The two-slot checkpoint (log/FORMAT.md): after several writes both slots hold checkpoints;
// a power cut at any step of the next write (pages kept or lost at random) leaves that write's
// checkpoint or the one before it, never an older one and never nothing. Only the first write
// creates the file (a rename); later writes are an in-place write and a sync.
TEST(PowerCutAtomicWriteTest, SuccessiveRecoveryCheckpointsSurviveACutAsTheLastOrTheOneBefore) {
  TempDir tmp;
  const std::string path = tmp.Sub("recovery-point");
  for (int64_t cut = 0;; ++cut) {
    (void)RemoveFile(path);
    for (int64_t i = 1; i <= 4; ++i) {
      ASSERT_TRUE(WriteRecoveryCheckpoint(path, RecoveryCheckpoint{i * 10, 0, 0, 0}).ok());
    }
    FaultEnv env(tmp.path());
    env.CutPowerAfter(cut);
    absl::Status s = WriteRecoveryCheckpoint(path, RecoveryCheckpoint{50, 0, 0, 0}, &env);
    const bool finished = !env.power_cut();
    EXPECT_EQ(env.calls_of(testing::kOpRename), 0);
    env.CutPowerNow();
    CrashModel model;
    model.data = CrashModel::Data::kRandomPages;
    model.seed = static_cast<uint64_t>(cut) * 7 + 1;
    ASSERT_TRUE(env.RestoreAfterPowerCut(model).ok());
    auto got = ReadRecoveryCheckpoint(path);
    ASSERT_TRUE(got.ok()) << got.status();
    if (s.ok()) {
      EXPECT_EQ(got->recovery_offset, 50);
    } else {
      EXPECT_TRUE(got->recovery_offset == 40 || got->recovery_offset == 50) << got->recovery_offset;
    }
    if (finished) break;
    ASSERT_LT(cut, 50);
  }
  // The slot holding the newest checkpoint is never written: only the other page changes.
  auto before = ReadWholeFile(path);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(WriteRecoveryCheckpoint(path, RecoveryCheckpoint{60, 0, 0, 0}).ok());
  auto after = ReadWholeFile(path);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(before->size(), 8192u);
  ASSERT_EQ(after->size(), 8192u);
  const bool page0_same = std::equal(before->begin(), before->begin() + 4096, after->begin());
  const bool page1_same = std::equal(before->begin() + 4096, before->end(), after->begin() + 4096);
  EXPECT_NE(page0_same, page1_same);
  int64_t kept = 0;  // recovery_offset in the untouched page: the newest before the write
  memcpy(&kept, (page0_same ? after->data() : after->data() + 4096) + 16, 8);
  EXPECT_EQ(kept, 50);
  // A version 1 file (48 bytes) is read, and replaced by the two-slot file at the next write.
  uint8_t v1[48] = {};
  const uint32_t magic = 0x50434c53;
  const uint16_t version = 1;
  const int64_t recovery_offset = 7;
  memcpy(v1, &magic, 4);
  memcpy(v1 + 4, &version, 2);
  memcpy(v1 + 8, &recovery_offset, 8);
  const uint64_t sum = XXH3_64bits(v1, 40);
  memcpy(v1 + 40, &sum, 8);
  ASSERT_TRUE(WriteFileAtomically(path, std::span<const uint8_t>(v1, sizeof(v1))).ok());
  auto old = ReadRecoveryCheckpoint(path);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->recovery_offset, 7);
  ASSERT_TRUE(WriteRecoveryCheckpoint(path, RecoveryCheckpoint{9, 0, 0, 0}).ok());
  EXPECT_EQ(testing::SizeOf(path), 8192u);
  EXPECT_EQ(ReadRecoveryCheckpoint(path)->recovery_offset, 9);
}

// A LogManager over the data directory `data` through `env`; logs found there open with
// `config`.
absl::StatusOr<std::unique_ptr<LogManager>> OpenManager(const std::string& data, Env* env,
                                                        const LogConfig& config = {}) {
  LogManager::Options options;
  options.data_dir = data;
  options.env = env;
  options.config_for = [config](const TopicPartition&) { return config; };
  return LogManager::Open(options);
}

// LogManager::Options::env reaches every log: a log the manager creates, with its directory,
// survives a power cut with every batch acknowledged as durable.
TEST(PowerCutLogManagerTest, ALogCreatedThroughTheManagerSurvivesAPowerCut) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  ASSERT_TRUE(CreateDirIfMissing(data).ok());
  FaultEnv env(data);
  LogConfig config;
  config.flush_messages = 1;
  std::vector<std::vector<uint8_t>> acked;
  {
    auto mgr = OpenManager(data, &env);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    EXPECT_EQ((*mgr)->io().kind(), IoBackendKind::kPwrite);  // the Env sees every write
    auto log = (*mgr)->CreateLog(TopicPartition{"t", 0}, config);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 20; ++i) {
      std::vector<uint8_t> batch = testing::MakeBatch(2, 100, 1000 + i, static_cast<uint64_t>(i));
      auto r = (*log)->Append(batch, AckLevel::kDurable,
                              [&acked, batch](absl::Status s, const AppendResult& res) mutable {
                                if (!s.ok()) return;
                                StoreBigEndian64(batch.data(), res.base_offset);
                                acked.push_back(batch);
                              });
      ASSERT_TRUE(r.ok()) << r.status();
      (*mgr)->Submit();
      for (int k = 0; k < 3; ++k) (*mgr)->Poll(absl::ZeroDuration());
    }
    EXPECT_EQ(acked.size(), 20u);
    EXPECT_GT(env.calls_of(testing::kOpWrite), 0);
    EXPECT_GT(env.calls_of(testing::kOpSync), 0);
    env.CutPowerNow();
  }
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  auto mgr = OpenManager(data, Env::Default());
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  PartitionLog* log = (*mgr)->GetLog(TopicPartition{"t", 0});
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(testing::ReadAllBatches(*log), acked);
}

// Creating a log costs no synchronous fsync: its names (directory, first segment) become
// durable with its first sync, which also covers the batch acknowledged as durable. A power
// cut loses the never-synced empty logs, which are simply made again, and nothing acked.
TEST(PowerCutLogManagerTest, NewLogsSyncTheirNamesWithTheirFirstSync) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  ASSERT_TRUE(CreateDirIfMissing(data).ok());
  FaultEnv env(data);
  LogConfig config;
  config.flush_messages = 1;
  std::vector<uint8_t> acked;
  {
    auto mgr = OpenManager(data, &env);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    const int64_t dir_syncs_before = env.calls_of(testing::kOpSyncDir);
    std::vector<PartitionLog*> logs;
    for (int p = 0; p < 10; ++p) {
      auto log = (*mgr)->CreateLog(TopicPartition{"t", p}, config);
      ASSERT_TRUE(log.ok()) << log.status();
      logs.push_back(*log);
    }
    EXPECT_EQ(env.calls_of(testing::kOpSyncDir), dir_syncs_before);
    std::vector<uint8_t> batch = testing::MakeBatch(2, 100, 1000);
    bool done = false;
    auto r =
        logs[3]->Append(batch, AckLevel::kDurable, [&](absl::Status s, const AppendResult& res) {
          done = true;
          ASSERT_TRUE(s.ok()) << s;
          acked = batch;
          StoreBigEndian64(acked.data(), res.base_offset);
        });
    ASSERT_TRUE(r.ok()) << r.status();
    for (int k = 0; k < 10 && !done; ++k) {
      (*mgr)->Submit();
      (*mgr)->Poll(absl::ZeroDuration());
    }
    ASSERT_TRUE(done);
    // The log's directory and the data directory, in the same group as the data.
    EXPECT_EQ(env.calls_of(testing::kOpSyncDir), dir_syncs_before + 2);
    env.CutPowerNow();
  }
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  auto mgr = OpenManager(data, Env::Default());
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  PartitionLog* log = (*mgr)->GetLog(TopicPartition{"t", 3});
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(testing::ReadAllBatches(*log), std::vector<std::vector<uint8_t>>{acked});
  // The others were never synced: gone or empty, and made again on demand.
  for (int p = 0; p < 10; ++p) {
    if (p == 3) continue;
    auto again = (*mgr)->CreateLog(TopicPartition{"t", p}, config);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->log_end_offset(), 0) << p;
  }
}

// The manager marks all its logs clean in one rewrite of its recovery-points file: the marks
// a clean stop wrote survive a power cut right after it, and the start-up rewrite that clears
// them stays (else a later crash would trust a log that was written to since).
TEST(PowerCutLogManagerTest, CleanMarksAreDurableAtStopAndTheirClearingAtStart) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  ASSERT_TRUE(CreateDirIfMissing(data).ok());
  LogConfig config;
  config.flush_messages = 1;
  config.max_index_bytes = 4096;  // the fault Env copies whole files at each power cut
  constexpr int kLogs = 5;
  auto open = [&](Env* env) { return OpenManager(data, env, config); };
  auto all_clean = [&](LogManager& mgr, bool want) {
    for (int p = 0; p < kLogs; ++p) {
      PartitionLog* log = mgr.GetLog(TopicPartition{"t", p});
      ASSERT_NE(log, nullptr) << p;
      EXPECT_EQ(log->recovery_report().clean_shutdown, want) << p;
      EXPECT_EQ(log->log_end_offset(), 2) << p;
    }
  };
  {
    FaultEnv env(data);
    auto mgr = open(&env);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    for (int p = 0; p < kLogs; ++p) {
      auto log = (*mgr)->CreateLog(TopicPartition{"t", p}, config);
      ASSERT_TRUE(log.ok()) << log.status();
      ASSERT_TRUE(testing::AppendSync(**log, (*mgr)->io(), testing::MakeBatch(2, 10, 1000),
                                      AckLevel::kDurable)
                      .ok());
    }
    ASSERT_TRUE((*mgr)->Close().ok());
    env.CutPowerNow();
    mgr->reset();
    ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  }
  {
    FaultEnv env(data);
    auto mgr = open(&env);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    all_clean(**mgr, true);
    env.CutPowerNow();
    mgr->reset();
    ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  }
  auto mgr = open(Env::Default());
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  all_clean(**mgr, false);
}

// A checkpoint round appends one frame to the shard's recovery-points file and fdatasyncs it:
// the point survives a power cut right after the round.
TEST(PowerCutLogManagerTest, AnAppendedRecoveryPointSurvivesAPowerCut) {
  TempDir tmp;
  const std::string data = tmp.Sub("data");
  ASSERT_TRUE(CreateDirIfMissing(data).ok());
  LogConfig config;
  config.max_index_bytes = 4096;
  {
    FaultEnv env(data);
    auto mgr = OpenManager(data, &env, config);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    auto log = (*mgr)->CreateLog(TopicPartition{"t", 0}, config);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE(testing::AppendSync(**log, (*mgr)->io(), testing::MakeBatch(3, 10, 1000),
                                    AckLevel::kDurable)
                    .ok());
    int64_t now = absl::ToUnixMillis(absl::Now());
    for (int i = 0;
         i < 50 && (*log)->checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset != 3;
         ++i) {
      (*mgr)->Tick(now += 1000);
      (*mgr)->Poll(absl::Milliseconds(2));
    }
    ASSERT_EQ((*log)->checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset, 3);
    EXPECT_EQ((*mgr)->recovery_points().rewrites(), 1u);  // the start-up one; then an append
    EXPECT_EQ((*mgr)->recovery_points().commits(), 2u);
    env.CutPowerNow();
    mgr->reset();
    ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  }
  auto mgr = OpenManager(data, Env::Default(), config);
  ASSERT_TRUE(mgr.ok()) << mgr.status();
  const RecoveryReport& r = (*mgr)->GetLog(TopicPartition{"t", 0})->recovery_report();
  EXPECT_FALSE(r.clean_shutdown);
  EXPECT_EQ(r.recovery_offset, 3);
  EXPECT_EQ((*mgr)->GetLog(TopicPartition{"t", 0})->log_end_offset(), 3);
}

// ---- PartitionLog::TruncateTo under power cuts ----

// Where a truncation cuts a log of several segments.
enum class CutAt { kInsideTheActiveSegment, kAtASegmentBase, kInsideASealedSegment, kLogStart };
constexpr CutAt kEveryCut[] = {CutAt::kInsideTheActiveSegment, CutAt::kAtASegmentBase,
                               CutAt::kInsideASealedSegment, CutAt::kLogStart};

const char* CutAtName(CutAt at) {
  switch (at) {
    case CutAt::kInsideTheActiveSegment:
      return "inside the active segment";
    case CutAt::kAtASegmentBase:
      return "at a segment base";
    case CutAt::kInsideASealedSegment:
      return "inside a sealed segment";
    case CutAt::kLogStart:
      return "at the log start";
  }
  return "?";
}

LogConfig TruncationConfig() {
  LogConfig c;
  c.segment_bytes = 4096;
  c.index_interval_bytes = 256;
  c.max_index_bytes = 1024;
  c.retention_ms = -1;
  c.recovery_checkpoint_ms = 10;
  return c;
}

using StoredBatches = std::map<int64_t, std::vector<uint8_t>>;  // base offset -> bytes

// Appends `batch` and waits until it is written (durable with kDurable); records it in `out`.
void AppendTo(PartitionLog& log, IoBackend& io, std::vector<uint8_t> batch, AckLevel ack,
              StoredBatches* out) {
  auto r = AppendSync(log, io, batch, ack);
  ASSERT_TRUE(r.ok()) << r.status();
  StoreBigEndian64(batch.data(), r->base_offset);
  (*out)[r->base_offset] = std::move(batch);
}

// Fills `log` with durable batches over four segments, checkpoints them (a checkpoint past
// any cut), then appends two batches that are written but not durable. Returns them all.
StoredBatches FillForTruncation(PartitionLog& log, IoBackend& io, int64_t* now) {
  StoredBatches batches;
  for (uint64_t i = 0; log.segment_count() < 4; ++i) {
    AppendTo(log, io,
             MakeBatch(1 + static_cast<int>(i % 3), 250, 1000 + static_cast<int64_t>(i), i),
             AckLevel::kWritten, &batches);
  }
  EXPECT_TRUE(log.Flush().ok());
  *now += 1000;
  log.Tick(*now);
  io.Submit();
  for (int i = 0;
       i < 100 && log.checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset !=
                      log.log_end_offset();
       ++i) {
    io.Poll(absl::Milliseconds(1));
  }
  EXPECT_EQ(log.checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset,
            log.log_end_offset());
  for (uint64_t i = 100; i < 102; ++i) {
    AppendTo(log, io, MakeBatch(2, 100, 2000 + static_cast<int64_t>(i), i), AckLevel::kWritten,
             &batches);
  }
  return batches;
}

int64_t CutOffset(const PartitionLog& log, const StoredBatches& batches, CutAt at) {
  const std::vector<int64_t> bases = log.segment_base_offsets();
  switch (at) {
    case CutAt::kInsideTheActiveSegment:
      return std::prev(batches.end(), 2)->first;  // the first of the two written ones
    case CutAt::kAtASegmentBase:
      return bases[2];
    case CutAt::kInsideASealedSegment:
      return batches.upper_bound(bases[1])->first;
    case CutAt::kLogStart:
      return log.log_start_offset();
  }
  return -1;
}

// What a log recovered after a truncation to `cut` (which returned `finished`) may hold: a
// gap-free run of the batches it held before, with every one below the cut that was durable
// (below `durable_end`); none from the cut on once it had returned OK.
::testing::AssertionResult HoldsWhatMaySurviveTheCut(const PartitionLog& log,
                                                     const StoredBatches& before, int64_t cut,
                                                     int64_t durable_end, bool finished) {
  std::vector<std::vector<uint8_t>> read = ReadAllBatches(log);
  size_t i = 0;
  for (const auto& [base, bytes] : before) {
    const bool durable_below_cut = base < cut && base < durable_end;
    if (i == read.size()) {
      if (durable_below_cut) return ::testing::AssertionFailure() << "lost durable batch " << base;
      break;
    }
    if (read[i] != bytes) {
      return ::testing::AssertionFailure() << "batch " << i << " is not the one at " << base;
    }
    if (finished && base >= cut) {
      return ::testing::AssertionFailure() << "batch " << base << " came back after the cut";
    }
    ++i;
  }
  if (i != read.size()) return ::testing::AssertionFailure() << "batches that were never there";
  return ::testing::AssertionSuccess();
}

// After TruncateTo returned, a power cut brings back nothing it removed and keeps everything
// durable below the cut; appends then reuse the offsets, durably. The checkpoint on disk was
// past the cut (and two batches past it were never synced).
TEST(PowerCutTruncateTest, NothingCutComesBackAndEveryDurableBatchBelowTheCutStays) {
  for (CutAt at : kEveryCut) {
    for (int m = 0; m < 8; ++m) {
      const CrashModel model = ModelForLife(m, static_cast<uint64_t>(m) + 1);
      SCOPED_TRACE(absl::StrCat(CutAtName(at), ", ", ModelName(model)));
      CutLog c(TruncationConfig());
      ASSERT_NE(c.Open(), nullptr);
      StoredBatches batches = FillForTruncation(*c.log, *c.io, &c.now);
      const int64_t cut = CutOffset(*c.log, batches, at);
      ASSERT_TRUE(c.log->TruncateTo(cut).ok());
      batches.erase(batches.lower_bound(cut), batches.end());
      ASSERT_NE(c.CutPowerAndReopen(model), nullptr);
      EXPECT_EQ(c.log->log_end_offset(), cut);
      EXPECT_TRUE(HoldsWhatMaySurviveTheCut(*c.log, batches, cut, cut, true));
      // Appends from the cut on, durable, then another cut of the power.
      for (uint64_t i = 0; i < 12; ++i) {
        AppendTo(*c.log, *c.io, MakeBatch(2, 300, 5000 + static_cast<int64_t>(i), 50 + i),
                 AckLevel::kDurable, &batches);
      }
      EXPECT_EQ(batches.lower_bound(cut)->first, cut);
      ASSERT_NE(c.CutPowerAndReopen(model), nullptr);
      std::vector<std::vector<uint8_t>> want;
      for (const auto& [base, bytes] : batches) want.push_back(bytes);
      EXPECT_EQ(ReadAllBatches(*c.log), want);
    }
  }
}

// The power goes at every call of TruncateTo in turn (the checkpoint lowered, the cut, each
// deletion, the fresh segment, the directory sync): the log opens, holds a gap-free run of
// what it held with every durable batch below the cut, nothing from the cut on if the call
// had returned OK, and takes appends and a clean restart.
TEST(PowerCutTruncateTest, ACutOfThePowerAtAnyCallOfTheTruncationRecovers) {
  int runs = 0;
  for (CutAt at : kEveryCut) {
    for (int64_t k = 0;; ++k) {
      const CrashModel model = ModelForLife(static_cast<int>(k), static_cast<uint64_t>(k) * 7 + 3);
      SCOPED_TRACE(
          absl::StrCat(CutAtName(at), ", power cut after ", k, " calls, ", ModelName(model)));
      CutLog c(TruncationConfig());
      ASSERT_NE(c.Open(), nullptr);
      const StoredBatches batches = FillForTruncation(*c.log, *c.io, &c.now);
      const int64_t cut = CutOffset(*c.log, batches, at);
      c.env().CutPowerAfter(k);
      const absl::Status s = c.log->TruncateTo(cut);
      const bool finished = !c.env().power_cut();
      EXPECT_EQ(s.ok(), finished) << s;
      ASSERT_NE(c.CutPowerAndReopen(model), nullptr);
      EXPECT_TRUE(HoldsWhatMaySurviveTheCut(*c.log, batches, cut,
                                            std::prev(batches.end(), 2)->first, finished));
      ASSERT_TRUE(AppendSync(*c.log, *c.io, MakeBatch(1, 10, 9000), AckLevel::kDurable).ok());
      ASSERT_TRUE(c.log->Close().ok());
      ASSERT_NE(c.Open(), nullptr);
      ++runs;
      if (finished) break;
      ASSERT_LT(k, 500);
    }
  }
  EXPECT_GT(runs, 4 * 10);
}

// The same for a LogManager's log, whose checkpoint is in the shard's recovery-points file.
TEST(PowerCutTruncateTest, ALogManagersLogToo) {
  const LogConfig config = TruncationConfig();
  for (CutAt at : {CutAt::kInsideASealedSegment, CutAt::kAtASegmentBase}) {
    for (int64_t k = 0;; k += 2) {
      const CrashModel model = ModelForLife(static_cast<int>(k / 2), static_cast<uint64_t>(k) + 1);
      SCOPED_TRACE(
          absl::StrCat(CutAtName(at), ", power cut after ", k, " calls, ", ModelName(model)));
      TempDir tmp;
      const std::string data = tmp.Sub("data");
      ASSERT_TRUE(CreateDirIfMissing(data).ok());
      FaultEnv env(data);
      StoredBatches batches;
      int64_t cut = -1;
      bool finished = false;
      {
        auto mgr = OpenManager(data, &env, config);
        ASSERT_TRUE(mgr.ok()) << mgr.status();
        auto log = (*mgr)->CreateLog(TopicPartition{"t", 0}, config);
        ASSERT_TRUE(log.ok()) << log.status();
        for (uint64_t i = 0; (*log)->segment_count() < 4; ++i) {
          AppendTo(**log, (*mgr)->io(), MakeBatch(2, 250, 1000 + static_cast<int64_t>(i), i),
                   AckLevel::kWritten, &batches);
        }
        ASSERT_TRUE((*log)->Flush().ok());
        int64_t now = absl::ToUnixMillis(absl::Now());
        for (int i = 0;
             i < 100 &&
             (*log)->checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset !=
                 (*log)->log_end_offset();
             ++i) {
          (*mgr)->Tick(now += 1000);
          (*mgr)->Poll(absl::Milliseconds(1));
        }
        ASSERT_EQ((*log)->checkpoint_on_disk()->recovery_offset, (*log)->log_end_offset());
        for (uint64_t i = 100; i < 102; ++i) {
          AppendTo(**log, (*mgr)->io(), MakeBatch(2, 100, 2000 + static_cast<int64_t>(i), i),
                   AckLevel::kWritten, &batches);
        }
        cut = CutOffset(**log, batches, at);
        env.CutPowerAfter(k);
        const absl::Status s = (*log)->TruncateTo(cut);
        finished = !env.power_cut();
        EXPECT_EQ(s.ok(), finished) << s;
        env.CutPowerNow();
      }
      ASSERT_TRUE(env.RestoreAfterPowerCut(model).ok());
      auto mgr = OpenManager(data, Env::Default(), config);
      ASSERT_TRUE(mgr.ok()) << mgr.status();
      PartitionLog* log = (*mgr)->GetLog(TopicPartition{"t", 0});
      ASSERT_NE(log, nullptr);
      EXPECT_TRUE(HoldsWhatMaySurviveTheCut(*log, batches, cut, std::prev(batches.end(), 2)->first,
                                            finished));
      ASSERT_TRUE(AppendSync(*log, (*mgr)->io(), MakeBatch(1, 10, 9000), AckLevel::kDurable).ok());
      if (finished) break;
      ASSERT_LT(k, 500);
    }
  }
}

// A LogManager's log, cut below a point committed in the shard's file, then appended to
// durably: a power cut keeps exactly the batches below the cut and the new ones.
TEST(PowerCutTruncateTest, ALogManagersLogKeepsWhatWasAppendedAfterTheCut) {
  const LogConfig config = TruncationConfig();
  for (CutAt at : kEveryCut) {
    SCOPED_TRACE(CutAtName(at));
    TempDir tmp;
    const std::string data = tmp.Sub("data");
    ASSERT_TRUE(CreateDirIfMissing(data).ok());
    FaultEnv env(data);
    StoredBatches batches;
    {
      auto mgr = OpenManager(data, &env, config);
      ASSERT_TRUE(mgr.ok()) << mgr.status();
      auto log = (*mgr)->CreateLog(TopicPartition{"t", 0}, config);
      ASSERT_TRUE(log.ok()) << log.status();
      for (uint64_t i = 0; (*log)->segment_count() < 4; ++i) {
        AppendTo(**log, (*mgr)->io(), MakeBatch(2, 250, 1000 + static_cast<int64_t>(i), i),
                 AckLevel::kWritten, &batches);
      }
      ASSERT_TRUE((*log)->Flush().ok());
      int64_t now = absl::ToUnixMillis(absl::Now());
      for (int i = 0;
           i < 100 && (*log)->checkpoint_on_disk().value_or(RecoveryCheckpoint{}).recovery_offset !=
                          (*log)->log_end_offset();
           ++i) {
        (*mgr)->Tick(now += 1000);
        (*mgr)->Poll(absl::Milliseconds(1));
      }
      ASSERT_EQ((*log)->checkpoint_on_disk()->recovery_offset, (*log)->log_end_offset());
      const int64_t cut = CutOffset(**log, batches, at);
      ASSERT_TRUE((*log)->TruncateTo(cut).ok());
      batches.erase(batches.lower_bound(cut), batches.end());
      for (uint64_t i = 0; i < 12; ++i) {
        AppendTo(**log, (*mgr)->io(), MakeBatch(2, 300, 5000 + static_cast<int64_t>(i), 50 + i),
                 AckLevel::kDurable, &batches);
      }
      env.CutPowerNow();
    }
    ASSERT_TRUE(env.RestoreAfterPowerCut(ModelForLife(5, 11)).ok());
    auto mgr = OpenManager(data, Env::Default(), config);
    ASSERT_TRUE(mgr.ok()) << mgr.status();
    PartitionLog* log = (*mgr)->GetLog(TopicPartition{"t", 0});
    ASSERT_NE(log, nullptr);
    std::vector<std::vector<uint8_t>> want;
    for (const auto& [base, bytes] : batches) want.push_back(bytes);
    EXPECT_EQ(ReadAllBatches(*log), want);
  }
}

}  // namespace
}  // namespace sluice::storage
