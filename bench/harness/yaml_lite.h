// A parser for the small subset of YAML that workload and driver files use (OpenMessaging
// Benchmark's files are YAML; we need no library for them):
//
//   # comment                       whole-line and trailing comments
//   key: value                      scalars, optionally 'single' or "double" quoted
//   key: [a, b, c]                  inline list of scalars
//   key:                            block list of scalars
//     - a
//     - b
//   key: |                          literal block scalar (newlines kept, indentation removed)
//     line one
//     line two
//   parent:                         nested maps, flattened to dotted keys: parent.child
//     child: value
//
// Not supported (reported as errors, with the line number): anchors, flow maps, lists of
// maps, multi-document streams, tabs used for indentation, duplicate keys.
#ifndef SLUICE_BENCH_HARNESS_YAML_LITE_H_
#define SLUICE_BENCH_HARNESS_YAML_LITE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::bench {

struct YamlEntry {
  std::string key;  // Dotted path for nested maps.
  bool is_list = false;
  std::string scalar;             // When !is_list.
  std::vector<std::string> list;  // When is_list.
  int line = 0;                   // 1-based line of the key, for error messages.
};

// Entries in file order. Parent keys of nested maps do not appear themselves.
class YamlDoc {
 public:
  const std::vector<YamlEntry>& entries() const { return entries_; }
  const YamlEntry* Find(absl::string_view key) const;

 private:
  friend absl::StatusOr<YamlDoc> ParseYamlLite(absl::string_view text);
  std::vector<YamlEntry> entries_;
};

absl::StatusOr<YamlDoc> ParseYamlLite(absl::string_view text);

// Reads a whole file into a string.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_HARNESS_YAML_LITE_H_
