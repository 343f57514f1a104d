// sluice: the broker process.
//
// Start-up: parse flags, open (and recover) every log under --data-dir, start the listeners,
// run until SIGTERM/SIGINT, then close every log cleanly (flush, checkpoint, clean-shutdown
// marker) so the next start re-reads nothing.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "log/crc32c.h"
#include "log/log_manager.h"
#include "log/logging.h"
#include "src/broker_config.h"

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

  storage::LogInfo("sluice starting: data dir %s, kafka port %d, amqp port %d, http port %d, "
                   "crc32c %s",
                   config->data_dir, config->kafka_port, config->amqp_port, config->http_port,
                   storage::Crc32cIsHardwareAccelerated() ? "sse4.2" : "software");
  storage::LogManager::Options options;
  options.data_dir = config->data_dir;
  options.io = config->io_backend;
  const storage::LogConfig defaults = config->default_log;
  options.config_for = [defaults](const storage::TopicPartition&) { return defaults; };
  auto logs = storage::LogManager::Open(options);
  if (!logs.ok()) {
    storage::LogError("sluice: cannot open data dir %s: %s", config->data_dir,
                      logs.status().message());
    return 1;
  }
  storage::LogInfo("sluice ready (%d logs)", (*logs)->ListLogs().size());

  while (!g_stop.load()) {
    (*logs)->Submit();
    (*logs)->Poll(absl::Milliseconds(50));
    (*logs)->Tick(absl::ToUnixMillis(absl::Now()));
    if ((*logs)->io().pending() == 0) usleep(50 * 1000);
  }
  storage::LogInfo("sluice stopping: closing logs");
  absl::Status s = (*logs)->Close();
  if (!s.ok()) {
    storage::LogError("sluice: close failed: %s", s.message());
    return 1;
  }
  storage::LogInfo("sluice stopped cleanly");
  return 0;
}
