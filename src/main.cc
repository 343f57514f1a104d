// sluice: the broker process.
//
// Start-up: parse flags, open (and recover) every log under --data-dir, start the listeners,
// run until SIGTERM/SIGINT, then close every log cleanly (flush, checkpoint, clean-shutdown
// marker) so the next start re-reads nothing.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "log/crc32c.h"
#include "log/log_manager.h"
#include "log/logging.h"
#include "src/amqp/amqp_broker.h"
#include "src/broker_config.h"
#include "src/cluster/cluster_member.h"
#include "src/http_admin.h"
#include "src/kafka/kafka_broker.h"
#include "src/metrics.h"
#include "src/shard.h"
#include "src/shard_set.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

// The /metrics body: shard 0's own samples (registry, AMQP queues), then each shard's (its
// logs and connections), gathered on its thread and handed back to shard 0 as plain values.
void GatherMetrics(sluice::broker::ShardSet& set, const sluice::broker::AmqpBroker* amqp,
                   absl::AnyInvocable<void(std::string)> done) {
  using sluice::broker::KafkaBroker;
  using sluice::broker::MetricSample;
  struct Gather {
    std::vector<MetricSample> samples;
    int pending = 0;
    absl::AnyInvocable<void(std::string)> done;
  };
  auto g = std::make_shared<Gather>();
  g->samples = {{"sluice_up", {}, 1},
                {"sluice_shards", {}, static_cast<double>(set.size())},
                {"sluice_topics", {}, static_cast<double>(set.shard0().topics().List().size())}};
  if (amqp != nullptr) sluice::broker::CollectAmqpMetrics(*amqp, &g->samples);
  if (set.size() == 1) {
    sluice::broker::CollectShardMetrics(set.shard0(), 0, &g->samples);
    done(sluice::broker::RenderMetrics(g->samples));
    return;
  }
  g->done = std::move(done);
  g->pending = set.size();
  for (int i = 0; i < set.size(); ++i) {
    set.kafka0().RunOn(i, [g, i](KafkaBroker& b) {
      std::vector<MetricSample> mine;
      sluice::broker::CollectShardMetrics(b.shard(), i, &mine);
      b.RunOn(0, [g, mine = std::move(mine)](KafkaBroker&) mutable {
        for (MetricSample& s : mine) g->samples.push_back(std::move(s));
        if (--g->pending == 0) g->done(sluice::broker::RenderMetrics(g->samples));
      });
    });
  }
}

// Raises the soft RLIMIT_NOFILE to the hard limit (a broker holds a socket per client and
// files per partition; the soft default is often 1024) and returns the soft limit in force.
rlim_t RaiseFdLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  const rlim_t before = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    // An unlimited hard limit still stops at fs.nr_open (1 << 20 by default).
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  if (rl.rlim_cur != before) {
    sluice::storage::LogInfo("sluice: file descriptor limit raised from %d to %d",
                             static_cast<int64_t>(before), static_cast<int64_t>(rl.rlim_cur));
  }
  return rl.rlim_cur;
}

