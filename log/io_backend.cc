#include "log/io_backend.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "log/logging.h"

namespace sluice::storage {

std::string_view IoBackendName(IoBackendKind kind) {
  return kind == IoBackendKind::kIoUring ? "io_uring" : "pwrite";
}

namespace {

enum class OpKind : uint8_t { kWrite, kSync, kSyncDir, kUnlink };

struct Op {
  OpKind kind;
  int fd;
  const uint8_t* data;  // plain write; nullptr for a gather write (then `iov`)
  uint32_t len;         // total bytes to write
  uint32_t done_bytes;  // progress across short writes
  uint64_t position;
  IoCallback done;
  // Gather write: the pieces not yet written (short writes consume them from the front).
  std::vector<iovec> iov;
  // kSyncDir: the directory (the io_uring backend owns `fd`, opened on it); kUnlink: the path.
  std::string dir;
  // kSyncDir (UringBackend): callers that joined this fsync before it was submitted.
  std::vector<IoCallback> joined;
};

Op MakeGatherOp(int fd, std::span<const iovec> iov, uint64_t position, IoCallback done) {
  Op op{OpKind::kWrite, fd, nullptr, 0, 0, position, std::move(done)};
  op.iov.reserve(iov.size());
  uint64_t total = 0;
  for (const iovec& piece : iov) {
    if (piece.iov_len == 0) continue;
    op.iov.push_back(piece);
    total += piece.iov_len;
  }
  op.len = static_cast<uint32_t>(total);
  return op;
}

// Drops the first `n` bytes of a gather list (they were written).
void ConsumeIov(std::vector<iovec>& iov, size_t n) {
  size_t whole = 0;
  while (whole < iov.size() && n >= iov[whole].iov_len) {
    n -= iov[whole].iov_len;
    ++whole;
  }
  iov.erase(iov.begin(), iov.begin() + static_cast<ptrdiff_t>(whole));
  if (n > 0 && !iov.empty()) {
    iov[0].iov_base = static_cast<uint8_t*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

// A gather write with pwritev, retrying short writes; the byte count or -errno.
int PwritevAll(Env* env, Op& op) {
  while (op.done_bytes < op.len) {
    const int count = static_cast<int>(std::min<size_t>(op.iov.size(), IOV_MAX));
    ssize_t n = env->Pwritev(op.fd, op.iov.data(), count, op.position + op.done_bytes);
    if (n == -EAGAIN) continue;
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return -EIO;  // no progress possible
    op.done_bytes += static_cast<uint32_t>(n);
    ConsumeIov(op.iov, static_cast<size_t>(n));
  }
  return static_cast<int>(op.done_bytes);
}

// Writes the whole range with pwrite, retrying short writes; the byte count or -errno.
int PwriteAll(Env* env, Op& op) {
  if (op.data == nullptr) return PwritevAll(env, op);
  uint32_t done = 0;
  while (done < op.len) {
    ssize_t n = env->Pwrite(op.fd, op.data + done, op.len - done, op.position + done);
    if (n == -EAGAIN) continue;
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return -EIO;  // no progress possible
    done += static_cast<uint32_t>(n);
  }
  return static_cast<int>(done);
}

// Synchronous fallback: Submit() performs the queued operations with pwrite/fdatasync and
// Poll() runs their callbacks, so callers see the same asynchronous shape as with io_uring.
class PwriteBackend final : public IoBackend {
 public:
  explicit PwriteBackend(Env* env) : IoBackend(env) {}
  IoBackendKind kind() const override { return IoBackendKind::kPwrite; }

  void Write(int fd, const uint8_t* data, uint32_t len, uint64_t position,
             IoCallback done) override {
    queued_.push_back(Op{OpKind::kWrite, fd, data, len, 0, position, std::move(done)});
  }
  void WriteV(int fd, std::span<const iovec> iov, uint64_t position, IoCallback done) override {
    queued_.push_back(MakeGatherOp(fd, iov, position, std::move(done)));
  }
  void Sync(int fd, IoCallback done) override {
    queued_.push_back(Op{OpKind::kSync, fd, nullptr, 0, 0, 0, std::move(done)});
  }
  void SyncDir(const std::string& path, IoCallback done) override {
    Op op{OpKind::kSyncDir, -1, nullptr, 0, 0, 0, std::move(done)};
    op.dir = path;
    queued_.push_back(std::move(op));
  }
  void Unlink(const std::string& path, IoCallback done) override {
    Op op{OpKind::kUnlink, -1, nullptr, 0, 0, 0, std::move(done)};
    op.dir = path;
    queued_.push_back(std::move(op));
  }
  void Submit() override {
    while (!queued_.empty()) {
      Op op = std::move(queued_.front());
      queued_.pop_front();
      int result = op.kind == OpKind::kWrite    ? PwriteAll(env(), op)
                   : op.kind == OpKind::kSync   ? env()->Fdatasync(op.fd)
                   : op.kind == OpKind::kUnlink ? env()->Unlink(op.dir)
                                                : env()->SyncDir(op.dir);
      completed_.emplace_back(std::move(op.done), result);
    }
  }
  int Poll(absl::Duration) override {
    Submit();
    int n = 0;
    // Callbacks may queue more work; run only what completed before this call.
    size_t count = completed_.size();
    for (size_t i = 0; i < count; ++i) {
      auto [cb, result] = std::move(completed_.front());
      completed_.pop_front();
      cb(result);
      ++n;
    }
    return n;
  }
  size_t pending() const override { return queued_.size() + completed_.size(); }

 private:
  std::deque<Op> queued_;
  std::deque<std::pair<IoCallback, int>> completed_;
};

// io_uring backend. Each operation is a heap Op whose address is the SQE's user_data.
class UringBackend final : public IoBackend {
 public:
  static std::unique_ptr<UringBackend> Create(bool inline_writes, std::string* why_not) {
    auto backend = std::unique_ptr<UringBackend>(new UringBackend());
    backend->inline_writes_ = inline_writes;
    io_uring_params params;
    memset(&params, 0, sizeof(params));
    // Only the owning shard thread submits; let the kernel skip cross-thread bookkeeping.
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(kEntries, &backend->ring_, &params);
    if (rc == -EINVAL) {
      memset(&params, 0, sizeof(params));
      rc = io_uring_queue_init_params(kEntries, &backend->ring_, &params);
    }
    if (rc < 0) {
      *why_not = absl::StrFormat("io_uring_queue_init: %s", strerror(-rc));
      return nullptr;
    }
    backend->ring_ok_ = true;
    backend->event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (backend->event_fd_ >= 0 &&
        io_uring_register_eventfd(&backend->ring_, backend->event_fd_) < 0) {
      ::close(backend->event_fd_);
      backend->event_fd_ = -1;
    }
    return backend;
  }

  ~UringBackend() override {
    // Drain: the kernel may still write into buffers owned by callers' callbacks.
    while (in_flight_ > 0) Poll(absl::Seconds(1));
    if (ring_ok_) io_uring_queue_exit(&ring_);
    if (event_fd_ >= 0) ::close(event_fd_);
  }

  IoBackendKind kind() const override { return IoBackendKind::kIoUring; }

  void Write(int fd, const uint8_t* data, uint32_t len, uint64_t position,
             IoCallback done) override {
    Place(Op{OpKind::kWrite, fd, data, len, 0, position, std::move(done)});
  }
  void WriteV(int fd, std::span<const iovec> iov, uint64_t position, IoCallback done) override {
    Place(MakeGatherOp(fd, iov, position, std::move(done)));
  }
  void Sync(int fd, IoCallback done) override {
    // Inline writes queued before it are done at Submit before the ring is submitted.
    Queue(new Op{OpKind::kSync, fd, nullptr, 0, 0, 0, std::move(done)});
  }
  void SyncDir(const std::string& path, IoCallback done) override {
    // An fsync of the same directory not yet handed to the kernel will start after this call,
    // so it covers every name the caller made before: join it. A broker's new logs all sync
    // the data directory with their first flush (10,000 new partitions: one fsync per
    // submission instead of 10,000).
    if (auto it = unsubmitted_dir_syncs_.find(path); it != unsubmitted_dir_syncs_.end()) {
      ++in_flight_;
      ++dir_syncs_joined_;
      it->second->joined.push_back(std::move(done));
      return;
    }
    // Opening a directory does not wait for the disk; its fsync goes through the ring. (This
    // backend exists only over the default Env, whose SyncDir is exactly this.)
    const int fd = env()->Open(path, OpenMode::kRead);
    if (fd < 0) {
      ++in_flight_;
      inline_completed_.emplace_back(std::move(done), fd);
      return;
    }
    Op* op = new Op{OpKind::kSyncDir, fd, nullptr, 0, 0, 0, std::move(done)};
    op->dir = path;
    Queue(op);
    // Queue may have submitted earlier work, never this op: it is prepared last.
    unsubmitted_dir_syncs_.emplace(path, op);
  }

  void Unlink(const std::string& path, IoCallback done) override {
    // IORING_OP_UNLINKAT runs in an io-wq worker: the time the file system takes to free
    // (and, mounted with `discard`, trim) the file's blocks is not the loop's.
    Op* op = new Op{OpKind::kUnlink, -1, nullptr, 0, 0, 0, std::move(done)};
    op->dir = path;
    Queue(op);
  }

  void Submit() override {
    // Small page-cache copies the filesystem cannot do without blocking would be punted to an
    // io-wq thread, which for them only adds switches: they run here, in order.
    while (!inline_queued_.empty()) {
      Op op = std::move(inline_queued_.front());
      inline_queued_.pop_front();
      int result = PwriteAll(env(), op);
      inline_completed_.emplace_back(std::move(op.done), result);
    }
    if (unsubmitted_ == 0) return;
    int rc;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR);
    if (rc >= 0) {
      unsubmitted_ = 0;
      unsubmitted_dir_syncs_.clear();  // started (or about to): too late to join
    }
  }

  int Poll(absl::Duration timeout) override {
    Submit();
    int n = 0;
    for (size_t count = inline_completed_.size(); count > 0; --count) {
      auto [cb, result] = std::move(inline_completed_.front());
      inline_completed_.pop_front();
      --in_flight_;
      cb(result);
      ++n;
    }
    if (n > 0) timeout = absl::ZeroDuration();  // progress made: do not block
    n += Drain();
    if (n == 0 && in_flight_ > 0 && timeout > absl::ZeroDuration()) {
      timespec t = absl::ToTimespec(timeout);
      __kernel_timespec ts{t.tv_sec, t.tv_nsec};
      io_uring_cqe* cqe = nullptr;
      io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      n = Drain();
    }
    if (event_fd_ >= 0) {
      uint64_t v;
      ssize_t ignored = ::read(event_fd_, &v, sizeof(v));  // re-arm the notification
      (void)ignored;
    }
    return n;
  }

  size_t pending() const override { return in_flight_; }
  uint64_t dir_syncs_joined() const override { return dir_syncs_joined_; }
  int notify_fd() const override { return event_fd_; }

 private:
  static constexpr unsigned kEntries = 256;
  // With inline writes, a write at least this large still goes through the ring: an io-wq
  // thread copies it into the page cache on the other core while this thread validates the
  // next batches (measured, 1 MiB batches: 0.75-0.85x of fio inline, 1.0-1.1x this way; 16 KiB
  // batches, whose write-behind chunks reach 256 KiB too, unchanged). Smaller writes would
  // only pay the thread switch.
  static constexpr size_t RingWriteMinBytes() { return size_t{256} << 10; }

  UringBackend() = default;

  // Where a write goes: through the ring (large ones) or inline at the next Submit. A small
  // inline write into a page that an in-flight fdatasync is writing back waits for that I/O
  // (stable pages) on the loop thread. Sending such writes through the ring instead cost 13-15 %
  // more broker CPU per persistent AMQP message and a fifth of the backlog publish rate, and
  // did not change confirm latency p99.9 (docs/ARCHITECTURE.md, "Decision, measured").
  void Place(Op op) {
    if (!inline_writes_ || op.len >= RingWriteMinBytes()) {
      Queue(new Op(std::move(op)));
      return;
    }
    ++in_flight_;
    inline_queued_.push_back(std::move(op));
  }

  void Queue(Op* op) {
    ++in_flight_;
    Prep(op);
  }

  void Prep(Op* op) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      // Submission queue full: hand what we have to the kernel and retry.
      Submit();
      sqe = io_uring_get_sqe(&ring_);
      while (sqe == nullptr) {
        Drain();
        Submit();
        sqe = io_uring_get_sqe(&ring_);
      }
    }
    if (op->kind == OpKind::kWrite && op->data == nullptr) {
      // The iovec array lives in the Op until the completion: the kernel may read it late.
      io_uring_prep_writev(sqe, op->fd, op->iov.data(),
                           static_cast<unsigned>(std::min<size_t>(op->iov.size(), IOV_MAX)),
                           op->position + op->done_bytes);
    } else if (op->kind == OpKind::kWrite) {
      io_uring_prep_write(sqe, op->fd, op->data + op->done_bytes, op->len - op->done_bytes,
                          op->position + op->done_bytes);
    } else if (op->kind == OpKind::kSync) {
      io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
    } else if (op->kind == OpKind::kUnlink) {
      io_uring_prep_unlinkat(sqe, AT_FDCWD, op->dir.c_str(), 0);
    } else {
      io_uring_prep_fsync(sqe, op->fd, 0);  // a directory: its entries are metadata
    }
    io_uring_sqe_set_data(sqe, op);
    ++unsubmitted_;
  }

