// The fault-injecting Env's own contract: what a power cut keeps and drops, and how rules and
// the space limit make calls fail.
#include "tests/fs/fault_env.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "log/file_util.h"

namespace sluice::storage::testing {
namespace {

class FaultEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-faultenv-XXXXXX";
    root_ = mkdtemp(tmpl);
    env_ = std::make_unique<FaultEnv>(root_);
  }
  void TearDown() override {
    env_.reset();
    (void)RemoveTree(root_);
  }
  std::string P(const std::string& name) const { return absl::StrCat(root_, "/", name); }

  // Writes `text` at `offset` through the fault env.
  void Write(int fd, const std::string& text, uint64_t offset) {
    ASSERT_EQ(env_->Pwrite(fd, text.data(), text.size(), offset),
              static_cast<ssize_t>(text.size()));
  }
  // The file's bytes on disk (the POSIX view), or "<missing>".
  std::string OnDisk(const std::string& name) const {
    auto bytes = ReadWholeFile(P(name));
    if (!bytes.ok()) return "<missing>";
    return std::string(bytes->begin(), bytes->end());
  }
  // A file made durable before the test's interesting part.
  void MakeDurable(const std::string& name, const std::string& text) {
    int fd = env_->Open(P(name), OpenMode::kCreateTruncate);
    ASSERT_GE(fd, 0);
    Write(fd, text, 0);
    ASSERT_EQ(env_->Fdatasync(fd), 0);
    ASSERT_EQ(env_->Close(fd), 0);
    ASSERT_EQ(env_->SyncDir(root_), 0);
  }
  void PowerCycle(const CrashModel& model = {}) {
    env_->CutPowerNow();
    ASSERT_TRUE(env_->RestoreAfterPowerCut(model).ok());
  }

  std::string root_;
  std::unique_ptr<FaultEnv> env_;
};

TEST_F(FaultEnvTest, SyncedPrefixSurvivesAndLaterWritesAreLost) {
  MakeDurable("f", "hello");
  int fd = env_->Open(P("f"), OpenMode::kReadWrite);
  ASSERT_GE(fd, 0);
  Write(fd, " world", 5);
  EXPECT_EQ(OnDisk("f"), "hello world");
  PowerCycle();
  EXPECT_EQ(OnDisk("f"), "hello");
}

TEST_F(FaultEnvTest, InPlaceOverwriteWithoutSyncIsLost) {
  MakeDurable("f", "aaaaaaaa");
  int fd = env_->Open(P("f"), OpenMode::kReadWrite);
  Write(fd, "bb", 3);
  PowerCycle();
  EXPECT_EQ(OnDisk("f"), "aaaaaaaa");
}

TEST_F(FaultEnvTest, NewFileWithoutDirectorySyncVanishesEvenIfItsDataWasSynced) {
  int fd = env_->Open(P("new"), OpenMode::kCreateTruncate);
  Write(fd, "data", 0);
  ASSERT_EQ(env_->Fdatasync(fd), 0);
  PowerCycle();
  EXPECT_EQ(OnDisk("new"), "<missing>");
}

TEST_F(FaultEnvTest, NewFileWithDirectorySyncButNoDataSyncIsEmpty) {
  int fd = env_->Open(P("new"), OpenMode::kCreateTruncate);
  Write(fd, "data", 0);
  ASSERT_EQ(env_->SyncDir(root_), 0);
  PowerCycle();
  EXPECT_EQ(OnDisk("new"), "");
}

TEST_F(FaultEnvTest, RenameWithoutDirectorySyncRevertsToTheOldFile) {
  MakeDurable("x", "old");
  int fd = env_->Open(P("x.tmp"), OpenMode::kCreateTruncate);
  Write(fd, "new", 0);
  ASSERT_EQ(env_->Fdatasync(fd), 0);
  ASSERT_EQ(env_->Close(fd), 0);
  ASSERT_EQ(env_->Rename(P("x.tmp"), P("x")), 0);
  EXPECT_EQ(OnDisk("x"), "new");
  PowerCycle();
  EXPECT_EQ(OnDisk("x"), "old");
  EXPECT_EQ(OnDisk("x.tmp"), "<missing>");
}

