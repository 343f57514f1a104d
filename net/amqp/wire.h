// Big-endian readers and writers of AMQP 0-9-1 argument types; the generated method codecs
// and the field table codec are written with these.
//
// WireReader never reads past its input: every length is compared with what remains
// before anything is copied or allocated. Errors are sticky: after the first failure every
// read returns a zero value and Finish() reports the first problem, so generated decoders
// read all arguments and check once.

#ifndef SLUICE_NET_AMQP_WIRE_H_
#define SLUICE_NET_AMQP_WIRE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "net/amqp/field_table.h"

namespace sluice::amqp {

class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  uint8_t Octet() {
    if (!Need(1)) return 0;
    return static_cast<uint8_t>(data_[pos_++]);
  }
  uint16_t Short() {
    if (!Need(2)) return 0;
    const uint16_t v = static_cast<uint16_t>((Byte(0) << 8) | Byte(1));
    pos_ += 2;
    return v;
  }
  uint32_t Long() {
    if (!Need(4)) return 0;
    const uint32_t v = (uint32_t{Byte(0)} << 24) | (uint32_t{Byte(1)} << 16) |
                       (uint32_t{Byte(2)} << 8) | uint32_t{Byte(3)};
    pos_ += 4;
    return v;
  }
  uint64_t LongLong() {
    const uint64_t hi = Long();
    const uint64_t lo = Long();
    return (hi << 32) | lo;
  }
  // A view into the input: valid as long as the input bytes are.
  std::string_view ShortStrView() { return Bytes(Octet()); }
  std::string_view LongStrView() { return Bytes(Long()); }
  std::string ShortStr() { return std::string(ShortStrView()); }
  std::string LongStr() { return std::string(LongStrView()); }
  // `n` raw bytes as a view into the input (empty and failed if fewer remain).
  std::string_view Bytes(size_t n) {
    if (!Need(n)) return {};
    std::string_view v = data_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  // A field table (u32 length + entries); `depth` is the nesting level of the table.
  FieldTable Table(int depth = 1);
  // A field array (u32 length + tagged values) at nesting level `depth`.
  FieldArray Array(int depth);
  // One tagged field value (tag octet + value) whose container is at level `depth`.
  FieldValue Value(int depth);

  bool ok() const { return error_.empty(); }
  size_t position() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }

  // Records `message` as the error (if none yet) and stops further reads.
  void Fail(std::string message);

  // OK if every read succeeded and all input was used; otherwise SYNTAX_ERROR with
  // "<what>: <problem>".
  absl::Status Finish(std::string_view what) const;

 private:
  bool Need(size_t n) {
    if (!error_.empty()) return false;
    if (n > data_.size() - pos_) {
      FailTruncated(n);
      return false;
    }
    return true;
  }
  uint8_t Byte(size_t i) const { return static_cast<uint8_t>(data_[pos_ + i]); }
  void FailTruncated(size_t n);

  std::string_view data_;
  size_t pos_ = 0;
  std::string error_;
};

// Appends to a caller's string. A string too long for its length prefix (or a table nested
// too deeply) is an error reported by Finish(); the output is then unusable.
class WireWriter {
 public:
  explicit WireWriter(std::string* out) : out_(out) {}

  void Octet(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Short(uint16_t v) {
    const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
    out_->append(b, 2);
  }
  void Long(uint32_t v) {
    const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
    out_->append(b, 4);
  }
  void LongLong(uint64_t v) {
    Long(static_cast<uint32_t>(v >> 32));
    Long(static_cast<uint32_t>(v));
  }
  void ShortStr(std::string_view s);
  void LongStr(std::string_view s);
  void Table(const FieldTable& table, int depth = 1);
  void Array(const FieldArray& array, int depth);
  void Value(const FieldValue& value, int depth);

  bool ok() const { return error_.empty(); }
  void Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }
  // OK, or SYNTAX_ERROR "<what>: <problem>".
  absl::Status Finish(std::string_view what) const;

 private:
  std::string* out_;
  std::string error_;
};

// Overwrites 4 bytes at out[pos] with `v`, big-endian (for lengths known after the fact).
inline void PatchLong(std::string* out, size_t pos, uint32_t v) {
  (*out)[pos] = static_cast<char>(v >> 24);
  (*out)[pos + 1] = static_cast<char>(v >> 16);
  (*out)[pos + 2] = static_cast<char>(v >> 8);
  (*out)[pos + 3] = static_cast<char>(v);
}

namespace internal {
// "text" with C escapes, for DebugString().
void AppendQuoted(std::string* out, std::string_view text);
// "<redacted N bytes>", for secret arguments.
void AppendRedacted(std::string* out, size_t size);
}  // namespace internal

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_WIRE_H_
