#include "src/shard_set.h"

#include <future>

#include "log/logging.h"

namespace sluice::broker {

struct ShardSet::Remote {
  explicit Remote(int i) : index(i) {}
  const int index;
  std::thread thread;
  std::promise<absl::Status> created;  // the shard and its KafkaBroker exist (or why not)
  std::promise<int> go;                // the port to listen on (0: none), or -1: abort
  std::promise<absl::Status> listening;
  KafkaBroker* kafka = nullptr;  // set before `created`
  std::atomic<bool> stop{false};
  absl::Status close_status;  // read after join
};

int ShardSet::ShardCount(const BrokerConfig& config) {
  if (config.shards > 0) return config.shards;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void ShardSet::RunRemote(Remote* r, std::shared_ptr<const TopicSnapshot> topics,
                         std::shared_ptr<const storage::RecoveryPointFiles> points) {
  auto shard =
      Shard::Create(config_, r->index, count_, nullptr, std::move(topics), std::move(points));
  if (!shard.ok()) {
    r->created.set_value(shard.status());
    closed_->count_down();
    return;
  }
  auto kafka = std::make_unique<KafkaBroker>(shard->get(), kafka_options_);
  r->kafka = kafka.get();
  r->created.set_value(absl::OkStatus());
  const int port = r->go.get_future().get();
  if (port >= 0) {
    absl::Status listen = port > 0 ? kafka->Listen(static_cast<uint16_t>(port)) : absl::OkStatus();
    const bool ok = listen.ok();
    r->listening.set_value(std::move(listen));
    if (ok) {
      if (absl::Status s = (*shard)->Run(r->stop); !s.ok()) {
        storage::LogError("sluice: shard %d: reactor failed: %s", r->index, s.message());
      }
    }
  }
  kafka->StopListening();
  r->close_status = (*shard)->Close();
  // Other shards may still post to this reactor until they are closed too.
  closed_->arrive_and_wait();
  kafka.reset();
  shard->reset();
}

absl::StatusOr<std::unique_ptr<ShardSet>> ShardSet::Start(const BrokerConfig& config,
                                                          const KafkaOptions& kafka, bool listen) {
  std::unique_ptr<ShardSet> set(new ShardSet());
  set->config_ = config;
  set->kafka_options_ = kafka;
  // Without Kafka there is nothing to spread: AMQP runs on shard 0 only.
  set->count_ = listen ? ShardCount(config) : 1;
  set->closed_ = std::make_unique<std::latch>(set->count_);

  auto registry = TopicRegistry::Open(config.data_dir, config.default_log);
  if (!registry.ok()) return registry.status();
  std::shared_ptr<const TopicSnapshot> topics = (*registry)->Snapshot();
  // Every shard's recovery points, read before any shard rewrites its own file: a log may
  // have moved to another shard since the last start (log/recovery_points.h).
  auto read_points = storage::ReadRecoveryPointFiles(config.data_dir);
  if (!read_points.ok()) return read_points.status();
  auto points = std::make_shared<const storage::RecoveryPointFiles>(std::move(*read_points));
  ShardSet* self = set.get();
  for (int i = 1; i < set->count_; ++i) {
    Remote* r = set->remotes_.emplace_back(std::make_unique<Remote>(i)).get();
    r->thread = std::thread([self, r, topics, points] { self->RunRemote(r, topics, points); });
  }
  // Shard 0 recovers its logs while the others recover theirs.
  absl::Status status;
  auto shard0 = Shard::Create(config, 0, set->count_, std::move(*registry), topics, points);
  if (shard0.ok()) {
    set->shard0_ = std::move(*shard0);
    if (listen) set->kafka0_ = std::make_unique<KafkaBroker>(set->shard0_.get(), kafka);
  } else {
    status = shard0.status();
  }
  std::vector<bool> created;
  for (auto& r : set->remotes_) {
    absl::Status s = r->created.get_future().get();
    created.push_back(s.ok());
    if (!s.ok() && status.ok()) status = s;
  }
  if (!status.ok()) {
    for (size_t i = 0; i < set->remotes_.size(); ++i) {
      if (created[i]) set->remotes_[i]->go.set_value(-1);
    }
    if (set->shard0_) {
      set->kafka0_.reset();
      (void)set->shard0_->Close();
    }
    set->closed_->arrive_and_wait();
    for (auto& r : set->remotes_) r->thread.join();
    set->remotes_.clear();
    set->stopped_ = true;
    return status;
  }
  // Each shard rewrote its own file with every point it had: the files of shards this start
  // no longer has are stale.
  status = storage::RemoveUnusedRecoveryPointFiles(config.data_dir, set->count_);
  if (status.ok() && set->kafka0_) {
    auto peers = std::make_shared<std::vector<KafkaBroker*>>();
    peers->push_back(set->kafka0_.get());
    for (auto& r : set->remotes_) peers->push_back(r->kafka);
    // The other loops wait for `go`: their brokers are not in use yet.
    for (KafkaBroker* b : *peers) b->SetPeers(peers);
    // The group coordinator may have created its topic since the others' snapshot was taken.
    set->kafka0_->PublishTopics({});
    status = set->kafka0_->Listen(kafka.port);
    if (status.ok()) set->port_ = set->kafka0_->port();
  }
  for (auto& r : set->remotes_) r->go.set_value(status.ok() ? set->port_ : -1);
  for (auto& r : set->remotes_) {
    absl::Status s = status.ok() ? r->listening.get_future().get() : absl::OkStatus();
    if (!s.ok() && status.ok()) status = s;
  }
  if (!status.ok()) {
    (void)set->Stop();
    return status;
  }
  return set;
}

absl::Status ShardSet::Stop() {
  if (stopped_) return stop_status_;
  stopped_ = true;
  if (kafka0_) kafka0_->StopListening();
  for (auto& r : remotes_) r->stop.store(true);
  absl::Status s = shard0_->Close();
  closed_->arrive_and_wait();
  for (auto& r : remotes_) {
    r->thread.join();
    // A fenced log outranks a full disk (Unavailable) in what main reports.
    if (!r->close_status.ok() && (s.ok() || absl::IsUnavailable(s))) s = r->close_status;
  }
  remotes_.clear();
  stop_status_ = s;
  return s;
}

ShardSet::~ShardSet() {
  (void)Stop();
  kafka0_.reset();
  shard0_.reset();
}

}  // namespace sluice::broker
