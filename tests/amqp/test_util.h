// Helpers shared by the AMQP codec tests.

#ifndef SLUICE_TESTS_AMQP_TEST_UTIL_H_
#define SLUICE_TESTS_AMQP_TEST_UTIL_H_

#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>

#include "net/amqp/content.h"
#include "net/amqp/field_table.h"
#include "net/amqp/methods.h"

namespace sluice::amqp {

// gtest prints codec values through DebugString().
template <typename M>
requires requires { M::kClassId; }
void PrintTo(const M& m, std::ostream* os) { *os << m.DebugString(); }
inline void PrintTo(const FieldTable& t, std::ostream* os) { *os << t.DebugString(); }
inline void PrintTo(const FieldValue& v, std::ostream* os) { *os << v.DebugString(); }
inline void PrintTo(const Method& m, std::ostream* os) { *os << DebugString(m); }
inline void PrintTo(const ContentHeader& h, std::ostream* os) {
  *os << "ContentHeader{class=" << h.class_id << ", weight=" << h.weight
      << ", body_size=" << h.body_size << ", " << h.properties.DebugString() << "}";
}

namespace testing_util {

// Bytes from integers 0..255: B({0x01, 0x00, 0x00}).
inline std::string B(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

inline std::string Be16(uint16_t v) { return B({v >> 8, v & 0xff}); }
inline std::string Be32(uint32_t v) {
  return B({static_cast<int>(v >> 24), static_cast<int>((v >> 16) & 0xff),
            static_cast<int>((v >> 8) & 0xff), static_cast<int>(v & 0xff)});
}
inline std::string Be64(uint64_t v) {
  return Be32(static_cast<uint32_t>(v >> 32)) + Be32(static_cast<uint32_t>(v));
}

// One raw frame: type, channel, size, payload, frame-end.
inline std::string RawFrame(uint8_t type, uint16_t channel, std::string_view payload,
                            uint8_t frame_end = 0xCE) {
  std::string f = B({type}) + Be16(channel) + Be32(static_cast<uint32_t>(payload.size()));
  f.append(payload);
  f.push_back(static_cast<char>(frame_end));
  return f;
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string Hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

}  // namespace testing_util
}  // namespace sluice::amqp

#endif  // SLUICE_TESTS_AMQP_TEST_UTIL_H_
