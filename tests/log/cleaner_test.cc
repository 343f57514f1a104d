// Spec of log compaction (log/cleaner.h): latest value per key, tombstone horizon, the active
// segment untouched, dirty-ratio trigger, reads across offset gaps, reopen, a crash at every
// step of the swap, and a bounded size under many updates of few keys. Both I/O backends.
#include "log/cleaner.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "log/checkpoint.h"
#include "log/compression.h"
#include "log/crc32c.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

using testing::ReadAllBatches;
using testing::TempDir;

struct Rec {
  int64_t offset;
  std::optional<std::string> key;
  std::optional<std::string> value;
  int64_t timestamp;
};

std::vector<uint8_t> Keyed(
    const std::vector<std::pair<std::string, std::optional<std::string>>>& kv, int64_t ts) {
  RecordBatchBuilder b(0, ts);
  for (const auto& [k, v] : kv) {
    b.Add(k, v ? std::optional<std::string_view>(*v) : std::nullopt, {}, ts);
  }
  return b.Build();
}

std::vector<Rec> ReadAllRecords(const PartitionLog& log) {
  std::vector<Rec> out;
  for (const auto& batch : ReadAllBatches(log)) {
    EXPECT_TRUE(ValidateBatch(batch, 1 << 20).ok());
    std::vector<uint8_t> scratch;
    auto recs = DecompressAndDecodeRecords(batch, 1 << 20, &scratch);
    EXPECT_TRUE(recs.ok()) << recs.status();
    if (!recs.ok()) continue;
    for (const RecordView& r : *recs) {
      Rec x{r.offset, std::nullopt, std::nullopt, r.timestamp};
      if (r.key) x.key = std::string(*r.key);
      if (r.value) x.value = std::string(*r.value);
      out.push_back(x);
    }
  }
  return out;
}

// Expected content: for offsets below `cleaned_end`, only the latest record of each key (by
// the whole history below `cleaned_end`); at and above it, everything.
class Model {
 public:
  void Add(int64_t offset, const std::string& key, std::optional<std::string> value) {
    all_.push_back({offset, key, value, 0});
  }
  std::map<std::string, std::optional<std::string>> Latest() const {
    std::map<std::string, std::optional<std::string>> m;
    for (const Rec& r : all_) m[*r.key] = r.value;
    return m;
  }
  const std::vector<Rec>& all() const { return all_; }

 private:
  std::vector<Rec> all_;
};

class CleanerTest : public ::testing::TestWithParam<IoBackendKind> {
 protected:
  void SetUp() override {
    io_ = IoBackend::Create(GetParam());
    LogCleaner::TEST_CrashAfter(-1);
  }
  void TearDown() override { LogCleaner::TEST_CrashAfter(-1); }

  static LogConfig Compacted() {
    LogConfig c;
    c.cleanup_policy = kCleanupCompact;
    c.segment_bytes = 2048;
    c.index_interval_bytes = 256;
    c.max_index_bytes = 4096;
    c.retention_ms = -1;
    c.delete_retention_ms = 10'000;
    c.recovery_checkpoint_ms = 0;  // every flush writes the checkpoint the cleaner waits for
    return c;
  }

  std::unique_ptr<PartitionLog> Open(const LogConfig& c) {
    auto log = PartitionLog::Open(dir_.Sub("t-0"), c, io_.get());
    EXPECT_TRUE(log.ok()) << log.status();
    if (!log.ok()) return nullptr;
    (*log)->TEST_SetClock([this] { return now_; });
    return std::move(*log);
  }

