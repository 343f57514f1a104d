#include "net/kafka/wire.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace sluice::kafka {
namespace {

absl::Status Truncated(size_t want, size_t have) {
  return absl::OutOfRangeError(
      absl::StrCat("truncated input: need ", want, " bytes, ", have, " remain"));
}

template <typename T>
T LoadBigEndian(const uint8_t* p) {
  using U = std::make_unsigned_t<T>;
  U v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<U>((v << 8) | p[i]);
  return static_cast<T>(v);
}

template <typename T>
void StoreBigEndian(std::vector<uint8_t>& out, T value) {
  using U = std::make_unsigned_t<T>;
  const U v = static_cast<U>(value);
  for (size_t i = sizeof(T); i > 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * (i - 1))));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Uuid, Records, EncodedFrame

bool Uuid::IsZero() const {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

Records Records::Null() {
  Records r;
  r.is_null_ = true;
  return r;
}

Records Records::Borrowed(std::span<const uint8_t> bytes) {
  Records r;
  r.AppendBorrowed(bytes);
  return r;
}

void Records::AppendBorrowed(std::span<const uint8_t> bytes) {
  is_null_ = false;
  if (bytes.empty()) return;
  pieces_.push_back(Piece{.bytes = bytes});
}

void Records::AppendExternal(uint32_t length, uint64_t token) {
  is_null_ = false;
  pieces_.push_back(Piece{.external_length = length, .token = token, .is_external = true});
}

size_t Records::size() const {
  size_t n = 0;
  for (const Piece& p : pieces_) n += p.is_external ? p.external_length : p.bytes.size();
  return n;
}

bool Records::has_external() const {
  return std::any_of(pieces_.begin(), pieces_.end(), [](const Piece& p) { return p.is_external; });
}

std::span<const uint8_t> Records::contiguous() const {
  if (pieces_.size() != 1 || pieces_[0].is_external) return {};
  return pieces_[0].bytes;
}

bool operator==(const Records& a, const Records& b) {
  if (a.is_null_ != b.is_null_) return false;
  if (!a.has_external() && !b.has_external()) {
    // Compare the concatenated in-memory content, however it is split.
    if (a.size() != b.size()) return false;
    std::vector<uint8_t> fa, fb;
    for (const auto& p : a.pieces_) fa.insert(fa.end(), p.bytes.begin(), p.bytes.end());
    for (const auto& p : b.pieces_) fb.insert(fb.end(), p.bytes.begin(), p.bytes.end());
    return fa == fb;
  }
  if (a.pieces_.size() != b.pieces_.size()) return false;
  for (size_t i = 0; i < a.pieces_.size(); ++i) {
    const Records::Piece& x = a.pieces_[i];
    const Records::Piece& y = b.pieces_[i];
    if (x.is_external != y.is_external) return false;
    if (x.is_external) {
      if (x.external_length != y.external_length || x.token != y.token) return false;
    } else if (!std::equal(x.bytes.begin(), x.bytes.end(), y.bytes.begin(), y.bytes.end())) {
      return false;
    }
  }
  return true;
}

size_t EncodedFrame::wire_size() const {
  size_t n = owned.size();
  for (const External& e : externals) n += e.length;
  return n;
}

std::vector<EncodedFrame::Chunk> EncodedFrame::Chunks() const {
  std::vector<Chunk> chunks;
  chunks.reserve(2 * externals.size() + 1);
  size_t pos = 0;
  for (const External& e : externals) {
    if (e.position > pos) {
      chunks.push_back(Chunk{.bytes = std::span(owned).subspan(pos, e.position - pos)});
      pos = e.position;
    }
    chunks.push_back(Chunk{.length = e.length, .token = e.token, .is_external = true});
  }
  if (pos < owned.size()) chunks.push_back(Chunk{.bytes = std::span(owned).subspan(pos)});
  return chunks;
}

std::vector<uint8_t> EncodedFrame::Flatten(
    absl::FunctionRef<void(uint64_t token, std::span<uint8_t> out)> fill) const {
  std::vector<uint8_t> out;
  out.reserve(wire_size());
  for (const Chunk& c : Chunks()) {
    if (c.is_external) {
      const size_t at = out.size();
      out.resize(at + c.length);
      fill(c.token, std::span(out).subspan(at, c.length));
    } else {
      out.insert(out.end(), c.bytes.begin(), c.bytes.end());
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reader

#define SLUICE_KAFKA_NEED(n)          \
  if (remaining() < (n)) [[unlikely]] \
  return Truncated((n), remaining())

absl::Status Reader::ReadInt8(int8_t* v) {
  SLUICE_KAFKA_NEED(1);
  *v = static_cast<int8_t>(data_[pos_++]);
  return absl::OkStatus();
}

absl::Status Reader::ReadInt16(int16_t* v) {
  SLUICE_KAFKA_NEED(2);
  *v = LoadBigEndian<int16_t>(&data_[pos_]);
  pos_ += 2;
  return absl::OkStatus();
}

absl::Status Reader::ReadInt32(int32_t* v) {
  SLUICE_KAFKA_NEED(4);
  *v = LoadBigEndian<int32_t>(&data_[pos_]);
  pos_ += 4;
  return absl::OkStatus();
}

absl::Status Reader::ReadInt64(int64_t* v) {
  SLUICE_KAFKA_NEED(8);
  *v = LoadBigEndian<int64_t>(&data_[pos_]);
  pos_ += 8;
  return absl::OkStatus();
}

absl::Status Reader::ReadUint16(uint16_t* v) {
  SLUICE_KAFKA_NEED(2);
  *v = LoadBigEndian<uint16_t>(&data_[pos_]);
  pos_ += 2;
  return absl::OkStatus();
}

absl::Status Reader::ReadUint32(uint32_t* v) {
  SLUICE_KAFKA_NEED(4);
  *v = LoadBigEndian<uint32_t>(&data_[pos_]);
  pos_ += 4;
  return absl::OkStatus();
}

absl::Status Reader::ReadFloat64(double* v) {
  SLUICE_KAFKA_NEED(8);
  *v = std::bit_cast<double>(LoadBigEndian<uint64_t>(&data_[pos_]));
  pos_ += 8;
  return absl::OkStatus();
}

absl::Status Reader::ReadBool(bool* v) {
  SLUICE_KAFKA_NEED(1);
  *v = data_[pos_++] != 0;
  return absl::OkStatus();
}

absl::Status Reader::ReadUuid(Uuid* v) {
  SLUICE_KAFKA_NEED(16);
  std::memcpy(v->bytes.data(), &data_[pos_], 16);
  pos_ += 16;
  return absl::OkStatus();
}

absl::Status Reader::ReadUnsignedVarint(uint32_t* v) {
  uint32_t value = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    SLUICE_KAFKA_NEED(1);
    const uint8_t b = data_[pos_++];
    if (shift == 28 && (b & 0xf0) != 0) {
      return absl::InvalidArgumentError("unsigned varint does not fit 32 bits");
    }
    value |= static_cast<uint32_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = value;
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unsigned varint longer than 5 bytes");
}

absl::Status Reader::ReadVarint(int32_t* v) {
  uint32_t raw = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadUnsignedVarint(&raw));
  *v = static_cast<int32_t>((raw >> 1) ^ (~(raw & 1) + 1));
  return absl::OkStatus();
}

absl::Status Reader::ReadVarlong(int64_t* v) {
  uint64_t raw = 0;
  for (int shift = 0;; shift += 7) {
    if (shift >= 70) return absl::InvalidArgumentError("varlong longer than 10 bytes");
    SLUICE_KAFKA_NEED(1);
    const uint8_t b = data_[pos_++];
    if (shift == 63 && (b & 0x7e) != 0) {
      return absl::InvalidArgumentError("varlong does not fit 64 bits");
    }
    raw |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) break;
  }
  *v = static_cast<int64_t>((raw >> 1) ^ (~(raw & 1) + 1));
  return absl::OkStatus();
}

absl::Status Reader::ReadSpan(size_t n, std::span<const uint8_t>* out) {
  SLUICE_KAFKA_NEED(n);
  *out = data_.subspan(pos_, n);
  pos_ += n;
  return absl::OkStatus();
}

absl::Status Reader::Skip(size_t n) {
  SLUICE_KAFKA_NEED(n);
  pos_ += n;
  return absl::OkStatus();
}

absl::Status Reader::ReadLength(bool compact, bool wide, bool nullable, int32_t* len) {
  int32_t n = 0;
  if (compact) {
    uint32_t raw = 0;
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadUnsignedVarint(&raw));
    if (raw > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("compact length ", raw, " too large"));
    }
    n = static_cast<int32_t>(raw) - 1;
  } else if (wide) {
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadInt32(&n));
  } else {
    int16_t n16 = 0;
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadInt16(&n16));
    n = n16;
  }
  if (n < -1) return absl::InvalidArgumentError(absl::StrCat("negative length ", n));
  if (n == -1 && !nullable) return absl::InvalidArgumentError("null value in non-nullable field");
  *len = n;
  return absl::OkStatus();
}

