#include "net/amqp/command.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "net/amqp/reply_codes.h"

namespace sluice::amqp {

absl::StatusOr<std::optional<Command>> CommandAssembler::Add(const Frame& frame) {
  switch (frame.type) {
    case FrameType::kMethod:
      return AddMethod(frame);
    case FrameType::kHeader:
      return AddHeader(frame);
    case FrameType::kBody:
      return AddBody(frame);
    case FrameType::kHeartbeat:
      return std::nullopt;
  }
  return AmqpError(ReplyCode::kUnexpectedFrame,
                   absl::StrCat("unknown frame type ", static_cast<int>(frame.type)));
}

absl::StatusOr<std::optional<Command>> CommandAssembler::AddMethod(const Frame& frame) {
  if (auto it = pending_.find(frame.channel); it != pending_.end()) {
    if (it->second.discard == 0) {
      return AmqpError(ReplyCode::kUnexpectedFrame,
                       absl::StrCat("method frame on channel ", frame.channel,
                                    " while its content is incomplete"));
    }
    // A refused body was cut short: the client gave up on it.
    pending_.erase(it);
  }
  absl::StatusOr<Method> method = DecodeMethodPayload(frame.payload);
  if (!method.ok()) return method.status();
  Command command;
  command.channel = frame.channel;
  command.method = *std::move(method);
  if (!InfoOf(command.method).has_content) return command;
  pending_[frame.channel].command = std::move(command);
  return std::nullopt;
}

absl::StatusOr<std::optional<Command>> CommandAssembler::AddHeader(const Frame& frame) {
  auto it = pending_.find(frame.channel);
  if (it == pending_.end() || it->second.have_header) {
    return AmqpError(ReplyCode::kUnexpectedFrame,
                     absl::StrCat("content header frame on channel ", frame.channel,
                                  " not after a content method"));
  }
  Pending& p = it->second;
  absl::StatusOr<ContentHeader> header = DecodeContentHeader(frame.payload);
  if (!header.ok()) return header.status();
  const MethodInfo& info = InfoOf(p.command.method);
  if (header->class_id != info.class_id) {
    return AmqpError(ReplyCode::kUnexpectedFrame,
                     absl::StrCat("content header of class ", header->class_id, " after ",
                                  std::string(info.name)));
  }
  p.have_header = true;
  p.command.header_bytes = static_cast<uint32_t>(frame.payload.size());
  if (header->body_size > options_.max_body_size) {
    p.discard = header->body_size;  // > 0: skip the body frames still to come
    return AmqpError(ReplyCode::kPreconditionFailed,
                     absl::StrCat("message size ", header->body_size,
                                  " is larger than configured max size ", options_.max_body_size));
  }
  // Safe: body_size was just bounded by max_body_size.
  p.command.body.reserve(header->body_size);
  p.command.header = *std::move(header);
  if (p.command.header->body_size == 0) return Complete(frame.channel);
  return std::nullopt;
}

absl::StatusOr<std::optional<Command>> CommandAssembler::AddBody(const Frame& frame) {
  auto it = pending_.find(frame.channel);
  if (it == pending_.end() || !it->second.have_header) {
    return AmqpError(ReplyCode::kUnexpectedFrame,
                     absl::StrCat("content body frame on channel ", frame.channel,
                                  " not after a content header"));
  }
  Pending& p = it->second;
  if (p.discard > 0) {
    if (frame.payload.size() > p.discard) {
      return AmqpError(ReplyCode::kUnexpectedFrame,
                       absl::StrCat("content body on channel ", frame.channel,
                                    " longer than its declared size"));
    }
    p.discard -= frame.payload.size();
    if (p.discard == 0) pending_.erase(it);
    return std::nullopt;
  }
  const uint64_t expected = p.command.header->body_size;
  if (frame.payload.size() > expected - p.command.body.size()) {
    return AmqpError(ReplyCode::kUnexpectedFrame,
                     absl::StrCat("content body on channel ", frame.channel, " exceeds ", expected,
                                  " declared bytes"));
  }
  p.command.body.append(frame.payload.data(), frame.payload.size());
  if (p.command.body.size() == expected) return Complete(frame.channel);
  return std::nullopt;
}

std::optional<Command> CommandAssembler::Complete(uint16_t channel) {
  auto it = pending_.find(channel);
  Command command = std::move(it->second.command);
  pending_.erase(it);
  return command;
}

uint64_t CommandAssembler::BufferedBytes() const {
  uint64_t total = 0;
  for (const auto& [channel, p] : pending_) {
    total += sizeof(Pending) + p.command.body.capacity() + p.command.header_bytes;
  }
  return total;
}

}  // namespace sluice::amqp
