#include "src/cluster/zk_coordinator.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zookeeper/zookeeper.h>

#include <atomic>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "log/logging.h"

namespace sluice::cluster {

// Reached from the client's completion thread through zoo_get_context (the handle's context)
// and from the calls' completion data. Watches are kept here by id, and the id is the
// watcher's context: the client may call a watcher more than once (session events go to
// every watcher) or never (a session that expires), so it must not own anything.
struct ZkCoordinator::Shared {
  Post post;
  absl::AnyInvocable<void(SessionState)> on_session;  // loop thread
  bool closed = false;                                // loop thread
  std::weak_ptr<Shared> self;
  std::atomic<int64_t> session_id{0};

  std::mutex mu;
  uint64_t next_watch = 1;
  absl::flat_hash_map<uint64_t, Watch> watches;

  // Runs `fn` on the loop thread unless the coordinator was destroyed by then.
  void Deliver(absl::AnyInvocable<void()> fn) {
    std::shared_ptr<Shared> s = self.lock();
    if (s == nullptr) return;
    post([s, fn = std::move(fn)]() mutable {
      if (!s->closed) fn();
    });
  }
  uint64_t AddWatch(Watch w) {
    if (!w) return 0;
    std::lock_guard<std::mutex> lock(mu);
    const uint64_t id = next_watch++;
    watches.emplace(id, std::move(w));
    return id;
  }
  Watch TakeWatch(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = watches.find(id);
    if (it == watches.end()) return nullptr;
    Watch w = std::move(it->second);
    watches.erase(it);
    return w;
  }
};

namespace {

using Shared = ZkCoordinator::Shared;

absl::Status ZkStatus(int rc, const std::string& what) {
  if (rc == ZOK) return absl::OkStatus();
  std::string msg = absl::StrCat("zookeeper ", what, ": ", zerror(rc));
  switch (rc) {
    case ZNONODE:
      return absl::NotFoundError(msg);
    case ZNODEEXISTS:
      return absl::AlreadyExistsError(msg);
    case ZBADVERSION:
    case ZNOTEMPTY:
      return absl::FailedPreconditionError(msg);
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
      return absl::UnavailableError(msg);
    case ZSESSIONEXPIRED:
    case ZCLOSING:
    case ZINVALIDSTATE:
      return absl::AbortedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

ZnodeStat ToStat(const struct Stat* st) {
  ZnodeStat out;
  if (st != nullptr) {
    out.czxid = st->czxid;
    out.version = st->version;
    out.ephemeral_owner = st->ephemeralOwner;
  }
  return out;
}

// The client's own log lines, into the broker's log. They come with the client's timestamp,
// thread and source position ("2026-12-07 19:40:14,957:3466(0x7f..):ZOO_ERROR@check_events@2985:
// Socket ..."): only the level and the message are kept. While ZooKeeper is unreachable the
// client says the same few things several times a second: a line logged in the last 10 s is
// dropped.
void OnClientLog(const char* message) {
  std::string_view m(message);
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.remove_suffix(1);
  if (size_t at = m.find("ZOO_"); at != std::string_view::npos) m.remove_prefix(at);
  if (size_t colon = m.find(": "); colon != std::string_view::npos) {
    std::string_view where = m.substr(0, colon);  // ZOO_ERROR@check_events@2985
    std::string_view level = where.substr(0, where.find('@'));
    std::string_view text = m.substr(colon + 2);
    static std::mutex mu;
    static absl::flat_hash_map<std::string, absl::Time> recent;  // line -> when last logged
    {
      std::lock_guard<std::mutex> lock(mu);
      const absl::Time now = absl::Now();
      auto [it, fresh] = recent.try_emplace(std::string(text), now);
      if (!fresh && now - it->second < absl::Seconds(10)) return;
      it->second = now;
      if (recent.size() > 256) recent.clear();  // varied lines (addresses, session ids)
    }
    if (level == "ZOO_ERROR") {
      storage::LogError("zookeeper client: %s", std::string(text));
    } else {
      storage::LogWarning("zookeeper client: %s", std::string(text));
    }
    return;
  }
  storage::LogWarning("zookeeper client: %s", std::string(m));
}

// The client writes its log lines to a FILE (zoo_set_log_stream): this one hands every line
// to OnClientLog. The client's threads write to it concurrently.
ssize_t WriteClientLog(void*, const char* buf, size_t size) {
  static std::mutex mu;
  static std::string pending;
  std::vector<std::string> lines;
  {
    std::lock_guard<std::mutex> lock(mu);
    pending.append(buf, size);
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(pending.substr(start, nl - start));
    }
    pending.erase(0, start);
    if (pending.size() > 4096) pending.clear();  // a line without an end: not ours to keep
  }
  for (const std::string& line : lines) OnClientLog(line.c_str());
  return static_cast<ssize_t>(size);
}

int ZkMode(CreateMode mode) { return mode == CreateMode::kEphemeral ? ZOO_EPHEMERAL : 0; }

Shared* SharedOf(zhandle_t* zh) {
  return static_cast<Shared*>(const_cast<void*>(zoo_get_context(zh)));
}

// The session watcher (zookeeper_init's), on the completion thread.
void OnSessionEvent(zhandle_t* zh, int type, int state, const char*, void*) {
  if (type != ZOO_SESSION_EVENT) return;
  Shared* shared = SharedOf(zh);
  SessionState s;
  if (state == ZOO_CONNECTED_STATE) {
    if (const clientid_t* id = zoo_client_id(zh)) shared->session_id.store(id->client_id);
    s = SessionState::kConnected;
  } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
    s = SessionState::kExpired;
  } else {
    s = SessionState::kDisconnected;
  }
  shared->Deliver([shared, s] { shared->on_session(s); });
}

// A node or child watch, on the completion thread. Session events also reach it: those are
// the session watcher's business.
void OnNodeEvent(zhandle_t* zh, int type, int, const char*, void* ctx) {
  if (type == ZOO_SESSION_EVENT) return;
  Shared* shared = SharedOf(zh);
  Coordinator::Watch w = shared->TakeWatch(reinterpret_cast<uintptr_t>(ctx));
  if (w) shared->Deliver(std::move(w));
}

void* WatchCtx(uint64_t id) { return reinterpret_cast<void*>(static_cast<uintptr_t>(id)); }

// One call in flight; its completion (called exactly once when the call was accepted) owns
// and frees it.
template <typename Done>
struct Call {
  std::shared_ptr<Shared> shared;
  std::string what;
  uint64_t watch_id = 0;
  Done done;
};

template <typename Done>
Call<Done>* NewCall(const std::shared_ptr<Shared>& shared, std::string what, Done done,
                    uint64_t watch_id = 0) {
  return new Call<Done>{shared, std::move(what), watch_id, std::move(done)};
}

// A call the client refused at once (no completion will come): answered on the loop.
template <typename Done, typename... Args>
void Refused(Call<Done>* call, int rc, Args... defaults) {
  std::unique_ptr<Call<Done>> c(call);
  if (c->watch_id != 0) c->shared->TakeWatch(c->watch_id);
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, c->what), defaults...]() mutable {
    done(s, defaults...);
  });
}

