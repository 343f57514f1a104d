#include "net/http/request.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace sluice::http {

namespace {

// RFC 9110 token characters (methods, header names).
bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Visible ASCII, space and tab (obs-text is refused: the admin endpoints need none).
bool IsFieldValue(absl::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u != '\t' && (u < 0x20 || u > 0x7e)) return false;
  }
  return true;
}

}  // namespace

std::string_view RequestHead::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

const std::string* RequestHead::Find(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return &v;
  }
  return nullptr;
}

ParseResult ParseRequestHead(std::string_view input, RequestHead* out, std::string* error) {
  const size_t end = input.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return input.size() > kMaxRequestHeadBytes ? ParseResult::kTooLarge : ParseResult::kIncomplete;
  }
  if (end + 4 > kMaxRequestHeadBytes) return ParseResult::kTooLarge;
  auto bad = [error](const char* why) {
    *error = why;
    return ParseResult::kBad;
  };
  *out = RequestHead();
  out->head_bytes = end + 4;
  std::vector<absl::string_view> lines =
      absl::StrSplit(absl::string_view(input.data(), end), "\r\n");
  // Request line: method SP request-target SP HTTP-version.
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3) return bad("request line is not 'METHOD TARGET HTTP/1.x'");
  if (!IsToken(parts[0])) return bad("bad method");
  if (parts[1].empty() || parts[1][0] != '/') return bad("target is not origin-form");
  for (char c : parts[1]) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return bad("bad character in target");
  }
  if (parts[2] == "HTTP/1.1") {
    out->minor_version = 1;
  } else if (parts[2] == "HTTP/1.0") {
    out->minor_version = 0;
  } else {
    return bad("unsupported HTTP version");
  }
  out->method = std::string(parts[0]);
  out->target = std::string(parts[1]);
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return bad("header line without ':'");
    absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return bad("bad header name");  // also refuses obs-fold
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!IsFieldValue(value)) return bad("bad character in header value");
    out->headers.emplace_back(absl::AsciiStrToLower(name), std::string(value));
  }
  if (out->minor_version == 1 && out->Find("host") == nullptr) return bad("HTTP/1.1 without Host");
  // No bodies: a request announcing one is refused rather than misread as the next request.
  if (out->Find("transfer-encoding") != nullptr) return bad("request bodies are not supported");
  if (const std::string* cl = out->Find("content-length"); cl != nullptr && *cl != "0") {
    return bad("request bodies are not supported");
  }
  return ParseResult::kOk;
}

}  // namespace sluice::http
