// sluice-log verify/dump against logs written by PartitionLog.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

// Runs sluice-log with `args`; returns its exit status and stdout.
std::pair<int, std::string> RunTool(const std::string& args) {
  std::string cmd = std::string(SLUICE_LOG_TOOL) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

class LogToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io_ = IoBackend::CreatePwrite();
    LogConfig c;
    c.segment_bytes = 4096;
    c.index_interval_bytes = 256;
    auto log = PartitionLog::Open(dir_.Sub("topic-0"), c, io_.get());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(testing::AppendSync(**log, *io_, testing::MakeBatch(2, 100, 1000 + i, i)).ok());
    }
    ASSERT_TRUE((*log)->Close().ok());
  }
  testing::TempDir dir_;
  std::unique_ptr<IoBackend> io_;
};

TEST_F(LogToolTest, VerifyOfASoundDataDirectorySucceeds) {
  auto [rc, out] = RunTool("verify " + dir_.path());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("40 batches"), std::string::npos) << out;
  EXPECT_NE(out.find("next offset 80: ok"), std::string::npos) << out;
}

TEST_F(LogToolTest, VerifyReportsACorruptBatch) {
  testing::PatchFile(dir_.Sub("topic-0/" + Segment::FileStem(0) + ".log"), 200, 0x04);
  auto [rc, out] = RunTool("verify " + dir_.Sub("topic-0"));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("crc mismatch"), std::string::npos) << out;
}

TEST_F(LogToolTest, DumpPrintsEveryBatchAndRecord) {
  auto [rc, out] =
      RunTool("dump " + dir_.Sub("topic-0/" + Segment::FileStem(0) + ".log") + " --records");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("position 0 offsets 0..1 count 2"), std::string::npos) << out;
  EXPECT_NE(out.find("offset 1 timestamp 1000 key \"k0-1\""), std::string::npos) << out;
}

TEST_F(LogToolTest, IndexAndCheckpointDumps) {
  auto [rc, out] = RunTool("index " + dir_.Sub("topic-0/" + Segment::FileStem(0) + ".index"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("sealed"), std::string::npos) << out;
  auto [rc2, out2] = RunTool("checkpoint " + dir_.Sub("topic-0/recovery-point"));
  EXPECT_EQ(rc2, 0) << out2;
  EXPECT_NE(out2.find("recovery offset 80"), std::string::npos) << out2;
}

}  // namespace
}  // namespace sluice::storage
