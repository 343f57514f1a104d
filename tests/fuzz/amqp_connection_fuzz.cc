// Feeds arbitrary bytes, as a client's byte stream, to an AMQP connection of a real broker
// core (Shard + AmqpBroker on a temp data dir): protocol header, framing, handshake, every
// method handler, deliveries, confirms. The broker must neither crash nor hang; it may close
// the connection. Seeds: complete client sessions recorded from pika, amqplib and rabbitmq-c.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "absl/time/clock.h"
#include "log/file_util.h"
#include "src/amqp/amqp_broker.h"
#include "src/amqp/amqp_connection.h"
#include "src/shard.h"
#include "tests/fuzz/fuzz_connection.h"

namespace {

using namespace sluice;  // NOLINT

std::string* g_data_dir = nullptr;

void RemoveDataDir() {
  if (g_data_dir) (void)storage::RemoveTree(*g_data_dir);
}

struct Env {
  std::unique_ptr<broker::Shard> shard;
  std::unique_ptr<broker::AmqpBroker> amqp;
};

Env* MakeEnv() {
  // tmpfs when available: publisher confirms wait for fdatasync, free there.
  char tmpl[] = "/dev/shm/sluice-amqp-fuzz-XXXXXX";
  char fallback[] = "/tmp/sluice-amqp-fuzz-XXXXXX";
  broker::BrokerConfig config;
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) dir = mkdtemp(fallback);
  if (dir == nullptr) abort();
  config.data_dir = dir;
  g_data_dir = new std::string(config.data_dir);
  std::atexit(RemoveDataDir);
  config.io_backend = storage::IoBackendKind::kPwrite;
  config.default_log.max_index_bytes = 64 * 1024;
  auto shard = broker::Shard::Create(config);
  if (!shard.ok()) abort();
  auto* env = new Env;
  env->shard = std::move(*shard);
  broker::AmqpOptions options;
  options.guest_loopback_only = false;  // the socketpair has no address
  options.max_message_bytes = 1 << 20;
  auto amqp = broker::AmqpBroker::Create(env->shard.get(), options);
  if (!amqp.ok()) abort();
  env->amqp = std::move(*amqp);
  return env;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* env = MakeEnv();
  if (size > 256 * 1024) return 0;
  // The listener's cap (AmqpBroker::Listen): just above frame_max.
  fuzz::FeedConnection(
      *env->shard, env->amqp->options().frame_max + 1024,
      [](net::Connection& c) {
        return std::make_unique<broker::AmqpConnection>(env->amqp.get(), c);
      },
      data, size);
  return 0;
}
