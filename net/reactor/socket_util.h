// Internal socket helpers shared by Listener and Reactor::AdoptConnection.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::net::internal {

// "1.2.3.4:5678" or "[::1]:5678"; "?" if unknown.
std::string FormatAddress(const sockaddr_storage& addr);
// The peer of a connected socket as FormatAddress; `ip`, if given, gets its address alone
// (no port; "?" if unknown), the key of per-address connection limits.
std::string PeerAddress(int fd, std::string* ip = nullptr);
// Non-blocking, close-on-exec, and TCP_NODELAY on TCP sockets (responses are written whole,
// so Nagle would only add latency).
absl::Status PrepareSocket(int fd);
// Parses a numeric IPv4 or IPv6 host and a port into `out`.
absl::Status ParseAddress(const std::string& host, uint16_t port, sockaddr_storage* out,
                          socklen_t* len);

}  // namespace sluice::net::internal
