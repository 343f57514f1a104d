// The Kafka front end of one shard: the listener, the state its handlers share (topics,
// producer state, waiting fetches) and the operations several handlers need (create/delete
// topics, find a partition's log).
//
// Threading: everything runs on the shard thread. Every shard has a KafkaBroker; they reach
// each other with RunOn (Reactor::Post). Shard 0's broker owns the topic registry and the group
// coordinator and serves every API but Produce, Fetch, ListOffsets, OffsetForLeaderEpoch and
// ApiVersions for connections of all shards (kafka_connection.h forwards them); after every
// registry change it publishes an immutable TopicSnapshot to the other shards. Produce, Fetch,
// ListOffsets and OffsetForLeaderEpoch are split by partition owner (src/shard_map.h) and run
// on the owners, where each shard's ReplicaManager (cluster mode) keeps their replication.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log/record_batch.h"
#include "net/reactor/listener.h"
#include "src/cluster/cluster_view.h"
#include "src/kafka/group_coordinator.h"
#include "src/kafka/producer_state.h"
#include "src/kafka/replica_manager.h"
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
  // What one connection may queue before the broker stops reading it (src/kafka/responder.h):
  // connection.max.queued.bytes and connection.max.queued.file.ranges.
  uint64_t max_queued_bytes = 4 << 20;
  size_t max_queued_file_ranges = 1024;
  // Shared with the other listeners (src/main.cc): max.connections, max.connections.per.ip,
  // the descriptor budget, the request read timeout.
  net::ListenerLimits listener_limits;
  // --max-decompressed-batch-bytes: largest decompressed records section of a produced
  // compressed batch (INVALID_RECORD beyond); at most storage::kDefaultMaxDecompressedRecordsBytes.
  size_t max_decompressed_batch_bytes = storage::kDefaultMaxDecompressedRecordsBytes;
  // This broker's id (--broker-id; 0 for a single node) and, in cluster mode, the host clients
  // reach it by and the cluster as ZooKeeper shows it (null: a single node, the whole cluster).
  int32_t node_id = 0;
  std::string advertised_host;
  std::shared_ptr<const cluster::ClusterViewSource> cluster;
  // Cluster mode: where InitProducerId takes producer ids (shard 0; the callback runs there),
  // so that no two brokers hand out the same. Unset: the topic registry's own counter.
  std::function<void(absl::AnyInvocable<void(absl::StatusOr<int64_t>)>)> next_producer_id;
  // Cluster mode: where CreateTopics and auto-creation write new topics (ZooKeeper, through
  // shard 0's cluster member; the callback runs there), and the replication factor of topics
  // created without one.
  std::function<void(const std::string& name, int32_t partitions, int32_t replication_factor,
                     const std::map<std::string, std::string>& configs,
                     absl::AnyInvocable<void(absl::Status)> done)>
      create_topic;
  int32_t default_replication_factor = 1;
  // Cluster mode: where a partition's leader writes a new ISR (the state znode, conditional
  // on `version`, through shard 0's cluster member; `done` runs on shard 0).
  std::function<void(const std::string& topic, int32_t partition,
                     const cluster::PartitionState& next, int32_t version,
                     absl::AnyInvocable<void(absl::Status)> done)>
      alter_partition_state;
};

// A fetch waiting for data (long poll), held by the broker of its connection's shard until
// answered. `Check` (end of every loop iteration) returns true once it has been answered.
class PendingFetch {
 public:
  virtual ~PendingFetch() = default;
  virtual bool Check() = 0;
};

// A one-shot watch on partitions owned by this shard, for a long-poll fetch (of any shard):
// `wake` is called (on this shard) at the end of the first iteration in which one partition's
// high watermark differs from the one given. Dropped unfired once `cancelled` is set or after
// `deadline`.
struct PartitionWatch {
  std::vector<std::pair<storage::TopicPartition, int64_t>> watermarks;
  bool replica = false;  // a follower's fetch: watches the written end, not the high watermark
  std::shared_ptr<std::atomic<bool>> cancelled;
  absl::Time deadline;
  absl::AnyInvocable<void()> wake;
};

class KafkaBroker {
 public:
  KafkaBroker(Shard* shard, KafkaOptions options);
  ~KafkaBroker();

  // Binds the listener on the shard's reactor (on `port` instead of options().port: the
  // other shards join the port shard 0 bound).
  absl::Status Listen() { return Listen(options_.port); }
  absl::Status Listen(uint16_t port);
  void StopListening() { listener_.reset(); }
  uint16_t port() const { return listener_ ? listener_->port() : 0; }
  const KafkaOptions& options() const { return options_; }

  Shard& shard() { return *shard_; }
  // The registry: shard 0 only (handlers that use it run there).
  TopicRegistry& topics() { return shard_->topics(); }
  net::Reactor& reactor() { return shard_->reactor(); }

  // Every shard's broker, by shard index (this one included). Set once, before any loop runs;
  // a broker without peers is the only shard.
  void SetPeers(std::shared_ptr<const std::vector<KafkaBroker*>> peers);
  int shard_index() const { return shard_->index(); }
  int shard_count() const { return shard_->count(); }
  int OwnerOf(const std::string& topic, int32_t partition) const;
  // Runs `task` with shard `index`'s broker on that shard: at once when it is this shard,
  // otherwise posted to its reactor (FIFO per posting shard).
  void RunOn(int index, absl::AnyInvocable<void(KafkaBroker&)> task);

