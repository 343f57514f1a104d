#include "net/amqp/reply_codes.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace sluice::amqp {
namespace {

// Status payload key under which AmqpError stores the reply code (two bytes, big-endian).
constexpr char kReplyCodePayload[] = "type.sluice.dev/amqp.ReplyCode";

struct CodeFacts {
  ReplyCode code;
  std::string_view name;
  ReplyScope scope;
};

constexpr CodeFacts kCodes[] = {
    {ReplyCode::kReplySuccess, "OK", ReplyScope::kNone},
    {ReplyCode::kContentTooLarge, "CONTENT_TOO_LARGE", ReplyScope::kChannel},
    {ReplyCode::kNoRoute, "NO_ROUTE", ReplyScope::kChannel},
    {ReplyCode::kNoConsumers, "NO_CONSUMERS", ReplyScope::kChannel},
    {ReplyCode::kConnectionForced, "CONNECTION_FORCED", ReplyScope::kConnection},
    {ReplyCode::kInvalidPath, "INVALID_PATH", ReplyScope::kConnection},
    {ReplyCode::kAccessRefused, "ACCESS_REFUSED", ReplyScope::kChannel},
    {ReplyCode::kNotFound, "NOT_FOUND", ReplyScope::kChannel},
    {ReplyCode::kResourceLocked, "RESOURCE_LOCKED", ReplyScope::kChannel},
    {ReplyCode::kPreconditionFailed, "PRECONDITION_FAILED", ReplyScope::kChannel},
    {ReplyCode::kFrameError, "FRAME_ERROR", ReplyScope::kConnection},
    {ReplyCode::kSyntaxError, "SYNTAX_ERROR", ReplyScope::kConnection},
    {ReplyCode::kCommandInvalid, "COMMAND_INVALID", ReplyScope::kConnection},
    {ReplyCode::kChannelError, "CHANNEL_ERROR", ReplyScope::kConnection},
    {ReplyCode::kUnexpectedFrame, "UNEXPECTED_FRAME", ReplyScope::kConnection},
    {ReplyCode::kResourceError, "RESOURCE_ERROR", ReplyScope::kConnection},
    {ReplyCode::kNotAllowed, "NOT_ALLOWED", ReplyScope::kConnection},
    {ReplyCode::kNotImplemented, "NOT_IMPLEMENTED", ReplyScope::kConnection},
    {ReplyCode::kInternalError, "INTERNAL_ERROR", ReplyScope::kConnection},
};

const CodeFacts* Find(ReplyCode code) {
  for (const CodeFacts& f : kCodes) {
    if (f.code == code) return &f;
  }
  return nullptr;
}

absl::StatusCode StatusCodeFor(ReplyCode code) {
  switch (code) {
    case ReplyCode::kReplySuccess:
      return absl::StatusCode::kOk;
    case ReplyCode::kFrameError:
      return absl::StatusCode::kDataLoss;
    case ReplyCode::kSyntaxError:
      return absl::StatusCode::kInvalidArgument;
    case ReplyCode::kCommandInvalid:
    case ReplyCode::kNotImplemented:
      return absl::StatusCode::kUnimplemented;
    case ReplyCode::kUnexpectedFrame:
    case ReplyCode::kChannelError:
    case ReplyCode::kPreconditionFailed:
      return absl::StatusCode::kFailedPrecondition;
    case ReplyCode::kContentTooLarge:
    case ReplyCode::kResourceError:
      return absl::StatusCode::kResourceExhausted;
    case ReplyCode::kNotFound:
      return absl::StatusCode::kNotFound;
    case ReplyCode::kAccessRefused:
    case ReplyCode::kNotAllowed:
      return absl::StatusCode::kPermissionDenied;
    case ReplyCode::kResourceLocked:
      return absl::StatusCode::kAborted;
    case ReplyCode::kConnectionForced:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

std::string_view ReplyName(ReplyCode code) {
  const CodeFacts* f = Find(code);
  return f == nullptr ? std::string_view("UNKNOWN_REPLY_CODE") : f->name;
}

ReplyScope ScopeOf(ReplyCode code) {
  const CodeFacts* f = Find(code);
  return f == nullptr ? ReplyScope::kConnection : f->scope;
}

std::string FormatReplyText(ReplyCode code, std::string_view explanation) {
  std::string text(ReplyName(code));
  if (!explanation.empty()) {
    text += " - ";
    text.append(explanation.data(), explanation.size());
  }
  if (text.size() > 255) text.resize(255);
  return text;
}

absl::Status AmqpError(ReplyCode code, std::string_view message) {
  absl::StatusCode status_code = StatusCodeFor(code);
  if (status_code == absl::StatusCode::kOk) status_code = absl::StatusCode::kInternal;
  absl::Status status(status_code, absl::string_view(message.data(), message.size()));
  const uint16_t v = static_cast<uint16_t>(code);
  const char bytes[2] = {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
  status.SetPayload(kReplyCodePayload, absl::Cord(absl::string_view(bytes, 2)));
  return status;
}

std::optional<ReplyCode> ReplyCodeOf(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(kReplyCodePayload);
  if (!payload.has_value() || payload->size() != 2) return std::nullopt;
  const std::string bytes(*payload);
  return static_cast<ReplyCode>((static_cast<uint8_t>(bytes[0]) << 8) |
                                static_cast<uint8_t>(bytes[1]));
}

absl::Status UnknownMethodError(uint16_t class_id, uint16_t method_id) {
  return AmqpError(ReplyCode::kCommandInvalid,
                   absl::StrCat("unknown method class_id=", class_id, " method_id=", method_id));
}

}  // namespace sluice::amqp