TEST_F(FaultEnvTest, RenameFollowedByDirectorySyncIsDurable) {
  MakeDurable("x", "old");
  int fd = env_->Open(P("x.tmp"), OpenMode::kCreateTruncate);
  Write(fd, "new", 0);
  ASSERT_EQ(env_->Fdatasync(fd), 0);
  ASSERT_EQ(env_->Close(fd), 0);
  ASSERT_EQ(env_->Rename(P("x.tmp"), P("x")), 0);
  ASSERT_EQ(env_->SyncDir(root_), 0);
  PowerCycle();
  EXPECT_EQ(OnDisk("x"), "new");
}

TEST_F(FaultEnvTest, UnlinkWithoutDirectorySyncBringsTheFileBack) {
  MakeDurable("x", "kept");
  ASSERT_EQ(env_->Unlink(P("x")), 0);
  EXPECT_EQ(OnDisk("x"), "<missing>");
  PowerCycle();
  EXPECT_EQ(OnDisk("x"), "kept");
}

TEST_F(FaultEnvTest, FilesInADirectoryWhoseCreationWasNotSyncedVanish) {
  ASSERT_EQ(env_->MakeDir(P("d")), 0);
  int fd = env_->Open(P("d/f"), OpenMode::kCreateTruncate);
  Write(fd, "x", 0);
  ASSERT_EQ(env_->Fdatasync(fd), 0);
  ASSERT_EQ(env_->SyncDir(P("d")), 0);
  PowerCycle();
  EXPECT_EQ(OnDisk("d/f"), "<missing>");
}

TEST_F(FaultEnvTest, MappedStoresAreDurableOnlyAfterSyncMapped) {
  MakeDurable("m", std::string(4096, 'a'));
  int fd = env_->Open(P("m"), OpenMode::kReadWrite);
  uint8_t* map = nullptr;
  ASSERT_EQ(env_->Map(fd, 4096, /*writable=*/true, &map), 0);
  map[0] = 'b';
  ASSERT_EQ(env_->SyncMapped(map, 4096), 0);
  map[1] = 'c';  // never synced
  PowerCycle();
  const std::string bytes = OnDisk("m");
  EXPECT_EQ(bytes.substr(0, 3), "baa");
}

TEST_F(FaultEnvTest, TruncatedThenRegrownFileReadsZerosAfterSync) {
  MakeDurable("t", std::string(100, 'a'));
  int fd = env_->Open(P("t"), OpenMode::kReadWrite);
  ASSERT_EQ(env_->Truncate(fd, 50), 0);
  ASSERT_EQ(env_->Truncate(fd, 200), 0);
  ASSERT_EQ(env_->Fdatasync(fd), 0);
  PowerCycle();
  EXPECT_EQ(OnDisk("t"), std::string(50, 'a') + std::string(150, '\0'));
}

TEST_F(FaultEnvTest, CallsFailWithEioOnceThePowerIsCutButFdsAreReleased) {
  int fd = env_->Open(P("f"), OpenMode::kCreateTruncate);
  ASSERT_GE(fd, 0);
  env_->CutPowerAfter(1);
  EXPECT_EQ(env_->Pwrite(fd, "a", 1, 0), 1);
  EXPECT_EQ(env_->Pwrite(fd, "b", 1, 1), -EIO);
  EXPECT_EQ(env_->Fdatasync(fd), -EIO);
  EXPECT_TRUE(env_->power_cut());
  EXPECT_EQ(env_->Close(fd), 0);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);  // really closed
  ASSERT_TRUE(env_->RestoreAfterPowerCut().ok());
  EXPECT_FALSE(env_->power_cut());
  EXPECT_EQ(OnDisk("f"), "<missing>");
}

