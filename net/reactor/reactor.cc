#include "net/reactor/reactor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "net/reactor/connection.h"
#include "net/reactor/net_log.h"
#include "net/reactor/socket_util.h"

namespace sluice::net {
namespace {
// ThreadSanitizer cannot see absl::Mutex when absl itself is not built with it (Debian's is
// not): what remote_mu_ orders (the task queue) is announced to it explicitly.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLUICE_TSAN_BUILD 1
#endif
#endif
#ifdef SLUICE_TSAN_BUILD
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
void TsanAcquire(void* addr) { __tsan_acquire(addr); }
void TsanRelease(void* addr) { __tsan_release(addr); }
#else
void TsanAcquire(void*) {}
void TsanRelease(void*) {}
#endif

thread_local Reactor* t_reactor = nullptr;

// How long ~Reactor waits for the kernel to return cancelled operations.
constexpr absl::Duration kShutdownDrainLimit = absl::Seconds(5);

unsigned SetupFlags(RingSetup setup) {
  switch (setup) {
    case RingSetup::kSingleIssuerDeferTaskrun:
      return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    case RingSetup::kCoopTaskrun:
      return IORING_SETUP_COOP_TASKRUN;
    case RingSetup::kPlain:
      return 0;
  }
  return 0;
}

__kernel_timespec ToTimespec(Reactor::Clock::duration d) {
  if (d < Reactor::Clock::duration::zero()) d = Reactor::Clock::duration::zero();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  __kernel_timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  return ts;
}

int64_t ToNanos(Reactor::Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

}  // namespace

std::string_view RingSetupName(RingSetup setup) {
  switch (setup) {
    case RingSetup::kSingleIssuerDeferTaskrun:
      return "SINGLE_ISSUER|DEFER_TASKRUN";
    case RingSetup::kCoopTaskrun:
      return "COOP_TASKRUN";
    case RingSetup::kPlain:
      return "plain";
  }
  return "?";
}

struct Reactor::Watch final : internal::IoOp {
  Reactor* reactor;
  uint64_t id;
  int fd;
  unsigned events = POLLIN;
  Task callback;
  bool active = true;     // false after Unwatch
  bool inflight = false;  // a poll is submitted
  bool in_callback = false;

