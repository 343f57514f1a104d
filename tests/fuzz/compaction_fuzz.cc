// Operation-sequence fuzzer for log compaction: the input is a program of keyed appends
// (values, tombstones, keyless records, idempotent producers), cleaning steps with small
// budgets, time passing, clean and crash restarts, and crashes at each step of the cleaner's
// swap. After every step the log must agree with a model of every record ever appended:
// records read in strictly increasing offsets, each identical to the model's record at that
// offset; per key, the last record read is the model's last one (a tombstone may be gone, and
// then the key entirely); keyless records all still there.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "log/cleaner.h"
#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "tests/fuzz/fuzz_fs.h"

using namespace sluice::storage;

namespace {

#define Check(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "compaction_fuzz: check failed at line %d: %s\n", __LINE__, #cond); \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

struct Rec {
  std::optional<std::string> key;
  std::optional<std::string> value;
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

LogConfig Config() {
  LogConfig c;
  c.cleanup_policy = kCleanupCompact;
  c.segment_bytes = 600;
  c.index_interval_bytes = 100;
  c.max_index_bytes = 1024;
  c.retention_ms = -1;
  c.delete_retention_ms = 1000;
  c.recovery_checkpoint_ms = 0;  // every flush checkpoints: the cleaner may touch everything
  c.cleaner_bytes_per_tick = 256;
  return c;
}

// Every record ever appended (offset -> record), with, kept up to date as records are appended,
// each key's last offset and the number of keyless records.
struct Model {
  std::map<int64_t, Rec> records;
  std::map<std::string, int64_t> last;
  size_t keyless = 0;

  void Add(int64_t offset, const Rec& r) {
    records[offset] = r;
    if (r.key) {
      last[*r.key] = offset;
    } else {
      ++keyless;
    }
  }
};

void CheckLog(const PartitionLog& log, const Model& m, int64_t end) {
  const std::map<int64_t, Rec>& model = m.records;
  Check(log.high_watermark() == end);
  Check(log.log_start_offset() == 0);
  std::map<std::string, int64_t> last_read;  // key -> offset of the last record read
  std::vector<int64_t> keyless;
  int64_t prev = -1;
  int64_t offset = 0;
  while (offset < log.high_watermark()) {
    auto slice = log.Read(offset, 4096);
    Check(slice.ok() && slice->size > 0);
    auto bytes = PartitionLog::ReadBytes(*slice);
    Check(bytes.ok());
    size_t pos = 0;
    while (pos < bytes->size()) {
      std::span<const uint8_t> rest(bytes->data() + pos, bytes->size() - pos);
      RecordBatchView v(rest);
      Check(v.size_bytes() <= rest.size());
      std::span<const uint8_t> batch = rest.first(v.size_bytes());
      Check(ValidateBatch(batch, 1 << 20).ok());
      Check(v.base_offset() > prev);
      auto recs = DecodeRecords(batch);
      Check(recs.ok());
      for (const RecordView& r : *recs) {
        Check(r.offset > prev);
        prev = r.offset;
        auto it = model.find(r.offset);
        Check(it != model.end());
        Check(r.key.has_value() == it->second.key.has_value());
        if (r.key) Check(*r.key == *it->second.key);
        Check(r.value.has_value() == it->second.value.has_value());
        if (r.value) Check(*r.value == *it->second.value);
        if (r.key) {
          last_read[std::string(*r.key)] = r.offset;
        } else {
          keyless.push_back(r.offset);
        }
      }
      prev = std::max(prev, v.last_offset());
      offset = v.last_offset() + 1;
      pos += v.size_bytes();
    }
  }
  Check(keyless.size() == m.keyless);
  for (const auto& [k, o] : m.last) {
    auto it = last_read.find(k);
    if (it == last_read.end()) {
      Check(!model.at(o).value.has_value());  // only a tombstone may vanish, with its key
      continue;
    }
    Check(it->second == o);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::storage::testing::FuzzFs fs("sluice-compactfuzz");
  const std::string& dir = fs.dir();
  auto io = IoBackend::CreatePwrite(fs.env());
  int64_t now = 1'000'000;
  auto open = [&] {
    auto opened = PartitionLog::Open(dir, Config(), io.get());
    Check(opened.ok());
    (*opened)->TEST_SetClock([&now] { return now; });
    return std::move(*opened);
  };
  std::unique_ptr<PartitionLog> log = open();
  Model model;
  int64_t end = 0;
  int32_t sequence = 0;
  Program p(data, size);
  const bool trace = getenv("SLUICE_FUZZ_TRACE") != nullptr;
  for (int steps = 0; !p.done() && steps < 300; ++steps) {
    const int op = p.Next() % 8;
    if (trace) fprintf(stderr, "step %d op %d end %ld\n", steps, op, end);
    switch (op) {
      case 0:
      case 1: {  // append 1-3 records, durable at once
        const uint8_t shape = p.Next();
        RecordBatchBuilder b(0, now);
        const bool idempotent = (shape & 0x80) != 0;
        const int records = 1 + shape % 3;
        if (idempotent) b.set_producer(7, 0, sequence);
        std::vector<Rec> recs;
        for (int i = 0; i < records; ++i) {
          const uint8_t r = p.Next();
          Rec rec;
          if (r % 16 != 15) rec.key = absl::StrCat("k", r % 5);
          if (r % 7 != 6) rec.value = std::string(r % 40, static_cast<char>('a' + r % 26));
          b.Add(rec.key, rec.value, {}, now);
          recs.push_back(rec);
        }
        auto batch = b.Build();
        auto res = log->Append(batch, AckLevel::kWritten, nullptr);
        Check(res.ok());
        for (int i = 0; i < records; ++i) model.Add(res->base_offset + i, recs[i]);
        end = res->last_offset + 1;
        if (idempotent) sequence += records;
        Check(log->Flush().ok());
        break;
      }
      case 2: {  // a cleaning step
        const uint8_t b = p.Next();
        log->CleanStep(now, 64u * (1 + b % 64), (b & 1) != 0);
        break;
      }
      case 3:  // time passes
        now += 100 * (1 + p.Next() % 16);
        log->Tick(now);
        break;
      case 4:  // clean restart
        Check(log->Close().ok());
        log.reset();
        log = open();
        break;
      case 5:  // crash restart (everything was flushed)
        log.reset();
        log = open();
        break;
      case 6: {  // crash at a step of the cleaner's swap
        LogCleaner::TEST_CrashAfter(p.Next() % 6);
        for (int i = 0; i < 50 && log->CleanStep(now, 1 << 20, true); ++i) {
        }
        LogCleaner::TEST_CrashAfter(-1);
        log.reset();
        log = open();
        break;
      }
      case 7: {  // a whole pass
        for (int i = 0; i < 1000 && log->CleanStep(now, 1 << 20, true); ++i) {
        }
        break;
      }
    }
    CheckLog(*log, model, end);
  }
  log.reset();
  return 0;
}
