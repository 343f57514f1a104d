#include "src/kafka/kafka_broker.h"

#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "log/logging.h"
#include "log/record_batch.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/kafka_connection.h"
#include "src/shard_map.h"

namespace sluice::broker {

// The coordinator's host: reactor timers, the wall clock, and appends to the offsets topic
// that complete when durable (fdatasync'ed).
class KafkaBroker::GroupEnvImpl : public GroupEnv {
 public:
  // Kafka's offsets.commit.timeout.ms.
  static constexpr absl::Duration kCommitReplicationTimeout = absl::Seconds(5);

  explicit GroupEnvImpl(KafkaBroker* broker) : broker_(broker) {}

  int64_t NowMs() override { return absl::ToUnixMillis(absl::Now()); }
  uint64_t RunAfter(absl::Duration delay, absl::AnyInvocable<void()> callback) override {
    return broker_->reactor().RunAfter(delay, std::move(callback)).value;
  }
  void Cancel(uint64_t timer) override { broker_->reactor().Cancel(net::TimerId{timer}); }
  int32_t PartitionCount(const std::string& topic) override {
    const TopicInfo* t = broker_->topics().Find(topic);
    return t == nullptr ? -1 : t->partitions;
  }
  void Append(int32_t partition, std::vector<OffsetsRecord> records,
              absl::AnyInvocable<void(absl::Status)> done) override {
    storage::PartitionLog* log = broker_->GetLog(kOffsetsTopic, partition);
    if (log == nullptr) {
      done(absl::UnavailableError("offsets topic partition missing"));
      return;
    }
    storage::RecordBatchBuilder builder(0, NowMs());
    for (const OffsetsRecord& r : records) {
      std::string_view key(reinterpret_cast<const char*>(r.key.data()), r.key.size());
      std::optional<std::string_view> value;
      if (r.value.has_value()) {
        value.emplace(reinterpret_cast<const char*>(r.value->data()), r.value->size());
      }
      builder.Add(key, value);
    }
    std::vector<uint8_t> batch = builder.Build();
    // Append drops its callback when it fails at once: keep ours reachable for that case.
    auto holder = std::make_shared<absl::AnyInvocable<void(absl::Status)>>(std::move(done));
    // Cluster mode: a commit counts once the ISR has it too (acks=all), so that the next
    // coordinator, a follower now, has every commit acknowledged.
    auto result = log->Append(
        batch, storage::AckLevel::kDurable,
        [holder, broker = broker_, partition](absl::Status s, const storage::AppendResult& r) {
          if (!s.ok() || broker->replicas() == nullptr) {
            if (*holder) (*holder)(s);
            *holder = nullptr;
            return;
          }
          broker->replicas()->WaitForReplication(
              {kOffsetsTopic, partition}, r.last_offset, kCommitReplicationTimeout,
              [holder](int16_t e) {
                if (*holder) {
                  (*holder)(e == 0 ? absl::OkStatus()
                                   : absl::UnavailableError(absl::StrCat(
                                         "not replicated: ",
                                         std::string(kafka::errors::ErrorCodeName(e)))));
                }
                *holder = nullptr;
              });
        });
    if (!result.ok()) {
      storage::LogWarning("kafka: append to %s-%d failed: %s", kOffsetsTopic, partition,
                          result.status().message());
      if (*holder) (*holder)(result.status());
      *holder = nullptr;
    }
  }

