#include "src/cluster/cluster_member.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "log/logging.h"
#include "net/reactor/reactor.h"
#include "src/cluster/zk_coordinator.h"
#include "src/cluster/znode_json.h"

namespace sluice::cluster {

namespace {

using storage::LogError;
using storage::LogInfo;
using storage::LogWarning;

constexpr char kBrokerIds[] = "/brokers/ids";
constexpr char kController[] = "/controller";
constexpr char kControllerEpoch[] = "/controller_epoch";
constexpr char kClusterIdPath[] = "/cluster/id";
constexpr char kProducerIdBlockPath[] = "/latest_producer_id_block";
constexpr int kMaxClaimAttempts = 20;  // lost races in a row before the client is told to retry
// Persistent paths every broker makes sure of before anything else (in this order).
constexpr const char* kPersistentPaths[] = {"/brokers", "/brokers/ids", "/brokers/topics",
                                            "/cluster", "/config",      "/config/topics"};
constexpr char kTopics[] = "/brokers/topics";
constexpr char kTopicConfigs[] = "/config/topics";
constexpr absl::Duration kRetryDelay = absl::Seconds(1);

int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

}  // namespace

ClusterMember::ClusterMember(net::Reactor* loop, ClusterMemberOptions options,
                             std::shared_ptr<ClusterViewSource> view)
    : loop_(loop), options_(std::move(options)), view_(std::move(view)) {}

ClusterMember::~ClusterMember() {
  *alive_ = false;
  AnswerProducerIdWaiters(absl::UnavailableError("broker stopping"));
  if (zk_ != nullptr) {
    LogInfo("cluster: broker %d leaves (closing its ZooKeeper session)", options_.broker_id);
    zk_.reset();
  }
}

absl::Status ClusterMember::Start() {
  loop_->AssertInLoopThread();
  LogInfo("cluster: broker %d joins through ZooKeeper %s (session timeout %s), advertised as %s:%d",
          options_.broker_id, options_.zookeeper, absl::FormatDuration(options_.session_timeout),
          options_.advertised_host, options_.kafka_port);
  Publish();
  auto zk = ZkCoordinator::Connect(
      options_.zookeeper, options_.session_timeout,
      [loop = loop_](absl::AnyInvocable<void()> task) { loop->Post(std::move(task)); },
      [this](SessionState s) { OnSession(s); });
  if (!zk.ok()) return zk.status();
  zk_ = std::move(*zk);
  ++session_;
  return absl::OkStatus();
}

void ClusterMember::Connect() {
  zk_.reset();  // the expired session's handle
  auto zk = ZkCoordinator::Connect(
      options_.zookeeper, options_.session_timeout,
      [loop = loop_](absl::AnyInvocable<void()> task) { loop->Post(std::move(task)); },
      [this](SessionState s) { OnSession(s); });
  ++session_;
  if (!zk.ok()) {  // the connect string was accepted once: not expected
    LogError("cluster: cannot open a ZooKeeper session: %s", zk.status().message());
    After(kRetryDelay, [this] { Connect(); });
    return;
  }
  zk_ = std::move(*zk);
}

void ClusterMember::After(absl::Duration delay, absl::AnyInvocable<void()> fn) {
  loop_->RunAfter(delay, [alive = std::weak_ptr<bool>(alive_), session = session_, this,
                          fn = std::move(fn)]() mutable {
    if (alive.expired() || session != session_) return;
    fn();
  });
}

void ClusterMember::RetryAfterError(const absl::Status& s, const char* step,
                                    void (ClusterMember::*again)()) {
  // A lost session is handled by OnSession (a new one starts everything again).
  if (absl::IsAborted(s)) return;
  if (!absl::IsUnavailable(s)) LogWarning("cluster: %s: %s; retrying", step, s.message());
  After(kRetryDelay, [this, again] { (this->*again)(); });
}

void ClusterMember::OnSession(SessionState state) {
  loop_->AssertInLoopThread();
  switch (state) {
    case SessionState::kConnected:
      if (connected_) return;
      connected_ = true;
      LogInfo("cluster: ZooKeeper session 0x%x established", zk_->session_id());
      if (!bootstrapped_) {
        Bootstrap(0);
      }
      Publish();
      return;
    case SessionState::kDisconnected:
      if (!connected_) return;
      connected_ = false;
      LogWarning(
          "cluster: lost the connection to ZooKeeper; reconnecting within the session "
          "(timeout %s)",
          absl::FormatDuration(options_.session_timeout));
      Publish();
      return;
    case SessionState::kExpired:
      LogWarning(
          "cluster: ZooKeeper session expired: broker %d is no longer registered%s; starting "
          "a new session",
          options_.broker_id, is_controller_ ? " nor controller" : "");
      connected_ = false;
      bootstrapped_ = false;
      registered_ = false;
      is_controller_ = false;
      controller_id_ = -1;
      brokers_.clear();
      missing_states_.clear();
      writing_states_.clear();
      Publish();
      // Not from inside the expired handle's own callback chain.
      loop_->Post([this, alive = std::weak_ptr<bool>(alive_)] {
        if (!alive.expired()) Connect();
      });
      return;
  }
}

void ClusterMember::Bootstrap(size_t step) {
  if (step == std::size(kPersistentPaths)) {
    bootstrapped_ = true;
    ReadClusterId();
    Register();
    WatchBrokers();
    WatchController();
    WatchTopics();
    // Watches die with a session: the known topics' states are followed again.
    for (const auto& [name, t] : topics_) {
      for (size_t p = 0; p < t.replicas.size(); ++p) WatchState(name, static_cast<int32_t>(p));
    }
    return;
  }
  const std::string path = kPersistentPaths[step];
  zk_->Create(path, "", CreateMode::kPersistent, [this, step, path](absl::Status s) {
    if (s.ok() || absl::IsAlreadyExists(s)) {
      Bootstrap(step + 1);
      return;
    }
    if (absl::IsAborted(s)) return;
    if (absl::IsNotFound(s)) {
      LogError("cluster: cannot create %s: its parent is missing (create the chroot of %s first)",
               path, options_.zookeeper);
    } else if (!absl::IsUnavailable(s)) {
      LogWarning("cluster: creating %s: %s; retrying", path, s.message());
    }
    After(kRetryDelay, [this, step] { Bootstrap(step); });
  });
}

void ClusterMember::ReadClusterId() {
  zk_->Get(kClusterIdPath, nullptr, [this](absl::Status s, std::string data, ZnodeStat) {
    if (s.ok()) {
      if (auto id = DecodeClusterId(data)) {
        if (cluster_id_.empty()) LogInfo("cluster: cluster id %s", *id);
        cluster_id_ = *id;
        Publish();
      } else {
        LogError("cluster: %s holds no cluster id: %s", kClusterIdPath, data);
      }
      return;
    }
    if (absl::IsNotFound(s)) {
      // The first broker of a new cluster names it; a concurrent one may win: read again.
      zk_->Create(kClusterIdPath, EncodeClusterId(NewClusterId()), CreateMode::kPersistent,
                  [this](absl::Status c) {
                    if (c.ok() || absl::IsAlreadyExists(c)) {
                      ReadClusterId();
                    } else {
                      RetryAfterError(c, "creating the cluster id", &ClusterMember::ReadClusterId);
                    }
                  });
      return;
    }
    RetryAfterError(s, "reading the cluster id", &ClusterMember::ReadClusterId);
  });
}

void ClusterMember::Register() {
  const std::string path = absl::StrCat(kBrokerIds, "/", options_.broker_id);
  zk_->Create(
      path, EncodeRegistration(options_.advertised_host, options_.kafka_port, NowMillis()),
      CreateMode::kEphemeral, [this, path](absl::Status s) {
        if (s.ok()) {
          registered_ = true;
          waiting_for_old_registration_ = false;
          LogInfo("cluster: broker %d registered at %s", options_.broker_id, path);
          Publish();
          return;
        }
        if (!absl::IsAlreadyExists(s)) {
          RetryAfterError(s, "registering", &ClusterMember::Register);
          return;
        }
        // Ours (a create retried after a lost connection had in fact succeeded), or another
        // session's: this broker's previous life, killed less than a session timeout ago, or
        // another broker started with the same id. Wait for it to go.
        zk_->Get(path, nullptr, [this, path](absl::Status g, std::string, ZnodeStat stat) {
          if (g.ok() && stat.ephemeral_owner == zk_->session_id()) {
            registered_ = true;
            waiting_for_old_registration_ = false;
            LogInfo("cluster: broker %d registered at %s", options_.broker_id, path);
            Publish();
            return;
          }
          if (g.ok() && !waiting_for_old_registration_) {
            waiting_for_old_registration_ = true;
            LogWarning(
                "cluster: %s is held by another session (0x%x): an earlier run of broker %d that "
                "has not expired yet, or another broker with the same id. Waiting for it to go.",
                path, stat.ephemeral_owner, options_.broker_id);
          }
          if (g.ok() || absl::IsNotFound(g)) {
            After(absl::IsNotFound(g) ? absl::ZeroDuration() : kRetryDelay, [this] { Register(); });
            return;
          }
          RetryAfterError(g, "registering", &ClusterMember::Register);
        });
      });
}

void ClusterMember::WatchBrokers() {
  zk_->GetChildren(
      kBrokerIds, [this] { WatchBrokers(); },
      [this](absl::Status s, std::vector<std::string> names) {
        if (!s.ok()) {
          RetryAfterError(s, "listing brokers", &ClusterMember::WatchBrokers);
          return;
        }
        // Each round reads every registration; only the latest round publishes.
        const uint64_t round = ++brokers_round_;
        struct Round {
          std::map<int32_t, BrokerEndpoint> brokers;
          size_t pending = 0;
        };
        auto r = std::make_shared<Round>();
        std::vector<int32_t> ids;
        for (const std::string& n : names) {
          int32_t id;
          if (absl::SimpleAtoi(n, &id)) ids.push_back(id);
        }
        r->pending = ids.size();
        auto finish = [this, round, r] {
          if (round != brokers_round_) return;
          if (r->brokers != brokers_) {
            std::string list;
            for (const auto& [id, b] : r->brokers) {
              absl::StrAppend(&list, list.empty() ? "" : ", ", id, "@", b.host, ":", b.port);
            }
            LogInfo("cluster: live brokers: %s", list.empty() ? "none" : list);
          }
          brokers_ = std::move(r->brokers);
          Publish();
          ReconcileSoon();
        };
        if (ids.empty()) {
          finish();
          return;
        }
        for (int32_t id : ids) {
          zk_->Get(absl::StrCat(kBrokerIds, "/", id), nullptr,
                   [id, r, finish](absl::Status g, std::string data, ZnodeStat) mutable {
                     if (!g.ok()) {
                       // Gone since the listing (NotFound): not live.
                     } else if (auto b = DecodeRegistration(id, data)) {
                       r->brokers[id] = *b;
                     } else {
                       LogWarning("cluster: registration of broker %d unreadable: %s", id, data);
                     }
                     if (--r->pending == 0) finish();
                   });
        }
      });
}

void ClusterMember::WatchController() {
  zk_->Get(
      kController, [this] { WatchController(); },
      [this](absl::Status s, std::string data, ZnodeStat stat) {
        if (absl::IsNotFound(s)) {
          if (controller_id_ != -1 || is_controller_) {
            LogInfo("cluster: no controller (broker %d left); electing", controller_id_);
          }
          controller_id_ = -1;
          is_controller_ = false;
          Publish();
          Elect();
          return;
        }
        if (!s.ok()) {
          RetryAfterError(s, "reading the controller", &ClusterMember::WatchController);
          return;
        }
        const int32_t id = DecodeController(data).value_or(-1);
        const bool mine = stat.ephemeral_owner == zk_->session_id();
        if (id != controller_id_) LogInfo("cluster: controller is broker %d", id);
        controller_id_ = id;
        if (is_controller_ && !mine) {
          LogWarning("cluster: broker %d is no longer the controller", options_.broker_id);
        }
        is_controller_ = mine;
        Publish();
      });
}

void ClusterMember::Elect() {
  // One multi creates /controller and bumps /controller_epoch from the version read: of
  // concurrent candidates one wins, and the epoch's zkVersion fences the writes of any
  // controller elected before (KAFKA-6082).
  zk_->Get(kControllerEpoch, nullptr, [this](absl::Status s, std::string data, ZnodeStat stat) {
    if (absl::IsNotFound(s)) {
      zk_->Create(kControllerEpoch, "0", CreateMode::kPersistent, [this](absl::Status c) {
        if (c.ok() || absl::IsAlreadyExists(c)) {
          Elect();
        } else {
          RetryAfterError(c, "creating the controller epoch", &ClusterMember::Elect);
        }
      });
      return;
    }
    if (!s.ok()) {
      RetryAfterError(s, "reading the controller epoch", &ClusterMember::Elect);
      return;
    }
    const std::optional<int32_t> read = DecodeControllerEpoch(data);
    if (!read) LogError("cluster: %s holds '%s', not an epoch; taking 0", kControllerEpoch, data);
    const int32_t epoch = read.value_or(0);
    const int32_t version = stat.version;
    std::vector<ZkOp> ops = {
        ZkOp::Create(kController, EncodeController(options_.broker_id, NowMillis()),
                     CreateMode::kEphemeral),
        ZkOp::Set(kControllerEpoch, absl::StrCat(epoch + 1), version)};
    zk_->Multi(std::move(ops), [this, epoch, version](absl::Status m) {
      if (m.ok()) {
        is_controller_ = true;
        controller_id_ = options_.broker_id;
        controller_epoch_ = epoch + 1;
        controller_epoch_version_ = version + 1;
        LogInfo("cluster: broker %d is the controller (epoch %d)", options_.broker_id,
                controller_epoch_);
        Publish();
        WatchController();  // to know if it is ever taken away
        ReconcileSoon();
        return;
      }
      if (absl::IsAlreadyExists(m)) {  // another broker won
        WatchController();
      } else if (absl::IsFailedPrecondition(m)) {  // the epoch moved meanwhile
        Elect();
      } else if (absl::IsUnavailable(m)) {
        // Unknown outcome: whoever holds /controller now (maybe this broker) says.
        After(kRetryDelay, [this] { WatchController(); });
      } else {
        RetryAfterError(m, "electing a controller", &ClusterMember::WatchController);
      }
    });
  });
}

void ClusterMember::NextProducerId(absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done) {
  loop_->AssertInLoopThread();
  if (next_producer_id_ < producer_id_block_end_) {
    done(next_producer_id_++);
    return;
  }
  producer_id_waiters_.push_back(std::move(done));
  if (!claiming_producer_ids_) {
    claiming_producer_ids_ = true;
    ClaimProducerIdBlock(0);
  }
}

void ClusterMember::AnswerProducerIdWaiters(const absl::Status& failure) {
  auto waiters = std::move(producer_id_waiters_);
  producer_id_waiters_.clear();
  claiming_producer_ids_ = false;
  for (auto& w : waiters) {
    if (!failure.ok()) {
      w(failure);
    } else if (next_producer_id_ < producer_id_block_end_) {
      w(next_producer_id_++);
    } else {
      // More waiters than one block holds: the rest wait for the next one.
      producer_id_waiters_.push_back(std::move(w));
    }
  }
  if (!producer_id_waiters_.empty()) {
    claiming_producer_ids_ = true;
    ClaimProducerIdBlock(0);
  }
}

void ClusterMember::ClaimProducerIdBlock(int attempt) {
  if (zk_ == nullptr || !connected_) {
    AnswerProducerIdWaiters(absl::UnavailableError("not connected to ZooKeeper"));
    return;
  }
  if (attempt >= kMaxClaimAttempts) {
    AnswerProducerIdWaiters(absl::UnavailableError("producer id blocks contended; retry"));
    return;
  }
  auto claimed = [this](const ProducerIdBlock& b) {
    next_producer_id_ = b.start;
    producer_id_block_end_ = b.end + 1;
    LogInfo("cluster: broker %d claimed producer ids %d..%d", options_.broker_id, b.start, b.end);
    AnswerProducerIdWaiters(absl::OkStatus());
  };
  zk_->Get(
      kProducerIdBlockPath, nullptr,
      [this, attempt, claimed](absl::Status s, std::string data, ZnodeStat stat) {
        if (absl::IsNotFound(s)) {
          const ProducerIdBlock first{options_.broker_id, 0, kProducerIdBlockSize - 1};
          zk_->Create(kProducerIdBlockPath, EncodeProducerIdBlock(first), CreateMode::kPersistent,
                      [this, attempt, first, claimed](absl::Status c) {
                        if (c.ok()) {
                          claimed(first);
                        } else if (absl::IsAlreadyExists(c)) {
                          ClaimProducerIdBlock(attempt + 1);
                        } else {
                          AnswerProducerIdWaiters(c);
                        }
                      });
          return;
        }
        if (!s.ok()) {
          AnswerProducerIdWaiters(s);
          return;
        }
        const std::optional<ProducerIdBlock> last = DecodeProducerIdBlock(data);
        if (!last) {
          // Never guess past a block someone else may hold.
          LogError("cluster: %s holds no producer id block: %s", kProducerIdBlockPath, data);
          AnswerProducerIdWaiters(absl::InternalError("unreadable producer id block in ZooKeeper"));
          return;
        }
        const ProducerIdBlock next{options_.broker_id, last->end + 1,
                                   last->end + kProducerIdBlockSize};
        zk_->Set(kProducerIdBlockPath, EncodeProducerIdBlock(next), stat.version,
                 [this, attempt, next, claimed](absl::Status w, ZnodeStat) {
                   if (w.ok()) {
                     claimed(next);
                   } else if (absl::IsFailedPrecondition(w)) {  // another broker claimed first
                     ClaimProducerIdBlock(attempt + 1);
                   } else {
                     AnswerProducerIdWaiters(w);
                   }
                 });
      });
}

void ClusterMember::WatchTopics() {
  zk_->GetChildren(
      kTopics, [this] { WatchTopics(); },
      [this](absl::Status s, std::vector<std::string> names) {
        if (!s.ok()) {
          RetryAfterError(s, "listing topics", &ClusterMember::WatchTopics);
          return;
        }
        // Topics are only ever added (deletion is not offered in cluster mode yet): read the
        // new ones, configs first, as their creator wrote them.
        struct Round {
          std::map<std::string, TopicView> added;
          size_t pending = 0;
        };
        auto r = std::make_shared<Round>();
        std::vector<std::string> fresh;
        for (std::string& n : names) {
          if (topics_.count(n) == 0) fresh.push_back(std::move(n));
        }
        if (fresh.empty()) return;
        r->pending = fresh.size();
        // Rounds may overlap (a watch fired while one reads): adding twice is harmless.
        auto finish = [this, r] {
          for (auto& [name, t] : r->added) {
            if (topics_.count(name) > 0) continue;
            LogInfo("cluster: topic %s (%d partitions)", name, t.replicas.size());
            const auto partitions = static_cast<int32_t>(t.replicas.size());
            t.states.assign(t.replicas.size(), PartitionState{});
            topics_[name] = std::move(t);
            for (int32_t p = 0; p < partitions; ++p) WatchState(name, p);
          }
          Publish();
          ReconcileSoon();
        };
        for (const std::string& name : fresh) {
          zk_->Get(absl::StrCat(kTopicConfigs, "/", name), nullptr,
                   [this, name, r, finish](absl::Status c, std::string cdata, ZnodeStat) mutable {
                     std::map<std::string, std::string> configs;
                     if (c.ok()) {
                       auto decoded = DecodeTopicConfig(cdata);
                       if (decoded) configs = std::move(*decoded);
                       if (!decoded) LogError("cluster: configs of topic %s unreadable", name);
                     }
                     zk_->Get(absl::StrCat(kTopics, "/", name), nullptr,
                              [name, r, finish, configs = std::move(configs)](
                                  absl::Status g, std::string data, ZnodeStat) mutable {
                                if (g.ok()) {
                                  if (auto a = DecodeTopicAssignment(data)) {
                                    r->added[name] = TopicView{std::move(*a), std::move(configs)};
                                  } else {
                                    LogError("cluster: assignment of topic %s unreadable: %s", name,
                                             data);
                                  }
                                }
                                if (--r->pending == 0) finish();
                              });
                   });
        }
      });
}

namespace {
std::string StatePath(const std::string& topic, int32_t partition) {
  return absl::StrCat("/brokers/topics/", topic, "/partitions/", partition, "/state");
}
}  // namespace

void ClusterMember::WatchState(const std::string& topic, int32_t partition) {
  const std::string path = StatePath(topic, partition);
  zk_->Get(
      path, [this, topic, partition] { WatchState(topic, partition); },
      [this, topic, partition, path](absl::Status s, std::string data, ZnodeStat stat) {
        auto it = topics_.find(topic);
        if (it == topics_.end() || static_cast<size_t>(partition) >= it->second.states.size()) {
          return;
        }
        if (absl::IsNotFound(s)) {
          // Not written yet: watch for its creation (the controller writes it).
          missing_states_.insert({topic, partition});
          zk_->Exists(
              path, [this, topic, partition] { WatchState(topic, partition); },
              [this, topic, partition](absl::Status e, ZnodeStat) {
                if (e.ok()) WatchState(topic, partition);  // created meanwhile
              });
          ReconcileSoon();
          return;
        }
        if (!s.ok()) {
          if (absl::IsAborted(s)) return;
          After(kRetryDelay, [this, topic, partition] { WatchState(topic, partition); });
          return;
        }
        missing_states_.erase({topic, partition});
        std::optional<PartitionState> state = DecodePartitionState(data);
        if (!state) {
          LogError("cluster: state of %s-%d unreadable: %s", topic, partition, data);
          return;
        }
        state->version = stat.version;
        PartitionState& known = it->second.states[static_cast<size_t>(partition)];
        if (known.leader != state->leader && known.version >= 0) {
          LogInfo("cluster: %s-%d leader %d -> %d (leader epoch %d)", topic, partition,
                  known.leader, state->leader, state->leader_epoch);
        }
        known = *state;
        PublishSoon();
        ReconcileSoon();
      });
}

void ClusterMember::ReconcileSoon() {
  if (reconcile_pending_) return;
  reconcile_pending_ = true;
  loop_->Post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    reconcile_pending_ = false;
    Reconcile();
  });
}

