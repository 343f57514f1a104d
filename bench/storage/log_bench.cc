// Storage engine micro-benchmarks (Google Benchmark). Compare with fio in one run using
// bench/storage/compare-fio, which prints the ratios the targets are stated in.
//
//   BM_BatchLayout      (no measurement) the exact batch sizes, for compare-fio.
//   BM_AppendBuffered   1 KiB records in 16 KiB / 1 MiB batches, 1 and 4 partitions, default
//                       flush policy (page cache): vs fio buffered sequential write. lend:1
//                       passes each produce request's buffer as the keep-alive (zero-copy for
//                       large batches, as the Kafka produce path can), lend:0 the plain Append.
//   BM_AppendDurable    flush.messages=1 with N concurrent appenders per partition: every ack
//                       waits for fdatasync; group commit covers each loop iteration's batches.
//                       vs fio with fdatasync after every write of the batch size.
//   BM_AppendUserSpace  Append's own CPU cost (copy + CRC, or CRC in place), writes discarded.
//   BM_RequestCopy      memcpy of a 1 MiB request (what lending costs a produce path that must
//                       first move the request out of the connection's input buffer).
//   BM_SequentialRead   Read() + pread of whole batches from offset 0.
//   BM_Crc32c           CRC32C over 4 KiB / 64 KiB / 1 MiB (every append validates its batch
//                       with it), per implementation (label; -1 = the one Crc32c() picks).
//   BM_Crc32cCopy       the same with Crc32cCopy (copying appends).
//   BM_RandomLookup     Read(random offset) in a log of SLUICE_BENCH_LOG_GB GiB (default 1):
//                       latency percentiles as counters (p50_us, p99_us, max_us).
//
// Files go to $SLUICE_BENCH_DIR (default ./build/bench-data): put it on the disk fio measures.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "log/crc32c.h"
#include "log/crc32c_internal.h"
#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::storage {
namespace {

std::string BenchDir() {
  const char* env = getenv("SLUICE_BENCH_DIR");
  std::string dir = env ? env : "./build/bench-data";
  (void)CreateDirIfMissing(dir);
  return dir;
}

// A batch of 1 KiB records adding up to about `batch_bytes`.
std::vector<uint8_t> MakeBatch(size_t batch_bytes) {
  RecordBatchBuilder b(0, absl::ToUnixMillis(absl::Now()));
  std::string value(1024 - 20, 'x');
  std::mt19937 rng(1);
  for (char& c : value) c = static_cast<char>('a' + rng() % 26);
  while (b.estimated_size() + 1024 <= batch_bytes || b.records() == 0) b.Add("key", value);
  return b.Build();
}

struct Fixture {
  std::string dir;
  std::unique_ptr<IoBackend> io;
  std::vector<std::unique_ptr<PartitionLog>> logs;

