// Feeds arbitrary bytes, as a client's byte stream, to a Kafka connection of a real broker core
// (Shard + KafkaBroker on a temp data dir): framing, decoding, every handler, the response
// queue. The broker must neither crash nor hang; it may close the connection.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "absl/time/clock.h"
#include "log/file_util.h"
#include "src/kafka/kafka_broker.h"
#include "src/kafka/kafka_connection.h"
#include "src/shard.h"
#include "tests/fuzz/fuzz_connection.h"

namespace {

using namespace sluice;  // NOLINT

std::string* g_data_dir = nullptr;

// The data dir is scratch: removed at exit so repeated runs leave nothing behind.
void RemoveDataDir() {
  if (g_data_dir) (void)storage::RemoveTree(*g_data_dir);
}

struct Env {
  std::unique_ptr<broker::Shard> shard;
  std::unique_ptr<broker::KafkaBroker> kafka;
};

Env* MakeEnv() {
  // tmpfs when available: produce with acks=all fdatasyncs, free there.
  char tmpl[] = "/dev/shm/sluice-handler-fuzz-XXXXXX";
  char fallback[] = "/tmp/sluice-handler-fuzz-XXXXXX";
  broker::BrokerConfig config;
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) dir = mkdtemp(fallback);
  if (dir == nullptr) abort();
  config.data_dir = dir;
  g_data_dir = new std::string(config.data_dir);
  std::atexit(RemoveDataDir);
  config.io_backend = storage::IoBackendKind::kPwrite;
  config.default_log.max_index_bytes = 64 * 1024;
  config.default_log.segment_bytes = 1 << 20;
  auto shard = broker::Shard::Create(config);
  if (!shard.ok()) abort();
  auto* env = new Env;
  env->shard = std::move(*shard);
  broker::KafkaOptions options;
  options.max_partitions = 4;  // bounded disk use however many topics the inputs create
  // No input is larger than 256 KiB (below), so no request above 1 MiB can ever be complete:
  // the default 100 MiB limit only let a mutated size prefix make the connection allocate (and
  // ASan poison) a buffer of up to 100 MiB for bytes that never come.
  options.max_request_bytes = 1 << 20;
  env->kafka = std::make_unique<broker::KafkaBroker>(env->shard.get(), options);
  return env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = MakeEnv();
  if (size > 256 * 1024) return 0;
  // The listener's cap (KafkaBroker::Listen): just above the codec's.
  fuzz::FeedConnection(
      *env->shard, env->kafka->options().max_request_bytes + 64 * 1024,
      [](net::Connection& c) {
        return std::make_unique<broker::KafkaConnection>(env->kafka.get(), c);
      },
      data, size);
  return 0;
}
