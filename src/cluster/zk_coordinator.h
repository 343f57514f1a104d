// Coordinator on Apache ZooKeeper through its C client (libzookeeper-mt). The client runs two
// threads of its own per session: one for the socket, one that runs completions and watchers
// in order. Those only copy what they got and hand it to `post`, so that everything else
// (callbacks, watches, session changes) happens on the owner's loop thread; nothing here ever
// waits for ZooKeeper on the loop, except the close in the destructor (at most one round
// trip, bounded by the session timeout).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "src/cluster/coordinator.h"

typedef struct _zhandle zhandle_t;  // NOLINT: the C client's own name

namespace sluice::cluster {

class ZkCoordinator final : public Coordinator {
 public:
  // Must be callable from any thread; runs the task on the owner's loop thread, tasks in the
  // order posted (net::Reactor::Post does both).
  using Post = std::function<void(absl::AnyInvocable<void()>)>;

  // `connect` is HOST:PORT[,HOST:PORT...][/chroot]. Returns at once; `on_session` says when
  // the session is established, lost, regained or expired. After kExpired this object is
  // useless: destroy it and connect again (a new session).
  static absl::StatusOr<std::unique_ptr<ZkCoordinator>> Connect(
      const std::string& connect, absl::Duration session_timeout, Post post,
      absl::AnyInvocable<void(SessionState)> on_session);
  // Closes the session (its ephemeral nodes go at once). No callback runs afterwards.
  ~ZkCoordinator() override;

  void Create(const std::string& path, std::string data, CreateMode mode,
              absl::AnyInvocable<void(absl::Status)> done) override;
  void Get(const std::string& path, Watch watch,
           absl::AnyInvocable<void(absl::Status, std::string, ZnodeStat)> done) override;
  void Exists(const std::string& path, Watch watch,
              absl::AnyInvocable<void(absl::Status, ZnodeStat)> done) override;
  void GetChildren(const std::string& path, Watch watch,
                   absl::AnyInvocable<void(absl::Status, std::vector<std::string>)> done) override;
  void Set(const std::string& path, std::string data, int32_t version,
           absl::AnyInvocable<void(absl::Status, ZnodeStat)> done) override;
  void Delete(const std::string& path, int32_t version,
              absl::AnyInvocable<void(absl::Status)> done) override;
  void Multi(std::vector<ZkOp> ops, absl::AnyInvocable<void(absl::Status)> done) override;
  int64_t session_id() const override;

  struct Shared;  // state the client's threads reach (zk_coordinator.cc)

 private:
  ZkCoordinator() = default;

  std::shared_ptr<Shared> shared_;
  zhandle_t* zh_ = nullptr;
};

}  // namespace sluice::cluster
