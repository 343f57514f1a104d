// Per-partition log settings, named after the Kafka topic configs they implement.
#pragma once

#include <cstdint>
#include <limits>

#include "log/record_batch.h"

namespace sluice::storage {

inline constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

struct LogConfig {
  // segment.bytes: roll when the active segment would grow past this. Positions in the offset
  // index are u32, so it is capped at 2 GiB - 1.
  uint32_t segment_bytes = 1u << 30;
  // segment.ms: roll when the active segment's first batch is older than this.
  int64_t segment_ms = 7LL * 24 * 3600 * 1000;
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
};

}  // namespace sluice::storage
