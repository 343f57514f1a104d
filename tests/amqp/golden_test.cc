// Golden bytes from real clients (pika, amqplib, rabbitmq-c's amqp-publish), captured by
// tests/amqp/vectors/capture_server.py: each file is everything one client sent, protocol
// header first. They must decode to the fields the client scripts asked for, and
// re-encoding must give the client's bytes back.

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/amqp/command.h"
#include "net/amqp/content.h"
#include "net/amqp/frame.h"
#include "net/amqp/reply_codes.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

using testing_util::Hex;

struct Session {
  std::string bytes;          // the whole capture
  std::vector<Frame> frames;  // views into `bytes`
  std::vector<Command> commands;
};

enum class Side { kClient, kServer };

// Client captures start with the protocol header; server captures start with frames.
Session Load(const std::string& name, Side side = Side::kClient) {
  Session s;
  s.bytes = testing_util::ReadFileOrDie(std::string(SLUICE_AMQP_VECTORS_DIR) + "/" + name);
  EXPECT_GT(s.bytes.size(), 8u) << name;
  std::string_view in = s.bytes;
  if (side == Side::kClient) {
    EXPECT_EQ(MatchProtocolHeader(s.bytes), ProtocolHeaderMatch::kMatch);
    in.remove_prefix(kProtocolHeader.size());
  }
  FrameDecoder decoder(kFrameMinSize);  // before tune-ok
  CommandAssembler assembler;
  while (!in.empty()) {
    absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
    EXPECT_TRUE(f.ok()) << f.status();
    if (!f.ok() || !f->has_value()) break;
    s.frames.push_back(**f);
    absl::StatusOr<std::optional<Command>> c = assembler.Add(**f);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok() || !c->has_value()) continue;
    if (const auto* tune_ok = std::get_if<ConnectionTuneOk>(&(*c)->method)) {
      decoder.set_max_frame_size(tune_ok->frame_max);
    }
    if (const auto* tune = std::get_if<ConnectionTune>(&(*c)->method)) {
      decoder.set_max_frame_size(tune->frame_max);
    }
    s.commands.push_back(std::move(**c));
  }
  EXPECT_TRUE(in.empty()) << name << ": " << in.size() << " bytes left";
  return s;
}

template <typename M>
const M& At(const Session& s, size_t i) {
  static const M kEmpty;
  EXPECT_LT(i, s.commands.size());
  if (i >= s.commands.size()) return kEmpty;
  const M* m = std::get_if<M>(&s.commands[i].method);
  EXPECT_NE(m, nullptr) << "command " << i << " is " << DebugString(s.commands[i].method);
  return m == nullptr ? kEmpty : *m;
}

std::string StringProperty(const FieldTable& t, std::string_view name) {
  const FieldValue* v = t.Find(name);
  return v != nullptr && v->AsString() != nullptr ? *v->AsString() : "<missing>";
}

// Re-encodes every decoded method and content header and compares with the client's bytes.
// connection.open is compared without its reserved arguments, which some clients set.
void ExpectReencodesExactly(const Session& s) {
  for (const Frame& f : s.frames) {
    std::string again;
    if (f.type == FrameType::kMethod) {
      absl::StatusOr<Method> m = DecodeMethodPayload(f.payload);
      ASSERT_TRUE(m.ok());
      ASSERT_TRUE(EncodeMethodPayload(*m, &again).ok());
      if (std::holds_alternative<ConnectionOpen>(*m)) {
        EXPECT_EQ(Hex(again.substr(0, again.size() - 2)),
                  Hex(f.payload.substr(0, again.size() - 2)));
        continue;
      }
    } else if (f.type == FrameType::kHeader) {
      absl::StatusOr<ContentHeader> h = DecodeContentHeader(f.payload);
      ASSERT_TRUE(h.ok());
      ASSERT_TRUE(EncodeContentHeader(*h, &again).ok());
    } else {
      continue;
    }
    EXPECT_EQ(Hex(again), Hex(f.payload));
  }
}

