// A shard's recovery-points file (log/recovery_points.h) as found on disk after any damage:
// parsing stops at the first frame that is not whole and valid, never reads past the input,
// and what it keeps survives a re-encode: a store that rewrites those points produces bytes
// that parse back to the same points.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fs/env.h"
#include "log/file_util.h"
#include "log/recovery_points.h"
#include "tests/fs/mem_env.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::storage;
  ParsedRecoveryPoints parsed = ParseRecoveryPoints(std::span<const uint8_t>(data, size));
  if (parsed.valid_bytes > size) __builtin_trap();
  if (parsed.stop_reason.empty() != (parsed.valid_bytes == size)) __builtin_trap();
  // Re-encode what was kept and parse it again.
  static testing::MemEnv* env = new testing::MemEnv();
  (void)CreateDirIfMissing("/d", env);
  {
    RecoveryPointStore store("/d", 0, parsed.generation, env);
    for (const auto& [name, point] : parsed.points) store.Stage(name, point, nullptr);
    if (!store.Commit(/*rewrite=*/true).ok()) __builtin_trap();
  }
  auto again = ReadRecoveryPointFiles("/d", env);
  if (!again.ok() || again->points.size() != parsed.points.size()) __builtin_trap();
  for (const auto& [name, point] : parsed.points) {
    auto it = again->points.find(name);
    if (it == again->points.end() || !(it->second == point)) __builtin_trap();
  }
  return 0;
}