absl::Status Reader::ReadString(bool compact, std::string* out) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/false, /*nullable=*/false, &n));
  SLUICE_KAFKA_NEED(static_cast<size_t>(n));
  out->assign(reinterpret_cast<const char*>(&data_[pos_]), static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return absl::OkStatus();
}

absl::Status Reader::ReadNullableString(bool compact, bool nullable,
                                        std::optional<std::string>* out) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/false, nullable, &n));
  if (n < 0) {
    out->reset();
    return absl::OkStatus();
  }
  SLUICE_KAFKA_NEED(static_cast<size_t>(n));
  out->emplace(reinterpret_cast<const char*>(&data_[pos_]), static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  return absl::OkStatus();
}

absl::Status Reader::ReadBytes(bool compact, std::vector<uint8_t>* out) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/true, /*nullable=*/false, &n));
  SLUICE_KAFKA_NEED(static_cast<size_t>(n));
  out->assign(&data_[pos_], &data_[pos_] + n);
  pos_ += static_cast<size_t>(n);
  return absl::OkStatus();
}

absl::Status Reader::ReadNullableBytes(bool compact, bool nullable,
                                       std::optional<std::vector<uint8_t>>* out) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/true, nullable, &n));
  if (n < 0) {
    out->reset();
    return absl::OkStatus();
  }
  SLUICE_KAFKA_NEED(static_cast<size_t>(n));
  out->emplace(&data_[pos_], &data_[pos_] + n);
  pos_ += static_cast<size_t>(n);
  return absl::OkStatus();
}

