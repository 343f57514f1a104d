#include "log/crc32c.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdio>
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

// Slow bitwise references, independent of the implementation's bit order tricks: polynomials
// over GF(2) in natural order (bit i = coefficient of x^i), Castagnoli P = x^32 + 0x1EDC6F41.
constexpr uint64_t kP = (uint64_t{1} << 32) | 0x1EDC6F41;

// x^n mod P by repeated multiplication by x with reduction, in natural bit order.
uint32_t NaturalXPowModP(uint64_t n) {
  uint64_t v = 1;
  for (uint64_t i = 0; i < n; ++i) {
    v <<= 1;
    if (v & (uint64_t{1} << 32)) v ^= kP;
  }
  return static_cast<uint32_t>(v);
}

uint32_t Reflect32(uint32_t v) {
  uint32_t r = 0;
  for (int i = 0; i < 32; ++i) r |= ((v >> i) & 1) << (31 - i);
  return r;
}

// CRC32C one bit at a time: the message (bits LSB first within each byte) times x^32 mod P,
// the register preset to and finally XORed with all ones, all in natural order.
uint32_t BitwiseCrc32c(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t reg = Reflect32(~crc);  // natural order: bit 31 = coefficient of x^31
  for (size_t i = 0; i < n; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      const uint32_t in = (p[i] >> bit) & 1;
      const bool top = ((reg >> 31) ^ in) & 1;
      reg <<= 1;
      if (top) reg ^= static_cast<uint32_t>(kP);
    }
  }
  return ~Reflect32(reg);
}

TEST(Crc32cTest, BitwiseReferenceCheckValue) {
  EXPECT_EQ(BitwiseCrc32c(0, reinterpret_cast<const uint8_t*>("123456789"), 9), 0xE3069283u);
}

TEST(Crc32cTest, FoldingConstantsMatchBitwiseReference) {
  for (uint64_t n = 0; n < 3000; ++n) {
    ASSERT_EQ(internal::XPowModP(n), Reflect32(NaturalXPowModP(n))) << n;
  }
  for (uint64_t bits : internal::kFoldDistances) {
    const internal::FoldConstants k = internal::FoldBy(bits);
    EXPECT_EQ(k.low_half, Reflect32(NaturalXPowModP(bits + 31))) << bits;
    EXPECT_EQ(k.high_half, Reflect32(NaturalXPowModP(bits - 33))) << bits;
    EXPECT_LT(k.low_half, uint64_t{1} << 32);
    EXPECT_LT(k.high_half, uint64_t{1} << 32);
  }
}

std::vector<internal::Crc32cImpl> SupportedImpls() {
  std::vector<internal::Crc32cImpl> impls;
  for (auto impl : internal::kAllCrc32cImpls) {
    if (internal::Crc32cImplSupported(impl)) impls.push_back(impl);
  }
  return impls;
}

// Forces each supported implementation in turn through the public entry points.
class Crc32cImplTest : public testing::TestWithParam<internal::Crc32cImpl> {
 protected:
  void SetUp() override {
    if (!internal::Crc32cImplSupported(GetParam())) GTEST_SKIP() << "not on this CPU";
    internal::ForceCrc32cImplForTesting(GetParam());
    ASSERT_EQ(internal::ActiveCrc32cImpl(), GetParam());
  }
  void TearDown() override { internal::ForceCrc32cImplForTesting(internal::Crc32cBestImpl()); }
};

