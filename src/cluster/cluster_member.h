// This broker's membership in a cluster coordinated by ZooKeeper (ZNODES.md): it registers
// itself (ephemeral /brokers/ids/<id>), follows which brokers are registered, takes part in
// the controller election (ephemeral /controller, fenced by /controller_epoch), and
// publishes what it learns as a ClusterView for the request handlers. Runs on shard 0's loop:
// ZooKeeper's answers arrive there (ZkCoordinator), and every step is asynchronous.
//
// A session that expires (the broker was stopped or cut off for longer than the session
// timeout) ends everything it held: the member then opens a new session and starts again
// (registration, election), as a Kafka broker does.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "src/cluster/cluster_view.h"
#include "src/cluster/coordinator.h"

namespace sluice::net {
class Reactor;
}

namespace sluice::cluster {

struct ClusterMemberOptions {
  int32_t broker_id = 0;
  std::string zookeeper;  // HOST:PORT[,HOST:PORT...][/chroot]
  absl::Duration session_timeout = absl::Milliseconds(6000);
  std::string advertised_host;  // what Metadata names this broker by
  int32_t kafka_port = 9092;
};

class ClusterMember {
 public:
  ClusterMember(net::Reactor* loop, ClusterMemberOptions options,
                std::shared_ptr<ClusterViewSource> view);
  // Closes the session: the registration (and the controller role) go at once.
  ~ClusterMember();

  // Opens the first session; the rest follows on the loop. Fails only on a malformed
  // connect string. Loop thread.
  absl::Status Start();

  // A producer id nobody else in the cluster hands out: from this broker's block, claiming
  // the next block of kProducerIdBlockSize from /latest_producer_id_block (a conditional
  // write on the version read) when it runs out. `done` runs on the loop, with Unavailable
  // when ZooKeeper cannot be reached (the client retries). Loop thread.
  static constexpr int64_t kProducerIdBlockSize = 1000;
  void NextProducerId(absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done);

  // Writes a new topic to ZooKeeper (its configs, then its assignment over the live brokers,
  // one replica per partition). Every member then learns it (and makes its logs) from its
  // watch. AlreadyExists: the topic exists; InvalidArgument: a replication factor this
  // cluster cannot give; Unavailable: ZooKeeper cannot be reached. Loop thread.
  void CreateTopic(const std::string& name, int32_t partitions, int32_t replication_factor,
                   const std::map<std::string, std::string>& configs,
                   absl::AnyInvocable<void(absl::Status)> done);
  // A partition leader's ISR change: writes `next` to the partition's state znode if its
  // version is still `version`. `done` runs on the loop (FailedPrecondition-like errors when
  // the version moved: the state watch then brings the newer state). Loop thread.
  void AlterPartitionState(const std::string& topic, int32_t partition, const PartitionState& next,
                           int32_t version, absl::AnyInvocable<void(absl::Status)> done);
  // Called on the loop after every change of the published view (topics to materialize).
  void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

  bool registered() const { return registered_; }
  bool is_controller() const { return is_controller_; }
  int32_t controller_epoch() const { return controller_epoch_; }

 private:
  void Connect();
  void OnSession(SessionState state);
  void Bootstrap(size_t step);
  void ReadClusterId();
  void Register();
  void WatchBrokers();
  void WatchController();
  void WatchTopics();
  // Follows one partition's state znode (every member).
  void WatchState(const std::string& topic, int32_t partition);
  // Controller: makes every partition's state agree with the live brokers (creates missing
  // states, elects leaders for partitions whose leader is gone or that have none).
  void Reconcile();
  // Once per loop turn, however many states, brokers or topics changed in it: a pass visits
  // every partition.
  void ReconcileSoon();
  void WriteState(const std::string& topic, int32_t partition, const PartitionState& next,
                  bool create);
  void Elect();
  void Publish();
  void PublishSoon();  // once per loop turn, however many partitions changed
  void ClaimProducerIdBlock(int attempt);
  void AnswerProducerIdWaiters(const absl::Status& failure);
  // Runs `fn` after `delay` unless the session changed (or the member went) meanwhile.
  void After(absl::Duration delay, absl::AnyInvocable<void()> fn);
  // An error that is neither expected nor a lost session: say so and try the step again.
  void RetryAfterError(const absl::Status& s, const char* step, void (ClusterMember::*again)());

  net::Reactor* const loop_;
  const ClusterMemberOptions options_;
  const std::shared_ptr<ClusterViewSource> view_;
  std::unique_ptr<Coordinator> zk_;
  uint64_t session_ = 0;  // bumped per session: callbacks of older ones are dropped
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  bool connected_ = false;
  bool bootstrapped_ = false;
  bool registered_ = false;
  bool waiting_for_old_registration_ = false;
  std::string cluster_id_;
  std::map<int32_t, BrokerEndpoint> brokers_;
  uint64_t brokers_round_ = 0;
  int32_t controller_id_ = -1;
  bool is_controller_ = false;
  int32_t controller_epoch_ = 0;
  int32_t controller_epoch_version_ = -1;  // the zkVersion every controller write checks

  std::map<std::string, TopicView> topics_;
  std::set<std::pair<std::string, int32_t>> missing_states_;  // read: no state znode yet
  std::set<std::pair<std::string, int32_t>> writing_states_;  // controller writes in flight
  bool publish_pending_ = false;
  bool reconcile_pending_ = false;
  std::function<void()> on_change_;

  int64_t next_producer_id_ = 0;
  int64_t producer_id_block_end_ = 0;  // exclusive: [next, end) is this broker's to hand out
  bool claiming_producer_ids_ = false;
  std::vector<absl::AnyInvocable<void(absl::StatusOr<int64_t>)>> producer_id_waiters_;
};

}  // namespace sluice::cluster
