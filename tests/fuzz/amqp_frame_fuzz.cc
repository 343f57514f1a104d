// Feeds arbitrary bytes to the AMQP frame decoder, as a client stream arriving in chunks,
// and decodes every frame: methods, content headers, commands. Decoded methods and headers
// must re-encode and decode to the same value. Nothing may crash, leak or read out of
// bounds.
//
// Input layout: byte 0 picks the chunk size (1..256) the stream is fed in and whether a
// protocol header is expected first; the rest is the stream.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "net/amqp/command.h"
#include "net/amqp/content.h"
#include "net/amqp/frame.h"
#include "net/amqp/methods.h"
#include "net/amqp/reply_codes.h"

namespace {

using namespace sluice::amqp;  // NOLINT(build/namespaces): a test driver

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckMethodRoundTrip(std::string_view payload) {
  absl::StatusOr<Method> method = DecodeMethodPayload(payload);
  if (!method.ok()) {
    Check(ReplyCodeOf(method.status()).has_value());
    return;
  }
  (void)DebugString(*method);
  std::string again;
  Check(EncodeMethodPayload(*method, &again).ok());
  // Compare encodings, not values: a table may hold a NaN, which is unequal to itself.
  absl::StatusOr<Method> twice = DecodeMethodPayload(again);
  Check(twice.ok() && IdOf(*twice) == IdOf(*method));
  std::string thrice;
  Check(EncodeMethodPayload(*twice, &thrice).ok() && thrice == again);
}

void CheckHeaderRoundTrip(std::string_view payload) {
  absl::StatusOr<ContentHeader> header = DecodeContentHeader(payload);
  if (!header.ok()) {
    Check(ReplyCodeOf(header.status()).has_value());
    return;
  }
  (void)header->properties.DebugString();
  std::string again;
  Check(EncodeContentHeader(*header, &again).ok());
  absl::StatusOr<ContentHeader> twice = DecodeContentHeader(again);
  Check(twice.ok());
  std::string thrice;
  Check(EncodeContentHeader(*twice, &thrice).ok() && thrice == again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = (data[0] & 0x7f) + 1;
  const bool expect_header = (data[0] & 0x80) == 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  FrameDecoder decoder(kFrameMinSize);
  CommandAssembler assembler(CommandAssembler::Options{.max_body_size = 1 << 20});
  std::string buffer;
  bool header_done = !expect_header;
  for (size_t pos = 0; pos < input.size(); pos += chunk) {
    buffer.append(input.substr(pos, chunk));
    std::string_view in = buffer;
    if (!header_done) {
      const ProtocolHeaderMatch match = MatchProtocolHeader(in);
      if (match == ProtocolHeaderMatch::kMismatch) return 0;
      if (match == ProtocolHeaderMatch::kNeedMore) continue;
      in.remove_prefix(kProtocolHeader.size());
      header_done = true;
    }
    while (true) {
      absl::StatusOr<std::optional<Frame>> frame = decoder.Next(&in);
      if (!frame.ok()) {
        Check(ReplyCodeOf(frame.status()).has_value());
        return 0;
      }
      if (!frame->has_value()) {
        Check(decoder.bytes_needed() <= decoder.max_frame_size());
        break;
      }
      const Frame& f = **frame;
      Check(f.payload.size() + kFrameOverhead <= decoder.max_frame_size());
      if (f.type == FrameType::kMethod) CheckMethodRoundTrip(f.payload);
      if (f.type == FrameType::kHeader) CheckHeaderRoundTrip(f.payload);
      absl::StatusOr<std::optional<Command>> command = assembler.Add(f);
      if (!command.ok()) {
        Check(ReplyCodeOf(command.status()).has_value());
        continue;  // the broker would close; keep exercising the assembler
      }
      if (command->has_value()) {
        if (const auto* tune_ok = std::get_if<ConnectionTuneOk>(&(*command)->method)) {
          // Raise the limit as a broker would after tuning, within reason for the fuzzer.
          decoder.set_max_frame_size(tune_ok->frame_max < kFrameMinSize ? kFrameMinSize
                                     : tune_ok->frame_max > (1u << 20)  ? (1u << 20)
                                                                        : tune_ok->frame_max);
        }
      }
    }
    buffer.erase(0, buffer.size() - in.size());
  }
  return 0;
}
