#include "index/time_index.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "index/offset_index.h"

#define XXH_INLINE_ALL  // tests link only sluice_index; use xxHash header-only
#include <xxhash.h>

namespace sluice::storage {

// Found by ADL, so outside the anonymous namespace.
bool operator==(const TimestampOffset& a, const TimestampOffset& b) {
  return a.timestamp == b.timestamp && a.offset == b.offset;
}
void PrintTo(const TimestampOffset& t, std::ostream* os) {
  *os << "{" << t.timestamp << ", " << t.offset << "}";
}

namespace {

using ::testing::HasSubstr;

constexpr size_t kHeader = 64;
constexpr int64_t kBase = 5000;
constexpr uint32_t kMaxBytes = kHeader + 16 * TimeIndex::kEntrySize;  // 16 entries
constexpr int64_t kT0 = 1'700'000'000'000;                            // a plausible ms timestamp

class TimeIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice_time_index_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/00000000000000005000.timeindex";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<TimeIndex> MustCreate(uint32_t max_bytes = kMaxBytes) {
    auto index = TimeIndex::Create(path_, kBase, max_bytes);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
  std::unique_ptr<TimeIndex> MustOpen(uint32_t max_bytes = kMaxBytes) {
    auto index = TimeIndex::Open(path_, kBase, max_bytes);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? *std::move(index) : nullptr;
  }
  // Entries (kT0 + 100*i, kBase + 10*i) for i in 1..n.
  void AppendHundreds(TimeIndex& index, int n) {
    for (int i = 1; i <= n; ++i) ASSERT_TRUE(index.MaybeAppend(kT0 + 100 * i, kBase + 10 * i).ok());
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

void Put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const std::vector<uint8_t>& b, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[at + i]) << (8 * i);
  return v;
}
void FixChecksums(std::vector<uint8_t>& b) {
  Put64(b, 24, XXH3_64bits(b.data() + kHeader, b.size() - kHeader));
  Put64(b, 56, XXH3_64bits(b.data(), 56));
}

const TimestampOffset kNone{-1, kBase};

TEST_F(TimeIndexTest, CreateMakesEmptyPreallocatedIndex) {
  auto index = MustCreate();
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_FALSE(index->full());
  EXPECT_FALSE(index->sealed());
  EXPECT_EQ(index->base_offset(), kBase);
  EXPECT_EQ(index->path(), path_);
  EXPECT_FALSE(index->last().has_value());
  EXPECT_EQ(FileSize(), kMaxBytes);
}

TEST_F(TimeIndexTest, CreateRoundsSizeDownToWholeEntries) {
  auto index = MustCreate(kHeader + 2 * 12 + 11);
  EXPECT_EQ(FileSize(), kHeader + 2 * 12);
  AppendHundreds(*index, 2);
  EXPECT_TRUE(index->full());
}

TEST_F(TimeIndexTest, HeaderMatchesDocumentedLayout) {
  auto index = MustCreate();
  ASSERT_TRUE(index->MaybeAppend(0x0102030405, kBase + 7).ok());
  ASSERT_TRUE(index->Seal().ok());
  std::vector<uint8_t> b = ReadFile();
  ASSERT_EQ(b.size(), kHeader + 12);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "SLTI");
  EXPECT_EQ(b[4], 1);
  EXPECT_EQ(b[6], 12);
  EXPECT_EQ(Get64(b, 8), static_cast<uint64_t>(kBase));
  EXPECT_EQ(b[16], 0x03);
  EXPECT_EQ(b[20], 1);
  EXPECT_EQ(Get64(b, 24), XXH3_64bits(b.data() + kHeader, 12));
  EXPECT_EQ(Get64(b, 56), XXH3_64bits(b.data(), 56));
  const std::vector<uint8_t> entry = {5, 4, 3, 2, 1, 0, 0, 0, 7, 0, 0, 0};
  EXPECT_EQ(std::vector<uint8_t>(b.begin() + kHeader, b.end()), entry);
}

TEST_F(TimeIndexTest, LookupOnEmptyIndexReturnsMinusOneAndBase) {
  auto index = MustCreate();
  EXPECT_EQ(index->Lookup(kT0), kNone);
  EXPECT_EQ(index->Lookup(-1), kNone);
  EXPECT_EQ(index->Lookup(INT64_MAX), kNone);
}