TEST(GoldenPikaTest, SessionDecodes) {
  const Session s = Load("pika_session.bin");
  ASSERT_EQ(s.commands.size(), 11u);

  const auto& start_ok = At<ConnectionStartOk>(s, 0);
  EXPECT_EQ(StringProperty(start_ok.client_properties, "product"), "Pika Python Client Library");
  EXPECT_EQ(StringProperty(start_ok.client_properties, "platform").substr(0, 6), "Python");
  const FieldValue* caps = start_ok.client_properties.Find("capabilities");
  ASSERT_NE(caps, nullptr);
  ASSERT_NE(caps->get_if<FieldTable>(), nullptr);
  EXPECT_EQ(caps->get_if<FieldTable>()->Find("publisher_confirms")->AsBool(), true);
  EXPECT_EQ(start_ok.mechanism, "PLAIN");
  EXPECT_EQ(start_ok.response, std::string("\0guest\0guest", 12));
  EXPECT_EQ(start_ok.locale, "en_US");

  const auto& tune_ok = At<ConnectionTuneOk>(s, 1);
  EXPECT_EQ(tune_ok.channel_max, 2047);
  EXPECT_EQ(tune_ok.frame_max, 131072u);
  EXPECT_EQ(tune_ok.heartbeat, 60);
  EXPECT_EQ(At<ConnectionOpen>(s, 2).virtual_host, "/");
  At<ChannelOpen>(s, 3);
  EXPECT_EQ(s.commands[3].channel, 1);
  EXPECT_FALSE(At<ConfirmSelect>(s, 4).nowait);

  const auto& exchange = At<ExchangeDeclare>(s, 5);
  EXPECT_EQ(exchange.exchange, "sluice.x");
  EXPECT_EQ(exchange.type, "topic");
  EXPECT_TRUE(exchange.durable);
  EXPECT_FALSE(exchange.passive || exchange.auto_delete || exchange.internal || exchange.no_wait);

  const auto& queue = At<QueueDeclare>(s, 6);
  EXPECT_EQ(queue.queue, "sluice.q");
  EXPECT_TRUE(queue.durable);
  EXPECT_FALSE(queue.exclusive || queue.auto_delete || queue.passive);
  ASSERT_NE(queue.arguments.Find("x-max-length"), nullptr);
  EXPECT_EQ(queue.arguments.Find("x-max-length")->tag(), 'I');
  EXPECT_EQ(queue.arguments.Find("x-max-length")->AsInt64(), 10);
  EXPECT_EQ(StringProperty(queue.arguments, "x-queue-type"), "classic");

  const auto& bind = At<QueueBind>(s, 7);
  EXPECT_EQ(bind.queue, "sluice.q");
  EXPECT_EQ(bind.exchange, "sluice.x");
  EXPECT_EQ(bind.routing_key, "a.#");

  const auto& publish = At<BasicPublish>(s, 8);
  EXPECT_EQ(publish.exchange, "sluice.x");
  EXPECT_EQ(publish.routing_key, "a.b");
  EXPECT_TRUE(publish.mandatory);
  EXPECT_FALSE(publish.immediate);
  const Command& message = s.commands[8];
  EXPECT_EQ(message.body, "hello from pika");
  ASSERT_TRUE(message.header.has_value());
  const BasicProperties& p = message.header->properties;
  EXPECT_EQ(p.content_type, "text/plain");
  EXPECT_EQ(p.content_encoding, "utf-8");
  EXPECT_EQ(p.delivery_mode, 2);
  EXPECT_EQ(p.priority, 5);
  EXPECT_EQ(p.correlation_id, "corr-1");
  EXPECT_EQ(p.reply_to, "reply.q");
  EXPECT_EQ(p.expiration, "60000");
  EXPECT_EQ(p.message_id, "msg-1");
  EXPECT_EQ(p.timestamp, 1700000000u);
  EXPECT_EQ(p.type, "greeting");
  EXPECT_EQ(p.user_id, "guest");
  EXPECT_EQ(p.app_id, "capture");
  EXPECT_FALSE(p.cluster_id.has_value());
  ASSERT_TRUE(p.headers.has_value());
  EXPECT_EQ(StringProperty(*p.headers, "h-str"), "v");
  EXPECT_EQ(p.headers->Find("h-int")->AsInt64(), 7);
  EXPECT_EQ(p.headers->Find("h-bool")->AsBool(), true);
  const FieldArray* list = p.headers->Find("h-list")->get_if<FieldArray>();
  ASSERT_NE(list, nullptr);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1], FieldValue("two"));
  EXPECT_EQ(StringProperty(*p.headers->Find("h-nested")->get_if<FieldTable>(), "k"), "v");

  const auto& channel_close = At<ChannelClose>(s, 9);
  EXPECT_EQ(channel_close.reply_code, 200);
  EXPECT_EQ(channel_close.reply_text, "Normal shutdown");
  At<ConnectionClose>(s, 10);
}