// The limits every listener applies (max.connections, max.connections.per.ip, the descriptor
// budget, the request read timeout), from the flags. Also settles storage's share of the
// descriptors: log.max.open.files, when left to its default, is the reserve less 64 (kept for
// checkpoints, journals and the registry, which open files briefly).
sluice::net::ListenerLimits ConnectionLimits(sluice::broker::BrokerConfig& config) {
  using sluice::storage::LogInfo;
  sluice::net::ListenerLimits limits;
  const int64_t fd_limit =
      static_cast<int64_t>(std::min<rlim_t>(RaiseFdLimit(), std::numeric_limits<int32_t>::max()));
  int64_t reserved =
      config.reserved_fds >= 0 ? config.reserved_fds : std::max<int64_t>(256, fd_limit / 4);
  // Never reserve so much that the network gets nothing: at least half stays usable.
  reserved = std::min(reserved, fd_limit / 2);
  limits.fd_budget = std::make_shared<sluice::net::FdBudget>(fd_limit - reserved);
  limits.limiter = std::make_shared<sluice::net::ConnectionLimiter>(
      static_cast<size_t>(config.max_connections),
      static_cast<size_t>(config.max_connections_per_ip));
  limits.request_read_timeout = absl::Milliseconds(config.request_read_timeout_ms);
  limits.request_min_bytes_per_sec = static_cast<uint64_t>(config.request_read_min_bytes_per_sec);
  LogInfo(
      "sluice: connections: max.connections %d, max.connections.per.ip %s; sockets and splice "
      "pipes may use %d of %d file descriptors (%d kept for storage); request read timeout "
      "%s + 1 s per %d bytes",
      config.max_connections,
      config.max_connections_per_ip == 0 ? std::string("unlimited")
                                         : absl::StrCat(config.max_connections_per_ip),
      fd_limit - reserved, fd_limit, reserved,
      config.request_read_timeout_ms == 0
          ? std::string("off")
          : absl::FormatDuration(absl::Milliseconds(config.request_read_timeout_ms)),
      config.request_read_min_bytes_per_sec);
  if (config.log_max_open_files < 0) {
    config.log_max_open_files = std::max<int64_t>(reserved - 64, 30);
  }
  LogInfo("sluice: log.max.open.files %d (segments beyond %d close their files until used again)",
          config.log_max_open_files, config.log_max_open_files / 3);
  return limits;
}

