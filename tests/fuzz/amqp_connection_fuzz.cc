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

#include "log/file_util.h"
#include "src/amqp/amqp_broker.h"
#include "src/amqp/amqp_connection.h"
#include "src/shard.h"

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
  char tmpl[] = "/tmp/sluice-amqp-fuzz-XXXXXX";
  broker::BrokerConfig config;
  config.data_dir = mkdtemp(tmpl);
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
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  int buf = 1 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  net::Reactor& reactor = env->shard->reactor();
  auto conn = reactor.AdoptConnection(sv[0], {}, [](net::Connection& c) {
    return std::make_unique<broker::AmqpConnection>(env->amqp.get(), c);
  });
  if (!conn.ok()) abort();
  size_t written = 0;
  uint8_t sink[65536];
  // Bounded: the stream is written, the client side shut down, answers drained; a connection
  // waiting for close-ok or a partial frame ends when the client side closes.
  for (int i = 0; i < 400 && reactor.connection_count() > 0; ++i) {
    if (written < size) {
      ssize_t n = write(sv[1], data + written, size - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (written == size) shutdown(sv[1], SHUT_WR);
    } else if (size == 0 && i == 0) {
      shutdown(sv[1], SHUT_WR);
    }
    while (read(sv[1], sink, sizeof(sink)) > 0) {
    }
    if (i == 300) close(sv[1]), sv[1] = -1;
    (void)env->shard->RunOnce(absl::Milliseconds(1));
  }
  if (sv[1] >= 0) close(sv[1]);
  for (int i = 0; i < 100 && reactor.connection_count() > 0; ++i) {
    (void)env->shard->RunOnce(absl::Milliseconds(1));
  }
  return 0;
}
