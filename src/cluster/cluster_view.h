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

// A topic as ZooKeeper holds it (/brokers/topics/<topic>, /config/topics/<topic>).
struct TopicView {
  std::vector<std::vector<int32_t>> replicas;  // per partition, in assignment order
  std::map<std::string, std::string> configs;  // the topic's overrides

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

  // The partition's leader, -1 if it has none (unknown partition, or its broker is not
  // registered). Until partitions are replicated (ZNODES.md) a partition has one replica,
  // which leads it while it is live.
  int32_t LeaderOf(const std::string& topic, int32_t partition) const {
    auto it = topics.find(topic);
    if (it == topics.end() || partition < 0 ||
        static_cast<size_t>(partition) >= it->second.replicas.size()) {
      return -1;
    }
    const std::vector<int32_t>& r = it->second.replicas[static_cast<size_t>(partition)];
    return !r.empty() && brokers.count(r[0]) > 0 ? r[0] : -1;
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
