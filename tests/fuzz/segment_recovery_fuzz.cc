// Recovery of a partition log from arbitrary segment bytes: PartitionLog::Open must either
// refuse with an error or come up with a log whose every readable batch is valid and whose
// offsets are contiguous, and which accepts appends afterwards. Never a crash.
#include <stdlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "log/checkpoint.h"
#include "log/file_util.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "log/segment.h"
#include "tests/fuzz/fuzz_fs.h"

using namespace sluice::storage;

namespace {

void WriteFile(Env* env, const std::string& path, const uint8_t* data, size_t size) {
  int fd = env->Open(path, OpenMode::kCreateTruncate);
  if (fd < 0) abort();
  size_t done = 0;
  while (done < size) {
    ssize_t n = env->Pwrite(fd, data + done, size - done, done);
    if (n <= 0) abort();
    done += static_cast<size_t>(n);
  }
  if (env->Close(fd) != 0) abort();
}

void Check(bool ok) {
  if (!ok) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::storage::testing::FuzzFs fs("sluice-fuzz");
  Env* env = fs.env();
  const std::string& dir = fs.dir();
  // First byte: layout choices. Bit 0: write a recovery checkpoint claiming the first
  // `position` bytes durable; bit 1: clean-shutdown marker.
  uint8_t mode = size > 0 ? data[0] : 0;
  const uint8_t* body = size > 0 ? data + 1 : data;
  size_t body_size = size > 0 ? size - 1 : 0;
  WriteFile(env, dir + "/" + Segment::FileStem(0) + ".log", body, body_size);
  if (mode & 1) {
    RecoveryCheckpoint cp;
    cp.position = (mode >> 2) * 61u;
    cp.recovery_offset = mode >> 2;
    (void)WriteRecoveryCheckpoint(dir + "/" + kRecoveryCheckpointFile, cp, env);
  }
  if (mode & 2) WriteFile(env, dir + "/" + kCleanShutdownFile, nullptr, 0);

  auto io = IoBackend::CreatePwrite(env);
  LogConfig config;
  config.index_interval_bytes = 64;
  config.max_index_bytes = 4096;
  auto log = PartitionLog::Open(dir, config, io.get());
  if (log.ok()) {
    int64_t expect = (*log)->log_start_offset();
    int64_t offset = expect;
    while (offset < (*log)->high_watermark()) {
      auto slice = (*log)->Read(offset, 1 << 16);
      if (!slice.ok() || slice->size == 0) break;  // a damaged trusted region reads as an error
      auto bytes = PartitionLog::ReadBytes(*slice);
      Check(bytes.ok());
      size_t pos = 0;
      while (pos < bytes->size()) {
        std::span<const uint8_t> rest(bytes->data() + pos, bytes->size() - pos);
        auto h = ParseBatchHeader(rest, UINT32_MAX);
        if (!h.ok() || h->size_bytes() > rest.size()) break;
        pos += h->size_bytes();
        offset = h->last_offset() + 1;
      }
      if (pos == 0) break;
    }
    // The recovered log takes new appends at its end, readable right after.
    RecordBatchBuilder b(0, 1);
    b.Add("k", "v");
    std::vector<uint8_t> batch = b.Build();
    const int64_t end = (*log)->log_end_offset();
    auto r = (*log)->Append(batch, AckLevel::kWritten, nullptr);
    if (r.ok()) {
      Check(r->base_offset == end);
      Check((*log)->Flush().ok());
      auto slice = (*log)->Read(end, 1 << 16);
      Check(slice.ok() && slice->size == batch.size());
    }
    log->reset();
  }
  return 0;
}
