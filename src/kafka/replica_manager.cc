#include "src/kafka/replica_manager.h"

#include <algorithm>
#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "log/logging.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "net/kafka/error_codes.h"
#include "net/kafka/framing.h"
#include "net/reactor/connect.h"
#include "net/reactor/connection.h"
#include "src/kafka/kafka_broker.h"
#include "src/kafka/offsets_topic.h"

namespace sluice::broker {

namespace errors = kafka::errors;
using storage::TopicPartition;

namespace {

constexpr absl::Duration kTickInterval = absl::Milliseconds(100);
constexpr absl::Duration kConnectTimeout = absl::Seconds(5);
constexpr absl::Duration kRetryBackoff = absl::Milliseconds(200);
// Fetch as a Kafka follower does (replica.fetch.*: one byte enough, 1 MiB per partition,
// 10 MiB per response), but with a long poll of 100 ms instead of 500: a partition given to
// a fetcher whose request is out waits for that request's answer before it is fetched, and
// at a failover that wait delays the new leader's first acknowledgement (measured: up to
// 0.6 s of a 3.1 s failover with 500). An idle follower then asks 10 times a second.
constexpr int32_t kFetchMaxWaitMs = 100;
constexpr int32_t kFetchMaxBytes = 10 << 20;
constexpr int32_t kFetchPartitionMaxBytes = 1 << 20;
// Request versions a Sluice follower sends: the last ones with the classic (non-flexible)
// request header that carry everything it needs (Fetch: current leader epoch; epoch queries:
// replica id).
constexpr int16_t kFetchVersion = 11;
constexpr int16_t kEpochQueryVersion = 3;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

bool Contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

struct ReplicaManager::Partition {
  enum class Role { kNone, kLeader, kFollower };

  TopicPartition tp;
  storage::PartitionLog* log = nullptr;
  Role role = Role::kNone;
  cluster::PartitionState state;  // as last applied
  std::vector<int32_t> replicas;
  std::optional<storage::LeaderEpochCache> epochs;  // loaded on first use

  // Leader.
  struct Follower {
    int64_t end = -1;             // the offset its last fetch asked for (-1: none yet)
    int64_t caught_up_ms = 0;     // last time it had everything the leader had
    int64_t last_fetch_leo = -1;  // the leader's log end at its previous fetch
    int64_t last_fetch_ms = 0;
  };
  std::map<int32_t, Follower> followers;
  int64_t high_watermark = 0;
  std::optional<std::vector<int32_t>> isr_in_flight;  // an ISR write not yet read back
  struct Waiter {
    int64_t last_offset;
    absl::Time deadline;
    absl::AnyInvocable<void(int16_t)> done;
  };
  std::deque<Waiter> waiters;

  // Follower.
  int32_t fetching_from = -1;     // the fetcher it is with
  bool needs_truncation = false;  // ask where its last epoch ends before fetching
  absl::Time retry_at = absl::InfinitePast();

  int32_t min_insync() const { return log->config().min_insync_replicas; }
  int64_t lag_max_ms() const { return log->config().replica_lag_time_max_ms; }
  // The ISR the high watermark waits for: the current one and the one being written.
  std::vector<int32_t> MaximalIsr() const {
    std::vector<int32_t> out = state.isr;
    if (isr_in_flight) {
      for (int32_t r : *isr_in_flight) {
        if (!Contains(out, r)) out.push_back(r);
      }
    }
    return out;
  }
};

// One leader's partitions, fetched over one outbound connection of this shard.
class ReplicaManager::Fetcher {
 public:
  Fetcher(ReplicaManager* manager, int32_t leader_id) : manager_(manager), leader_id_(leader_id) {}
  ~Fetcher() { Disconnect(); }

  void SetEndpoint(const cluster::BrokerEndpoint& ep) {
    if (ep.host == host_ && ep.port == port_) return;
    host_ = ep.host;
    port_ = ep.port;
    Disconnect();  // a re-registered leader may listen elsewhere now
  }

  void Add(Partition* p) {
    p->fetching_from = leader_id_;
    p->needs_truncation = true;
    p->retry_at = absl::InfinitePast();
    partitions_.insert(p->tp);
    Pump();
  }
  void Remove(Partition* p) {
    p->fetching_from = -1;
    partitions_.erase(p->tp);
  }
  bool empty() const { return partitions_.empty(); }

