// Frame layer: protocol header detection, the incremental FrameDecoder on valid and hostile
// input, and the FrameEncoder (method, content split at frame_max, heartbeat).

#include "net/amqp/frame.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/amqp/command.h"
#include "net/amqp/content.h"
#include "net/amqp/reply_codes.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

using testing_util::B;
using testing_util::Be16;
using testing_util::Be32;
using testing_util::Hex;
using testing_util::RawFrame;

TEST(ProtocolHeaderTest, ExactBytes) { EXPECT_EQ(Hex(kProtocolHeader), "414d515000000901"); }

TEST(ProtocolHeaderTest, Matches) {
  EXPECT_EQ(MatchProtocolHeader(""), ProtocolHeaderMatch::kNeedMore);
  EXPECT_EQ(MatchProtocolHeader("AMQ"), ProtocolHeaderMatch::kNeedMore);
  EXPECT_EQ(MatchProtocolHeader(kProtocolHeader.substr(0, 7)), ProtocolHeaderMatch::kNeedMore);
  EXPECT_EQ(MatchProtocolHeader(kProtocolHeader), ProtocolHeaderMatch::kMatch);
  EXPECT_EQ(MatchProtocolHeader(std::string(kProtocolHeader) + "\x01\x00"),
            ProtocolHeaderMatch::kMatch);
}

TEST(ProtocolHeaderTest, OtherProtocolsAreRejected) {
  EXPECT_EQ(MatchProtocolHeader("GET / HTTP/1.1\r\n"), ProtocolHeaderMatch::kMismatch);
  EXPECT_EQ(MatchProtocolHeader("G"), ProtocolHeaderMatch::kMismatch);
  // AMQP 1.0, 0-9 and 0-8 (as Qpid/old RabbitMQ clients send them).
  EXPECT_EQ(MatchProtocolHeader(std::string("AMQP\x00\x01\x00\x00", 8)),
            ProtocolHeaderMatch::kMismatch);
  EXPECT_EQ(MatchProtocolHeader(std::string("AMQP\x01\x01\x00\x09", 8)),
            ProtocolHeaderMatch::kMismatch);
  EXPECT_EQ(MatchProtocolHeader(std::string("AMQP\x01\x01\x08\x00", 8)),
            ProtocolHeaderMatch::kMismatch);
  EXPECT_EQ(MatchProtocolHeader(std::string("AMQP\x00\x00\x09\x00", 8)),
            ProtocolHeaderMatch::kMismatch);
  EXPECT_EQ(MatchProtocolHeader(std::string("AMQP\x03", 5)), ProtocolHeaderMatch::kMismatch);
}

const std::string kChannelOpenPayload = B({0x00, 0x14, 0x00, 0x0a, 0x00});

TEST(FrameDecoderTest, DecodesOneFrame) {
  const std::string bytes = RawFrame(1, 7, kChannelOpenPayload);
  std::string_view in = bytes;
  FrameDecoder decoder;
  absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->type, FrameType::kMethod);
  EXPECT_EQ((*f)->channel, 7);
  EXPECT_EQ((*f)->payload, kChannelOpenPayload);
  // The payload is a view into the caller's bytes, not a copy.
  EXPECT_EQ((*f)->payload.data(), bytes.data() + 7);
  EXPECT_TRUE(in.empty());
  f = decoder.Next(&in);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->has_value());
}

std::string SampleStream() {
  return RawFrame(1, 1, kChannelOpenPayload) + RawFrame(8, 0, "") +
         RawFrame(2, 1, std::string(14, '\0')) + RawFrame(3, 1, "body bytes") +
         RawFrame(3, 65535, "") + RawFrame(1, 0, B({0, 10, 0, 51}));
}

struct Seen {
  FrameType type;
  uint16_t channel;
  std::string payload;
  bool operator==(const Seen&) const = default;
};

std::vector<Seen> DecodeAll(std::string_view in) {
  FrameDecoder decoder;
  std::vector<Seen> seen;
  while (true) {
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok() || !f->has_value()) break;
    seen.push_back({(*f)->type, (*f)->channel, std::string((*f)->payload)});
  }
  EXPECT_TRUE(in.empty());
  return seen;
}

TEST(FrameDecoderTest, DecodesAStreamFedOneByteAtATime) {
  const std::string stream = SampleStream();
  const std::vector<Seen> expected = DecodeAll(stream);
  ASSERT_EQ(expected.size(), 6u);

  FrameDecoder decoder;
  std::string buffer;  // what a connection would hold
  std::vector<Seen> seen;
  for (char c : stream) {
    buffer.push_back(c);
    std::string_view in = buffer;
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
      ASSERT_TRUE(f.ok()) << f.status();
      if (!f->has_value()) break;
      seen.push_back({(*f)->type, (*f)->channel, std::string((*f)->payload)});
    }
    buffer.erase(0, buffer.size() - in.size());
  }
  EXPECT_EQ(seen, expected);
  EXPECT_TRUE(buffer.empty());
}