  // Topics as this shard sees them: the last published snapshot (on shard 0 it is taken
  // synchronously at every registry change).
  const TopicInfo* FindTopic(const std::string& name) const {
    return shard_->topic_snapshot().Find(name);
  }
  // Shard 0: the registry changed (topics `names`; none for no topic in particular): takes a
  // new snapshot here and posts it to every shard.
  void PublishTopics(const std::vector<std::string>& names);
  // Makes sure the topics exist (auto-creating them on shard 0 when allowed and enabled),
  // then runs `then` on this shard, after this shard's snapshot shows them.
  void EnsureTopics(std::vector<std::string> names, bool allow_auto_create,
                    absl::AnyInvocable<void()> then);

  // Registers the topics, all with one registry write, or none (the first error:
  // InvalidArgument for a bad name or config, OutOfRange for a bad partition count,
  // AlreadyExists). Their logs are created by each owning shard a few per loop iteration (or at
  // once when a request needs one first, GetLog).
  absl::StatusOr<std::vector<const TopicInfo*>> CreateTopics(
      std::vector<TopicRegistry::NewTopic> new_topics);
  // Deletes all of `names` with one registry write, or none; each shard drops its logs.
  absl::Status DeleteTopics(const std::vector<std::string>& names);
  absl::Status AddPartitions(const std::string& name, int32_t count);
  // Replaces a topic's overrides and applies the new config to its open logs.
  absl::Status SetTopicConfig(const std::string& name,
                              std::map<std::string, std::string> overrides);
  // Auto-creates (when allowed and enabled) those of `names` that are missing and valid, with
  // the default partition count and one registry write.
  void AutoCreateTopics(const std::vector<std::string>& names, bool allow_auto_create);
  // The log of a registered partition owned by this shard (created if its directory is
  // missing), or nullptr.
  storage::PartitionLog* GetLog(const std::string& topic, int32_t partition);

  // Per-partition idempotent-producer state, loaded on first use (see producer_state.h).
  PartitionProducerState* ProducerState(const std::string& topic, int32_t partition,
                                        storage::PartitionLog* log);
  // Forgets a partition's producer state (its log was cut: rebuilt from
  // the log on next use), with its snapshot file when that may describe removed batches.
  void DropProducerState(const storage::TopicPartition& tp, bool discard_snapshot);

  // Cluster mode: this shard's replication (null for a single node).
  ReplicaManager* replicas() { return replicas_.get(); }
  // Shard 0, cluster mode: this broker now leads (or no longer leads) an offsets partition:
  // the group coordinator loads (unloads) its groups.
  void OffsetsPartitionRoleChanged(int32_t partition, bool leader);
  // Shard 0, cluster mode: the cluster view changed; every shard applies it.
  void PublishClusterView();
  absl::StatusOr<int64_t> NextProducerId() { return topics().NextProducerId(); }
  // Cluster mode: NOT_LEADER_OR_FOLLOWER unless this broker leads the partition (0 then,
  // and always for a single node or an internal topic), UNKNOWN_TOPIC_OR_PARTITION for a
  // topic the cluster does not have. Any shard.
  // `client_epoch` is the request's current leader epoch (-1: not checked).
  int16_t LeadershipError(const std::string& topic, int32_t partition,
                          int32_t client_epoch = -1) const;

  void AddPendingFetch(std::shared_ptr<PendingFetch> fetch) {
    pending_fetches_.push_back(std::move(fetch));
  }
  void AddWatch(PartitionWatch watch) { watches_.push_back(std::move(watch)); }

  // The group coordinator (every group: this broker is node 0), loaded from the offsets topic.
  // Shard 0 only.
  GroupCoordinator& groups() { return *groups_; }
  bool IsInternalTopic(const std::string& name) const { return broker::IsInternalTopic(name); }

 private:
  class GroupEnvImpl;
  // Creates `__consumer_offsets` if missing (cleanup.policy=compact) and replays it into a new
  // coordinator.
  void StartGroupCoordinator();
  absl::Status ReplayOffsetsPartition(int32_t partition);

  void OnEndOfIteration();
  void ExpireProducers();
  void SaveProducerSnapshots();
  // Installs a snapshot; `names` changed: their logs here are dropped (topic deleted) or get
  // the topic's new config, and the logs this shard owns that are missing are queued for
  // creation.
  void ApplyTopics(std::shared_ptr<const TopicSnapshot> topics,
                   const std::vector<std::string>& names);
  // Logs of new partitions are created in background tasks (net::Reactor::PostBackground), for
  // up to kLogCreationSlice per loop iteration: a CreateTopics of thousands of partitions must
  // not hold the shard's loop (other clients wait meanwhile).
  void QueueLogCreation(storage::TopicPartition tp);
  void CreateQueuedLogs();
  static constexpr absl::Duration kLogCreationSlice = absl::Milliseconds(1);

  Shard* const shard_;
  const KafkaOptions options_;
  std::unique_ptr<net::Listener> listener_;
  absl::flat_hash_map<storage::TopicPartition, std::unique_ptr<PartitionProducerState>>
      producer_state_;
  absl::Time last_producer_expiry_ = absl::InfinitePast();
  std::list<std::shared_ptr<PendingFetch>> pending_fetches_;
  std::list<PartitionWatch> watches_;
  std::deque<storage::TopicPartition> logs_to_create_;
  bool creating_logs_ = false;  // a CreateQueuedLogs task is posted
  std::shared_ptr<const std::vector<KafkaBroker*>> peers_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // read by the shard's hooks
  std::unique_ptr<GroupEnv> group_env_;                         // before groups_: outlives it
  std::unique_ptr<GroupCoordinator> groups_;
  std::unique_ptr<ReplicaManager> replicas_;  // cluster mode
};

}  // namespace sluice::broker
