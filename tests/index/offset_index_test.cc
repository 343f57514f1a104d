#include "index/offset_index.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#define XXH_INLINE_ALL  // tests link only sluice_index; use xxHash header-only
#include <xxhash.h>

namespace sluice::storage {

// Found by ADL, so outside the anonymous namespace.
bool operator==(const OffsetPosition& a, const OffsetPosition& b) {
  return a.offset == b.offset && a.position == b.position;
}
void PrintTo(const OffsetPosition& p, std::ostream* os) {
  *os << "{" << p.offset << ", " << p.position << "}";
}

namespace {

using ::testing::HasSubstr;

constexpr size_t kHeader = 64;
constexpr int64_t kBase = 1000;
constexpr uint32_t kMaxBytes = kHeader + 16 * OffsetIndex::kEntrySize;  // 16 entries

class OffsetIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice_offset_index_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/00000000000000001000.index";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<OffsetIndex> MustCreate(int64_t base = kBase, uint32_t max_bytes = kMaxBytes) {
    auto index = OffsetIndex::Create(path_, base, max_bytes);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
  std::unique_ptr<OffsetIndex> MustOpen(int64_t base = kBase, uint32_t max_bytes = kMaxBytes) {
    auto index = OffsetIndex::Open(path_, base, max_bytes);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
  // Entries at base+10, base+20, ... at positions 100, 200, ...
  void AppendTens(OffsetIndex& index, int n) {
    for (int i = 1; i <= n; ++i) {
      ASSERT_TRUE(index.Append(kBase + 10 * i, 100 * i).ok());
    }
  }
  std::vector<uint8_t> ReadFile() {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void WriteFile(const std::vector<uint8_t>& bytes) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  uint64_t FileSize() { return std::filesystem::file_size(path_); }

  std::string dir_;
  std::string path_;
};

void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[at + i]) << (8 * i);
  return v;
}
// Recomputes both checksums of a sealed file so that only the semantic damage remains.
void FixChecksums(std::vector<uint8_t>& b) {
  Put64(b, 24, XXH3_64bits(b.data() + kHeader, b.size() - kHeader));
  Put64(b, 56, XXH3_64bits(b.data(), 56));
}

TEST_F(OffsetIndexTest, CreateMakesEmptyPreallocatedIndex) {
  auto index = MustCreate();
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_FALSE(index->full());
  EXPECT_FALSE(index->sealed());
  EXPECT_EQ(index->base_offset(), kBase);
  EXPECT_EQ(index->path(), path_);
  EXPECT_FALSE(index->last().has_value());
  EXPECT_EQ(FileSize(), kMaxBytes);
}

TEST_F(OffsetIndexTest, CreateRoundsSizeDownToWholeEntries) {
  auto index = MustCreate(kBase, kHeader + 3 * 8 + 7);
  EXPECT_EQ(FileSize(), kHeader + 3 * 8);
  AppendTens(*index, 3);
  EXPECT_TRUE(index->full());
}

TEST_F(OffsetIndexTest, CreateRejectsMaxBytesWithoutRoomForAnEntry) {
  EXPECT_EQ(OffsetIndex::Create(path_, kBase, kHeader + 7).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OffsetIndex::Create(path_, kBase, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OffsetIndexTest, CreateRejectsNegativeBaseOffset) {
  EXPECT_EQ(OffsetIndex::Create(path_, -1, kMaxBytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OffsetIndexTest, CreateTruncatesExistingFile) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index.reset();
  index = MustCreate();
  EXPECT_EQ(index->entries(), 0u);
  index.reset();
  EXPECT_EQ(MustOpen()->entries(), 0u);
}

TEST_F(OffsetIndexTest, HeaderMatchesDocumentedLayout) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Append(kBase + 1, 0).ok());
  ASSERT_TRUE(index->Append(kBase + 5, 300).ok());
  ASSERT_TRUE(index->Seal().ok());
  std::vector<uint8_t> b = ReadFile();
  ASSERT_EQ(b.size(), kHeader + 2 * 8);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "SLIX");
  EXPECT_EQ(b[4], 1);  // version 1, little-endian
  EXPECT_EQ(b[5], 0);
  EXPECT_EQ(b[6], 8);  // entry size
  EXPECT_EQ(b[7], 0);
  EXPECT_EQ(Get64(b, 8), static_cast<uint64_t>(kBase));
  EXPECT_EQ(b[16], 0x03);  // sealed | non-empty
  EXPECT_EQ(b[20], 2);     // count
  EXPECT_EQ(Get64(b, 24), XXH3_64bits(b.data() + kHeader, 16));
  for (size_t i = 32; i < 56; ++i) EXPECT_EQ(b[i], 0) << i;
  EXPECT_EQ(Get64(b, 56), XXH3_64bits(b.data(), 56));
  const std::vector<uint8_t> entries = {1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0x2c, 1, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(b.begin() + kHeader, b.end()), entries);
}

TEST_F(OffsetIndexTest, LookupOnEmptyIndexReturnsBase) {
  auto index = MustCreate();
  EXPECT_EQ(index->Lookup(kBase), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Lookup(kBase + 1'000'000), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Lookup(0), (OffsetPosition{kBase, 0}));
  EXPECT_FALSE(index->LookupByPosition(0).has_value());
}

TEST_F(OffsetIndexTest, LookupBeforeFirstEntryReturnsBase) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(index->Lookup(kBase + 9), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Lookup(kBase), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Lookup(kBase - 1), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Lookup(INT64_MIN), (OffsetPosition{kBase, 0}));
}