TEST(FrameDecoderTest, EveryTruncationWaitsForMoreWithoutConsuming) {
  const std::string frame = RawFrame(3, 2, std::string(100, 'x'));
  for (size_t n = 0; n < frame.size(); ++n) {
    FrameDecoder decoder;
    std::string_view in(frame.data(), n);
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    ASSERT_TRUE(f.ok()) << "prefix " << n << ": " << f.status();
    EXPECT_FALSE(f->has_value()) << "prefix " << n;
    EXPECT_EQ(in.size(), n);
    EXPECT_EQ(decoder.bytes_needed(), n < 7 ? 7u : frame.size());
  }
}

TEST(FrameDecoderTest, BadFrameEndIsFrameError) {
  std::string bytes = RawFrame(1, 1, kChannelOpenPayload, /*frame_end=*/0xCF);
  std::string_view in = bytes;
  FrameDecoder decoder;
  absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(ReplyCodeOf(f.status()), ReplyCode::kFrameError);
  // Errors are final, even if good bytes follow.
  const std::string good = RawFrame(8, 0, "");
  std::string_view good_in = good;
  EXPECT_EQ(ReplyCodeOf(decoder.Next(&good_in).status()), ReplyCode::kFrameError);
}

TEST(FrameDecoderTest, OversizedFrameIsRejectedFromItsHeaderAlone) {
  FrameDecoder decoder(4096);
  // Largest allowed payload: frame_max - 8.
  const std::string ok = RawFrame(3, 1, std::string(4096 - 8, 'x'));
  std::string_view in = ok;
  absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->has_value());
  // One byte more: only the 7 header bytes are needed to refuse it.
  const std::string header = B({3, 0, 1}) + Be32(4096 - 7);
  in = header;
  f = decoder.Next(&in);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(ReplyCodeOf(f.status()), ReplyCode::kFrameError);
  EXPECT_THAT(std::string(f.status().message()), testing::HasSubstr("frame_max"));
}

TEST(FrameDecoderTest, DeclaredSizeOfFourGigabytesIsRefusedImmediately) {
  for (uint32_t max : {kFrameMinSize, kDefaultFrameMax, FrameDecoder::kNoLimitFrameMax}) {
    FrameDecoder decoder(max);
    const std::string header = B({1, 0, 0, 0xff, 0xff, 0xff, 0xff});
    std::string_view in = header;
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    ASSERT_FALSE(f.ok()) << max;
    EXPECT_EQ(ReplyCodeOf(f.status()), ReplyCode::kFrameError);
  }
}

TEST(FrameDecoderTest, UnknownFrameTypeIsUnexpectedFrame) {
  for (int type : {0, 4, 5, 7, 9, 0x41 /* 'A' */, 0xCE, 0xff}) {
    FrameDecoder decoder;
    // One byte is enough to decide.
    const std::string bytes = B({type});
    std::string_view in = bytes;
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    ASSERT_FALSE(f.ok()) << type;
    EXPECT_EQ(ReplyCodeOf(f.status()), ReplyCode::kUnexpectedFrame);
  }
  // E.g. a client that sends its protocol header twice.
  FrameDecoder decoder;
  std::string_view in = kProtocolHeader;
  EXPECT_EQ(ReplyCodeOf(decoder.Next(&in).status()), ReplyCode::kUnexpectedFrame);
}

TEST(FrameDecoderTest, MalformedHeartbeatsAreFrameErrors) {
  for (const std::string& bytes : {RawFrame(8, 1, ""), RawFrame(8, 0, "x")}) {
    FrameDecoder decoder;
    std::string_view in = bytes;
    EXPECT_EQ(ReplyCodeOf(decoder.Next(&in).status()), ReplyCode::kFrameError);
  }
}

TEST(FrameDecoderTest, MaxFrameSizeCanBeRaisedAfterTuning) {
  FrameDecoder decoder(kFrameMinSize);
  decoder.set_max_frame_size(kDefaultFrameMax);
  const std::string big = RawFrame(3, 1, std::string(100000, 'x'));
  std::string_view in = big;
  absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->has_value());
  decoder.set_max_frame_size(0);  // "no limit"
  EXPECT_EQ(decoder.max_frame_size(), FrameDecoder::kNoLimitFrameMax);
}

TEST(FrameEncoderTest, HeartbeatBytes) {
  std::string out;
  FrameEncoder::AppendHeartbeat(&out);
  EXPECT_EQ(Hex(out), "08000000000000ce");
}

TEST(FrameEncoderTest, MethodFrameBytes) {
  std::string out;
  FrameEncoder encoder;
  ASSERT_TRUE(encoder.AppendMethod(1, ChannelOpen(), &out).ok());
  EXPECT_EQ(Hex(out),
            "0100010000000500140"
            "00a00ce");
  out.clear();
  ASSERT_TRUE(encoder.AppendMethod(0, Method(ConnectionCloseOk()), &out).ok());
  EXPECT_EQ(Hex(out),
            "010000000000040"
            "00a0033ce");
}