 private:
  KafkaBroker* const broker_;
};

KafkaBroker::KafkaBroker(Shard* shard, KafkaOptions options)
    : shard_(shard), options_(std::move(options)) {
  // The shard may outlive this broker (main's early-exit paths destroy the broker first), and
  // its hooks cannot be removed: they check that the broker is still there.
  shard_->AddEndOfIterationHook([this, alive = alive_] {
    if (*alive) OnEndOfIteration();
  });
  shard_->AddCloseHook([this, alive = alive_] {
    if (*alive) SaveProducerSnapshots();
  });
  if (options_.cluster != nullptr) replicas_ = std::make_unique<ReplicaManager>(this);
  if (shard_->has_registry()) {
    shard_->set_topic_snapshot(topics().Snapshot());
    topics().set_on_change([this, alive = alive_](const std::vector<std::string>& names) {
      if (*alive) PublishTopics(names);
    });
    StartGroupCoordinator();
  }
}

void KafkaBroker::SetPeers(std::shared_ptr<const std::vector<KafkaBroker*>> peers) {
  peers_ = std::move(peers);
}

int KafkaBroker::OwnerOf(const std::string& topic, int32_t partition) const {
  return OwnerShard(topic, partition, shard_count());
}

void KafkaBroker::RunOn(int index, absl::AnyInvocable<void(KafkaBroker&)> task) {
  if (index == shard_index() || !peers_) {
    task(*this);
    return;
  }
  KafkaBroker* peer = (*peers_)[index];
  peer->reactor().Post([peer, task = std::move(task)]() mutable { task(*peer); });
}

void KafkaBroker::PublishTopics(const std::vector<std::string>& names) {
  std::shared_ptr<const TopicSnapshot> snapshot = topics().Snapshot();
  ApplyTopics(snapshot, names);
  if (!peers_) return;
  // Posted before whatever answer this change leads to (FIFO per posting shard): a client
  // told "created" on any shard then finds the topic there.
  for (int i = 0; i < static_cast<int>(peers_->size()); ++i) {
    if (i == shard_index()) continue;
    RunOn(i, [snapshot, names](KafkaBroker& b) { b.ApplyTopics(snapshot, names); });
  }
}

void KafkaBroker::ApplyTopics(std::shared_ptr<const TopicSnapshot> topics,
                              const std::vector<std::string>& names) {
  shard_->set_topic_snapshot(std::move(topics));
  absl::flat_hash_set<std::string> deleted;
  for (const std::string& name : names) {
    const TopicInfo* t = FindTopic(name);
    if (t == nullptr) {
      deleted.insert(name);
      continue;
    }
    storage::LogConfig config = shard_->topic_snapshot().ConfigFor(*t);
    for (int32_t p = 0; p < t->partitions; ++p) {
      if (OwnerOf(name, p) != shard_index()) continue;
      if (storage::PartitionLog* log = shard_->logs().GetLog({name, p})) {
        log->UpdateConfig(config);
      } else {
        QueueLogCreation({name, p});
      }
    }
  }
  if (deleted.empty()) return;
  // Deleted: drop this shard's logs of them (also logs left over from a crash between registry
  // and directory changes). A later re-creation comes in a later snapshot.
  for (const storage::TopicPartition& tp : shard_->logs().ListLogs()) {
    if (!deleted.contains(tp.topic)) continue;
    producer_state_.erase(tp);
    if (absl::Status s = shard_->logs().DeleteLog(tp); !s.ok()) {
      storage::LogError("kafka: deleting %s: %s", tp.DirName(), s.message());
    }
  }
}

void KafkaBroker::QueueLogCreation(storage::TopicPartition tp) {
  logs_to_create_.push_back(std::move(tp));
  if (creating_logs_) return;
  creating_logs_ = true;
  // Post works from any thread (the registry may change before this shard's loop runs);
  // the task then joins the loop's background work.
  reactor().Post([this, alive = alive_] {
    if (*alive)
      reactor().PostBackground([this, alive] {
        if (*alive) CreateQueuedLogs();
      });
  });
}

void KafkaBroker::CreateQueuedLogs() {
  const absl::Time until = absl::Now() + kLogCreationSlice;
  do {
    storage::TopicPartition tp = std::move(logs_to_create_.front());
    logs_to_create_.pop_front();
    // Creates the log if its topic (still) has that partition and it is not open yet.
    (void)GetLog(tp.topic, tp.partition);
  } while (!logs_to_create_.empty() && absl::Now() < until);
  if (logs_to_create_.empty()) {
    creating_logs_ = false;
    return;
  }
  reactor().PostBackground([this, alive = alive_] {
    if (*alive) CreateQueuedLogs();
  });
}

void KafkaBroker::EnsureTopics(std::vector<std::string> names, bool allow_auto_create,
                               absl::AnyInvocable<void()> then) {
  bool missing = false;
  for (const std::string& n : names) missing |= FindTopic(n) == nullptr;
  if (!missing || !allow_auto_create || !shard_->config().auto_create_topics) {
    then();
    return;
  }
  const int home = shard_index();
  RunOn(0, [names = std::move(names), home, then = std::move(then)](KafkaBroker& b) mutable {
    b.AutoCreateTopics(names, true);
    // After the snapshots the creations posted: `then` sees the topics.
    b.RunOn(home, [then = std::move(then)](KafkaBroker&) mutable { then(); });
  });
}

void KafkaBroker::StartGroupCoordinator() {
  const BrokerConfig& config = shard_->config();
  const std::map<std::string, std::string> overrides = {
      {"cleanup.policy", "compact"},
      {"segment.bytes", absl::StrCat(config.offsets_topic_segment_bytes)}};
  int32_t partitions = config.offsets_topic_partitions;
  if (const TopicInfo* t = topics().Find(kOffsetsTopic)) {
    // The partition count of an existing offsets topic is fixed: groups are placed by it.
    partitions = t->partitions;
    if (t->overrides != overrides) {
      if (absl::Status s = SetTopicConfig(kOffsetsTopic, overrides); !s.ok()) {
        storage::LogError("kafka: configuring %s: %s", kOffsetsTopic, s.message());
      }
    }
  } else {
    storage::LogConfig log_config = topics().defaults();
    absl::Status s;
    for (const auto& [k, v] : overrides) {
      if (s.ok()) s = ApplyTopicConfig(k, v, &log_config);
    }
    if (s.ok()) s = topics().Create(kOffsetsTopic, partitions, overrides).status();
    for (int32_t p = 0; s.ok() && p < partitions; ++p) {
      s = shard_->logs().CreateLog({kOffsetsTopic, p}, log_config).status();
    }
    if (!s.ok()) storage::LogError("kafka: creating %s: %s", kOffsetsTopic, s.message());
  }
  GroupOptions go;
  go.initial_rebalance_delay = absl::Milliseconds(config.group_initial_rebalance_delay_ms);
  go.min_session_timeout_ms = config.group_min_session_timeout_ms;
  go.max_session_timeout_ms = config.group_max_session_timeout_ms;
  go.offsets_partitions = partitions;
  go.max_size = config.group_max_size;
  go.max_member_metadata_bytes = static_cast<size_t>(config.group_max_member_metadata_bytes);
  go.max_group_metadata_bytes = static_cast<size_t>(config.group_max_metadata_bytes);
  group_env_ = std::make_unique<GroupEnvImpl>(this);
  groups_ = std::make_unique<GroupCoordinator>(group_env_.get(), go);
  const absl::Time start = absl::Now();
  for (int32_t p = 0; p < partitions; ++p) {
    if (absl::Status s = ReplayOffsetsPartition(p); !s.ok()) {
      storage::LogError("kafka: loading %s-%d: %s", kOffsetsTopic, p, s.message());
    }
  }
  groups_->FinishLoading();
  storage::LogInfo("kafka: group coordinator loaded %d groups from %s in %s",
                   groups_->group_count(), kOffsetsTopic,
                   absl::FormatDuration(absl::Now() - start));
}

absl::Status KafkaBroker::ReplayOffsetsPartition(int32_t partition) {
  storage::PartitionLog* log = GetLog(kOffsetsTopic, partition);
  if (log == nullptr) return absl::UnavailableError("no log");
  int64_t offset = log->log_start_offset();
  int skipped = 0;
  while (offset < log->written_offset()) {
    auto slice = log->ReadForReplica(offset, 1 << 20);
    if (!slice.ok()) return slice.status();
    if (slice->size == 0) break;
    auto bytes = storage::PartitionLog::ReadBytes(*slice);
    if (!bytes.ok()) return bytes.status();
    std::span<const uint8_t> rest(*bytes);
    const int64_t before = offset;
    while (rest.size() >= storage::kBatchHeaderSize) {
      auto h = storage::ParseBatchHeader(rest, UINT32_MAX);
      if (!h.ok() || h->size_bytes() > rest.size()) break;
      std::span<const uint8_t> batch = rest.first(h->size_bytes());
      rest = rest.subspan(h->size_bytes());
      if (h->last_offset() < offset) continue;
      offset = h->last_offset() + 1;
      storage::RecordBatchView view(batch);
      if (view.is_control()) continue;
      auto records = storage::DecodeRecords(batch);
      if (!records.ok()) {  // we never write compressed batches; someone else's bytes
        ++skipped;
        continue;
      }
      for (const storage::RecordView& r : *records) {
        if (!r.key.has_value()) continue;
        auto bytes_of = [](std::string_view v) {
          return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size());
        };
        std::optional<std::span<const uint8_t>> value;
        if (r.value.has_value()) value = bytes_of(*r.value);
        if (!groups_->Replay(bytes_of(*r.key), value).ok()) ++skipped;
      }
    }
    if (offset == before) return absl::DataLossError("no progress reading the log");
  }
  if (skipped > 0) {
    storage::LogWarning("kafka: %s-%d: skipped %d undecodable records", kOffsetsTopic, partition,
                        skipped);
  }
  return absl::OkStatus();
}