TEST_F(OffsetIndexTest, LookupExactlyOnEntryReturnsThatEntry) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(index->Lookup(kBase + 10), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(index->Lookup(kBase + 20), (OffsetPosition{kBase + 20, 200}));
  EXPECT_EQ(index->Lookup(kBase + 30), (OffsetPosition{kBase + 30, 300}));
}

TEST_F(OffsetIndexTest, LookupBetweenEntriesReturnsLowerEntry) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(index->Lookup(kBase + 11), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(index->Lookup(kBase + 19), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(index->Lookup(kBase + 25), (OffsetPosition{kBase + 20, 200}));
}

TEST_F(OffsetIndexTest, LookupBeyondLastEntryReturnsLastEntry) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(index->Lookup(kBase + 31), (OffsetPosition{kBase + 30, 300}));
  EXPECT_EQ(index->Lookup(kBase + (int64_t{1} << 40)), (OffsetPosition{kBase + 30, 300}));
  EXPECT_EQ(index->Lookup(INT64_MAX), (OffsetPosition{kBase + 30, 300}));
}

TEST_F(OffsetIndexTest, LookupAgreesWithLinearScanOnEveryTarget) {
  auto index = MustCreate(kBase, kHeader + 200 * 8);
  std::vector<OffsetPosition> added;
  int64_t offset = kBase;
  uint32_t position = 0;
  for (int i = 0; i < 200; ++i) {
    offset += 1 + (i * 7) % 5;
    position += (i % 3) * 50;  // equal positions are allowed
    ASSERT_TRUE(index->Append(offset, position).ok());
    added.push_back({offset, position});
  }
  EXPECT_TRUE(index->full());
  for (int64_t target = kBase - 2; target <= offset + 2; ++target) {
    OffsetPosition want{kBase, 0};
    for (const auto& e : added) {
      if (e.offset <= target) want = e;
    }
    ASSERT_EQ(index->Lookup(target), want) << target;
  }
  for (uint32_t p = 0; p <= position + 1; ++p) {
    std::optional<OffsetPosition> want;
    for (const auto& e : added) {
      if (e.position >= p) {
        want = e;
        break;
      }
    }
    ASSERT_EQ(index->LookupByPosition(p).has_value(), want.has_value()) << p;
    if (want) ASSERT_EQ(*index->LookupByPosition(p), *want) << p;
  }
}