TEST_P(Crc32cImplTest, CheckValue) {
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(internal::Crc32cWith(GetParam(), 0, "123456789", 9), 0xE3069283u);
  char dst[9];
  EXPECT_EQ(Crc32cCopy(0, dst, "123456789", 9), 0xE3069283u);
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Random lengths 0..100k at every offset 0..63, random seeds, against the bitwise reference;
// plus the lengths around every path boundary (fold set-up, step, 16/32-byte tails).
TEST_P(Crc32cImplTest, MatchesBitwiseReference) {
  const std::vector<uint8_t> buf = RandomBytes(100'000 + 64, 1);
  std::mt19937 rng(2);
  std::vector<size_t> lengths;
  for (size_t len = 0; len <= 2200; ++len) lengths.push_back(len);
  for (size_t base : {size_t{4096}, size_t{8192}, size_t{3 * 4096}, internal::kHybridBlock,
                      2 * internal::kHybridBlock, size_t{65536}}) {
    for (size_t d = 0; d < 80; ++d) lengths.push_back(base - 40 + d);
  }
  for (int i = 0; i < 150; ++i) lengths.push_back(rng() % 100'001);
  lengths.push_back(100'000);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const size_t len = lengths[i];
    const size_t offset = len < 2200 ? i % 64 : rng() % 64;
    const uint8_t* p = buf.data() + offset;
    const uint32_t seed = static_cast<uint32_t>(rng());
    const uint32_t want = BitwiseCrc32c(seed, p, len);
    ASSERT_EQ(Crc32c(seed, p, len), want) << "len " << len << " offset " << offset;
  }
  // Every offset for a few long lengths.
  for (size_t len : {size_t{1024}, size_t{4097}, size_t{100'000}}) {
    for (size_t offset = 0; offset < 64; ++offset) {
      const uint8_t* p = buf.data() + offset;
      ASSERT_EQ(Crc32c(0, p, len), internal::Crc32cSoftware(0, p, len))
          << "len " << len << " offset " << offset;
    }
  }
}

TEST_P(Crc32cImplTest, CopyMatchesReferenceAndCopiesExactly) {
  const std::vector<uint8_t> src = RandomBytes(100'000 + 64, 3);
  std::mt19937 rng(4);
  std::vector<size_t> lengths = {0, 1, 15, 16, 17, 511, 512, 513, 1023, 1024, 1025, 1279, 1280};
  for (int i = 0; i < 120; ++i) lengths.push_back(rng() % 100'001);
  for (int i = 0; i < 200; ++i) lengths.push_back(rng() % 3000);
  for (size_t len : lengths) {
    const size_t src_off = rng() % 64, dst_off = rng() % 64;
    std::vector<uint8_t> dst(len + dst_off + 1, 0xAB);
    const uint32_t seed = static_cast<uint32_t>(rng());
    const uint8_t* p = src.data() + src_off;
    ASSERT_EQ(Crc32cCopy(seed, dst.data() + dst_off, p, len),
              internal::Crc32cSoftware(seed, p, len))
        << "len " << len;
    ASSERT_TRUE(std::equal(p, p + len, dst.data() + dst_off)) << "len " << len;
    ASSERT_TRUE(
        std::all_of(dst.begin(), dst.begin() + dst_off, [](uint8_t b) { return b == 0xAB; }));
    ASSERT_EQ(dst.back(), 0xAB);
  }
}

// crc(A || B) == Crc32c(crc(A), B) at random split points, including splits inside the fold.
TEST_P(Crc32cImplTest, IncrementalEqualsOneShot) {
  const std::vector<uint8_t> buf = RandomBytes(100'000, 5);
  std::mt19937 rng(6);
  for (int i = 0; i < 60; ++i) {
    const size_t len = rng() % (buf.size() + 1);
    const size_t split = rng() % (len + 1);
    const uint32_t whole = BitwiseCrc32c(0, buf.data(), len);
    const uint32_t first = Crc32c(0, buf.data(), split);
    ASSERT_EQ(Crc32c(first, buf.data() + split, len - split), whole) << len << " " << split;
    std::vector<uint8_t> dst(len);
    const uint32_t copy_first = Crc32cCopy(0, dst.data(), buf.data(), split);
    ASSERT_EQ(Crc32cCopy(copy_first, dst.data() + split, buf.data() + split, len - split), whole);
  }
}

INSTANTIATE_TEST_SUITE_P(AllImpls, Crc32cImplTest, testing::ValuesIn(internal::kAllCrc32cImpls),
                         [](const testing::TestParamInfo<internal::Crc32cImpl>& info) {
                           std::string name = internal::Crc32cImplName(info.param);
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(Crc32cTest, BestImplIsSupportedAndUsedByDefault) {
  EXPECT_TRUE(internal::Crc32cImplSupported(internal::Crc32cBestImpl()));
  EXPECT_EQ(internal::ActiveCrc32cImpl(), internal::Crc32cBestImpl());
  std::printf("supported:");
  for (auto impl : SupportedImpls()) std::printf(" %s", internal::Crc32cImplName(impl));
  std::printf("; best: %s\n", internal::Crc32cImplName(internal::Crc32cBestImpl()));
}

}  // namespace
}  // namespace sluice::storage