  int Drain() {
    int n = 0;
    io_uring_cqe* cqe;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (res == -EAGAIN || res == -EINTR) {
        Prep(op);  // transient: try again
        continue;
      }
      if (op->kind == OpKind::kWrite && res >= 0) {
        op->done_bytes += static_cast<uint32_t>(res);
        if (op->data == nullptr) ConsumeIov(op->iov, static_cast<size_t>(res));
        if (res > 0 && op->done_bytes < op->len) {
          Prep(op);  // short write: continue where it stopped
          continue;
        }
        if (op->done_bytes < op->len)
          res = -EIO;  // zero-length write: no progress possible
        else
          res = static_cast<int>(op->done_bytes);
      }
      in_flight_ -= 1 + op->joined.size();
      IoCallback done = std::move(op->done);
      std::vector<IoCallback> joined = std::move(op->joined);
      if (op->kind == OpKind::kSyncDir) (void)env()->Close(op->fd);
      delete op;
      done(res);
      for (IoCallback& cb : joined) cb(res);
      n += 1 + static_cast<int>(joined.size());
    }
    Submit();  // retries and work queued by callbacks
    return n;
  }

  io_uring ring_;
  bool ring_ok_ = false;
  bool inline_writes_ = false;
  // Directory fsyncs prepared but not submitted, by path: later requests join them.
  absl::flat_hash_map<std::string, Op*> unsubmitted_dir_syncs_;
  uint64_t dir_syncs_joined_ = 0;
  std::deque<Op> inline_queued_;
  std::deque<std::pair<IoCallback, int>> inline_completed_;
  int event_fd_ = -1;
  size_t in_flight_ = 0;
  unsigned unsubmitted_ = 0;
};

}  // namespace

