// The admin listener's request-head parser (net/http/request.h) on arbitrary bytes: never
// reads past the input, and an accepted head is internally consistent.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/http/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::http;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  RequestHead r;
  std::string error;
  ParseResult res = ParseRequestHead(in, &r, &error);
  if (res == ParseResult::kOk) {
    if (r.head_bytes > size || r.head_bytes > kMaxRequestHeadBytes) __builtin_trap();
    if (r.target.empty() || r.target[0] != '/') __builtin_trap();
    (void)r.path();
  }
  if (res == ParseResult::kBad && error.empty()) __builtin_trap();
  return 0;
}
