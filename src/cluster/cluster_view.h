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

namespace sluice::cluster {

struct BrokerEndpoint {
  int32_t id = -1;
  std::string host;  // advertised
  int32_t port = 0;  // Kafka

  bool operator==(const BrokerEndpoint&) const = default;
};

struct ClusterView {
  int32_t my_id = 0;
  std::string cluster_id;
  std::map<int32_t, BrokerEndpoint> brokers;  // registered (live) brokers, by id
  int32_t controller_id = -1;                 // -1: none known
  int32_t controller_epoch = 0;
  bool session_live = false;  // this broker's ZooKeeper session is connected
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