  void Complete(int res, uint32_t) override { reactor->CompleteWatch(this, res); }
};

Reactor::Reactor(const ReactorOptions& options)
    : options_(options), loop_thread_(std::this_thread::get_id()) {}

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(ReactorOptions options) {
  if (t_reactor != nullptr) {
    return absl::FailedPreconditionError("this thread already has a Reactor");
  }
  std::unique_ptr<Reactor> reactor(new Reactor(options));
  if (absl::Status s = reactor->Init(); !s.ok()) return s;
  t_reactor = reactor.get();
  return reactor;
}

absl::Status Reactor::Init() {
  // Try the best setup first; older kernels reject unknown flags with EINVAL.
  int rc = -EINVAL;
  for (int s = static_cast<int>(options_.best_setup); s <= static_cast<int>(RingSetup::kPlain);
       ++s) {
    io_uring_params params{};
    params.flags = SetupFlags(static_cast<RingSetup>(s)) | IORING_SETUP_CQSIZE;
    params.cq_entries = options_.ring_entries * 8;
    rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    if (rc == 0) {
      setup_ = static_cast<RingSetup>(s);
      break;
    }
    if (rc != -EINVAL) break;  // e.g. ENOMEM, EPERM: no flag set will help
  }
  if (rc != 0) return absl::ErrnoToStatus(-rc, "io_uring_queue_init_params");
  ring_ready_ = true;

  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (probe != nullptr) {
    supports_splice_ = io_uring_opcode_supported(probe, IORING_OP_SPLICE);
    // Multishot accept came with 5.19, as did IORING_OP_SOCKET: the probe can't see flags,
    // so use the opcode of the same release as the witness (Listener still falls back at
    // run time if the first CQE says EINVAL).
    supports_multishot_accept_ = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    io_uring_free_probe(probe);
  }
  NetLog("reactor: io_uring set up with %s (%u entries), splice %s, multishot accept %s",
         RingSetupName(setup_), options_.ring_entries, supports_splice_ ? "yes" : "no",
         supports_multishot_accept_ ? "yes" : "no");

  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::ErrnoToStatus(errno, "eventfd");
  wake_watch_ = WatchReadable(wake_fd_, [this] { OnWake(); });
  return absl::OkStatus();
}

Reactor::~Reactor() {
  if (!ring_ready_) {
    if (wake_fd_ >= 0) ::close(wake_fd_);
    return;
  }
  AssertInLoopThread();
  // Close every connection; their ops get cancelled and they are reaped as the CQEs arrive.
  std::vector<ConnectionId> ids;
  ids.reserve(connections_.size());
  for (const auto& [id, conn] : connections_) ids.push_back(id);
  for (ConnectionId id : ids) {
    auto it = connections_.find(id);
    if (it != connections_.end() && it->second->state_ != Connection::State::kClosed) {
      it->second->Close(absl::CancelledError("reactor shutting down"));
    }
  }
  std::vector<uint64_t> watch_ids;
  for (const auto& [id, w] : watches_) watch_ids.push_back(id);
  for (uint64_t id : watch_ids) Unwatch(WatchId{id});

  const absl::Time give_up = absl::Now() + kShutdownDrainLimit;
  while ((inflight_ops_ > 0 || !destroy_pending_.empty()) && absl::Now() < give_up) {
    FlushAndReap();
    __kernel_timespec ts = ToTimespec(std::chrono::milliseconds(10));
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    DispatchCompletions();
  }
  FlushAndReap();
  if (inflight_ops_ > 0) {
    NetLog("reactor: %u operations still in flight at shutdown; their owners are leaked",
           static_cast<unsigned>(inflight_ops_));
  }
  // Connections still here have in-flight ops the kernel never returned; freeing them now
  // could let a late completion touch freed memory, but the ring is about to go away and
  // io_uring_queue_exit cancels everything without posting to us.
  for (auto& [id, conn] : connections_) {
    if (!conn->inflight()) continue;
    conn.release();  // leaked on purpose: see above
  }
  connections_.clear();
  timers_.clear();
  local_tasks_.clear();
  background_tasks_.clear();
  {
    absl::MutexLock lock(&remote_mu_);
    TsanAcquire(&remote_tasks_);
    remote_tasks_.clear();
  }
  io_uring_queue_exit(&ring_);
  ::close(wake_fd_);
  if (t_reactor == this) t_reactor = nullptr;
}

void Reactor::AssertInLoopThread() const {
#if defined(SLUICE_NET_THREAD_CHECKS) && SLUICE_NET_THREAD_CHECKS
  if (!IsInLoopThread()) {
    std::fprintf(stderr,
                 "sluice/net: Reactor method called off its loop thread (use Reactor::Post)\n");
    std::abort();
  }
#endif
}

absl::Status Reactor::Run() {
  AssertInLoopThread();
  absl::Status status;
  while (!stop_.load(std::memory_order_acquire)) {
    status = RunOnce(absl::InfiniteDuration());
    if (!status.ok()) break;
  }
  stop_.store(false, std::memory_order_release);
  return status;
}

void Reactor::Stop() {
  stop_.store(true, std::memory_order_release);
  if (!IsInLoopThread()) {
    const uint64_t one = 1;
    // EAGAIN means the counter is saturated, i.e. a wake-up is pending anyway.
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  }
}

absl::Status Reactor::RunOnce(absl::Duration timeout) {
  AssertInLoopThread();
  FlushAndReap();

  const Clock::time_point now = Clock::now();
  // The iteration that ends here was busy since the previous poll returned: everything done
  // between two polls, including what the embedder did between RunOnce calls.
  Clock::duration busy = Clock::duration::zero();
  if (polled_) {
    busy = now - poll_returned_;
    last_iteration_ = busy;
    stats_.iteration.Record(ToNanos(busy));
  }

  Clock::duration wait = Clock::duration::max();
  if (timeout != absl::InfiniteDuration()) {
    wait = std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(timeout));
  }
  if (!local_tasks_.empty() || !background_tasks_.empty() ||
      remote_pending_.load(std::memory_order_acquire) || stop_.load(std::memory_order_relaxed)) {
    wait = Clock::duration::zero();
  }
  wait = std::min(wait, TimeToNextTimer(now));

