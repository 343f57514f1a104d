// AMQP 0-9-1 framing: the protocol header, the frame layout, an incremental decoder and an
// encoder. Format and limits: net/amqp/PROTOCOL.md.
//
//   frame = type:u8  channel:u16  size:u32  payload:size bytes  frame-end:u8 (0xCE)
//
// Types: 1 method, 2 content header, 3 content body, 8 heartbeat. frame_max (negotiated by
// connection.tune/tune-ok) bounds the whole frame, the 8 bytes of header and frame-end
// included, so a payload holds at most frame_max - 8 bytes.

#ifndef SLUICE_NET_AMQP_FRAME_H_
#define SLUICE_NET_AMQP_FRAME_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/amqp/methods.h"

namespace sluice::amqp {

// What a 0-9-1 client sends first, and what a server answers (then closes) to any other
// protocol header.
inline constexpr std::string_view kProtocolHeader("AMQP\x00\x00\x09\x01", 8);

enum class ProtocolHeaderMatch {
  kNeedMore,  // a prefix of the 0-9-1 header: wait for more bytes
  kMatch,     // the first 8 bytes are the 0-9-1 header
  kMismatch,  // something else: send kProtocolHeader and close the socket
};

// Checks the first bytes a client sent. Decides as soon as one byte differs, so an HTTP
// request or an AMQP 1.0 header is rejected without waiting for 8 bytes.
ProtocolHeaderMatch MatchProtocolHeader(std::string_view received);

enum class FrameType : uint8_t {
  kMethod = 1,
  kHeader = 2,
  kBody = 3,
  kHeartbeat = 8,
};

inline constexpr uint8_t kFrameEnd = 0xCE;
inline constexpr size_t kFrameHeaderSize = 7;                   // type, channel, size
inline constexpr size_t kFrameOverhead = kFrameHeaderSize + 1;  // + frame-end
// The smallest frame_max a peer may propose (and the limit before tuning, per the spec).
inline constexpr uint32_t kFrameMinSize = 4096;
// RabbitMQ's default frame_max.
inline constexpr uint32_t kDefaultFrameMax = 131072;

// One decoded frame. `payload` points into the bytes given to FrameDecoder::Next(): it is
// valid only as long as the caller keeps those bytes in place.
struct Frame {
  FrameType type = FrameType::kHeartbeat;
  uint16_t channel = 0;
  std::string_view payload;
};

// Cuts frames out of a stream of bytes received after the protocol header. It owns no
// buffer and never allocates: the caller keeps received bytes contiguous and calls Next()
// until it returns nullopt, then drops the consumed prefix and receives more.
//
// The declared size is checked against max_frame_size as soon as the 7 header bytes are
// present, before waiting for (or buffering) the payload, so a hostile size costs nothing.
// An error is final: the stream cannot be resynchronised, and every later call returns the
// same error. Errors carry a reply code (ReplyCodeOf): FRAME_ERROR for an oversized frame,
// a wrong frame-end octet or a malformed heartbeat, UNEXPECTED_FRAME for an unknown type.
class FrameDecoder {
 public:
  // `max_frame_size` is frame_max: header and frame-end included; at least kFrameOverhead.
  explicit FrameDecoder(uint32_t max_frame_size = kDefaultFrameMax);

  // Called with the negotiated frame_max after connection.tune-ok (0 means "no limit" in
  // the protocol; it is taken as kNoLimitFrameMax).
  void set_max_frame_size(uint32_t max_frame_size);
  uint32_t max_frame_size() const { return max_frame_size_; }
  static constexpr uint32_t kNoLimitFrameMax = 0xFFFFFFFF;

  // Decodes the frame at the front of *input. On a complete frame, advances *input past it
  // and returns the frame (its payload is a view into the bytes *input pointed at). On a
  // partial frame, leaves *input unchanged and returns nullopt; bytes_needed() then tells
  // how many bytes the whole frame takes (or 7 while the header is incomplete).
  absl::StatusOr<std::optional<Frame>> Next(std::string_view* input);

  size_t bytes_needed() const { return bytes_needed_; }

 private:
  uint32_t max_frame_size_;
  size_t bytes_needed_ = kFrameHeaderSize;
  absl::Status error_;
};

// Writes frames into a caller's output string, splitting content bodies at frame_max.
class FrameEncoder {
 public:
  // `frame_max` as negotiated (0 = no limit); at least kFrameOverhead + 1 otherwise.
  explicit FrameEncoder(uint32_t frame_max = kDefaultFrameMax);

  uint32_t frame_max() const { return frame_max_; }
  // The largest payload of one frame (frame_max - 8).
  size_t max_payload() const { return max_payload_; }

  // A method frame. Fails (FRAME_ERROR) if the method does not fit in one frame, or
  // (SYNTAX_ERROR) if an argument is too long for its type; *out is left unchanged then.
  absl::Status AppendMethod(uint16_t channel, const Method& method, std::string* out) const;
  template <typename M>
  requires requires { M::kClassId; }
  absl::Status AppendMethod(uint16_t channel, const M& method, std::string* out) const;

  // The frames of one content-carrying command after its method frame: a content header
  // frame, then the body split into frames of at most max_payload() bytes (none when the
  // body is empty). The body is copied once, into *out.
  absl::Status AppendContent(uint16_t channel, const BasicProperties& properties,
                             std::string_view body, std::string* out) const;
  // The same with properties already encoded (flag words + values, as PeekContentHeader
  // returns them): a stored message is delivered without re-encoding its properties.
  absl::Status AppendContentRaw(uint16_t channel, uint16_t class_id,
                                std::string_view encoded_properties, std::string_view body,
                                std::string* out) const;

  // The 7-byte header of one body frame carrying `size` bytes, for a caller that sends
  // header, body slice and kFrameEnd with scatter-gather I/O instead of copying the body.
  static std::array<char, kFrameHeaderSize> FrameHeader(FrameType type, uint16_t channel,
                                                        uint32_t size);

  static void AppendHeartbeat(std::string* out);

 private:
  absl::Status FinishFrame(size_t start, std::string* out) const;
  void AppendBody(uint16_t channel, std::string_view body, std::string* out) const;

  uint32_t frame_max_;
  size_t max_payload_;
};

template <typename M>
requires requires { M::kClassId; }
absl::Status FrameEncoder::AppendMethod(uint16_t channel, const M& method, std::string* out) const {
  const size_t start = out->size();
  const std::array<char, kFrameHeaderSize> header = FrameHeader(FrameType::kMethod, channel, 0);
  out->append(header.data(), header.size());
  if (absl::Status st = EncodeMethodPayload(method, out); !st.ok()) {
    out->resize(start);
    return st;
  }
  return FinishFrame(start, out);
}

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_FRAME_H_
