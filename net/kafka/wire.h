// Primitive encoding of the Kafka wire protocol: the Reader and Writer every generated codec
// uses, and the value types that are not plain C++ types (Uuid, Records, EncodedFrame).
// The byte-level rules (big-endian integers, varints, classic and compact length prefixes,
// tagged-field sections) are described in net/kafka/PROTOCOL.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

// Evaluates an expression yielding absl::Status and returns it from the calling function when
// it is not OK.
#define SLUICE_KAFKA_RETURN_IF_ERROR(expr)                                                       \
  do {                                                                                           \
    if (::absl::Status sluice_kafka_status_ = (expr); !sluice_kafka_status_.ok()) [[unlikely]] { \
      return sluice_kafka_status_;                                                               \
    }                                                                                            \
  } while (false)

namespace sluice::kafka {

// A Kafka UUID (topic ids): 16 raw bytes, most significant first.
struct Uuid {
  std::array<uint8_t, 16> bytes{};

  bool IsZero() const;
  friend bool operator==(const Uuid&, const Uuid&) = default;
};

// The value of a `records` field (a Produce request's batches, a Fetch response's batches).
//
// Records never own their bytes. A decoded Records is one borrowed view into the frame it was
// decoded from, valid only while that frame buffer lives (copy the bytes, or keep the frame,
// to hold them longer). When encoding, a Records is an ordered list of pieces: borrowed
// in-memory views (copied into the encoded frame) and external ranges (a length and an opaque
// token) that the encoder leaves as gaps for the network layer to fill, e.g. with sendfile or
// splice from a segment file. See EncodedFrame.
class Records {
 public:
  struct Piece {
    std::span<const uint8_t> bytes;  // the data, when !is_external
    uint32_t external_length = 0;    // when is_external
    uint64_t token = 0;              // when is_external: identifies the range to the sender
    bool is_external = false;
  };

  // An empty (non-null) records field.
  Records() = default;
  static Records Null();
  // A records field whose content is `bytes` (not copied; must outlive encoding or use).
  static Records Borrowed(std::span<const uint8_t> bytes);

  void AppendBorrowed(std::span<const uint8_t> bytes);
  void AppendExternal(uint32_t length, uint64_t token);

  bool is_null() const { return is_null_; }
  // Total length in bytes of all pieces.
  size_t size() const;
  bool has_external() const;
  // The content when it is in memory as a single piece (always so for decoded records), or an
  // empty span otherwise.
  std::span<const uint8_t> contiguous() const;
  const absl::InlinedVector<Piece, 1>& pieces() const { return pieces_; }

  // Equal when both are null, or both hold the same in-memory bytes (however split), or both
  // hold the same sequence of pieces.
  friend bool operator==(const Records& a, const Records& b);

 private:
  absl::InlinedVector<Piece, 1> pieces_;
  bool is_null_ = false;
};

// The result of encoding a whole frame: the bytes to send, in order, as owned bytes with gaps
// for external ranges. `owned` holds every in-memory byte, including the 4-byte size prefix;
// each External is a gap of `length` bytes that sits in the stream just before
// owned[position]. The size prefix counts the external bytes. Send with:
//   for (const Chunk& c : frame.Chunks()) c.is_external ? sendfile(c.token, c.length)
//                                                      : write(c.bytes);
struct EncodedFrame {
  struct External {
    size_t position = 0;  // offset into `owned` before which the gap sits
    uint32_t length = 0;
    uint64_t token = 0;
  };
  struct Chunk {
    std::span<const uint8_t> bytes;  // when !is_external
    uint32_t length = 0;             // when is_external
    uint64_t token = 0;              // when is_external
    bool is_external = false;
  };

  std::vector<uint8_t> owned;
  std::vector<External> externals;  // sorted by position

  // Bytes on the wire, including the size prefix and the external ranges.
  size_t wire_size() const;
  // The frame as an ordered list of chunks (owned ranges are views into `owned`).
  std::vector<Chunk> Chunks() const;
  // Materializes the whole frame, asking `fill` for each external range (for tests and tools).
  std::vector<uint8_t> Flatten(
      absl::FunctionRef<void(uint64_t token, std::span<uint8_t> out)> fill) const;
};

// Reads Kafka primitives from a byte span. Every read checks the bytes remaining and fails
// with kOutOfRange (truncated input) or kInvalidArgument (a value no encoder produces);
// a failed read leaves the position unspecified. Views returned by the reader (records, spans)
// point into the input span.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }

