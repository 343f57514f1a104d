// Broker settings from the command line. Every flag has an embedded default, so `sluice` with
// no arguments starts a usable broker (data in ./data, Kafka on 9092, AMQP on 5672).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "log/io_backend.h"
#include "log/log_config.h"

namespace sluice::broker {

struct BrokerConfig {
  std::string data_dir = "./data";
  std::string listen_host = "0.0.0.0";
  int kafka_port = 9092;  // 0 disables the listener
  int amqp_port = 5672;
  int http_port = 8080;
  int shards = 0;  // 0 = one per CPU
  // Cluster mode (src/cluster/): on when `zookeeper` is set. Single-node mode otherwise.
  int32_t broker_id = 0;
  std::string zookeeper;        // HOST:PORT[,HOST:PORT...][/chroot]
  std::string advertised_host;  // empty: the listen host, or the host name if that is 0.0.0.0
  int64_t zookeeper_session_timeout_ms = 6000;
  int32_t default_replication_factor = 1;
  storage::IoBackendKind io_backend = storage::IoBackendKind::kIoUring;
  storage::LogConfig default_log;  // topic defaults (Kafka's log.* settings)
  int32_t default_partitions = 1;
  bool auto_create_topics = true;
  // Consumer groups (src/kafka/GROUPS.md), named after Kafka's broker settings.
  int64_t group_initial_rebalance_delay_ms = 3000;
  int32_t group_min_session_timeout_ms = 6000;
  int32_t group_max_session_timeout_ms = 1800000;
  int32_t offsets_topic_partitions = 50;
  int64_t offsets_topic_segment_bytes = 100 * 1024 * 1024;
  // Group limits (GROUPS.md "Limits"): Kafka's group.max.size, Sluice's metadata caps.
  int32_t group_max_size = 1000;
  int64_t group_max_member_metadata_bytes = 1 << 20;
  int64_t group_max_metadata_bytes = 4 << 20;
  // Idempotent-producer state (src/kafka/producer_state.h): Kafka's producer.id.expiration.ms,
  // Sluice's max.producer.ids.per.partition.
  int64_t producer_id_expiration_ms = 86'400'000;
  int64_t max_producer_ids_per_partition = 10'000;
  // Largest decompressed records section of a produced compressed batch (a decompression
  // bomb gets INVALID_RECORD); at most what every reader decodes (64 MiB).
  uint64_t max_decompressed_batch_bytes = storage::kDefaultMaxDecompressedRecordsBytes;
  // AMQP disk alarm: publishers are blocked below this many free bytes (0 disables).
  int64_t disk_free_limit_bytes = 50'000'000;
  // AMQP users besides guest/guest (name -> password), from --amqp-users FILE. An empty
  // password disables the user (e.g. "guest:").
  std::vector<std::pair<std::string, std::string>> amqp_users;
  // Connections and what one may hold (every listener; see Usage()).
  int64_t max_connections = 10000;        // max.connections: Kafka and AMQP together
  int64_t max_connections_per_ip = 1000;  // max.connections.per.ip; 0 = no limit
  int64_t connection_max_queued_bytes = 4 << 20;
  int64_t connection_max_queued_file_ranges = 1024;
  int64_t request_read_timeout_ms = 30000;  // 0 = off
  int64_t request_read_min_bytes_per_sec = 1024;
  int64_t reserved_fds = -1;  // kept free for storage; -1 = max(256, RLIMIT_NOFILE / 4)
  // log.max.open.files: descriptors the segments of all logs hold open together, split evenly
  // between shards (log/segment_cache.h); -1 = the storage reserve above less 64.
  int64_t log_max_open_files = -1;
  // A shard logs a warning (at most every 10 s) when one iteration of its loop is busy this
  // long: every client of the shard waited that long (src/shard.h). 0 = never.
  int64_t slow_loop_iteration_ms = 100;
  // AMQP resource limits, RabbitMQ's names where it has them (meaning and client-visible
  // effect: AmqpOptions in src/amqp/amqp_broker.h). -1 = unlimited where allowed.
  double vm_memory_high_watermark = 0.4;           // fraction of RAM (or the cgroup's limit)
  int64_t vm_memory_high_watermark_absolute = -1;  // bytes; replaces the fraction when >= 0
  int64_t amqp_message_cache_bytes = int64_t{256} << 20;
  std::optional<int64_t> amqp_max_queues;  // unset: from RLIMIT_NOFILE (DefaultMaxQueues)
  int64_t amqp_max_connections = -1;
  int64_t amqp_user_max_connections = -1;
  int64_t amqp_user_max_channels = -1;
  int32_t channel_max = 2047;
  int64_t consumer_max_per_channel = 1024;
  int64_t amqp_max_uncommitted_bytes = int64_t{128} << 20;
  int64_t amqp_max_unsent_bytes = int64_t{4} << 20;
};

// Parses `--name value` and `--name=value` flags. InvalidArgumentError names the bad flag;
// `--help` yields a CancelledError whose message is the usage text.
absl::StatusOr<BrokerConfig> ParseFlags(const std::vector<std::string>& args);
std::string Usage();

}  // namespace sluice::broker
