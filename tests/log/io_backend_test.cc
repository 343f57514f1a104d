// The io_uring backend's choice between an inline write and a write through the ring: small
// writes are done inline at Submit, except those that start in a page an fdatasync queued or
// in flight on the same fd covers (the page may be under writeback, and an inline write into
// it would wait for that I/O on the loop thread).
#include "log/io_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

class IoBackendRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io_ = IoBackend::Create(IoBackendKind::kIoUring);  // no dir: inline small writes
    if (io_->kind() != IoBackendKind::kIoUring) GTEST_SKIP() << "io_uring unavailable";
    fd_ = ::open((dir_.path() + "/f").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Queues a write of `len` bytes of `fill` at `pos`; the result lands in results_.
  void Write(uint64_t pos, size_t len, char fill) {
    buffers_.emplace_back(len, fill);
    const std::string& b = buffers_.back();
    io_->Write(fd_, reinterpret_cast<const uint8_t*>(b.data()), static_cast<uint32_t>(len), pos,
               [this](int r) { results_.push_back(r); });
  }
  void Sync() {
    io_->Sync(fd_, [this](int r) { results_.push_back(r); });
  }
  void Drain() {
    io_->Submit();
    for (int i = 0; i < 1000 && io_->pending() > 0; ++i) io_->Poll(absl::Milliseconds(10));
    ASSERT_EQ(io_->pending(), 0u);
  }
  std::string Contents() {
    std::string out(static_cast<size_t>(::lseek(fd_, 0, SEEK_END)), '\0');
    EXPECT_EQ(::pread(fd_, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<IoBackend> io_;
  int fd_ = -1;
  std::deque<std::string> buffers_;  // stable addresses until the writes complete
  std::vector<int> results_;
};

TEST_F(IoBackendRoutingTest, AWriteIntoAPageASyncCoversGoesThroughTheRing) {
  Write(0, 100, 'a');
  Sync();
  EXPECT_EQ(io_->writes_routed_past_sync(), 0u);
  Write(4096, 100, 'c');  // the next page: nothing of it is being written back
  EXPECT_EQ(io_->writes_routed_past_sync(), 0u);
  Write(100, 100, 'b');  // the page the sync covers
  EXPECT_EQ(io_->writes_routed_past_sync(), 1u);
  // While that one is in flight it may hold the inode's lock: a later write waits for it
  // (held, then done inline), neither done inline now nor sent through the ring.
  Write(8192, 100, 'e');
  EXPECT_EQ(io_->writes_routed_past_sync(), 1u);
  Drain();
  ASSERT_EQ(results_.size(), 5u);
  for (int r : results_) EXPECT_GE(r, 0);
  const std::string got = Contents();
  ASSERT_EQ(got.size(), 8292u);
  EXPECT_EQ(got.substr(0, 100), std::string(100, 'a'));
  EXPECT_EQ(got.substr(100, 100), std::string(100, 'b'));
  EXPECT_EQ(got.substr(4096, 100), std::string(100, 'c'));
  EXPECT_EQ(got.substr(8192, 100), std::string(100, 'e'));

  // The sync and the routed write completed: writes into that page are inline again.
  Write(200, 100, 'd');
  EXPECT_EQ(io_->writes_routed_past_sync(), 1u);
  Drain();
  EXPECT_EQ(Contents().substr(200, 100), std::string(100, 'd'));
}

TEST_F(IoBackendRoutingTest, OnlyTheSyncedFdIsAffected) {
  const int other = ::open((dir_.path() + "/g").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(other, 0);
  Write(0, 100, 'a');
  Sync();
  std::string b(100, 'x');
  int result = -1;
  io_->Write(other, reinterpret_cast<const uint8_t*>(b.data()), 100, 0,
             [&result](int r) { result = r; });
  EXPECT_EQ(io_->writes_routed_past_sync(), 0u);
  Drain();
  EXPECT_EQ(result, 100);
  ::close(other);
}

TEST_F(IoBackendRoutingTest, SyncsOfOneDirectoryQueuedTogetherShareOneFsync) {
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
