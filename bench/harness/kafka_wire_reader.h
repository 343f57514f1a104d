// Replays a Kafka topic with bare Fetch requests and counts the record bytes, without
// decoding a single record: what the broker can serve from its log (zero-copy from the page
// cache on Sluice), as opposed to what a full client can parse. The client replay in the
// benchmark is bound by per-record work in librdkafka; this one only by the socket.
//
// Protocol: Fetch v4 (not flexible) with header v1, one connection, every partition in each
// request. The reader advances each partition past the last complete batch of a response
// (the broker may cut the last one) until it reaches the high watermark of the first answer.
#ifndef SLUICE_BENCH_HARNESS_KAFKA_WIRE_READER_H_
#define SLUICE_BENCH_HARNESS_KAFKA_WIRE_READER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::bench {

struct WireReplayResult {
  uint64_t record_bytes = 0;  // record-batch bytes of complete batches read
  uint64_t batches = 0;
  uint64_t messages = 0;  // offsets covered (last offset delta + 1 per batch)
  uint64_t fetches = 0;
  double seconds = 0;
};

// Reads `partitions` partitions of `topic` from offset 0 to their end. Fails on a protocol or
// partition error, or when `timeout_ms` passes first.
absl::StatusOr<WireReplayResult> ReplayKafkaWire(const std::string& broker,
                                                 const std::string& topic, int partitions,
                                                 int timeout_ms);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_KAFKA_WIRE_READER_H_
