// Replication of the partitions one shard owns, in cluster mode (docs/ARCHITECTURE.md,
// "Replication"). Kafka's design on ZooKeeper: the controller names each partition's leader,
// leader epoch and ISR in its state znode; every broker applies what the view says
// (ApplyView) to the partitions its shards own.
//
// Leader: stamps its epoch into every batch it appends and records where the epoch begins
// (log/leader_epoch_cache.h); learns each follower's log end from the offsets its Fetch
// requests ask for; keeps the high watermark (the least log end of the ISR; readers see
// nothing past it, PartitionLog::set_replicated_offset) and answers acks=all produces once it
// passed their batch; moves followers in and out of the ISR by replica.lag.time.max.ms with a
// write of the state znode conditional on the version it read (through ClusterMember on shard
// 0). The ISR used for the high watermark is the larger of the current and the one being
// written (KIP-497), so it never counts a replica the write may not remove yet.
//
// Follower: one fetcher per leader broker (an outbound Kafka connection on this shard's
// reactor) first asks the leader where its last leader epoch ends (OffsetsForLeaderEpoch) and
// cuts its log there (KIP-101/279), then fetches from its log end with replica_id = its
// broker id and appends what comes at the leader's offsets (AppendReplicated). It asks for
// more only once those appends are written (flush.messages=1: fdatasync'ed): the offset a
// follower fetches from is what the leader may count as stored on it.
//
// Idempotent-producer state (KafkaBroker::ProducerState) is kept on followers too, from the
// batches they append, so a new leader answers a retried batch with its original offset; a
// follower that cuts its log drops it (and its snapshot) and rebuilds it from the log.
//
// Threading: one per shard, everything on that shard's thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "log/leader_epoch_cache.h"
#include "log/log_manager.h"
#include "net/reactor/reactor.h"
#include "src/cluster/cluster_view.h"

namespace sluice::broker {

class KafkaBroker;

class ReplicaManager {
 public:
  explicit ReplicaManager(KafkaBroker* broker);
  ~ReplicaManager();
  ReplicaManager(const ReplicaManager&) = delete;
  ReplicaManager& operator=(const ReplicaManager&) = delete;

  // Applies the view's leaders, epochs and ISRs to the partitions this shard owns and this
  // broker replicates.
  void ApplyView(std::shared_ptr<const cluster::ClusterView> view);

  // For client requests on a partition: 0 when this broker leads it (and its session is live)
  // at `client_epoch` (-1: not checked); otherwise NOT_LEADER_OR_FOLLOWER, or
  // FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH for a client epoch older / newer than ours.
  int16_t LeaderError(const storage::TopicPartition& tp, int32_t client_epoch) const;
  // The partition's leader epoch while this broker leads it, else -1.
  int32_t LeaderEpoch(const storage::TopicPartition& tp) const;

  // A follower's Fetch asks for `fetch_offset`: it holds everything below. Updates its
  // progress, the ISR and the high watermark. Returns what LeaderError returns, or
  // NOT_LEADER_OR_FOLLOWER for a broker that is no replica.
  int16_t OnFollowerFetch(const storage::TopicPartition& tp, int32_t replica_id,
                          int64_t fetch_offset, int32_t client_epoch);

  // acks=all: NOT_ENOUGH_REPLICAS (19) while the ISR is smaller than min.insync.replicas.
  int16_t CheckMinInsync(const storage::TopicPartition& tp) const;
  // Runs `done` once the high watermark passed `last_offset`: 0, or
  // NOT_ENOUGH_REPLICAS_AFTER_APPEND (20) when the ISR is below min.insync.replicas by then;
  // REQUEST_TIMED_OUT (7) after `timeout`; NOT_LEADER_OR_FOLLOWER if leadership is lost.
  void WaitForReplication(const storage::TopicPartition& tp, int64_t last_offset,
                          absl::Duration timeout, absl::AnyInvocable<void(int16_t)> done);

  // OffsetsForLeaderEpoch (API 23) for one partition this broker leads.
  struct EpochEnd {
    int16_t error = 0;
    int32_t epoch = storage::LeaderEpochCache::kUndefinedEpoch;
    int64_t end_offset = storage::LeaderEpochCache::kUndefinedOffset;
  };
  EpochEnd EndOffsetForEpoch(const storage::TopicPartition& tp, int32_t client_epoch,
                             int32_t epoch);

 private:
  struct Partition;
  class Fetcher;
  friend class Fetcher;

  Partition* Find(const storage::TopicPartition& tp);
  const Partition* Find(const storage::TopicPartition& tp) const;
  void Apply(Partition& p, const cluster::PartitionState& state,
             const std::vector<int32_t>& replicas);
  void BecomeLeader(Partition& p);
  void BecomeFollower(Partition& p);
  void StopLeading(Partition& p, int16_t waiter_error);
  storage::LeaderEpochCache& Epochs(Partition& p);
  // Leader: recomputes the high watermark and answers the acks=all waiters it passed.
  void UpdateHighWatermark(Partition& p);
  void MaybeShrinkIsr(Partition& p, int64_t now_ms);
  void WriteIsr(Partition& p, std::vector<int32_t> isr);
  Fetcher& FetcherFor(int32_t leader_id);
  void Tick();

  KafkaBroker* const broker_;
  const int32_t my_id_;
  std::shared_ptr<const cluster::ClusterView> view_;
  absl::flat_hash_map<storage::TopicPartition, std::unique_ptr<Partition>> partitions_;
  std::map<int32_t, std::unique_ptr<Fetcher>> fetchers_;
  bool reapply_ = false;  // a partition's log was not there yet: apply again at the next tick
  net::TimerId tick_{};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace sluice::broker
