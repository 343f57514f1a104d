#include "src/broker_config.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "log/file_util.h"

namespace sluice::broker {

namespace {

absl::Status ParsePort(const std::string& name, const std::string& value, int* out) {
  int v;
  if (!absl::SimpleAtoi(value, &v) || v < 0 || v > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--%s: '%s' is not a port number (0-65535, 0 disables)", name, value));
  }
  *out = v;
  return absl::OkStatus();
}

template <typename T>
absl::Status ParseInt(const std::string& name, const std::string& value, T min, T* out) {
  T v;
  if (!absl::SimpleAtoi(value, &v) || v < min) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--%s: '%s' is not an integer >= %d", name, value, min));
  }
  *out = v;
  return absl::OkStatus();
}

// `name:password` lines; blank lines and lines starting with # are skipped.
absl::Status ReadAmqpUsers(const std::string& path,
                           std::vector<std::pair<std::string, std::string>>* users) {
  absl::StatusOr<std::vector<uint8_t>> data = storage::ReadWholeFile(path);
  if (!data.ok())
    return absl::InvalidArgumentError(absl::StrCat("--amqp-users: ", data.status().message()));
  absl::string_view text(reinterpret_cast<const char*>(data->data()), data->size());
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(':');
    if (colon == 0 || colon == absl::string_view::npos || colon > 255) {
      return absl::InvalidArgumentError(
          absl::StrCat("--amqp-users: ", path, ":", line_no, ": expected name:password"));
    }
    users->emplace_back(std::string(line.substr(0, colon)), std::string(line.substr(colon + 1)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Usage() {
  return "usage: sluice [flags]\n"
         "  --data-dir DIR            where logs live (default ./data)\n"
         "  --kafka-port N            Kafka listener port, 0 disables (default 9092)\n"
         "  --amqp-port N             AMQP 0-9-1 listener port, 0 disables (default 5672)\n"
         "  --http-port N             HTTP metrics/admin port, 0 disables (default 8080)\n"
         "  --listen-host ADDR        address the listeners bind (default 0.0.0.0)\n"
         "  --shards N                reactor threads, 0 = one per CPU (default 0)\n"
         "  --zookeeper HOSTS         cluster mode: ZooKeeper HOST:PORT[,HOST:PORT...][/chroot]\n"
         "                            (default: none, a single node)\n"
         "  --broker-id N             this broker's id in the cluster, 0 to 2147483647 (default "
         "0)\n"
         "  --advertised-host HOST    the host clients are told to reach this broker by\n"
         "                            (default: --listen-host, or the host name if 0.0.0.0)\n"
         "  --zookeeper-session-timeout-ms N  after N ms without this broker, ZooKeeper ends\n"
         "                            its session: registration and roles go (default 6000)\n"
         "  --default-replication-factor N  replicas of new topics in a cluster (default 1)\n"
         "  --io-backend B            io_uring (default) or pwrite\n"
         "  --num-partitions N        partitions of auto-created topics (default 1)\n"
         "  --auto-create-topics B    true/false (default true)\n"
         "  --segment-bytes N         log.segment.bytes (default 1073741824)\n"
         "  --retention-ms N          log.retention.ms, -1 = forever (default 7 days)\n"
         "  --retention-bytes N       log.retention.bytes, -1 = unlimited (default -1)\n"
         "  --flush-messages N        log.flush.interval.messages (default: never)\n"
         "  --flush-ms N              log.flush.interval.ms (default: never)\n"
         "  --max-message-bytes N     message.max.bytes (default 1048588)\n"
         "  --max-decompressed-batch-bytes N  largest decompressed records section of a\n"
         "                            produced compressed batch, refused with INVALID_RECORD\n"
         "                            beyond (decompression bombs); 1024 to 67108864\n"
         "                            (default 67108864, what every reader decodes)\n"
         "  --group-initial-rebalance-delay-ms N  (default 3000)\n"
         "  --group-min-session-timeout-ms N      (default 6000)\n"
         "  --group-max-session-timeout-ms N      (default 1800000)\n"
         "  --offsets-topic-partitions N          __consumer_offsets partitions (default 50)\n"
         "  --offsets-topic-segment-bytes N       its segment.bytes (default 104857600)\n"
         "  --group-max-size N                    group.max.size, members per group (1000)\n"
         "  --group-max-member-metadata-bytes N   metadata + assignment bytes per member\n"
         "                                        (default 1048576)\n"
         "  --group-max-metadata-bytes N          the same per group (default 4194304)\n"
         "  --producer-id-expiration-ms N         producer.id.expiration.ms (default 86400000)\n"
         "  --max-producer-ids-per-partition N    idempotent producer ids kept per partition\n"
         "                                        (default 10000)\n"
         "  --disk-free-limit-bytes N  AMQP publishers blocked below N free bytes in the data\n"
         "                            dir, 0 disables (default 50000000); the file\n"
         "                            <data-dir>/disk-free-limit-bytes overrides it while it "
         "exists\n"
         "  --amqp-users FILE         AMQP users, a 'name:password' per line (# comments); an\n"
         "                            empty password disables the user, e.g. 'guest:'. "
         "guest/guest\n"
         "                            (loopback only) exists unless the file disables it\n"
         "  --max-connections N       max.connections: live Kafka and AMQP connections in\n"
         "                            total; more are accepted and closed at once (default "
         "10000)\n"
         "  --max-connections-per-ip N  max.connections.per.ip: live connections from one\n"
         "                            address, on each listener group (Kafka+AMQP, HTTP); more\n"
         "                            are accepted and closed at once; 0 = no limit (default "
         "1000)\n"
         "  --connection-max-queued-bytes N  a Kafka connection stops being read while this\n"
         "                            much of its responses is unsent, held for order or being\n"
         "                            built in memory; resumes below half (default 4194304)\n"
         "  --connection-max-queued-file-ranges N  the same for zero-copy file ranges\n"
         "                            (default 1024)\n"
         "  --request-read-timeout-ms N  a request (frame) begun must arrive whole within N ms\n"
         "                            plus 1 s per --request-read-min-bytes-per-sec bytes of\n"
         "                            it, or the connection closes; 0 = off (default 30000)\n"
         "  --request-read-min-bytes-per-sec N  (default 1024)\n"
         "  --reserved-fds N          file descriptors sockets and splice pipes never take, so\n"
         "                            storage can always open files; -1 = a quarter of\n"
         "                            RLIMIT_NOFILE, at least 256 (default -1). The soft limit\n"
         "                            is raised to the hard limit at start-up\n"
         "  --log-max-open-files N    descriptors segment files may hold open together (3 per\n"
         "                            open segment); past it, segments not used recently\n"
         "                            close their files and reopen on their next use; -1 =\n"
         "                            the --reserved-fds reserve less 64 (default -1)\n"
         "  --slow-loop-iteration-ms N  log a warning when one iteration of a shard's event loop\n"
         "                            is busy N ms or more (its clients waited that long), at\n"
         "                            most every 10 s per shard; 0 = never (default 100)\n"
         "AMQP resource limits (what a client sees: net/amqp/PROTOCOL.md, \"Resource limits\"):\n"
         "  --vm-memory-high-watermark F  memory alarm at this fraction of RAM (or the cgroup\n"
         "                            limit): publishers blocked, Connection.Blocked \"low on\n"
         "                            memory\" (default 0.4; 0 blocks all publishing)\n"
         "  --vm-memory-high-watermark-absolute N  the same in bytes, replaces the fraction\n"
         "  --amqp-message-cache-bytes N  all queues' message caches together, at most half\n"
         "                            the watermark (default 268435456)\n"
         "  --amqp-max-queues N       vhost max-queues: queue.declare over it gets 406, -1\n"
         "                            unlimited (default: RLIMIT_NOFILE / 2 / 3, after the\n"
         "                            soft limit was raised to the hard one)\n"
         "  --amqp-max-connections N  vhost max-connections, -1 unlimited (default -1)\n"
         "  --amqp-user-max-connections N  per-user max-connections, -1 unlimited (default -1)\n"
         "  --amqp-user-max-channels N     per-user max-channels, -1 unlimited (default -1)\n"
         "  --channel-max N           channels per connection, 0 = 65535 (default 2047)\n"
         "  --consumer-max-per-channel N  basic.consume over it gets 530, -1 unlimited\n"
         "                            (default 1024)\n"
         "  --amqp-max-uncommitted-bytes N  uncommitted tx work per connection; over it the\n"
         "                            channel gets 406 (default 134217728)\n"
         "  --amqp-max-unsent-bytes N  unsent output per connection before deliveries and\n"
         "                            reading stop (default 4194304)\n";
}

absl::StatusOr<BrokerConfig> ParseFlags(const std::vector<std::string>& args) {
  BrokerConfig c;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") return absl::CancelledError(Usage());
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2), value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
      value = args[++i];
    }
    absl::Status s;
    if (name == "data-dir") {
      if (value.empty()) return absl::InvalidArgumentError("--data-dir must not be empty");
      c.data_dir = value;
    } else if (name == "kafka-port") {
      s = ParsePort(name, value, &c.kafka_port);
    } else if (name == "disk-free-limit-bytes") {
      s = ParseInt<int64_t>(name, value, 0, &c.disk_free_limit_bytes);
    } else if (name == "vm-memory-high-watermark") {
      double v;
      if (!absl::SimpleAtod(value, &v) || !(v >= 0) || v > 1) {
        s = absl::InvalidArgumentError(
            absl::StrFormat("--%s: '%s' is not a fraction of RAM (0-1)", name, value));
      } else {
        c.vm_memory_high_watermark = v;
      }
    } else if (name == "vm-memory-high-watermark-absolute") {
      s = ParseInt<int64_t>(name, value, 0, &c.vm_memory_high_watermark_absolute);
    } else if (name == "amqp-message-cache-bytes") {
      s = ParseInt<int64_t>(name, value, 0, &c.amqp_message_cache_bytes);
    } else if (name == "amqp-max-queues") {
      int64_t v;
      s = ParseInt<int64_t>(name, value, -1, &v);
      if (s.ok()) c.amqp_max_queues = v;
    } else if (name == "amqp-max-connections") {
      s = ParseInt<int64_t>(name, value, -1, &c.amqp_max_connections);
    } else if (name == "amqp-user-max-connections") {
      s = ParseInt<int64_t>(name, value, -1, &c.amqp_user_max_connections);
    } else if (name == "amqp-user-max-channels") {
      s = ParseInt<int64_t>(name, value, -1, &c.amqp_user_max_channels);
    } else if (name == "channel-max") {
      s = ParseInt<int32_t>(name, value, 0, &c.channel_max);
      if (s.ok() && c.channel_max > 65535) {
        s = absl::InvalidArgumentError("--channel-max: at most 65535");
      }
    } else if (name == "consumer-max-per-channel") {
      s = ParseInt<int64_t>(name, value, -1, &c.consumer_max_per_channel);
    } else if (name == "amqp-max-uncommitted-bytes") {
      s = ParseInt<int64_t>(name, value, 0, &c.amqp_max_uncommitted_bytes);
    } else if (name == "amqp-max-unsent-bytes") {
      s = ParseInt<int64_t>(name, value, 1, &c.amqp_max_unsent_bytes);
    } else if (name == "amqp-users") {
      s = ReadAmqpUsers(value, &c.amqp_users);
    } else if (name == "amqp-port") {
      s = ParsePort(name, value, &c.amqp_port);
    } else if (name == "http-port") {
      s = ParsePort(name, value, &c.http_port);
    } else if (name == "listen-host") {
      c.listen_host = value;
    } else if (name == "zookeeper") {
      if (value.empty()) return absl::InvalidArgumentError("--zookeeper must not be empty");
      c.zookeeper = value;
    } else if (name == "broker-id") {
      s = ParseInt<int32_t>(name, value, 0, &c.broker_id);
    } else if (name == "advertised-host") {
      if (value.empty()) return absl::InvalidArgumentError("--advertised-host must not be empty");
      c.advertised_host = value;
    } else if (name == "zookeeper-session-timeout-ms") {
      s = ParseInt<int64_t>(name, value, 1, &c.zookeeper_session_timeout_ms);
      if (s.ok() && c.zookeeper_session_timeout_ms > INT32_MAX)
        s = absl::InvalidArgumentError("--zookeeper-session-timeout-ms: at most 2147483647");
    } else if (name == "default-replication-factor") {
      s = ParseInt<int32_t>(name, value, 1, &c.default_replication_factor);
    } else if (name == "shards") {
      s = ParseInt<int>(name, value, 0, &c.shards);
    } else if (name == "io-backend") {
      if (value == "io_uring")
        c.io_backend = storage::IoBackendKind::kIoUring;
      else if (value == "pwrite")
        c.io_backend = storage::IoBackendKind::kPwrite;
      else
        s = absl::InvalidArgumentError("--io-backend: io_uring or pwrite");
    } else if (name == "num-partitions") {
      s = ParseInt<int32_t>(name, value, 1, &c.default_partitions);
    } else if (name == "auto-create-topics") {
      if (value == "true")
        c.auto_create_topics = true;
      else if (value == "false")
        c.auto_create_topics = false;
      else
        s = absl::InvalidArgumentError("--auto-create-topics: true or false");
    } else if (name == "segment-bytes") {
      int64_t v;
      s = ParseInt<int64_t>(name, value, 1024, &v);
      if (s.ok() && v > INT32_MAX)
        s = absl::InvalidArgumentError("--segment-bytes: at most 2 GiB - 1");
      if (s.ok()) c.default_log.segment_bytes = static_cast<uint32_t>(v);
    } else if (name == "retention-ms") {
      s = ParseInt<int64_t>(name, value, -1, &c.default_log.retention_ms);
    } else if (name == "retention-bytes") {
      s = ParseInt<int64_t>(name, value, -1, &c.default_log.retention_bytes);
    } else if (name == "flush-messages") {
      s = ParseInt<int64_t>(name, value, 1, &c.default_log.flush_messages);
    } else if (name == "flush-ms") {
      s = ParseInt<int64_t>(name, value, 0, &c.default_log.flush_ms);
    } else if (name == "max-message-bytes") {
      int64_t v;
      s = ParseInt<int64_t>(name, value, 128, &v);
      if (s.ok())
        c.default_log.max_batch_bytes = static_cast<uint32_t>(std::min<int64_t>(v, INT32_MAX));
    } else if (name == "max-decompressed-batch-bytes") {
      s = ParseInt<uint64_t>(name, value, 1024, &c.max_decompressed_batch_bytes);
      if (s.ok() && c.max_decompressed_batch_bytes > storage::kDefaultMaxDecompressedRecordsBytes)
        s = absl::InvalidArgumentError(
            absl::StrFormat("--max-decompressed-batch-bytes: at most %d (readers decode no more)",
                            storage::kDefaultMaxDecompressedRecordsBytes));
    } else if (name == "group-initial-rebalance-delay-ms") {
      s = ParseInt<int64_t>(name, value, 0, &c.group_initial_rebalance_delay_ms);
    } else if (name == "group-min-session-timeout-ms") {
      s = ParseInt<int32_t>(name, value, 1, &c.group_min_session_timeout_ms);
    } else if (name == "group-max-session-timeout-ms") {
      s = ParseInt<int32_t>(name, value, 1, &c.group_max_session_timeout_ms);
    } else if (name == "max-connections") {
      s = ParseInt<int64_t>(name, value, 1, &c.max_connections);
    } else if (name == "max-connections-per-ip") {
      s = ParseInt<int64_t>(name, value, 0, &c.max_connections_per_ip);
    } else if (name == "connection-max-queued-bytes") {
      s = ParseInt<int64_t>(name, value, 1024, &c.connection_max_queued_bytes);
    } else if (name == "connection-max-queued-file-ranges") {
      s = ParseInt<int64_t>(name, value, 1, &c.connection_max_queued_file_ranges);
    } else if (name == "request-read-timeout-ms") {
      s = ParseInt<int64_t>(name, value, 0, &c.request_read_timeout_ms);
    } else if (name == "request-read-min-bytes-per-sec") {
      s = ParseInt<int64_t>(name, value, 0, &c.request_read_min_bytes_per_sec);
    } else if (name == "reserved-fds") {
      s = ParseInt<int64_t>(name, value, -1, &c.reserved_fds);
    } else if (name == "log-max-open-files") {
      s = ParseInt<int64_t>(name, value, -1, &c.log_max_open_files);
    } else if (name == "slow-loop-iteration-ms") {
      s = ParseInt<int64_t>(name, value, 0, &c.slow_loop_iteration_ms);
    } else if (name == "offsets-topic-partitions") {
      s = ParseInt<int32_t>(name, value, 1, &c.offsets_topic_partitions);
    } else if (name == "group-max-size") {
      s = ParseInt<int32_t>(name, value, 1, &c.group_max_size);
    } else if (name == "group-max-member-metadata-bytes") {
      s = ParseInt<int64_t>(name, value, 1024, &c.group_max_member_metadata_bytes);
    } else if (name == "group-max-metadata-bytes") {
      s = ParseInt<int64_t>(name, value, 1024, &c.group_max_metadata_bytes);
    } else if (name == "producer-id-expiration-ms") {
      s = ParseInt<int64_t>(name, value, 1, &c.producer_id_expiration_ms);
    } else if (name == "max-producer-ids-per-partition") {
      s = ParseInt<int64_t>(name, value, 1, &c.max_producer_ids_per_partition);
    } else if (name == "offsets-topic-segment-bytes") {
      s = ParseInt<int64_t>(name, value, 1024, &c.offsets_topic_segment_bytes);
      if (s.ok() && c.offsets_topic_segment_bytes > INT32_MAX)
        s = absl::InvalidArgumentError("--offsets-topic-segment-bytes: at most 2 GiB - 1");
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, "\n", Usage()));
    }
    if (!s.ok()) return s;
  }
  return c;
}

}  // namespace sluice::broker
