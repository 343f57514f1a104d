#include "log/leader_epoch_cache.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::storage {

std::optional<std::vector<std::pair<int32_t, int64_t>>> LeaderEpochCache::Parse(
    std::string_view text, int64_t log_end) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(text.data(), text.size()), '\n', absl::SkipEmpty());
  int64_t count = -1;
  if (lines.size() < 2 || lines[0] != "0" || !absl::SimpleAtoi(std::string(lines[1]), &count) ||
      count != static_cast<int64_t>(lines.size()) - 2) {
    return std::nullopt;
  }
  std::vector<std::pair<int32_t, int64_t>> entries;
  int32_t last_epoch = -1;
  int64_t last_start = -1;
  for (size_t i = 2; i < lines.size(); ++i) {
    std::vector<absl::string_view> f = absl::StrSplit(lines[i], ' ');
    int32_t epoch = 0;
    int64_t start = 0;
    if (f.size() != 2 || !absl::SimpleAtoi(std::string(f[0]), &epoch) ||
        !absl::SimpleAtoi(std::string(f[1]), &start) || epoch < 0 || start < 0 ||
        epoch <= last_epoch || start < last_start) {
      return std::nullopt;
    }
    last_epoch = epoch;
    last_start = start;
    if (start < log_end) entries.emplace_back(epoch, start);
  }
  return entries;
}

std::string LeaderEpochCache::Format(const std::vector<std::pair<int32_t, int64_t>>& entries) {
  std::string text = absl::StrCat("0\n", entries.size(), "\n");
  for (const auto& [epoch, start] : entries) absl::StrAppend(&text, epoch, " ", start, "\n");
  return text;
}

LeaderEpochCache LeaderEpochCache::Load(const std::string& dir, int64_t log_end, Env* env) {
  LeaderEpochCache cache;
  cache.path_ = absl::StrCat(dir, "/", kFileName);
  cache.env_ = env;
  if (!FileExists(cache.path_, env)) return cache;
  auto bytes = ReadWholeFile(cache.path_, env);
  if (!bytes.ok()) {
    LogWarning("%s: %s (starting without leader epochs)", cache.path_, bytes.status().message());
    return cache;
  }
  auto entries =
      Parse(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), log_end);
  if (!entries) {
    LogWarning("%s: not a leader epoch checkpoint (starting without leader epochs)", cache.path_);
    return cache;
  }
  cache.entries_ = std::move(*entries);
  return cache;
}

absl::Status LeaderEpochCache::Assign(int32_t epoch, int64_t start_offset) {
  if (epoch < 0 || epoch <= latest_epoch()) return absl::OkStatus();
  // An older epoch claiming offsets the new one now starts at never wrote them.
  while (!entries_.empty() && entries_.back().second >= start_offset) entries_.pop_back();
  entries_.emplace_back(epoch, start_offset);
  return Save();
}

absl::Status LeaderEpochCache::TruncateFromEnd(int64_t end) {
  const size_t before = entries_.size();
  while (!entries_.empty() && entries_.back().second >= end) entries_.pop_back();
  return entries_.size() == before ? absl::OkStatus() : Save();
}

std::pair<int32_t, int64_t> LeaderEpochCache::EndOffsetFor(int32_t epoch, int64_t log_end) const {
  // The last entry whose epoch is <= `epoch`.
  auto it = std::upper_bound(
      entries_.begin(), entries_.end(), epoch,
      [](int32_t e, const std::pair<int32_t, int64_t>& entry) { return e < entry.first; });
  if (it == entries_.begin()) return {kUndefinedEpoch, kUndefinedOffset};
  const int32_t found = std::prev(it)->first;
  return {found, it == entries_.end() ? log_end : it->second};
}

absl::Status LeaderEpochCache::Save() const {
  if (path_.empty()) return absl::OkStatus();  // not backed by a file (tests)
  const std::string text = Format(entries_);
  return WriteFileAtomically(
      path_, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
      env_);
}

}  // namespace sluice::storage
