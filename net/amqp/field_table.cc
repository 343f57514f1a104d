#include "net/amqp/field_table.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "net/amqp/wire.h"

namespace sluice::amqp {

FieldTable::FieldTable(std::initializer_list<FieldEntry> entries) : entries_(entries) {}

void FieldTable::Append(std::string name, FieldValue value) {
  entries_.push_back(FieldEntry{std::move(name), std::move(value)});
}

void FieldTable::Set(std::string name, FieldValue value) {
  for (FieldEntry& e : entries_) {
    if (e.name == name) {
      e.value = std::move(value);
      return;
    }
  }
  Append(std::move(name), std::move(value));
}

const FieldValue* FieldTable::Find(std::string_view name) const {
  for (const FieldEntry& e : entries_) {
    if (e.name == name) return &e.value;
  }
  return nullptr;
}

std::string FieldTable::DebugString() const {
  std::string s = "{";
  const char* sep = "";
  for (const FieldEntry& e : entries_) {
    s += sep;
    internal::AppendQuoted(&s, e.name);
    s += ": ";
    s += e.value.DebugString();
    sep = ", ";
  }
  s += "}";
  return s;
}

char FieldValue::tag() const {
  // Indexed like FieldVariant's alternatives.
  static constexpr char kTags[] = {'V', 't', 'b', 'B', 's', 'u', 'I', 'i', 'l',
                                   'f', 'd', 'D', 'S', 'x', 'T', 'A', 'F'};
  static_assert(sizeof(kTags) == std::variant_size_v<FieldVariant>);
  return kTags[v_.index()];
}

std::optional<int64_t> FieldValue::AsInt64() const {
  return std::visit(
      [](const auto& v) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<int64_t>(v);
        } else {
          return std::nullopt;
        }
      },
      v_);
}

const std::string* FieldValue::AsString() const {
  if (const std::string* s = std::get_if<std::string>(&v_)) return s;
  if (const ByteArray* b = std::get_if<ByteArray>(&v_)) return &b->bytes;
  return nullptr;
}

std::optional<bool> FieldValue::AsBool() const {
  if (const bool* b = std::get_if<bool>(&v_)) return *b;
  return std::nullopt;
}

std::string FieldValue::DebugString() const {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Void>) {
          return "void";
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>) {
          return absl::StrCat(static_cast<int>(v), std::is_same_v<T, int8_t> ? "b" : "B");
        } else if constexpr (std::is_same_v<T, int16_t>) {
          return absl::StrCat(v, "s");
        } else if constexpr (std::is_same_v<T, uint16_t>) {
          return absl::StrCat(v, "u");
        } else if constexpr (std::is_same_v<T, int32_t>) {
          return absl::StrCat(v);
        } else if constexpr (std::is_same_v<T, uint32_t>) {
          return absl::StrCat(v, "i");
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return absl::StrCat(v, "l");
        } else if constexpr (std::is_same_v<T, float>) {
          return absl::StrCat(v, "f");
        } else if constexpr (std::is_same_v<T, double>) {
          return absl::StrCat(v, "d");
        } else if constexpr (std::is_same_v<T, Decimal>) {
          return absl::StrCat("decimal(", v.value, "e-", static_cast<int>(v.scale), ")");
        } else if constexpr (std::is_same_v<T, std::string>) {
          std::string s;
          internal::AppendQuoted(&s, v);
          return s;
        } else if constexpr (std::is_same_v<T, ByteArray>) {
          std::string s = "bytes";
          internal::AppendQuoted(&s, v.bytes);
          return s;
        } else if constexpr (std::is_same_v<T, Timestamp>) {
          return absl::StrCat("timestamp(", v.seconds, ")");
        } else if constexpr (std::is_same_v<T, FieldArray>) {
          std::string s = "[";
          const char* sep = "";
          for (const FieldValue& item : v) {
            s += sep;
            s += item.DebugString();
            sep = ", ";
          }
          s += "]";
          return s;
        } else {
          return v.DebugString();
        }
      },
      v_);
}

absl::Status EncodeFieldTable(const FieldTable& table, std::string* out) {
  WireWriter w(out);
  w.Table(table);
  return w.Finish("field table");
}

absl::StatusOr<FieldTable> DecodeFieldTable(std::string_view bytes) {
  WireReader r(bytes);
  FieldTable table = r.Table();
  if (absl::Status st = r.Finish("field table"); !st.ok()) return st;
  return table;
}

}  // namespace sluice::amqp
