// Reactor: one event loop per thread over its own io_uring. See net/reactor/README.md.
//
// Threading contract: a Reactor belongs to the thread that created it (its "loop thread"):
// the ring is set up with IORING_SETUP_SINGLE_ISSUER when the kernel allows, so only that
// thread may submit. Post(), Stop() and IsInLoopThread() may be called from any thread;
// every other method must be called on the loop thread (checked when SLUICE_NET_THREAD_CHECKS
// is on: Debug and sanitizer builds). The Reactor must be destroyed on its loop thread, after
// every Listener on it. ReactorThread runs one on a thread of its own.
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "net/reactor/io_op.h"
#include "net/reactor/loop_stats.h"

namespace sluice::net {

class Connection;
class ConnectionHandler;
struct ConnectionOptions;

// How the ring was set up, best first. Create() tries them in this order.
enum class RingSetup {
  kSingleIssuerDeferTaskrun,  // IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (6.1+)
  kCoopTaskrun,               // IORING_SETUP_COOP_TASKRUN (5.19+)
  kPlain,                     // no setup flags
};
std::string_view RingSetupName(RingSetup setup);

struct ReactorOptions {
  // Submission queue entries; the completion queue gets 8x as many (the kernel keeps
  // overflowing CQEs in its own list on IORING_FEAT_NODROP kernels, so this is not a limit).
  unsigned ring_entries = 256;
  // Best setup to try (tests force the fallbacks with kCoopTaskrun / kPlain).
  RingSetup best_setup = RingSetup::kSingleIssuerDeferTaskrun;
  // CQEs dispatched per RunOnce before timers and posted tasks get their turn.
  unsigned max_cqes_per_iteration = 4096;
  // Time one iteration gives to PostBackground tasks (at least one runs per iteration).
  absl::Duration background_budget = absl::Milliseconds(2);
};

struct TimerId {
  uint64_t value = 0;
  friend bool operator==(TimerId a, TimerId b) { return a.value == b.value; }
};
struct WatchId {
  uint64_t value = 0;
  friend bool operator==(WatchId a, WatchId b) { return a.value == b.value; }
};
using ConnectionId = uint64_t;

class Reactor {
 public:
  using Task = absl::AnyInvocable<void()>;
  using Clock = std::chrono::steady_clock;

  // Sets up the ring on the calling thread, which becomes the loop thread. Fails if this
  // thread already has a Reactor or io_uring is unavailable (e.g. forbidden by seccomp).
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(ReactorOptions options = {});
  // Closes every connection (their OnClose runs with a Cancelled status), waits (bounded) for
  // the ring's in-flight operations, then tears the ring down. Loop thread only.
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Runs the loop until Stop(). Returns OK after Stop(), or the ring's error. A Stop() that
  // came before Run() makes it return at once. Loop thread.
  absl::Status Run();
  // One iteration: submit, wait for completions up to `timeout` (less if a timer is due or
  // work is pending; InfiniteDuration = until something happens), dispatch completions, run
  // due timers and posted tasks. For embedding the loop in another one. Loop thread.
  absl::Status RunOnce(absl::Duration timeout);
  // Makes Run() return after the current iteration. Any thread.
  void Stop();

  // Runs `task` on the loop thread, in posting order per posting thread. Any thread. From
  // another thread it takes a mutex and may write the wake eventfd; from the loop thread it
  // takes no lock and the task runs after the current callback returns, never inline.
  void Post(Task task);
  // Runs `task` on the loop thread after the iteration's completions, timers and posted tasks:
  // FIFO with other such tasks, for at most background_budget per iteration (at least one
  // task). For work that is heavy per call (e.g. converting a fetch response), so that a
  // burst of it from one client cannot hold the loop while other connections wait: it is
  // spread over iterations, with I/O in between. Loop thread.
  void PostBackground(Task task);
  size_t background_tasks() const { return background_tasks_.size(); }

  bool IsInLoopThread() const { return std::this_thread::get_id() == loop_thread_; }
  // Aborts with a message if called off the loop thread (when thread checks are compiled in).
  void AssertInLoopThread() const;

  // Timers. `callback` runs on the loop thread at or after now + delay; timers due at the same
  // instant run in the order they were created. Cancel returns false if the timer has already
  // run or was cancelled. Loop thread.
  TimerId RunAfter(absl::Duration delay, Task callback);
  bool Cancel(TimerId id);

  // Calls `callback` on the loop thread whenever `fd` is readable (level-triggered: a one-shot
  // IORING_OP_POLL_ADD re-armed after each callback, so a callback that does not drain `fd`
  // is called again). For eventfds and the storage engine's own io_uring fd (a ring set up
  // with DEFER_TASKRUN never wakes pollers of its fd: register an eventfd on it with
  // io_uring_register_eventfd and watch that instead). The fd must stay
  // open until Unwatch; after Unwatch returns the callback is never called again (it may be
  // called from within the callback itself). Loop thread.
  WatchId WatchReadable(int fd, Task callback);
  // The same for writability (POLLOUT): how a non-blocking connect learns it completed
  // (net/reactor/connect.h).
  WatchId WatchWritable(int fd, Task callback);
  void Unwatch(WatchId id);

