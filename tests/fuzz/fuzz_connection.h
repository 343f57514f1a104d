// One fuzz input through a real broker connection, as a client would send it: the bytes go in
// through a socket pair adopted by the shard's reactor (with the listener's input cap), the
// answers are read and dropped, and the shard's loop runs until the broker closed the
// connection or 400 ms passed. Shared by kafka_handler_fuzz and amqp_connection_fuzz.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/time/clock.h"
#include "src/shard.h"

namespace sluice::fuzz {

// `make_handler(net::Connection&)` returns the protocol's connection handler.
template <typename MakeHandler>
void FeedConnection(broker::Shard& shard, size_t max_input_bytes, MakeHandler make_handler,
                    const uint8_t* data, size_t size) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  int buf = 1 << 20;
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  net::Reactor& reactor = shard.reactor();
  net::ConnectionOptions options;
  options.max_input_bytes = max_input_bytes;
  auto conn = reactor.AdoptConnection(sv[0], options, make_handler);
  if (!conn.ok()) abort();
  size_t written = 0;
  uint8_t sink[65536];
  // Bounded: the stream is written, the client side shut down, answers drained; a long-poll,
  // a wait for close-ok or a partial frame ends when the client side closes, 300 ms after the
  // start, and the broker then has 100 ms to drop the connection. Bounded in time, not in loop
  // turns: a turn with nothing to do waits 100 us, not 1 ms, because most inputs are answered and
  // closed within a few turns and those 1 ms waits were about half of their wall time; timers (long
  // polls, timeouts) still see the same 300 ms.
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
    (void)shard.RunOnce(absl::Microseconds(100));
  }
  if (sv[1] >= 0) close(sv[1]);
}

}  // namespace sluice::fuzz