void ClusterMember::Reconcile() {
  if (!is_controller_ || zk_ == nullptr || !connected_) return;
  size_t created = 0;
  for (const auto& [name, t] : topics_) {
    for (size_t p = 0; p < t.replicas.size(); ++p) {
      const auto partition = static_cast<int32_t>(p);
      const std::pair<std::string, int32_t> key{name, partition};
      if (writing_states_.count(key) > 0) continue;
      const std::vector<int32_t>& replicas = t.replicas[p];
      auto live = [this](int32_t b) { return brokers_.count(b) > 0; };
      if (missing_states_.count(key) > 0) {
        // A new partition: its first live replica leads; the live replicas are in sync.
        PartitionState next;
        next.controller_epoch = controller_epoch_;
        for (int32_t r : replicas) {
          if (!live(r)) continue;
          if (next.leader < 0) next.leader = r;
          next.isr.push_back(r);
        }
        if (next.isr.empty()) next.isr = replicas;  // none live: they all wait
        WriteState(name, partition, next, /*create=*/true);
        ++created;
        continue;
      }
      const PartitionState& cur = t.states[p];
      if (cur.version < 0) continue;  // not read yet
      if (cur.leader >= 0 && live(cur.leader)) {
        // A live leader keeps its epoch; dead followers leave its ISR at once (the leader
        // would drop them only after replica.lag.time.max.ms).
        PartitionState next = cur;
        next.isr.clear();
        for (int32_t r : cur.isr) {
          if (live(r) || r == cur.leader) next.isr.push_back(r);
        }
        if (next.isr == cur.isr) continue;
        next.controller_epoch = controller_epoch_;
        WriteState(name, partition, next, /*create=*/false);
        continue;
      }
      // No leader, or a dead one: the first replica in assignment order that is live and in
      // the ISR leads (never one out of sync: no unclean election). The ISR loses dead
      // members but never its last one, which the partition then waits for.
      PartitionState next = cur;
      next.leader = -1;
      for (int32_t r : replicas) {
        if (live(r) && std::find(cur.isr.begin(), cur.isr.end(), r) != cur.isr.end()) {
          next.leader = r;
          break;
        }
      }
      std::vector<int32_t> isr;
      for (int32_t r : cur.isr) {
        if (live(r)) isr.push_back(r);
      }
      if (!isr.empty()) next.isr = isr;
      if (next.leader == cur.leader && next.isr == cur.isr) continue;
      next.leader_epoch = cur.leader_epoch + 1;
      next.controller_epoch = controller_epoch_;
      WriteState(name, partition, next, /*create=*/false);
    }
  }
  if (created > 0) {
    LogInfo("cluster: controller: writing the first state (leader, ISR) of %d partitions", created);
  }
}

