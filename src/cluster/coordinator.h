// The coordination service a Sluice cluster runs on (Apache ZooKeeper), as the broker uses
// it: asynchronous znode operations whose callbacks run on the owner's loop thread, one-shot
// watches, conditional writes, and the life of one session. ZNODES.md lists the znodes.
//
// Errors, as absl::Status codes (what ZooKeeper said):
//   NotFound            no such node (ZNONODE)
//   AlreadyExists       node exists (ZNODEEXISTS)
//   FailedPrecondition  version mismatch (ZBADVERSION) or node has children (ZNOTEMPTY)
//   Unavailable         connection lost or operation timed out: the outcome is unknown
//   Aborted             session expired, or the coordinator is closing
//   Internal            anything else
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"

namespace sluice::cluster {

struct ZnodeStat {
  int64_t czxid = 0;            // the transaction that created it (a broker epoch, KIP-380)
  int32_t version = -1;         // data version: what conditional writes compare
  int64_t ephemeral_owner = 0;  // session id of an ephemeral node's owner, 0 if persistent
};

enum class CreateMode { kPersistent, kEphemeral };

// One operation of an atomic Multi.
struct ZkOp {
  enum class Kind { kCreate, kSet, kCheck, kDelete };
  Kind kind = Kind::kCheck;
  std::string path;
  std::string data;
  CreateMode mode = CreateMode::kPersistent;
  int32_t version = -1;  // kSet, kCheck, kDelete: expected version (-1: any)

  static ZkOp Create(std::string path, std::string data, CreateMode mode) {
    return ZkOp{Kind::kCreate, std::move(path), std::move(data), mode, -1};
  }
  static ZkOp Set(std::string path, std::string data, int32_t version) {
    return ZkOp{Kind::kSet, std::move(path), std::move(data), CreateMode::kPersistent, version};
  }
  static ZkOp Check(std::string path, int32_t version) {
    return ZkOp{Kind::kCheck, std::move(path), "", CreateMode::kPersistent, version};
  }
  static ZkOp Delete(std::string path, int32_t version) {
    return ZkOp{Kind::kDelete, std::move(path), "", CreateMode::kPersistent, version};
  }
};

enum class SessionState {
  kConnected,     // (re)connected; the session and its watches are intact
  kDisconnected,  // connection lost; the client library reconnects within the session
  kExpired,       // the session is gone, with its ephemeral nodes and watches: start over
};

class Coordinator {
 public:
  using Watch = absl::AnyInvocable<void()>;  // fires once, on the owner's loop thread

  virtual ~Coordinator() = default;

  // `watch` may be empty. A watch is set only when the call succeeds (Get, GetChildren) or
  // also when the node is missing (Exists); it fires at the next change of the node (data or
  // deletion; children for GetChildren), and never after the session expired.
  virtual void Create(const std::string& path, std::string data, CreateMode mode,
                      absl::AnyInvocable<void(absl::Status)> done) = 0;
  virtual void Get(const std::string& path, Watch watch,
                   absl::AnyInvocable<void(absl::Status, std::string, ZnodeStat)> done) = 0;
  virtual void Exists(const std::string& path, Watch watch,
                      absl::AnyInvocable<void(absl::Status, ZnodeStat)> done) = 0;
  virtual void GetChildren(
      const std::string& path, Watch watch,
      absl::AnyInvocable<void(absl::Status, std::vector<std::string>)> done) = 0;
  virtual void Set(const std::string& path, std::string data, int32_t version,
                   absl::AnyInvocable<void(absl::Status, ZnodeStat)> done) = 0;
  virtual void Delete(const std::string& path, int32_t version,
                      absl::AnyInvocable<void(absl::Status)> done) = 0;
  // All or nothing; the status is the first failing operation's.
  virtual void Multi(std::vector<ZkOp> ops, absl::AnyInvocable<void(absl::Status)> done) = 0;

  // The session's id once connected (0 before): what an ephemeral node's owner is compared to.
  virtual int64_t session_id() const = 0;
};

}  // namespace sluice::cluster