TEST_F(OffsetIndexTest, LookupByPositionReturnsFirstEntryAtOrAfterPosition) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(*index->LookupByPosition(0), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(*index->LookupByPosition(100), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(*index->LookupByPosition(101), (OffsetPosition{kBase + 20, 200}));
  EXPECT_EQ(*index->LookupByPosition(300), (OffsetPosition{kBase + 30, 300}));
  EXPECT_FALSE(index->LookupByPosition(301).has_value());
}

TEST_F(OffsetIndexTest, EntryAndLastReturnAbsoluteOffsets) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  EXPECT_EQ(index->entries(), 3u);
  EXPECT_EQ(index->entry(0), (OffsetPosition{kBase + 10, 100}));
  EXPECT_EQ(index->entry(2), (OffsetPosition{kBase + 30, 300}));
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 30, 300}));
}

TEST_F(OffsetIndexTest, AppendRejectsOffsetNotAboveLastEntry) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  EXPECT_EQ(index->Append(kBase + 20, 300).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Append(kBase + 15, 300).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->entries(), 2u);
}

TEST_F(OffsetIndexTest, AppendRejectsDecreasingPosition) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  EXPECT_EQ(index->Append(kBase + 30, 199).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->entries(), 2u);
}

TEST_F(OffsetIndexTest, AppendAcceptsEqualPosition) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  EXPECT_TRUE(index->Append(kBase + 30, 200).ok());
}

TEST_F(OffsetIndexTest, AppendRejectsOffsetOutsideRelativeRange) {
  auto index = MustCreate();
  EXPECT_EQ(index->Append(kBase - 1, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->Append(kBase + (int64_t{1} << 32), 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(index->Append(kBase + (int64_t{1} << 32) - 1, 0).ok());
  EXPECT_EQ(index->last()->offset, kBase + (int64_t{1} << 32) - 1);
}

TEST_F(OffsetIndexTest, FullIndexReturnsResourceExhausted) {
  auto index = MustCreate();
  AppendTens(*index, 16);
  EXPECT_TRUE(index->full());
  EXPECT_EQ(index->Append(kBase + 1000, 10000).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(index->entries(), 16u);
  EXPECT_EQ(index->Lookup(kBase + 160), (OffsetPosition{kBase + 160, 1600}));
}

TEST_F(OffsetIndexTest, FirstEntryAtBaseOffsetAndPositionZeroSurvivesReopen) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Append(kBase, 0).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 1u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase, 0}));
  EXPECT_EQ(index->Append(kBase, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(index->Append(kBase + 1, 0).ok());
}

TEST_F(OffsetIndexTest, EmptyIndexReopensEmpty) {
  MustCreate().reset();
  auto index = MustOpen();
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_TRUE(index->Append(kBase, 0).ok());
}

TEST_F(OffsetIndexTest, ReopenUnsealedKeepsEntriesAndContinuesAppending) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index.reset();
  index = MustOpen();
  EXPECT_FALSE(index->sealed());
  EXPECT_EQ(index->entries(), 5u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 50, 500}));
  EXPECT_EQ(index->Append(kBase + 50, 600).code(), absl::StatusCode::kInvalidArgument);
  for (int i = 6; i <= 16; ++i) ASSERT_TRUE(index->Append(kBase + 10 * i, 100 * i).ok());
  EXPECT_TRUE(index->full());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 16u);
  EXPECT_TRUE(index->full());
  EXPECT_EQ(index->Lookup(kBase + 165), (OffsetPosition{kBase + 160, 1600}));
}

TEST_F(OffsetIndexTest, ReopenGrowsShortenedFileBackToMaxBytes) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index.reset();
  ASSERT_EQ(truncate(path_.c_str(), kHeader + 3 * 8), 0);
  index = MustOpen();
  EXPECT_EQ(index->entries(), 3u);
  EXPECT_EQ(FileSize(), kMaxBytes);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 30, 300}));
  ASSERT_TRUE(index->Append(kBase + 40, 400).ok());
}