  absl::Status ReadInt8(int8_t* v);
  absl::Status ReadInt16(int16_t* v);
  absl::Status ReadInt32(int32_t* v);
  absl::Status ReadInt64(int64_t* v);
  absl::Status ReadUint16(uint16_t* v);
  absl::Status ReadUint32(uint32_t* v);
  absl::Status ReadFloat64(double* v);
  absl::Status ReadBool(bool* v);
  absl::Status ReadUuid(Uuid* v);
  absl::Status ReadUnsignedVarint(uint32_t* v);
  absl::Status ReadVarint(int32_t* v);   // zig-zag
  absl::Status ReadVarlong(int64_t* v);  // zig-zag
  absl::Status ReadSpan(size_t n, std::span<const uint8_t>* out);
  absl::Status Skip(size_t n);

  // Strings: int16 length (classic) or unsigned varint length+1 (compact); -1/0 means null,
  // accepted only when `nullable`.
  absl::Status ReadString(bool compact, std::string* out);
  absl::Status ReadNullableString(bool compact, bool nullable, std::optional<std::string>* out);
  // Bytes: int32 length (classic) or unsigned varint length+1 (compact).
  absl::Status ReadBytes(bool compact, std::vector<uint8_t>* out);
  absl::Status ReadNullableBytes(bool compact, bool nullable,
                                 std::optional<std::vector<uint8_t>>* out);
  // Records: length-prefixed like bytes; the result borrows from the input.
  absl::Status ReadRecords(bool compact, bool nullable, Records* out);
  // An array count: int32 (classic) or unsigned varint count+1 (compact). Sets -1 for null
  // (only when `nullable`). Fails unless count * max(min_element_size, 1) bytes remain, so a
  // caller may reserve space for the count.
  absl::Status ReadArrayCount(bool compact, bool nullable, size_t min_element_size, int32_t* count);
  // Reads a tagged-field section, calling `on_field(tag, payload_reader)` for each field. The
  // callback returns whether it consumed the field; payloads of unknown tags are skipped, and
  // a known field's payload must be consumed exactly.
  absl::Status ReadTaggedFields(
      absl::FunctionRef<absl::Status(uint32_t tag, Reader& payload, bool* known)> on_field);

 private:
  absl::Status ReadLength(bool compact, bool wide, bool nullable, int32_t* len);

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

// Upper bound on the elements reserved ahead of decoding an array; larger arrays grow as their
// elements actually decode.
inline constexpr int32_t kMaxArrayReserve = 1024;

// Appends Kafka primitives to an in-memory buffer, with external gaps (AppendExternal) for
// zero-copy records. Writing cannot fail; values that do not fit their length prefix (a classic
// string over 32767 bytes) are truncated to fit, so callers must respect the protocol limits.
class Writer {
 public:
  Writer() = default;

  // Bytes written so far, external gaps included.
  size_t size() const { return bytes_.size() + external_bytes_; }

  void WriteInt8(int8_t v) { bytes_.push_back(static_cast<uint8_t>(v)); }
  void WriteInt16(int16_t v);
  void WriteInt32(int32_t v);
  void WriteInt64(int64_t v);
  void WriteUint16(uint16_t v);
  void WriteUint32(uint32_t v);
  void WriteFloat64(double v);
  void WriteBool(bool v) { bytes_.push_back(v ? 1 : 0); }
  void WriteUuid(const Uuid& v);
  void WriteUnsignedVarint(uint32_t v);
  void WriteVarint(int32_t v);
  void WriteVarlong(int64_t v);
  void WriteRaw(std::span<const uint8_t> bytes);

  void WriteString(bool compact, std::string_view s);
  // A null value in a version where the field is not nullable is written as empty.
  void WriteNullableString(bool compact, bool nullable, const std::optional<std::string>& s);
  void WriteBytes(bool compact, std::span<const uint8_t> b);
  void WriteNullableBytes(bool compact, bool nullable,
                          const std::optional<std::vector<uint8_t>>& b);
  void WriteRecords(bool compact, bool nullable, const Records& r);
  // count -1 writes null (the caller only does so where the array is nullable).
  void WriteArrayCount(bool compact, int32_t count);

  // A gap of `length` bytes that the sender fills from the range named by `token`.
  void AppendExternal(uint32_t length, uint64_t token);
  // Appends everything `other` holds (bytes and gaps).
  void Append(Writer&& other);

  // Overwrites 4 bytes at `offset` (which must already be written) with a big-endian int32.
  void PatchInt32(size_t offset, int32_t v);

  // Ends writing: the bytes written so far (offsets relative to the start of this writer).
  EncodedFrame Finish() &&;

 private:
  std::vector<uint8_t> bytes_;
  std::vector<EncodedFrame::External> externals_;
  size_t external_bytes_ = 0;
};

}  // namespace sluice::kafka