using StatusDone = absl::AnyInvocable<void(absl::Status)>;
using GetDone = absl::AnyInvocable<void(absl::Status, std::string, ZnodeStat)>;
using StatDone = absl::AnyInvocable<void(absl::Status, ZnodeStat)>;
using ChildrenDone = absl::AnyInvocable<void(absl::Status, std::vector<std::string>)>;

void OnStringCompletion(int rc, const char*, const void* data) {
  std::unique_ptr<Call<StatusDone>> c(static_cast<Call<StatusDone>*>(const_cast<void*>(data)));
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, c->what)]() mutable { done(s); });
}

void OnVoidCompletion(int rc, const void* data) {
  std::unique_ptr<Call<StatusDone>> c(static_cast<Call<StatusDone>*>(const_cast<void*>(data)));
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, c->what)]() mutable { done(s); });
}

void OnDataCompletion(int rc, const char* value, int len, const struct Stat* st, const void* data) {
  std::unique_ptr<Call<GetDone>> c(static_cast<Call<GetDone>*>(const_cast<void*>(data)));
  if (rc != ZOK && c->watch_id != 0) c->shared->TakeWatch(c->watch_id);
  std::string bytes = (rc == ZOK && value != nullptr && len > 0) ? std::string(value, len) : "";
  c->shared->Deliver(
      [done = std::move(c->done), s = ZkStatus(rc, c->what), bytes = std::move(bytes),
       stat = ToStat(rc == ZOK ? st : nullptr)]() mutable { done(s, std::move(bytes), stat); });
}

