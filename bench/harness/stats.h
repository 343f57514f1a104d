// Counters and latency histograms of one producer or consumer.
//
// Ownership: a worker thread (and the driver callbacks it runs) writes; the collector thread
// reads once a second with Collect(), which takes the interval histograms and leaves empty
// ones behind. Counters are relaxed atomics; histograms sit behind a mutex that only the
// writer and the once-a-second collector take, so it is uncontended in practice.
#ifndef SLUICE_BENCH_HARNESS_STATS_H_
#define SLUICE_BENCH_HARNESS_STATS_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "bench/harness/histogram.h"

namespace sluice::bench {

// Payload layout: the first 8 bytes carry the producer's wall-clock send time in ns
// (little-endian, host order; same machine). Shorter payloads carry no timestamp.
inline constexpr size_t kTimestampBytes = 8;

inline void StampPayload(char* payload, size_t size, int64_t wall_ns) {
  if (size >= kTimestampBytes) std::memcpy(payload, &wall_ns, kTimestampBytes);
}

inline int64_t PayloadTimestamp(const void* payload, size_t size) {
  int64_t ts = 0;
  if (size >= kTimestampBytes) std::memcpy(&ts, payload, kTimestampBytes);
  return ts;
}

struct ProducerCounters {
  uint64_t sent = 0;
  uint64_t acked = 0;  // Confirmed by the broker (or sent, when the driver has no confirms).
  uint64_t failed = 0;
  uint64_t bytes_acked = 0;
};

class ProducerStats {
 public:
  // A message left the client at sent_ns; it was due at intended_ns.
  void OnSent(int64_t intended_ns, int64_t sent_ns) {
    sent_.fetch_add(1, std::memory_order_relaxed);
    if (intended_ns > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      delay_.Record(sent_ns - intended_ns);
    }
  }
  // The broker confirmed a message sent at sent_ns (monotonic ns).
  void OnAcked(int64_t sent_ns, int64_t ack_ns, int bytes) {
    acked_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu_);
    latency_.Record(ack_ns - sent_ns);
  }
  // Counted as published without a confirm (confirms off, acks=0).
  void OnPublishedUnconfirmed(int bytes) {
    acked_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void OnFailed(uint64_t n) { failed_.fetch_add(n, std::memory_order_relaxed); }

  // Collector side: totals so far, and the interval histograms (moved out).
  ProducerCounters Counters() const {
    return {sent_.load(std::memory_order_relaxed), acked_.load(std::memory_order_relaxed),
            failed_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
  }
  void TakeHistograms(Histogram* latency, Histogram* delay) {
    std::lock_guard<std::mutex> lock(mu_);
    latency->Merge(latency_);
    delay->Merge(delay_);
    latency_.Reset();
    delay_.Reset();
  }

 private:
  std::atomic<uint64_t> sent_{0}, acked_{0}, failed_{0}, bytes_{0};
  std::mutex mu_;
  Histogram latency_;  // sent -> confirmed.
  Histogram delay_;    // intended -> sent.
};

struct ConsumerCounters {
  uint64_t received = 0;
  uint64_t bytes = 0;
};

class ConsumerStats {
 public:
  explicit ConsumerStats(bool record_e2e = true) : record_e2e_(record_e2e) {}

  // A message arrived at recv_wall_ns; its payload carries the send time.
  void OnReceived(const void* payload, size_t size, int64_t recv_wall_ns) {
    received_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(size, std::memory_order_relaxed);
    if (!record_e2e_) return;
    const int64_t ts = PayloadTimestamp(payload, size);
    if (ts <= 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    e2e_.Record(recv_wall_ns - ts);
  }

  // The same when the driver has already read the payload's timestamp (0 = none).
  void OnReceivedTimestamp(uint64_t size, int64_t send_wall_ns, int64_t recv_wall_ns) {
    received_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(size, std::memory_order_relaxed);
    if (!record_e2e_ || send_wall_ns <= 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    e2e_.Record(recv_wall_ns - send_wall_ns);
  }

  ConsumerCounters Counters() const {
    return {received_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
  }
  void TakeHistogram(Histogram* e2e) {
    std::lock_guard<std::mutex> lock(mu_);
    e2e->Merge(e2e_);
    e2e_.Reset();
  }

 private:
  const bool record_e2e_;
  std::atomic<uint64_t> received_{0}, bytes_{0};
  std::mutex mu_;
  Histogram e2e_;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_STATS_H_
