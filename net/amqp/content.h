// Content header frames (frame type 2): the class, weight, body size and properties that
// follow a content-carrying method (basic.publish, basic.deliver, basic.get-ok,
// basic.return) and precede its body frames.
//
//   payload = class-id:u16  weight:u16 (0)  body-size:u64  property-flags:u16...  values
//
// Only class basic (60) carries content in 0-9-1; its properties are generated from
// methods.def (BasicProperties).

#ifndef SLUICE_NET_AMQP_CONTENT_H_
#define SLUICE_NET_AMQP_CONTENT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/amqp/methods.h"

namespace sluice::amqp {

struct ContentHeader {
  uint16_t class_id = kBasicClassId;
  uint16_t weight = 0;  // unused, always 0
  uint64_t body_size = 0;
  BasicProperties properties;
  friend bool operator==(const ContentHeader&, const ContentHeader&) = default;
};

// The fixed part of a content header and a view of its encoded properties (flag words and
// values), for a broker that stores and forwards properties without decoding them all.
// `encoded_properties` points into the payload passed in.
struct ContentHeaderView {
  uint16_t class_id = 0;
  uint16_t weight = 0;
  uint64_t body_size = 0;
  std::string_view encoded_properties;
};

// Splits a header frame payload. SYNTAX_ERROR if shorter than 14 bytes; the properties are
// not checked (DecodeContentHeader or BasicProperties::Decode check them).
absl::StatusOr<ContentHeaderView> PeekContentHeader(std::string_view payload);

// Decodes a header frame payload. SYNTAX_ERROR for malformed properties (unknown flags,
// truncated values, trailing bytes); COMMAND_INVALID for a class other than basic.
absl::StatusOr<ContentHeader> DecodeContentHeader(std::string_view payload);

// Appends the header frame payload.
absl::Status EncodeContentHeader(const ContentHeader& header, std::string* out);

}  // namespace sluice::amqp

#endif  // SLUICE_NET_AMQP_CONTENT_H_
