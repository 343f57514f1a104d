// Child process of crash_test: appends deterministic batches with flush.messages=1 to a log
// until it is killed, printing one line per batch acknowledged as durable:
//   A <seq> <base_offset> <last_offset>
// Each line is written with a single write(2) *after* the durable callback, so every line
// the parent reads names a batch the log promised to keep.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "log/partition_log.h"
#include "tests/log/crash_workload.h"

using namespace sluice::storage;

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: crash_writer DIR io_uring|pwrite\n");
    return 2;
  }
  const std::string dir = argv[1];
  const bool uring = std::string(argv[2]) == "io_uring";
  auto io = IoBackend::Create(uring ? IoBackendKind::kIoUring : IoBackendKind::kPwrite);
  auto log = PartitionLog::Open(dir, crash::Config(), io.get());
  if (!log.ok()) {
    fprintf(stderr, "crash_writer: open: %s\n", std::string(log.status().message()).c_str());
    return 1;
  }
  auto next = crash::NextSequence(**log);
  if (!next.ok()) {
    fprintf(stderr, "crash_writer: %s\n", std::string(next.status().message()).c_str());
    return 1;
  }
  int64_t seq = *next;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);  // never outlive a lost parent
  while (absl::Now() < deadline) {
    // A few producers' worth of appends per loop iteration, as the broker would gather them.
    for (int i = 0; i < 4; ++i, ++seq) {
      std::vector<uint8_t> batch = crash::BatchFor(seq);
      const int64_t this_seq = seq;
      auto r = (*log)->Append(
          batch, AckLevel::kDurable, [this_seq](absl::Status s, const AppendResult& res) {
            if (!s.ok()) return;
            std::string line =
                absl::StrFormat("A %d %d %d\n", this_seq, res.base_offset, res.last_offset);
            ssize_t n = ::write(STDOUT_FILENO, line.data(), line.size());
            (void)n;
          });
      if (!r.ok()) {
        fprintf(stderr, "crash_writer: append: %s\n", std::string(r.status().message()).c_str());
        return 1;
      }
    }
    (*log)->SubmitBuffered();
    io->Submit();
    io->Poll(absl::Milliseconds(5));
    (*log)->Tick(absl::ToUnixMillis(absl::Now()));
  }
  return 0;
}
