// The file-system seam holds: log/ and index/ make no file system call of their own, all go
// through the Env (fs/env.h), except the few that must bypass it, listed here with why.
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace sluice::storage {
namespace {

// (file, text on the line) pairs allowed to call the system directly.
const std::vector<std::pair<std::string, std::string>> kAllowed = {
    // The io_uring backend's completion eventfd is no file of the storage.
    {"log/io_backend.cc", "event_fd_"},
    // Probing for non-blocking buffered writes (RWF_NOWAIT has no Env call); only made over
    // the default Env.
    {"log/io_backend.cc", "::pwritev2(fd, &iov, 1, 0, RWF_NOWAIT)"},
    // The free-space probe before a segment is created (the Env has no statvfs; fault tests
    // inject ENOSPC at the calls themselves).
    {"log/partition_log.cc", "::statvfs(dir.c_str(), &vfs)"},
    // Diagnostics go to stderr.
    {"log/logging.cc", "STDERR_FILENO"},
};

TEST(EnvSeamTest, StorageSourcesMakeNoFileSystemCallOutsideTheEnv) {
  const std::regex call(
      R"(::(open|openat|creat|close|pread|preadv|pwrite|pwritev|pwritev2|read|write|fsync|)"
      R"(fdatasync|sync_file_range|ftruncate|truncate|fallocate|posix_fallocate|rename|)"
      R"(renameat|unlink|unlinkat|mkdir|rmdir|opendir|readdir|closedir|stat|lstat|fstat|statvfs|)"
      R"(mmap|munmap|msync|lseek|dup|dup2|sendfile|splice)\s*\()");
  const std::filesystem::path root = SLUICE_SOURCE_DIR;
  int files = 0;
  for (const char* dir : {"log", "index"}) {
    for (const auto& entry : std::filesystem::directory_iterator(root / dir)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".cc" && ext != ".h") continue;
      ++files;
      const std::string rel = std::string(dir) + "/" + entry.path().filename().string();
      std::ifstream in(entry.path());
      std::string line;
      for (int number = 1; std::getline(in, line); ++number) {
        if (!std::regex_search(line, call)) continue;
        bool allowed = false;
        for (const auto& [file, text] : kAllowed) {
          allowed |= rel == file && line.find(text) != std::string::npos;
        }
        EXPECT_TRUE(allowed) << rel << ":" << number << " calls the system, not the Env: " << line;
      }
    }
  }
  EXPECT_GT(files, 20);
}

TEST(EnvSeamTest, OnlyTheIoUringBackendBypassesTheEnv) {
  const std::filesystem::path root = SLUICE_SOURCE_DIR;
  for (const char* dir : {"log", "index"}) {
    for (const auto& entry : std::filesystem::directory_iterator(root / dir)) {
      const std::string name = entry.path().filename().string();
      if (name == "io_backend.cc") continue;
      std::ifstream in(entry.path());
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(text.find("io_uring_prep_"), std::string::npos) << dir << "/" << name;
    }
  }
}

}  // namespace
}  // namespace sluice::storage
