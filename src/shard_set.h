// The broker's shards: one per CPU by default (BrokerConfig::shards), each a thread with its own
// Reactor, LogManager (the partitions it owns, src/shard_map.h) and KafkaBroker listening on the
// Kafka port with SO_REUSEPORT. Shard 0 runs on the thread that calls Start and Run (main's);
// it also owns the topic registry and the group coordinator, and the AMQP front end is created
// on it by the caller.
//
// Start-up: the registry is loaded first; every shard then opens (recovering) its logs in
// parallel; shard 0's listener binds first (so port 0 picks one port for all) and the others
// join it. Shutdown (Stop): every loop stops, every listener closes, close hooks run and
// every shard's logs close cleanly; only when all shards are closed is any reactor destroyed,
// so no shard ever posts to a destroyed reactor.
#pragma once

#include <atomic>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "src/broker_config.h"
#include "src/kafka/kafka_broker.h"
#include "src/shard.h"

namespace sluice::broker {

class ShardSet {
 public:
  // The shard count a config asks for (0 = one per CPU).
  static int ShardCount(const BrokerConfig& config);

  // Opens everything and starts the other shards' loops; Kafka listens when `listen`.
  static absl::StatusOr<std::unique_ptr<ShardSet>> Start(const BrokerConfig& config,
                                                         const KafkaOptions& kafka, bool listen);
  // Stops and joins whatever is still running (Stop first to see its status).
  ~ShardSet();

  int size() const { return count_; }
  Shard& shard0() { return *shard0_; }
  KafkaBroker& kafka0() { return *kafka0_; }
  uint16_t kafka_port() const { return port_; }

  // Runs shard 0's loop on the calling thread until `stop`.
  absl::Status Run(const std::atomic<bool>& stop) { return shard0_->Run(stop); }
  // Stops the Kafka listeners and every loop, closes every shard's logs (call after Run
  // returned and after other front ends on shard 0 stopped listening), and joins the threads.
  // Returns the first close error.
  absl::Status Stop();

 private:
  struct Remote;  // one shard on its own thread
  ShardSet() = default;
  void RunRemote(Remote* r, std::shared_ptr<const TopicSnapshot> topics,
                 std::shared_ptr<const storage::RecoveryPointFiles> points);

  BrokerConfig config_;
  KafkaOptions kafka_options_;
  int count_ = 1;
  uint16_t port_ = 0;
  std::unique_ptr<Shard> shard0_;
  std::unique_ptr<KafkaBroker> kafka0_;
  std::vector<std::unique_ptr<Remote>> remotes_;
  std::unique_ptr<std::latch> closed_;  // every shard closed its logs: reactors may go
  bool stopped_ = false;
  absl::Status stop_status_;
};

}  // namespace sluice::broker
