#include "src/shard.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "log/logging.h"
#include "src/amqp/amqp_broker.h"
#include "src/shard_map.h"

namespace sluice::broker {

namespace {
constexpr absl::Duration kTickInterval = absl::Milliseconds(100);
// Slow-iteration warnings give durations to 0.1 ms.
constexpr absl::Duration kPrecision = absl::Microseconds(100);
}  // namespace

absl::StatusOr<std::unique_ptr<Shard>> Shard::Create(const BrokerConfig& config) {
  auto topics = TopicRegistry::Open(config.data_dir, config.default_log);
  if (!topics.ok()) return topics.status();
  std::shared_ptr<const TopicSnapshot> snapshot = (*topics)->Snapshot();
  return Create(config, 0, 1, std::move(*topics), std::move(snapshot));
}

absl::StatusOr<std::unique_ptr<Shard>> Shard::Create(
    const BrokerConfig& config, int index, int count, std::unique_ptr<TopicRegistry> registry,
    std::shared_ptr<const TopicSnapshot> topics,
    std::shared_ptr<const storage::RecoveryPointFiles> recovery_points) {
  std::unique_ptr<Shard> shard(new Shard(config));
  shard->index_ = index;
  shard->count_ = count;
  shard->topics_ = std::move(registry);
  shard->snapshot_ = topics;

  storage::LogManager::Options options;
  options.data_dir = config.data_dir;
  options.io = config.io_backend;
  options.shard_index = index;
  options.recovery_points = std::move(recovery_points);
  if (config.log_max_open_files >= 0) {
    options.max_open_files = static_cast<size_t>(config.log_max_open_files / count);
  }
  // Logs found on disk open with their topic's config (registry loaded first for that).
  options.config_for = [topics](const storage::TopicPartition& tp) {
    // AMQP queue logs are not topics; they keep their own settings (src/amqp/MAPPING.md).
    if (IsAmqpQueueLog(tp.topic)) {
      return AmqpQueueLogConfig(topics->defaults, AmqpOptions().max_message_bytes);
    }
    const TopicInfo* t = topics->Find(tp.topic);
    return t ? topics->ConfigFor(*t) : topics->defaults;
  };
  if (count > 1) {
    options.owns = [index, count](const storage::TopicPartition& tp) {
      return OwnerShard(tp.topic, tp.partition, count) == index;
    };
  }
  auto logs = storage::LogManager::Open(options);
  if (!logs.ok()) return logs.status();
  shard->logs_ = std::move(*logs);

  auto reactor = net::Reactor::Create();
  if (!reactor.ok()) return reactor.status();
  shard->reactor_ = std::move(*reactor);

  Shard* self = shard.get();
  if (int fd = self->logs_->io().notify_fd(); fd >= 0) {
    self->storage_watch_ =
        self->reactor_->WatchReadable(fd, [self] { self->logs_->Poll(absl::ZeroDuration()); });
    self->watching_storage_ = true;
  }
  self->ScheduleTick();
  return shard;
}

Shard::~Shard() {
  if (!closed_) (void)Close();
  // Listeners (owned by front ends) are gone by now; the reactor closes what is left.
  if (reactor_ && watching_storage_) reactor_->Unwatch(storage_watch_);
  reactor_.reset();
}

void Shard::ScheduleTick() {
  reactor_->RunAfter(kTickInterval, [this] {
    if (closed_) return;
    logs_->Tick(absl::ToUnixMillis(absl::Now()));
    ScheduleTick();
  });
}

absl::Status Shard::Run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) {
    // Without a notify fd (pwrite backend) completions are found by polling: keep the wait
    // short while operations are pending.
    absl::Duration wait = kTickInterval;
    if (!watching_storage_ && logs_->io().pending() > 0) wait = absl::Milliseconds(1);
    // A write-behind tail is written by the next iteration without appends: do not block.
    if (logs_->has_held_writes()) wait = absl::ZeroDuration();
    if (absl::Status s = RunOnce(wait); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Shard::RunOnce(absl::Duration timeout) {
  if (absl::Status s = reactor_->RunOnce(timeout); !s.ok()) return s;
  CheckIterationTime();
  // End of iteration: one submission for every append this iteration made.
  logs_->Submit();
  // Inline-write backends complete at submit time; collect those completions now.
  logs_->Poll(absl::ZeroDuration());
  for (auto& hook : hooks_) hook();
  return absl::OkStatus();
}

void Shard::CheckIterationTime() {
  if (config_.slow_loop_iteration_ms <= 0) return;
  const absl::Duration busy = reactor_->last_iteration();
  if (busy < absl::Milliseconds(config_.slow_loop_iteration_ms)) return;
  uint64_t more = 0;
  if (!slow_log_.Allow(&more)) {
    slowest_unlogged_ = std::max(slowest_unlogged_, busy);
    return;
  }
  std::string since;
  if (more > 0) {
    since = absl::StrFormat("; %d more since the last warning, the longest %s", more,
                            absl::FormatDuration(absl::Trunc(slowest_unlogged_, kPrecision)));
  }
  storage::LogWarning(
      "shard %d: one event-loop iteration was busy for %s (--slow-loop-iteration-ms %d); "
      "clients of this shard waited up to that long%s",
      index_, absl::FormatDuration(absl::Trunc(busy, kPrecision)), config_.slow_loop_iteration_ms,
      since);
  slowest_unlogged_ = absl::ZeroDuration();
}

absl::Status Shard::Close() {
  if (closed_) return absl::OkStatus();
  for (auto& hook : close_hooks_) hook();
  closed_ = true;
  return logs_->Close();
}

}  // namespace sluice::broker
