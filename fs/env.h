// The file-system seam of the storage engine. Every open, read, write, sync, rename, truncate,
// allocate, unlink, mkdir, list and mmap done by log/ and index/ (and by the metadata writers
// that use log/file_util.h) goes through an Env, as leveldb's storage goes through its Env.
// Env::Default() is plain POSIX; tests substitute an Env that fails calls and simulates power
// loss (tests/fs/fault_env.h).
//
// Conventions. The calls mirror the system calls they stand for, so that call sites keep
// building their errors in one place (storage::ErrnoStatus, log/file_util.h):
//   - a call returns >= 0 on success (an fd, a byte count, a size or 0) and -errno on failure;
//     EINTR is retried inside and never returned;
//   - file descriptors are real kernel fds. Callers may read them behind the Env's back
//     (splice, sendfile, io_uring reads of a FileSlice); they may write or sync them without
//     the Env only when AllowsBypass() (the default Env, whose calls would be nothing but the
//     system call: the io_uring backend relies on this).
//
// Durability contract (what survives a power loss; the fault Env enforces exactly this):
//   - Pwrite/Pwritev, Truncate, and stores through a writable Map change the file at once for
//     every reader, but are *not durable*: after a power loss any part of them may be missing,
//     in any order (pages are written back by the kernel when it likes).
//   - Fdatasync(fd) returns 0 once every change made to the file's contents and size before
//     the call (through any fd or mapping) is durable. It does not make the file's *name*
//     durable. A failed Fdatasync makes no promise about anything written since the last
//     successful one.
//   - SyncMapped(addr, len) is msync(MS_SYNC): the same as Fdatasync of the mapped file.
//   - Open(kCreateTruncate) of a new file, Rename, Unlink, MakeDir and RemoveDir change names
//     in a directory; those changes are durable once SyncDir of that directory returned 0 (for
//     a Rename between directories: of both). After a power loss a directory holds its names
//     as of its last SyncDir plus possibly a prefix of the changes made since. A Rename is
//     atomic: the target name then refers either to its old file or to the renamed one.
//   - Allocate reserves blocks without changing the size or the contents; it may fail with
//     ENOSPC or EOPNOTSUPP, and the file stays usable either way.
//
// Threading: implementations are safe for concurrent use by many threads (the default Env
// holds no state). An Env must outlive everything that uses it.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::storage {

enum class OpenMode : uint8_t {
  kRead,            // O_RDONLY; the file must exist
  kReadWrite,       // O_RDWR; the file must exist
  kCreateTruncate,  // O_RDWR | O_CREAT | O_TRUNC, mode 0644
};

struct FileStat {
  uint64_t size = 0;
  bool is_dir = false;  // a symbolic link is not followed (lstat)
};

class Env {
 public:
  // The POSIX Env. Never deleted.
  static Env* Default();

  Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  virtual ~Env() = default;

  // True when callers may write and sync fds of this Env without calling it (io_uring).
  virtual bool AllowsBypass() const { return false; }

  // ---- Files (fds are real; every fd from Open is given back with Close) ----
  virtual int Open(const std::string& path, OpenMode mode) = 0;  // the fd
  virtual int Close(int fd) = 0;
  // Reads up to n bytes at `offset`; fewer only at the end of the file (0 = at or past it).
  virtual ssize_t Pread(int fd, void* buf, size_t n, uint64_t offset) = 0;
  // Writes up to n bytes at `offset`; may write fewer (a short write) and say so. Callers loop.
  virtual ssize_t Pwrite(int fd, const void* buf, size_t n, uint64_t offset) = 0;
  // The pieces of iov[0, count) written contiguously from `offset`; may be short too.
  virtual ssize_t Pwritev(int fd, const iovec* iov, int count, uint64_t offset) = 0;
  virtual int Fdatasync(int fd) = 0;
  virtual int Truncate(int fd, uint64_t size) = 0;
  // fallocate(FALLOC_FL_KEEP_SIZE): reserves [offset, offset + len) without changing the size.
  virtual int Allocate(int fd, uint64_t offset, uint64_t len) = 0;
  virtual off_t Size(int fd) = 0;

  // ---- Shared mappings of [0, len) of a file (accessed at random: no readahead) ----
  virtual int Map(int fd, size_t len, bool writable, uint8_t** addr) = 0;
  virtual int Unmap(uint8_t* addr, size_t len) = 0;
  virtual int SyncMapped(uint8_t* addr, size_t len) = 0;

  // ---- Names ----
  virtual int Rename(const std::string& from, const std::string& to) = 0;
  virtual int Unlink(const std::string& path) = 0;
  virtual int MakeDir(const std::string& path) = 0;  // -EEXIST when it exists
  virtual int RemoveDir(const std::string& path) = 0;
  virtual int SyncDir(const std::string& path) = 0;
  // Names (not paths) of the entries of `path`, "." and ".." excluded, in no order.
  virtual int ListDir(const std::string& path, std::vector<std::string>* names) = 0;
  virtual int Stat(const std::string& path, FileStat* out) = 0;
};

}  // namespace sluice::storage
