// Where the storage fuzz targets keep a log's files for one input. By default an in-memory Env
// (tests/fs/mem_env.h): no system call, no mmap/munmap (whose TLB shootdowns cost more than
// the rest of a small log's open), nothing to clean up, so a target runs thousands of opens,
// rolls, crashes and recoveries a second. With SLUICE_FUZZ_POSIX_ENV=1 in the environment the
// same targets use the POSIX Env on a fresh directory under /dev/shm (or /tmp), removed after
// the input, to check now and then that the real files behave as the in-memory ones (real
// mmap, real fds); a crash found either way reproduces either way unless it is the Env's.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "fs/env.h"
#include "log/file_util.h"
#include "tests/fs/mem_env.h"

namespace sluice::storage::testing {

inline bool FuzzUsesPosixEnv() {
  static const bool posix = [] {
    const char* v = getenv("SLUICE_FUZZ_POSIX_ENV");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return posix;
}

class FuzzFs {
 public:
  // `name` names the directory: /<name> in memory, /dev/shm/<name>-XXXXXX on disk.
  explicit FuzzFs(const char* name) {
    if (FuzzUsesPosixEnv()) {
      std::string tmpl =
          std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm/" : "/tmp/") + name + "-XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) abort();
      dir_ = tmpl;
      env_ = Env::Default();
    } else {
      mem_ = std::make_unique<MemEnv>();
      dir_ = std::string("/") + name;
      if (mem_->MakeDir(dir_) != 0) abort();
      env_ = mem_.get();
    }
  }
  ~FuzzFs() {
    if (!mem_) (void)RemoveTree(dir_);
  }
  FuzzFs(const FuzzFs&) = delete;
  FuzzFs& operator=(const FuzzFs&) = delete;

  Env* env() const { return env_; }
  // Exists and is empty when the input starts.
  const std::string& dir() const { return dir_; }

 private:
  std::unique_ptr<MemEnv> mem_;
  Env* env_ = nullptr;
  std::string dir_;
};

}  // namespace sluice::storage::testing
