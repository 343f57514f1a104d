// The head of an HTTP/1.x request (request line + headers), parsed from bytes with hard
// limits, for the broker's small admin listener (src/http_admin.h). Bodies are not supported:
// the admin endpoints are GETs. Grammar and limits: net/http/PROTOCOL.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

// Longest request head accepted (request line + headers + blank line).
inline constexpr size_t kMaxRequestHeadBytes = 8192;

struct RequestHead {
  std::string method;                                        // e.g. "GET"
  std::string target;                                        // origin-form, e.g. "/metrics?x=1"
  int minor_version = 1;                                     // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  size_t head_bytes = 0;  // bytes the head took, blank line included

  // The path of the target (without the query).
  std::string_view path() const;
  // The first header of that (lower-case) name, or nullptr.
  const std::string* Find(std::string_view name) const;
};

enum class ParseResult {
  kIncomplete,  // no blank line yet, and still under the limit: read more
  kOk,
  kBad,       // malformed: answer 400 and close
  kTooLarge,  // head above kMaxRequestHeadBytes: answer 431 and close
};

// Parses the request head at the start of `input`. On kBad, `*error` says why.
ParseResult ParseRequestHead(std::string_view input, RequestHead* out, std::string* error);

}  // namespace sluice::http
