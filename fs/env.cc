#include "fs/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::storage {
namespace {

// Retries a call interrupted by a signal; -errno on failure.
template <typename F>
auto Retry(F call) -> decltype(call()) {
  while (true) {
    auto r = call();
    if (r >= 0) return r;
    if (errno != EINTR) return -errno;
  }
}

// Plain system calls. Stateless, so one instance serves every thread.
class PosixEnv final : public Env {
 public:
  bool AllowsBypass() const override { return true; }

  int Open(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::kRead:
        flags |= O_RDONLY;
        break;
      case OpenMode::kReadWrite:
        flags |= O_RDWR;
        break;
      case OpenMode::kCreateTruncate:
        flags |= O_RDWR | O_CREAT | O_TRUNC;
        break;
    }
    return Retry([&] { return ::open(path.c_str(), flags, 0644); });
  }
  int Close(int fd) override { return ::close(fd) == 0 ? 0 : -errno; }
  ssize_t Pread(int fd, void* buf, size_t n, uint64_t offset) override {
    return Retry([&] { return ::pread(fd, buf, n, static_cast<off_t>(offset)); });
  }
  ssize_t Pwrite(int fd, const void* buf, size_t n, uint64_t offset) override {
    return Retry([&] { return ::pwrite(fd, buf, n, static_cast<off_t>(offset)); });
  }
  ssize_t Pwritev(int fd, const iovec* iov, int count, uint64_t offset) override {
    return Retry([&] { return ::pwritev(fd, iov, count, static_cast<off_t>(offset)); });
  }
  int Fdatasync(int fd) override {
    return Retry([&] { return ::fdatasync(fd); });
  }
  int Truncate(int fd, uint64_t size) override {
    return Retry([&] { return ::ftruncate(fd, static_cast<off_t>(size)); });
  }
  int Allocate(int fd, uint64_t offset, uint64_t len) override {
    return Retry([&] {
      return ::fallocate(fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                         static_cast<off_t>(len));
    });
  }
  off_t Size(int fd) override {
    struct stat st;
    if (::fstat(fd, &st) != 0) return -errno;
    return st.st_size;
  }

  int Map(int fd, size_t len, bool writable, uint8_t** addr) override {
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* p = ::mmap(nullptr, len, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    // Mappings are index files, searched by bisection and appended to a few bytes at a time.
    // Without this a fault reads ahead the device's read_ahead_kb (8 MiB on some disks) of a
    // mostly unwritten preallocated file: megabytes of zeroed page cache per index, per fault.
    (void)::madvise(p, len, MADV_RANDOM);
    *addr = static_cast<uint8_t*>(p);
    return 0;
  }
  int Unmap(uint8_t* addr, size_t len) override { return ::munmap(addr, len) == 0 ? 0 : -errno; }
  int SyncMapped(uint8_t* addr, size_t len) override {
    return Retry([&] { return ::msync(addr, len, MS_SYNC); });
  }

  int Rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : -errno;
  }
  int Unlink(const std::string& path) override { return ::unlink(path.c_str()) == 0 ? 0 : -errno; }
  int MakeDir(const std::string& path) override {
    return ::mkdir(path.c_str(), 0755) == 0 ? 0 : -errno;
  }
  int RemoveDir(const std::string& path) override {
    return ::rmdir(path.c_str()) == 0 ? 0 : -errno;
  }
  int SyncDir(const std::string& path) override {
    int fd = Retry([&] { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
    if (fd < 0) return fd;
    int rc = Retry([&] { return ::fsync(fd); });
    ::close(fd);
    return rc;
  }
  int ListDir(const std::string& path, std::vector<std::string>* names) override {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return -errno;
    names->clear();
    errno = 0;
    while (dirent* e = ::readdir(d)) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
        names->emplace_back(e->d_name);
      }
      errno = 0;
    }
    const int err = errno;
    ::closedir(d);
    return err == 0 ? 0 : -err;
  }
  int Stat(const std::string& path, FileStat* out) override {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return -errno;
    out->size = static_cast<uint64_t>(st.st_size);
    out->is_dir = S_ISDIR(st.st_mode);
    return 0;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv();
  return env;
}

}  // namespace sluice::storage