  // Sends the next request when none is in flight and the last response's appends are done.
  void Pump() {
    if (partitions_.empty() || port_ == 0) return;
    if (conn_ == nullptr) {
      if (connect_ == nullptr && absl::Now() >= reconnect_at_) Connect();
      return;
    }
    if (in_flight_ || appends_pending_ > 0) return;
    const absl::Time now = absl::Now();
    std::vector<Partition*> query, fetch;
    for (const TopicPartition& tp : partitions_) {
      Partition* p = manager_->Find(tp);
      if (p == nullptr || p->role != Partition::Role::kFollower || now < p->retry_at) continue;
      if (p->needs_truncation) {
        const storage::LeaderEpochCache& epochs = manager_->Epochs(*p);
        if (epochs.latest_epoch() < 0 && p->log->log_end_offset() == p->log->log_start_offset()) {
          p->needs_truncation = false;  // nothing of its own to compare: just fetch
        } else {
          query.push_back(p);
          continue;
        }
      }
      fetch.push_back(p);
    }
    if (!query.empty()) {
      SendEpochQuery(query);
    } else if (!fetch.empty()) {
      SendFetch(fetch);
    }
  }

 private:
  class Handler final : public net::ConnectionHandler {
   public:
    Handler(Fetcher* f, std::weak_ptr<bool> alive) : f_(f), alive_(std::move(alive)) {}
    void OnData(net::Connection& conn, net::InputBuffer& input) override {
      while (!alive_.expired() && f_->conn_ == &conn) {
        auto span = input.readable();
        auto size = kafka::ParseFrameSize(std::span<const uint8_t>(span.data(), span.size()),
                                          static_cast<size_t>(kFetchMaxBytes) * 2);
        if (absl::IsOutOfRange(size.status())) {
          input.ExpectAtLeast(kafka::kFrameSizePrefixBytes);
          return;
        }
        if (!size.ok()) {
          conn.Close(size.status());
          return;
        }
        const size_t whole = kafka::kFrameSizePrefixBytes + *size;
        if (span.size() < whole) {
          input.ExpectAtLeast(whole);
          return;
        }
        f_->OnFrame(std::span<const uint8_t>(span.data() + kafka::kFrameSizePrefixBytes, *size));
        input.Consume(whole);
      }
    }
    void OnClose(net::Connection& conn, absl::Status reason) override {
      if (alive_.expired() || f_->conn_ != &conn) return;
      f_->OnDisconnected(reason);
    }

   private:
    Fetcher* const f_;
    const std::weak_ptr<bool> alive_;
  };

  void Connect() {
    net::Reactor& reactor = manager_->broker_->reactor();
    std::weak_ptr<bool> alive = alive_;
    connect_ = net::ConnectTcp(
        reactor, host_, port_, kConnectTimeout, [this, alive](absl::StatusOr<int> fd) {
          if (alive.expired()) {
            if (fd.ok()) ::close(*fd);
            return;
          }
          // Destroying the attempt from its own callback is allowed; defer it anyway.
          std::unique_ptr<net::PendingConnect> done = std::move(connect_);
          manager_->broker_->reactor().Post([d = std::move(done)] {});
          if (!fd.ok()) {
            OnDisconnected(fd.status());
            return;
          }
          net::ConnectionOptions opts;
          opts.max_input_bytes = static_cast<size_t>(kFetchMaxBytes) * 4;
          auto conn = manager_->broker_->reactor().AdoptConnection(
              *fd, opts,
              [this](net::Connection&) { return std::make_unique<Handler>(this, alive_); });
          if (!conn.ok()) {
            OnDisconnected(conn.status());
            return;
          }
          conn_ = *conn;
          reported_ = false;
          Pump();
        });
  }

  void Disconnect() {
    connect_.reset();
    in_flight_ = false;
    if (conn_ != nullptr) {
      net::Connection* c = conn_;
      conn_ = nullptr;
      c->Close(absl::CancelledError("replica fetcher reset"));
    }
  }