void OnStatCompletion(int rc, const struct Stat* st, const void* data) {
  std::unique_ptr<Call<StatDone>> c(static_cast<Call<StatDone>*>(const_cast<void*>(data)));
  // An exists watch is set on a missing node too.
  if (rc != ZOK && rc != ZNONODE && c->watch_id != 0) c->shared->TakeWatch(c->watch_id);
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, c->what),
                      stat = ToStat(rc == ZOK ? st : nullptr)]() mutable { done(s, stat); });
}

void OnChildrenCompletion(int rc, const struct String_vector* strings, const struct Stat*,
                          const void* data) {
  std::unique_ptr<Call<ChildrenDone>> c(static_cast<Call<ChildrenDone>*>(const_cast<void*>(data)));
  if (rc != ZOK && c->watch_id != 0) c->shared->TakeWatch(c->watch_id);
  std::vector<std::string> names;
  if (rc == ZOK && strings != nullptr) {
    for (int32_t i = 0; i < strings->count; ++i) names.emplace_back(strings->data[i]);
  }
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, c->what),
                      names = std::move(names)]() mutable { done(s, std::move(names)); });
}

// A Multi's arguments must outlive the call: they live with its completion.
struct MultiCall {
  std::shared_ptr<Shared> shared;
  std::vector<ZkOp> ops;
  std::vector<zoo_op_t> zops;
  std::vector<zoo_op_result_t> results;
  std::vector<struct Stat> stats;
  std::vector<std::string> created_paths;
  StatusDone done;
};

void OnMultiCompletion(int rc, const void* data) {
  std::unique_ptr<MultiCall> c(static_cast<MultiCall*>(const_cast<void*>(data)));
  std::string what = "multi";
  if (rc != ZOK) {
    for (size_t i = 0; i < c->results.size(); ++i) {
      if (c->results[i].err != ZOK) {
        what = absl::StrCat("multi (", c->ops[i].path, ")");
        break;
      }
    }
  }
  c->shared->Deliver([done = std::move(c->done), s = ZkStatus(rc, what)]() mutable { done(s); });
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZkCoordinator>> ZkCoordinator::Connect(
    const std::string& connect, absl::Duration session_timeout, Post post,
    absl::AnyInvocable<void(SessionState)> on_session) {
  static std::once_flag log_level_once;
  std::call_once(log_level_once, [] {
    zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
    cookie_io_functions_t io = {nullptr, WriteClientLog, nullptr, nullptr};
    if (FILE* f = fopencookie(nullptr, "w", io)) {
      setvbuf(f, nullptr, _IOLBF, 0);
      zoo_set_log_stream(f);  // for the life of the process
    }
  });
  std::unique_ptr<ZkCoordinator> c(new ZkCoordinator());
  c->shared_ = std::make_shared<Shared>();
  c->shared_->self = c->shared_;
  c->shared_->post = std::move(post);
  c->shared_->on_session = std::move(on_session);
  const int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(session_timeout));
  errno = 0;
  c->zh_ =
      zookeeper_init(connect.c_str(), OnSessionEvent, timeout_ms, nullptr, c->shared_.get(), 0);
  if (c->zh_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("zookeeper_init(", connect, "): ", errno != 0 ? strerror(errno) : "failed"));
  }
  return c;
}

ZkCoordinator::~ZkCoordinator() {
  shared_->closed = true;
  if (zh_ != nullptr) {
    const int rc = zookeeper_close(zh_);
    if (rc != ZOK) storage::LogWarning("zookeeper: closing the session: %s", zerror(rc));
  }
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->watches.clear();
}

int64_t ZkCoordinator::session_id() const { return shared_->session_id.load(); }

void ZkCoordinator::Create(const std::string& path, std::string data, CreateMode mode,
                           absl::AnyInvocable<void(absl::Status)> done) {
  auto* call = NewCall<StatusDone>(shared_, absl::StrCat("create ", path), std::move(done));
  const int rc = zoo_acreate(zh_, path.c_str(), data.data(), static_cast<int>(data.size()),
                             &ZOO_OPEN_ACL_UNSAFE, ZkMode(mode), OnStringCompletion, call);
  if (rc != ZOK) Refused(call, rc);
}