void ClusterMember::WriteState(const std::string& topic, int32_t partition,
                               const PartitionState& next, bool create) {
  const std::pair<std::string, int32_t> key{topic, partition};
  writing_states_.insert(key);
  const int32_t expected =
      create ? -1 : topics_[topic].states[static_cast<size_t>(partition)].version;
  auto write = [this, topic, partition, next, create, expected, key]() {
    // Every controller write is checked against the epoch's version it was elected with: a
    // controller deposed without noticing cannot write (KAFKA-6082).
    std::vector<ZkOp> ops = {ZkOp::Check(kControllerEpoch, controller_epoch_version_)};
    if (create) {
      ops.push_back(ZkOp::Create(StatePath(topic, partition), EncodePartitionState(next),
                                 CreateMode::kPersistent));
    } else {
      ops.push_back(ZkOp::Set(StatePath(topic, partition), EncodePartitionState(next), expected));
    }
    zk_->Multi(std::move(ops), [this, topic, partition, next, key, create](absl::Status s) {
      writing_states_.erase(key);
      // Created (or found created by an earlier pass): its watch is reading it back; until
      // then it must not count as missing.
      if (create && (s.ok() || absl::IsAlreadyExists(s))) missing_states_.erase(key);
      if (create && absl::IsAlreadyExists(s)) return;
      if (s.ok()) {
        // New partitions are counted by Reconcile (one line for thousands); changes are told.
        if (!create) {
          LogInfo("cluster: controller: %s-%d leader %d, isr [%s], leader epoch %d", topic,
                  partition, next.leader, absl::StrJoin(next.isr, ","), next.leader_epoch);
        }
        return;  // the state watch brings it back
      }
      if (absl::IsAborted(s)) return;
      // Lost the role, or the state moved: the watches say what to do next.
      LogWarning("cluster: controller: writing the state of %s-%d: %s", topic, partition,
                 s.message());
      After(kRetryDelay, [this] { ReconcileSoon(); });
    });
  };
  if (!create) {
    write();
    return;
  }
  // The state's parents first (already there is fine).
  const std::string partitions = absl::StrCat("/brokers/topics/", topic, "/partitions");
  const std::string one = absl::StrCat(partitions, "/", partition);
  zk_->Create(partitions, "", CreateMode::kPersistent, [this, one, write, key](absl::Status a) {
    if (!a.ok() && !absl::IsAlreadyExists(a)) {
      writing_states_.erase(key);
      After(kRetryDelay, [this] { ReconcileSoon(); });
      return;
    }
    zk_->Create(one, "", CreateMode::kPersistent, [this, write, key](absl::Status b) {
      if (!b.ok() && !absl::IsAlreadyExists(b)) {
        writing_states_.erase(key);
        After(kRetryDelay, [this] { ReconcileSoon(); });
        return;
      }
      write();
    });
  });
}