KafkaBroker::~KafkaBroker() {
  *alive_ = false;
  if (shard_->has_registry()) topics().set_on_change(nullptr);
  listener_.reset();
}

absl::Status KafkaBroker::Listen(uint16_t port) {
  net::ListenerOptions lo;
  lo.host = options_.host;
  lo.port = port;
  lo.connection.idle_timeout = options_.idle_timeout;
  // The reactor's own cap sits above ours: our framing rejects first, with a log line.
  lo.connection.max_input_bytes = options_.max_request_bytes + 64 * 1024;
  // One listener per shard on the same port: the kernel spreads connections over them.
  lo.reuse_port = shard_count() > 1;
  options_.listener_limits.ApplyTo(lo);
  auto listener = net::Listener::Create(
      shard_->reactor(), lo,
      [this](net::Connection& conn) -> std::unique_ptr<net::ConnectionHandler> {
        return std::make_unique<KafkaConnection>(this, conn);
      });
  if (!listener.ok()) return listener.status();
  listener_ = std::move(*listener);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<const TopicInfo*>> KafkaBroker::CreateTopics(
    std::vector<TopicRegistry::NewTopic> new_topics) {
  for (const TopicRegistry::NewTopic& t : new_topics) {
    if (!IsValidTopicName(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid topic name '", t.name, "'"));
    }
    if (t.partitions < 1 || t.partitions > options_.max_partitions) {
      return absl::OutOfRangeError(absl::StrCat("invalid partition count ", t.partitions));
    }
    storage::LogConfig config = topics().defaults();
    for (const auto& [k, v] : t.overrides) {
      if (absl::Status s = ApplyTopicConfig(k, v, &config); !s.ok()) return s;
    }
  }
  // The registry's change hook queues the logs' creation on their shards (ApplyTopics).
  auto created = topics().CreateAll(std::move(new_topics));
  if (!created.ok()) return created.status();
  for (const TopicInfo* t : *created) {
    storage::LogInfo("kafka: created topic %s with %d partitions", t->name, t->partitions);
  }
  return created;
}

int16_t KafkaBroker::LeadershipError(const std::string& topic, int32_t partition,
                                     int32_t client_epoch) const {
  if (options_.cluster == nullptr || IsInternalTopic(topic)) return 0;
  // Without a live session this broker may have been replaced: it leads nothing (no zombie
  // leader accepting writes the cluster has given to another; ReplicaManager checks).
  std::shared_ptr<const cluster::ClusterView> view = options_.cluster->Get();
  if (view->topics.count(topic) == 0) return kafka::errors::kUnknownTopicOrPartition;
  return replicas_->LeaderError({topic, partition}, client_epoch);
}

void KafkaBroker::OffsetsPartitionRoleChanged(int32_t partition, bool leader) {
  if (groups_ == nullptr) return;
  groups_->UnloadPartition(partition);
  if (!leader) return;
  // What the previous coordinator committed is in this replica's log: load it.
  const absl::Time start = absl::Now();
  if (absl::Status s = ReplayOffsetsPartition(partition); !s.ok()) {
    storage::LogError("kafka: loading %s-%d: %s", kOffsetsTopic, partition, s.message());
  }
  groups_->FinishLoadingPartition(partition);
  storage::LogInfo("kafka: coordinator of %s-%d: groups loaded in %s", kOffsetsTopic, partition,
                   absl::FormatDuration(absl::Now() - start));
}

void KafkaBroker::DropProducerState(const storage::TopicPartition& tp, bool discard_snapshot) {
  producer_state_.erase(tp);
  if (!discard_snapshot) return;
  if (storage::PartitionLog* log = shard_->logs().GetLog(tp)) {
    PartitionProducerState::DiscardSnapshot(log->dir());
  }
}

void KafkaBroker::PublishClusterView() {
  for (int i = 0; i < shard_count(); ++i) {
    RunOn(i, [](KafkaBroker& b) {
      if (b.replicas_ != nullptr) b.replicas_->ApplyView(b.options_.cluster->Get());
    });
  }
}

absl::Status KafkaBroker::DeleteTopics(const std::vector<std::string>& names) {
  // The registry's change hook deletes the logs on every shard (ApplyTopics).
  if (absl::Status s = topics().DeleteAll(names); !s.ok()) return s;
  for (const std::string& name : names) storage::LogInfo("kafka: deleted topic %s", name);
  return absl::OkStatus();
}

absl::Status KafkaBroker::AddPartitions(const std::string& name, int32_t count) {
  const TopicInfo* t = topics().Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  if (count <= t->partitions || count > options_.max_partitions) {
    return absl::OutOfRangeError(
        absl::StrCat("topic has ", t->partitions, " partitions; the new count must be larger"));
  }
  // The registry's change hook queues the new logs' creation on their shards (ApplyTopics).
  return topics().SetPartitions(name, count);
}

absl::Status KafkaBroker::SetTopicConfig(const std::string& name,
                                         std::map<std::string, std::string> overrides) {
  const TopicInfo* t = topics().Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  storage::LogConfig config = topics().defaults();
  for (const auto& [k, v] : overrides) {
    if (absl::Status s = ApplyTopicConfig(k, v, &config); !s.ok()) return s;
  }
  // The registry's change hook applies the config to the open logs of every shard.
  return topics().SetOverrides(name, std::move(overrides));
}

void KafkaBroker::AutoCreateTopics(const std::vector<std::string>& names, bool allow_auto_create) {
  if (!allow_auto_create || !shard_->config().auto_create_topics) return;
  std::vector<TopicRegistry::NewTopic> missing;
  absl::flat_hash_set<std::string> seen;
  for (const std::string& name : names) {
    // Invalid names are answered INVALID_TOPIC_EXCEPTION by the caller, nothing to log.
    if (topics().Find(name) != nullptr || !IsValidTopicName(name) || !seen.insert(name).second) {
      continue;
    }
    missing.push_back(TopicRegistry::NewTopic{name, shard_->config().default_partitions, {}});
  }
  if (missing.empty()) return;
  const size_t count = missing.size();
  auto created = CreateTopics(std::move(missing));
  if (!created.ok()) {
    storage::LogWarning("kafka: auto-creating %d topics: %s", count, created.status().message());
  }
}

storage::PartitionLog* KafkaBroker::GetLog(const std::string& topic, int32_t partition) {
  const TopicInfo* t = FindTopic(topic);
  if (t == nullptr || partition < 0 || partition >= t->partitions) return nullptr;
  if (OwnerOf(topic, partition) != shard_index()) {
    // A second log over the same directory would corrupt it: never open another shard's.
    storage::LogError("kafka: %s-%d requested on shard %d, owned by shard %d", topic, partition,
                      shard_index(), OwnerOf(topic, partition));
    return nullptr;
  }
  storage::TopicPartition tp{topic, partition};
  if (storage::PartitionLog* log = shard_->logs().GetLog(tp)) return log;
  auto log = shard_->logs().CreateLog(tp, shard_->topic_snapshot().ConfigFor(*t));
  if (!log.ok()) {
    storage::LogError("kafka: creating log %s: %s", tp.DirName(), log.status().message());
    return nullptr;
  }
  return *log;
}

PartitionProducerState* KafkaBroker::ProducerState(const std::string& topic, int32_t partition,
                                                   storage::PartitionLog* log) {
  storage::TopicPartition tp{topic, partition};
  auto it = producer_state_.find(tp);
  if (it == producer_state_.end()) {
    ProducerStateOptions options;
    options.expiration_ms = shard_->config().producer_id_expiration_ms;
    options.max_producers = static_cast<size_t>(shard_->config().max_producer_ids_per_partition);
    it = producer_state_.emplace(tp, PartitionProducerState::Load(*log, std::move(options))).first;
  }
  return it->second.get();
}

void KafkaBroker::SaveProducerSnapshots() {
  for (const auto& [tp, state] : producer_state_) {
    storage::PartitionLog* log = shard_->logs().GetLog(tp);
    if (log == nullptr) continue;
    if (absl::Status s = state->SaveSnapshot(log->dir(), log->log_end_offset()); !s.ok()) {
      storage::LogError("kafka: producer snapshot of %s: %s", tp.DirName(), s.message());
    }
  }
}

void KafkaBroker::ExpireProducers() {
  // producer.id.expiration.ms also frees the state of partitions nobody writes to any more.
  const absl::Time now = absl::Now();
  if (now - last_producer_expiry_ < absl::Seconds(1)) return;
  last_producer_expiry_ = now;
  for (auto& [tp, state] : producer_state_) state->ExpireIdle();
}

void KafkaBroker::OnEndOfIteration() {
  if (!producer_state_.empty()) ExpireProducers();
  if (!watches_.empty()) {
    std::vector<absl::AnyInvocable<void()>> fired;
    const absl::Time now = absl::Now();
    for (auto it = watches_.begin(); it != watches_.end();) {
      bool moved = false;
      for (const auto& [tp, hw] : it->watermarks) {
        storage::PartitionLog* log = shard_->logs().GetLog(tp);
        const int64_t now_at =
            log == nullptr ? -1 : (it->replica ? log->written_offset() : log->high_watermark());
        if (now_at != hw) moved = true;
      }
      if (moved) fired.push_back(std::move(it->wake));
      if (moved || it->cancelled->load(std::memory_order_relaxed) || now > it->deadline) {
        it = watches_.erase(it);
      } else {
        ++it;
      }
    }
    // After the walk: a wake may re-run a fetch, which may add watches.
    for (auto& wake : fired) wake();
  }
  for (auto it = pending_fetches_.begin(); it != pending_fetches_.end();) {
    // Hold a reference: Check may answer and the timer path may drop its own.
    std::shared_ptr<PendingFetch> f = *it;
    if (f->Check()) {
      it = pending_fetches_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace sluice::broker
