// Generated method codecs: every method round-trips, bits pack as the spec says, the
// metadata agrees with the structs, malformed arguments are SYNTAX_ERROR.

#include "net/amqp/methods.h"

#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/amqp/frame.h"
#include "net/amqp/reply_codes.h"
#include "tests/amqp/test_util.h"

namespace sluice::amqp {
namespace {

using testing_util::B;
using testing_util::Be16;
using testing_util::Be32;
using testing_util::Hex;

// Calls f(M{}) for every alternative M of Method.
template <typename F, size_t... I>
void ForEachMethodTypeImpl(F&& f, std::index_sequence<I...>) {
  (f(std::variant_alternative_t<I, Method>{}), ...);
}
template <typename F>
void ForEachMethodType(F&& f) {
  ForEachMethodTypeImpl(f, std::make_index_sequence<std::variant_size_v<Method>>());
}

// Gives every argument a value unlike its default and unlike its neighbours'.
struct FillNonDefault {
  int n = 0;
  void operator()(std::string_view name, uint8_t& v) { v = static_cast<uint8_t>(0xA0 + ++n); }
  void operator()(std::string_view name, uint16_t& v) { v = static_cast<uint16_t>(0xB000 + ++n); }
  void operator()(std::string_view name, uint32_t& v) { v = 0xC0000000u + ++n; }
  void operator()(std::string_view name, uint64_t& v) { v = 0xD000000000000000ull + ++n; }
  void operator()(std::string_view name, bool& v) { v = (++n % 2) == 1; }
  void operator()(std::string_view name, std::string& v) {
    v = std::string(name) + "-" + std::to_string(++n);
  }
  void operator()(std::string_view name, FieldTable& v) {
    v = FieldTable{{std::string(name), FieldValue(int32_t{++n})},
                   {"nested", FieldValue(FieldTable{{"x", FieldValue("y")}})}};
  }
};

template <typename M>
M NonDefault() {
  M m;
  m.ForEachField(FillNonDefault());
  return m;
}

template <typename M>
std::string EncodeArgsOrDie(const M& m) {
  std::string out;
  absl::Status st = m.EncodeArgs(&out);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

TEST(MethodsTest, EveryMethodRoundTripsWithNonDefaultValues) {
  int count = 0;
  ForEachMethodType([&](auto proto) {
    using M = decltype(proto);
    const M m = NonDefault<M>();
    SCOPED_TRACE(std::string(M::kName));
    // Typed path.
    absl::StatusOr<M> typed = M::DecodeArgs(EncodeArgsOrDie(m));
    ASSERT_TRUE(typed.ok()) << typed.status();
    EXPECT_EQ(*typed, m);
    // Variant path, through a method frame payload.
    std::string payload;
    ASSERT_TRUE(EncodeMethodPayload(Method(m), &payload).ok());
    EXPECT_EQ(payload.substr(0, 4), Be16(M::kClassId) + Be16(M::kMethodId));
    absl::StatusOr<Method> decoded = DecodeMethodPayload(payload);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_TRUE(std::holds_alternative<M>(*decoded));
    EXPECT_EQ(std::get<M>(*decoded), m);
    EXPECT_EQ(IdOf(*decoded), (MethodId{M::kClassId, M::kMethodId}));
    ++count;
  });
  EXPECT_EQ(count, static_cast<int>(std::variant_size_v<Method>));
}

TEST(MethodsTest, DefaultMethodsRoundTrip) {
  ForEachMethodType([&](auto proto) {
    using M = decltype(proto);
    absl::StatusOr<M> typed = M::DecodeArgs(EncodeArgsOrDie(proto));
    ASSERT_TRUE(typed.ok()) << M::kName << ": " << typed.status();
    EXPECT_EQ(*typed, proto);
  });
}

// Sets exactly one bit argument (the k-th) of m, clears the others.
struct SetOnlyBit {
  int k;
  int i = 0;
  template <typename T>
  void operator()(std::string_view, T& v) {
    if constexpr (std::is_same_v<T, bool>) v = (i++ == k);
  }
};

struct CountBits {
  int bits = 0;
  template <typename T>
  void operator()(std::string_view, const T&) {
    if constexpr (std::is_same_v<T, bool>) ++bits;
  }
};

TEST(MethodsTest, EveryBitArgumentIsIndependent) {
  int methods_with_bits = 0;
  ForEachMethodType([&](auto proto) {
    using M = decltype(proto);
    CountBits counter;
    proto.ForEachField(counter);
    if (counter.bits == 0) return;
    ++methods_with_bits;
    for (int k = 0; k < counter.bits; ++k) {
      M m = NonDefault<M>();
      m.ForEachField(SetOnlyBit{k});
      absl::StatusOr<M> decoded = M::DecodeArgs(EncodeArgsOrDie(m));
      ASSERT_TRUE(decoded.ok());
      EXPECT_EQ(*decoded, m) << M::kName << " bit " << k;
    }
  });
  EXPECT_GE(methods_with_bits, 20);
}

TEST(MethodsTest, QueueDeclarePacksFiveBitsInOneOctet) {
  QueueDeclare m;
  m.queue = "q";
  m.passive = true;       // bit 0
  m.durable = false;      // bit 1
  m.exclusive = true;     // bit 2
  m.auto_delete = false;  // bit 3
  m.no_wait = true;       // bit 4
  // reserved-1 short, queue shortstr, one octet of bits, empty table.
  EXPECT_EQ(Hex(EncodeArgsOrDie(m)), Hex(B({0, 0, 1, 'q', 0x15, 0, 0, 0, 0})));
  m.passive = false;
  m.exclusive = false;
  m.no_wait = false;
  m.durable = true;
  m.auto_delete = true;
  EXPECT_EQ(Hex(EncodeArgsOrDie(m)), Hex(B({0, 0, 1, 'q', 0x0a, 0, 0, 0, 0})));
}

TEST(MethodsTest, BitRunsEndAtOtherTypes) {
  // basic.deliver: consumer-tag, delivery-tag, redelivered (bit), exchange, routing-key.
  BasicDeliver d;
  d.consumer_tag = "c";
  d.delivery_tag = 0x0102030405060708;
  d.redelivered = true;
  d.exchange = "e";
  d.routing_key = "r";
  EXPECT_EQ(Hex(EncodeArgsOrDie(d)),
            Hex(B({1, 'c', 1, 2, 3, 4, 5, 6, 7, 8, 0x01, 1, 'e', 1, 'r'})));
  // basic.nack: delivery-tag, multiple (bit 0), requeue (bit 1) in one octet.
  BasicNack n;
  n.delivery_tag = 9;
  n.multiple = false;
  n.requeue = true;
  EXPECT_EQ(Hex(EncodeArgsOrDie(n)), Hex(B({0, 0, 0, 0, 0, 0, 0, 9, 0x02})));
  // connection.open: vhost, reserved shortstr, reserved bit.
  ConnectionOpen o;
  o.virtual_host = "/";
  EXPECT_EQ(Hex(EncodeArgsOrDie(o)), Hex(B({1, '/', 0, 0})));
}

TEST(MethodsTest, ConnectionStartMatchesHandMadeBytes) {
  ConnectionStart s;
  s.mechanisms = "PLAIN";
  s.locales = "en_US";
  EXPECT_EQ(s.version_major, 0);
  EXPECT_EQ(s.version_minor, 9);
  const std::string expected = B({0, 9}) + Be32(0) + Be32(5) + "PLAIN" + Be32(5) + "en_US";
  EXPECT_EQ(Hex(EncodeArgsOrDie(s)), Hex(expected));
}

TEST(MethodsTest, ReservedArgumentsAreSkippedButChecked) {
  // connection.open from a client that sets the reserved "insist" bit and capabilities.
  absl::StatusOr<ConnectionOpen> open =
      ConnectionOpen::DecodeArgs(B({1, '/', 3, 'c', 'a', 'p', 1}));
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(open->virtual_host, "/");
  // ... but a reserved shortstr longer than the arguments is still a syntax error.
  EXPECT_EQ(ReplyCodeOf(ConnectionOpen::DecodeArgs(B({1, '/', 9, 'c'})).status()),
            ReplyCode::kSyntaxError);
}

TEST(MethodsTest, TruncatedArgumentsAreSyntaxErrors) {
  ForEachMethodType([&](auto proto) {
    using M = decltype(proto);
    const std::string args = EncodeArgsOrDie(NonDefault<M>());
    for (size_t n = 0; n < args.size(); ++n) {
      absl::StatusOr<Method> decoded = DecodeMethod(M::kClassId, M::kMethodId, args.substr(0, n));
      ASSERT_FALSE(decoded.ok()) << M::kName << " prefix " << n;
      EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
    }
    absl::StatusOr<Method> trailing = DecodeMethod(M::kClassId, M::kMethodId, args + "x");
    ASSERT_FALSE(trailing.ok()) << M::kName;
    EXPECT_EQ(ReplyCodeOf(trailing.status()), ReplyCode::kSyntaxError);
  });
}

TEST(MethodsTest, UnknownMethodsAreCommandInvalid) {
  const std::pair<int, int> unknown[] = {{10, 70},  {10, 9}, {30, 10},
                                         {60, 121}, {0, 0},  {65535, 65535}};
  for (auto [c, m] : unknown) {
    absl::StatusOr<Method> decoded = DecodeMethod(c, m, "");
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kCommandInvalid);
    EXPECT_EQ(FindMethodInfo(c, m), nullptr);
  }
  for (size_t n = 0; n < 4; ++n) {
    absl::StatusOr<Method> decoded = DecodeMethodPayload(std::string("\x00\x0a\x00\x33", n));
    EXPECT_EQ(ReplyCodeOf(decoded.status()), ReplyCode::kSyntaxError);
  }
}

TEST(MethodsTest, OverlongStringsFailToEncode) {
  BasicPublish p;
  p.routing_key = std::string(256, 'k');
  std::string out = "keep";
  EXPECT_EQ(ReplyCodeOf(EncodeMethodPayload(p, &out)), ReplyCode::kSyntaxError);
  FrameEncoder encoder;
  out = "keep";
  EXPECT_EQ(ReplyCodeOf(encoder.AppendMethod(1, p, &out)), ReplyCode::kSyntaxError);
  EXPECT_EQ(out, "keep");
  p.routing_key = std::string(255, 'k');
  EXPECT_TRUE(encoder.AppendMethod(1, p, &out).ok());
}

TEST(MethodsTest, MetadataAgreesWithStructs) {
  std::set<std::pair<int, int>> ids;
  ForEachMethodType([&](auto proto) {
    using M = decltype(proto);
    const MethodInfo* info = FindMethodInfo(M::kClassId, M::kMethodId);
    ASSERT_NE(info, nullptr) << M::kName;
    EXPECT_EQ(info->name, M::kName);
    EXPECT_EQ(info->synchronous, M::kSynchronous);
    EXPECT_EQ(info->has_content, M::kHasContent);
    EXPECT_EQ(&InfoOf(Method(proto)), info);
    EXPECT_EQ(info->name.substr(0, info->name.find('.')), ClassName(M::kClassId));
    for (uint16_t r : info->responses) {
      if (r == 0) continue;
      const MethodInfo* reply = FindMethodInfo(M::kClassId, r);
      ASSERT_NE(reply, nullptr) << M::kName;
      EXPECT_EQ(reply->sender == Sender::kBoth || reply->sender != info->sender, true)
          << reply->name;
    }
    EXPECT_TRUE(ids.insert({M::kClassId, M::kMethodId}).second);
  });
  EXPECT_EQ(AllMethodInfos().size(), std::variant_size_v<Method>);
}

TEST(MethodsTest, CoversRabbitMqExtensionsAndEveryClass) {
  const std::pair<int, int> required[] = {
      {10, 10}, {10, 11}, {10, 20},  {10, 21},  {10, 30},  {10, 31},
      {10, 40}, {10, 41}, {10, 50},  {10, 51},  {10, 60},  {10, 61},  // connection
      {20, 10}, {20, 11}, {20, 20},  {20, 21},  {20, 40},  {20, 41},  // channel
      {40, 10}, {40, 11}, {40, 20},  {40, 21},  {40, 30},  {40, 31},
      {40, 40}, {40, 51},  // exchange
      {50, 10}, {50, 11}, {50, 20},  {50, 21},  {50, 30},  {50, 31},
      {50, 40}, {50, 41}, {50, 50},  {50, 51},  // queue
      {60, 10}, {60, 11}, {60, 20},  {60, 21},  {60, 30},  {60, 31},
      {60, 40}, {60, 50}, {60, 60},  {60, 70},  {60, 71},  {60, 72},
      {60, 80}, {60, 90}, {60, 100}, {60, 110}, {60, 111}, {60, 120},  // basic
      {85, 10}, {85, 11},                                              // confirm
      {90, 10}, {90, 11}, {90, 20},  {90, 21},  {90, 30},  {90, 31},   // tx
  };
  for (auto [c, m] : required) {
    EXPECT_NE(FindMethodInfo(c, m), nullptr) << c << "," << m;
  }
  EXPECT_EQ(AllMethodInfos().size(), std::size(required));
  EXPECT_EQ(FindMethodInfo(60, 70)->responses[0], 71);
  EXPECT_EQ(FindMethodInfo(60, 70)->responses[1], 72);
  EXPECT_EQ(FindMethodInfo(60, 40)->sender, Sender::kClient);
  EXPECT_EQ(FindMethodInfo(60, 60)->sender, Sender::kServer);
  EXPECT_EQ(FindMethodInfo(60, 120)->sender, Sender::kBoth);
  EXPECT_TRUE(BasicPublish::kHasContent);
  EXPECT_TRUE(BasicGetOk::kHasContent);
  EXPECT_FALSE(BasicAck::kSynchronous);
  EXPECT_TRUE(ConfirmSelect::kSynchronous);
}

TEST(MethodsTest, DebugStringRedactsSecrets) {
  ConnectionStartOk ok;
  ok.mechanism = "PLAIN";
  ok.response = std::string("\0guest\0guest", 12);
  const std::string s = ok.DebugString();
  EXPECT_THAT(s, testing::HasSubstr("mechanism=\"PLAIN\""));
  EXPECT_THAT(s, testing::HasSubstr("response=<redacted 12 bytes>"));
  EXPECT_THAT(s, testing::Not(testing::HasSubstr("guest")));
  BasicPublish p;
  p.exchange = "x";
  p.mandatory = true;
  EXPECT_EQ(DebugString(Method(p)),
            "basic.publish(exchange=\"x\", routing_key=\"\", mandatory=true, immediate=false)");
}

}  // namespace
}  // namespace sluice::amqp
