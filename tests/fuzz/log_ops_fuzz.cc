// Operation-sequence fuzzer for PartitionLog: the input is a program of appends, submits,
// reads, time lookups, ticks, log-start moves, truncations (TruncateTo), clean restarts, crash
// restarts and power cuts (through the fault Env, tests/fs/fault_env.h). After every step the
// log must agree with a simple model: every written batch readable byte for byte at its
// offsets, offsets contiguous, buffered (never written) batches gone after a crash, and after a
// power cut a prefix of the written batches left that holds at least every batch that was
// fdatasync'ed (a truncation lowers the durable offset to its cut: what it removed never comes
// back, as any batch found at an offset must be the model's).
// Some appends lend their batch (zero-copy Append with a keep-alive; the log's threshold is
// lowered so that these small batches take that path): their buffers must be released once
// everything is written, and never modified.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "tests/fs/fault_env.h"
#include "tests/fuzz/fuzz_fs.h"

using namespace sluice::storage;

namespace {

#define Check(cond)                                                                    \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      fprintf(stderr, "log_ops_fuzz: check failed at line %d: %s\n", __LINE__, #cond); \
      abort();                                                                         \
    }                                                                                  \
  } while (0)

struct Model {
  std::map<int64_t, std::vector<uint8_t>> written;  // base offset -> stored bytes
  std::map<int64_t, std::vector<uint8_t>> buffered;
  int64_t start = 0;
};

