// The io_uring backend: directory fsyncs queued together share one fsync, and none is joined
// once submitted (it may have started before the caller's names existed).
#include "log/io_backend.h"

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

class IoBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io_ = IoBackend::Create(IoBackendKind::kIoUring);
    if (io_->kind() != IoBackendKind::kIoUring) GTEST_SKIP() << "io_uring unavailable";
  }
  void Drain() {
    io_->Submit();
    for (int i = 0; i < 1000 && io_->pending() > 0; ++i) io_->Poll(absl::Milliseconds(10));
    ASSERT_EQ(io_->pending(), 0u);
  }

  testing::TempDir dir_;
  std::unique_ptr<IoBackend> io_;
};

TEST_F(IoBackendTest, SyncsOfOneDirectoryQueuedTogetherShareOneFsync) {
  std::vector<int> results;
  auto record = [&results](int r) { results.push_back(r); };
  const std::string other = dir_.path() + "/sub";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  io_->SyncDir(dir_.path(), record);
  io_->SyncDir(other, record);  // another directory: its own fsync
  io_->SyncDir(dir_.path(), record);
  io_->SyncDir(dir_.path(), record);
  EXPECT_EQ(io_->dir_syncs_joined(), 2u);
  EXPECT_EQ(io_->pending(), 4u);
  Drain();
  EXPECT_EQ(results, std::vector<int>(4, 0));

  // Once submitted, an fsync may have started before a later caller's names existed: a new
  // request gets its own.
  io_->SyncDir(dir_.path(), record);
  io_->Submit();
  io_->SyncDir(dir_.path(), record);
  EXPECT_EQ(io_->dir_syncs_joined(), 2u);
  Drain();
  EXPECT_EQ(results.size(), 6u);
}

}  // namespace
}  // namespace sluice::storage
