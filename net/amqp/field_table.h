// AMQP field tables and arrays with RabbitMQ's value type tags.
//
// A FieldTable is an ordered list of (name, value) entries, kept as received: order and
// duplicate names survive a decode/encode round trip. Values own their data (decoding
// copies strings out of the frame), so a table may outlive the bytes it came from.
//
// Wire form (big-endian): table = u32 byte length, then entries; entry = shortstr name,
// one tag octet, value. The tags are RabbitMQ's (they differ from the 0-9-1 spec's list):
//
//   t bool (octet, non-zero = true)  b int8    B uint8    s int16   u uint16
//   I int32   i uint32   l int64   f float (IEEE-754 binary32)   d double (binary64)
//   D decimal (scale octet + int32)  S longstr   x byte array (u32 length + bytes)
//   T timestamp (u64 seconds)  A array (u32 byte length, then tag+value items)
//   F table   V void (no value)
//
// Nesting of tables and arrays is limited to kMaxFieldNesting levels (the outermost table
// is level 1) on decode and on encode, so hostile input cannot exhaust the stack.

#ifndef SLUICE_NET_AMQP_FIELD_TABLE_H_
#define SLUICE_NET_AMQP_FIELD_TABLE_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::amqp {

inline constexpr int kMaxFieldNesting = 32;

struct Decimal {
  uint8_t scale = 0;  // number of decimal digits after the point
  int32_t value = 0;  // unscaled value: value / 10^scale
  friend bool operator==(const Decimal&, const Decimal&) = default;
};

struct Timestamp {
  uint64_t seconds = 0;  // POSIX time
  friend bool operator==(const Timestamp&, const Timestamp&) = default;
};

// 'x': uninterpreted bytes (a 'S' long string is std::string).
struct ByteArray {
  std::string bytes;
  friend bool operator==(const ByteArray&, const ByteArray&) = default;
};

// 'V': an entry without a value.
struct Void {
  friend bool operator==(const Void&, const Void&) = default;
};

class FieldValue;
struct FieldEntry;
using FieldArray = std::vector<FieldValue>;

class FieldTable {
 public:
  FieldTable() = default;
  FieldTable(std::initializer_list<FieldEntry> entries);

  // Adds an entry at the end, even if the name is already present.
  void Append(std::string name, FieldValue value);
  // Replaces the value of the first entry called `name`, or appends one.
  void Set(std::string name, FieldValue value);
  // The first entry called `name`; nullptr if none.
  const FieldValue* Find(std::string_view name) const;

  const std::vector<FieldEntry>& entries() const { return entries_; }
  std::vector<FieldEntry>& mutable_entries() { return entries_; }
  bool empty() const;
  size_t size() const;

  // {name: value, ...} with strings quoted and escaped; for logs and test failures.
  std::string DebugString() const;

  friend bool operator==(const FieldTable& a, const FieldTable& b);

 private:
  std::vector<FieldEntry> entries_;
};

// One alternative per type tag (see the table at the top of this file).
using FieldVariant =
    std::variant<Void, bool, int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, float,
                 double, Decimal, std::string, ByteArray, Timestamp, FieldArray, FieldTable>;

namespace internal {
template <typename T, typename V>
inline constexpr bool kIsFieldAlternative = false;
template <typename T, typename... Ts>
inline constexpr bool kIsFieldAlternative<T, std::variant<Ts...>> = (std::is_same_v<T, Ts> || ...);
}  // namespace internal

class FieldValue {
 public:
  using Variant = FieldVariant;

  FieldValue() = default;  // Void
  // Implicit from exactly one of the alternative types (no narrowing guesses: `5` is int32,
  // `int64_t{5}` is int64, `uint8_t{5}` is uint8), and from text (a long string 'S').
  template <typename T>
  requires(!std::is_same_v<std::remove_cvref_t<T>, FieldValue> &&
           internal::kIsFieldAlternative<std::remove_cvref_t<T>, FieldVariant>)
      FieldValue(T&& v)  // NOLINT(google-explicit-constructor)
      : v_(std::in_place_type<std::remove_cvref_t<T>>, std::forward<T>(v)) {}
  FieldValue(const char* s);       // NOLINT(google-explicit-constructor)
  FieldValue(std::string_view s);  // NOLINT(google-explicit-constructor)

  // The RabbitMQ type tag of the value, e.g. 'S' or 'F'.
  char tag() const;

  const Variant& variant() const { return v_; }
  Variant& variant() { return v_; }
  template <typename T>
  const T* get_if() const {
    return std::get_if<T>(&v_);
  }
  template <typename T>
  bool is() const {
    return std::holds_alternative<T>(v_);
  }

  // The value of any integer type (b B s u I i l) as int64; nullopt for other types. Clients
  // pick different widths for the same argument (x-max-length is 'I' from one, 'l' from
  // another), so the broker reads integers through this.
  std::optional<int64_t> AsInt64() const;
  // The text of a long string 'S' (or a byte array 'x'); nullptr for other types.
  const std::string* AsString() const;
  // True/false for a bool 't'; nullopt for other types.
  std::optional<bool> AsBool() const;

  std::string DebugString() const;

  friend bool operator==(const FieldValue&, const FieldValue&) = default;

 private:
  Variant v_;
};

struct FieldEntry {
  std::string name;  // shortstr: at most 255 bytes on the wire
  FieldValue value;
  friend bool operator==(const FieldEntry&, const FieldEntry&) = default;
};

// Defined here, where FieldEntry (inside FieldTable) is complete.
inline FieldValue::FieldValue(const char* s) : v_(std::in_place_type<std::string>, s) {}
inline FieldValue::FieldValue(std::string_view s) : v_(std::in_place_type<std::string>, s) {}
inline bool FieldTable::empty() const { return entries_.empty(); }
inline size_t FieldTable::size() const { return entries_.size(); }
inline bool operator==(const FieldTable& a, const FieldTable& b) {
  return a.entries_ == b.entries_;
}

// Appends the wire form of `table` (u32 length + entries) to *out. Fails (SYNTAX_ERROR) for
// a name longer than 255 bytes, a value longer than its length prefix allows or nesting
// deeper than kMaxFieldNesting; *out may then hold a partial encoding.
absl::Status EncodeFieldTable(const FieldTable& table, std::string* out);

// Decodes one table (u32 length + entries) that must fill `bytes` exactly. Errors carry
// SYNTAX_ERROR (ReplyCodeOf).
absl::StatusOr<FieldTable> DecodeFieldTable(std::string_view bytes);

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_FIELD_TABLE_H_