  // Whether this poll found completions already pending (they waited for the loop since the
  // previous poll) or slept until they came (they waited for nothing). A zero wait cannot
  // sleep. Otherwise, after an iteration long enough to matter, a non-blocking poll tells;
  // after a shorter one the loop does not spend that syscall and does not know.
  io_uring_cqe* cqe = nullptr;
  enum class Found { kUnknown, kPending, kWhileIdle } found = Found::kUnknown;
  if (wait <= Clock::duration::zero()) {
    if (absl::Status s = Poll(Clock::duration::zero(), &cqe); !s.ok()) return s;
    found = Found::kPending;
  } else if (polled_ && ToNanos(busy) >= LoopStats::kReadyWaitResolutionNanos) {
    if (absl::Status s = Poll(Clock::duration::zero(), &cqe); !s.ok()) return s;
    found = Found::kPending;
    if (cqe == nullptr) {
      if (absl::Status s = Poll(wait, &cqe); !s.ok()) return s;
      found = Found::kWhileIdle;
    }
  } else {
    if (absl::Status s = Poll(wait, &cqe); !s.ok()) return s;
  }
  const Clock::time_point returned = Clock::now();
  const size_t served = DispatchCompletions();
  if (served > 0 && polled_) {
    int64_t ready_wait = 0;
    switch (found) {
      case Found::kPending:
        ready_wait = ToNanos(returned - poll_returned_);
        break;
      case Found::kWhileIdle:
        ready_wait = 0;
        break;
      case Found::kUnknown:  // busy < the resolution: at most that, or nothing if it slept
        ready_wait = ToNanos(busy);
        break;
    }
    stats_.ready_wait.Record(ready_wait);
  }
  polled_ = true;
  poll_returned_ = returned;

  RunDueTimers();
  RunTasks();
  RunBackground();
  FlushAndReap();
  return absl::OkStatus();
}

absl::Status Reactor::Poll(Clock::duration wait, io_uring_cqe** cqe) {
  *cqe = nullptr;
  int rc;
  if (wait == Clock::duration::max()) {
    rc = io_uring_submit_and_wait_timeout(&ring_, cqe, 1, nullptr, nullptr);
  } else {
    __kernel_timespec ts = ToTimespec(wait);
    rc = io_uring_submit_and_wait_timeout(&ring_, cqe, 1, &ts, nullptr);
  }
  // ETIME: the timeout passed; EINTR: a signal; EBUSY/EAGAIN: the CQ is backed up or the
  // kernel is short of memory for a moment: drain the CQ and come back.
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    return absl::ErrnoToStatus(-rc, "io_uring_submit_and_wait_timeout");
  }
  return absl::OkStatus();
}

size_t Reactor::DispatchCompletions() {
  size_t served = 0;
  io_uring_cqe* cqe = nullptr;
  for (unsigned n = 0; n < options_.max_cqes_per_iteration; ++n) {
    if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) break;
    // Copy out and release the slot first: the handler may submit, and may free the op.
    const uint64_t user_data = cqe->user_data;
    const int res = cqe->res;
    const uint32_t flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    if (user_data == 0) continue;
    if ((flags & IORING_CQE_F_MORE) == 0) --inflight_ops_;
    ++served;
    reinterpret_cast<internal::IoOp*>(user_data)->Complete(res, flags);
  }
  return served;
}

io_uring_sqe* Reactor::GetSqeNoCompletion() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  for (int tries = 0; sqe == nullptr; ++tries) {
    // The SQ is full: hand it to the kernel to make room.
    const int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EBUSY && rc != -EAGAIN && rc != -EINTR) {
      NetLog("reactor: io_uring_submit failed with the SQ full: errno %d", -rc);
      std::abort();  // no way to report it to the caller; the ring is unusable
    }
    if (tries == 1000) {
      NetLog("reactor: no SQE after 1000 submits");
      std::abort();
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data64(sqe, 0);
  return sqe;
}

io_uring_sqe* Reactor::GetSqe(internal::IoOp* op) {
  io_uring_sqe* sqe = GetSqeNoCompletion();
  io_uring_sqe_set_data(sqe, op);
  ++inflight_ops_;
  return sqe;
}

void Reactor::CancelOp(internal::IoOp* op) {
  io_uring_sqe* sqe = GetSqeNoCompletion();
  io_uring_prep_cancel(sqe, op, 0);
}

