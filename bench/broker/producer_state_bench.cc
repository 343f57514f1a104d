// Idempotent-producer bookkeeping on the produce path (Google Benchmark): what each batch with
// a producer id costs its partition (PartitionProducerState::Check, then Record once appended).
//
//   BM_CheckAndRecord/<producers>   batches of <producers> producer ids round robin, each at its
//                                   next sequence (the steady state of a busy partition)
//   BM_NewProducerEveryBatch        every batch from a producer id never seen (a flood of
//                                   fabricated ids: the per-partition bound evicts at steady
//                                   state)
#include <cstdint>

#include "benchmark/benchmark.h"
#include "src/kafka/producer_state.h"

namespace sluice::broker {
namespace {

void BM_CheckAndRecord(benchmark::State& state) {
  const int64_t producers = state.range(0);
  PartitionProducerState s;
  std::vector<int32_t> seq(producers, 0);
  int64_t offset = 0, pid = 0, dup = -1;
  for (auto _ : state) {
    int32_t& next = seq[pid];
    auto verdict = s.Check(pid, 0, next, next, &dup);
    benchmark::DoNotOptimize(verdict);
    s.Record(pid, 0, next, next, offset++);
    ++next;
    if (++pid == producers) pid = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CheckAndRecord)->Arg(1)->Arg(100)->Arg(10000);

void BM_NewProducerEveryBatch(benchmark::State& state) {
  PartitionProducerState s;
  int64_t offset = 0, pid = 1'000'000'000, dup = -1;
  for (auto _ : state) {
    auto verdict = s.Check(pid, 0, 0, 0, &dup);
    benchmark::DoNotOptimize(verdict);
    s.Record(pid++, 0, 0, 0, offset++);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NewProducerEveryBatch)->Iterations(200000);

}  // namespace
}  // namespace sluice::broker

BENCHMARK_MAIN();
