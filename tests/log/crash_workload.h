// The deterministic workload shared by crash_writer and crash_test: batch `seq` is always the
// same bytes (before the log assigns its base offset), so the verifier can rebuild what an
// acknowledged batch must look like on disk.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::storage::crash {

inline LogConfig Config() {
  LogConfig c;
  c.flush_messages = 1;
  c.segment_bytes = 64 * 1024;  // roll often: recovery across segment boundaries
  c.index_interval_bytes = 1024;
  c.max_index_bytes = 8192;
  c.recovery_checkpoint_ms = 50;  // checkpoints race with the kills
  c.retention_ms = -1;
  return c;
}

inline std::vector<uint8_t> BatchFor(int64_t seq) {
  RecordBatchBuilder b(0, 1'000'000 + seq);
  const int records = 1 + static_cast<int>(seq % 7);
  const size_t value_size = 10 + static_cast<size_t>((seq * 131) % 3000);
  for (int i = 0; i < records; ++i) {
    std::string value(value_size, '\0');
    for (size_t j = 0; j < value_size; ++j) value[j] = static_cast<char>((seq + i * 3 + j) & 0xff);
    b.Add(absl::StrCat("s", seq, "-", i), value, {}, 1'000'000 + seq);
  }
  return b.Build();
}

// The sequence number after the last batch in the log (0 for an empty log).
inline absl::StatusOr<int64_t> NextSequence(const PartitionLog& log) {
  if (log.high_watermark() == log.log_start_offset()) return 0;
  auto slice = log.Read(log.high_watermark() - 1, 1);
  if (!slice.ok()) return slice.status();
  auto bytes = PartitionLog::ReadBytes(*slice);
  if (!bytes.ok()) return bytes.status();
  auto records = DecodeRecords(*bytes);
  if (!records.ok()) return records.status();
  if (records->empty() || !records->back().key) return absl::DataLossError("last batch has no key");
  std::string_view key = *records->back().key;  // "s<seq>-<i>"
  size_t dash = key.find('-');
  int64_t seq;
  if (key.size() < 2 || dash == std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(key.data() + 1, dash - 1), &seq)) {
    return absl::DataLossError("unexpected key in last batch");
  }
  return seq + 1;
}

}  // namespace sluice::storage::crash
