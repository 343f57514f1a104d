// The broker's topic catalogue: names, partition counts, per-topic config overrides and topic
// ids, persisted in `<data_dir>/topics.meta` (format: src/METADATA.md).
//
// Threading: owned by the shard that owns the LogManager; not thread-safe.
// Durability: every mutation is written with storage::WriteFileAtomically before it returns
// OK, so after a crash the file holds the state before or after the mutation, never a mix.
// The registry is written before logs are created and after logs are deleted, so a crash in
// between leaves at worst an empty log directory (re-created) or a topic without its
// directory (its logs are re-created empty on the next access).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log/log_config.h"

namespace sluice::broker {

// The topic configs Kafka clients may set, in the order DescribeConfigs lists them.
inline constexpr std::array<const char*, 16> kTopicConfigNames = {"cleanup.policy",
                                                                  "delete.retention.ms",
                                                                  "flush.messages",
                                                                  "flush.ms",
                                                                  "max.compaction.lag.ms",
                                                                  "max.message.bytes",
                                                                  "message.timestamp.type",
                                                                  "min.cleanable.dirty.ratio",
                                                                  "min.compaction.lag.ms",
                                                                  "min.insync.replicas",
                                                                  "replica.lag.time.max.ms",
                                                                  "retention.bytes",
                                                                  "retention.ms",
                                                                  "segment.bytes",
                                                                  "segment.ms",
                                                                  "unclean.leader.election.enable"};

// Applies one `name=value` topic config to `config`. InvalidArgumentError for an unknown name
// or a bad value. `cleanup.policy` is delete, compact or both (log/cleaner.h).
absl::Status ApplyTopicConfig(const std::string& name, const std::string& value,
                              storage::LogConfig* config);
// The Kafka-style string value of a config (for DescribeConfigs).
std::string TopicConfigValue(const std::string& name, const storage::LogConfig& config);

struct TopicInfo {
  std::string name;
  int32_t partitions = 0;
  std::array<uint8_t, 16> id{};
  std::map<std::string, std::string> overrides;  // config name -> value, as set by clients
};

// An immutable copy of the registry's topics, handed to the other shards (shard 0 owns the
// registry; see src/shard_map.h): readable on any thread without a lock.
struct TopicSnapshot {
  storage::LogConfig defaults;
  std::map<std::string, TopicInfo> topics;

  const TopicInfo* Find(const std::string& name) const;
  // The effective log config of a topic: broker defaults + its overrides.
  storage::LogConfig ConfigFor(const TopicInfo& topic) const;
};

class TopicRegistry {
 public:
  // Loads `<data_dir>/topics.meta` (a missing file is an empty registry). DataLossError when the
  // file fails its checksum or version check: the broker refuses to start rather than guess.
  static absl::StatusOr<std::unique_ptr<TopicRegistry>> Open(const std::string& data_dir,
                                                             const storage::LogConfig& defaults);

  const TopicInfo* Find(const std::string& name) const;
  std::vector<const TopicInfo*> List() const;
  // The effective log config of a topic: broker defaults + its overrides.
  storage::LogConfig ConfigFor(const TopicInfo& topic) const;
  const storage::LogConfig& defaults() const { return defaults_; }

  // Mutations persist before returning. Create fails with AlreadyExistsError; Delete and
  // SetPartitions of an internal topic with PermissionDeniedError.
  absl::StatusOr<const TopicInfo*> Create(const std::string& name, int32_t partitions,
                                          std::map<std::string, std::string> overrides);
  // Creates all of `topics` with one write of the file and one change call, or none of them
  // (AlreadyExistsError, InvalidArgumentError for a name given twice, or the write's error):
  // a CreateTopics of thousands of topics costs one write, not one per topic.
  struct NewTopic {
    std::string name;
    int32_t partitions = 0;
    std::map<std::string, std::string> overrides;
  };
  absl::StatusOr<std::vector<const TopicInfo*>> CreateAll(std::vector<NewTopic> topics);
  absl::Status Delete(const std::string& name);
  // Deletes all of `names` with one write and one change call, or none of them (NotFoundError,
  // PermissionDeniedError for an internal topic, or the write's error).
  absl::Status DeleteAll(const std::vector<std::string>& names);
  absl::Status SetPartitions(const std::string& name, int32_t partitions);
  absl::Status SetOverrides(const std::string& name, std::map<std::string, std::string> overrides);
  // Hands out producer ids; reserves them in blocks so a restart never reuses one.
  absl::StatusOr<int64_t> NextProducerId();

  // A copy of the current topics.
  std::shared_ptr<const TopicSnapshot> Snapshot() const;
  // Called with the names of the topics changed after every successful mutation (one call for
  // CreateAll and DeleteAll), whoever made it (Kafka admin APIs, auto-creation, AMQP stream
  // queues): the Kafka front end publishes a new snapshot to the other shards from it.
  using ChangeHook = std::function<void(const std::vector<std::string>&)>;
  void set_on_change(ChangeHook f) { on_change_ = std::move(f); }

 private:
  TopicRegistry(std::string path, const storage::LogConfig& defaults)
      : path_(std::move(path)), defaults_(defaults) {}
  absl::Status Load();
  absl::Status Save() const;
  void Changed(const std::vector<std::string>& names) const {
    if (on_change_) on_change_(names);
  }

  const std::string path_;
  const storage::LogConfig defaults_;
  std::map<std::string, TopicInfo> topics_;
  int64_t next_producer_id_ = 0;
  int64_t producer_id_block_end_ = 0;  // persisted: ids below it may have been handed out
  ChangeHook on_change_;
};

// Kafka's legal topic names: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
bool IsValidTopicName(const std::string& name);

// The internal topics (Kafka's Topic.isInternal): the broker owns them. Clients may read them;
// the registry refuses to delete them or change their partition count (PermissionDenied), and
// the Kafka admin APIs refuse config changes too. Sluice has one: the group coordinator's.
inline constexpr char kConsumerOffsetsTopic[] = "__consumer_offsets";
bool IsInternalTopic(std::string_view name);

}  // namespace sluice::broker
