// Per-partition log settings, named after the Kafka topic configs they implement.
#pragma once

#include <cstdint>
#include <limits>

#include "log/record_batch.h"

namespace sluice::storage {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// cleanup.policy bits: "delete", "compact" or both ("compact,delete").
inline constexpr uint8_t kCleanupDelete = 1;
inline constexpr uint8_t kCleanupCompact = 2;

struct LogConfig {
  // segment.bytes: roll when the active segment would grow past this. Positions in the offset
  // index are u32, so it is capped at 2 GiB - 1.
  uint32_t segment_bytes = 1u << 30;
  // segment.ms: roll when the active segment's first batch is older than this.
  int64_t segment_ms = 7LL * 24 * 3600 * 1000;
  // Replication settings a topic carries with its config (cluster mode; the log itself does
  // not read them: src/kafka/replica_manager.h does). min.insync.replicas: acks=all needs
  // this many in-sync replicas; replica.lag.time.max.ms: a follower not caught up for this
  // long leaves the ISR.
  int32_t min_insync_replicas = 1;
  int64_t replica_lag_time_max_ms = 30000;
  // index.interval.bytes: one offset/time index entry per this many log bytes.
  uint32_t index_interval_bytes = 4096;
  // segment.index.bytes: preallocated size of each index file.
  uint32_t max_index_bytes = 10u << 20;
  // retention.ms / retention.bytes: delete whole old segments past these (-1 = unlimited).
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
  int64_t retention_bytes = -1;
  // flush.messages / flush.ms: fdatasync after this many messages / this much time. The
  // default (never) leaves flushing to the OS, Kafka-style; flush.messages=1 makes every
  // append wait for durability before it is acknowledged.
  int64_t flush_messages = kNever;
  int64_t flush_ms = kNever;
  // max.message.bytes: largest batch accepted (Kafka's default: 1 MiB + batch overhead).
  uint32_t max_batch_bytes = 1048588;
  // message.timestamp.type
  TimestampType timestamp_type = TimestampType::kCreateTime;
  // How often (ms) dirty data is flushed in the background and the recovery point
  // checkpointed, independent of the flush policy: bounds the tail re-validated after a crash.
  int64_t recovery_checkpoint_ms = 1000;

  // Log compaction (log/cleaner.h). cleanup.policy: with "delete", retention.ms/bytes delete
  // old segments; with "compact", the cleaner keeps the latest record per key. A compact-only
  // log is never shortened by retention.ms/bytes (Kafka's rule).
  uint8_t cleanup_policy = kCleanupDelete;
  // delete.retention.ms: how long a tombstone (null value) survives after the cleaner first
  // retained it (its batch then carries a delete horizon; log/FORMAT.md "Compaction").
  int64_t delete_retention_ms = 24LL * 3600 * 1000;
  // min.cleanable.dirty.ratio: clean when dirty bytes / cleanable bytes reaches this.
  double min_cleanable_dirty_ratio = 0.5;
  // min.compaction.lag.ms: a segment is cleanable only once its newest record is this old.
  int64_t min_compaction_lag_ms = 0;
  // max.compaction.lag.ms: a segment whose newest record is this old is cleaned even below
  // the dirty ratio (Kafka's default: never).
  int64_t max_compaction_lag_ms = kNever;
  // log.cleaner.dedupe.buffer.size (broker-wide in Kafka; per log here): memory for the key
  // map of one cleaning pass, 24 bytes per distinct key. A pass stops mapping at the first
  // segment boundary past it (the rest is cleaned by the next pass).
  uint64_t cleaner_dedupe_buffer_bytes = 128ull << 20;
  // Bytes of segment data the cleaner reads per Tick() on the shard thread (it also writes
  // and fdatasyncs at most this much): bounds the time a Tick spends compacting.
  uint64_t cleaner_bytes_per_tick = 4ull << 20;

  bool compact() const { return (cleanup_policy & kCleanupCompact) != 0; }
  bool delete_retention() const { return (cleanup_policy & kCleanupDelete) != 0; }
};

}  // namespace sluice::storage
