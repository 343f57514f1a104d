// Log compaction throughput (Google Benchmark): one cleaning pass over a log of keyed updates.
//
//   BM_CleanPass/<keys>   64 MiB of single-record batches (100-byte values) updating <keys>
//                         keys round robin, sealed and checkpointed; the pass (map + rewrite +
//                         swap, no per-tick budget) is timed. bytes_per_second = segment bytes
//                         read by the pass (about twice the log: map and rewrite).
//
// Files go to $SLUICE_BENCH_DIR (default ./build/bench-data), like log_bench.
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "log/cleaner.h"
#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::storage {
namespace {

constexpr uint64_t kLogBytes = 64ull << 20;

std::string BenchDir() {
  const char* env = getenv("SLUICE_BENCH_DIR");
  std::string dir = env ? env : "./build/bench-data";
  (void)CreateDirIfMissing(dir);
  return dir;
}

void BM_CleanPass(benchmark::State& state) {
  const int keys = static_cast<int>(state.range(0));
  const std::string dir = absl::StrCat(BenchDir(), "/clean-pass");
  LogConfig config;
  config.cleanup_policy = kCleanupCompact;
  config.segment_bytes = 16u << 20;
  config.recovery_checkpoint_ms = 0;
  const std::string value(100, 'v');
  uint64_t read = 0;
  for (auto _ : state) {
    state.PauseTiming();
    (void)RemoveTree(dir);
    auto io = IoBackend::CreatePwrite();
    auto opened = PartitionLog::Open(dir, config, io.get());
    if (!opened.ok()) {
      state.SkipWithError(std::string(opened.status().message()).c_str());
      return;
    }
    std::unique_ptr<PartitionLog> log = std::move(*opened);
    const int64_t now = absl::ToUnixMillis(absl::Now());
    for (int64_t i = 0; log->size_bytes() < kLogBytes; ++i) {
      RecordBatchBuilder b(0, now);
      b.Add(absl::StrCat("key-", i % keys), value, {}, now);
      if (!log->Append(b.Build(), AckLevel::kWritten, nullptr).ok()) {
        state.SkipWithError("append failed");
        return;
      }
    }
    (void)log->Flush();
    state.ResumeTiming();
    while (log->CleanStep(now, UINT64_MAX, /*force=*/true)) {
    }
    state.PauseTiming();
    read += log->cleaner()->stats().bytes_read;
    state.counters["output_MiB"] = static_cast<double>(log->size_bytes()) / (1 << 20);
    log.reset();
    (void)RemoveTree(dir);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(read));
}
BENCHMARK(BM_CleanPass)
    ->Arg(1000)
    ->Arg(1000000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

}  // namespace
}  // namespace sluice::storage

BENCHMARK_MAIN();