  void OnDisconnected(const absl::Status& why) {
    conn_ = nullptr;
    in_flight_ = false;
    reconnect_at_ = absl::Now() + kRetryBackoff;
    if (!reported_) {
      storage::LogWarning("replication: connection to leader %d (%s:%d) lost: %s", leader_id_,
                          host_, port_, why.message());
      reported_ = true;
    }
    // The next epoch query (a new connection may reach a leader that changed meanwhile).
    for (const TopicPartition& tp : partitions_) {
      if (Partition* p = manager_->Find(tp)) p->needs_truncation = true;
    }
  }

  void Send(int16_t api_key, int16_t version, const kafka::AnyRequest& body) {
    kafka::RequestHeader h;
    h.api_key = api_key;
    h.api_version = version;
    h.correlation_id = ++correlation_;
    h.client_id = absl::StrCat("sluice-replica-", manager_->my_id_);
    kafka::EncodedFrame frame = kafka::EncodeRequest(h, body);
    conn_->Send(frame.Flatten([](uint64_t, std::span<uint8_t>) {}));
    in_flight_ = true;
    in_flight_key_ = api_key;
    in_flight_version_ = version;
    in_flight_correlation_ = h.correlation_id;
  }

  // Adds `parts` to a request's topics, one entry per topic, `fill` setting each partition's.
  template <typename Topics, typename Fill>
  static void AddByTopic(const std::vector<Partition*>& parts, Topics* topics, Fill fill) {
    std::map<std::string, std::vector<Partition*>> by_topic;
    for (Partition* p : parts) by_topic[p->tp.topic].push_back(p);
    for (auto& [topic, list] : by_topic) {
      auto& t = topics->emplace_back();
      t.topic = topic;
      for (Partition* p : list) fill(t.partitions.emplace_back(), *p);
    }
  }

  void SendEpochQuery(const std::vector<Partition*>& parts) {
    kafka::OffsetForLeaderEpochRequest req;
    req.replica_id = manager_->my_id_;
    AddByTopic(parts, &req.topics, [this](auto& rp, Partition& p) {
      rp.partition = p.tp.partition;
      rp.current_leader_epoch = p.state.leader_epoch;
      rp.leader_epoch = manager_->Epochs(p).latest_epoch();
    });
    Send(kafka::OffsetForLeaderEpochRequest::kApiKey, kEpochQueryVersion, req);
  }

  void SendFetch(const std::vector<Partition*>& parts) {
    kafka::FetchRequest req;
    req.replica_id = manager_->my_id_;
    req.max_wait_ms = kFetchMaxWaitMs;
    req.min_bytes = 1;
    req.max_bytes = kFetchMaxBytes;
    req.session_id = 0;
    req.session_epoch = -1;
    AddByTopic(parts, &req.topics, [](auto& rp, Partition& p) {
      rp.partition = p.tp.partition;
      rp.current_leader_epoch = p.state.leader_epoch;
      rp.fetch_offset = p.log->log_end_offset();
      rp.log_start_offset = p.log->log_start_offset();
      rp.partition_max_bytes = kFetchPartitionMaxBytes;
    });
    Send(kafka::FetchRequest::kApiKey, kFetchVersion, req);
  }

  void OnFrame(std::span<const uint8_t> payload) {
    if (!in_flight_) return;
    auto decoded = kafka::DecodeResponse(in_flight_key_, in_flight_version_, payload);
    if (!decoded.ok() || decoded->header.correlation_id != in_flight_correlation_) {
      conn_->Close(absl::DataLossError("unexpected response from the leader"));
      return;
    }
    in_flight_ = false;
    if (auto* f = std::get_if<kafka::FetchResponse>(&decoded->body)) {
      OnFetchResponse(*f);
    } else if (auto* e = std::get_if<kafka::OffsetForLeaderEpochResponse>(&decoded->body)) {
      OnEpochResponse(*e);
    }
    if (appends_pending_ == 0) PumpSoon();
  }

  // Not from within a response's handling: the next response must not nest in this one.
  void PumpSoon() {
    manager_->broker_->reactor().Post([this, alive = std::weak_ptr<bool>(alive_)] {
      if (!alive.expired()) Pump();
    });
  }

