#include "bench/harness/yaml_lite.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice::bench {
namespace {

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

// Removes a trailing " # comment" that is not inside quotes.
absl::string_view StripComment(absl::string_view s) {
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
      return s.substr(0, i);
    }
  }
  return s;
}

absl::StatusOr<std::string> Unquote(absl::string_view s, int line) {
  s = absl::StripAsciiWhitespace(s);
  if (s.size() >= 1 && (s.front() == '"' || s.front() == '\'')) {
    if (s.size() < 2 || s.back() != s.front()) return LineError(line, "unterminated quote");
    return std::string(s.substr(1, s.size() - 2));
  }
  return std::string(s);
}

}  // namespace

const YamlEntry* YamlDoc::Find(absl::string_view key) const {
  for (const YamlEntry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

absl::StatusOr<YamlDoc> ParseYamlLite(absl::string_view text) {
  YamlDoc doc;
  // Open parent keys (maps or lists), innermost last, with the indent of their key line.
  struct Parent {
    int indent;
    std::string key;
    bool has_children = false;
    bool is_list = false;
  };
  std::vector<Parent> parents;
  // An active literal block scalar: the entry it fills and the indent of its key.
  int block_entry = -1;
  int block_key_indent = 0;
  int block_indent = -1;

  auto find_entry = [&](const std::string& key) -> YamlEntry* {
    for (YamlEntry& e : doc.entries_) {
      if (e.key == key) return &e;
    }
    return nullptr;
  };
  // A parent key that got no children is an empty scalar.
  auto close_parent = [&](const Parent& p, int line) -> absl::Status {
    if (!p.has_children) {
      if (find_entry(p.key) != nullptr) return LineError(line, "duplicate key " + p.key);
      doc.entries_.push_back(YamlEntry{p.key, false, "", {}, line});
    }
    return absl::OkStatus();
  };

  int line_no = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    size_t indent = 0;
    while (indent < raw.size() && raw[indent] == ' ') ++indent;
    if (indent < raw.size() && raw[indent] == '\t') {
      return LineError(line_no, "tabs are not allowed for indentation");
    }
    const bool blank = absl::StripAsciiWhitespace(raw).empty();

    if (block_entry >= 0) {
      if (blank) {
        doc.entries_[block_entry].scalar += "\n";
        continue;
      }
      if (static_cast<int>(indent) > block_key_indent) {
        if (block_indent < 0) block_indent = static_cast<int>(indent);
        const size_t cut = std::min<size_t>(indent, block_indent);
        doc.entries_[block_entry].scalar += std::string(raw.substr(cut)) + "\n";
        continue;
      }
      // Dedent: the block is over. Trailing blank lines are not part of it.
      std::string& s = doc.entries_[block_entry].scalar;
      while (s.size() >= 2 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '\n') s.pop_back();
      block_entry = -1;
    }

    absl::string_view content = absl::StripAsciiWhitespace(StripComment(raw.substr(indent)));
    if (content.empty()) continue;
    if (content == "---") {
      if (doc.entries_.empty() && parents.empty()) continue;
      return LineError(line_no, "multiple documents are not supported");
    }

    // Close parents at the same or deeper indentation.
    while (!parents.empty() && parents.back().indent >= static_cast<int>(indent)) {
      // A list item may sit at the same indent as its key ("key:\n- a").
      if (absl::StartsWith(content, "- ") || content == "-") {
        if (parents.back().indent == static_cast<int>(indent) &&
            (parents.back().is_list || !parents.back().has_children)) {
          break;
        }
      }
      absl::Status s = close_parent(parents.back(), line_no);
      if (!s.ok()) return s;
      parents.pop_back();
    }

    if (absl::StartsWith(content, "- ") || content == "-") {
      if (parents.empty()) return LineError(line_no, "list item without a key");
      Parent& p = parents.back();
      if (p.has_children && !p.is_list) return LineError(line_no, "list item inside a map");
      absl::string_view item = absl::StripAsciiWhitespace(content.substr(1));
      if (item.find(": ") != absl::string_view::npos || absl::EndsWith(item, ":")) {
        return LineError(line_no, "lists of maps are not supported");
      }
      absl::StatusOr<std::string> value = Unquote(item, line_no);
      if (!value.ok()) return value.status();
      if (!p.has_children) {
        if (find_entry(p.key) != nullptr) return LineError(line_no, "duplicate key " + p.key);
        doc.entries_.push_back(YamlEntry{p.key, true, "", {}, line_no});
        p.has_children = true;
        p.is_list = true;
      }
      find_entry(p.key)->list.push_back(*std::move(value));
      continue;
    }

    const size_t colon = content.find(':');
    if (colon == absl::string_view::npos || colon == 0 ||
        (colon + 1 < content.size() && content[colon + 1] != ' ')) {
      return LineError(line_no, absl::StrCat("expected 'key: value', got '", content, "'"));
    }
    std::string key(absl::StripAsciiWhitespace(content.substr(0, colon)));
    absl::string_view rest = absl::StripAsciiWhitespace(content.substr(colon + 1));
    if (!parents.empty()) {
      Parent& p = parents.back();
      if (p.is_list) return LineError(line_no, "map entry inside a list");
      p.has_children = true;
      key = absl::StrCat(p.key, ".", key);
    }
    if (rest.empty()) {
      parents.push_back(Parent{static_cast<int>(indent), key});
      continue;
    }
    if (find_entry(key) != nullptr) return LineError(line_no, "duplicate key " + key);
    YamlEntry entry{key, false, "", {}, line_no};
    if (rest == "|" || rest == "|-" || rest == ">") {
      doc.entries_.push_back(std::move(entry));
      block_entry = static_cast<int>(doc.entries_.size()) - 1;
      block_key_indent = static_cast<int>(indent);
      block_indent = -1;
      continue;
    }
    if (rest.front() == '[') {
      if (rest.back() != ']') return LineError(line_no, "unterminated inline list");
      entry.is_list = true;
      absl::string_view inner = rest.substr(1, rest.size() - 2);
      if (!absl::StripAsciiWhitespace(inner).empty()) {
        for (absl::string_view item : absl::StrSplit(inner, ',')) {
          absl::StatusOr<std::string> value = Unquote(item, line_no);
          if (!value.ok()) return value.status();
          entry.list.push_back(*std::move(value));
        }
      }
    } else if (rest.front() == '{' || rest.front() == '&' || rest.front() == '*') {
      return LineError(line_no, "flow maps, anchors and aliases are not supported");
    } else {
      absl::StatusOr<std::string> value = Unquote(rest, line_no);
      if (!value.ok()) return value.status();
      entry.scalar = *std::move(value);
    }
    doc.entries_.push_back(std::move(entry));
  }
  if (block_entry >= 0) {
    std::string& s = doc.entries_[block_entry].scalar;
    while (s.size() >= 2 && s[s.size() - 1] == '\n' && s[s.size() - 2] == '\n') s.pop_back();
  }
  while (!parents.empty()) {
    absl::Status s = close_parent(parents.back(), line_no);
    if (!s.ok()) return s;
    parents.pop_back();
  }
  return doc;
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  }
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("cannot read ", path, ": ", strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  close(fd);
  return out;
}

}  // namespace sluice::bench