TEST_F(TimeIndexTest, LookupBeforeFirstTimestampReturnsMinusOneAndBase) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  EXPECT_EQ(index->Lookup(kT0 + 99), kNone);
  EXPECT_EQ(index->Lookup(0), kNone);
  EXPECT_EQ(index->Lookup(INT64_MIN), kNone);
}

TEST_F(TimeIndexTest, LookupExactlyOnTimestampReturnsThatEntry) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  EXPECT_EQ(index->Lookup(kT0 + 100), (TimestampOffset{kT0 + 100, kBase + 10}));
  EXPECT_EQ(index->Lookup(kT0 + 200), (TimestampOffset{kT0 + 200, kBase + 20}));
  EXPECT_EQ(index->Lookup(kT0 + 300), (TimestampOffset{kT0 + 300, kBase + 30}));
}

TEST_F(TimeIndexTest, LookupBetweenTimestampsReturnsLowerEntry) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  EXPECT_EQ(index->Lookup(kT0 + 101), (TimestampOffset{kT0 + 100, kBase + 10}));
  EXPECT_EQ(index->Lookup(kT0 + 299), (TimestampOffset{kT0 + 200, kBase + 20}));
}

TEST_F(TimeIndexTest, LookupBeyondLastTimestampReturnsLastEntry) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  EXPECT_EQ(index->Lookup(kT0 + 301), (TimestampOffset{kT0 + 300, kBase + 30}));
  EXPECT_EQ(index->Lookup(INT64_MAX), (TimestampOffset{kT0 + 300, kBase + 30}));
}

TEST_F(TimeIndexTest, LookupAgreesWithLinearScanOnEveryTarget) {
  auto index = MustCreate(kHeader + 100 * 12);
  std::vector<TimestampOffset> added;
  int64_t ts = kT0, offset = kBase;
  for (int i = 0; i < 100; ++i) {
    ts += 1 + (i * 13) % 4;
    offset += (i % 3);  // equal offsets are allowed
    ASSERT_TRUE(index->MaybeAppend(ts, offset).ok());
    added.push_back({ts, offset});
  }
  EXPECT_TRUE(index->full());
  for (int64_t target = kT0 - 2; target <= ts + 2; ++target) {
    TimestampOffset want = kNone;
    for (const auto& e : added) {
      if (e.timestamp <= target) want = e;
    }
    ASSERT_EQ(index->Lookup(target), want) << target;
  }
}

TEST_F(TimeIndexTest, MaybeAppendIgnoresEqualOrSmallerTimestamp) {
  auto index = MustCreate();
  AppendHundreds(*index, 2);
  EXPECT_TRUE(index->MaybeAppend(kT0 + 200, kBase + 30).ok());
  EXPECT_TRUE(index->MaybeAppend(kT0 + 150, kBase + 40).ok());
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(*index->last(), (TimestampOffset{kT0 + 200, kBase + 20}));
  EXPECT_EQ(index->Lookup(kT0 + 250), (TimestampOffset{kT0 + 200, kBase + 20}));
}

TEST_F(TimeIndexTest, MaybeAppendAcceptsIncreasingTimestampAtSameOffset) {
  auto index = MustCreate();
  ASSERT_TRUE(index->MaybeAppend(kT0, kBase + 3).ok());
  ASSERT_TRUE(index->MaybeAppend(kT0 + 1, kBase + 3).ok());
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(index->Lookup(kT0), (TimestampOffset{kT0, kBase + 3}));
  EXPECT_EQ(index->Lookup(kT0 + 5), (TimestampOffset{kT0 + 1, kBase + 3}));
  index.reset();
  EXPECT_EQ(MustOpen()->entries(), 2u);
}