class Program {
 public:
  Program(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Next() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Op 1 (submit) followed by this byte is a truncation instead: no input of the corpus had it
// there when the op was added, so their meaning stayed the same.
constexpr uint8_t kTruncateOp = 0x7e;

// Lent batches of at least this size are written from the caller's buffer (most of the
// fuzzer's batches; the smallest ones are copied although lent, as below the real threshold).
constexpr size_t kLendFromBytes = 100;

LogConfig Config() {
  LogConfig c;
  c.segment_bytes = 2048;
  c.index_interval_bytes = 128;
  c.max_index_bytes = 1024;
  c.retention_ms = -1;
  return c;
}

void CheckReadable(const PartitionLog& log, const Model& m, int64_t offset) {
  auto slice = log.Read(offset, 600);
  Check(slice.ok());
  if (offset == log.high_watermark()) {
    Check(slice->size == 0);
    return;
  }
  Check(slice->size > 0);
  auto bytes = PartitionLog::ReadBytes(*slice);
  Check(bytes.ok());
  size_t pos = 0;
  while (pos < bytes->size()) {
    RecordBatchView v(std::span<const uint8_t>(bytes->data() + pos, bytes->size() - pos));
    auto it = m.written.find(v.base_offset());
    Check(it != m.written.end());
    Check(v.size_bytes() <= bytes->size() - pos);
    Check(std::equal(it->second.begin(), it->second.end(), bytes->begin() + pos));
    if (pos == 0) Check(v.base_offset() <= offset && v.last_offset() >= offset);
    pos += v.size_bytes();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::storage::testing::FuzzFs fs("sluice-opsfuzz");
  const std::string& dir = fs.dir();
  sluice::storage::testing::FaultEnv env(dir, fs.env());
  auto io = IoBackend::CreatePwrite(&env);
  auto opened = PartitionLog::Open(dir, Config(), io.get());
  Check(opened.ok());
  std::unique_ptr<PartitionLog> log = std::move(*opened);
  log->TEST_SetZeroCopyMinBytes(kLendFromBytes);
  // Lent batches' buffers, with what they held when lent (base offset 0).
  std::vector<std::pair<std::shared_ptr<const std::vector<uint8_t>>, std::vector<uint8_t>>> lent;
  // Once every submitted write completed: the log holds no lent buffer and changed none.
  auto check_lent_released = [&lent] {
    for (const auto& [shared, original] : lent)
      Check(shared.use_count() == 1 && *shared == original);
    lent.clear();
  };
  int64_t now = 1'000'000;
  log->TEST_SetClock([&now] { return now; });
  Model m;
  int64_t ts = 1000;
  Program p(data, size);
  const bool trace = getenv("SLUICE_FUZZ_TRACE") != nullptr;
  for (int steps = 0; !p.done() && steps < 200; ++steps) {
    const int op = p.Next() % 8;
    if (trace) {
      std::string segments;
      for (int64_t base : log->segment_base_offsets()) segments += " " + std::to_string(base);
      fprintf(stderr, "step %d op %d: start %ld hw %ld end %ld durable %ld segments%s\n", steps, op,
              log->log_start_offset(), log->high_watermark(), log->log_end_offset(),
              log->durable_offset(), segments.c_str());
    }
    switch (op) {
      case 0: {  // append (copied, or lent when the top bit says so)
        const uint8_t how = p.Next();
        const int records = 1 + how % 4;
        const bool lend = (how & 0x80) != 0;
        const size_t value = p.Next() * 3u;
        ts += p.Next() % 3;
        RecordBatchBuilder b(0, ts);
        for (int i = 0; i < records; ++i) b.Add("k", std::string(value, 'x'), {}, ts);
        std::vector<uint8_t> batch = b.Build();
        absl::StatusOr<AppendResult> r;
        if (lend) {
          auto shared = std::make_shared<const std::vector<uint8_t>>(batch);
          r = log->Append(*shared, shared, AckLevel::kWritten, nullptr);
          lent.emplace_back(std::move(shared), batch);
        } else {
          r = log->Append(batch, AckLevel::kWritten, nullptr);
        }
        Check(r.ok());
        SetBaseOffset(batch, r->base_offset);
        m.buffered[r->base_offset] = std::move(batch);
        break;
      }
      case 1: {  // submit (all, or the shard loop's write-behind) and complete
        const uint8_t how = p.Next();
        if (how == kTruncateOp) {
          // TruncateTo: mostly at one of the last batches, as a follower cuts its tail; with
          // the top bit, an offset that is no cut point (refused, nothing cut).
          const uint8_t sel = p.Next();
          const int64_t start = log->log_start_offset();
          const int64_t end = log->log_end_offset();
          if ((sel & 0x80) != 0) {
            int64_t inside = -1;  // inside a batch of several records, at or above the start
            for (const auto* batches : {&m.written, &m.buffered}) {
              for (const auto& [base, bytes] : *batches) {
                if (base >= start && RecordBatchView(bytes).last_offset() > base) inside = base + 1;
              }
            }
            const bool in_batch = sel % 3 == 2 && inside >= 0;
            const int64_t offset = in_batch ? inside : sel % 3 == 0 ? start - 1 : end + 1;
            Check(absl::IsInvalidArgument(log->TruncateTo(offset)));
            if (in_batch) {  // refused once the buffered batches were written
              m.written.merge(m.buffered);
              m.buffered.clear();
              check_lent_released();
            }
            break;
          }
          std::vector<int64_t> points;
          for (const auto* batches : {&m.written, &m.buffered}) {
            for (const auto& [base, bytes] : *batches) {
              if (base >= start) points.push_back(base);
            }
          }
          points.push_back(end);
          const int64_t cut = points[points.size() - 1 - sel % points.size()];
          if (trace) fprintf(stderr, "  TruncateTo(%ld)\n", cut);
          Check(log->TruncateTo(cut).ok());
          Check(log->log_end_offset() == cut && log->durable_offset() <= cut);
          if (cut == end) break;  // nothing to do: nothing written either
          Check(log->high_watermark() == cut);
          m.written.merge(m.buffered);
          m.buffered.clear();
          m.written.erase(m.written.lower_bound(cut), m.written.end());
          // A crash restart may have brought back a log start below the model's (not yet
          // checkpointed), and the cut may fall between them.
          m.start = std::min(m.start, cut);
          check_lent_released();
          break;
        }
        const bool behind = (how & 1) != 0;
        log->SubmitBuffered(behind ? SubmitMode::kWriteBehind : SubmitMode::kAll);
        io->Submit();
        io->Poll(absl::ZeroDuration());
        // Batches below the high watermark are written; it never cuts a batch in two.
        const int64_t hw = log->high_watermark();
        while (!m.buffered.empty()) {
          auto first = m.buffered.begin();
          if (RecordBatchView(first->second).last_offset() >= hw) {
            Check(first->first >= hw);
            break;
          }
          m.written.insert(m.buffered.extract(first));
        }
        if (!behind) Check(m.buffered.empty() && hw == log->log_end_offset());
        // A chunk with lent batches is never held back: everything lent is written now.
        check_lent_released();
        break;
      }
      case 2: {  // read at an offset
        int64_t span = log->high_watermark() - log->log_start_offset() + 1;
        CheckReadable(*log, m, log->log_start_offset() + p.Next() % span);
        break;
      }
      case 3: {  // time lookup: timestamps never decrease, so the first batch with ts >= t
        int64_t t = 1000 + p.Next() % 300;
        auto off = log->OffsetForTime(t);
        int64_t want = -1;
        for (const auto& [base, bytes] : m.written) {
          if (base < log->log_start_offset() &&
              RecordBatchView(bytes).last_offset() < log->log_start_offset())
            continue;
          if (RecordBatchView(bytes).max_timestamp() >= t) {
            want = std::max(base, log->log_start_offset());
            break;
          }
        }
        if (trace) {
          fprintf(stderr, "  OffsetForTime(%ld): %s, want %ld\n", t,
                  off.ok() ? std::to_string(*off).c_str() : off.status().ToString().c_str(), want);
        }
        if (want < 0)
          Check(absl::IsNotFound(off.status()));
        else
          Check(off.ok() && *off == want);
        break;
      }
      case 4:  // time passes: flush, checkpoint
        now += 1000 * (1 + p.Next() % 4);
        log->Tick(now);  // submits buffered appends too
        io->Submit();
        io->Poll(absl::ZeroDuration());
        m.written.merge(m.buffered);
        m.buffered.clear();
        check_lent_released();
        break;
      case 5: {  // log start moves (as AMQP acks would move it)
        int64_t span = log->high_watermark() - log->log_start_offset() + 1;
        int64_t to = log->log_start_offset() + p.Next() % span;
        Check(log->AdvanceLogStart(to).ok());
        m.start = to;
        break;
      }
      case 6:    // clean restart
      case 7: {  // crash restart (buffered batches were never written), or power cut
        const uint8_t how = p.Next();
        const bool clean = (how & 1) == 0;
        const bool power_cut = !clean && (how & 2) != 0;
        if (clean) {
          Check(log->Close().ok());
          m.written.merge(m.buffered);
        }
        const int64_t durable = log->durable_offset();
        if (power_cut) env.CutPowerNow();
        log.reset();
        check_lent_released();  // written, or dropped with the log
        if (power_cut) {
          sluice::storage::testing::CrashModel crash;
          crash.data = static_cast<sluice::storage::testing::CrashModel::Data>((how >> 2) % 4);
          crash.keep_name_change_prefix = (how & 0x10) != 0;
          crash.seed = p.Next();
          Check(env.RestoreAfterPowerCut(crash).ok());
        }
        auto again = PartitionLog::Open(dir, Config(), io.get());
        Check(again.ok());
        log = std::move(*again);
        log->TEST_SetZeroCopyMinBytes(kLendFromBytes);
        // Buffered appends that a segment roll had already handed to the backend were
        // written (never acknowledged, but present): a prefix of the buffered batches survives.
        for (auto it = m.buffered.begin(); it != m.buffered.end(); ++it) {
          if (it->first >= log->high_watermark()) break;
          m.written.insert(*it);
        }
        m.buffered.clear();
        if (power_cut) {
          // Everything fdatasync'ed survived; of the rest, a prefix (checked byte for byte
          // by the invariants below); the log start may go back to what was checkpointed.
          // When the lost tail lay below a checkpointed log start, the log continues (empty)
          // at that start: its batches go from the model, the end stays at the start.
          Check(log->high_watermark() >= durable);
          for (auto it = m.written.begin(); it != m.written.end();) {
            if (RecordBatchView(it->second).last_offset() >= log->high_watermark()) {
              it = m.written.erase(it);
            } else {
              ++it;
            }
          }
          m.start = log->log_start_offset();
        }
        log->TEST_SetClock([&now] { return now; });
        // A crash may bring back segments below a start offset that was not checkpointed yet.
        Check(log->log_start_offset() <= std::max<int64_t>(m.start, 0) || clean);
        break;
      }
    }
    // Invariants after every step.
    // The log end never falls below the start (the model's start never passes the end).
    int64_t end = std::max<int64_t>(
        std::max<int64_t>(m.start, 0),
        m.written.empty() ? 0 : RecordBatchView(m.written.rbegin()->second).last_offset() + 1);
    if (trace && log->high_watermark() != end) fprintf(stderr, "model end %ld\n", end);
    Check(log->high_watermark() == end);
    Check(log->log_start_offset() <= log->high_watermark());
  }
  // Everything from the log start to the end reads back as the model says.
  for (int64_t o = log->log_start_offset(); o <= log->high_watermark(); o += 7)
    CheckReadable(*log, m, o);
  log.reset();
  return 0;
}