void Reactor::Post(Task task) {
  if (IsInLoopThread()) {
    local_tasks_.push_back(std::move(task));
    return;
  }
  {
    absl::MutexLock lock(&remote_mu_);
    TsanAcquire(&remote_tasks_);
    remote_tasks_.push_back(std::move(task));
    TsanRelease(&remote_tasks_);
  }
  // Only the poster that flips the flag writes the eventfd: one wake-up per batch.
  if (!remote_pending_.exchange(true, std::memory_order_acq_rel)) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  }
}

void Reactor::OnWake() {
  uint64_t value;
  while (::read(wake_fd_, &value, sizeof(value)) > 0) {
  }
}

void Reactor::RunTasks() {
  if (remote_pending_.exchange(false, std::memory_order_acq_rel)) {
    std::vector<Task> remote;
    {
      absl::MutexLock lock(&remote_mu_);
      TsanAcquire(&remote_tasks_);
      remote.swap(remote_tasks_);
      TsanRelease(&remote_tasks_);
    }
    for (Task& t : remote) t();
  }
  if (!local_tasks_.empty()) {
    // Tasks posted by these tasks run next iteration (with a zero wait): no starvation.
    std::vector<Task> local;
    local.swap(local_tasks_);
    for (Task& t : local) t();
  }
}

void Reactor::PostBackground(Task task) {
  AssertInLoopThread();
  background_tasks_.push_back(std::move(task));
}

void Reactor::RunBackground() {
  if (background_tasks_.empty()) return;
  const Clock::time_point until =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         absl::ToChronoNanoseconds(options_.background_budget));
  // Tasks queued by these tasks go to the back: at most the ones queued now run here.
  for (size_t n = background_tasks_.size(); n > 0; --n) {
    Task t = std::move(background_tasks_.front());
    background_tasks_.pop_front();
    t();
    if (Clock::now() >= until) break;
  }
}

TimerId Reactor::RunAfter(absl::Duration delay, Task callback) {
  AssertInLoopThread();
  if (delay < absl::ZeroDuration()) delay = absl::ZeroDuration();
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         absl::ToChronoNanoseconds(std::min(delay, absl::Hours(24 * 365))));
  const uint64_t seq = next_timer_seq_++;
  timers_.emplace(seq, std::move(callback));
  timer_heap_.push_back(TimerEntry{deadline, seq});
  std::push_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  return TimerId{seq};
}

bool Reactor::Cancel(TimerId id) {
  AssertInLoopThread();
  if (timers_.erase(id.value) == 0) return false;
  // Cancelled entries stay in the heap until they surface; rebuild when they dominate so a
  // connection churn of arm/cancel cannot grow the heap without bound.
  if (timer_heap_.size() > 64 && timer_heap_.size() > 2 * timers_.size()) {
    std::erase_if(timer_heap_, [this](const TimerEntry& e) { return !timers_.contains(e.seq); });
    std::make_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  }
  return true;
}

Reactor::Clock::duration Reactor::TimeToNextTimer(Clock::time_point now) const {
  if (timer_heap_.empty()) return Clock::duration::max();
  return std::max(timer_heap_.front().deadline - now, Clock::duration::zero());
}

void Reactor::RunDueTimers() {
  const Clock::time_point now = Clock::now();
  // Timers created by these callbacks wait for the next iteration even if already due.
  const uint64_t seq_limit = next_timer_seq_;
  while (!timer_heap_.empty() && timer_heap_.front().deadline <= now &&
         timer_heap_.front().seq < seq_limit) {
    const uint64_t seq = timer_heap_.front().seq;
    std::pop_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
    timer_heap_.pop_back();
    auto it = timers_.find(seq);
    if (it == timers_.end()) continue;  // cancelled
    Task cb = std::move(it->second);
    timers_.erase(it);
    cb();
  }
}

WatchId Reactor::WatchReadable(int fd, Task callback) {
  return WatchFd(fd, POLLIN, std::move(callback));
}

WatchId Reactor::WatchWritable(int fd, Task callback) {
  return WatchFd(fd, POLLOUT, std::move(callback));
}

WatchId Reactor::WatchFd(int fd, unsigned events, Task callback) {
  AssertInLoopThread();
  auto w = std::make_unique<Watch>();
  w->reactor = this;
  w->id = next_watch_id_++;
  w->fd = fd;
  w->events = events;
  w->callback = std::move(callback);
  Watch* raw = w.get();
  watches_.emplace(raw->id, std::move(w));
  ArmWatch(raw);
  return WatchId{raw->id};
}

