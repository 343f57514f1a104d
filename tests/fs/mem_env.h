// MemEnv: an Env (fs/env.h) that keeps a whole file tree in memory, for fuzz targets that run
// thousands of log opens, rolls and crashes a second. No system call, no page-table change
// (a "mapping" is a pointer into the file's buffer), nothing to remove afterwards: dropping
// the MemEnv drops every file. Everything is durable at once (Fdatasync, SyncDir and
// SyncMapped succeed and do nothing); wrap it in a FaultEnv (tests/fs/fault_env.h, `base`) to
// model power loss on top of it.
//
// Differences from the POSIX Env, which callers must not rely on anyway:
//   - file descriptors are small integers from 1 << 20 up, not kernel fds: nothing may read
//     or write them behind the Env's back (AllowsBypass() is false, so the IoBackend writes
//     through the Env and PartitionLog reads through it);
//   - a mapping is the file's own buffer, so it stays coherent with Pwrite and Truncate;
//     growing a file past the buffer's capacity while it is mapped would move the buffer, and
//     aborts instead (mapped files here are indexes, sized before they are mapped); touching a
//     mapping past the end of a truncated file reads stale bytes rather than raising SIGBUS;
//   - Allocate reserves nothing and never fails; there is no space limit (FaultEnv has one).
// Paths are absolute; "/" always exists. Thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fs/env.h"
#include "tests/fs/path_map.h"

namespace sluice::storage::testing {

class MemEnv final : public Env {
 public:
  MemEnv() = default;
  ~MemEnv() override = default;

  // Number of files and directories (root excluded), open fds and live mappings.
  size_t nodes() const;
  size_t open_fds() const;
  size_t mappings() const;

  bool AllowsBypass() const override { return false; }
  int Open(const std::string& path, OpenMode mode) override;
  int Close(int fd) override;
  ssize_t Pread(int fd, void* buf, size_t n, uint64_t offset) override;
  ssize_t Pwrite(int fd, const void* buf, size_t n, uint64_t offset) override;
  ssize_t Pwritev(int fd, const iovec* iov, int count, uint64_t offset) override;
  int Fdatasync(int fd) override;
  int Truncate(int fd, uint64_t size) override;
  int Allocate(int fd, uint64_t offset, uint64_t len) override;
  off_t Size(int fd) override;
  int Map(int fd, size_t len, bool writable, uint8_t** addr) override;
  int Unmap(uint8_t* addr, size_t len) override;
  int SyncMapped(uint8_t* addr, size_t len) override;
  int Rename(const std::string& from, const std::string& to) override;
  int Unlink(const std::string& path) override;
  int MakeDir(const std::string& path) override;
  int RemoveDir(const std::string& path) override;
  int SyncDir(const std::string& path) override;
  int ListDir(const std::string& path, std::vector<std::string>* names) override;
  int Stat(const std::string& path, FileStat* out) override;

 private:
  struct File {
    std::unique_ptr<uint8_t[]> buf;
    uint64_t size = 0;
    uint64_t capacity = 0;
    int maps = 0;  // live mappings: the buffer must not move
  };
  struct Node {
    bool is_dir = false;
    std::shared_ptr<File> file;  // files; an open fd keeps an unlinked file alive
  };
  struct OpenFile {
    std::shared_ptr<File> file;
    bool writable = false;
  };
  struct Mapping {
    std::shared_ptr<File> file;
    size_t len = 0;
  };

  static std::string Normalize(const std::string& path);
  static std::string Parent(const std::string& path);
  // "/a/b" -> "/a/b/", "/" -> "/": the prefix of every path below a directory.
  static std::string ChildPrefix(const std::string& dir);
  bool IsDir(const std::string& norm) const;
  OpenFile* FdLocked(int fd);
  // Makes room for `size` bytes (zeroes past the old size), then sets the size.
  static void Resize(File& f, uint64_t size);

  mutable std::mutex mu_;
  PathMap<Node> nodes_;  // normalized absolute path -> node, "/" excluded
  std::map<int, OpenFile> fds_;
  std::multimap<uint8_t*, Mapping> maps_;  // every mapping of a file has its buffer's address
  int next_fd_ = 1 << 20;
};

}  // namespace sluice::storage::testing
