// The in-memory Env's contract (tests/fs/mem_env.h): POSIX-like answers for files, names and
// mappings, a FaultEnv on top of it, and a partition log living in it.
#include "tests/fs/mem_env.h"

#include <cerrno>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "tests/fs/fault_env.h"

namespace sluice::storage::testing {
namespace {

std::string ReadAll(Env& env, int fd) {
  std::string out(static_cast<size_t>(env.Size(fd)), '\0');
  EXPECT_EQ(env.Pread(fd, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
  return out;
}

TEST(MemEnvTest, FilesReadWriteTruncate) {
  MemEnv env;
  EXPECT_EQ(env.Open("/d/f", OpenMode::kCreateTruncate), -ENOENT);
  ASSERT_EQ(env.MakeDir("/d"), 0);
  EXPECT_EQ(env.MakeDir("/d"), -EEXIST);
  EXPECT_EQ(env.Open("/d/f", OpenMode::kRead), -ENOENT);
  int fd = env.Open("/d/f", OpenMode::kCreateTruncate);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(env.Pwrite(fd, "hello", 5, 0), 5);
  EXPECT_EQ(env.Pwrite(fd, "!", 1, 7), 1);  // a hole reads as zeros
  EXPECT_EQ(ReadAll(env, fd), std::string("hello\0\0!", 8));
  char buf[16];
  EXPECT_EQ(env.Pread(fd, buf, sizeof(buf), 6), 2);
  EXPECT_EQ(env.Pread(fd, buf, sizeof(buf), 8), 0);
  EXPECT_EQ(env.Truncate(fd, 2), 0);
  EXPECT_EQ(env.Truncate(fd, 4), 0);  // regrown bytes are zeros, not the old ones
  EXPECT_EQ(ReadAll(env, fd), std::string("he\0\0", 4));
  iovec iov[2] = {{const_cast<char*>("ab"), 2}, {const_cast<char*>("cd"), 2}};
  EXPECT_EQ(env.Pwritev(fd, iov, 2, 1), 4);
  EXPECT_EQ(ReadAll(env, fd), "habcd");
  EXPECT_EQ(env.Fdatasync(fd), 0);
  EXPECT_EQ(env.Allocate(fd, 0, 1 << 20), 0);
  EXPECT_EQ(env.Size(fd), 5);
  // Unlinked while open: the fd still reads it.
  ASSERT_EQ(env.Unlink("/d/f"), 0);
  EXPECT_EQ(env.Unlink("/d/f"), -ENOENT);
  EXPECT_EQ(ReadAll(env, fd), "habcd");
  EXPECT_EQ(env.Close(fd), 0);
  EXPECT_EQ(env.Close(fd), -EBADF);
  int ro = env.Open("/d/g", OpenMode::kCreateTruncate);
  ASSERT_EQ(env.Close(ro), 0);
  ro = env.Open("/d/g", OpenMode::kRead);
  EXPECT_EQ(env.Pwrite(ro, "x", 1, 0), -EBADF);
  EXPECT_EQ(env.Close(ro), 0);
  EXPECT_EQ(env.open_fds(), 0u);
}

TEST(MemEnvTest, Names) {
  MemEnv env;
  ASSERT_EQ(env.MakeDir("/a"), 0);
  ASSERT_EQ(env.MakeDir("/a/b"), 0);
  EXPECT_EQ(env.MakeDir("/x/y"), -ENOENT);
  for (const char* f : {"/a/1", "/a/b/2"}) {
    int fd = env.Open(f, OpenMode::kCreateTruncate);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(env.Pwrite(fd, f, 3, 0), 3);
    EXPECT_EQ(env.Close(fd), 0);
  }
  std::vector<std::string> names;
  ASSERT_EQ(env.ListDir("/a/", &names), 0);
  EXPECT_EQ(names, (std::vector<std::string>{"1", "b"}));
  EXPECT_EQ(env.ListDir("/a/1", &names), -ENOTDIR);
  EXPECT_EQ(env.ListDir("/nope", &names), -ENOENT);
  FileStat st;
  ASSERT_EQ(env.Stat("/a//1", &st), 0);
  EXPECT_FALSE(st.is_dir);
  EXPECT_EQ(st.size, 3u);
  ASSERT_EQ(env.Stat("/a/b", &st), 0);
  EXPECT_TRUE(st.is_dir);
  EXPECT_EQ(env.RemoveDir("/a"), -ENOTEMPTY);
  EXPECT_EQ(env.Open("/a", OpenMode::kRead), -EISDIR);
  // A file renamed over another replaces it; a directory moves with what it holds.
  ASSERT_EQ(env.Rename("/a/b/2", "/a/1"), 0);
  EXPECT_EQ(env.Stat("/a/b/2", &st), -ENOENT);
  ASSERT_EQ(env.Rename("/a/b", "/c"), 0);
  ASSERT_EQ(env.Rename("/a", "/c/a"), 0);
  int fd = env.Open("/c/a/1", OpenMode::kRead);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ReadAll(env, fd), "/a/");
  EXPECT_EQ(env.Close(fd), 0);
  EXPECT_EQ(env.Rename("/c", "/c/a/z"), -EINVAL);
  EXPECT_EQ(env.SyncDir("/c/a"), 0);
  EXPECT_EQ(env.Unlink("/c/a/1"), 0);
  EXPECT_EQ(env.RemoveDir("/c/a"), 0);
  EXPECT_EQ(env.RemoveDir("/c"), 0);
  EXPECT_EQ(env.nodes(), 0u);
}

TEST(MemEnvTest, MappingsShareTheFileBuffer) {
  MemEnv env;
  int fd = env.Open("/idx", OpenMode::kCreateTruncate);
  ASSERT_EQ(env.Truncate(fd, 128), 0);
  uint8_t* p = nullptr;
  ASSERT_EQ(env.Map(fd, 128, /*writable=*/true, &p), 0);
  p[3] = 7;
  char c = 0;
  EXPECT_EQ(env.Pread(fd, &c, 1, 3), 1);
  EXPECT_EQ(c, 7);
  EXPECT_EQ(env.Pwrite(fd, "z", 1, 100), 1);
  EXPECT_EQ(p[100], 'z');
  EXPECT_EQ(env.SyncMapped(p, 128), 0);
  EXPECT_EQ(env.Truncate(fd, 64), 0);  // shrinking keeps the buffer where it is
  uint8_t* q = nullptr;
  ASSERT_EQ(env.Map(fd, 64, /*writable=*/false, &q), 0);
  EXPECT_EQ(q, p);
  EXPECT_EQ(env.mappings(), 2u);
  EXPECT_EQ(env.Unmap(p, 128), 0);
  EXPECT_EQ(env.Unmap(q, 64), 0);
  EXPECT_EQ(env.Unmap(q, 64), -EINVAL);
  EXPECT_EQ(env.Close(fd), 0);
  int ro = env.Open("/idx", OpenMode::kRead);
  EXPECT_EQ(env.Map(ro, 64, /*writable=*/true, &p), -EACCES);
  EXPECT_EQ(env.Close(ro), 0);
}

TEST(MemEnvTest, UnderAFaultEnvAPowerCutDropsWhatWasNotSynced) {
  MemEnv mem;
  ASSERT_EQ(mem.MakeDir("/r"), 0);
  FaultEnv env("/r", &mem);
  int fd = env.Open("/r/f", OpenMode::kCreateTruncate);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(env.Pwrite(fd, "durable", 7, 0), 7);
  ASSERT_EQ(env.Fdatasync(fd), 0);
  ASSERT_EQ(env.SyncDir("/r"), 0);
  ASSERT_EQ(env.Pwrite(fd, "+lost", 5, 7), 5);
  int gone = env.Open("/r/g", OpenMode::kCreateTruncate);  // its name never synced
  ASSERT_GE(gone, 0);
  env.CutPowerNow();
  (void)env.Close(fd);
  (void)env.Close(gone);
  ASSERT_TRUE(env.RestoreAfterPowerCut().ok());
  fd = mem.Open("/r/f", OpenMode::kRead);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ReadAll(mem, fd), "durable");
  EXPECT_EQ(mem.Close(fd), 0);
  FileStat st;
  EXPECT_EQ(mem.Stat("/r/g", &st), -ENOENT);
}

TEST(MemEnvTest, PartitionLogRoundTrip) {
  MemEnv env;
  auto io = IoBackend::CreatePwrite(&env);
  LogConfig config;
  config.segment_bytes = 300;  // a few rolls: indexes are created, sealed and reopened
  config.index_interval_bytes = 64;
  config.max_index_bytes = 1024;
  std::vector<std::vector<uint8_t>> batches;
  {
    auto log = PartitionLog::Open("/data/t-0", config, io.get());
    ASSERT_FALSE(log.ok());  // no /data yet
  }
  ASSERT_EQ(env.MakeDir("/data"), 0);
  for (int round = 0; round < 2; ++round) {
    auto log = PartitionLog::Open("/data/t-0", config, io.get());
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 0; i < 20; ++i) {
      RecordBatchBuilder b(0, 1000 + i);
      b.Add("k", std::string(40, static_cast<char>('a' + i)));
      std::vector<uint8_t> batch = b.Build();
      auto r = (*log)->Append(batch, AckLevel::kWritten, nullptr);
      ASSERT_TRUE(r.ok()) << r.status();
      SetBaseOffset(batch, r->base_offset);
      batches.push_back(std::move(batch));
    }
    ASSERT_TRUE((*log)->Flush().ok());
    ASSERT_TRUE((*log)->Close().ok());
  }
  auto log = PartitionLog::Open("/data/t-0", config, io.get());
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ((*log)->high_watermark(), 40);
  for (int64_t o = 0; o < 40; ++o) {
    auto slice = (*log)->Read(o, 1);
    ASSERT_TRUE(slice.ok());
    auto bytes = PartitionLog::ReadBytes(*slice);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(*bytes, batches[o]);
  }
  std::vector<std::string> names;
  ASSERT_EQ(env.ListDir("/data/t-0", &names), 0);
  EXPECT_GT(names.size(), 6u);  // several segments with their indexes
}

}  // namespace
}  // namespace sluice::storage::testing