TEST_F(FaultEnvTest, RuleFailsTheNthMatchingCallOnly) {
  MakeDurable("a.log", "");
  MakeDurable("b.index", "");
  FaultRule rule;
  rule.ops = kOpWrite;
  rule.path_contains = ".log";
  rule.nth = 2;
  rule.error = ENOSPC;
  env_->AddRule(rule);
  int log_fd = env_->Open(P("a.log"), OpenMode::kReadWrite);
  int index_fd = env_->Open(P("b.index"), OpenMode::kReadWrite);
  EXPECT_EQ(env_->Pwrite(index_fd, "x", 1, 0), 1);
  EXPECT_EQ(env_->Pwrite(log_fd, "x", 1, 0), 1);
  EXPECT_EQ(env_->Pwrite(log_fd, "y", 1, 1), -ENOSPC);
  EXPECT_EQ(env_->Pwrite(log_fd, "y", 1, 1), 1);
  EXPECT_EQ(env_->failures(), 1);
  EXPECT_EQ(OnDisk("a.log"), "xy");
}

TEST_F(FaultEnvTest, RuleWithMaxFailuresStopsFailing) {
  FaultRule rule;
  rule.ops = kOpSyncDir;
  rule.max_failures = 2;
  env_->AddRule(rule);
  EXPECT_EQ(env_->SyncDir(root_), -EIO);
  EXPECT_EQ(env_->SyncDir(root_), -EIO);
  EXPECT_EQ(env_->SyncDir(root_), 0);
}

TEST_F(FaultEnvTest, RemovedRuleNoLongerFails) {
  FaultRule rule;
  rule.ops = kOpStat;
  int id = env_->AddRule(rule);
  FileStat st;
  EXPECT_EQ(env_->Stat(root_, &st), -EIO);
  env_->RemoveRule(id);
  EXPECT_EQ(env_->Stat(root_, &st), 0);
}

TEST_F(FaultEnvTest, ShortWriteRuleWritesAPartAndSaysSo) {
  FaultRule rule;
  rule.ops = kOpWrite;
  rule.short_write = true;
  rule.max_failures = 1;
  env_->AddRule(rule);
  int fd = env_->Open(P("s"), OpenMode::kCreateTruncate);
  EXPECT_EQ(env_->Pwrite(fd, "abcdef", 6, 0), 3);
  EXPECT_EQ(env_->Pwrite(fd, "def", 3, 3), 3);
  EXPECT_EQ(OnDisk("s"), "abcdef");
}

TEST_F(FaultEnvTest, SpaceLimitGivesShortWritesThenEnospcUntilSpaceReturns) {
  env_->SetSpaceLimit(10);
  int fd = env_->Open(P("s"), OpenMode::kCreateTruncate);
  EXPECT_EQ(env_->Pwrite(fd, "12345678", 8, 0), 8);
  EXPECT_EQ(env_->Pwrite(fd, "abcdef", 6, 8), 2);
  EXPECT_EQ(env_->Pwrite(fd, "cdef", 4, 10), -ENOSPC);
  EXPECT_EQ(env_->Allocate(fd, 10, 100), -ENOSPC);
  EXPECT_EQ(env_->Pwrite(fd, "XY", 2, 0), 2);  // overwriting needs no space
  EXPECT_EQ(env_->space_used(), 10);
  env_->SetSpaceLimit(-1);
  EXPECT_EQ(env_->Pwrite(fd, "cdef", 4, 10), 4);
  EXPECT_EQ(OnDisk("s"), "XY345678abcdef");
}

TEST_F(FaultEnvTest, KeepRandomPrefixKeepsOnlyAPrefixOfTheUnsyncedAppend) {
  std::set<size_t> sizes;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    MakeDurable("f", "synced|");
    int fd = env_->Open(P("f"), OpenMode::kReadWrite);
    Write(fd, "0123456789", 7);
    CrashModel model;
    model.data = CrashModel::Data::kKeepRandomPrefix;
    model.seed = seed;
    PowerCycle(model);
    const std::string got = OnDisk("f");
    ASSERT_EQ(got, std::string("synced|0123456789").substr(0, got.size()));
    ASSERT_GE(got.size(), 7u);
    sizes.insert(got.size());
  }
  EXPECT_GT(sizes.size(), 3u);  // really random
}

