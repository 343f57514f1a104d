// How long a Reactor's loop is busy between two polls for events, and how long ready
// completions wait for it: fixed-bucket histograms recorded by Reactor::RunOnce (see
// net/reactor/README.md, "Loop timing"), read by whoever exports them (the broker's /metrics).
//
// Recording costs no allocation, no lock and no read-modify-write: one writer (the loop
// thread) updates relaxed atomics with plain loads and stores. Any thread may read.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace sluice::net {

// Durations in nanoseconds counted into log-scale buckets, 1-2-5 steps from 10 µs to 10 s
// (a Prometheus histogram's "le" bounds), plus one bucket above 10 s; also their sum and the
// largest one.
class DurationHistogram {
 public:
  // Inclusive upper bounds of the finite buckets: a duration d goes to the first bucket whose
  // bound is >= d.
  static constexpr std::array<int64_t, 19> kBoundsNanos = {
      10'000,        20'000,        50'000,                        // 10 µs ...
      100'000,       200'000,       500'000,                       //
      1'000'000,     2'000'000,     5'000'000,                     // 1 ms ...
      10'000'000,    20'000'000,    50'000'000,                    //
      100'000'000,   200'000'000,   500'000'000,                   //
      1'000'000'000, 2'000'000'000, 5'000'000'000, 10'000'000'000  // 1 s ... 10 s
  };
  // The finite buckets and the one above the last bound.
  static constexpr size_t kBuckets = kBoundsNanos.size() + 1;

  // The bucket `nanos` belongs to (negative durations count as 0).
  static size_t BucketFor(int64_t nanos);

  // Adds one duration. One writer at a time (the loop thread).
  void Record(int64_t nanos);

  struct Snapshot {
    std::array<uint64_t, kBuckets> buckets{};  // per bucket, not cumulative
    uint64_t count = 0;                        // the sum of `buckets`
    int64_t sum_nanos = 0;
    int64_t max_nanos = 0;  // 0 until something was recorded
  };
  // Any thread. Read on the writer's thread it is exact. Read elsewhere, each field is a value
  // it had, but a duration being recorded meanwhile may be in some fields and not yet in
  // others (the count always matches the buckets: it is their sum).
  Snapshot Read() const;

 private:
  static void Add(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_nanos_{0};
  std::atomic<int64_t> max_nanos_{0};
};

// What Reactor::RunOnce records (definitions in net/reactor/README.md, "Loop timing").
struct LoopStats {
  // Below this busy time the loop does not spend a syscall to learn whether the next poll
  // found completions already pending; such iterations record their busy time as ready wait.
  static constexpr int64_t kReadyWaitResolutionNanos = 100'000;

  // Per iteration: its busy time, from the return of one poll to the start of the next.
  DurationHistogram iteration;
  // Per iteration whose poll returned completions of operations (sockets, watched fds): how
  // long they may have waited for the loop.
  DurationHistogram ready_wait;
};

}  // namespace sluice::net
