#include "net/amqp/frame.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "net/amqp/content.h"
#include "net/amqp/reply_codes.h"
#include "net/amqp/wire.h"

namespace sluice::amqp {

ProtocolHeaderMatch MatchProtocolHeader(std::string_view received) {
  const size_t n = std::min(received.size(), kProtocolHeader.size());
  if (received.substr(0, n) != kProtocolHeader.substr(0, n)) {
    return ProtocolHeaderMatch::kMismatch;
  }
  return n == kProtocolHeader.size() ? ProtocolHeaderMatch::kMatch : ProtocolHeaderMatch::kNeedMore;
}

// ---- FrameDecoder ----

FrameDecoder::FrameDecoder(uint32_t max_frame_size) { set_max_frame_size(max_frame_size); }

void FrameDecoder::set_max_frame_size(uint32_t max_frame_size) {
  if (max_frame_size == 0) max_frame_size = kNoLimitFrameMax;
  max_frame_size_ = std::max<uint32_t>(max_frame_size, kFrameOverhead);
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::Next(std::string_view* input) {
  if (!error_.ok()) return error_;
  const std::string_view in = *input;
  if (in.empty()) {
    bytes_needed_ = kFrameHeaderSize;
    return std::nullopt;
  }
  // The type octet alone is enough to reject garbage early.
  const uint8_t type = static_cast<uint8_t>(in[0]);
  if (type != 1 && type != 2 && type != 3 && type != 8) {
    error_ = AmqpError(ReplyCode::kUnexpectedFrame, absl::StrCat("unknown frame type ", type));
    return error_;
  }
  if (in.size() < kFrameHeaderSize) {
    bytes_needed_ = kFrameHeaderSize;
    return std::nullopt;
  }
  WireReader r(in.substr(0, kFrameHeaderSize));
  r.Octet();
  const uint16_t channel = r.Short();
  const uint32_t size = r.Long();
  // Checked before waiting for (or holding) any payload byte.
  if (size > max_frame_size_ - kFrameOverhead) {
    error_ = AmqpError(
        ReplyCode::kFrameError,
        absl::StrCat("frame payload of ", size, " bytes exceeds frame_max ", max_frame_size_, " (",
                     max_frame_size_ - kFrameOverhead, " bytes of payload)"));
    return error_;
  }
  const FrameType frame_type = static_cast<FrameType>(type);
  if (frame_type == FrameType::kHeartbeat && (channel != 0 || size != 0)) {
    error_ = AmqpError(ReplyCode::kFrameError,
                       absl::StrCat("heartbeat frame on channel ", channel, " with ", size,
                                    " payload bytes (must be channel 0, empty)"));
    return error_;
  }
  const size_t total = kFrameOverhead + size_t{size};
  if (in.size() < total) {
    bytes_needed_ = total;
    return std::nullopt;
  }
  const uint8_t end = static_cast<uint8_t>(in[total - 1]);
  if (end != kFrameEnd) {
    error_ = AmqpError(ReplyCode::kFrameError,
                       absl::StrCat("frame-end octet is 0x", absl::Hex(end), ", not 0xce"));
    return error_;
  }
  Frame frame;
  frame.type = frame_type;
  frame.channel = channel;
  frame.payload = in.substr(kFrameHeaderSize, size);
  input->remove_prefix(total);
  bytes_needed_ = kFrameHeaderSize;
  return frame;
}

// ---- FrameEncoder ----

FrameEncoder::FrameEncoder(uint32_t frame_max) {
  if (frame_max == 0) frame_max = FrameDecoder::kNoLimitFrameMax;
  frame_max_ = std::max<uint32_t>(frame_max, kFrameOverhead + 1);
  max_payload_ = frame_max_ - kFrameOverhead;
}

std::array<char, kFrameHeaderSize> FrameEncoder::FrameHeader(FrameType type, uint16_t channel,
                                                             uint32_t size) {
  return {static_cast<char>(type),       static_cast<char>(channel >> 8),
          static_cast<char>(channel),    static_cast<char>(size >> 24),
          static_cast<char>(size >> 16), static_cast<char>(size >> 8),
          static_cast<char>(size)};
}

absl::Status FrameEncoder::FinishFrame(size_t start, std::string* out) const {
  const size_t size = out->size() - start - kFrameHeaderSize;
  if (size > max_payload_) {
    out->resize(start);
    return AmqpError(ReplyCode::kFrameError, absl::StrCat("frame payload of ", size,
                                                          " bytes exceeds frame_max ", frame_max_));
  }
  PatchLong(out, start + 3, static_cast<uint32_t>(size));
  out->push_back(static_cast<char>(kFrameEnd));
  return absl::OkStatus();
}

absl::Status FrameEncoder::AppendMethod(uint16_t channel, const Method& method,
                                        std::string* out) const {
  return std::visit([&](const auto& m) { return AppendMethod(channel, m, out); }, method);
}

void FrameEncoder::AppendBody(uint16_t channel, std::string_view body, std::string* out) const {
  if (body.empty()) return;
  const size_t frames = (body.size() + max_payload_ - 1) / max_payload_;
  out->reserve(out->size() + body.size() + frames * kFrameOverhead);
  while (!body.empty()) {
    const size_t n = std::min(body.size(), max_payload_);
    const std::array<char, kFrameHeaderSize> header =
        FrameHeader(FrameType::kBody, channel, static_cast<uint32_t>(n));
    out->append(header.data(), header.size());
    out->append(body.data(), n);
    out->push_back(static_cast<char>(kFrameEnd));
    body.remove_prefix(n);
  }
}

absl::Status FrameEncoder::AppendContent(uint16_t channel, const BasicProperties& properties,
                                         std::string_view body, std::string* out) const {
  const size_t start = out->size();
  const std::array<char, kFrameHeaderSize> header = FrameHeader(FrameType::kHeader, channel, 0);
  out->append(header.data(), header.size());
  ContentHeader content;
  content.class_id = BasicProperties::kClassId;
  content.body_size = body.size();
  content.properties = properties;
  if (absl::Status st = EncodeContentHeader(content, out); !st.ok()) {
    out->resize(start);
    return st;
  }
  if (absl::Status st = FinishFrame(start, out); !st.ok()) return st;
  AppendBody(channel, body, out);
  return absl::OkStatus();
}

absl::Status FrameEncoder::AppendContentRaw(uint16_t channel, uint16_t class_id,
                                            std::string_view encoded_properties,
                                            std::string_view body, std::string* out) const {
  const size_t start = out->size();
  const std::array<char, kFrameHeaderSize> header = FrameHeader(FrameType::kHeader, channel, 0);
  out->append(header.data(), header.size());
  WireWriter w(out);
  w.Short(class_id);
  w.Short(0);
  w.LongLong(body.size());
  out->append(encoded_properties.data(), encoded_properties.size());
  if (absl::Status st = FinishFrame(start, out); !st.ok()) return st;
  AppendBody(channel, body, out);
  return absl::OkStatus();
}

void FrameEncoder::AppendHeartbeat(std::string* out) {
  const std::array<char, kFrameHeaderSize> header = FrameHeader(FrameType::kHeartbeat, 0, 0);
  out->append(header.data(), header.size());
  out->push_back(static_cast<char>(kFrameEnd));
}

}  // namespace sluice::amqp
