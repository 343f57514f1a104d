// What this broker knows of its cluster, as every shard's request handlers read it: the live
// brokers with the address clients should use, the controller, the cluster id. Written by
// ClusterMember on shard 0 as ZooKeeper reports changes; read by any shard (Metadata,
// FindCoordinator, DescribeCluster). A snapshot is immutable: a change publishes a new one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sluice::cluster {

struct BrokerEndpoint {
  int32_t id = -1;
  std::string host;  // advertised
  int32_t port = 0;  // Kafka

  bool operator==(const BrokerEndpoint&) const = default;
};

// A partition's leadership as the controller wrote it
// (/brokers/topics/<topic>/partitions/<p>/state).
struct PartitionState {
  int32_t leader = -1;  // -1: none
  int32_t leader_epoch = 0;
  int32_t controller_epoch = 0;
  std::vector<int32_t> isr;
  int32_t version = -1;  // the znode's data version (the partition epoch): -1 while unknown

  bool operator==(const PartitionState&) const = default;
};

// A topic as ZooKeeper holds it (/brokers/topics/<topic>, /config/topics/<topic>).
struct TopicView {
  std::vector<std::vector<int32_t>> replicas;  // per partition, in assignment order
  std::map<std::string, std::string> configs;  // the topic's overrides
  std::vector<PartitionState> states;          // per partition; version -1 until read

  bool operator==(const TopicView&) const = default;
};

struct ClusterView {
  int32_t my_id = 0;
  std::string cluster_id;
  std::map<int32_t, BrokerEndpoint> brokers;  // registered (live) brokers, by id
  int32_t controller_id = -1;                 // -1: none known
  int32_t controller_epoch = 0;
  bool session_live = false;                // this broker's ZooKeeper session is connected
  std::map<std::string, TopicView> topics;  // every topic of the cluster

  // The partition's state as the controller last wrote it, or null (unknown partition, or
  // no state read yet).
  const PartitionState* StateOf(const std::string& topic, int32_t partition) const {
    auto it = topics.find(topic);
    if (it == topics.end() || partition < 0 ||
        static_cast<size_t>(partition) >= it->second.states.size()) {
      return nullptr;
    }
    const PartitionState& s = it->second.states[static_cast<size_t>(partition)];
    return s.version >= 0 ? &s : nullptr;
  }
  // The partition's leader, -1 if it has none: the controller elected none (its replicas are
  // down), or has not written its state yet.
  int32_t LeaderOf(const std::string& topic, int32_t partition) const {
    const PartitionState* s = StateOf(topic, partition);
    return s != nullptr ? s->leader : -1;
  }
};

class ClusterViewSource {
 public:
  std::shared_ptr<const ClusterView> Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return view_;
  }
  void Publish(std::shared_ptr<const ClusterView> view) {
    std::lock_guard<std::mutex> lock(mu_);
    view_ = std::move(view);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const ClusterView> view_ = std::make_shared<const ClusterView>();
};

}  // namespace sluice::cluster
