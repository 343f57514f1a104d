// sluice: the broker process.
//
// Start-up: parse flags, open (and recover) every log under --data-dir, start the listeners,
// run until SIGTERM/SIGINT, then close every log cleanly (flush, checkpoint, clean-shutdown
// marker) so the next start re-reads nothing.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "log/crc32c.h"
#include "log/log_manager.h"
#include "log/logging.h"
#include "src/amqp/amqp_broker.h"
#include "src/broker_config.h"
#include "src/http_admin.h"
#include "src/kafka/kafka_broker.h"
#include "src/metrics.h"
#include "src/shard.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

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
  auto shard = broker::Shard::Create(*config);
  if (!shard.ok()) {
    storage::LogError("sluice: cannot open data dir %s: %s", config->data_dir,
                      shard.status().message());
    return 1;
  }
  std::unique_ptr<broker::KafkaBroker> kafka;
  if (config->kafka_port != 0) {
    broker::KafkaOptions ko;
    ko.host = config->listen_host;
    ko.port = static_cast<uint16_t>(config->kafka_port);
    kafka = std::make_unique<broker::KafkaBroker>(shard->get(), ko);
    if (absl::Status s = kafka->Listen(); !s.ok()) {
      storage::LogError("sluice: kafka listener on %s:%d: %s", ko.host, ko.port, s.message());
      return 1;
    }
  }
  std::unique_ptr<broker::AmqpBroker> amqp;
  if (config->amqp_port != 0) {
    broker::AmqpOptions ao;
    ao.host = config->listen_host;
    ao.port = static_cast<uint16_t>(config->amqp_port);
    ao.disk_free_limit_bytes = static_cast<uint64_t>(config->disk_free_limit_bytes);
    for (const auto& [user, password] : config->amqp_users) ao.users[user] = password;
    auto created = broker::AmqpBroker::Create(shard->get(), ao);
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
    broker::Shard* shard0 = shard->get();
    broker::AmqpBroker* amqp_broker = amqp.get();
    auto listening = broker::HttpAdmin::Listen(
        shard0->reactor(), config->listen_host, static_cast<uint16_t>(config->http_port),
        [shard0, amqp_broker](absl::AnyInvocable<void(std::string)> done) {
          std::vector<broker::MetricSample> samples = {
              {"sluice_up", {}, 1},
              {"sluice_shards", {}, 1},
              {"sluice_topics", {}, static_cast<double>(shard0->topics().List().size())}};
          broker::CollectShardMetrics(*shard0, 0, &samples);
          if (amqp_broker != nullptr) broker::CollectAmqpMetrics(*amqp_broker, &samples);
          done(broker::RenderMetrics(samples));
        });
    if (!listening.ok()) {
      storage::LogError("sluice: http listener on %s:%d: %s", config->listen_host,
                        config->http_port, listening.status().message());
      return 1;
    }
    http = std::move(*listening);
  }
  storage::LogInfo("sluice ready (%d logs, %d topics)", (*shard)->logs().ListLogs().size(),
                   (*shard)->topics().List().size());

  absl::Status run = (*shard)->Run(g_stop);
  if (!run.ok()) storage::LogError("sluice: reactor failed: %s", run.message());
  storage::LogInfo("sluice stopping: closing logs");
  if (kafka) kafka->StopListening();
  if (amqp) amqp->StopListening();
  http.reset();
  absl::Status s = (*shard)->Close();
  if (!s.ok()) {
    storage::LogError("sluice: close failed: %s", s.message());
    return 1;
  }
  kafka.reset();
  amqp.reset();
  shard->reset();
  storage::LogInfo("sluice stopped cleanly");
  return 0;
}
