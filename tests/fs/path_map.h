// Path-keyed containers of the test Envs (MemEnv, FaultEnv), ordered exactly as
// std::less<std::string> orders them, but compared without memcmp.
//
// Why: the storage fuzzers run these Envs, and under libFuzzer every memcmp whose operands
// differ is reported to the fuzzer as a comparison to learn from. The Envs' path lookups
// (long common prefixes, always different) were most of those reports: a sixth of the
// fuzzers' time, and a dictionary of file names instead of record bytes. These headers are
// only instantiated in the Envs' own translation units, which are built without fuzzer
// instrumentation.
#ifndef SLUICE_TESTS_FS_PATH_MAP_H_
#define SLUICE_TESTS_FS_PATH_MAP_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace sluice::storage::testing {

struct PathLess {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {  // memcpy of a constant size is a load, not a call
      uint64_t x, y;
      std::memcpy(&x, a.data() + i, 8);
      std::memcpy(&y, b.data() + i, 8);
      if (x != y) break;
    }
    for (; i < n; ++i) {
      if (a[i] != b[i]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[i]);
    }
    return a.size() < b.size();
  }
};

template <typename V>
using PathMap = std::map<std::string, V, PathLess>;
using PathSet = std::set<std::string, PathLess>;

}  // namespace sluice::storage::testing

#endif  // SLUICE_TESTS_FS_PATH_MAP_H_