TEST(FrameEncoderTest, MethodLargerThanFrameMaxIsFrameError) {
  FrameEncoder encoder(kFrameMinSize);
  QueueDeclare declare;
  declare.arguments.Append("big", FieldValue(std::string(kFrameMinSize, 'x')));
  std::string out = "prefix";
  EXPECT_EQ(ReplyCodeOf(encoder.AppendMethod(1, declare, &out)), ReplyCode::kFrameError);
  EXPECT_EQ(out, "prefix");
}

// Decodes frames with FrameDecoder and assembles them; returns the single command.
Command AssembleOne(std::string_view bytes, uint32_t frame_max) {
  FrameDecoder decoder(frame_max);
  CommandAssembler assembler;
  std::optional<Command> result;
  while (!bytes.empty()) {
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&bytes);
    EXPECT_TRUE(f.ok() && f->has_value());
    if (!f.ok() || !f->has_value()) break;
    absl::StatusOr<std::optional<Command>> c = assembler.Add(**f);
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok() && c->has_value()) {
      EXPECT_FALSE(result.has_value());
      result = std::move(**c);
    }
  }
  EXPECT_TRUE(result.has_value());
  return result.has_value() ? std::move(*result) : Command();
}

TEST(FrameEncoderTest, OneMebibyteBodySplitsAtFrameMax) {
  constexpr uint32_t kFrameMax = 131072;
  std::string body(1 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7 + (i >> 9));
  FrameEncoder encoder(kFrameMax);
  EXPECT_EQ(encoder.max_payload(), kFrameMax - 8);
  BasicPublish publish;
  publish.exchange = "x";
  publish.routing_key = "k";
  BasicProperties props;
  props.content_type = "application/octet-stream";
  props.delivery_mode = 2;
  std::string out;
  ASSERT_TRUE(encoder.AppendMethod(3, publish, &out).ok());
  ASSERT_TRUE(encoder.AppendContent(3, props, body, &out).ok());

  // Frame sizes: method, header, 8 full body frames of 131064 bytes, one of 64.
  std::vector<size_t> body_sizes;
  std::string_view in = out;
  FrameDecoder decoder(kFrameMax);
  int frames = 0;
  while (!in.empty()) {
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    ASSERT_TRUE(f.ok() && f->has_value());
    EXPECT_EQ((*f)->channel, 3);
    if ((*f)->type == FrameType::kBody) body_sizes.push_back((*f)->payload.size());
    ++frames;
  }
  EXPECT_EQ(frames, 11);
  std::vector<size_t> expected(8, kFrameMax - 8);
  expected.push_back((1 << 20) - 8 * (kFrameMax - 8));
  EXPECT_EQ(body_sizes, expected);
  EXPECT_EQ(expected.back(), 64u);

  Command c = AssembleOne(out, kFrameMax);
  EXPECT_EQ(std::get<BasicPublish>(c.method), publish);
  ASSERT_TRUE(c.header.has_value());
  EXPECT_EQ(c.header->body_size, body.size());
  EXPECT_EQ(c.header->properties, props);
  EXPECT_TRUE(c.body == body);
}

TEST(FrameEncoderTest, EmptyBodyHasNoBodyFrames) {
  FrameEncoder encoder;
  std::string out;
  ASSERT_TRUE(encoder.AppendContent(1, BasicProperties(), "", &out).ok());
  // One header frame: class 60, weight 0, size 0, flags 0.
  EXPECT_EQ(Hex(out),
            "0200010000000e"
            "003c0000"
            "0000000000000000"
            "0000"
            "ce");
}

TEST(FrameEncoderTest, RawPropertiesMatchEncodedOnes) {
  FrameEncoder encoder(kFrameMinSize);
  BasicProperties props;
  props.message_id = "m";
  props.headers = FieldTable{{"k", FieldValue(int64_t{1})}};
  std::string encoded;
  ASSERT_TRUE(props.Encode(&encoded).ok());
  const std::string body(10000, 'b');
  std::string a, b;
  ASSERT_TRUE(encoder.AppendContent(9, props, body, &a).ok());
  ASSERT_TRUE(encoder.AppendContentRaw(9, 60, encoded, body, &b).ok());
  EXPECT_EQ(Hex(a), Hex(b));
}

TEST(FrameEncoderTest, HeaderLargerThanFrameMaxIsFrameError) {
  FrameEncoder encoder(kFrameMinSize);
  BasicProperties props;
  props.headers = FieldTable{{"big", FieldValue(std::string(kFrameMinSize, 'x'))}};
  std::string out;
  EXPECT_EQ(ReplyCodeOf(encoder.AppendContent(1, props, "body", &out)), ReplyCode::kFrameError);
  EXPECT_TRUE(out.empty());
}

TEST(FrameEncoderTest, ZeroCopyFrameHeader) {
  const auto header = FrameEncoder::FrameHeader(FrameType::kBody, 0x0102, 0x0a0b0c0d);
  EXPECT_EQ(Hex(std::string_view(header.data(), header.size())), "0301020a0b0c0d");
}

}  // namespace
}  // namespace sluice::amqp
