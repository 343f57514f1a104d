// CommandAssembler: methods with content, interleaved channels, frame order violations,
// and the body size limit.

#include "net/amqp/command.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "net/amqp/reply_codes.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

// Owns the bytes of encoded frames and hands out Frame views of them.
class Frames {
 public:
  explicit Frames(uint32_t frame_max = kFrameMinSize) : encoder_(frame_max) {}

  template <typename M>
  Frames& Method(uint16_t channel, const M& m) {
    std::string out;
    EXPECT_TRUE(encoder_.AppendMethod(channel, m, &out).ok());
    return Split(out);
  }
  Frames& Content(uint16_t channel, const BasicProperties& p, std::string_view body) {
    std::string out;
    EXPECT_TRUE(encoder_.AppendContent(channel, p, body, &out).ok());
    return Split(out);
  }
  Frames& Heartbeat() {
    std::string out;
    FrameEncoder::AppendHeartbeat(&out);
    return Split(out);
  }

  // The frames so far, as views (valid while this object lives and is not changed).
  std::vector<Frame> frames() const {
    std::vector<Frame> result;
    for (const std::string& bytes : storage_) {
      std::string_view in = bytes;
      FrameDecoder decoder(FrameDecoder::kNoLimitFrameMax);
      absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
      EXPECT_TRUE(f.ok() && f->has_value() && in.empty());
      result.push_back(**f);
    }
    return result;
  }

 private:
  Frames& Split(std::string_view bytes) {
    while (!bytes.empty()) {
      const size_t size = (static_cast<uint8_t>(bytes[3]) << 24) |
                          (static_cast<uint8_t>(bytes[4]) << 16) |
                          (static_cast<uint8_t>(bytes[5]) << 8) | static_cast<uint8_t>(bytes[6]);
      storage_.emplace_back(bytes.substr(0, size + 8));
      bytes.remove_prefix(size + 8);
    }
    return *this;
  }

  FrameEncoder encoder_;
  std::vector<std::string> storage_;
};

std::vector<Command> AssembleAll(CommandAssembler& assembler, const std::vector<Frame>& frames) {
  std::vector<Command> commands;
  for (const Frame& f : frames) {
    absl::StatusOr<std::optional<Command>> c = assembler.Add(f);
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok() && c->has_value()) commands.push_back(std::move(**c));
  }
  return commands;
}

BasicPublish Publish(std::string key) {
  BasicPublish p;
  p.exchange = "amq.direct";
  p.routing_key = std::move(key);
  return p;
}

TEST(CommandAssemblerTest, MethodsWithoutContentPassStraightThrough) {
  Frames frames;
  frames.Method(0, ConnectionTuneOk{.channel_max = 10, .frame_max = 4096, .heartbeat = 5})
      .Heartbeat()
      .Method(1, ChannelOpen());
  CommandAssembler assembler;
  std::vector<Command> commands = AssembleAll(assembler, frames.frames());
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(std::get<ConnectionTuneOk>(commands[0].method).frame_max, 4096u);
  EXPECT_EQ(commands[1].channel, 1);
  EXPECT_TRUE(std::holds_alternative<ChannelOpen>(commands[1].method));
  EXPECT_FALSE(commands[1].header.has_value());
}

TEST(CommandAssemblerTest, PublishWithBodySplitOverFrames) {
  BasicProperties props;
  props.content_type = "text/plain";
  const std::string body(10000, 'z');
  Frames frames;
  frames.Method(5, Publish("k")).Content(5, props, body);
  EXPECT_EQ(frames.frames().size(), 5u);  // method, header, 3 bodies
  CommandAssembler assembler;
  std::vector<Frame> fs = frames.frames();
  for (size_t i = 0; i + 1 < fs.size(); ++i) {
    absl::StatusOr<std::optional<Command>> c = assembler.Add(fs[i]);
    ASSERT_TRUE(c.ok());
    EXPECT_FALSE(c->has_value());
    EXPECT_TRUE(assembler.InContent(5));
  }
  absl::StatusOr<std::optional<Command>> c = assembler.Add(fs.back());
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->channel, 5);
  EXPECT_EQ(std::get<BasicPublish>((*c)->method).routing_key, "k");
  EXPECT_EQ((*c)->header->properties, props);
  EXPECT_EQ((*c)->body, body);
  EXPECT_FALSE(assembler.InContent(5));
}

TEST(CommandAssemblerTest, EmptyBodyCompletesAtTheHeader) {
  Frames frames;
  frames.Method(1, Publish("k")).Content(1, BasicProperties(), "");
  CommandAssembler assembler;
  std::vector<Command> commands = AssembleAll(assembler, frames.frames());
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].header->body_size, 0u);
  EXPECT_TRUE(commands[0].body.empty());
}

TEST(CommandAssemblerTest, ChannelsInterleave) {
  Frames a, b;
  a.Method(1, Publish("one")).Content(1, BasicProperties(), std::string(5000, '1'));
  b.Method(2, Publish("two")).Content(2, BasicProperties(), std::string(5000, '2'));
  std::vector<Frame> fa = a.frames(), fb = b.frames();
  std::vector<Frame> mixed;
  for (size_t i = 0; i < fa.size(); ++i) {
    mixed.push_back(fa[i]);
    mixed.push_back(fb[i]);
  }
  CommandAssembler assembler;
  std::vector<Command> commands = AssembleAll(assembler, mixed);
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0].body, std::string(5000, '1'));
  EXPECT_EQ(commands[1].body, std::string(5000, '2'));
}