std::unique_ptr<IoBackend> IoBackend::CreatePwrite(Env* env) {
  return std::make_unique<PwriteBackend>(env);
}

std::unique_ptr<IoBackend> IoBackend::TEST_CreateIoUringRingWrites() {
  std::string why_not;
  return UringBackend::Create(/*inline_writes=*/false, &why_not);
}

// Only over the default Env (the probe's pwritev2 flag has no Env call).
bool BufferedWritesCanCompleteInline(Env* env, const std::string& dir) {
  std::string path = dir + "/.sluice-nowait-probe";
  int fd = env->Open(path, OpenMode::kCreateTruncate);
  if (fd < 0) return false;
  char byte = 0;
  iovec iov{&byte, 1};
  ssize_t n = ::pwritev2(fd, &iov, 1, 0, RWF_NOWAIT);
  (void)env->Close(fd);
  (void)env->Unlink(path);
  return n == 1;
}

std::unique_ptr<IoBackend> IoBackend::Create(IoBackendKind preferred, const std::string& dir,
                                             Env* env) {
  if (!env->AllowsBypass()) {
    // io_uring would write behind the Env's back.
    if (!dir.empty()) LogInfo("storage: writes and syncs through the configured Env (pwrite)");
    return CreatePwrite(env);
  }
  if (preferred == IoBackendKind::kIoUring) {
    std::string why_not;
    // When the filesystem cannot do a buffered write without blocking (RWF_NOWAIT), io_uring
    // hands every write to a kernel worker thread. Measured on ext4: half the throughput of
    // writing inline. Then writes are done inline and only syncs go through the ring.
    const bool inline_writes = dir.empty() || !BufferedWritesCanCompleteInline(env, dir);
    if (auto uring = UringBackend::Create(inline_writes, &why_not)) {
      if (!dir.empty()) {
        LogInfo("storage: io_uring for fdatasync%s",
                inline_writes
                    ? "; buffered writes inline (filesystem has no non-blocking buffered writes)"
                    : " and writes");
      }
      return uring;
    }
    LogWarning("io_uring unavailable (%s); storage falls back to pwrite/fdatasync", why_not);
  }
  return CreatePwrite(env);
}

}  // namespace sluice::storage
