// A shard: one thread that owns a Reactor (sockets, timers) and a LogManager (its partitions'
// logs and their IoBackend), and drives both from one loop.
//
// Threading: created, run and closed on one thread; every object it owns is touched only
// there. `sluice` runs one shard per CPU (src/shard_set.h); each owns a disjoint set of
// partitions (src/shard_map.h) and they pass work to each other with Reactor::Post. Shard 0
// also owns the topic registry; the others see topics through snapshots it publishes.
//
// Loop (see docs/ARCHITECTURE.md, "Threads and ownership"):
//   Reactor::RunOnce  sockets, timers, posted tasks, and the storage eventfd watch, whose
//                     callback runs LogManager::Poll (completions: high watermarks, acks)
//   LogManager::Submit  end of iteration: every append made by this iteration's requests goes
//                     to the IoBackend in one submission (one group-commit fdatasync per file)
//   end-of-iteration hooks  e.g. waking long-poll fetches whose partitions grew
// and a 100 ms reactor timer runs LogManager::Tick (flush.ms, checkpoints, retention).
//
// The reactor times every iteration (net/reactor/loop_stats.h: busy time between two polls,
// and how long ready sockets waited), exported per shard on /metrics (src/metrics.h). An
// iteration busy for --slow-loop-iteration-ms or more is logged, at most once per 10 s.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log/log_manager.h"
#include "net/reactor/net_log.h"
#include "net/reactor/reactor.h"
#include "src/broker_config.h"
#include "src/topic_registry.h"

namespace sluice::broker {

class Shard {
 public:
  // Loads the topic registry, opens (recovering) every log of the data dir with its topic's
  // config, and sets up the reactor on the calling thread: the only shard of a one-shard broker.
  static absl::StatusOr<std::unique_ptr<Shard>> Create(const BrokerConfig& config);
  // Shard `index` of `count`: opens (recovering) the logs it owns (src/shard_map.h) with the
  // configs of `topics` and the recovery points start-up read (null: read them here), and
  // sets up the reactor on the calling thread. `registry` is given to shard 0 only.
  static absl::StatusOr<std::unique_ptr<Shard>> Create(
      const BrokerConfig& config, int index, int count, std::unique_ptr<TopicRegistry> registry,
      std::shared_ptr<const TopicSnapshot> topics,
      std::shared_ptr<const storage::RecoveryPointFiles> recovery_points = nullptr);
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
  // The registry: shard 0 only.
  TopicRegistry& topics() { return *topics_; }
  bool has_registry() const { return topics_ != nullptr; }
  const BrokerConfig& config() const { return config_; }
  int index() const { return index_; }
  // The topics as this shard knows them (kept current by the Kafka front end).
  const TopicSnapshot& topic_snapshot() const { return *snapshot_; }
  void set_topic_snapshot(std::shared_ptr<const TopicSnapshot> s) { snapshot_ = std::move(s); }
  int count() const { return count_; }

 private:
  explicit Shard(const BrokerConfig& config) : config_(config) {}
  void ScheduleTick();
  // After each reactor poll: warns about the iteration that ended there if it was slow.
  void CheckIterationTime();

  const BrokerConfig config_;
  int index_ = 0;
  int count_ = 1;
  std::unique_ptr<TopicRegistry> topics_;
  std::shared_ptr<const TopicSnapshot> snapshot_;
  std::unique_ptr<storage::LogManager> logs_;
  std::unique_ptr<net::Reactor> reactor_;
  net::WatchId storage_watch_;
  bool watching_storage_ = false;
  std::vector<std::function<void()>> hooks_;
  std::vector<std::function<void()>> close_hooks_;
  bool closed_ = false;
  // Slow iterations (--slow-loop-iteration-ms): one warning per interval, with how many more
  // there were since the last one and the longest of them.
  net::LogRateLimiter slow_log_{absl::Seconds(10)};
  absl::Duration slowest_unlogged_ = absl::ZeroDuration();
};

}  // namespace sluice::broker
