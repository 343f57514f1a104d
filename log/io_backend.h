// The storage engine's asynchronous file I/O: writes at explicit positions and fdatasync, with
// completions delivered on the thread that drives the backend.
//
// One IoBackend per shard, owned by that shard's LogManager; not thread-safe. Operations are
// queued by Write()/Sync(), handed to the kernel together by Submit() (one io_uring_submit for
// everything queued during a loop iteration: that is how appends from many partitions are
// gathered), and their callbacks run inside Poll().
//
// Every write and sync is made through the backend's Env (env(), fs/env.h), except that the
// io_uring backend, which exists only over the default Env (Env::AllowsBypass()), hands them
// to the kernel itself. Readers of the files (PartitionLog, Segment) use the same env().
//
// Ordering contract: operations on one fd may complete in any order. A Sync() covers only the
// writes that had *completed* before it was queued; callers that need "durable up to X" issue
// the sync after the writes up to X completed (PartitionLog does exactly that).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "fs/env.h"

namespace sluice::storage {

// Called with the operation's result: >= 0 on success (bytes written for writes), -errno on
// failure. Short writes are retried inside the backend, so success means the whole range.
using IoCallback = absl::AnyInvocable<void(int result)>;

enum class IoBackendKind { kIoUring, kPwrite };
std::string_view IoBackendName(IoBackendKind kind);

class IoBackend {
 public:
  // Makes the preferred backend, falling back to kPwrite (with a log line saying why) when
  // io_uring cannot be set up, e.g. under a seccomp profile that forbids it. `dir` (the data
  // directory) is probed for non-blocking buffered writes: without them io_uring would punt
  // every write to a kernel thread, so writes below 256 KiB are then done inline at Submit
  // and only larger writes (copied by that thread in parallel) and fdatasync go through the
  // ring (see docs/ARCHITECTURE.md). Empty `dir`: the same. With an `env` other than one that
  // AllowsBypass() (a fault-injecting Env in tests), the pwrite backend is made over it
  // whatever `preferred` says, so that the Env sees every byte written and every sync.
  static std::unique_ptr<IoBackend> Create(IoBackendKind preferred, const std::string& dir = "",
                                           Env* env = Env::Default());
  // Writes and syncs inline at Submit through `env`.
  static std::unique_ptr<IoBackend> CreatePwrite(Env* env = Env::Default());
  // For tests: io_uring with every write through the ring (as on a filesystem with
  // non-blocking buffered writes), or nullptr when io_uring cannot be set up.
  static std::unique_ptr<IoBackend> TEST_CreateIoUringRingWrites();

  virtual ~IoBackend() = default;
  virtual IoBackendKind kind() const = 0;
  // The Env of the files written through this backend; it outlives the backend.
  Env* env() const { return env_; }

  // Queues a write of data[0, len) at `position` of `fd`. `data` must stay valid until `done`
  // has run.
  virtual void Write(int fd, const uint8_t* data, uint32_t len, uint64_t position,
                     IoCallback done) = 0;
  // Queues a gather write (pwritev / IORING_OP_WRITEV): the pieces of `iov`, in order, written
  // contiguously from `position`. The iovec array itself is copied; the bytes it points to
  // must stay valid (and unchanged) until `done` has run. The total must be below 2 GiB (the
  // callback's result is an int). Used for large batches written from the producer's buffer
  // without a copy into the write buffer (PartitionLog::Append with a keep-alive).
  virtual void WriteV(int fd, std::span<const iovec> iov, uint64_t position, IoCallback done) = 0;
  // Queues an fdatasync(fd).
  virtual void Sync(int fd, IoCallback done) = 0;
  // Queues an fsync of the directory `path` (Env::SyncDir): the names created, renamed or
  // removed in it become durable. Requests for one directory queued before the next Submit
  // may share one fsync (io_uring).
  virtual void SyncDir(const std::string& path, IoCallback done) = 0;
  // Queues an unlink of `path`; the result is -ENOENT when there was no such file. Not
  // ordered with the other operations (a SyncDir queued with it may not cover it).
  virtual void Unlink(const std::string& path, IoCallback done) = 0;
  // Hands every queued operation to the kernel.
  virtual void Submit() = 0;
  // Runs the callbacks of completed operations. When nothing has completed yet and operations
  // are in flight, waits up to `timeout` for one. Returns the number of callbacks run.
  virtual int Poll(absl::Duration timeout) = 0;
  // Operations queued or in flight whose callbacks have not run yet.
  virtual size_t pending() const = 0;
  // An fd that becomes readable when completions are waiting (for a reactor to watch), or -1.
  virtual int notify_fd() const { return -1; }
  // SyncDir requests answered by an fsync of the same directory that was queued and not yet
  // submitted when they came (io_uring only; see UringBackend::SyncDir).
  virtual uint64_t dir_syncs_joined() const { return 0; }

 protected:
  explicit IoBackend(Env* env = Env::Default()) : env_(env) {}

 private:
  Env* const env_;
};

}  // namespace sluice::storage