TEST(GoldenPikaTest, ReencodesExactly) { ExpectReencodesExactly(Load("pika_session.bin")); }

TEST(GoldenPikaTest, BodySplitAtServerFrameMaxMatchesOurEncoder) {
  // The capture server tuned frame_max to 4096: pika split a 10000-byte body in three.
  const Session s = Load("pika_split_body.bin");
  EXPECT_EQ(At<ConnectionTuneOk>(s, 1).frame_max, 4096u);
  const Command& message = s.commands[8];
  ASSERT_EQ(message.body.size(), 10000u);
  for (size_t i = 0; i < message.body.size(); ++i) {
    ASSERT_EQ(static_cast<uint8_t>(message.body[i]), i % 251) << i;
  }
  // The header and body frames pika sent are byte for byte what FrameEncoder makes.
  std::vector<size_t> body_frames;
  size_t header_index = 0;
  for (size_t i = 0; i < s.frames.size(); ++i) {
    if (s.frames[i].type == FrameType::kHeader) header_index = i;
    if (s.frames[i].type == FrameType::kBody) body_frames.push_back(s.frames[i].payload.size());
  }
  EXPECT_EQ(body_frames, (std::vector<size_t>{4088, 4088, 1824}));
  const char* first = s.frames[header_index].payload.data() - kFrameHeaderSize;
  const Frame& last = s.frames[header_index + 3];
  const std::string_view sent(first, last.payload.data() + last.payload.size() + 1 - first);
  std::string ours;
  ASSERT_TRUE(
      FrameEncoder(4096).AppendContent(1, message.header->properties, message.body, &ours).ok());
  EXPECT_EQ(Hex(ours), Hex(sent));
  ExpectReencodesExactly(s);
}

TEST(GoldenAmqplibTest, SessionDecodes) {
  const Session s = Load("amqplib_session.bin");
  ASSERT_EQ(s.commands.size(), 11u);
  const auto& start_ok = At<ConnectionStartOk>(s, 0);
  EXPECT_EQ(StringProperty(start_ok.client_properties, "product"), "amqplib");
  EXPECT_EQ(start_ok.mechanism, "PLAIN");
  EXPECT_EQ(start_ok.response, std::string("\0guest\0guest", 12));
  EXPECT_EQ(At<ConnectionTuneOk>(s, 1).heartbeat, 60);
  EXPECT_EQ(At<ConnectionOpen>(s, 2).virtual_host, "/");
  At<ConfirmSelect>(s, 4);
  const auto& exchange = At<ExchangeDeclare>(s, 5);
  EXPECT_EQ(exchange.type, "direct");
  EXPECT_TRUE(exchange.auto_delete);
  EXPECT_FALSE(exchange.durable);
  const auto& queue = At<QueueDeclare>(s, 6);
  EXPECT_TRUE(queue.exclusive);
  EXPECT_TRUE(queue.durable);  // amqplib's default
  EXPECT_EQ(queue.arguments.Find("x-message-ttl")->AsInt64(), 60000);
  const auto& publish = At<BasicPublish>(s, 8);
  EXPECT_EQ(publish.routing_key, "rk");
  const BasicProperties& p = s.commands[8].header->properties;
  EXPECT_EQ(p.content_type, "application/json");
  EXPECT_EQ(p.delivery_mode, 2);
  EXPECT_EQ(p.message_id, "m-2");
  ASSERT_TRUE(p.headers.has_value());
  EXPECT_EQ(p.headers->Find("x-n")->tag(), 'd');
  EXPECT_EQ(*p.headers->Find("x-n")->get_if<double>(), 1.5);
  EXPECT_EQ(StringProperty(*p.headers, "x-s"), "str");
  EXPECT_EQ(s.commands[8].body, "hello from amqplib");
  EXPECT_EQ(At<ChannelClose>(s, 9).reply_text, "Goodbye");
  EXPECT_EQ(At<ConnectionClose>(s, 10).reply_code, 200);
  ExpectReencodesExactly(s);
}