  Fixture(const std::string& name, int partitions, const LogConfig& config) {
    dir = absl::StrCat(BenchDir(), "/", name);
    (void)RemoveTree(dir);
    (void)CreateDirIfMissing(dir);
    // io_uring (default), pwrite, or ring (io_uring with every write through the ring, i.e.
    // done by a kernel worker thread on ext4: an experiment, not what the broker does).
    const std::string kind = getenv("SLUICE_BENCH_IO") ? getenv("SLUICE_BENCH_IO") : "";
    if (kind == "ring") io = IoBackend::TEST_CreateIoUringRingWrites();
    if (io == nullptr) {
      io = IoBackend::Create(kind == "pwrite" ? IoBackendKind::kPwrite : IoBackendKind::kIoUring);
    }
    for (int p = 0; p < partitions; ++p) {
      auto log = PartitionLog::Open(absl::StrCat(dir, "/t-", p), config, io.get());
      if (!log.ok()) abort();
      logs.push_back(std::move(*log));
    }
    // Start from a clean page cache state: earlier runs' dirty pages under writeback would
    // otherwise slow this one down (compare-fio does the same before each fio run).
    ::sync();
  }
  ~Fixture() {
    logs.clear();
    (void)RemoveTree(dir);
  }
};

// Total bytes each append benchmark writes, the same as fio's --size in compare-fio.
int64_t TotalBytes() {
  const char* env = getenv("SLUICE_BENCH_BYTES");
  return env ? atoll(env) : int64_t{2} << 30;
}

// Not a measurement: reports the exact byte size of the batches the append benchmarks write,
// so that compare-fio can also run fio with writes of exactly that size.
void BM_BatchLayout(benchmark::State& state) {
  const std::vector<uint8_t> batch = MakeBatch(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(batch.data());
  state.counters["batch_bytes"] = static_cast<double>(batch.size());
}
BENCHMARK(BM_BatchLayout)->Arg(16 << 10)->Arg(1 << 20)->Iterations(1);

// Produce requests as the Kafka path would hand them to the log: each request's bytes in a
// buffer of its own (one batch per partition), shared with the log, which keeps the buffer
// alive until a zero-copy write of it completes. The benchmark cycles through a few such
// buffers (recently received data: cache-warm, as fio's buffer is) instead of receiving each.
struct ProduceRequests {
  static constexpr int kBuffers = 4;
  std::vector<std::shared_ptr<const std::vector<uint8_t>>> buffers;
  size_t batch_size;

  ProduceRequests(const std::vector<uint8_t>& batch, int partitions) : batch_size(batch.size()) {
    for (int i = 0; i < kBuffers; ++i) {
      auto request = std::make_shared<std::vector<uint8_t>>();
      for (int p = 0; p < partitions; ++p)
        request->insert(request->end(), batch.begin(), batch.end());
      buffers.push_back(std::move(request));
    }
  }
  const std::shared_ptr<const std::vector<uint8_t>>& Get(int64_t n) const {
    return buffers[static_cast<size_t>(n % kBuffers)];
  }
  static std::span<const uint8_t> Batch(const std::vector<uint8_t>& request, int partition,
                                        size_t batch_size) {
    return std::span<const uint8_t>(request).subspan(static_cast<size_t>(partition) * batch_size,
                                                     batch_size);
  }
};

void BM_AppendBuffered(benchmark::State& state) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  const int partitions = static_cast<int>(state.range(1));
  const bool lend = state.range(2) != 0;
  const std::vector<uint8_t> batch = MakeBatch(batch_bytes);
  const ProduceRequests requests(batch, partitions);
  LogConfig config;
  config.retention_ms = -1;
  config.max_batch_bytes = 2 << 20;
  int64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    {
      Fixture f("append-buffered", partitions, config);
      state.ResumeTiming();
      const int64_t rounds = TotalBytes() / static_cast<int64_t>(batch.size() * partitions);
      for (int64_t r = 0; r < rounds; ++r) {
        const auto& request = requests.Get(r);
        for (int p = 0; p < partitions; ++p) {
          std::span<const uint8_t> b = ProduceRequests::Batch(*request, p, batch.size());
          auto result = lend ? f.logs[p]->Append(b, request, AckLevel::kWritten, nullptr)
                             : f.logs[p]->Append(b, AckLevel::kWritten, nullptr);
          if (!result.ok()) abort();
        }
        // One loop iteration of the broker: gather, submit once, reap what completed.
        // (LogManager::Submit's mode: a partial last page may stay buffered.)
        for (auto& log : f.logs) log->SubmitBuffered(SubmitMode::kWriteBehind);
        f.io->Submit();
        f.io->Poll(absl::ZeroDuration());
        bytes += static_cast<int64_t>(batch.size()) * partitions;
      }
      // Done when every byte is in the page cache (as fio without fsync).
      for (auto& log : f.logs) log->SubmitBuffered();
      f.io->Submit();
      while (f.io->pending() > 0) f.io->Poll(absl::Milliseconds(10));
      state.PauseTiming();
    }
    state.ResumeTiming();
  }
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_AppendBuffered)
    ->ArgsProduct({{16 << 10, 1 << 20}, {1, 4}, {1, 0}})
    ->ArgNames({"batch", "partitions", "lend"})
    ->Iterations(1)
    ->Repetitions(3)
    ->ReportAggregatesOnly(false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_AppendDurable(benchmark::State& state) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  const int appenders = static_cast<int>(state.range(1));
  std::vector<uint8_t> batch = MakeBatch(batch_bytes);
  LogConfig config;
  config.retention_ms = -1;
  config.flush_messages = 1;
  config.max_batch_bytes = 2 << 20;
  Fixture f("append-durable", 1, config);
  PartitionLog& log = *f.logs[0];
  int64_t bytes = 0, acks = 0;
  absl::Time start = absl::Now();
  for (auto _ : state) {
    // `appenders` producers each have one batch outstanding; each is answered only when
    // durable, then immediately sends the next (a closed loop, like acks=all producers).
    int64_t pending = 0;
    for (int a = 0; a < appenders; ++a) {
      ++pending;
      if (!log.Append(batch, AckLevel::kDurable,
                      [&](absl::Status s, const AppendResult&) {
                        if (!s.ok()) abort();
                        --pending;
                        ++acks;
                      })
               .ok()) {
        abort();
      }
    }
    log.SubmitBuffered();
    f.io->Submit();
    while (pending > 0) f.io->Poll(absl::Milliseconds(10));
    bytes += static_cast<int64_t>(batch.size()) * appenders;
  }
  state.SetBytesProcessed(bytes);
  state.counters["acks_per_s"] =
      benchmark::Counter(static_cast<double>(acks), benchmark::Counter::kIsRate);
  state.counters["fsyncs"] = static_cast<double>(state.iterations());
  (void)start;
}
BENCHMARK(BM_AppendDurable)
    ->Args({16 << 10, 1})
    ->Args({16 << 10, 16})
    ->Args({16 << 10, 64})
    ->Args({1 << 20, 1})
    ->Args({1 << 20, 4})
    ->ArgNames({"batch", "appenders"})
    ->MinTime(3.0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Completes every write at once without writing: what Append itself costs in user space.
class NullBackend final : public IoBackend {
 public:
  IoBackendKind kind() const override { return IoBackendKind::kPwrite; }
  void Write(int, const uint8_t*, uint32_t len, uint64_t, IoCallback done) override {
    done_.emplace_back(std::move(done), static_cast<int>(len));
  }
  void WriteV(int, std::span<const iovec> iov, uint64_t, IoCallback done) override {
    size_t len = 0;
    for (const iovec& piece : iov) len += piece.iov_len;
    done_.emplace_back(std::move(done), static_cast<int>(len));
  }
  void Sync(int, IoCallback done) override { done_.emplace_back(std::move(done), 0); }
  void SyncDir(const std::string&, IoCallback done) override {
    done_.emplace_back(std::move(done), 0);
  }
  void Unlink(const std::string&, IoCallback done) override {
    done_.emplace_back(std::move(done), 0);
  }
  void Submit() override {}
  int Poll(absl::Duration) override {
    auto done = std::move(done_);
    done_.clear();
    for (auto& [cb, result] : done) cb(result);
    return static_cast<int>(done.size());
  }
  size_t pending() const override { return done_.size(); }

 private:
  std::vector<std::pair<IoCallback, int>> done_;
};

// The user-space part of an append (validation, copy or not, bookkeeping), without the
// kernel's write: lend:0 copies the batch into the write buffer while checking its CRC,
// lend:1 checks it in place. Batches cycle through the produce requests' buffers as above.
void BM_AppendUserSpace(benchmark::State& state) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  const bool lend = state.range(1) != 0;
  const std::vector<uint8_t> batch = MakeBatch(batch_bytes);
  const ProduceRequests requests(batch, 1);
  LogConfig config;
  config.retention_ms = -1;
  config.max_batch_bytes = 2 << 20;
  config.segment_bytes = 1 << 30;
  const std::string dir = absl::StrCat(BenchDir(), "/append-user-space");
  (void)RemoveTree(dir);
  NullBackend io;
  auto log = PartitionLog::Open(dir, config, &io);
  if (!log.ok()) abort();
  int64_t n = 0;
  for (auto _ : state) {
    const auto& request = requests.Get(n++);
    auto result = lend ? (*log)->Append(*request, request, AckLevel::kWritten, nullptr)
                       : (*log)->Append(*request, AckLevel::kWritten, nullptr);
    if (!result.ok()) abort();
    (*log)->SubmitBuffered();
    io.Poll(absl::ZeroDuration());
    // Start over now and then: the log's bookkeeping (and the blocks its preallocation
    // reserves ahead) would otherwise grow with bytes that are never written.
    if (n % static_cast<int64_t>((256 << 20) / batch.size()) == 0) {
      state.PauseTiming();
      log->reset();
      (void)RemoveTree(dir);
      log = PartitionLog::Open(dir, config, &io);
      if (!log.ok()) abort();
      state.ResumeTiming();
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(batch.size()));
  log->reset();
  (void)RemoveTree(dir);
}
BENCHMARK(BM_AppendUserSpace)
    ->ArgsProduct({{16 << 10, 1 << 20}, {0, 1}})
    ->ArgNames({"batch", "lend"})
    ->Unit(benchmark::kMicrosecond);

// What a produce path would pay to move a request out of the connection's input buffer into
// a buffer of its own (to lend it to the log): one memcpy of the request, source and
// destination cycling through a few buffers as the appends' do.
void BM_RequestCopy(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  std::vector<std::vector<uint8_t>> in(ProduceRequests::kBuffers, std::vector<uint8_t>(bytes, 7));
  std::vector<std::vector<uint8_t>> out(ProduceRequests::kBuffers, std::vector<uint8_t>(bytes));
  size_t n = 0;
  for (auto _ : state) {
    std::memcpy(out[n % out.size()].data(), in[n % in.size()].data(), bytes);
    benchmark::ClobberMemory();
    ++n;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_RequestCopy)->Arg(1 << 20);

// A log of `bytes` in 16 KiB batches, built once per process and reused by the read benches.
PartitionLog& SharedLog(int64_t bytes, IoBackend** io_out) {
  static std::unique_ptr<Fixture> fixture;
  if (!fixture) {
    LogConfig config;
    config.retention_ms = -1;
    fixture = std::make_unique<Fixture>("read", 1, config);
    std::vector<uint8_t> batch = MakeBatch(16 << 10);
    PartitionLog& log = *fixture->logs[0];
    for (int64_t written = 0; written < bytes; written += static_cast<int64_t>(batch.size())) {
      if (!log.Append(batch, AckLevel::kWritten, nullptr).ok()) abort();
      if ((written / static_cast<int64_t>(batch.size())) % 64 == 0) {
        log.SubmitBuffered();
        fixture->io->Submit();
        fixture->io->Poll(absl::ZeroDuration());
      }
    }
    if (!log.Flush().ok()) abort();
  }
  *io_out = fixture->io.get();
  return *fixture->logs[0];
}

int64_t LookupLogBytes() {
  const char* env = getenv("SLUICE_BENCH_LOG_GB");
  return static_cast<int64_t>((env ? atof(env) : 1.0) * (1 << 30));
}

// Args: bytes, implementation (internal::Crc32cImpl; -1 = what Crc32c() picks).
internal::Crc32cImpl Crc32cBenchImpl(benchmark::State& state) {
  const auto impl = state.range(1) < 0 ? internal::Crc32cBestImpl()
                                       : static_cast<internal::Crc32cImpl>(state.range(1));
  state.SetLabel(internal::Crc32cImplName(impl));
  if (!internal::Crc32cImplSupported(impl)) state.SkipWithError("not on this CPU");
  return impl;
}

void Crc32cBenchArgs(benchmark::internal::Benchmark* b) {
  for (int64_t impl = -1; impl < static_cast<int64_t>(std::size(internal::kAllCrc32cImpls));
       ++impl) {
    for (int64_t bytes : {4 << 10, 64 << 10, 1 << 20}) b->Args({bytes, impl});
  }
}

void BM_Crc32c(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)));
  std::mt19937 rng(3);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const internal::Crc32cImpl impl = Crc32cBenchImpl(state);
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = internal::Crc32cWith(impl, crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Crc32c)->Apply(Crc32cBenchArgs);