void ZkCoordinator::Get(const std::string& path, Watch watch, GetDone done) {
  const uint64_t wid = shared_->AddWatch(std::move(watch));
  auto* call = NewCall<GetDone>(shared_, absl::StrCat("get ", path), std::move(done), wid);
  const int rc = zoo_awget(zh_, path.c_str(), wid != 0 ? OnNodeEvent : nullptr, WatchCtx(wid),
                           OnDataCompletion, call);
  if (rc != ZOK) Refused(call, rc, std::string(), ZnodeStat{});
}

void ZkCoordinator::Exists(const std::string& path, Watch watch, StatDone done) {
  const uint64_t wid = shared_->AddWatch(std::move(watch));
  auto* call = NewCall<StatDone>(shared_, absl::StrCat("exists ", path), std::move(done), wid);
  const int rc = zoo_awexists(zh_, path.c_str(), wid != 0 ? OnNodeEvent : nullptr, WatchCtx(wid),
                              OnStatCompletion, call);
  if (rc != ZOK) Refused(call, rc, ZnodeStat{});
}

void ZkCoordinator::GetChildren(const std::string& path, Watch watch, ChildrenDone done) {
  const uint64_t wid = shared_->AddWatch(std::move(watch));
  auto* call =
      NewCall<ChildrenDone>(shared_, absl::StrCat("get children ", path), std::move(done), wid);
  const int rc = zoo_awget_children2(zh_, path.c_str(), wid != 0 ? OnNodeEvent : nullptr,
                                     WatchCtx(wid), OnChildrenCompletion, call);
  if (rc != ZOK) Refused(call, rc, std::vector<std::string>());
}

void ZkCoordinator::Set(const std::string& path, std::string data, int32_t version, StatDone done) {
  auto* call = NewCall<StatDone>(shared_, absl::StrCat("set ", path), std::move(done));
  const int rc = zoo_aset(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), version,
                          OnStatCompletion, call);
  if (rc != ZOK) Refused(call, rc, ZnodeStat{});
}

void ZkCoordinator::Delete(const std::string& path, int32_t version, StatusDone done) {
  auto* call = NewCall<StatusDone>(shared_, absl::StrCat("delete ", path), std::move(done));
  const int rc = zoo_adelete(zh_, path.c_str(), version, OnVoidCompletion, call);
  if (rc != ZOK) Refused(call, rc);
}

void ZkCoordinator::Multi(std::vector<ZkOp> ops, StatusDone done) {
  auto call = std::make_unique<MultiCall>();
  call->shared = shared_;
  call->ops = std::move(ops);
  const size_t n = call->ops.size();
  call->zops.resize(n);
  call->results.resize(n);
  call->stats.resize(n);
  call->created_paths.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const ZkOp& op = call->ops[i];
    zoo_op_t* z = &call->zops[i];
    switch (op.kind) {
      case ZkOp::Kind::kCreate:
        call->created_paths[i].resize(op.path.size() + 16);
        zoo_create_op_init(z, op.path.c_str(), op.data.data(), static_cast<int>(op.data.size()),
                           &ZOO_OPEN_ACL_UNSAFE, ZkMode(op.mode), call->created_paths[i].data(),
                           static_cast<int>(call->created_paths[i].size()));
        break;
      case ZkOp::Kind::kSet:
        zoo_set_op_init(z, op.path.c_str(), op.data.data(), static_cast<int>(op.data.size()),
                        op.version, &call->stats[i]);
        break;
      case ZkOp::Kind::kCheck:
        zoo_check_op_init(z, op.path.c_str(), op.version);
        break;
      case ZkOp::Kind::kDelete:
        zoo_delete_op_init(z, op.path.c_str(), op.version);
        break;
    }
  }
  call->done = std::move(done);
  MultiCall* raw = call.release();
  const int rc = zoo_amulti(zh_, static_cast<int>(n), raw->zops.data(), raw->results.data(),
                            OnMultiCompletion, raw);
  if (rc != ZOK) {
    std::unique_ptr<MultiCall> c(raw);
    c->shared->Deliver(
        [done = std::move(c->done), s = ZkStatus(rc, "multi")]() mutable { done(s); });
  }
}

}  // namespace sluice::cluster
