// The Kafka front end of one shard: the listener, the state its handlers share (topics,
// producer state, waiting fetches) and the operations several handlers need (create/delete
// topics, find a partition's log).
//
// Threading: everything runs on the shard thread.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/reactor/listener.h"
#include "src/kafka/group_coordinator.h"
#include "src/kafka/producer_state.h"
#include "src/shard.h"

namespace sluice::broker {

struct KafkaOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 9092;
  // socket.request.max.bytes: largest request accepted once a connection sent a valid one.
  size_t max_request_bytes = 100 * 1024 * 1024;
  // Largest request accepted before the first valid one: a stranger cannot make the broker
  // allocate much.
  size_t max_first_request_bytes = 64 * 1024;
  absl::Duration handshake_timeout = absl::Seconds(30);
  absl::Duration idle_timeout = absl::Minutes(10);  // connections.max.idle.ms
  // Largest partition count of one topic (each partition is a directory and open files).
  int32_t max_partitions = 10000;
};

// A fetch waiting for data (long poll). `Check` re-runs the fetch when a partition it reads
// grew and answers when enough data arrived; it returns true once answered.
class PendingFetch {
 public:
  virtual ~PendingFetch() = default;
  virtual bool Check() = 0;
};

class KafkaBroker {
 public:
  KafkaBroker(Shard* shard, KafkaOptions options);
  ~KafkaBroker();

  // Binds the listener on the shard's reactor.
  absl::Status Listen();
  void StopListening() { listener_.reset(); }
  uint16_t port() const { return listener_ ? listener_->port() : 0; }
  const KafkaOptions& options() const { return options_; }

  Shard& shard() { return *shard_; }
  TopicRegistry& topics() { return shard_->topics(); }
  net::Reactor& reactor() { return shard_->reactor(); }

  // Registers the topic and creates its logs. InvalidArgument for a bad name or config,
  // AlreadyExists.
  absl::StatusOr<const TopicInfo*> CreateTopic(const std::string& name, int32_t partitions,
                                               std::map<std::string, std::string> overrides);
  absl::Status DeleteTopic(const std::string& name);
  absl::Status AddPartitions(const std::string& name, int32_t count);
  // Replaces a topic's overrides and applies the new config to its open logs.
  absl::Status SetTopicConfig(const std::string& name,
                              std::map<std::string, std::string> overrides);
  // The topic, auto-created (when allowed and enabled) with the default partition count.
  const TopicInfo* FindOrAutoCreate(const std::string& name, bool allow_auto_create);
  // The log of a registered partition (created if its directory is missing), or nullptr.
  storage::PartitionLog* GetLog(const std::string& topic, int32_t partition);

  // Per-partition idempotent-producer state, loaded on first use (see producer_state.h).
  PartitionProducerState* ProducerState(const std::string& topic, int32_t partition,
                                        storage::PartitionLog* log);
  absl::StatusOr<int64_t> NextProducerId() { return topics().NextProducerId(); }

  void AddPendingFetch(std::shared_ptr<PendingFetch> fetch) {
    pending_fetches_.push_back(std::move(fetch));
  }

  // The group coordinator (every group: this broker is node 0), loaded from the offsets topic.
  GroupCoordinator& groups() { return *groups_; }
  bool IsInternalTopic(const std::string& name) const { return name == kOffsetsTopic; }

 private:
  class GroupEnvImpl;
  // Creates `__consumer_offsets` if missing (cleanup.policy=compact) and replays it into a new
  // coordinator.
  void StartGroupCoordinator();
  absl::Status ReplayOffsetsPartition(int32_t partition);

  void OnEndOfIteration();
  void SaveProducerSnapshots();

  Shard* const shard_;
  const KafkaOptions options_;
  std::unique_ptr<net::Listener> listener_;
  absl::flat_hash_map<storage::TopicPartition, std::unique_ptr<PartitionProducerState>>
      producer_state_;
  std::list<std::shared_ptr<PendingFetch>> pending_fetches_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // read by the shard's hooks
  std::unique_ptr<GroupEnv> group_env_;                         // before groups_: outlives it
  std::unique_ptr<GroupCoordinator> groups_;
};

}  // namespace sluice::broker
