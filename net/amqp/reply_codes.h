// AMQP 0-9-1 reply codes, RabbitMQ's names for them, and whether each closes the channel
// (soft error, channel.close) or the whole connection (hard error, connection.close).
//
// Codec errors are absl::Status values that carry a reply code as a payload: AmqpError()
// makes one, ReplyCodeOf() reads it back, so the broker can answer a bad frame with the
// right connection.close without parsing messages.

#ifndef SLUICE_NET_AMQP_REPLY_CODES_H_
#define SLUICE_NET_AMQP_REPLY_CODES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sluice::amqp {

enum class ReplyCode : uint16_t {
  kReplySuccess = 200,  // normal channel.close / connection.close
  kContentTooLarge = 311,
  kNoRoute = 312,  // basic.return of a mandatory message (RabbitMQ)
  kNoConsumers = 313,
  kConnectionForced = 320,
  kInvalidPath = 402,
  kAccessRefused = 403,
  kNotFound = 404,
  kResourceLocked = 405,
  kPreconditionFailed = 406,
  kFrameError = 501,
  kSyntaxError = 502,
  kCommandInvalid = 503,
  kChannelError = 504,
  kUnexpectedFrame = 505,
  kResourceError = 506,
  kNotAllowed = 530,
  kNotImplemented = 540,
  kInternalError = 541,
};

// Who a reply code closes. 504 CHANNEL_ERROR is a connection error despite its name: it
// reports a misuse of channels (e.g. a method on a channel that is not open).
enum class ReplyScope : uint8_t {
  kNone,        // 200: not an error
  kChannel,     // soft error: the server sends channel.close, the connection lives on
  kConnection,  // hard error: the server sends connection.close on channel 0
};

// RabbitMQ's name for a code: "NOT_FOUND", "FRAME_ERROR", ... ("OK" for 200);
// "UNKNOWN_REPLY_CODE" for a value outside the enum.
std::string_view ReplyName(ReplyCode code);

// kNone for 200, kConnection for codes outside the enum.
ReplyScope ScopeOf(ReplyCode code);
inline bool IsHardError(ReplyCode code) { return ScopeOf(code) == ReplyScope::kConnection; }
inline bool IsSoftError(ReplyCode code) { return ScopeOf(code) == ReplyScope::kChannel; }

// The reply-text RabbitMQ sends, "NOT_FOUND - no queue 'q' in vhost '/'", cut to the 255
// bytes a shortstr holds.
std::string FormatReplyText(ReplyCode code, std::string_view explanation);

// A codec error: an absl::Status whose code follows the kind of failure and whose payload
// holds `code`. The message is the explanation part of a reply text.
absl::Status AmqpError(ReplyCode code, std::string_view message);

// The reply code carried by an error from AmqpError(); nullopt for OK or for errors made
// elsewhere (the caller decides, usually INTERNAL_ERROR).
std::optional<ReplyCode> ReplyCodeOf(const absl::Status& status);

// COMMAND_INVALID for a method (class_id, method_id) the codec does not know.
absl::Status UnknownMethodError(uint16_t class_id, uint16_t method_id);

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_REPLY_CODES_H_
