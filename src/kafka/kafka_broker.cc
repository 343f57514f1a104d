#include "src/kafka/kafka_broker.h"

#include "absl/strings/str_cat.h"
#include "log/logging.h"
#include "src/kafka/kafka_connection.h"

namespace sluice::broker {

KafkaBroker::KafkaBroker(Shard* shard, KafkaOptions options)
    : shard_(shard), options_(std::move(options)) {
  shard_->AddEndOfIterationHook([this] { OnEndOfIteration(); });
  shard_->AddCloseHook([this] { SaveProducerSnapshots(); });
}

KafkaBroker::~KafkaBroker() { listener_.reset(); }

absl::Status KafkaBroker::Listen() {
  net::ListenerOptions lo;
  lo.host = options_.host;
  lo.port = options_.port;
  lo.connection.idle_timeout = options_.idle_timeout;
  // The reactor's own cap sits above ours: our framing rejects first, with a log line.
  lo.connection.max_input_bytes = options_.max_request_bytes + 64 * 1024;
  auto listener = net::Listener::Create(
      shard_->reactor(), lo,
      [this](net::Connection& conn) -> std::unique_ptr<net::ConnectionHandler> {
        return std::make_unique<KafkaConnection>(this, conn);
      });
  if (!listener.ok()) return listener.status();
  listener_ = std::move(*listener);
  return absl::OkStatus();
}

absl::StatusOr<const TopicInfo*> KafkaBroker::CreateTopic(
    const std::string& name, int32_t partitions, std::map<std::string, std::string> overrides) {
  if (!IsValidTopicName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid topic name '", name, "'"));
  }
  if (partitions < 1 || partitions > options_.max_partitions) {
    return absl::OutOfRangeError(absl::StrCat("invalid partition count ", partitions));
  }
  storage::LogConfig config = topics().defaults();
  for (const auto& [k, v] : overrides) {
    if (absl::Status s = ApplyTopicConfig(k, v, &config); !s.ok()) return s;
  }
  auto topic = topics().Create(name, partitions, std::move(overrides));
  if (!topic.ok()) return topic.status();
  for (int32_t p = 0; p < partitions; ++p) {
    auto log = shard_->logs().CreateLog({name, p}, config);
    if (!log.ok()) return log.status();
  }
  storage::LogInfo("kafka: created topic %s with %d partitions", name, partitions);
  return *topic;
}

absl::Status KafkaBroker::DeleteTopic(const std::string& name) {
  const TopicInfo* t = topics().Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  int32_t partitions = t->partitions;
  if (absl::Status s = topics().Delete(name); !s.ok()) return s;
  // Also logs left over from a crash between registry and directory changes.
  for (const storage::TopicPartition& tp : shard_->logs().ListLogs()) {
    if (tp.topic != name) continue;
    producer_state_.erase(tp);
    if (absl::Status s = shard_->logs().DeleteLog(tp); !s.ok()) {
      storage::LogError("kafka: deleting %s: %s", tp.DirName(), s.message());
    }
  }
  storage::LogInfo("kafka: deleted topic %s (%d partitions)", name, partitions);
  return absl::OkStatus();
}

absl::Status KafkaBroker::AddPartitions(const std::string& name, int32_t count) {
  const TopicInfo* t = topics().Find(name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  if (count <= t->partitions || count > options_.max_partitions) {
    return absl::OutOfRangeError(
        absl::StrCat("topic has ", t->partitions, " partitions; the new count must be larger"));
  }
  int32_t old = t->partitions;
  storage::LogConfig config = topics().ConfigFor(*t);
  for (int32_t p = old; p < count; ++p) {
    if (shard_->logs().GetLog({name, p}) != nullptr) continue;
    auto log = shard_->logs().CreateLog({name, p}, config);
    if (!log.ok()) return log.status();
  }
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
  if (absl::Status s = topics().SetOverrides(name, std::move(overrides)); !s.ok()) return s;
  for (int32_t p = 0; p < t->partitions; ++p) {
    if (storage::PartitionLog* log = shard_->logs().GetLog({name, p})) log->UpdateConfig(config);
  }
  return absl::OkStatus();
}

const TopicInfo* KafkaBroker::FindOrAutoCreate(const std::string& name, bool allow_auto_create) {
  if (const TopicInfo* t = topics().Find(name)) return t;
  if (!allow_auto_create || !shard_->config().auto_create_topics) return nullptr;
  auto t = CreateTopic(name, shard_->config().default_partitions, {});
  if (!t.ok()) {
    if (!absl::IsInvalidArgument(t.status())) {
      storage::LogWarning("kafka: auto-creating topic %s: %s", name, t.status().message());
    }
    return nullptr;
  }
  return *t;
}

storage::PartitionLog* KafkaBroker::GetLog(const std::string& topic, int32_t partition) {
  const TopicInfo* t = topics().Find(topic);
  if (t == nullptr || partition < 0 || partition >= t->partitions) return nullptr;
  storage::TopicPartition tp{topic, partition};
  if (storage::PartitionLog* log = shard_->logs().GetLog(tp)) return log;
  auto log = shard_->logs().CreateLog(tp, topics().ConfigFor(*t));
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
    it = producer_state_.emplace(tp, PartitionProducerState::Load(*log)).first;
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

void KafkaBroker::OnEndOfIteration() {
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
