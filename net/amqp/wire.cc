#include "net/amqp/wire.h"

#include <bit>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "net/amqp/reply_codes.h"

namespace sluice::amqp {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string TagName(uint8_t tag) {
  if (tag >= 0x20 && tag < 0x7f)
    return absl::StrCat("'", std::string(1, static_cast<char>(tag)), "'");
  return absl::StrCat("0x", absl::Hex(tag));
}

}  // namespace

// ---- WireReader ----

void WireReader::Fail(std::string message) {
  if (error_.empty()) error_ = std::move(message);
  pos_ = data_.size();
}

void WireReader::FailTruncated(size_t n) {
  Fail(absl::StrCat("truncated: ", n, " bytes needed at offset ", pos_, ", ", data_.size() - pos_,
                    " left"));
}

absl::Status WireReader::Finish(std::string_view what) const {
  if (!error_.empty()) {
    return AmqpError(ReplyCode::kSyntaxError, absl::StrCat(AV(what), ": ", error_));
  }
  if (pos_ != data_.size()) {
    return AmqpError(ReplyCode::kSyntaxError, absl::StrCat(AV(what), ": ", data_.size() - pos_,
                                                           " unexpected bytes at offset ", pos_));
  }
  return absl::OkStatus();
}

FieldTable WireReader::Table(int depth) {
  FieldTable table;
  if (depth > kMaxFieldNesting) {
    Fail(absl::StrCat("field tables and arrays nested deeper than ", kMaxFieldNesting));
    return table;
  }
  const uint32_t length = Long();
  std::string_view body = Bytes(length);
  if (!ok()) return table;
  WireReader sub(body);
  while (sub.ok() && sub.remaining() > 0) {
    std::string_view name = sub.ShortStrView();
    FieldValue value = sub.Value(depth);
    if (!sub.ok()) break;
    table.mutable_entries().push_back(FieldEntry{std::string(name), std::move(value)});
  }
  if (!sub.ok()) {
    Fail(absl::StrCat("in field table at offset ", pos_ - length, ": ", sub.error_));
    return FieldTable();
  }
  return table;
}

FieldArray WireReader::Array(int depth) {
  FieldArray array;
  if (depth > kMaxFieldNesting) {
    Fail(absl::StrCat("field tables and arrays nested deeper than ", kMaxFieldNesting));
    return array;
  }
  const uint32_t length = Long();
  std::string_view body = Bytes(length);
  if (!ok()) return array;
  WireReader sub(body);
  while (sub.ok() && sub.remaining() > 0) {
    FieldValue value = sub.Value(depth);
    if (!sub.ok()) break;
    array.push_back(std::move(value));
  }
  if (!sub.ok()) {
    Fail(absl::StrCat("in field array at offset ", pos_ - length, ": ", sub.error_));
    return FieldArray();
  }
  return array;
}

FieldValue WireReader::Value(int depth) {
  const uint8_t tag = Octet();
  if (!ok()) return FieldValue();
  switch (tag) {
    case 't':
      return FieldValue(Octet() != 0);
    case 'b':
      return FieldValue(static_cast<int8_t>(Octet()));
    case 'B':
      return FieldValue(Octet());
    case 's':
      return FieldValue(static_cast<int16_t>(Short()));
    case 'u':
      return FieldValue(Short());
    case 'I':
      return FieldValue(static_cast<int32_t>(Long()));
    case 'i':
      return FieldValue(Long());
    case 'l':
      return FieldValue(static_cast<int64_t>(LongLong()));
    case 'f':
      return FieldValue(std::bit_cast<float>(Long()));
    case 'd':
      return FieldValue(std::bit_cast<double>(LongLong()));
    case 'D': {
      Decimal d;
      d.scale = Octet();
      d.value = static_cast<int32_t>(Long());
      return FieldValue(d);
    }
    case 'S':
      return FieldValue(LongStr());
    case 'x':
      return FieldValue(ByteArray{LongStr()});
    case 'T':
      return FieldValue(Timestamp{LongLong()});
    case 'A':
      return FieldValue(Array(depth + 1));
    case 'F':
      return FieldValue(Table(depth + 1));
    case 'V':
      return FieldValue();
    default:
      Fail(absl::StrCat("unknown field value type ", TagName(tag), " at offset ", pos_ - 1));
      return FieldValue();
  }
}

