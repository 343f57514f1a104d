// Start-up time after a crash with a large log.
//
//   log_startup_bench DIR GIB
// A child process appends GIB GiB of 16 KiB batches (default policy: no fsync per append,
// background flush + recovery checkpoint every second, 1 GiB segments) and SIGKILLs itself
// right after its last append. The parent then times PartitionLog::Open on the crashed log
// and prints what recovery did. Start-up should depend on the tail past the last checkpoint,
// not on GIB.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/clock.h"
#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

using namespace sluice::storage;

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: log_startup_bench DIR GIB\n");
    return 2;
  }
  const std::string dir = std::string(argv[1]) + "/startup-0";
  const int64_t bytes = static_cast<int64_t>(atof(argv[2]) * (1 << 30));
  (void)RemoveTree(dir);
  LogConfig config;
  config.retention_ms = -1;

  pid_t pid = fork();
  if (pid == 0) {
    auto io = IoBackend::Create(IoBackendKind::kIoUring);
    auto log = PartitionLog::Open(dir, config, io.get());
    if (!log.ok()) _exit(1);
    RecordBatchBuilder b(0, absl::ToUnixMillis(absl::Now()));
    while (b.estimated_size() < (16 << 10) - 1100) b.Add("key", std::string(1000, 'v'));
    std::vector<uint8_t> batch = b.Build();
    int64_t next_tick = 0;
    for (int64_t w = 0, i = 0; w < bytes; w += static_cast<int64_t>(batch.size()), ++i) {
      if (!(*log)->Append(batch, AckLevel::kWritten, nullptr).ok()) _exit(1);
      if (i % 64 == 0) {
        (*log)->SubmitBuffered();
        io->Submit();
        io->Poll(absl::ZeroDuration());
        int64_t now = absl::ToUnixMillis(absl::Now());
        if (now >= next_tick) {
          (*log)->Tick(now);
          next_tick = now + 100;
        }
      }
    }
    (*log)->SubmitBuffered();
    io->Submit();
    raise(SIGKILL);  // crash with the tail unflushed and possibly writes in flight
  }
  int status;
  waitpid(pid, &status, 0);
  if (!WIFSIGNALED(status)) {
    fprintf(stderr, "writer did not crash as planned (status %d)\n", status);
    return 1;
  }
  auto io = IoBackend::Create(IoBackendKind::kIoUring);
  absl::Time t0 = absl::Now();
  auto log = PartitionLog::Open(dir, config, io.get());
  absl::Duration took = absl::Now() - t0;
  if (!log.ok()) {
    fprintf(stderr, "open failed: %s\n", std::string(log.status().message()).c_str());
    return 1;
  }
  const RecoveryReport& r = (*log)->recovery_report();
  printf(
      "{\"log_bytes\": %lu, \"segments\": %d, \"open_ms\": %.1f, \"clean\": %s, "
      "\"bytes_revalidated\": %lu, \"bytes_truncated\": %lu, \"log_end_offset\": %ld}\n",
      (*log)->size_bytes(), r.segments, absl::ToDoubleMilliseconds(took),
      r.clean_shutdown ? "true" : "false", r.bytes_validated, r.bytes_truncated,
      (*log)->log_end_offset());
  log->reset();
  if (!getenv("SLUICE_BENCH_KEEP")) (void)RemoveTree(dir);
  return 0;
}