TEST_F(OffsetIndexTest, ReopenWithLargerMaxBytesAddsCapacity) {
  auto index = MustCreate();
  AppendTens(*index, 16);
  index.reset();
  index = MustOpen(kBase, kHeader + 20 * 8);
  EXPECT_FALSE(index->full());
  EXPECT_EQ(FileSize(), kHeader + 20 * 8);
  for (int i = 17; i <= 20; ++i) ASSERT_TRUE(index->Append(kBase + 10 * i, 100 * i).ok());
  EXPECT_TRUE(index->full());
}

TEST_F(OffsetIndexTest, ReopenWithSmallerMaxBytesKeepsEveryEntry) {
  auto index = MustCreate();
  AppendTens(*index, 10);
  index.reset();
  index = MustOpen(kBase, kHeader + 4 * 8);
  EXPECT_EQ(index->entries(), 10u);
  EXPECT_TRUE(index->full());
  EXPECT_EQ(index->Lookup(kBase + 100), (OffsetPosition{kBase + 100, 1000}));
}

TEST_F(OffsetIndexTest, OpenUnsealedRejectsMaxBytesWithoutRoomForAnEntry) {
  MustCreate().reset();
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OffsetIndexTest, ReopenStopsAtOutOfOrderEntryAndDiscardsTheRest) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  // Slot 3 goes backwards (a torn write, say); slot 4 would be a fine successor of slot 2.
  Put32(b, kHeader + 3 * 8, 5);
  Put32(b, kHeader + 3 * 8 + 4, 50);
  Put32(b, kHeader + 4 * 8, 40);
  Put32(b, kHeader + 4 * 8 + 4, 400);
  WriteFile(b);
  index = MustOpen();
  EXPECT_EQ(index->entries(), 3u);
  // The stale slot 4 was zeroed, so appending one entry and reopening cannot resurrect it.
  ASSERT_TRUE(index->Append(kBase + 35, 350).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 4u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 35, 350}));
}

// Pages of the file in the page cache (what a shared mapping of it faults in).
size_t CachedPages(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return SIZE_MAX;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t size = std::filesystem::file_size(path);
  size_t pages = (size + page - 1) / page;
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return SIZE_MAX;
  std::vector<unsigned char> in_core(pages);
  size_t n = 0;
  if (mincore(p, size, in_core.data()) == 0) {
    for (unsigned char c : in_core) n += c & 1;
  } else {
    n = SIZE_MAX;
  }
  munmap(p, size);
  return n;
}

// A start opens the active index of every log; a 10 MiB preallocated index must cost the
// pages its entries use, not 10 MiB (once every page of its tail was read to check it held
// zeros: thousands of logs needed tens of GiB, and a full tmpfs killed the broker with SIGBUS).
TEST_F(OffsetIndexTest, ReopenTouchesOnlyThePagesOfItsEntries) {
  constexpr uint32_t kTenMiB = 10u << 20;
  auto index = MustCreate(kBase, kTenMiB);
  AppendTens(*index, 3);
  index.reset();
  // Evict the file's pages so that only what Open faults in is counted.
  {
    int fd = open(path_.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(fdatasync(fd), 0);
    ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
  }
  size_t before = CachedPages(path_);
  index = MustOpen(kBase, kTenMiB);
  EXPECT_EQ(index->entries(), 3u);
  EXPECT_EQ(FileSize(), kTenMiB);
  size_t after = CachedPages(path_);
  ASSERT_NE(after, SIZE_MAX);
  EXPECT_LE(after, before + 4) << "of " << kTenMiB / 4096 << " pages";
  // The tail still reads as zeros and takes appends.
  ASSERT_TRUE(index->Append(kBase + 40, 400).ok());
  index.reset();
  index = MustOpen(kBase, kTenMiB);
  EXPECT_EQ(index->entries(), 4u);
}

TEST_F(OffsetIndexTest, TruncateToRemovesEntriesAtOrAboveOffset) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index->TruncateTo(kBase + 31);
  EXPECT_EQ(index->entries(), 3u);
  index->TruncateTo(kBase + 30);
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 20, 200}));
  EXPECT_EQ(index->Lookup(kBase + 40), (OffsetPosition{kBase + 20, 200}));
  index->TruncateTo(kBase + 1000);  // beyond the last entry: nothing to do
  EXPECT_EQ(index->entries(), 2u);
  index->TruncateTo(kBase);
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_FALSE(index->last().has_value());
}

