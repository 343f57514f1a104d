// The interface between the benchmark and a messaging client library.
//
// Threads: the benchmark runs each Producer and each Consumer on its own thread, and calls
// the Driver itself from the main thread only. Drivers report acknowledgements and
// deliveries straight into the ProducerStats / ConsumerStats they were given.
#ifndef SLUICE_BENCH_HARNESS_DRIVER_H_
#define SLUICE_BENCH_HARNESS_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/harness/kafka_wire_reader.h"
#include "bench/harness/stats.h"
#include "bench/harness/workload.h"

namespace sluice::bench {

class Producer {
 public:
  virtual ~Producer() = default;
  // False while the client may not send (e.g. the window of unconfirmed messages is full);
  // the caller then Poll()s until it may.
  virtual bool CanSend() const = 0;
  // Hands one message to the client. sent_ns (monotonic) is remembered to time the confirm.
  // kResourceExhausted: the client's queue is full, Poll() and try again. Other errors are
  // fatal for this producer.
  virtual absl::Status Send(absl::string_view key, absl::string_view payload, int64_t sent_ns) = 0;
  // Serves confirms for up to timeout_us (0: only what has already arrived). Also writes
  // what Push() would.
  virtual absl::Status Poll(int64_t timeout_us) = 0;
  // Writes out messages the driver buffered (called before the producer sleeps).
  virtual absl::Status Push() { return absl::OkStatus(); }
  // Waits until every sent message is confirmed or timeout_ms passes.
  virtual absl::Status Flush(int timeout_ms) = 0;
};

struct ConsumerOptions {
  // Read the topic from its beginning (Kafka: a fresh group at the earliest offset; AMQP:
  // only stream queues, with x-stream-offset=first).
  bool from_start = false;
};

class Consumer {
 public:
  virtual ~Consumer() = default;
  // Begins delivery. The subscription (queue, group) already exists and stores messages
  // from creation on, so a consumer started late finds a backlog.
  virtual absl::Status Start() = 0;
  // Receives what arrives within timeout_us into the stats.
  virtual absl::Status Poll(int64_t timeout_us) = 0;
  // Acknowledges what was received and leaves the subscription.
  virtual absl::Status Close() = 0;
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual absl::string_view name() const = 0;
  // Connects to check the broker speaks the protocol (used by bench/compare).
  virtual absl::Status Probe(int timeout_ms) = 0;
  virtual absl::Status CreateTopic(const std::string& topic, int partitions) = 0;
  virtual absl::Status DeleteTopic(const std::string& topic) = 0;
  // Creates the subscription (queue + binding, or consumer group) without consuming.
  virtual absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const std::string& topic,
                                                                   const std::string& subscription,
                                                                   const ConsumerOptions& options,
                                                                   ConsumerStats* stats) = 0;
  virtual absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(const std::string& topic,
                                                                   ProducerStats* stats) = 0;
  // Reads `topic` from offset 0 to its end without decoding records (bare protocol reads),
  // for the broker-side replay rate. Drivers without such a reader return kUnimplemented.
  virtual absl::StatusOr<WireReplayResult> ReplayWire(const std::string& topic, int partitions,
                                                      int timeout_ms) {
    return absl::UnimplementedError("no wire reader for this protocol");
  }
  // Settings in effect, for the results file.
  virtual std::map<std::string, std::string> Describe() const = 0;
};

// Builds a driver: kind is "kafka" or "amqp"; broker is "host:port"; settings may be empty.
absl::StatusOr<std::unique_ptr<Driver>> MakeDriver(absl::string_view kind,
                                                   const std::string& broker,
                                                   DriverSettings settings);

absl::StatusOr<std::unique_ptr<Driver>> MakeAmqpDriver(const std::string& broker,
                                                       DriverSettings settings);
absl::StatusOr<std::unique_ptr<Driver>> MakeKafkaDriver(const std::string& broker,
                                                        DriverSettings settings);

// Splits "host:port".
absl::Status ParseHostPort(const std::string& broker, std::string* host, int* port);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_DRIVER_H_
