// Kills a writer process with SIGKILL at random moments while it appends with
// flush.messages=1, then checks after every restart that each batch it had seen acknowledged
// as durable is present and byte-identical, offsets have no gaps, and every readable batch is
// valid. Cycles: SLUICE_CRASH_CYCLES (default 50); tools/crash-soak runs many more.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "log/partition_log.h"
#include "tests/log/crash_workload.h"
#include "tests/log/log_test_util.h"

namespace sluice::storage {
namespace {

struct Ack {
  int64_t seq, base, last;
};

// Runs the writer for `run_ms` then SIGKILLs it; returns the acks it printed.
std::vector<Ack> RunAndKill(const std::string& dir, const char* backend, int run_ms) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(SLUICE_CRASH_WRITER, SLUICE_CRASH_WRITER, dir.c_str(), backend, nullptr);
    _exit(127);
  }
  close(fds[1]);
  usleep(static_cast<useconds_t>(run_ms) * 1000);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  std::vector<Ack> acks;
  std::istringstream lines(out);
  std::string tag;
  Ack a;
  while (lines >> tag >> a.seq >> a.base >> a.last) acks.push_back(a);
  return acks;
}

void CheckLog(const std::string& dir, const std::map<int64_t, Ack>& acked, int cycle) {
  auto io = IoBackend::CreatePwrite();
  auto log = PartitionLog::Open(dir, crash::Config(), io.get());
  ASSERT_TRUE(log.ok()) << "cycle " << cycle << ": " << log.status();
  // Every readable batch is valid and offsets are contiguous.
  std::map<int64_t, std::vector<uint8_t>> by_base;
  int64_t expect = (*log)->log_start_offset();
  for (auto& batch : testing::ReadAllBatches(**log)) {
    ASSERT_TRUE(ValidateBatch(batch, 1 << 20).ok()) << "cycle " << cycle;
    RecordBatchView v(batch);
    ASSERT_EQ(v.base_offset(), expect) << "gap in offsets, cycle " << cycle;
    expect = v.last_offset() + 1;
    by_base[v.base_offset()] = std::move(batch);
  }
  if (expect != (*log)->high_watermark()) {
    for (int64_t base : (*log)->segment_base_offsets()) printf("segment %ld\n", base);
    auto slice = (*log)->Read(expect, 1 << 20);
    printf("read(%ld): %s size %u\n", expect, slice.status().ToString().c_str(),
           slice.ok() ? slice->size : 0);
  }
  ASSERT_EQ(expect, (*log)->high_watermark());
  // Every acknowledged batch is there, byte for byte.
  for (const auto& [seq, a] : acked) {
    auto it = by_base.find(a.base);
    ASSERT_NE(it, by_base.end()) << "acked batch seq " << seq << " at offset " << a.base
                                 << " lost in cycle " << cycle;
    std::vector<uint8_t> want = crash::BatchFor(seq);
    SetBaseOffset(want, a.base);
    ASSERT_EQ(it->second, want) << "acked batch seq " << seq << " differs, cycle " << cycle;
  }
  // Alternate clean closes and drops (the next writer then recovers a crashed log either way).
  if (cycle % 3 == 0) ASSERT_TRUE((*log)->Close().ok());
}

class CrashTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashTest, AcknowledgedBatchesSurviveSigkill) {
  testing::TempDir tmp;
  const std::string dir = tmp.Sub("crash-0");
  int cycles = 50;
  if (const char* env = getenv("SLUICE_CRASH_CYCLES")) cycles = atoi(env);
  std::mt19937 rng(12345);
  std::map<int64_t, Ack> acked;
  size_t total = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    // Mostly mid-append kills; some land during start-up recovery.
    int run_ms = cycle % 5 == 4 ? static_cast<int>(rng() % 5) : 20 + static_cast<int>(rng() % 180);
    for (const Ack& a : RunAndKill(dir, GetParam(), run_ms)) acked[a.seq] = a;
    total = acked.size();
    CheckLog(dir, acked, cycle);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(total, static_cast<size_t>(cycles)) << "the writer should get acks in most cycles";
  printf("%d cycles, %zu acknowledged batches verified\n", cycles, total);
}

INSTANTIATE_TEST_SUITE_P(Backends, CrashTest, ::testing::Values("io_uring", "pwrite"));

}  // namespace
}  // namespace sluice::storage