  // Appends `n` single-record batches of keys k0..k{keys-1} round robin.
  void AppendUpdates(PartitionLog& log, int n, int keys, int first_value = 0) {
    for (int i = 0; i < n; ++i) {
      const std::string key = absl::StrCat("k", (first_value + i) % keys);
      const std::string value = absl::StrCat("v", first_value + i, std::string(20, 'x'));
      auto r = log.Append(Keyed({{key, value}}, now_), AckLevel::kWritten, nullptr);
      ASSERT_TRUE(r.ok()) << r.status();
      model_.Add(r->base_offset, key, value);
    }
  }
  void AppendOne(PartitionLog& log, const std::string& key, std::optional<std::string> value) {
    auto r = log.Append(Keyed({{key, value}}, now_), AckLevel::kWritten, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    model_.Add(r->base_offset, key, value);
  }

  // Flushes, which writes the recovery checkpoint (recovery_checkpoint_ms = 0): the cleaner
  // only touches segments it covers.
  void Checkpoint(PartitionLog& log) {
    now_ += 5000;
    ASSERT_TRUE(log.Flush().ok());
  }
  // Runs cleaning to completion (a pass, ignoring the dirty ratio).
  void CleanAll(PartitionLog& log) {
    for (int i = 0; i < 1000 && log.CleanStep(now_, 1 << 30, /*force=*/true); ++i) {
    }
    ASSERT_FALSE(log.cleaner()->in_progress());
    // The replaced segments' files are unlinked through the backend, as a shard's loop would.
    io_->Submit();
    for (int i = 0; i < 1000 && io_->pending() > 0; ++i) io_->Poll(absl::Milliseconds(10));
  }
  // Everything readable agrees with the model: per key the latest value; records in order,
  // no duplicate offsets, each one the model's record at that offset.
  void ExpectConsistent(const PartitionLog& log, bool tombstones_may_be_gone = false) {
    auto recs = ReadAllRecords(log);
    std::map<int64_t, const Rec*> by_offset;
    for (const Rec& r : model_.all()) by_offset[r.offset] = &r;
    int64_t prev = -1;
    std::map<std::string, std::optional<std::string>> latest_read;
    for (const Rec& r : recs) {
      ASSERT_GT(r.offset, prev) << "offsets must strictly increase (no duplicates)";
      prev = r.offset;
      auto it = by_offset.find(r.offset);
      ASSERT_NE(it, by_offset.end()) << "record at " << r.offset << " never written";
      EXPECT_EQ(r.key, it->second->key);
      EXPECT_EQ(r.value, it->second->value);
      latest_read[*r.key] = r.value;
    }
    for (const auto& [k, v] : model_.Latest()) {
      auto it = latest_read.find(k);
      if (!v.has_value() && tombstones_may_be_gone && it == latest_read.end()) continue;
      ASSERT_NE(it, latest_read.end()) << "key " << k << " lost";
      EXPECT_EQ(it->second, v) << "key " << k;
    }
  }
  // Below the cleaned end each key appears once.
  void ExpectCompactedBelow(const PartitionLog& log, int64_t end) {
    std::set<std::string> seen;
    for (const Rec& r : ReadAllRecords(log)) {
      if (r.offset >= end) break;
      EXPECT_TRUE(seen.insert(*r.key).second) << "key " << *r.key << " twice below " << end;
    }
  }
  std::set<std::string> StrayFiles() {
    std::set<std::string> out;
    auto names = ListDir(dir_.Sub("t-0"));
    for (const auto& n : *names) {
      if (absl::EndsWith(n, ".cleaned") || absl::EndsWith(n, ".swap") ||
          absl::EndsWith(n, ".deleted"))
        out.insert(n);
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<IoBackend> io_;
  int64_t now_ = 1'700'000'000'000;
  Model model_;
};

INSTANTIATE_TEST_SUITE_P(Backends, CleanerTest,
                         ::testing::Values(IoBackendKind::kIoUring, IoBackendKind::kPwrite),
                         [](const auto& info) {
                           return std::string(IoBackendName(info.param)) == "io_uring" ? "IoUring"
                                                                                       : "Pwrite";
                         });

TEST_P(CleanerTest, KeepsOnlyTheLatestRecordOfEachKey) {
  auto log = Open(Compacted());
  AppendUpdates(*log, 400, 10);
  Checkpoint(*log);
  const uint64_t before = log->size_bytes();
  const size_t segments_before = log->segment_count();
  ASSERT_GT(segments_before, 5u);
  CleanAll(*log);
  EXPECT_EQ(log->cleaner()->stats().passes, 1);
  EXPECT_GT(log->cleaner()->stats().records_removed, 300);
  EXPECT_LT(log->size_bytes(), before / 3);
  // The next pass merges the small cleaned segments into groups of up to segment.bytes.
  AppendUpdates(*log, 100, 10, 400);
  Checkpoint(*log);
  CleanAll(*log);
  EXPECT_LT(log->segment_count(), segments_before / 2);
  EXPECT_EQ(log->log_start_offset(), 0) << "compaction never moves the log start";
  ExpectConsistent(*log);
  ExpectCompactedBelow(*log, log->cleaner()->first_dirty_offset());
  EXPECT_TRUE(StrayFiles().empty());
}

TEST_P(CleanerTest, ActiveSegmentIsNeverTouched) {
  LogConfig c = Compacted();
  c.segment_bytes = 1 << 20;  // everything stays in the active segment
  auto log = Open(c);
  AppendUpdates(*log, 100, 3);
  Checkpoint(*log);
  const auto before = ReadAllBatches(*log);
  CleanAll(*log);
  EXPECT_EQ(log->cleaner()->stats().groups_swapped, 0);
  EXPECT_TRUE(ReadAllBatches(*log) == before);
}

TEST_P(CleanerTest, NothingPastTheRecoveryCheckpointIsCleaned) {
  auto log = Open(Compacted());
  LogConfig c = Compacted();
  c.recovery_checkpoint_ms = 60'000;
  log->UpdateConfig(c);
  AppendUpdates(*log, 300, 5);
  ASSERT_TRUE(log->Flush().ok());  // durable, but the checkpoint interval has not passed
  const auto before = ReadAllBatches(*log);
  CleanAll(*log);
  EXPECT_TRUE(ReadAllBatches(*log) == before);
  log->UpdateConfig(Compacted());
  log->Tick(now_ += 1000);  // writes the checkpoint (and cleans: dirty ratio 1)
  CleanAll(*log);
  EXPECT_LT(ReadAllBatches(*log).size(), before.size());
}

TEST_P(CleanerTest, TombstoneSurvivesUntilDeleteHorizonThenGoes) {
  LogConfig c = Compacted();
  c.delete_retention_ms = 60'000;
  auto log = Open(c);
  AppendOne(*log, "a", "1");
  AppendOne(*log, "b", "1");
  AppendOne(*log, "a", std::nullopt);  // tombstone for a
  AppendUpdates(*log, 200, 20);
  Checkpoint(*log);
  CleanAll(*log);
  ExpectConsistent(*log);
  auto find_a = [&] {
    std::vector<Rec> a;
    for (const Rec& r : ReadAllRecords(*log))
      if (r.key == "a") a.push_back(r);
    return a;
  };
  ASSERT_EQ(find_a().size(), 1u);
  EXPECT_FALSE(find_a()[0].value.has_value()) << "the tombstone is the only record of a";
  EXPECT_EQ(find_a()[0].timestamp, 1'700'000'000'000) << "record timestamps are kept";
  // Its batch now carries the delete horizon (attribute bit 6, baseTimestamp).
  for (const auto& batch : ReadAllBatches(*log)) {
    RecordBatchView v(batch);
    if (v.base_offset() == 2) {
      EXPECT_NE(v.attributes() & 0x40, 0);
      EXPECT_EQ(v.base_timestamp(), now_ + c.delete_retention_ms);
    }
  }
  // Before the horizon further passes keep it.
  now_ += c.delete_retention_ms / 2;
  AppendUpdates(*log, 200, 20, 1000);
  Checkpoint(*log);
  CleanAll(*log);
  ASSERT_EQ(find_a().size(), 1u);
  // After it, the next pass drops it.
  now_ += c.delete_retention_ms;
  AppendUpdates(*log, 200, 20, 2000);
  Checkpoint(*log);
  CleanAll(*log);
  EXPECT_TRUE(find_a().empty());
  EXPECT_GE(log->cleaner()->stats().tombstones_removed, 1);
  ExpectConsistent(*log, /*tombstones_may_be_gone=*/true);
}

TEST_P(CleanerTest, DirtyRatioThresholdStartsAPass) {
  LogConfig c = Compacted();
  c.min_cleanable_dirty_ratio = 0.5;
  auto log = Open(c);
  AppendUpdates(*log, 300, 100);
  Checkpoint(*log);
  now_ += 1000;
  log->Tick(now_);  // dirty ratio 1.0: Tick cleans (its budget covers this small log)
  for (int i = 0; i < 100 && log->cleaner()->in_progress(); ++i) log->Tick(now_ += 100);
  ASSERT_EQ(log->cleaner()->stats().passes, 1);
  const uint64_t clean_size = log->size_bytes();
  // A little dirty data: below the ratio, nothing happens.
  AppendUpdates(*log, 30, 100, 300);
  Checkpoint(*log);
  log->Tick(now_ += 1000);
  EXPECT_LT(log->cleaner()->DirtyRatio(now_), 0.5);
  EXPECT_EQ(log->cleaner()->stats().passes, 1);
  // Enough to reach it: the next tick cleans.
  AppendUpdates(*log, 300, 100, 400);
  Checkpoint(*log);
  EXPECT_GE(log->cleaner()->DirtyRatio(now_), 0.5);
  for (int i = 0; i < 100 && log->cleaner()->stats().passes < 2; ++i) log->Tick(now_ += 100);
  EXPECT_EQ(log->cleaner()->stats().passes, 2);
  EXPECT_LT(log->size_bytes(), clean_size + 3 * c.segment_bytes);
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, TickDoesBoundedWorkPerCall) {
  LogConfig c = Compacted();
  c.cleaner_bytes_per_tick = 1024;
  auto log = Open(c);
  AppendUpdates(*log, 400, 10);
  Checkpoint(*log);
  int ticks = 0;
  do {
    log->Tick(now_ += 100);
    ++ticks;
  } while (log->cleaner()->in_progress() && ticks < 10000);
  EXPECT_EQ(log->cleaner()->stats().passes, 1);
  // Mapping and rewriting read the log about twice, 1 KiB per tick.
  EXPECT_GE(static_cast<uint64_t>(ticks), log->cleaner()->stats().bytes_read / 1024 / 2);
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, MinCompactionLagKeepsRecentSegmentsDirty) {
  LogConfig c = Compacted();
  c.min_compaction_lag_ms = 60'000;
  auto log = Open(c);
  AppendUpdates(*log, 300, 5);
  Checkpoint(*log);
  const auto before = ReadAllBatches(*log);
  CleanAll(*log);
  EXPECT_TRUE(ReadAllBatches(*log) == before);
  now_ += 60'000;
  CleanAll(*log);
  EXPECT_LT(ReadAllBatches(*log).size(), before.size());
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, TimestampsAheadOfTheClockDoNotStallCleaning) {
  auto log = Open(Compacted());
  now_ += 3'600'000;  // records stamped an hour ahead of the broker's clock
  AppendUpdates(*log, 300, 5);
  now_ -= 3'600'000;
  Checkpoint(*log);
  const size_t before = ReadAllBatches(*log).size();
  CleanAll(*log);
  EXPECT_LT(ReadAllBatches(*log).size(), before);
  EXPECT_EQ(log->cleaner()->stats().passes, 1);
}

TEST_P(CleanerTest, ReadsAndTimeLookupsAcrossOffsetGaps) {
  auto log = Open(Compacted());
  for (int i = 0; i < 300; ++i) {
    AppendUpdates(*log, 1, 7, i);
    now_ += 10;
  }
  Checkpoint(*log);
  CleanAll(*log);
  std::vector<std::pair<int64_t, int64_t>> batches;  // retained [base, last]
  for (const auto& b : ReadAllBatches(*log)) {
    RecordBatchView v(b);
    batches.emplace_back(v.base_offset(), v.last_offset());
  }
  ASSERT_LT(batches.size(), 250u) << "there are gaps to read across";
  for (int64_t o = 0; o < log->high_watermark(); ++o) {
    auto slice = log->Read(o, 1);
    ASSERT_TRUE(slice.ok()) << o << ": " << slice.status();
    auto bytes = PartitionLog::ReadBytes(*slice);
    ASSERT_TRUE(bytes.ok());
    RecordBatchView v(*bytes);
    // The batch holding o, or the first retained batch after it.
    auto it =
        std::find_if(batches.begin(), batches.end(), [o](const auto& b) { return b.second >= o; });
    ASSERT_NE(it, batches.end());
    EXPECT_EQ(v.base_offset(), it->first) << "offset " << o;
  }
  // Time lookups still land on a record at or after the time.
  for (int64_t t = 1'700'000'000'000; t <= 1'700'000'002'990; t += 97) {
    auto off = log->OffsetForTime(t);
    ASSERT_TRUE(off.ok()) << t;
    bool found = false;
    for (const Rec& r : ReadAllRecords(*log)) {
      if (r.offset >= *off) {
        EXPECT_GE(r.timestamp, t) << "offset " << *off;
        found = true;
        break;
      }
    }
    EXPECT_TRUE(found);
  }
  EXPECT_EQ(log->log_start_offset(), 0);
}

TEST_P(CleanerTest, ReopenAfterCleanCleanlyAndAfterACrash) {
  auto log = Open(Compacted());
  AppendUpdates(*log, 400, 10);
  Checkpoint(*log);
  CleanAll(*log);
  const auto cleaned = ReadAllBatches(*log);
  const int64_t first_dirty = log->cleaner()->first_dirty_offset();
  ASSERT_TRUE(log->Close().ok());
  log.reset();
  log = Open(Compacted());
  EXPECT_TRUE(ReadAllBatches(*log) == cleaned);
  EXPECT_EQ(log->log_start_offset(), 0);
  // The cleaner checkpoint persisted: nothing left to clean.
  EXPECT_FALSE(log->CleanStep(now_, 1 << 30, true));
  EXPECT_EQ(log->cleaner()->first_dirty_offset(), first_dirty);
  AppendUpdates(*log, 200, 10, 400);
  Checkpoint(*log);
  CleanAll(*log);
  const auto again = ReadAllBatches(*log);
  log.reset();  // crash: no Close()
  log = Open(Compacted());
  EXPECT_FALSE(log->recovery_report().clean_shutdown);
  EXPECT_TRUE(ReadAllBatches(*log) == again);
  ExpectConsistent(*log);
  AppendUpdates(*log, 10, 10, 600);
  Checkpoint(*log);
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, RecoveryWithoutACheckpointRevalidatesAcrossGaps) {
  auto log = Open(Compacted());
  AppendUpdates(*log, 400, 10);
  Checkpoint(*log);
  CleanAll(*log);
  AppendUpdates(*log, 30, 10, 400);
  Checkpoint(*log);
  const auto cleaned = ReadAllBatches(*log);
  log.reset();  // crash, and the checkpoint is lost too: every segment is re-validated
  ASSERT_TRUE(RemoveFile(dir_.Sub(absl::StrCat("t-0/", kRecoveryCheckpointFile))).ok());
  log = Open(Compacted());
  EXPECT_EQ(log->recovery_report().bytes_truncated, 0u);
  EXPECT_GT(log->recovery_report().bytes_validated, 0u);
  EXPECT_TRUE(ReadAllBatches(*log) == cleaned);
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, CrashAtEveryStepOfTheSwapRecovers) {
  for (int step = 0; step <= static_cast<int>(SwapStep::kLogRenamed); ++step) {
    SCOPED_TRACE(absl::StrCat("crash after swap step ", step));
    (void)RemoveTree(dir_.Sub("t-0"));
    model_ = Model();
    LogConfig c = Compacted();
    c.segment_bytes = 8192;  // groups of several source segments
    auto log = Open(c);
    c.segment_bytes = 1024;
    log->UpdateConfig(c);  // small source segments, merged into 8 KiB groups by the pass
    AppendUpdates(*log, 300, 10);
    Checkpoint(*log);
    c.segment_bytes = 8192;
    log->UpdateConfig(c);
    const auto before = ReadAllBatches(*log);
    LogCleaner::TEST_CrashAfter(step);
    for (int i = 0; i < 100 && log->CleanStep(now_, 1 << 30, true); ++i) {
    }
    LogCleaner::TEST_CrashAfter(-1);
    log.reset();  // the process dies here
    log = Open(c);
    ASSERT_NE(log, nullptr);
    EXPECT_TRUE(StrayFiles().empty());
    ExpectConsistent(*log);
    const auto after = ReadAllBatches(*log);
    if (step == 0) EXPECT_TRUE(after == before) << "uncommitted output is discarded";
    if (step >= 1) EXPECT_LT(after.size(), before.size()) << "a committed swap is completed";
    // The log goes on: appends, a full clean, a reopen.
    AppendUpdates(*log, 50, 10, 300);
    Checkpoint(*log);
    CleanAll(*log);
    ExpectConsistent(*log);
    ASSERT_TRUE(log->Close().ok());
    log.reset();
    log = Open(c);
    ExpectConsistent(*log);
    EXPECT_TRUE(StrayFiles().empty());
  }
}

TEST_P(CleanerTest, SizeStaysBoundedUnder100kUpdatesOf50Keys) {
  LogConfig c = Compacted();
  c.segment_bytes = 16 << 10;
  c.index_interval_bytes = 4096;
  auto log = Open(c);
  uint64_t max_size = 0;
  for (int i = 0; i < 100'000; ++i) {
    const std::string key = absl::StrCat("group-", i % 50);
    auto r =
        log->Append(Keyed({{key, absl::StrCat("offset=", i)}}, now_), AckLevel::kWritten, nullptr);
    ASSERT_TRUE(r.ok());
    if (i % 200 == 199) {
      now_ += 100;
      log->Tick(now_);
      if (i % 1000 == 999) Checkpoint(*log);
      max_size = std::max(max_size, log->size_bytes());
    }
  }
  Checkpoint(*log);
  for (int i = 0; i < 100 && log->cleaner()->in_progress(); ++i) log->Tick(now_ += 100);
  // 100k records are ~7 MB; the log holds the active segment, the dirty tail (at most about
  // the clean part) and one record per key.
  EXPECT_LT(max_size, 8u * c.segment_bytes) << "peak size";
  EXPECT_LT(log->size_bytes(), 8u * c.segment_bytes);
  EXPECT_GT(log->cleaner()->stats().passes, 50);
  std::map<std::string, std::string> latest;
  for (const Rec& r : ReadAllRecords(*log)) latest[*r.key] = *r.value;
  ASSERT_EQ(latest.size(), 50u);
  for (int k = 0; k < 50; ++k) {
    EXPECT_EQ(latest[absl::StrCat("group-", k)], absl::StrCat("offset=", 99'950 + k));
  }
}

TEST_P(CleanerTest, KeylessRecordsAndUndecodableBatchesAreKept) {
  auto log = Open(Compacted());
  RecordBatchBuilder b(0, now_);
  b.Add(std::nullopt, "no key 1", {}, now_);
  b.Add(std::nullopt, "no key 2", {}, now_);
  ASSERT_TRUE(log->Append(b.Build(), AckLevel::kWritten, nullptr).ok());
  // A "compressed" batch whose records section does not decompress: the cleaner cannot look
  // inside, so it keeps it whole.
  auto gz = Keyed({{"k0", "inside"}}, now_);
  gz[22] |= 1;  // attributes low byte: gzip
  const uint32_t crc = Crc32c(0, gz.data() + kBatchCrcStart, gz.size() - kBatchCrcStart);
  for (int i = 0; i < 4; ++i) gz[17 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  auto r = log->Append(gz, AckLevel::kWritten, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  AppendUpdates(*log, 300, 5);
  Checkpoint(*log);
  CleanAll(*log);
  auto batches = ReadAllBatches(*log);
  int keyless = 0;
  bool compressed_kept = false;
  for (const auto& batch : batches) {
    RecordBatchView v(batch);
    if (v.compression() != Compression::kNone) {
      compressed_kept = true;
      EXPECT_EQ(v.base_offset(), r->base_offset);
      continue;
    }
    auto recs = DecodeRecords(batch);
    ASSERT_TRUE(recs.ok());
    for (const RecordView& rec : *recs) keyless += !rec.key.has_value();
  }
  EXPECT_EQ(keyless, 2);
  EXPECT_TRUE(compressed_kept);
}

// Batches of 4 records each, codecs none, gzip, snappy, lz4, zstd in turn, keys k0..k5: the
// compressed ones are compacted like the others and keep their codec.
TEST_P(CleanerTest, CompressedBatchesAreCompactedAndKeepTheirCodec) {
  auto log = Open(Compacted());
  std::map<int64_t, Compression> codec_at;  // base offset -> codec appended
  for (int i = 0; i < 40; ++i) {
    const auto codec = static_cast<Compression>(i % 5);
    RecordBatchBuilder b(0, now_);
    std::vector<std::pair<std::string, std::string>> kv;
    for (int j = 0; j < 4; ++j) {
      kv.emplace_back(absl::StrCat("k", (i * 4 + j) % 6), absl::StrCat("v", i * 4 + j));
      b.Add(kv.back().first, kv.back().second, {}, now_);
    }
    auto batch = b.BuildCompressed(codec);
    ASSERT_TRUE(batch.ok()) << batch.status();
    auto r = log->Append(*batch, AckLevel::kWritten, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    codec_at[r->base_offset] = codec;
    for (int j = 0; j < 4; ++j) model_.Add(r->base_offset + j, kv[j].first, kv[j].second);
  }
  AppendOne(*log, "k0", std::nullopt);  // a tombstone, in an uncompressed batch
  AppendUpdates(*log, 40, 3, 1000);     // keys k0..k2 again: fills segments past the cleaned part
  Checkpoint(*log);
  const uint64_t before = log->size_bytes();
  CleanAll(*log);
  const CleanerStats& st = log->cleaner()->stats();
  EXPECT_GT(st.bytes_decompressed, 0u);
  EXPECT_GT(st.records_removed, 100);
  EXPECT_LT(log->size_bytes(), before / 2);
  ExpectConsistent(*log);
  ExpectCompactedBelow(*log, log->cleaner()->first_dirty_offset());
  EXPECT_TRUE(StrayFiles().empty());
  std::set<Compression> codecs_left;
  for (const auto& batch : ReadAllBatches(*log)) {
    RecordBatchView v(batch);
    auto it = codec_at.find(v.base_offset());
    if (it == codec_at.end()) continue;
    if (v.records_count() == 0) {
      EXPECT_EQ(v.compression(), Compression::kNone) << "an emptied batch is left uncompressed";
      continue;
    }
    EXPECT_EQ(v.compression(), it->second) << "at " << v.base_offset();
    codecs_left.insert(v.compression());
  }
  // Keys k3..k5 last appear in the compressed batches: one of each codec holds a survivor.
  EXPECT_GE(codecs_left.size(), 2u);
  // Reopened from disk, the cleaned segments validate and read the same.
  log.reset();
  log = Open(Compacted());
  ExpectConsistent(*log);
}

TEST_P(CleanerTest, LastBatchOfAnIdempotentProducerStaysAsAnEmptyBatch) {
  auto log = Open(Compacted());
  for (int seq = 0; seq < 5; ++seq) {
    RecordBatchBuilder b(0, now_);
    b.set_producer(77, 3, seq);
    b.Add("shared", absl::StrCat("p", seq), {}, now_);
    ASSERT_TRUE(log->Append(b.Build(), AckLevel::kWritten, nullptr).ok());
  }
  AppendOne(*log, "shared", "later");  // supersedes every record of producer 77
  AppendUpdates(*log, 300, 5);
  Checkpoint(*log);
  CleanAll(*log);
  int producer_batches = 0;
  for (const auto& batch : ReadAllBatches(*log)) {
    RecordBatchView v(batch);
    if (v.producer_id() != 77) continue;
    ++producer_batches;
    EXPECT_EQ(v.records_count(), 0);
    EXPECT_EQ(v.base_sequence(), 4) << "the producer's last sequence is kept";
    EXPECT_EQ(v.producer_epoch(), 3);
    EXPECT_EQ(v.base_offset(), 4);
  }
  EXPECT_EQ(producer_batches, 1);
}

TEST_P(CleanerTest, CompactOnlyLogsIgnoreTimeAndSizeRetention) {
  LogConfig c = Compacted();
  c.retention_ms = 1;
  c.retention_bytes = 100;
  auto log = Open(c);
  AppendUpdates(*log, 200, 50);
  Checkpoint(*log);
  const size_t segments = log->segment_count();
  c.cleanup_policy = kCleanupCompact;
  log->UpdateConfig(c);
  log->Tick(now_ += 10'000);
  EXPECT_EQ(log->log_start_offset(), 0);
  EXPECT_GE(log->segment_count(), 2u);
  c.cleanup_policy = kCleanupCompact | kCleanupDelete;
  log->UpdateConfig(c);
  log->Tick(now_ += 10'000);
  EXPECT_GT(log->log_start_offset(), 0) << "with delete too, retention applies";
  EXPECT_LT(log->segment_count(), segments);
}

TEST(FilterBatchTest, HorizonKeepsRecordTimestampsAndProducesAValidBatch) {
  RecordBatchBuilder b(0, 5000);
  b.set_producer(9, 1, 100);
  b.Add("a", "x", {}, 5000);
  const RecordBatchBuilder::Header headers[] = {{"h", std::string("v")}};
  b.Add("b", std::nullopt, headers, 5007);
  b.Add("a", "y", {}, 4990);
  auto batch = b.Build();
  SetBaseOffset(batch, 1000);
  OffsetMap map;
  MapBatch(batch, &map);
  EXPECT_EQ(map.Get("a"), 1002);
  EXPECT_EQ(map.Get("b"), 1001);
  EXPECT_EQ(map.Get("c"), -1);
  std::vector<uint8_t> out;
  BatchFilterInput in{&map, 1'000'000, 500, false};
  BatchFilterResult r = FilterBatch(batch, in, &out);
  ASSERT_EQ(r.fate, BatchFilterResult::kRewritten);
  EXPECT_EQ(r.records_removed, 1);
  ASSERT_TRUE(ValidateBatch(out, 1 << 20).ok());
  RecordBatchView v(out);
  EXPECT_EQ(v.base_offset(), 1000);
  EXPECT_EQ(v.last_offset_delta(), 2);
  EXPECT_EQ(v.records_count(), 2);
  EXPECT_EQ(v.producer_id(), 9);
  EXPECT_EQ(v.base_sequence(), 100);
  EXPECT_EQ(v.max_timestamp(), 5007);
  EXPECT_EQ(v.attributes() & 0x40, 0x40);
  EXPECT_EQ(v.base_timestamp(), 1'000'500);
  auto recs = DecodeRecords(out);
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].offset, 1001);
  EXPECT_EQ((*recs)[0].timestamp, 5007);
  EXPECT_FALSE((*recs)[0].value.has_value());
  ASSERT_EQ((*recs)[0].headers.size(), 1u);
  EXPECT_EQ((*recs)[1].offset, 1002);
  EXPECT_EQ((*recs)[1].timestamp, 4990);
  // Past the horizon the tombstone goes; the batch is emptied and dropped...
  BatchFilterInput later{&map, 1'000'500, 500, false};
  std::vector<uint8_t> out2;
  auto r2 = FilterBatch(out, later, &out2);
  ASSERT_EQ(r2.fate, BatchFilterResult::kRewritten);
  EXPECT_EQ(r2.tombstones_removed, 1);
  ASSERT_TRUE(ValidateBatch(out2, 1 << 20).ok());
  EXPECT_EQ(RecordBatchView(out2).records_count(), 1);
  // ...and a batch with nothing left is dropped unless it must stay (then empty).
  OffsetMap newer;
  newer.Put("a", 5000);
  newer.Put("b", 5000);
  std::vector<uint8_t> out3;
  EXPECT_EQ(FilterBatch(batch, {&newer, 0, 500, false}, &out3).fate, BatchFilterResult::kDropped);
  EXPECT_EQ(FilterBatch(batch, {&newer, 0, 500, true}, &out3).fate, BatchFilterResult::kRewritten);
  ASSERT_TRUE(ValidateBatch(out3, 1 << 20).ok());
  EXPECT_EQ(RecordBatchView(out3).records_count(), 0);
  EXPECT_EQ(RecordBatchView(out3).last_offset(), 1002);
}

class CompressedFilterBatchTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CompressedFilterBatchTest, FiltersInsideAndRecompressesWithTheSameCodec) {
  RecordBatchBuilder b(0, 5000);
  b.set_producer(9, 1, 100);
  b.Add("a", std::string(300, 'x'), {}, 5000);
  b.Add("b", std::nullopt, {}, 5007);
  b.Add("a", std::string(300, 'y'), {}, 4990);
  b.Add(std::nullopt, "keyless", {}, 5001);
  auto built = b.BuildCompressed(GetParam());
  ASSERT_TRUE(built.ok()) << built.status();
  std::vector<uint8_t> batch = *built;
  SetBaseOffset(batch, 1000);
  OffsetMap map;
  EXPECT_GT(MapBatch(batch, &map), batch.size());
  EXPECT_EQ(map.Get("a"), 1002);
  EXPECT_EQ(map.Get("b"), 1001);

  std::vector<uint8_t> out;
  BatchFilterResult r = FilterBatch(batch, {&map, 1'000'000, 500, false}, &out);
  ASSERT_EQ(r.fate, BatchFilterResult::kRewritten);
  EXPECT_EQ(r.records_removed, 1);
  EXPECT_GT(r.decompressed_bytes, 0u);
  ASSERT_TRUE(ValidateBatch(out, 1 << 20).ok());
  RecordBatchView v(out);
  EXPECT_EQ(v.compression(), GetParam());
  EXPECT_EQ(v.base_offset(), 1000);
  EXPECT_EQ(v.last_offset_delta(), 3);
  EXPECT_EQ(v.records_count(), 3);
  EXPECT_EQ(v.producer_id(), 9);
  EXPECT_EQ(v.max_timestamp(), 5007);
  EXPECT_EQ(v.attributes() & 0x40, 0x40) << "the kept tombstone gets a delete horizon";
  EXPECT_LT(out.size(), batch.size());
  std::vector<uint8_t> scratch;
  auto recs = DecompressAndDecodeRecords(out, 1 << 20, &scratch);
  ASSERT_TRUE(recs.ok()) << recs.status();
  ASSERT_EQ(recs->size(), 3u);
  EXPECT_EQ((*recs)[0].offset, 1001);
  EXPECT_EQ((*recs)[0].timestamp, 5007);
  EXPECT_EQ((*recs)[1].offset, 1002);
  EXPECT_EQ((*recs)[1].timestamp, 4990);
  EXPECT_EQ((*recs)[1].value, std::string(300, 'y'));
  EXPECT_EQ((*recs)[2].offset, 1003);
  EXPECT_FALSE((*recs)[2].key.has_value());

  // Nothing to remove and a horizon already set: the compressed bytes are kept as they are.
  std::vector<uint8_t> out2;
  EXPECT_EQ(FilterBatch(out, {&map, 1'000'000, 500, false}, &out2).fate,
            BatchFilterResult::kKeepAsIs);

  // Everything superseded: dropped, or kept as an empty batch, which is left uncompressed.
  OffsetMap newer;
  newer.Put("a", 5000);
  newer.Put("b", 5000);
  RecordBatchBuilder keyed(0, 5000);
  keyed.Add("a", "1");
  keyed.Add("b", "2");
  auto only_keyed = keyed.BuildCompressed(GetParam());
  ASSERT_TRUE(only_keyed.ok());
  std::vector<uint8_t> out3;
  EXPECT_EQ(FilterBatch(*only_keyed, {&newer, 0, 500, false}, &out3).fate,
            BatchFilterResult::kDropped);
  ASSERT_EQ(FilterBatch(*only_keyed, {&newer, 0, 500, true}, &out3).fate,
            BatchFilterResult::kRewritten);
  ASSERT_TRUE(ValidateBatch(out3, 1 << 20).ok());
  EXPECT_EQ(RecordBatchView(out3).records_count(), 0);
  EXPECT_EQ(RecordBatchView(out3).compression(), Compression::kNone);
  EXPECT_EQ(RecordBatchView(out3).last_offset_delta(), 1);
}

TEST_P(CompressedFilterBatchTest, ControlAndUndecodableBatchesAreKeptWhole) {
  RecordBatchBuilder b(0, 5000);
  b.Add("a", "1");
  b.Add("a", "2");
  auto built = b.BuildCompressed(GetParam());
  ASSERT_TRUE(built.ok());
  OffsetMap map;
  map.Put("a", 1);
  std::vector<uint8_t> out;
  // Corrupt the compressed section (the CRC is not the filter's business).
  std::vector<uint8_t> bad = *built;
  bad.resize(bad.size() - 3);
  bad[11] -= 3;  // batchLength
  OffsetMap seen;
  EXPECT_EQ(MapBatch(bad, &seen), 0u);
  EXPECT_EQ(seen.size(), 0u);
  EXPECT_EQ(FilterBatch(bad, {&map, 0, 500, false}, &out).fate, BatchFilterResult::kKeepAsIs);
  // A control batch is never looked into.
  std::vector<uint8_t> control = *built;
  control[22] |= 0x20;
  EXPECT_EQ(FilterBatch(control, {&map, 0, 500, false}, &out).fate, BatchFilterResult::kKeepAsIs);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CompressedFilterBatchTest,
                         ::testing::Values(Compression::kGzip, Compression::kSnappy,
                                           Compression::kLz4, Compression::kZstd),
                         [](const auto& info) { return CompressionName(info.param); });

}  // namespace
}  // namespace sluice::storage