TEST_F(FaultEnvTest, GarbageTailKeepsTheSyncedBytes) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    MakeDurable("f", "synced");
    int fd = env_->Open(P("f"), OpenMode::kReadWrite);
    Write(fd, "0123456789", 6);
    CrashModel model;
    model.data = CrashModel::Data::kGarbageTail;
    model.seed = seed;
    PowerCycle(model);
    const std::string got = OnDisk("f");
    ASSERT_EQ(got.substr(0, 6), "synced");
    ASSERT_LE(got.size(), 16u);
  }
}

TEST_F(FaultEnvTest, RandomPagesMixesOldAndNewPagesWholly) {
  const std::string old_bytes(3 * 4096, 'o');
  bool saw_mix = false;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    MakeDurable("f", old_bytes);
    int fd = env_->Open(P("f"), OpenMode::kReadWrite);
    Write(fd, std::string(3 * 4096, 'n'), 0);
    CrashModel model;
    model.data = CrashModel::Data::kRandomPages;
    model.seed = seed;
    PowerCycle(model);
    const std::string got = OnDisk("f");
    ASSERT_EQ(got.size(), old_bytes.size());
    std::set<char> pages;
    for (size_t page = 0; page < 3; ++page) {
      const std::string p = got.substr(page * 4096, 4096);
      ASSERT_TRUE(p == std::string(4096, 'o') || p == std::string(4096, 'n'));
      pages.insert(p[0]);
    }
    saw_mix |= pages.size() == 2;
  }
  EXPECT_TRUE(saw_mix);
}

TEST_F(FaultEnvTest, KeptNameChangesAreAPrefixInTheOrderTheyWereMade) {
  std::set<std::string> outcomes;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    for (const char* name : {"a", "b", "c"}) {
      int fd = env_->Open(P(name), OpenMode::kCreateTruncate);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(env_->Close(fd), 0);
    }
    CrashModel model;
    model.keep_name_change_prefix = true;
    model.seed = seed;
    PowerCycle(model);
    std::string present;
    for (const char* name : {"a", "b", "c"}) {
      if (OnDisk(name) != "<missing>") present += name;
    }
    ASSERT_TRUE(present == "" || present == "a" || present == "ab" || present == "abc") << present;
    outcomes.insert(present);
    for (const char* name : {"a", "b", "c"}) (void)RemoveFile(P(name));
    ASSERT_TRUE(env_->ResetModel().ok());
  }
  EXPECT_GE(outcomes.size(), 3u);
}

TEST_F(FaultEnvTest, PathsOutsideTheRootPassThroughUnmodelled) {
  char tmpl[] = "/tmp/sluice-faultenv-outside-XXXXXX";
  const std::string outside = mkdtemp(tmpl);
  int fd = env_->Open(outside + "/f", OpenMode::kCreateTruncate);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(env_->Pwrite(fd, "x", 1, 0), 1);
  EXPECT_EQ(env_->Close(fd), 0);
  PowerCycle();
  auto bytes = ReadWholeFile(outside + "/f");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(bytes->size(), 1u);
  (void)RemoveTree(outside);
}

TEST_F(FaultEnvTest, CountsCallsByKind) {
  int fd = env_->Open(P("f"), OpenMode::kCreateTruncate);
  env_->Pwrite(fd, "x", 1, 0);
  env_->Fdatasync(fd);
  env_->Close(fd);
  EXPECT_EQ(env_->calls(), 4);
  EXPECT_EQ(env_->calls_of(kOpWrite), 1);
  EXPECT_EQ(env_->calls_of(kOpSync), 1);
}

}  // namespace
}  // namespace sluice::storage::testing
