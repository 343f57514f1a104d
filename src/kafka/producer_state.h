// Idempotent-producer state of one partition: per producer id, its epoch and the sequence
// ranges and offsets of its last 5 batches (Kafka's max.in.flight limit for idempotence).
//
// Rules (Check): a batch whose sequence range equals a remembered one is a retry, answered
// with the original offset and not appended; a lower epoch than the known one is
// INVALID_PRODUCER_EPOCH; a higher epoch starts over (sequence must be 0); otherwise the first
// sequence must follow the last one (wrapping at INT32_MAX), else OUT_OF_ORDER_SEQUENCE_NUMBER.
// A producer id never seen is accepted at any sequence (its state may have aged out).
//
// Persistence: a snapshot `producer_state.snapshot` in the partition directory, written at
// clean shutdown, says which offset it covers; on first use the state is loaded from it and the
// batch headers after that offset are replayed from the log. Without a snapshot (crash, first
// run) every batch header from the log start is replayed. Format in src/METADATA.md.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::broker {

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

  // Loads the snapshot in `log`'s directory (if any) and replays later batch headers.
  static std::unique_ptr<PartitionProducerState> Load(const storage::PartitionLog& log);

  // `duplicate_offset` is set for kDuplicate.
  Verdict Check(int64_t producer_id, int16_t epoch, int32_t first_seq, int32_t last_seq,
                int64_t* duplicate_offset) const;
  void Record(int64_t producer_id, int16_t epoch, int32_t first_seq, int32_t last_seq,
              int64_t base_offset);
  // Writes the snapshot covering everything recorded so far (up to `end_offset`).
  absl::Status SaveSnapshot(const std::string& dir, int64_t end_offset) const;
  size_t producers() const { return producers_.size(); }

 private:
  struct Producer {
    int16_t epoch = 0;
    std::deque<BatchRange> batches;
  };
  void Replay(const storage::PartitionLog& log, int64_t from);
  bool LoadSnapshot(const std::string& path, int64_t* covered);

  absl::flat_hash_map<int64_t, Producer> producers_;
};

}  // namespace sluice::broker
