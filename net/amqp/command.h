// Assembles frames into commands: a method, plus for content-carrying methods the content
// header and the body gathered from the body frames that follow.
//
// Frames of different channels may interleave; within a channel, a content method must be
// followed by exactly one header frame and then body frames adding up to the declared body
// size, with no other method in between (AMQP 0-9-1 section 4.2.6).

#ifndef SLUICE_NET_AMQP_COMMAND_H_
#define SLUICE_NET_AMQP_COMMAND_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/amqp/content.h"
#include "net/amqp/frame.h"
#include "net/amqp/methods.h"

namespace sluice::amqp {

struct Command {
  uint16_t channel = 0;
  Method method;
  // Present for content-carrying methods (MethodInfo::has_content).
  std::optional<ContentHeader> header;
  // The body, copied once from the body frames (empty without content).
  std::string body;
  // Size of the content header frame's payload (the encoded properties, for memory
  // accounting of commands held by the broker).
  uint32_t header_bytes = 0;
};

// Not thread-safe; one per connection, fed in frame order.
class CommandAssembler {
 public:
  struct Options {
    // Largest body accepted (RabbitMQ's max_message_size default: 128 MiB). Larger bodies
    // are refused before any of their bytes are buffered.
    uint64_t max_body_size = uint64_t{128} << 20;
  };

  CommandAssembler() : CommandAssembler(Options()) {}
  explicit CommandAssembler(Options options) : options_(options) {}

  // Adds one frame. Returns a command when one is complete; nullopt for a heartbeat or for
  // a frame that is part of unfinished content. Errors carry a reply code (ReplyCodeOf):
  //  - SYNTAX_ERROR / COMMAND_INVALID from decoding a method or content header;
  //  - UNEXPECTED_FRAME for a header or body frame nobody waits for, a method frame in the
  //    middle of content, a header of another class, or a body longer than declared;
  //  - PRECONDITION_FAILED (a channel error) for a body larger than max_body_size: the
  //    rest of that body is then skipped, so the connection can go on while the broker
  //    closes the channel.
  absl::StatusOr<std::optional<Command>> Add(const Frame& frame);

  // Drops partial content of `channel` (after channel.close or channel.close-ok).
  void ResetChannel(uint16_t channel) { pending_.erase(channel); }
  // True while `channel` is between a content method and the end of its body.
  bool InContent(uint16_t channel) const { return pending_.contains(channel); }
  // Memory held by unfinished content (body capacity reserved so far), for accounting.
  uint64_t BufferedBytes() const;

 private:
  struct Pending {
    Command command;
    bool have_header = false;
    uint64_t discard = 0;  // bytes of a refused body still to skip
  };

  absl::StatusOr<std::optional<Command>> AddMethod(const Frame& frame);
  absl::StatusOr<std::optional<Command>> AddHeader(const Frame& frame);
  absl::StatusOr<std::optional<Command>> AddBody(const Frame& frame);
  std::optional<Command> Complete(uint16_t channel);

  Options options_;
  absl::flat_hash_map<uint16_t, Pending> pending_;
};

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_COMMAND_H_
