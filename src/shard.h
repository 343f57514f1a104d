// A shard: one thread that owns a Reactor (sockets, timers) and a LogManager (its partitions'
// logs and their IoBackend), and drives both from one loop.
//
// Threading: created, run and closed on one thread; every object it owns is touched only
// there. Today `sluice` runs one shard on the main thread; more shards would each own a
// disjoint set of partitions and pass work to each other with Reactor::Post.
//
// Loop (see docs/ARCHITECTURE.md, "Threads and ownership"):
//   Reactor::RunOnce  sockets, timers, posted tasks, and the storage eventfd watch, whose
//                     callback runs LogManager::Poll (completions: high watermarks, acks)
//   LogManager::Submit  end of iteration: every append made by this iteration's requests goes
//                     to the IoBackend in one submission (one group-commit fdatasync per file)
//   end-of-iteration hooks  e.g. waking long-poll fetches whose partitions grew
// and a 100 ms reactor timer runs LogManager::Tick (flush.ms, checkpoints, retention).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log/log_manager.h"
#include "net/reactor/reactor.h"
#include "src/broker_config.h"
#include "src/topic_registry.h"

namespace sluice::broker {

class Shard {
 public:
  // Loads the topic registry, opens (recovering) every log of the data dir with its topic's
  // config, and sets up the reactor on the calling thread.
  static absl::StatusOr<std::unique_ptr<Shard>> Create(const BrokerConfig& config);
  ~Shard();

  // Runs the loop until `stop` becomes true (checked at least every 100 ms).
  absl::Status Run(const std::atomic<bool>& stop);
  // One loop iteration, waiting at most `timeout` (tests and fuzzers drive the loop with it).
  absl::Status RunOnce(absl::Duration timeout);
  // Closes every log cleanly (flush, checkpoint, clean-shutdown marker). Call after Run and
  // after the front ends stopped listening.
  absl::Status Close();

  // Called at the end of every loop iteration, after Submit.
  void AddEndOfIterationHook(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }
  // Called before logs close (front ends flush their state, e.g. producer snapshots).
  void AddCloseHook(std::function<void()> hook) { close_hooks_.push_back(std::move(hook)); }

  net::Reactor& reactor() { return *reactor_; }
  storage::LogManager& logs() { return *logs_; }
  TopicRegistry& topics() { return *topics_; }
  const BrokerConfig& config() const { return config_; }

 private:
  explicit Shard(const BrokerConfig& config) : config_(config) {}
  void ScheduleTick();

  const BrokerConfig config_;
  std::unique_ptr<TopicRegistry> topics_;
  std::unique_ptr<storage::LogManager> logs_;
  std::unique_ptr<net::Reactor> reactor_;
  net::WatchId storage_watch_;
  bool watching_storage_ = false;
  std::vector<std::function<void()>> hooks_;
  std::vector<std::function<void()>> close_hooks_;
  bool closed_ = false;
};

}  // namespace sluice::broker