TEST(GoldenAmqpPublishTest, SessionDecodes) {
  const Session s = Load("amqp_publish_session.bin");
  ASSERT_EQ(s.commands.size(), 7u);
  const auto& start_ok = At<ConnectionStartOk>(s, 0);
  EXPECT_EQ(StringProperty(start_ok.client_properties, "product"), "rabbitmq-c");
  EXPECT_EQ(start_ok.mechanism, "PLAIN");
  EXPECT_EQ(At<ConnectionTuneOk>(s, 1).heartbeat, 0);
  const auto& publish = At<BasicPublish>(s, 4);
  EXPECT_EQ(publish.exchange, "amq.direct");
  EXPECT_EQ(publish.routing_key, "route.key");
  const BasicProperties& p = s.commands[4].header->properties;
  EXPECT_EQ(p.content_type, "text/plain");
  EXPECT_EQ(p.delivery_mode, 2);
  EXPECT_EQ(StringProperty(*p.headers, "x-tool"), "amqp-publish");
  EXPECT_EQ(s.commands[4].body, "hello from rabbitmq-c");
  EXPECT_EQ(At<ChannelClose>(s, 5).reply_code, 200);
  EXPECT_EQ(At<ConnectionClose>(s, 6).reply_text, "200");
  ExpectReencodesExactly(s);
}