void Reactor::ArmWatch(Watch* w) {
  io_uring_sqe* sqe = GetSqe(w);
  io_uring_prep_poll_add(sqe, w->fd, w->events);
  w->inflight = true;
}

void Reactor::Unwatch(WatchId id) {
  AssertInLoopThread();
  auto it = watches_.find(id.value);
  if (it == watches_.end() || !it->second->active) return;
  Watch* w = it->second.get();
  w->active = false;
  // Release the captures now, unless the callback is running (it is unwatching itself).
  if (!w->in_callback) w->callback = nullptr;
  if (w->inflight) {
    CancelOp(w);  // freed when the poll's CQE arrives
  } else if (!w->in_callback) {
    watches_.erase(it);
  }
}

void Reactor::CompleteWatch(Watch* w, int res) {
  w->inflight = false;
  if (w->active && res < 0 && res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
    NetLog("reactor: poll on fd %d failed (errno %d); watch removed", w->fd, -res);
    w->active = false;
  }
  if (w->active && res >= 0) {
    w->in_callback = true;
    w->callback();
    w->in_callback = false;
  }
  if (w->active) {
    ArmWatch(w);  // level-triggered: completes at once if the callback left it readable
  } else {
    watches_.erase(w->id);
  }
}

absl::StatusOr<Connection*> Reactor::AdoptConnection(
    int fd, const ConnectionOptions& options,
    absl::AnyInvocable<std::unique_ptr<ConnectionHandler>(Connection&)> handler_factory) {
  AssertInLoopThread();
  std::string peer = internal::PeerAddress(fd);
  if (absl::Status s = internal::PrepareSocket(fd); !s.ok()) {
    ::close(fd);
    return s;
  }
  const ConnectionId id = next_connection_id_++;
  std::unique_ptr<Connection> conn(new Connection(this, id, fd, std::move(peer), options));
  Connection* raw = conn.get();
  connections_.emplace(id, std::move(conn));
  raw->Start(handler_factory(*raw));
  return raw;
}

Connection* Reactor::FindConnection(ConnectionId id) const {
  AssertInLoopThread();
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second->state_ == Connection::State::kClosed) {
    return nullptr;
  }
  return it->second.get();
}

void Reactor::MarkSendPending(Connection* conn) { send_pending_.push_back(conn); }

void Reactor::ScheduleDestroy(Connection* conn) { destroy_pending_.push_back(conn); }

void Reactor::FlushAndReap() {
  // A connection can't be destroyed while listed in send_pending_: it is only destroyed
  // below, after this list is empty, and ContinueSend ignores closed connections.
  while (!send_pending_.empty()) {
    std::vector<Connection*> pending;
    pending.swap(send_pending_);
    for (Connection* c : pending) {
      c->send_scheduled_ = false;
      c->ContinueSend();
    }
  }
  while (!destroy_pending_.empty()) {
    std::vector<Connection*> doomed;
    doomed.swap(destroy_pending_);
    for (Connection* c : doomed) connections_.erase(c->id());
  }
}

absl::StatusOr<std::unique_ptr<ReactorThread>> ReactorThread::Start(ReactorOptions options) {
  std::unique_ptr<ReactorThread> rt(new ReactorThread);
  absl::Notification ready;
  absl::Status status;
  rt->thread_ = std::thread([&, raw = rt.get()] {
    auto reactor = Reactor::Create(options);
    if (!reactor.ok()) {
      status = reactor.status();
      ready.Notify();
      return;
    }
    raw->reactor_ = reactor->get();
    ready.Notify();
    // Run until the destructor asks; a stray Stop() from elsewhere just restarts the loop.
    while (!raw->exit_requested_.HasBeenNotified()) {
      absl::Status run = (*reactor)->Run();
      if (!run.ok()) {
        NetLog("reactor thread: loop ended with %s", run.ToString());
        raw->exit_requested_.WaitForNotification();  // keep reactor() valid until then
      }
    }
    reactor->reset();  // destroyed on its own thread
  });
  ready.WaitForNotification();
  if (!status.ok()) {
    rt->thread_.join();
    return status;
  }
  return rt;
}

ReactorThread::~ReactorThread() {
  if (reactor_ != nullptr) {
    exit_requested_.Notify();
    reactor_->Stop();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace sluice::net
