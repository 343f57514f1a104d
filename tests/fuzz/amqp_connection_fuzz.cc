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
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  int buf = 1 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  net::Reactor& reactor = env->shard->reactor();
  // The listener's options (AmqpBroker::Listen): the reactor's cap just above frame_max.
  net::ConnectionOptions options;
  options.max_input_bytes = env->amqp->options().frame_max + 1024;
  auto conn = reactor.AdoptConnection(sv[0], options, [](net::Connection& c) {
    return std::make_unique<broker::AmqpConnection>(env->amqp.get(), c);
  });
  if (!conn.ok()) abort();
  size_t written = 0;
  uint8_t sink[65536];
  // Bounded: the stream is written, the client side shut down, answers drained; a connection
  // waiting for close-ok or a partial frame ends when the client side closes, 300 ms after
  // the start, and the broker then has 100 ms to drop the connection. Bounded
  // in time, not in loop turns: a turn with nothing to do waits 100 us, not 1 ms, because
  // most inputs are answered and closed within a few turns and those 1 ms waits were about
  // half of their wall time; timers (long polls, timeouts) still see the same 300 ms.
  const absl::Time start = absl::Now();
  for (int i = 0; reactor.connection_count() > 0; ++i) {
    const absl::Duration elapsed = absl::Now() - start;
    if (elapsed >= absl::Milliseconds(400)) break;
    if (sv[1] >= 0) {
      if (written < size) {
        ssize_t n = write(sv[1], data + written, size - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (written == size) shutdown(sv[1], SHUT_WR);
      } else if (size == 0 && i == 0) {
        shutdown(sv[1], SHUT_WR);
      }
      while (read(sv[1], sink, sizeof(sink)) > 0) {
      }
      if (elapsed >= absl::Milliseconds(300)) close(sv[1]), sv[1] = -1;
    }
    (void)env->shard->RunOnce(absl::Microseconds(100));
  }
  if (sv[1] >= 0) close(sv[1]);
  return 0;
}