void ClusterMember::CreateTopic(const std::string& name, int32_t partitions,
                                int32_t replication_factor,
                                const std::map<std::string, std::string>& configs,
                                absl::AnyInvocable<void(absl::Status)> done) {
  loop_->AssertInLoopThread();
  if (zk_ == nullptr || !connected_) {
    done(absl::UnavailableError("not connected to ZooKeeper"));
    return;
  }
  std::vector<int32_t> live;
  for (const auto& [id, b] : brokers_) live.push_back(id);
  if (replication_factor < 1 || static_cast<size_t>(replication_factor) > live.size()) {
    done(absl::InvalidArgumentError(absl::StrCat("replication factor ", replication_factor,
                                                 " with ", live.size(), " live brokers")));
    return;
  }
  // Round robin from a place that depends on the name, so that topics do not all start on
  // the same broker: partition p's replicas are the replication_factor live brokers from
  // start + p on, its first (preferred leader) a different broker for each next partition.
  std::vector<std::vector<int32_t>> replicas(static_cast<size_t>(partitions));
  const size_t start = std::hash<std::string>()(name) % live.size();
  for (size_t p = 0; p < replicas.size(); ++p) {
    for (size_t r = 0; r < static_cast<size_t>(replication_factor); ++r) {
      replicas[p].push_back(live[(start + p + r) % live.size()]);
    }
  }
  const std::string assignment = EncodeTopicAssignment(replicas);
  std::vector<ZkOp> ops;
  // Configs with the assignment, atomically: a member that sees the topic reads them with it.
  if (!configs.empty()) {
    ops.push_back(ZkOp::Create(absl::StrCat(kTopicConfigs, "/", name), EncodeTopicConfig(configs),
                               CreateMode::kPersistent));
  }
  ops.push_back(ZkOp::Create(absl::StrCat(kTopics, "/", name), EncodeTopicAssignment(replicas),
                             CreateMode::kPersistent));
  zk_->Multi(std::move(ops), std::move(done));
}

