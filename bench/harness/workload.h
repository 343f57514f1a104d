// Workload and driver-settings files (see bench/workloads/README section in bench/README.md).
//
// Workload keys follow OpenMessaging Benchmark's vocabulary, so an OMB workload file runs as
// is; a few extensions (marked "ext") cover what OMB expresses elsewhere or not at all.
#ifndef SLUICE_BENCH_HARNESS_WORKLOAD_H_
#define SLUICE_BENCH_HARNESS_WORKLOAD_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/harness/yaml_lite.h"

namespace sluice::bench {

enum class KeyDistributor { kNoKey, kRandomNano, kKeyRoundRobin };

absl::string_view KeyDistributorName(KeyDistributor k);

struct Workload {
  std::string name;
  int topics = 1;
  int partitions_per_topic = 1;
  int message_size = 1024;   // Bytes; ignored when payload_file is set.
  std::string payload_file;  // Resolved relative to the workload file.
  KeyDistributor key_distributor = KeyDistributor::kNoKey;
  int producers_per_topic = 1;
  int subscriptions_per_topic = 1;
  int consumer_per_subscription = 1;
  // Messages per second over all producers. 0 = search for the maximum sustainable rate.
  double producer_rate = 0;
  double test_duration_seconds = 60;   // testDurationMinutes or (ext) testDurationSeconds.
  double warmup_duration_seconds = 0;  // warmupDurationMinutes or (ext) ...Seconds.
  // Peak shaving: consumers wait until this much is stored, then drain.
  double consumer_backlog_size_gb = 0;
  int64_t consumer_backlog_messages = 0;  // ext: the same threshold in messages.
  // ext: producer rate while draining, as a fraction of the rate reached while building the
  // backlog (0 = producers stop), unless drainProducerRate (msg/s) is given.
  double drain_producer_rate_fraction = 0.5;
  double drain_producer_rate = -1;
  // ext: after the test, read every topic again from the beginning with a fresh
  // subscription (Kafka: new group from offset 0; AMQP stream: x-stream-offset=first).
  bool replay_from_start = false;
  // ext: first target of the max-rate search (msg/s over all producers).
  double rate_search_start = 1000;

  bool backlog_mode() const {
    return consumer_backlog_size_gb > 0 || consumer_backlog_messages > 0;
  }
  int64_t BacklogTargetBytes() const {
    return static_cast<int64_t>(consumer_backlog_size_gb * (1LL << 30));
  }
};

// Parses a workload file's text. base_dir resolves a relative payloadFile.
absl::StatusOr<Workload> ParseWorkload(absl::string_view text, const std::string& base_dir);
absl::StatusOr<Workload> LoadWorkload(const std::string& path);

// Driver settings: a flat key/value view of the file (nested maps become dotted keys and
// block scalars in "k=v" lines stay as they are); each driver reads the keys it knows and
// reports the rest as errors, so a typo does not silently change a benchmark.
class DriverSettings {
 public:
  static absl::StatusOr<DriverSettings> Parse(absl::string_view text);
  static absl::StatusOr<DriverSettings> Load(const std::string& path);

  bool Has(absl::string_view key) const;
  // Typed getters; record the key as used. A malformed value is an error.
  absl::StatusOr<std::string> GetString(absl::string_view key, absl::string_view def);
  absl::StatusOr<int64_t> GetInt(absl::string_view key, int64_t def);
  absl::StatusOr<bool> GetBool(absl::string_view key, bool def);
  // A block of "key=value" lines (Java properties, as OMB's driver files use) or a nested
  // map; both become a map. Missing = empty.
  absl::StatusOr<std::map<std::string, std::string>> GetProperties(absl::string_view key);
  // Error naming every key no getter asked for.
  absl::Status CheckAllUsed() const;
  // All entries as "key: value" lines, for the results file.
  std::map<std::string, std::string> AsMap() const;

 private:
  YamlDoc doc_;
  std::map<std::string, bool> used_;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_WORKLOAD_H_