// What RabbitMQ 3.10 sent to pika (tests/amqp/clients/pika_consumer.py through
// record_proxy.py): the server-side methods, deliveries and confirms.
TEST(GoldenRabbitMqTest, ServerSessionDecodes) {
  const Session s = Load("rabbitmq_server_session.bin", Side::kServer);
  ASSERT_EQ(s.commands.size(), 19u);

  const auto& start = At<ConnectionStart>(s, 0);
  EXPECT_EQ(start.version_major, 0);
  EXPECT_EQ(start.version_minor, 9);
  EXPECT_EQ(StringProperty(start.server_properties, "product"), "RabbitMQ");
  const FieldTable* caps = start.server_properties.Find("capabilities")->get_if<FieldTable>();
  ASSERT_NE(caps, nullptr);
  for (const char* cap : {"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                          "consumer_cancel_notify", "connection.blocked"}) {
    ASSERT_NE(caps->Find(cap), nullptr) << cap;
    EXPECT_EQ(caps->Find(cap)->AsBool(), true) << cap;
  }
  EXPECT_THAT(start.mechanisms, testing::HasSubstr("PLAIN"));
  EXPECT_EQ(start.locales, "en_US");

  const auto& tune = At<ConnectionTune>(s, 1);
  EXPECT_EQ(tune.channel_max, 2047);
  EXPECT_EQ(tune.frame_max, 131072u);
  EXPECT_EQ(tune.heartbeat, 60);
  At<ConnectionOpenOk>(s, 2);
  At<ChannelOpenOk>(s, 3);
  At<ConfirmSelectOk>(s, 4);
  At<ExchangeDeclareOk>(s, 5);
  const auto& declare_ok = At<QueueDeclareOk>(s, 6);
  EXPECT_EQ(declare_ok.queue, "sluice.q");
  EXPECT_EQ(declare_ok.message_count, 0u);
  At<QueueBindOk>(s, 7);
  EXPECT_EQ(At<BasicAck>(s, 8).delivery_tag, 1u);  // publisher confirms
  EXPECT_EQ(At<BasicAck>(s, 9).delivery_tag, 2u);
  const std::string tag = At<BasicConsumeOk>(s, 10).consumer_tag;
  EXPECT_EQ(tag.substr(0, 5), "ctag1");

  const auto& deliver = At<BasicDeliver>(s, 11);
  EXPECT_EQ(deliver.consumer_tag, tag);
  EXPECT_EQ(deliver.delivery_tag, 1u);
  EXPECT_FALSE(deliver.redelivered);
  EXPECT_EQ(deliver.exchange, "sluice.x");
  EXPECT_EQ(deliver.routing_key, "rk");
  EXPECT_EQ(s.commands[11].body, "first");
  const BasicProperties& p = s.commands[11].header->properties;
  EXPECT_EQ(p.content_type, "text/plain");
  EXPECT_EQ(p.message_id, "m1");
  EXPECT_EQ(p.headers->Find("n")->AsInt64(), 1);
  EXPECT_EQ(s.commands[12].body, "second");
  // pika cancelled with "second" unacked: RabbitMQ delivered it again before cancel-ok.
  EXPECT_TRUE(At<BasicDeliver>(s, 13).redelivered);
  EXPECT_EQ(At<BasicCancelOk>(s, 14).consumer_tag, tag);

  const auto& get_ok = At<BasicGetOk>(s, 15);
  EXPECT_TRUE(get_ok.redelivered);
  EXPECT_EQ(get_ok.exchange, "sluice.x");
  EXPECT_EQ(get_ok.message_count, 0u);
  EXPECT_EQ(s.commands[15].body, "second");
  At<BasicGetEmpty>(s, 16);
  At<ChannelCloseOk>(s, 17);
  At<ConnectionCloseOk>(s, 18);
  ExpectReencodesExactly(s);
}

TEST(GoldenTest, TruncatedCapturesNeverFailOnlyWait) {
  // Every prefix of a real stream is either decodable frames or a wait for more bytes.
  const std::string bytes =
      testing_util::ReadFileOrDie(std::string(SLUICE_AMQP_VECTORS_DIR) + "/pika_session.bin")
          .substr(8);
  for (size_t n = 0; n <= bytes.size(); ++n) {
    std::string_view in(bytes.data(), n);
    FrameDecoder decoder;
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
      ASSERT_TRUE(f.ok()) << n;
      if (!f->has_value()) break;
    }
  }
}

TEST(GoldenTest, CorruptedFrameEndsAreFrameErrors) {
  const std::string bytes =
      testing_util::ReadFileOrDie(std::string(SLUICE_AMQP_VECTORS_DIR) + "/amqplib_session.bin")
          .substr(8);
  // Find each frame end and corrupt it in turn.
  std::string_view scan = bytes;
  FrameDecoder finder;
  std::vector<size_t> ends;
  while (!scan.empty()) {
    absl::StatusOr<std::optional<Frame>> f = finder.Next(&scan);
    ASSERT_TRUE(f.ok() && f->has_value());
    ends.push_back(bytes.size() - scan.size() - 1);
  }
  for (size_t end : ends) {
    std::string corrupt = bytes;
    corrupt[end] = 0x00;
    std::string_view in = corrupt;
    FrameDecoder decoder;
    absl::Status status;
    while (status.ok()) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next(&in);
      status = f.status();
      if (status.ok() && !f->has_value()) break;
    }
    EXPECT_EQ(ReplyCodeOf(status), ReplyCode::kFrameError) << end;
  }
}

}  // namespace
}  // namespace sluice::amqp