  Partition* Mine(const std::string& topic, int32_t partition) {
    Partition* p = manager_->Find(TopicPartition{topic, partition});
    if (p == nullptr || p->role != Partition::Role::kFollower || p->fetching_from != leader_id_) {
      return nullptr;  // its role changed while the request was out
    }
    return p;
  }

  void Backoff(Partition* p, int16_t error) {
    p->retry_at = absl::Now() + kRetryBackoff;
    if (error == errors::kOffsetOutOfRange || error == errors::kFencedLeaderEpoch) {
      p->needs_truncation = true;
    }
  }

  void OnEpochResponse(const kafka::OffsetForLeaderEpochResponse& resp) {
    for (const auto& t : resp.topics) {
      for (const auto& r : t.partitions) {
        Partition* p = Mine(t.topic, r.partition);
        if (p == nullptr || !p->needs_truncation) continue;
        if (r.error_code != 0) {
          Backoff(p, r.error_code);
          continue;
        }
        storage::LeaderEpochCache& epochs = manager_->Epochs(*p);
        storage::PartitionLog& log = *p->log;
        const int64_t end = log.log_end_offset();
        int64_t cut = end;
        if (r.leader_epoch < 0 || r.end_offset < 0) {
          // The leader knows none of our epochs: nothing of ours is known to be its.
          cut = log.log_start_offset();
        } else {
          // Where the epoch the leader names ends in our log, and in the leader's: the logs
          // agree below the smaller (KIP-279).
          const int64_t ours = epochs.EndOffsetFor(r.leader_epoch, end).second;
          cut = std::min(r.end_offset, ours < 0 ? end : ours);
        }
        cut = std::max(cut, log.log_start_offset());
        if (cut < end) {
          absl::Status s = log.TruncateTo(cut);
          if (!s.ok()) {
            storage::LogWarning("replication: %s: truncating to %d: %s", p->tp.DirName(), cut,
                                s.message());
            Backoff(p, 0);
            continue;
          }
          storage::LogInfo("replication: %s: cut the log from %d back to %d (leader %d, epoch %d)",
                           p->tp.DirName(), end, cut, leader_id_, r.leader_epoch);
          (void)epochs.TruncateFromEnd(cut);
          manager_->broker_->DropProducerState(p->tp, /*discard_snapshot=*/true);
          log.set_replicated_offset(std::min(log.high_watermark(), cut));
        }
        p->needs_truncation = false;
      }
    }
  }

  void OnFetchResponse(const kafka::FetchResponse& resp) {
    if (resp.error_code != 0) {
      for (const TopicPartition& tp : partitions_) {
        if (Partition* p = manager_->Find(tp)) Backoff(p, resp.error_code);
      }
      return;
    }
    std::weak_ptr<bool> alive = alive_;
    for (const auto& t : resp.responses) {
      for (const auto& r : t.partitions) {
        Partition* p = Mine(t.topic, r.partition_index);
        if (p == nullptr || p->needs_truncation) continue;
        if (r.error_code != 0) {
          Backoff(p, r.error_code);
          continue;
        }
        storage::PartitionLog& log = *p->log;
        storage::LeaderEpochCache& epochs = manager_->Epochs(*p);
        const storage::AckLevel level = log.config().flush_messages == 1
                                            ? storage::AckLevel::kDurable
                                            : storage::AckLevel::kWritten;
        std::span<const uint8_t> rest = r.records.contiguous();
        while (rest.size() >= storage::kBatchHeaderSize) {
          auto h = storage::ParseBatchHeader(rest, UINT32_MAX);
          if (!h.ok() || h->size_bytes() > rest.size()) break;  // a partial last batch
          std::span<const uint8_t> batch = rest.first(h->size_bytes());
          rest = rest.subspan(h->size_bytes());
          if (h->last_offset() < log.log_end_offset()) continue;  // have it
          const int32_t epoch = storage::RecordBatchView(batch).partition_leader_epoch();
          if (epoch > epochs.latest_epoch()) {
            if (absl::Status s = epochs.Assign(epoch, h->base_offset); !s.ok()) {
              storage::LogWarning("replication: %s: saving leader epochs: %s", p->tp.DirName(),
                                  s.message());
            }
          }
          ++appends_pending_;
          auto appended = log.AppendReplicated(
              batch, level, [this, alive](absl::Status, const storage::AppendResult&) {
                if (alive.expired()) return;
                if (--appends_pending_ == 0) PumpSoon();
              });
          if (!appended.ok()) {
            --appends_pending_;
            storage::LogWarning("replication: %s: append at %d: %s", p->tp.DirName(),
                                h->base_offset, appended.status().message());
            Backoff(p, 0);
            p->needs_truncation = true;
            break;
          }
          // Idempotent-producer state follows the log here as on the leader, so that this
          // replica, once it leads, recognises a retried batch (loaded from the log on first
          // use: the batch just appended is not written yet, so it is recorded after).
          if (h->producer_id >= 0) {
            manager_->broker_->ProducerState(p->tp.topic, p->tp.partition, &log)
                ->Record(
                    h->producer_id, h->producer_epoch, h->base_sequence,
                    PartitionProducerState::LastSequence(h->base_sequence, h->last_offset_delta),
                    h->base_offset);
          }
        }
        // The leader's high watermark, as far as this log has it.
        log.set_replicated_offset(std::max(r.high_watermark, log.high_watermark()));
      }
    }
  }

