// Feeds arbitrary bytes to OffsetIndex::Open and TimeIndex::Open. Whatever opens must answer
// lookups consistently, survive append/truncate/seal, and reopen after sealing.
#include <stdio.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "index/offset_index.h"
#include "index/time_index.h"
#include "tests/fuzz/fuzz_fs.h"

namespace {

using sluice::storage::OffsetIndex;
using sluice::storage::TimeIndex;

constexpr uint32_t kOffsetMaxBytes = 64 + 32 * OffsetIndex::kEntrySize;
constexpr uint32_t kTimeMaxBytes = 64 + 32 * TimeIndex::kEntrySize;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      abort();                                                          \
    }                                                                   \
  } while (0)

// The index file's Env and path: in memory unless SLUICE_FUZZ_POSIX_ENV=1 (tests/fuzz/fuzz_fs.h;
// then a directory under /dev/shm, where the fdatasync in Seal is cheap, removed at exit).
sluice::storage::testing::FuzzFs& Fs() {
  static sluice::storage::testing::FuzzFs fs("sluice_index_fuzz");
  return fs;
}

const std::string& FilePath() {
  static const std::string path = Fs().dir() + "/index";
  return path;
}

void WriteInput(const uint8_t* data, size_t size) {
  sluice::storage::Env* env = Fs().env();
  int fd = env->Open(FilePath(), sluice::storage::OpenMode::kCreateTruncate);
  CHECK(fd >= 0);
  size_t done = 0;
  while (done < size) {
    ssize_t n = env->Pwrite(fd, data + done, size - done, done);
    CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  CHECK(env->Close(fd) == 0);
}

// The base offset stored in the input's header, so that inputs get past that check.
int64_t BaseOffsetOf(const uint8_t* data, size_t size) {
  if (size < 16) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(data[8 + i]) << (8 * i);
  return static_cast<int64_t>(v);
}

void ExerciseOffsetIndex(int64_t base) {
  auto opened = OffsetIndex::Open(FilePath(), base, kOffsetMaxBytes, Fs().env());
  if (!opened.ok()) return;
  OffsetIndex& index = **opened;
  size_t n = index.entries();
  for (size_t i = 0; i < n; ++i) {
    auto e = index.entry(i);
    CHECK(e.offset >= base);
    auto found = index.Lookup(e.offset);
    CHECK(found.offset == e.offset && found.position == e.position);
    auto by_position = index.LookupByPosition(e.position);
    CHECK(by_position.has_value() && by_position->position == e.position);
    if (i > 0) CHECK(e.offset > index.entry(i - 1).offset);
  }
  CHECK(index.Lookup(base - 1).offset == base || base == INT64_MIN);
  if (n > 0) CHECK(index.Lookup(INT64_MAX).offset == index.last()->offset);
  if (index.sealed()) {
    CHECK(index.Append(INT64_MAX, 0).code() == absl::StatusCode::kFailedPrecondition);
    return;
  }
  // Append one more entry where there is room, then truncate half away and seal.
  auto last = index.last();
  int64_t next = last ? last->offset + 1 : base;
  uint32_t position = last ? last->position : 0;
  absl::Status appended = index.Append(next, position);
  CHECK(appended.ok() || index.full() || appended.code() == absl::StatusCode::kInvalidArgument);
  index.TruncateTo(index.entries() > 0 ? index.entry(index.entries() / 2).offset : base);
  size_t kept = index.entries();
  if (!index.Seal().ok()) return;
  opened->reset();
  auto reopened = OffsetIndex::Open(FilePath(), base, kOffsetMaxBytes, Fs().env());
  CHECK(reopened.ok());
  CHECK((*reopened)->sealed() && (*reopened)->entries() == kept);
}

void ExerciseTimeIndex(int64_t base) {
  auto opened = TimeIndex::Open(FilePath(), base, kTimeMaxBytes, Fs().env());
  if (!opened.ok()) return;
  TimeIndex& index = **opened;
  size_t n = index.entries();
  for (size_t i = 0; i < n; ++i) {
    auto e = index.entry(i);
    CHECK(e.offset >= base && e.timestamp >= 0);
    auto found = index.Lookup(e.timestamp);
    CHECK(found.timestamp == e.timestamp && found.offset == e.offset);
    if (i > 0) CHECK(e.timestamp > index.entry(i - 1).timestamp);
  }
  CHECK(index.Lookup(-1).timestamp == -1);
  if (index.sealed()) {
    CHECK(index.MaybeAppend(INT64_MAX, INT64_MAX).code() == absl::StatusCode::kFailedPrecondition);
    return;
  }
  auto last = index.last();
  int64_t ts = last ? last->timestamp : 0;
  absl::Status appended =
      index.MaybeAppend(ts == INT64_MAX ? ts : ts + 1, last ? last->offset : base);
  CHECK(appended.ok() || index.full() || appended.code() == absl::StatusCode::kInvalidArgument);
  index.TruncateTo(index.entries() > 0 ? index.entry(index.entries() / 2).offset : base);
  size_t kept = index.entries();
  if (!index.Seal().ok()) return;
  opened->reset();
  auto reopened = TimeIndex::Open(FilePath(), base, kTimeMaxBytes, Fs().env());
  CHECK(reopened.ok());
  CHECK((*reopened)->sealed() && (*reopened)->entries() == kept);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int64_t base = BaseOffsetOf(data, size);
  WriteInput(data, size);
  ExerciseOffsetIndex(base);
  WriteInput(data, size);
  ExerciseTimeIndex(base);
  return 0;
}
