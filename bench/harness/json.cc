#include "bench/harness/json.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace sluice::bench {

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void JsonWriter::Newline() {
  out_.push_back('\n');
  out_.append(2 * counts_.size(), ' ');
}

void JsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!counts_.empty()) {
    if (counts_.back()++ > 0) out_.push_back(',');
    Newline();
  }
}

void JsonWriter::BeginObject() {
  BeforeValue();
  out_.push_back('{');
  counts_.push_back(0);
}

void JsonWriter::EndObject() {
  const bool empty = counts_.back() == 0;
  counts_.pop_back();
  if (!empty) Newline();
  out_.push_back('}');
  if (counts_.empty()) out_.push_back('\n');
}

void JsonWriter::BeginArray() {
  BeforeValue();
  out_.push_back('[');
  counts_.push_back(0);
}

void JsonWriter::EndArray() {
  const bool empty = counts_.back() == 0;
  counts_.pop_back();
  if (!empty) Newline();
  out_.push_back(']');
}

void JsonWriter::Key(absl::string_view key) {
  BeforeValue();
  AppendJsonString(key, &out_);
  out_.append(": ");
  after_key_ = true;
}

void JsonWriter::String(absl::string_view s) {
  BeforeValue();
  AppendJsonString(s, &out_);
}

void JsonWriter::Int(int64_t v) {
  BeforeValue();
  absl::StrAppend(&out_, v);
}

void JsonWriter::Double(double v) {
  BeforeValue();
  if (!std::isfinite(v)) {
    out_.append("null");
    return;
  }
  char buf[32];
  snprintf(buf, sizeof(buf), "%.6g", v);
  out_.append(buf);
}

void JsonWriter::Bool(bool v) {
  BeforeValue();
  out_.append(v ? "true" : "false");
}

void JsonWriter::Null() {
  BeforeValue();
  out_.append("null");
}

namespace {

// Recursive-descent validator over text[pos].
class Validator {
 public:
  explicit Validator(absl::string_view t) : t_(t) {}

  absl::Status Run() {
    SkipWs();
    if (!Value(0)) return Error();
    SkipWs();
    if (pos_ != t_.size())
      return absl::InvalidArgumentError(absl::StrCat("trailing data at byte ", pos_));
    return absl::OkStatus();
  }

 private:
  absl::Status Error() const {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", pos_, ": ", why_));
  }
  bool Fail(const char* why) {
    why_ = why;
    return false;
  }
  void SkipWs() {
    while (pos_ < t_.size() &&
           (t_[pos_] == ' ' || t_[pos_] == '\n' || t_[pos_] == '\r' || t_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool Literal(absl::string_view word) {
    if (t_.substr(pos_, word.size()) != word) return Fail("bad literal");
    pos_ += word.size();
    return true;
  }
  bool Value(int depth) {
    if (depth > 256) return Fail("nesting too deep");
    if (pos_ >= t_.size()) return Fail("unexpected end");
    switch (t_[pos_]) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"':
        return String();
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number();
    }
  }
  bool Object(int depth) {
    ++pos_;
    SkipWs();
    if (pos_ < t_.size() && t_[pos_] == '}') return ++pos_, true;
    while (true) {
      SkipWs();
      if (pos_ >= t_.size() || t_[pos_] != '"') return Fail("expected a key");
      if (!String()) return false;
      SkipWs();
      if (pos_ >= t_.size() || t_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      SkipWs();
      if (!Value(depth + 1)) return false;
      SkipWs();
      if (pos_ < t_.size() && t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < t_.size() && t_[pos_] == '}') return ++pos_, true;
      return Fail("expected ',' or '}'");
    }
  }
  bool Array(int depth) {
    ++pos_;
    SkipWs();
    if (pos_ < t_.size() && t_[pos_] == ']') return ++pos_, true;
    while (true) {
      SkipWs();
      if (!Value(depth + 1)) return false;
      SkipWs();
      if (pos_ < t_.size() && t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < t_.size() && t_[pos_] == ']') return ++pos_, true;
      return Fail("expected ',' or ']'");
    }
  }
  bool String() {
    ++pos_;
    while (pos_ < t_.size()) {
      const unsigned char c = t_[pos_++];
      if (c == '"') return true;
      if (c < 0x20) return Fail("control character in string");
      if (c == '\\') {
        if (pos_ >= t_.size()) return Fail("unexpected end");
        const char e = t_[pos_++];
        if (e == 'u') {
          for (int i = 0; i < 4; ++i) {
            if (pos_ >= t_.size() || !isxdigit(static_cast<unsigned char>(t_[pos_]))) {
              return Fail("bad \\u escape");
            }
            ++pos_;
          }
        } else if (absl::string_view("\"\\/bfnrt").find(e) == absl::string_view::npos) {
          return Fail("bad escape");
        }
      }
    }
    return Fail("unterminated string");
  }
  bool Digits() {
    const size_t start = pos_;
    while (pos_ < t_.size() && t_[pos_] >= '0' && t_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }
  bool Number() {
    if (pos_ < t_.size() && t_[pos_] == '-') ++pos_;
    if (pos_ < t_.size() && t_[pos_] == '0') {
      ++pos_;
    } else if (!Digits()) {
      return Fail("expected a value");
    }
    if (pos_ < t_.size() && t_[pos_] == '.') {
      ++pos_;
      if (!Digits()) return Fail("expected digits after '.'");
    }
    if (pos_ < t_.size() && (t_[pos_] == 'e' || t_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < t_.size() && (t_[pos_] == '+' || t_[pos_] == '-')) ++pos_;
      if (!Digits()) return Fail("expected exponent digits");
    }
    return true;
  }

  absl::string_view t_;
  size_t pos_ = 0;
  const char* why_ = "";
};

}  // namespace

absl::Status ValidateJson(absl::string_view text) { return Validator(text).Run(); }

}  // namespace sluice::bench