TEST_F(OffsetIndexTest, TruncateToPositionRemovesEntriesAtOrAbovePosition) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index->TruncateToPosition(301);
  EXPECT_EQ(index->entries(), 3u);
  index->TruncateToPosition(300);
  EXPECT_EQ(index->entries(), 2u);
  index->TruncateToPosition(0);
  EXPECT_EQ(index->entries(), 0u);
}

TEST_F(OffsetIndexTest, TruncationThenReopenSeesOnlyRemainingEntries) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  index->TruncateTo(kBase + 30);
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 20, 200}));
  // Re-append with smaller values than the truncated ones, then reopen.
  ASSERT_TRUE(index->Append(kBase + 21, 201).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 3u);
  EXPECT_EQ(*index->last(), (OffsetPosition{kBase + 21, 201}));
}

TEST_F(OffsetIndexTest, TruncationToEmptyThenReopenIsEmpty) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Append(kBase, 0).ok());
  ASSERT_TRUE(index->Append(kBase + 10, 100).ok());
  index->TruncateTo(kBase);
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_TRUE(index->Append(kBase, 0).ok());
}

TEST_F(OffsetIndexTest, SyncSucceeds) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  EXPECT_TRUE(index->Sync().ok());
}

TEST_F(OffsetIndexTest, SealTrimsFileAndKeepsLookupsWorking) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  ASSERT_TRUE(index->Seal().ok());
  EXPECT_TRUE(index->sealed());
  EXPECT_TRUE(index->full());
  EXPECT_EQ(FileSize(), kHeader + 5 * 8);
  EXPECT_EQ(index->entries(), 5u);
  EXPECT_EQ(index->Lookup(kBase + 25), (OffsetPosition{kBase + 20, 200}));
  EXPECT_EQ(*index->LookupByPosition(250), (OffsetPosition{kBase + 30, 300}));
  EXPECT_TRUE(index->Sync().ok());
  EXPECT_TRUE(index->Seal().ok());  // idempotent
}

TEST_F(OffsetIndexTest, AppendAfterSealIsFailedPrecondition) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  ASSERT_TRUE(index->Seal().ok());
  EXPECT_EQ(index->Append(kBase + 100, 1000).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(OffsetIndexTest, SealThenReopenReturnsSameEntries) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  index = MustOpen();
  EXPECT_TRUE(index->sealed());
  EXPECT_TRUE(index->full());
  EXPECT_EQ(index->entries(), 5u);
  EXPECT_EQ(FileSize(), kHeader + 5 * 8);  // reopening a sealed file does not regrow it
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(index->entry(i - 1), (OffsetPosition{kBase + 10 * i, 100u * i}));
  }
  EXPECT_EQ(index->Lookup(kBase + 45), (OffsetPosition{kBase + 40, 400}));
  EXPECT_EQ(index->Append(kBase + 100, 1000).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(OffsetIndexTest, SealedEmptyIndexReopensEmpty) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Seal().ok());
  EXPECT_EQ(FileSize(), kHeader);
  EXPECT_EQ(index->Lookup(kBase + 5), (OffsetPosition{kBase, 0}));
  index.reset();
  index = MustOpen();
  EXPECT_TRUE(index->sealed());
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_EQ(index->Lookup(kBase + 5), (OffsetPosition{kBase, 0}));
}

TEST_F(OffsetIndexTest, TruncatingSealedIndexRewritesItAsSmallerSealedIndex) {
  auto index = MustCreate();
  AppendTens(*index, 5);
  ASSERT_TRUE(index->Seal().ok());
  index->TruncateTo(kBase + 30);
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(index->Lookup(kBase + 45), (OffsetPosition{kBase + 20, 200}));
  index.reset();
  EXPECT_EQ(FileSize(), kHeader + 2 * 8);
  index = MustOpen();
  EXPECT_TRUE(index->sealed());
  EXPECT_EQ(index->entries(), 2u);
  index->TruncateToPosition(0);
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 0u);
}

