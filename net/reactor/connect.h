// Outbound TCP connections for a Reactor: a non-blocking connect whose completion is learnt
// from a writability watch, so that a slow or unreachable peer never holds the loop. Used by
// the Kafka replica fetchers (src/kafka/replica_manager.h). Loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/reactor/reactor.h"

namespace sluice::net {

// A connect in progress; destroying it abandons the attempt (its socket is closed and `done`
// is never called).
class PendingConnect {
 public:
  virtual ~PendingConnect() = default;
};

// Connects to `host` (a numeric IPv4/IPv6 address, or a name resolved with getaddrinfo on the
// loop: prefer addresses) and `port`. `done` runs on the loop with the connected socket (the
// caller owns it, e.g. Reactor::AdoptConnection), or the error (Unavailable for a refused or
// unreachable peer, DeadlineExceeded after `timeout`). It may run before ConnectTcp returns
// (an immediate failure); the returned handle is then still valid and inert.
std::unique_ptr<PendingConnect> ConnectTcp(Reactor& reactor, const std::string& host, int port,
                                           absl::Duration timeout,
                                           absl::AnyInvocable<void(absl::StatusOr<int>)> done);

}  // namespace sluice::net