TEST(CommandAssemblerTest, OutOfOrderFramesAreUnexpected) {
  Frames frames;
  frames.Method(1, Publish("k")).Content(1, BasicProperties(), "body").Method(1, ChannelOpen());
  const std::vector<Frame> f = frames.frames();  // publish, header, body, channel.open
  {
    CommandAssembler assembler;  // header without a content method
    EXPECT_EQ(ReplyCodeOf(assembler.Add(f[1]).status()), ReplyCode::kUnexpectedFrame);
  }
  {
    CommandAssembler assembler;  // body without a header
    ASSERT_TRUE(assembler.Add(f[0]).ok());
    EXPECT_EQ(ReplyCodeOf(assembler.Add(f[2]).status()), ReplyCode::kUnexpectedFrame);
  }
  {
    CommandAssembler assembler;  // method before the body
    ASSERT_TRUE(assembler.Add(f[0]).ok());
    ASSERT_TRUE(assembler.Add(f[1]).ok());
    EXPECT_EQ(ReplyCodeOf(assembler.Add(f[3]).status()), ReplyCode::kUnexpectedFrame);
  }
  {
    CommandAssembler assembler;  // two headers
    ASSERT_TRUE(assembler.Add(f[0]).ok());
    ASSERT_TRUE(assembler.Add(f[1]).ok());
    EXPECT_EQ(ReplyCodeOf(assembler.Add(f[1]).status()), ReplyCode::kUnexpectedFrame);
  }
  {
    CommandAssembler assembler;  // a body longer than declared
    Frames longer;
    longer.Method(1, Publish("k")).Content(1, BasicProperties(), "four");
    std::vector<Frame> lf = longer.frames();
    ASSERT_TRUE(assembler.Add(lf[0]).ok());
    ASSERT_TRUE(assembler.Add(lf[1]).ok());
    Frame body = lf[2];
    const std::string more = "fourplus";
    body.payload = more;
    EXPECT_EQ(ReplyCodeOf(assembler.Add(body).status()), ReplyCode::kUnexpectedFrame);
  }
  {
    CommandAssembler assembler;  // a reset channel forgets its content
    ASSERT_TRUE(assembler.Add(f[0]).ok());
    assembler.ResetChannel(1);
    EXPECT_FALSE(assembler.InContent(1));
    EXPECT_TRUE(assembler.Add(f[3]).ok());
  }
}

TEST(CommandAssemblerTest, HeartbeatsMayArriveMidContent) {
  Frames frames;
  frames.Method(1, Publish("k"));
  Frames content;
  content.Content(1, BasicProperties(), "body");
  Frames hb;
  hb.Heartbeat();
  std::vector<Frame> all = frames.frames();
  const std::vector<Frame> c = content.frames();
  all.push_back(hb.frames()[0]);
  all.push_back(c[0]);
  all.push_back(hb.frames()[0]);
  all.push_back(c[1]);
  CommandAssembler assembler;
  std::vector<Command> commands = AssembleAll(assembler, all);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].body, "body");
}

TEST(CommandAssemblerTest, OversizedBodyIsRefusedAndSkipped) {
  CommandAssembler assembler(CommandAssembler::Options{.max_body_size = 1000});
  Frames big;
  big.Method(1, Publish("big")).Content(1, BasicProperties(), std::string(5000, 'b'));
  const std::vector<Frame> f = big.frames();  // method, header, 2 bodies (frame_max 4096)
  ASSERT_EQ(f.size(), 4u);
  ASSERT_TRUE(assembler.Add(f[0]).ok());
  absl::Status refused = assembler.Add(f[1]).status();
  EXPECT_EQ(ReplyCodeOf(refused), ReplyCode::kPreconditionFailed);
  EXPECT_TRUE(IsSoftError(*ReplyCodeOf(refused)));
  for (size_t i = 2; i < f.size(); ++i) {
    absl::StatusOr<std::optional<Command>> c = assembler.Add(f[i]);
    ASSERT_TRUE(c.ok());
    EXPECT_FALSE(c->has_value());
  }
  // The connection goes on: the next message within the limit arrives whole.
  Frames small;
  small.Method(1, Publish("small")).Content(1, BasicProperties(), "ok");
  std::vector<Command> commands = AssembleAll(assembler, small.frames());
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].body, "ok");
}

TEST(CommandAssemblerTest, BadMethodsKeepTheirReplyCodes) {
  CommandAssembler assembler;
  const std::string unknown = testing_util::B({0, 60, 0, 99});
  Frame f{FrameType::kMethod, 1, unknown};
  EXPECT_EQ(ReplyCodeOf(assembler.Add(f).status()), ReplyCode::kCommandInvalid);
  const std::string truncated = testing_util::B({0, 60, 0, 40, 0});
  f.payload = truncated;
  EXPECT_EQ(ReplyCodeOf(assembler.Add(f).status()), ReplyCode::kSyntaxError);
}

}  // namespace
}  // namespace sluice::amqp