// Crc32cCopy (what a copying append does with each batch): bytes counted once.
void BM_Crc32cCopy(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0))), dst(data.size());
  std::mt19937 rng(3);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const internal::Crc32cImpl impl = Crc32cBenchImpl(state);
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = internal::Crc32cCopyWith(impl, crc, dst.data(), data.data(), data.size());
    benchmark::DoNotOptimize(crc);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(data.size()));
}
BENCHMARK(BM_Crc32cCopy)->Apply(Crc32cBenchArgs);

void BM_SequentialRead(benchmark::State& state) {
  IoBackend* io;
  PartitionLog& log = SharedLog(LookupLogBytes(), &io);
  std::vector<uint8_t> buf(1 << 20);
  int64_t bytes = 0;
  for (auto _ : state) {
    int64_t offset = log.log_start_offset();
    while (offset < log.high_watermark()) {
      auto slice = log.Read(offset, 1 << 20);
      if (!slice.ok() || slice->size == 0) abort();
      if (slice->size > buf.size()) buf.resize(slice->size);
      auto got = PreadFully(slice->file->fd(), buf.data(), slice->size, slice->position);
      if (!got.ok()) abort();
      // Next offset: after the last batch of the slice (walk headers in the buffer).
      size_t pos = 0;
      while (pos < slice->size) {
        RecordBatchView v(std::span<const uint8_t>(buf.data() + pos, slice->size - pos));
        offset = v.last_offset() + 1;
        pos += v.size_bytes();
      }
      bytes += slice->size;
    }
  }
  state.SetBytesProcessed(bytes);
}
BENCHMARK(BM_SequentialRead)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

void BM_RandomLookup(benchmark::State& state) {
  IoBackend* io;
  PartitionLog& log = SharedLog(LookupLogBytes(), &io);
  std::mt19937_64 rng(42);
  const int64_t end = log.high_watermark();
  // Warm: touch the indexes and the pages the lookups read.
  for (int i = 0; i < 20000; ++i)
    benchmark::DoNotOptimize(log.Read(static_cast<int64_t>(rng() % end), 1));
  std::vector<double> micros;
  micros.reserve(1 << 20);
  for (auto _ : state) {
    const int64_t offset = static_cast<int64_t>(rng() % end);
    absl::Time t0 = absl::Now();
    auto slice = log.Read(offset, 1);
    micros.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (!slice.ok() || slice->size == 0) abort();
  }
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double p) { return micros[static_cast<size_t>(p * (micros.size() - 1))]; };
  state.counters["log_gib"] = static_cast<double>(log.size_bytes()) / (1 << 30);
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["p999_us"] = pct(0.999);
  state.counters["max_us"] = micros.back();
}
BENCHMARK(BM_RandomLookup)->Unit(benchmark::kMicrosecond)->Iterations(200000);

}  // namespace
}  // namespace sluice::storage

BENCHMARK_MAIN();