// The host a cluster member is reached by when --advertised-host is not given: the listen
// address, unless that is the wildcard (then the machine's name, as Kafka does).
std::string AdvertisedHost(const sluice::broker::BrokerConfig& config) {
  if (!config.advertised_host.empty()) return config.advertised_host;
  if (config.listen_host != "0.0.0.0" && config.listen_host != "::") return config.listen_host;
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') return name;
  return "localhost";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto config = broker::ParseFlags(args);
  if (!config.ok()) {
    if (absl::IsCancelled(config.status())) {
      fputs(std::string(config.status().message()).c_str(), stdout);
      return 0;
    }
    fprintf(stderr, "sluice: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  storage::LogInfo(
      "sluice starting: data dir %s, kafka port %d, amqp port %d, http port %d, "
      "crc32c %s",
      config->data_dir, config->kafka_port, config->amqp_port, config->http_port,
      storage::Crc32cImplementationName());
  const net::ListenerLimits limits = ConnectionLimits(*config);
  broker::KafkaOptions ko;
  ko.host = config->listen_host;
  ko.port = static_cast<uint16_t>(config->kafka_port);
  ko.listener_limits = limits;
  ko.max_queued_bytes = static_cast<uint64_t>(config->connection_max_queued_bytes);
  ko.max_queued_file_ranges = static_cast<size_t>(config->connection_max_queued_file_ranges);
  ko.max_decompressed_batch_bytes = config->max_decompressed_batch_bytes;
  ko.node_id = config->broker_id;
  ko.advertised_host = config->advertised_host;
  const bool cluster_mode = !config->zookeeper.empty();
  std::shared_ptr<cluster::ClusterViewSource> cluster_view;
  std::unique_ptr<cluster::ClusterMember> member;  // on shard 0, made once it exists
  if (cluster_mode) {
    ko.advertised_host = AdvertisedHost(*config);
    cluster_view = std::make_shared<cluster::ClusterViewSource>();
    ko.cluster = cluster_view;
    // Shard 0 runs InitProducerId and the member: no request comes before the member exists
    // (the listeners start serving with Run) nor after it is gone.
    ko.next_producer_id = [&member](absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done) {
      if (member == nullptr) {
        done(absl::UnavailableError("not in the cluster yet"));
        return;
      }
      member->NextProducerId(std::move(done));
    };
    ko.create_topic = [&member](const std::string& name, int32_t partitions, int32_t rf,
                                const std::map<std::string, std::string>& configs,
                                absl::AnyInvocable<void(absl::Status)> done) {
      if (member == nullptr) {
        done(absl::UnavailableError("not in the cluster yet"));
        return;
      }
      member->CreateTopic(name, partitions, rf, configs, std::move(done));
    };
    ko.default_replication_factor = config->default_replication_factor;
    ko.alter_partition_state = [&member](const std::string& topic, int32_t partition,
                                         const cluster::PartitionState& next, int32_t version,
                                         absl::AnyInvocable<void(absl::Status)> done) {
      if (member == nullptr) {
        done(absl::UnavailableError("not in the cluster yet"));
        return;
      }
      member->AlterPartitionState(topic, partition, next, version, std::move(done));
    };
  }
  const bool kafka = config->kafka_port != 0;
  storage::LogInfo("sluice: %d shards (reactor threads)",
                   kafka ? broker::ShardSet::ShardCount(*config) : 1);
  auto shards = broker::ShardSet::Start(*config, ko, kafka);
  if (!shards.ok()) {
    storage::LogError("sluice: cannot start (data dir %s, kafka %s:%d): %s", config->data_dir,
                      ko.host, ko.port, shards.status().message());
    return 1;
  }
  broker::Shard& shard0 = (*shards)->shard0();
  if (cluster_mode) {
    cluster::ClusterMemberOptions mo;
    mo.broker_id = config->broker_id;
    mo.zookeeper = config->zookeeper;
    mo.session_timeout = absl::Milliseconds(config->zookeeper_session_timeout_ms);
    mo.advertised_host = ko.advertised_host;
    mo.kafka_port = config->kafka_port;
    member = std::make_unique<cluster::ClusterMember>(&shard0.reactor(), mo, cluster_view);
    // Every topic of the cluster gets its logs here (all its partitions, also those this
    // broker does not replicate: those stay empty), then every shard applies the partitions'
    // leaders and ISRs (src/kafka/replica_manager.h).
    member->set_on_change([set = shards->get(), cluster_view] {
      broker::KafkaBroker& kafka0 = set->kafka0();
      std::shared_ptr<const cluster::ClusterView> view = cluster_view->Get();
      std::vector<broker::TopicRegistry::NewTopic> missing;
      for (const auto& [name, t] : view->topics) {
        const broker::TopicInfo* local = kafka0.topics().Find(name);
        if (local == nullptr) {
          missing.push_back({name, static_cast<int32_t>(t.replicas.size()), t.configs});
        } else if (local->partitions != static_cast<int32_t>(t.replicas.size())) {
          storage::LogWarning(
              "cluster: topic %s has %d partitions here but %d in the cluster; serving the "
              "cluster's",
              name, local->partitions, t.replicas.size());
        }
      }
      for (broker::TopicRegistry::NewTopic& t : missing) {
        const std::string name = t.name;
        if (auto created = kafka0.CreateTopics({std::move(t)}); !created.ok()) {
          storage::LogError("cluster: making the logs of topic %s: %s", name,
                            created.status().message());
        }
      }
      kafka0.PublishClusterView();
    });
    if (absl::Status s = member->Start(); !s.ok()) {
      storage::LogError("sluice: --zookeeper %s: %s", config->zookeeper, s.message());
      return 2;
    }
  }
  std::unique_ptr<broker::AmqpBroker> amqp;
  if (config->amqp_port != 0) {
    broker::AmqpOptions ao;
    ao.host = config->listen_host;
    ao.port = static_cast<uint16_t>(config->amqp_port);
    ao.disk_free_limit_bytes = static_cast<uint64_t>(config->disk_free_limit_bytes);
    ao.listener_limits = limits;
    if (config->vm_memory_high_watermark_absolute >= 0) {
      ao.memory_high_watermark_bytes =
          static_cast<uint64_t>(config->vm_memory_high_watermark_absolute);
    } else if (uint64_t ram = broker::TotalMemoryBytes(); ram > 0) {
      ao.memory_high_watermark_bytes =
          static_cast<uint64_t>(static_cast<double>(ram) * config->vm_memory_high_watermark);
    }
    ao.message_cache_bytes = static_cast<uint64_t>(config->amqp_message_cache_bytes);
    if (config->amqp_max_queues) ao.max_queues = *config->amqp_max_queues;
    ao.max_connections = config->amqp_max_connections;
    ao.user_max_connections = config->amqp_user_max_connections;
    ao.user_max_channels = config->amqp_user_max_channels;
    ao.channel_max = static_cast<uint16_t>(config->channel_max == 0 ? 65535 : config->channel_max);
    ao.consumer_max_per_channel = config->consumer_max_per_channel;
    ao.max_uncommitted_bytes = static_cast<uint64_t>(config->amqp_max_uncommitted_bytes);
    ao.max_unsent_bytes = static_cast<uint64_t>(config->amqp_max_unsent_bytes);
    storage::LogInfo(
        "sluice: amqp limits: vm_memory_high_watermark %d bytes, message caches %d bytes, "
        "max-queues %d, channel_max %d, consumer_max_per_channel %d, uncommitted %d bytes, "
        "unsent %d bytes per connection",
        ao.memory_high_watermark_bytes, ao.message_cache_bytes, ao.max_queues, ao.channel_max,
        ao.consumer_max_per_channel, ao.max_uncommitted_bytes, ao.max_unsent_bytes);
    for (const auto& [user, password] : config->amqp_users) ao.users[user] = password;
    auto created = broker::AmqpBroker::Create(&shard0, ao);
    if (!created.ok()) {
      storage::LogError("sluice: amqp state in %s: %s", config->data_dir,
                        created.status().message());
      return 1;
    }
    amqp = std::move(*created);
    if (absl::Status s = amqp->Listen(); !s.ok()) {
      storage::LogError("sluice: amqp listener on %s:%d: %s", ao.host, ao.port, s.message());
      return 1;
    }
  }
  std::unique_ptr<broker::HttpAdmin> http;
  if (config->http_port != 0) {
    broker::ShardSet* set = shards->get();
    broker::AmqpBroker* amqp_broker = amqp.get();
    // Its own connection count (at most 256, per address as the others), so that clients of
    // the other listeners can never lock monitoring out; same descriptor budget and timeouts.
    net::ListenerLimits http_limits = limits;
    http_limits.limiter = std::make_shared<net::ConnectionLimiter>(
        broker::HttpAdmin::kMaxConnections, static_cast<size_t>(config->max_connections_per_ip));
    auto listening = broker::HttpAdmin::Listen(
        shard0.reactor(), config->listen_host, static_cast<uint16_t>(config->http_port),
        http_limits, [set, amqp_broker](absl::AnyInvocable<void(std::string)> done) {
          GatherMetrics(*set, amqp_broker, std::move(done));
        });
    if (!listening.ok()) {
      storage::LogError("sluice: http listener on %s:%d: %s", config->listen_host,
                        config->http_port, listening.status().message());
      return 1;
    }
    http = std::move(*listening);
  }
  storage::LogInfo("sluice ready (%d shards; shard 0: %d logs; %d topics)", (*shards)->size(),
                   shard0.logs().ListLogs().size(), shard0.topics().List().size());

  absl::Status run = (*shards)->Run(g_stop);
  if (!run.ok()) storage::LogError("sluice: reactor failed: %s", run.message());
  // Leave the cluster first: the registration (and any role) goes at once, not a session
  // timeout later.
  member.reset();
  storage::LogInfo("sluice stopping: closing logs");
  if (amqp) amqp->StopListening();
  http.reset();
  absl::Status s = (*shards)->Stop();
  // Out of disk space at stop is not a failure of the stop: every log is consistent, and
  // whatever could not be marked clean is recovered from its checkpoint at the next start.
  // A fenced log (I/O error) is.
  if (!s.ok() && !absl::IsUnavailable(s)) {
    storage::LogError("sluice: close failed: %s", s.message());
    return 1;
  }
  amqp.reset();
  shards->reset();
  if (s.ok()) {
    storage::LogInfo("sluice stopped cleanly");
  } else {
    storage::LogWarning("sluice stopped (out of disk space: %s)", s.message());
  }
  return 0;
}
