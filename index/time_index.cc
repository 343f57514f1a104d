#include "index/time_index.h"

#include <cassert>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "index/mapped_index_file.h"

namespace sluice::storage {
namespace {

// File layout of one entry: i64 timestamp, u32 offset - base_offset.
constexpr size_t kTimestampAt = 0;
constexpr size_t kRelAt = 8;
constexpr uint32_t kMagic = 0x49544C53;  // "SLTI" in file byte order
// What Lookup reports, and MaybeAppend compares against, when there is no entry: timestamps
// below 0 (Kafka's "no timestamp" is -1) are never indexed.
constexpr int64_t kNoTimestamp = -1;

int64_t Timestamp(const uint8_t* e) { return static_cast<int64_t>(LoadLe64(e + kTimestampAt)); }
uint32_t Rel(const uint8_t* e) { return LoadLe32(e + kRelAt); }

// Timestamps strictly increase from >= 0 and offsets never decrease. Hence every entry after
// the first has a timestamp > 0 and the all-zero entry is never a successor.
bool ValidSuccessor(const uint8_t* prev, const uint8_t* cur) {
  if (prev == nullptr) return Timestamp(cur) > kNoTimestamp;
  return Timestamp(cur) > Timestamp(prev) && Rel(cur) >= Rel(prev);
}

const MappedIndexFile::Format kFormat = {kMagic, TimeIndex::kEntrySize, "time index",
                                         &ValidSuccessor};

}  // namespace

TimeIndex::TimeIndex(std::unique_ptr<MappedIndexFile> file) : file_(std::move(file)) {}
TimeIndex::~TimeIndex() = default;

absl::StatusOr<std::unique_ptr<TimeIndex>> TimeIndex::Create(const std::string& path,
                                                             int64_t base_offset,
                                                             uint32_t max_bytes, Env* env,
                                                             bool defer_file) {
  auto file = MappedIndexFile::Create(path, kFormat, base_offset, max_bytes, env, defer_file);
  if (!file.ok()) return file.status();
  return std::unique_ptr<TimeIndex>(new TimeIndex(*std::move(file)));
}

absl::StatusOr<std::unique_ptr<TimeIndex>> TimeIndex::Open(const std::string& path,
                                                           int64_t base_offset, uint32_t max_bytes,
                                                           Env* env) {
  auto file = MappedIndexFile::Open(path, kFormat, base_offset, max_bytes, env);
  if (!file.ok()) return file.status();
  return std::unique_ptr<TimeIndex>(new TimeIndex(*std::move(file)));
}

absl::Status TimeIndex::MaybeAppend(int64_t timestamp, int64_t offset) {
  absl::StatusOr<uint32_t> relative = file_->RelativeOffsetForAppend(offset);
  if (!relative.ok()) return relative.status();
  const uint32_t rel = *relative;
  int64_t last_timestamp = kNoTimestamp;
  if (size_t n = file_->entries(); n > 0) {
    const uint8_t* last = file_->entry(n - 1);
    if (rel < Rel(last)) {
      return absl::InvalidArgumentError(absl::StrCat(path(), ": offset ", offset,
                                                     " is below the last entry's offset ",
                                                     file_->base_offset() + Rel(last)));
    }
    last_timestamp = Timestamp(last);
  }
  if (timestamp <= last_timestamp) return absl::OkStatus();
  uint8_t e[kEntrySize];
  StoreLe64(e + kTimestampAt, static_cast<uint64_t>(timestamp));
  StoreLe32(e + kRelAt, rel);
  return file_->Append(e);
}

TimestampOffset TimeIndex::Lookup(int64_t target) const {
  size_t i = PartitionPoint(file_->entries(),
                            [&](size_t k) { return Timestamp(file_->entry(k)) <= target; });
  if (i == 0) return {kNoTimestamp, file_->base_offset()};
  return entry(i - 1);
}

void TimeIndex::TruncateTo(int64_t offset) {
  int64_t base = file_->base_offset();
  if (offset <= base) {
    file_->TruncateTo(0);
    return;
  }
  uint64_t diff = static_cast<uint64_t>(offset) - static_cast<uint64_t>(base);
  file_->TruncateTo(
      PartitionPoint(file_->entries(), [&](size_t k) { return Rel(file_->entry(k)) < diff; }));
}

absl::Status TimeIndex::Sync() { return file_->Sync(); }
absl::Status TimeIndex::Seal() { return file_->Seal(); }
bool TimeIndex::full() const { return file_->full(); }
bool TimeIndex::sealed() const { return file_->sealed(); }
bool TimeIndex::deferred() const { return file_->deferred(); }
absl::Status TimeIndex::Materialize() { return file_->Materialize(); }
bool TimeIndex::unsynced() const { return file_->unsynced(); }
void TimeIndex::MarkUnsynced() { file_->MarkUnsynced(); }
int TimeIndex::TakeUnsyncedFd() { return file_->TakeUnsyncedFd(); }
size_t TimeIndex::entries() const { return file_->entries(); }
int64_t TimeIndex::base_offset() const { return file_->base_offset(); }
const std::string& TimeIndex::path() const { return file_->path(); }

std::optional<TimestampOffset> TimeIndex::last() const {
  size_t n = file_->entries();
  if (n == 0) return std::nullopt;
  return entry(n - 1);
}

TimestampOffset TimeIndex::entry(size_t i) const {
  assert(i < file_->entries());
  if (i >= file_->entries()) return {kNoTimestamp, file_->base_offset()};
  const uint8_t* e = file_->entry(i);
  return {Timestamp(e), file_->base_offset() + static_cast<int64_t>(Rel(e))};
}

}  // namespace sluice::storage