void ClusterMember::AlterPartitionState(const std::string& topic, int32_t partition,
                                        const PartitionState& next, int32_t version,
                                        absl::AnyInvocable<void(absl::Status)> done) {
  loop_->AssertInLoopThread();
  if (zk_ == nullptr || !connected_ || !registered_) {
    done(absl::UnavailableError("not connected to ZooKeeper"));
    return;
  }
  // Conditional on the version the leader read: a write of the controller (a new leader, an
  // ISR without a dead broker) or of an older leader in between makes this one fail.
  zk_->Set(StatePath(topic, partition), EncodePartitionState(next), version,
           [done = std::move(done)](absl::Status s, ZnodeStat) mutable { done(s); });
}

void ClusterMember::PublishSoon() {
  if (publish_pending_) return;
  publish_pending_ = true;
  loop_->Post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    publish_pending_ = false;
    Publish();
  });
}

void ClusterMember::Publish() {
  auto v = std::make_shared<ClusterView>();
  v->my_id = options_.broker_id;
  v->cluster_id = cluster_id_;
  v->brokers = brokers_;
  v->controller_id = controller_id_;
  v->controller_epoch = controller_epoch_;
  v->session_live = connected_ && registered_;
  v->topics = topics_;
  view_->Publish(std::move(v));
  if (on_change_) on_change_();
}

}  // namespace sluice::cluster