// ---- WireWriter ----

void WireWriter::ShortStr(std::string_view s) {
  if (s.size() > 255) {
    Fail(absl::StrCat("shortstr of ", s.size(), " bytes (at most 255)"));
    return;
  }
  Octet(static_cast<uint8_t>(s.size()));
  out_->append(s.data(), s.size());
}

void WireWriter::LongStr(std::string_view s) {
  if (s.size() > std::numeric_limits<uint32_t>::max()) {
    Fail(absl::StrCat("longstr of ", s.size(), " bytes (at most 2^32-1)"));
    return;
  }
  Long(static_cast<uint32_t>(s.size()));
  out_->append(s.data(), s.size());
}

void WireWriter::Table(const FieldTable& table, int depth) {
  if (depth > kMaxFieldNesting) {
    Fail(absl::StrCat("field tables and arrays nested deeper than ", kMaxFieldNesting));
    return;
  }
  const size_t start = out_->size();
  Long(0);  // patched below
  for (const FieldEntry& e : table.entries()) {
    ShortStr(e.name);
    Value(e.value, depth);
    if (!ok()) return;
  }
  const size_t length = out_->size() - start - 4;
  if (length > std::numeric_limits<uint32_t>::max()) {
    Fail("field table longer than 2^32-1 bytes");
    return;
  }
  PatchLong(out_, start, static_cast<uint32_t>(length));
}

void WireWriter::Array(const FieldArray& array, int depth) {
  if (depth > kMaxFieldNesting) {
    Fail(absl::StrCat("field tables and arrays nested deeper than ", kMaxFieldNesting));
    return;
  }
  const size_t start = out_->size();
  Long(0);  // patched below
  for (const FieldValue& v : array) {
    Value(v, depth);
    if (!ok()) return;
  }
  const size_t length = out_->size() - start - 4;
  if (length > std::numeric_limits<uint32_t>::max()) {
    Fail("field array longer than 2^32-1 bytes");
    return;
  }
  PatchLong(out_, start, static_cast<uint32_t>(length));
}

void WireWriter::Value(const FieldValue& value, int depth) {
  Octet(static_cast<uint8_t>(value.tag()));
  std::visit(
      [this, depth](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Void>) {
          // no value
        } else if constexpr (std::is_same_v<T, bool>) {
          Octet(v ? 1 : 0);
        } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>) {
          Octet(static_cast<uint8_t>(v));
        } else if constexpr (std::is_same_v<T, int16_t> || std::is_same_v<T, uint16_t>) {
          Short(static_cast<uint16_t>(v));
        } else if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, uint32_t>) {
          Long(static_cast<uint32_t>(v));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          LongLong(static_cast<uint64_t>(v));
        } else if constexpr (std::is_same_v<T, float>) {
          Long(std::bit_cast<uint32_t>(v));
        } else if constexpr (std::is_same_v<T, double>) {
          LongLong(std::bit_cast<uint64_t>(v));
        } else if constexpr (std::is_same_v<T, Decimal>) {
          Octet(v.scale);
          Long(static_cast<uint32_t>(v.value));
        } else if constexpr (std::is_same_v<T, std::string>) {
          LongStr(v);
        } else if constexpr (std::is_same_v<T, ByteArray>) {
          LongStr(v.bytes);
        } else if constexpr (std::is_same_v<T, Timestamp>) {
          LongLong(v.seconds);
        } else if constexpr (std::is_same_v<T, FieldArray>) {
          Array(v, depth + 1);
        } else {
          static_assert(std::is_same_v<T, FieldTable>);
          Table(v, depth + 1);
        }
      },
      value.variant());
}

absl::Status WireWriter::Finish(std::string_view what) const {
  if (error_.empty()) return absl::OkStatus();
  return AmqpError(ReplyCode::kSyntaxError, absl::StrCat(AV(what), ": ", error_));
}

namespace internal {

void AppendQuoted(std::string* out, std::string_view text) {
  out->push_back('"');
  out->append(absl::CHexEscape(AV(text)));
  out->push_back('"');
}

void AppendRedacted(std::string* out, size_t size) {
  absl::StrAppend(out, "<redacted ", size, " bytes>");
}

}  // namespace internal
}  // namespace sluice::amqp