  ReplicaManager* const manager_;
  const int32_t leader_id_;
  std::string host_;
  int32_t port_ = 0;
  absl::flat_hash_set<TopicPartition> partitions_;
  std::unique_ptr<net::PendingConnect> connect_;
  net::Connection* conn_ = nullptr;
  absl::Time reconnect_at_ = absl::InfinitePast();
  bool reported_ = false;
  bool in_flight_ = false;
  int16_t in_flight_key_ = 0;
  int16_t in_flight_version_ = 0;
  int32_t in_flight_correlation_ = 0;
  int32_t correlation_ = 0;
  int appends_pending_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

ReplicaManager::ReplicaManager(KafkaBroker* broker)
    : broker_(broker), my_id_(broker->options().node_id) {
  tick_ = broker_->reactor().RunAfter(kTickInterval, [this] { Tick(); });
}

ReplicaManager::~ReplicaManager() {
  broker_->reactor().Cancel(tick_);
  fetchers_.clear();
}

ReplicaManager::Partition* ReplicaManager::Find(const TopicPartition& tp) {
  auto it = partitions_.find(tp);
  return it == partitions_.end() ? nullptr : it->second.get();
}

const ReplicaManager::Partition* ReplicaManager::Find(const TopicPartition& tp) const {
  auto it = partitions_.find(tp);
  return it == partitions_.end() ? nullptr : it->second.get();
}

storage::LeaderEpochCache& ReplicaManager::Epochs(Partition& p) {
  if (!p.epochs) {
    p.epochs = storage::LeaderEpochCache::Load(p.log->dir(), p.log->log_end_offset());
  }
  return *p.epochs;
}

void ReplicaManager::ApplyView(std::shared_ptr<const cluster::ClusterView> view) {
  view_ = std::move(view);
  reapply_ = false;
  for (const auto& [name, topic] : view_->topics) {
    for (size_t i = 0; i < topic.replicas.size(); ++i) {
      const auto partition = static_cast<int32_t>(i);
      if (broker_->OwnerOf(name, partition) != broker_->shard_index()) continue;
      const std::vector<int32_t>& replicas = topic.replicas[i];
      const TopicPartition tp{name, partition};
      Partition* p = Find(tp);
      if (p == nullptr && !Contains(replicas, my_id_)) continue;
      const cluster::PartitionState* state = view_->StateOf(name, partition);
      if (state == nullptr) continue;
      if (p == nullptr) {
        storage::PartitionLog* log = broker_->GetLog(name, partition);
        if (log == nullptr) {
          reapply_ = true;
          continue;
        }
        auto made = std::make_unique<Partition>();
        made->tp = tp;
        made->log = log;
        p = made.get();
        partitions_.emplace(tp, std::move(made));
      }
      if (p->state == *state && p->replicas == replicas) continue;
      Apply(*p, *state, replicas);
    }
  }
  // Leaders that moved to another address.
  for (auto& [id, f] : fetchers_) {
    auto b = view_->brokers.find(id);
    if (b != view_->brokers.end()) f->SetEndpoint(b->second);
  }
}

void ReplicaManager::Apply(Partition& p, const cluster::PartitionState& state,
                           const std::vector<int32_t>& replicas) {
  const cluster::PartitionState before = p.state;
  p.state = state;
  p.replicas = replicas;
  if (p.isr_in_flight && state.version != before.version) p.isr_in_flight.reset();
  const bool leads = state.leader == my_id_ && Contains(replicas, my_id_);
  const bool follows = state.leader >= 0 && state.leader != my_id_ && Contains(replicas, my_id_);
  if (leads) {
    if (p.role != Partition::Role::kLeader || state.leader_epoch != before.leader_epoch) {
      BecomeLeader(p);
    } else {
      UpdateHighWatermark(p);  // the ISR changed
    }
  } else if (follows) {
    if (p.role != Partition::Role::kFollower || state.leader != before.leader ||
        state.leader_epoch != before.leader_epoch) {
      BecomeFollower(p);
    }
  } else if (p.role != Partition::Role::kNone) {
    StopLeading(p, errors::kNotLeaderOrFollower);
    if (p.fetching_from >= 0) FetcherFor(p.fetching_from).Remove(&p);
    p.role = Partition::Role::kNone;
    p.log->set_replicated_offset(p.log->high_watermark());
  }
}

void ReplicaManager::BecomeLeader(Partition& p) {
  if (p.fetching_from >= 0) FetcherFor(p.fetching_from).Remove(&p);
  storage::PartitionLog& log = *p.log;
  p.role = Partition::Role::kLeader;
  log.set_leader_epoch(p.state.leader_epoch);
  if (absl::Status s = Epochs(p).Assign(p.state.leader_epoch, log.log_end_offset()); !s.ok()) {
    storage::LogWarning("replication: %s: saving leader epochs: %s", p.tp.DirName(), s.message());
  }
  // Followers start as caught up now: each has replica.lag.time.max.ms to show it is (Kafka).
  const int64_t now = NowMs();
  p.followers.clear();
  for (int32_t r : p.replicas) {
    if (r != my_id_) p.followers[r].caught_up_ms = now;
  }
  p.high_watermark = log.high_watermark();
  p.isr_in_flight.reset();
  if (p.tp.topic == kOffsetsTopic) broker_->OffsetsPartitionRoleChanged(p.tp.partition, true);
  storage::LogInfo("replication: %s: leader at epoch %d from offset %d, isr [%s]", p.tp.DirName(),
                   p.state.leader_epoch, log.log_end_offset(), absl::StrJoin(p.state.isr, ","));
  UpdateHighWatermark(p);
}

void ReplicaManager::BecomeFollower(Partition& p) {
  StopLeading(p, errors::kNotLeaderOrFollower);
  if (p.fetching_from >= 0) FetcherFor(p.fetching_from).Remove(&p);
  p.role = Partition::Role::kFollower;
  p.log->set_leader_epoch(-1);
  // Readers see no more than they did, until the new leader says what is replicated.
  p.log->set_replicated_offset(p.log->high_watermark());
  Fetcher& f = FetcherFor(p.state.leader);
  if (view_ != nullptr) {
    auto b = view_->brokers.find(p.state.leader);
    if (b != view_->brokers.end()) f.SetEndpoint(b->second);
  }
  f.Add(&p);
}

void ReplicaManager::StopLeading(Partition& p, int16_t waiter_error) {
  if (p.role != Partition::Role::kLeader) return;
  if (p.tp.topic == kOffsetsTopic) broker_->OffsetsPartitionRoleChanged(p.tp.partition, false);
  p.log->set_leader_epoch(-1);
  p.followers.clear();
  p.isr_in_flight.reset();
  std::deque<Partition::Waiter> waiters = std::move(p.waiters);
  p.waiters.clear();
  for (auto& w : waiters) w.done(waiter_error);
}

ReplicaManager::Fetcher& ReplicaManager::FetcherFor(int32_t leader_id) {
  auto& f = fetchers_[leader_id];
  if (f == nullptr) f = std::make_unique<Fetcher>(this, leader_id);
  return *f;
}

void ReplicaManager::UpdateHighWatermark(Partition& p) {
  if (p.role != Partition::Role::kLeader) return;
  storage::PartitionLog& log = *p.log;
  p.high_watermark = std::max(p.high_watermark, log.high_watermark());
  int64_t least = INT64_MAX;
  for (int32_t r : p.MaximalIsr()) {
    if (r == my_id_) continue;
    auto f = p.followers.find(r);
    least = std::min(least, f == p.followers.end() ? -1 : f->second.end);
  }
  if (least == INT64_MAX) {
    // In sync alone: everything written is replicated as far as this ISR asks.
    log.set_replicated_offset(INT64_MAX);
  } else {
    p.high_watermark = std::max(p.high_watermark, std::min(least, log.written_offset()));
    log.set_replicated_offset(p.high_watermark);
  }
  const int64_t hw = log.high_watermark();
  const bool enough = static_cast<int32_t>(p.state.isr.size()) >= p.min_insync();
  while (!p.waiters.empty() && p.waiters.front().last_offset < hw) {
    auto done = std::move(p.waiters.front().done);
    p.waiters.pop_front();
    done(enough ? 0 : errors::kNotEnoughReplicasAfterAppend);
  }
}

int16_t ReplicaManager::LeaderError(const TopicPartition& tp, int32_t client_epoch) const {
  const Partition* p = Find(tp);
  if (p == nullptr || p->role != Partition::Role::kLeader || view_ == nullptr ||
      !view_->session_live) {
    return errors::kNotLeaderOrFollower;
  }
  if (client_epoch >= 0 && client_epoch < p->state.leader_epoch) return errors::kFencedLeaderEpoch;
  if (client_epoch > p->state.leader_epoch) return errors::kUnknownLeaderEpoch;
  return 0;
}

int32_t ReplicaManager::LeaderEpoch(const TopicPartition& tp) const {
  const Partition* p = Find(tp);
  return p != nullptr && p->role == Partition::Role::kLeader ? p->state.leader_epoch : -1;
}

int16_t ReplicaManager::OnFollowerFetch(const TopicPartition& tp, int32_t replica_id,
                                        int64_t fetch_offset, int32_t client_epoch) {
  if (int16_t e = LeaderError(tp, client_epoch); e != 0) return e;
  Partition& p = *Find(tp);
  auto it = p.followers.find(replica_id);
  if (it == p.followers.end()) return errors::kNotLeaderOrFollower;
  Partition::Follower& f = it->second;
  storage::PartitionLog& log = *p.log;
  const int64_t now = NowMs();
  const int64_t leo = log.written_offset();
  // Caught up: it has all the leader had now, or all it had at its previous fetch (then it
  // was caught up at that time). Kafka's lastCaughtUpTimeMs.
  if (fetch_offset >= leo) {
    f.caught_up_ms = now;
  } else if (f.last_fetch_leo >= 0 && fetch_offset >= f.last_fetch_leo) {
    f.caught_up_ms = std::max(f.caught_up_ms, f.last_fetch_ms);
  }
  f.last_fetch_leo = leo;
  f.last_fetch_ms = now;
  f.end = std::min(fetch_offset, leo);
  // Back into the ISR once it has everything readers may see, and something of this epoch.
  if (!Contains(p.state.isr, replica_id) && !p.isr_in_flight &&
      fetch_offset >= log.high_watermark()) {
    const int64_t epoch_start = Epochs(p).EndOffsetFor(p.state.leader_epoch - 1, leo).second;
    if (fetch_offset >= std::max<int64_t>(epoch_start, 0)) {
      std::vector<int32_t> isr = p.state.isr;
      isr.push_back(replica_id);
      WriteIsr(p, std::move(isr));
    }
  }
  UpdateHighWatermark(p);
  return 0;
}

void ReplicaManager::MaybeShrinkIsr(Partition& p, int64_t now_ms) {
  if (p.role != Partition::Role::kLeader || p.isr_in_flight) return;
  std::vector<int32_t> isr;
  for (int32_t r : p.state.isr) {
    if (r == my_id_) {
      isr.push_back(r);
      continue;
    }
    auto f = p.followers.find(r);
    if (f != p.followers.end() && now_ms - f->second.caught_up_ms <= p.lag_max_ms()) {
      isr.push_back(r);
    }
  }
  if (!Contains(isr, my_id_)) isr.insert(isr.begin(), my_id_);
  if (isr.size() < p.state.isr.size()) WriteIsr(p, std::move(isr));
}

void ReplicaManager::WriteIsr(Partition& p, std::vector<int32_t> isr) {
  const auto& alter = broker_->options().alter_partition_state;
  if (!alter) return;
  cluster::PartitionState next = p.state;
  next.isr = std::move(isr);
  p.isr_in_flight = next.isr;
  storage::LogInfo("replication: %s: isr [%s] -> [%s]", p.tp.DirName(),
                   absl::StrJoin(p.state.isr, ","), absl::StrJoin(next.isr, ","));
  const int home = broker_->shard_index();
  const TopicPartition tp = p.tp;
  const int32_t version = p.state.version;
  broker_->RunOn(0, [alter, tp, next, version, home](KafkaBroker& b0) mutable {
    alter(tp.topic, tp.partition, next, version, [&b0, tp, home, version](absl::Status s) {
      b0.RunOn(home, [tp, s, version](KafkaBroker& b) {
        ReplicaManager* m = b.replicas();
        if (m == nullptr) return;
        Partition* p = m->Find(tp);
        if (p == nullptr) return;
        if (!s.ok()) {
          // The controller (or another write) moved the state: its watch brings it.
          storage::LogWarning("replication: %s: writing the isr: %s", tp.DirName(), s.message());
          if (p->state.version == version) p->isr_in_flight.reset();
        }
      });
    });
  });
}

int16_t ReplicaManager::CheckMinInsync(const TopicPartition& tp) const {
  const Partition* p = Find(tp);
  if (p == nullptr) return 0;
  return static_cast<int32_t>(p->state.isr.size()) < p->min_insync() ? errors::kNotEnoughReplicas
                                                                     : 0;
}

void ReplicaManager::WaitForReplication(const TopicPartition& tp, int64_t last_offset,
                                        absl::Duration timeout,
                                        absl::AnyInvocable<void(int16_t)> done) {
  Partition* p = Find(tp);
  if (p == nullptr || p->role != Partition::Role::kLeader) {
    done(errors::kNotLeaderOrFollower);
    return;
  }
  if (last_offset < p->log->high_watermark()) {
    done(static_cast<int32_t>(p->state.isr.size()) >= p->min_insync()
             ? 0
             : errors::kNotEnoughReplicasAfterAppend);
    return;
  }
  // Kept in offset order (a later batch never completes before an earlier one).
  Partition::Waiter w{last_offset, absl::Now() + timeout, std::move(done)};
  auto at =
      std::upper_bound(p->waiters.begin(), p->waiters.end(), last_offset,
                       [](int64_t off, const Partition::Waiter& x) { return off < x.last_offset; });
  p->waiters.insert(at, std::move(w));
}

ReplicaManager::EpochEnd ReplicaManager::EndOffsetForEpoch(const TopicPartition& tp,
                                                           int32_t client_epoch, int32_t epoch) {
  EpochEnd out;
  if (int16_t e = LeaderError(tp, client_epoch); e != 0) {
    out.error = e;
    return out;
  }
  Partition& p = *Find(tp);
  auto [found, end] = Epochs(p).EndOffsetFor(epoch, p.log->log_end_offset());
  out.epoch = found;
  out.end_offset = end;
  return out;
}

void ReplicaManager::Tick() {
  tick_ = broker_->reactor().RunAfter(kTickInterval, [this] { Tick(); });
  if (reapply_ && view_ != nullptr) ApplyView(view_);
  const int64_t now_ms = NowMs();
  const absl::Time now = absl::Now();
  for (auto& [tp, p] : partitions_) {
    if (p->role != Partition::Role::kLeader) continue;
    MaybeShrinkIsr(*p, now_ms);
    UpdateHighWatermark(*p);
    // Waiters past their deadline (the rest are in offset order, not deadline order).
    for (auto it = p->waiters.begin(); it != p->waiters.end();) {
      if (it->deadline <= now) {
        auto done = std::move(it->done);
        it = p->waiters.erase(it);
        done(errors::kRequestTimedOut);
      } else {
        ++it;
      }
    }
  }
  for (auto& [id, f] : fetchers_) f->Pump();
}

}  // namespace sluice::broker