absl::Status Reader::ReadRecords(bool compact, bool nullable, Records* out) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/true, nullable, &n));
  if (n < 0) {
    *out = Records::Null();
    return absl::OkStatus();
  }
  std::span<const uint8_t> bytes;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadSpan(static_cast<size_t>(n), &bytes));
  *out = Records::Borrowed(bytes);
  return absl::OkStatus();
}

absl::Status Reader::ReadArrayCount(bool compact, bool nullable, size_t min_element_size,
                                    int32_t* count) {
  int32_t n = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadLength(compact, /*wide=*/true, nullable, &n));
  const uint64_t need =
      static_cast<uint64_t>(std::max(n, 0)) * std::max<size_t>(min_element_size, 1);
  if (need > remaining()) {
    return absl::OutOfRangeError(absl::StrCat("array of ", n, " elements needs at least ", need,
                                              " bytes, ", remaining(), " remain"));
  }
  *count = n;
  return absl::OkStatus();
}

absl::Status Reader::ReadTaggedFields(
    absl::FunctionRef<absl::Status(uint32_t tag, Reader& payload, bool* known)> on_field) {
  uint32_t count = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(ReadUnsignedVarint(&count));
  // Each field takes at least 2 bytes (tag and size), so the loop ends with the input.
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t tag = 0;
    uint32_t size = 0;
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadUnsignedVarint(&tag));
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadUnsignedVarint(&size));
    std::span<const uint8_t> payload;
    SLUICE_KAFKA_RETURN_IF_ERROR(ReadSpan(size, &payload));
    Reader sub(payload);
    bool known = false;
    SLUICE_KAFKA_RETURN_IF_ERROR(on_field(tag, sub, &known));
    if (known && sub.remaining() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tagged field ", tag, " has ", sub.remaining(), " unread bytes"));
    }
  }
  return absl::OkStatus();
}

#undef SLUICE_KAFKA_NEED

// ---------------------------------------------------------------------------------------------
// Writer

void Writer::WriteInt16(int16_t v) { StoreBigEndian(bytes_, v); }
void Writer::WriteInt32(int32_t v) { StoreBigEndian(bytes_, v); }
void Writer::WriteInt64(int64_t v) { StoreBigEndian(bytes_, v); }
void Writer::WriteUint16(uint16_t v) { StoreBigEndian(bytes_, v); }
void Writer::WriteUint32(uint32_t v) { StoreBigEndian(bytes_, v); }
void Writer::WriteFloat64(double v) { StoreBigEndian(bytes_, std::bit_cast<uint64_t>(v)); }