  // Wraps an already connected socket (made non-blocking here; ownership of `fd` passes in,
  // even on error) in a Connection owned by this reactor, and starts receiving. `handler_factory`
  // is called once, before OnOpen. Returns the connection, which stays valid until its OnClose has
  // returned. Loop thread.
  absl::StatusOr<Connection*> AdoptConnection(
      int fd, const ConnectionOptions& options,
      absl::AnyInvocable<std::unique_ptr<ConnectionHandler>(Connection&)> handler_factory);
  // The live (not yet closed) connection with that id, or nullptr: how a task posted back from
  // another shard finds the connection it answers. Loop thread.
  Connection* FindConnection(ConnectionId id) const;
  size_t connection_count() const { return connections_.size(); }

  RingSetup ring_setup() const { return setup_; }
  // Kernel capabilities probed at Create().
  bool supports_splice() const { return supports_splice_; }
  bool supports_multishot_accept() const { return supports_multishot_accept_; }
  // Operations submitted whose last completion has not arrived yet (for tests).
  size_t inflight_ops() const { return inflight_ops_; }

  // Loop timing recorded by RunOnce (README.md, "Loop timing"): each iteration's busy time and
  // how long ready completions may have waited. Readable from any thread.
  const LoopStats& loop_stats() const { return stats_; }
  // The busy time of the iteration that ended at the latest RunOnce's poll (what it recorded
  // in loop_stats().iteration); zero before the second RunOnce. Loop thread.
  absl::Duration last_iteration() const { return absl::FromChrono(last_iteration_); }

 private:
  friend class Connection;
  friend class Listener;
  struct Watch;
  struct TimerEntry {
    Clock::time_point deadline;
    uint64_t seq;
    bool operator>(const TimerEntry& o) const {
      return deadline != o.deadline ? deadline > o.deadline : seq > o.seq;
    }
  };

  explicit Reactor(const ReactorOptions& options);
  absl::Status Init();

  // An SQE whose completion goes to `op` (counted in flight until its last CQE). Submits to
  // make room if the SQ is full.
  WatchId WatchFd(int fd, unsigned events, Task callback);
  io_uring_sqe* GetSqe(internal::IoOp* op);
  // An SQE nobody waits for (user_data 0), e.g. a cancel.
  io_uring_sqe* GetSqeNoCompletion();
  // Asks the kernel to cancel the request of `op`; its CQE still arrives (-ECANCELED or a
  // result if it raced).
  void CancelOp(internal::IoOp* op);

  // Polls: submits what is queued and waits up to `wait` (duration::max() = no limit) for a
  // completion. Sets *cqe when one is ready. Returns a ring error, or OK (also on a timeout).
  absl::Status Poll(Clock::duration wait, io_uring_cqe** cqe);
  // Returns how many completions went to operations (user_data != 0).
  size_t DispatchCompletions();
  void RunDueTimers();
  void RunTasks();
  void RunBackground();
  // Sends queued by handlers in this iteration start here in one batch, then connections
  // whose last completion has arrived are destroyed.
  void FlushAndReap();
  void MarkSendPending(Connection* conn);
  void ScheduleDestroy(Connection* conn);
  void ArmWatch(Watch* w);
  void CompleteWatch(Watch* w, int res);
  void OnWake();
  Clock::duration TimeToNextTimer(Clock::time_point now) const;

  const ReactorOptions options_;
  const std::thread::id loop_thread_;
  io_uring ring_{};
  bool ring_ready_ = false;
  RingSetup setup_ = RingSetup::kPlain;
  bool supports_splice_ = false;
  bool supports_multishot_accept_ = false;
  size_t inflight_ops_ = 0;

  LoopStats stats_;
  bool polled_ = false;  // a poll has returned: poll_returned_ is set
  Clock::time_point poll_returned_{};
  Clock::duration last_iteration_{};

  std::atomic<bool> stop_{false};

  // Cross-thread task queue: swapped out under the mutex once per iteration, and only when
  // remote_pending_ says it is non-empty, so the loop takes no lock when nothing was posted.
  int wake_fd_ = -1;
  absl::Mutex remote_mu_;
  std::vector<Task> remote_tasks_ ABSL_GUARDED_BY(remote_mu_);
  std::atomic<bool> remote_pending_{false};
  WatchId wake_watch_;
  std::vector<Task> local_tasks_;  // posted from the loop thread itself: no lock
  std::deque<Task> background_tasks_;

  uint64_t next_timer_seq_ = 1;
  std::vector<TimerEntry> timer_heap_;  // min-heap; cancelled entries are skipped lazily
  absl::flat_hash_map<uint64_t, Task> timers_;

  uint64_t next_watch_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Watch>> watches_;

  ConnectionId next_connection_id_ = 1;
  absl::flat_hash_map<ConnectionId, std::unique_ptr<Connection>> connections_;
  std::vector<Connection*> send_pending_;
  std::vector<Connection*> destroy_pending_;
};

// A thread that creates a Reactor, runs it until destroyed, and destroys it on that thread.
class ReactorThread {
 public:
  static absl::StatusOr<std::unique_ptr<ReactorThread>> Start(ReactorOptions options = {});
  // Stops the loop and joins the thread (the reactor is destroyed on it).
  ~ReactorThread();

  // Valid until destruction. Use Post() to run anything on it.
  Reactor& reactor() const { return *reactor_; }

 private:
  ReactorThread() = default;
  Reactor* reactor_ = nullptr;
  absl::Notification exit_requested_;
  std::thread thread_;
};

}  // namespace sluice::net
