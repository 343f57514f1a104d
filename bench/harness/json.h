// A small JSON writer (pretty-printed, keys in call order) and a strict validator used by the
// tests and by the harness to check what it wrote.
#ifndef SLUICE_BENCH_HARNESS_JSON_H_
#define SLUICE_BENCH_HARNESS_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sluice::bench {

class JsonWriter {
 public:
  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  // Inside an object: the next value's key.
  void Key(absl::string_view key);
  void String(absl::string_view s);
  void Int(int64_t v);
  // Non-finite numbers become null (JSON has no NaN/Infinity).
  void Double(double v);
  void Bool(bool v);
  void Null();

  // Shorthands for "key": value inside an object.
  void Field(absl::string_view key, absl::string_view s) { Key(key), String(s); }
  void Field(absl::string_view key, const char* s) { Key(key), String(s); }
  void Field(absl::string_view key, int64_t v) { Key(key), Int(v); }
  void Field(absl::string_view key, int v) { Key(key), Int(v); }
  void Field(absl::string_view key, uint64_t v) { Key(key), Int(static_cast<int64_t>(v)); }
  void Field(absl::string_view key, double v) { Key(key), Double(v); }
  void Field(absl::string_view key, bool v) { Key(key), Bool(v); }

  const std::string& str() const { return out_; }

 private:
  void BeforeValue();
  void Newline();
  std::string out_;
  // One entry per open container: number of values written so far.
  std::vector<int> counts_;
  bool after_key_ = false;
};

// Appends s to out as a quoted JSON string.
void AppendJsonString(absl::string_view s, std::string* out);

// OK if text is exactly one well-formed JSON value (RFC 8259), surrounded by whitespace.
absl::Status ValidateJson(absl::string_view text);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_JSON_H_