void Writer::WriteUuid(const Uuid& v) {
  bytes_.insert(bytes_.end(), v.bytes.begin(), v.bytes.end());
}

void Writer::WriteUnsignedVarint(uint32_t v) {
  while (v >= 0x80) {
    bytes_.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  bytes_.push_back(static_cast<uint8_t>(v));
}

void Writer::WriteVarint(int32_t v) {
  WriteUnsignedVarint((static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31));
}

void Writer::WriteVarlong(int64_t v) {
  uint64_t u = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (u >= 0x80) {
    bytes_.push_back(static_cast<uint8_t>(u | 0x80));
    u >>= 7;
  }
  bytes_.push_back(static_cast<uint8_t>(u));
}

void Writer::WriteRaw(std::span<const uint8_t> bytes) {
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

void Writer::WriteString(bool compact, std::string_view s) {
  if (!compact && s.size() > static_cast<size_t>(std::numeric_limits<int16_t>::max())) {
    s = s.substr(0, std::numeric_limits<int16_t>::max());
  }
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(s.size() + 1));
  } else {
    WriteInt16(static_cast<int16_t>(s.size()));
  }
  bytes_.insert(bytes_.end(), s.begin(), s.end());
}

void Writer::WriteNullableString(bool compact, bool nullable, const std::optional<std::string>& s) {
  if (s.has_value()) {
    WriteString(compact, *s);
  } else if (!nullable) {
    WriteString(compact, {});
  } else if (compact) {
    WriteUnsignedVarint(0);
  } else {
    WriteInt16(-1);
  }
}

void Writer::WriteBytes(bool compact, std::span<const uint8_t> b) {
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(b.size() + 1));
  } else {
    WriteInt32(static_cast<int32_t>(b.size()));
  }
  WriteRaw(b);
}

void Writer::WriteNullableBytes(bool compact, bool nullable,
                                const std::optional<std::vector<uint8_t>>& b) {
  if (b.has_value()) {
    WriteBytes(compact, *b);
  } else if (!nullable) {
    WriteBytes(compact, {});
  } else if (compact) {
    WriteUnsignedVarint(0);
  } else {
    WriteInt32(-1);
  }
}

void Writer::WriteRecords(bool compact, bool nullable, const Records& r) {
  if (r.is_null() && nullable) {
    if (compact) {
      WriteUnsignedVarint(0);
    } else {
      WriteInt32(-1);
    }
    return;
  }
  const size_t n = r.size();
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(n + 1));
  } else {
    WriteInt32(static_cast<int32_t>(n));
  }
  for (const Records::Piece& p : r.pieces()) {
    if (p.is_external) {
      AppendExternal(p.external_length, p.token);
    } else {
      WriteRaw(p.bytes);
    }
  }
}

void Writer::WriteArrayCount(bool compact, int32_t count) {
  if (compact) {
    WriteUnsignedVarint(static_cast<uint32_t>(count + 1));
  } else {
    WriteInt32(count);
  }
}

void Writer::AppendExternal(uint32_t length, uint64_t token) {
  externals_.push_back({.position = bytes_.size(), .length = length, .token = token});
  external_bytes_ += length;
}

void Writer::Append(Writer&& other) {
  const size_t base = bytes_.size();
  if (bytes_.empty() && externals_.empty()) {
    bytes_ = std::move(other.bytes_);
  } else {
    bytes_.insert(bytes_.end(), other.bytes_.begin(), other.bytes_.end());
  }
  for (EncodedFrame::External e : other.externals_) {
    e.position += base;
    externals_.push_back(e);
  }
  external_bytes_ += other.external_bytes_;
  other = Writer();
}

void Writer::PatchInt32(size_t offset, int32_t v) {
  const uint32_t u = static_cast<uint32_t>(v);
  for (size_t i = 0; i < 4; ++i) bytes_[offset + i] = static_cast<uint8_t>(u >> (24 - 8 * i));
}

EncodedFrame Writer::Finish() && {
  EncodedFrame frame;
  frame.owned = std::move(bytes_);
  frame.externals = std::move(externals_);
  *this = Writer();
  return frame;
}

}  // namespace sluice::kafka
