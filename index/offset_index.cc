#include "index/offset_index.h"

#include <cassert>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "index/mapped_index_file.h"

namespace sluice::storage {
namespace {

// File layout of one entry: u32 offset - base_offset, u32 position.
constexpr size_t kRelAt = 0;
constexpr size_t kPositionAt = 4;
constexpr uint32_t kMagic = 0x58494C53;  // "SLIX" in file byte order

uint32_t Rel(const uint8_t* e) { return LoadLe32(e + kRelAt); }
uint32_t Position(const uint8_t* e) { return LoadLe32(e + kPositionAt); }

// Relative offsets strictly increase and positions never decrease; any entry may come first.
// The all-zero entry is never a successor, so zeroed slots end the list.
bool ValidSuccessor(const uint8_t* prev, const uint8_t* cur) {
  if (prev == nullptr) return true;
  return Rel(cur) > Rel(prev) && Position(cur) >= Position(prev);
}

const MappedIndexFile::Format kFormat = {kMagic, OffsetIndex::kEntrySize, "offset index",
                                         &ValidSuccessor};

}  // namespace

OffsetIndex::OffsetIndex(std::unique_ptr<MappedIndexFile> file) : file_(std::move(file)) {}
OffsetIndex::~OffsetIndex() = default;

absl::StatusOr<std::unique_ptr<OffsetIndex>> OffsetIndex::Create(const std::string& path,
                                                                 int64_t base_offset,
                                                                 uint32_t max_bytes, Env* env,
                                                                 bool defer_file) {
  auto file = MappedIndexFile::Create(path, kFormat, base_offset, max_bytes, env, defer_file);
  if (!file.ok()) return file.status();
  return std::unique_ptr<OffsetIndex>(new OffsetIndex(*std::move(file)));
}

absl::StatusOr<std::unique_ptr<OffsetIndex>> OffsetIndex::Open(const std::string& path,
                                                               int64_t base_offset,
                                                               uint32_t max_bytes, Env* env) {
  auto file = MappedIndexFile::Open(path, kFormat, base_offset, max_bytes, env);
  if (!file.ok()) return file.status();
  return std::unique_ptr<OffsetIndex>(new OffsetIndex(*std::move(file)));
}

absl::Status OffsetIndex::Append(int64_t offset, uint32_t position) {
  absl::StatusOr<uint32_t> relative = file_->RelativeOffsetForAppend(offset);
  if (!relative.ok()) return relative.status();
  const uint32_t rel = *relative;
  if (size_t n = file_->entries(); n > 0) {
    const uint8_t* last = file_->entry(n - 1);
    if (rel <= Rel(last)) {
      return absl::InvalidArgumentError(absl::StrCat(path(), ": offset ", offset,
                                                     " is not above the last entry's offset ",
                                                     file_->base_offset() + Rel(last)));
    }
    if (position < Position(last)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path(), ": position ", position, " is below the last entry's position ", Position(last)));
    }
  }
  uint8_t e[kEntrySize];
  StoreLe32(e + kRelAt, rel);
  StoreLe32(e + kPositionAt, position);
  return file_->Append(e);
}

OffsetPosition OffsetIndex::Lookup(int64_t target) const {
  int64_t base = file_->base_offset();
  if (target < base) return {base, 0};
  uint64_t diff = static_cast<uint64_t>(target) - static_cast<uint64_t>(base);
  size_t i =
      PartitionPoint(file_->entries(), [&](size_t k) { return Rel(file_->entry(k)) <= diff; });
  if (i == 0) return {base, 0};
  return entry(i - 1);
}

std::optional<OffsetPosition> OffsetIndex::LookupByPosition(uint32_t position) const {
  size_t n = file_->entries();
  size_t i = PartitionPoint(n, [&](size_t k) { return Position(file_->entry(k)) < position; });
  if (i == n) return std::nullopt;
  return entry(i);
}

void OffsetIndex::TruncateTo(int64_t offset) {
  int64_t base = file_->base_offset();
  if (offset <= base) {
    file_->TruncateTo(0);
    return;
  }
  uint64_t diff = static_cast<uint64_t>(offset) - static_cast<uint64_t>(base);
  file_->TruncateTo(
      PartitionPoint(file_->entries(), [&](size_t k) { return Rel(file_->entry(k)) < diff; }));
}

void OffsetIndex::TruncateToPosition(uint32_t position) {
  file_->TruncateTo(PartitionPoint(file_->entries(),
                                   [&](size_t k) { return Position(file_->entry(k)) < position; }));
}

absl::Status OffsetIndex::Sync() { return file_->Sync(); }
absl::Status OffsetIndex::Seal() { return file_->Seal(); }
bool OffsetIndex::full() const { return file_->full(); }
bool OffsetIndex::sealed() const { return file_->sealed(); }
bool OffsetIndex::deferred() const { return file_->deferred(); }
absl::Status OffsetIndex::Materialize() { return file_->Materialize(); }
bool OffsetIndex::unsynced() const { return file_->unsynced(); }
void OffsetIndex::MarkUnsynced() { file_->MarkUnsynced(); }
int OffsetIndex::TakeUnsyncedFd() { return file_->TakeUnsyncedFd(); }
size_t OffsetIndex::entries() const { return file_->entries(); }
int64_t OffsetIndex::base_offset() const { return file_->base_offset(); }
const std::string& OffsetIndex::path() const { return file_->path(); }

std::optional<OffsetPosition> OffsetIndex::last() const {
  size_t n = file_->entries();
  if (n == 0) return std::nullopt;
  return entry(n - 1);
}

OffsetPosition OffsetIndex::entry(size_t i) const {
  assert(i < file_->entries());
  if (i >= file_->entries()) return {file_->base_offset(), 0};
  const uint8_t* e = file_->entry(i);
  return {file_->base_offset() + static_cast<int64_t>(Rel(e)), Position(e)};
}

}  // namespace sluice::storage
