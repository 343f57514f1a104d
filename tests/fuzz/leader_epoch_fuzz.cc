// Fuzzes the parser of a partition's leader-epoch-checkpoint (log/leader_epoch_cache.h): a
// file a crash, a disk or an operator may have damaged. Nothing may crash; what parses is
// increasing in epoch and start offset, below the log end, and formats to text that parses to
// the same entries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "log/leader_epoch_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using sluice::storage::LeaderEpochCache;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const int64_t log_end = size > 0 ? data[0] * 1000 : 0;
  auto entries = LeaderEpochCache::Parse(text, log_end);
  if (!entries) return 0;
  for (size_t i = 0; i < entries->size(); ++i) {
    if ((*entries)[i].second >= log_end) std::abort();
    if (i > 0 && ((*entries)[i].first <= (*entries)[i - 1].first ||
                  (*entries)[i].second < (*entries)[i - 1].second)) {
      std::abort();
    }
  }
  auto again = LeaderEpochCache::Parse(LeaderEpochCache::Format(*entries), INT64_MAX);
  if (!again || *again != *entries) std::abort();
  return 0;
}
