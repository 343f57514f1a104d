// Idempotent-producer state of one partition: per producer id, its epoch and the sequence
// ranges and offsets of its last 5 batches (Kafka's max.in.flight limit for idempotence).
//
// Rules (Check): a batch whose sequence range equals a remembered one is a retry, answered
// with the original offset and not appended; a lower epoch than the known one is
// INVALID_PRODUCER_EPOCH; a higher epoch starts over (sequence must be 0); otherwise the first
// sequence must follow the last one (wrapping at INT32_MAX), else OUT_OF_ORDER_SEQUENCE_NUMBER.
// A producer id never seen is accepted at any sequence (its state may have aged out), as Kafka
// does.
//
// Bounds (the state is client-controlled: any producer id in a batch header creates an entry):
// - `producer.id.expiration.ms` (Kafka's name and default, 1 day): a producer id with no batch
//   appended for that long is forgotten (ExpireIdle; also left out of snapshots and dropped
//   when a snapshot is loaded).
// - `max_producers` per partition (Sluice's, default 10000): beyond it the producer id idle the
//   longest is forgotten, with a log line. A forgotten producer's next batch is accepted as that
//   of a new producer; only a retry of a batch appended before more than `max_producers` other
//   producer ids wrote to the partition would be appended again.
// Memory: about 200 bytes per remembered producer id (Release build), so at most ~2 MB per
// partition with the defaults.
//
// Persistence: a snapshot `producer_state.snapshot` in the partition directory, written at
// clean shutdown, says which offset it covers; on first use the state is loaded from it and the
// batch headers after that offset are replayed from the log. Without a snapshot (crash, first
// run) every batch header from the log start is replayed; replayed producers count as active at
// load time. Format in src/METADATA.md.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::broker {

struct ProducerStateOptions {
  // producer.id.expiration.ms
  int64_t expiration_ms = 86'400'000;
  // Sluice's max.producer.ids.per.partition.
  size_t max_producers = 10'000;
  // Wall-clock milliseconds; absl::Now() when empty (tests inject a manual clock).
  std::function<int64_t()> now_ms;
};

class PartitionProducerState {
 public:
  enum class Verdict { kAppend, kDuplicate, kOutOfOrder, kStaleEpoch };
  struct BatchRange {
    int32_t first_seq;
    int32_t last_seq;
    int64_t base_offset;
  };

  static constexpr size_t kBatchesKept = 5;

  // The sequence of a batch's last record: sequences wrap from INT32_MAX to 0.
  static int32_t LastSequence(int32_t base_sequence, int32_t last_offset_delta) {
    int64_t last = static_cast<int64_t>(base_sequence) + last_offset_delta;
    return static_cast<int32_t>(last > INT32_MAX ? last - INT32_MAX - 1 : last);
  }

  PartitionProducerState() : PartitionProducerState(ProducerStateOptions{}, "") {}
  // `name` (e.g. "orders-3") only appears in log lines.
  PartitionProducerState(ProducerStateOptions options, std::string name);

  // Loads the snapshot in `log`'s directory (if any) and replays later batch headers.
  // Removes the snapshot in `dir`: after the log was cut it may describe batches it no
  // longer holds (Load then replays the whole log).
  static void DiscardSnapshot(const std::string& dir);
  static std::unique_ptr<PartitionProducerState> Load(const storage::PartitionLog& log,
                                                      ProducerStateOptions options = {});

  // `duplicate_offset` is set for kDuplicate.
  Verdict Check(int64_t producer_id, int16_t epoch, int32_t first_seq, int32_t last_seq,
                int64_t* duplicate_offset) const;
  // Remembers an appended batch: the producer becomes the most recently active one.
  void Record(int64_t producer_id, int16_t epoch, int32_t first_seq, int32_t last_seq,
              int64_t base_offset);
  // Forgets producers idle for producer.id.expiration.ms; returns how many.
  size_t ExpireIdle();
  // Writes the snapshot covering everything recorded so far (up to `end_offset`).
  absl::Status SaveSnapshot(const std::string& dir, int64_t end_offset) const;
  size_t producers() const { return index_.size(); }
  // Producer ids forgotten because the partition held max_producers (since creation).
  uint64_t evicted() const { return evicted_; }

 private:
  struct Producer {
    int64_t id = 0;
    int64_t last_active_ms = 0;
    int16_t epoch = 0;
    uint8_t batch_count = 0;
    std::array<BatchRange, kBatchesKept> batches;  // oldest first

    void Push(const BatchRange& r);
  };
  using ProducerList = std::list<Producer>;  // least recently active first

  int64_t Now() const;
  // The producer's entry, created (and the cap applied) when missing, made most recent.
  Producer& Touch(int64_t producer_id, int64_t now_ms);
  size_t ExpireIdleAt(int64_t now_ms);
  void Evict(ProducerList::iterator it);
  void Replay(const storage::PartitionLog& log, int64_t from);
  bool LoadSnapshot(const std::string& path, int64_t* covered);
  void Clear();

  ProducerStateOptions options_;
  std::string name_;
  ProducerList lru_;
  absl::flat_hash_map<int64_t, ProducerList::iterator> index_;
  uint64_t evicted_ = 0;
  bool eviction_logged_ = false;
  int64_t last_eviction_log_ms_ = 0;
  uint64_t evicted_at_last_log_ = 0;
};

}  // namespace sluice::broker