TEST_F(TimeIndexTest, MaybeAppendRejectsDecreasingOffset) {
  auto index = MustCreate();
  AppendHundreds(*index, 2);
  EXPECT_EQ(index->MaybeAppend(kT0 + 1000, kBase + 19).code(), absl::StatusCode::kInvalidArgument);
  // The offset is checked even when the timestamp would make the call a no-op.
  EXPECT_EQ(index->MaybeAppend(kT0, kBase + 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->entries(), 2u);
}

TEST_F(TimeIndexTest, MaybeAppendRejectsOffsetOutsideRelativeRange) {
  auto index = MustCreate();
  EXPECT_EQ(index->MaybeAppend(kT0, kBase - 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->MaybeAppend(kT0, kBase + (int64_t{1} << 32)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(index->entries(), 0u);
}

TEST_F(TimeIndexTest, MaybeAppendIgnoresNegativeTimestampsOnEmptyIndex) {
  auto index = MustCreate();
  EXPECT_TRUE(index->MaybeAppend(-1, kBase).ok());
  EXPECT_TRUE(index->MaybeAppend(-50, kBase).ok());
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_TRUE(index->MaybeAppend(0, kBase).ok());
  EXPECT_EQ(index->entries(), 1u);
}

TEST_F(TimeIndexTest, TimestampZeroAtBaseOffsetSurvivesReopen) {
  auto index = MustCreate();
  ASSERT_TRUE(index->MaybeAppend(0, kBase).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 1u);
  EXPECT_EQ(index->Lookup(0), (TimestampOffset{0, kBase}));
  EXPECT_EQ(index->Lookup(-1), kNone);
}

TEST_F(TimeIndexTest, FullIndexReturnsResourceExhausted) {
  auto index = MustCreate();
  AppendHundreds(*index, 16);
  EXPECT_TRUE(index->full());
  EXPECT_EQ(index->MaybeAppend(kT0 + 100'000, kBase + 1000).code(),
            absl::StatusCode::kResourceExhausted);
  // A no-op append on a full index is still fine.
  EXPECT_TRUE(index->MaybeAppend(kT0, kBase + 1000).ok());
}

TEST_F(TimeIndexTest, EmptyIndexReopensEmpty) {
  MustCreate().reset();
  EXPECT_EQ(MustOpen()->entries(), 0u);
}

TEST_F(TimeIndexTest, ReopenUnsealedKeepsEntriesAndContinuesAppending) {
  auto index = MustCreate();
  AppendHundreds(*index, 4);
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 4u);
  EXPECT_EQ(*index->last(), (TimestampOffset{kT0 + 400, kBase + 40}));
  ASSERT_TRUE(index->MaybeAppend(kT0 + 500, kBase + 50).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 5u);
  EXPECT_EQ(index->Lookup(kT0 + 999), (TimestampOffset{kT0 + 500, kBase + 50}));
}

TEST_F(TimeIndexTest, ReopenGrowsShortenedFileBackToMaxBytes) {
  auto index = MustCreate();
  AppendHundreds(*index, 4);
  index.reset();
  ASSERT_EQ(truncate(path_.c_str(), kHeader + 2 * 12 + 5), 0);  // a torn third entry
  index = MustOpen();
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(FileSize(), kMaxBytes);
  ASSERT_TRUE(index->MaybeAppend(kT0 + 300, kBase + 30).ok());
}

TEST_F(TimeIndexTest, TruncateToRemovesEntriesAtOrAboveOffset) {
  auto index = MustCreate();
  AppendHundreds(*index, 4);
  index->TruncateTo(kBase + 31);
  EXPECT_EQ(index->entries(), 3u);
  index->TruncateTo(kBase + 30);
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(index->Lookup(INT64_MAX), (TimestampOffset{kT0 + 200, kBase + 20}));
  index->TruncateTo(kBase);
  EXPECT_EQ(index->entries(), 0u);
  EXPECT_EQ(index->Lookup(INT64_MAX), kNone);
}

TEST_F(TimeIndexTest, TruncateToRemovesEveryEntrySharingTheOffset) {
  auto index = MustCreate();
  ASSERT_TRUE(index->MaybeAppend(kT0, kBase + 1).ok());
  ASSERT_TRUE(index->MaybeAppend(kT0 + 1, kBase + 5).ok());
  ASSERT_TRUE(index->MaybeAppend(kT0 + 2, kBase + 5).ok());
  index->TruncateTo(kBase + 5);
  EXPECT_EQ(index->entries(), 1u);
}

TEST_F(TimeIndexTest, TruncationThenReopenSeesOnlyRemainingEntries) {
  auto index = MustCreate();
  AppendHundreds(*index, 4);
  index->TruncateTo(kBase + 20);
  // Smaller timestamps than the removed ones are accepted again.
  ASSERT_TRUE(index->MaybeAppend(kT0 + 150, kBase + 15).ok());
  index.reset();
  index = MustOpen();
  EXPECT_EQ(index->entries(), 2u);
  EXPECT_EQ(*index->last(), (TimestampOffset{kT0 + 150, kBase + 15}));
  index->TruncateTo(0);
  index.reset();
  EXPECT_EQ(MustOpen()->entries(), 0u);
}

TEST_F(TimeIndexTest, SealThenReopenReturnsSameEntries) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  ASSERT_TRUE(index->Seal().ok());
  EXPECT_TRUE(index->sealed());
  EXPECT_TRUE(index->full());
  EXPECT_EQ(FileSize(), kHeader + 3 * 12);
  EXPECT_EQ(index->Lookup(kT0 + 250), (TimestampOffset{kT0 + 200, kBase + 20}));
  EXPECT_EQ(index->MaybeAppend(kT0 + 1000, kBase + 100).code(),
            absl::StatusCode::kFailedPrecondition);
  index.reset();
  index = MustOpen();
  EXPECT_TRUE(index->sealed());
  EXPECT_EQ(index->entries(), 3u);
  EXPECT_EQ(index->entry(0), (TimestampOffset{kT0 + 100, kBase + 10}));
  EXPECT_EQ(index->Lookup(kT0 + 250), (TimestampOffset{kT0 + 200, kBase + 20}));
}

TEST_F(TimeIndexTest, TruncatingSealedIndexRewritesItAsSmallerSealedIndex) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  ASSERT_TRUE(index->Seal().ok());
  index->TruncateTo(kBase + 20);
  index.reset();
  EXPECT_EQ(FileSize(), kHeader + 12);
  index = MustOpen();
  EXPECT_EQ(index->entries(), 1u);
}

TEST_F(TimeIndexTest, SealedIndexWithFlippedBitIsDataLoss) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  const std::vector<uint8_t> good = ReadFile();
  for (size_t at = 0; at < good.size(); ++at) {
    for (uint8_t mask : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> bad = good;
      bad[at] ^= mask;
      WriteFile(bad);
      auto opened = TimeIndex::Open(path_, kBase, kMaxBytes);
      ASSERT_EQ(opened.status().code(), absl::StatusCode::kDataLoss)
          << "byte " << at << " mask " << int{mask};
      EXPECT_THAT(opened.status().message(), HasSubstr(path_));
    }
  }
}

TEST_F(TimeIndexTest, SealedIndexWithOutOfOrderEntriesIsDataLoss) {
  auto index = MustCreate();
  AppendHundreds(*index, 3);
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> good = ReadFile();
  std::vector<uint8_t> b = good;
  Put64(b, kHeader + 2 * 12, kT0 + 200);  // equal timestamp
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(TimeIndex::Open(path_, kBase, kMaxBytes).status().code(), absl::StatusCode::kDataLoss);
  b = good;
  b[kHeader + 2 * 12 + 8] = 15;  // offset 30 -> 15
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(TimeIndex::Open(path_, kBase, kMaxBytes).status().code(), absl::StatusCode::kDataLoss);
  b = good;
  Put64(b, kHeader, static_cast<uint64_t>(int64_t{-5}));  // negative first timestamp
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(TimeIndex::Open(path_, kBase, kMaxBytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TimeIndexTest, WrongBaseOffsetIsDataLoss) {
  auto index = MustCreate();
  AppendHundreds(*index, 2);
  index.reset();
  auto opened = TimeIndex::Open(path_, kBase - 1, kMaxBytes);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("base offset"));
}

TEST_F(TimeIndexTest, OffsetIndexFileIsNotATimeIndex) {
  ASSERT_TRUE(OffsetIndex::Create(path_, kBase, kMaxBytes).ok());
  auto opened = TimeIndex::Open(path_, kBase, kMaxBytes);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("magic"));
  ASSERT_TRUE(TimeIndex::Create(path_, kBase, kMaxBytes).ok());
  EXPECT_EQ(OffsetIndex::Open(path_, kBase, kMaxBytes).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(TimeIndexTest, UnknownFormatVersionIsDataLoss) {
  auto index = MustCreate();
  ASSERT_TRUE(index->Seal().ok());
  index.reset();
  std::vector<uint8_t> b = ReadFile();
  b[4] = 0;
  b[5] = 1;  // version 256
  FixChecksums(b);
  WriteFile(b);
  EXPECT_EQ(TimeIndex::Open(path_, kBase, kMaxBytes).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TimeIndexTest, MissingFileIsNotFound) {
  EXPECT_EQ(TimeIndex::Open(path_, kBase, kMaxBytes).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice::storage