TEST_F(OffsetIndexTest, SealedIndexWithFlippedBitIsDataLoss) {
  auto index = MustCreate();
  AppendTens(*index, 4);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  const std::vector<uint8_t> good = ReadFile();
  ASSERT_EQ(good.size(), kHeader + 4 * 8);
  for (size_t at = 0; at < good.size(); ++at) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> bad = good;
      bad[at] ^= mask;
      WriteFile(bad);
      auto opened = OffsetIndex::Open(path_, kBase, kMaxBytes);
      ASSERT_EQ(opened.status().code(), absl::StatusCode::kDataLoss)
          << "byte " << at << " mask " << int{mask};
      EXPECT_THAT(opened.status().message(), HasSubstr(path_));
    }
  }
  WriteFile(good);
  EXPECT_TRUE(OffsetIndex::Open(path_, kBase, kMaxBytes).ok());
}

TEST_F(OffsetIndexTest, SealedIndexWithFlippedEntryByteNamesEntriesChecksum) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  b[kHeader + 3] ^= 1;
  WriteFile(b);
  EXPECT_THAT(OffsetIndex::Open(path_, kBase, kMaxBytes).status().message(),
              HasSubstr("entries checksum"));
  b[kHeader + 3] ^= 1;
  b[20] ^= 1;
  WriteFile(b);
  EXPECT_THAT(OffsetIndex::Open(path_, kBase, kMaxBytes).status().message(),
              HasSubstr("header checksum"));
}

TEST_F(OffsetIndexTest, SealedIndexWithWrongLengthIsDataLoss) {
  auto index = MustCreate();
  AppendTens(*index, 4);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> good = ReadFile();
  std::vector<uint8_t> shorter(good.begin(), good.end() - 1);
  WriteFile(shorter);
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
  std::vector<uint8_t> longer = good;
  longer.resize(good.size() + 8);
  WriteFile(longer);
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, SealedIndexWithOutOfOrderEntriesIsDataLoss) {
  auto index = MustCreate();
  AppendTens(*index, 3);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  Put32(b, kHeader + 2 * 8, 15);  // offset 30 -> 15, below entry 1
  FixChecksums(b);
  WriteFile(b);
  auto opened = OffsetIndex::Open(path_, kBase, kMaxBytes);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("entry 2"));
  Put32(b, kHeader + 2 * 8, 30);
  Put32(b, kHeader + 2 * 8 + 4, 150);  // position goes backwards
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, WrongBaseOffsetIsDataLoss) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  index.reset();
  auto opened = OffsetIndex::Open(path_, kBase + 1, kMaxBytes);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("base offset"));
  ASSERT_TRUE(MustOpen()->Seal().ok());
  EXPECT_EQ(OffsetIndex::Open(path_, 0, kMaxBytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, UnsealedHeaderWithFlippedBitIsDataLoss) {
  auto index = MustCreate();
  AppendTens(*index, 2);
  index.reset();
  const std::vector<uint8_t> good = ReadFile();
  for (size_t at = 0; at < kHeader; ++at) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x10;
    WriteFile(bad);
    ASSERT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
              absl::StatusCode::kDataLoss)
        << "byte " << at;
  }
}

TEST_F(OffsetIndexTest, UnknownFormatVersionIsDataLoss) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  b[4] = 2;
  FixChecksums(b);  // a well-formed file of a future version
  WriteFile(b);
  auto opened = OffsetIndex::Open(path_, kBase, kMaxBytes);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("version 2"));
}

TEST_F(OffsetIndexTest, UnknownFlagIsDataLoss) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  b[16] |= 0x04;
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, NonZeroReservedByteIsDataLoss) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  b[40] = 1;
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, FileShorterThanHeaderIsDataLoss) {
  WriteFile({});
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
  WriteFile(std::vector<uint8_t>(63, 0));
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, AllZeroFileIsDataLoss) {
  WriteFile(std::vector<uint8_t>(kMaxBytes, 0));  // e.g. preallocated but never written
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(OffsetIndexTest, MissingFileIsNotFound) {
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice::storage
