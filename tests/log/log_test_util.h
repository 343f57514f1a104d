// Helpers shared by the storage tests: temp dirs, batch builders, synchronous appends, a
// LogManager over a directory.
#pragma once

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "log/file_util.h"
#include "log/log_manager.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::storage::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)RemoveTree(path_); }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

// A batch of `records` records whose values are `value_size` bytes derived from `seed`.
inline std::vector<uint8_t> MakeBatch(int records, size_t value_size, int64_t timestamp,
                                      uint64_t seed = 0) {
  RecordBatchBuilder b(0, timestamp);
  for (int i = 0; i < records; ++i) {
    std::string key = absl::StrCat("k", seed, "-", i);
    std::string value(value_size, '\0');
    for (size_t j = 0; j < value_size; ++j) {
      value[j] = static_cast<char>('a' + (seed * 31 + i * 7 + j) % 26);
    }
    b.Add(key, value, {}, timestamp);
  }
  return b.Build();
}

// Appends and drives the backend until the callback ran; returns the result.
inline absl::StatusOr<AppendResult> AppendSync(PartitionLog& log, IoBackend& io,
                                               std::span<const uint8_t> batch,
                                               AckLevel ack = AckLevel::kWritten) {
  bool called = false;
  absl::Status cb_status;
  auto r = log.Append(batch, ack, [&](absl::Status s, const AppendResult&) {
    called = true;
    cb_status = s;
  });
  if (!r.ok()) return r.status();
  log.SubmitBuffered();
  io.Submit();
  for (int i = 0; i < 10000 && !called; ++i) io.Poll(absl::Milliseconds(10));
  if (!called) return absl::DeadlineExceededError("append callback never ran");
  if (!cb_status.ok()) return cb_status;
  return r;
}

// Every batch readable from log start to the high watermark, in order.
inline std::vector<std::vector<uint8_t>> ReadAllBatches(const PartitionLog& log) {
  std::vector<std::vector<uint8_t>> out;
  int64_t offset = log.log_start_offset();
  while (offset < log.high_watermark()) {
    auto slice = log.Read(offset, 1 << 20);
    EXPECT_TRUE(slice.ok()) << slice.status();
    if (!slice.ok() || slice->size == 0) break;
    auto bytes = PartitionLog::ReadBytes(*slice);
    EXPECT_TRUE(bytes.ok());
    size_t pos = 0;
    while (pos < bytes->size()) {
      RecordBatchView v(std::span<const uint8_t>(bytes->data() + pos, bytes->size() - pos));
      size_t n = v.size_bytes();
      out.emplace_back(bytes->begin() + pos, bytes->begin() + pos + n);
      offset = v.last_offset() + 1;
      pos += n;
    }
  }
  return out;
}

inline void TruncateFile(const std::string& path, uint64_t size) {
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0) << path;
}

inline void PatchFile(const std::string& path, uint64_t position, uint8_t xor_mask) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(static_cast<std::streamoff>(position));
  char c;
  f.read(&c, 1);
  c = static_cast<char>(c ^ xor_mask);
  f.seekp(static_cast<std::streamoff>(position));
  f.write(&c, 1);
}

inline void AppendToFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline uint64_t SizeOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// A LogManager over `dir` with default options (null, after a test failure, if it cannot
// open).
inline std::unique_ptr<LogManager> OpenLogManager(const std::string& dir) {
  LogManager::Options options;
  options.data_dir = dir;
  auto mgr = LogManager::Open(options);
  EXPECT_TRUE(mgr.ok()) << mgr.status();
  return mgr.ok() ? *std::move(mgr) : nullptr;
}

}  // namespace sluice::storage::testing
