#include "log/crc32c.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "log/crc32c_internal.h"

namespace sluice::storage {
namespace {

TEST(Crc32cTest, CheckValueOf123456789) {
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(internal::Crc32cSoftware(0, "123456789", 9), 0xE3069283u);
}

TEST(Crc32cTest, ThirtyTwoZeroBytes) {
  const std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(Crc32c(0, zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(internal::Crc32cSoftware(0, zeros.data(), zeros.size()), 0x8A9136AAu);
}

// RFC 3720 (iSCSI) B.4 vectors: 32 bytes of 0xFF and an ascending sequence.
TEST(Crc32cTest, Rfc3720Vectors) {
  std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(Crc32c(0, ones.data(), ones.size()), 0x62A8AB43u);
  std::vector<uint8_t> inc(32);
  for (size_t i = 0; i < inc.size(); ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(Crc32c(0, inc.data(), inc.size()), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyInputLeavesCrcUnchanged) {
  EXPECT_EQ(Crc32c(0, nullptr, 0), 0u);
  EXPECT_EQ(Crc32c(0x12345678, "", 0), 0x12345678u);
  EXPECT_EQ(internal::Crc32cSoftware(0x12345678, "", 0), 0x12345678u);
}

TEST(Crc32cTest, IncrementalEqualsOneShot) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(1000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  const uint32_t whole = Crc32c(0, buf.data(), buf.size());
  for (size_t split = 0; split <= buf.size(); split += 37) {
    const uint32_t first = Crc32c(0, buf.data(), split);
    EXPECT_EQ(Crc32c(first, buf.data() + split, buf.size() - split), whole) << split;
    const uint32_t sw_first = internal::Crc32cSoftware(0, buf.data(), split);
    EXPECT_EQ(internal::Crc32cSoftware(sw_first, buf.data() + split, buf.size() - split), whole)
        << split;
  }
  uint32_t bytewise = 0;
  for (uint8_t b : buf) bytewise = Crc32c(bytewise, &b, 1);
  EXPECT_EQ(bytewise, whole);
}

TEST(Crc32cTest, HardwareMatchesSoftwareForEveryLengthAndAlignment) {
  if (!Crc32cIsHardwareAccelerated()) GTEST_SKIP() << "CPU without SSE4.2";
  std::mt19937 rng(42);
  std::vector<uint8_t> buf(300 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len = 0; len <= 300; ++len) {
    for (size_t align = 0; align < 16; ++align) {
      const uint8_t* p = buf.data() + align;
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(internal::Crc32cHardware(seed, p, len), internal::Crc32cSoftware(seed, p, len))
          << "len " << len << " align " << align;
    }
  }
}

// Long inputs take the three-chain path (blocks of 3 x 4096 and 3 x 256 bytes); check every
// way a length can split between the paths and the tail, at every alignment.
TEST(Crc32cTest, HardwareMatchesSoftwareOnLongInputs) {
  if (!Crc32cIsHardwareAccelerated()) GTEST_SKIP() << "CPU without SSE4.2";
  std::mt19937 rng(7);
  std::vector<uint8_t> buf((1 << 16) + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  std::vector<size_t> lengths = {767,          768,         769,   3 * 4096 - 1, 3 * 4096,
                                 3 * 4096 + 1, 12288 + 768, 24576, 24576 + 775,  65536};
  for (int i = 0; i < 200; ++i) lengths.push_back(rng() % (1 << 16));
  for (size_t len : lengths) {
    for (size_t align = 0; align < 8; ++align) {
      const uint8_t* p = buf.data() + align;
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(internal::Crc32cHardware(seed, p, len), internal::Crc32cSoftware(seed, p, len))
          << "len " << len << " align " << align;
    }
  }
}

TEST(Crc32cTest, CopyReturnsTheCrcAndCopiesEveryByte) {
  std::mt19937 rng(11);
  std::vector<uint8_t> src((1 << 15) + 16);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  std::vector<size_t> lengths = {0, 1, 7, 8, 9, 767, 768, 769, 12288, 12288 + 800, 1 << 15};
  for (int i = 0; i < 100; ++i) lengths.push_back(rng() % (1 << 15));
  for (size_t len : lengths) {
    for (size_t align = 0; align < 8; align += 3) {
      std::vector<uint8_t> dst(len + 2, 0xAB);
      const uint32_t seed = static_cast<uint32_t>(rng());
      const uint8_t* p = src.data() + align;
      ASSERT_EQ(Crc32cCopy(seed, dst.data() + 1, p, len), internal::Crc32cSoftware(seed, p, len))
          << "len " << len;
      ASSERT_TRUE(std::equal(p, p + len, dst.data() + 1)) << "len " << len;
      ASSERT_EQ(dst.front(), 0xAB);  // nothing written outside [dst, dst + len)
      ASSERT_EQ(dst.back(), 0xAB);
    }
  }
}

TEST(Crc32cTest, DispatchMatchesSoftware) {
  const std::string s = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(Crc32c(0, s.data(), s.size()), internal::Crc32cSoftware(0, s.data(), s.size()));
  EXPECT_EQ(Crc32c(0, s.data(), s.size()), 0x22620404u);
}

}  // namespace
}  // namespace sluice::storage
