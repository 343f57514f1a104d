// Exchange routing rules (src/amqp/routing.h) against RabbitMQ's documented behaviour.
#include <string>

#include "gtest/gtest.h"
#include "src/amqp/routing.h"

namespace sluice::amqp {
namespace {

TEST(TopicMatches, StarIsExactlyOneWord) {
  EXPECT_TRUE(TopicMatches("a.*.c", "a.b.c"));
  EXPECT_FALSE(TopicMatches("a.*.c", "a.c"));
  EXPECT_FALSE(TopicMatches("a.*.c", "a.b.b.c"));
  EXPECT_TRUE(TopicMatches("*", "word"));
  EXPECT_FALSE(TopicMatches("*", ""));
  EXPECT_FALSE(TopicMatches("*", "a.b"));
  // An empty word is a word: "a..c" has three.
  EXPECT_TRUE(TopicMatches("a.*.c", "a..c"));
}

TEST(TopicMatches, HashIsZeroOrMoreWords) {
  EXPECT_TRUE(TopicMatches("#", ""));
  EXPECT_TRUE(TopicMatches("#", "a.b.c"));
  EXPECT_TRUE(TopicMatches("a.#", "a"));
  EXPECT_TRUE(TopicMatches("a.#", "a.b.c"));
  EXPECT_FALSE(TopicMatches("a.#", "b.a"));
  EXPECT_TRUE(TopicMatches("#.z", "z"));
  EXPECT_TRUE(TopicMatches("#.z", "x.y.z"));
  EXPECT_FALSE(TopicMatches("#.z", "z.x"));
  EXPECT_TRUE(TopicMatches("a.#.c", "a.c"));
  EXPECT_TRUE(TopicMatches("a.#.c", "a.b.b.b.c"));
  EXPECT_TRUE(TopicMatches("#.*", "a"));
  EXPECT_FALSE(TopicMatches("#.*", ""));
  EXPECT_TRUE(TopicMatches("*.#.*", "a.b"));
  EXPECT_FALSE(TopicMatches("*.#.*", "a"));
}

TEST(TopicMatches, LiteralWordsAndEmptyPattern) {
  EXPECT_TRUE(TopicMatches("stock.usd.nyse", "stock.usd.nyse"));
  EXPECT_FALSE(TopicMatches("stock.usd.nyse", "stock.eur.nyse"));
  EXPECT_TRUE(TopicMatches("", ""));
  EXPECT_FALSE(TopicMatches("", "a"));
  // '*' and '#' are only wildcards as whole words.
  EXPECT_FALSE(TopicMatches("a*", "ab"));
  EXPECT_TRUE(TopicMatches("a*", "a*"));
}

TEST(TopicMatches, ManyHashesStayFast) {
  std::string pattern, key;
  for (int i = 0; i < 200; ++i) pattern += "#.";
  pattern += "x";
  for (int i = 0; i < 200; ++i) key += "a.";
  key += "b";
  EXPECT_FALSE(TopicMatches(pattern, key));  // would take forever with backtracking
  key.back() = 'x';
  EXPECT_TRUE(TopicMatches(pattern, key));
}

TEST(HeadersMatch, AllIsTheDefault) {
  FieldTable binding{{"k1", "v1"}, {"k2", 2}};
  FieldTable both{{"k1", "v1"}, {"k2", 2}, {"extra", true}};
  FieldTable one{{"k1", "v1"}};
  EXPECT_TRUE(HeadersMatch(binding, &both));
  EXPECT_FALSE(HeadersMatch(binding, &one));
  EXPECT_FALSE(HeadersMatch(binding, nullptr));
  FieldTable all = binding;
  all.Append("x-match", "all");
  EXPECT_TRUE(HeadersMatch(all, &both));
  EXPECT_FALSE(HeadersMatch(all, &one));
}

TEST(HeadersMatch, Any) {
  FieldTable binding{{"x-match", "any"}, {"k1", "v1"}, {"k2", 2}};
  FieldTable one{{"k1", "v1"}};
  FieldTable wrong{{"k1", "v2"}, {"k2", 3}};
  EXPECT_TRUE(HeadersMatch(binding, &one));
  EXPECT_FALSE(HeadersMatch(binding, &wrong));
  FieldTable empty;
  EXPECT_FALSE(HeadersMatch(binding, &empty));
  // any with no keys to compare matches nothing; all with none matches everything.
  EXPECT_FALSE(HeadersMatch(FieldTable{{"x-match", "any"}}, &one));
  EXPECT_TRUE(HeadersMatch(FieldTable{}, &one));
}

TEST(HeadersMatch, IntegerWidthsCompareByValueAndVoidMatchesPresence) {
  FieldTable binding{{"n", int64_t{7}}, {"present", Void{}}};
  FieldTable msg{{"n", uint8_t{7}}, {"present", "anything"}};
  EXPECT_TRUE(HeadersMatch(binding, &msg));
  FieldTable absent{{"n", 7}};
  EXPECT_FALSE(HeadersMatch(binding, &absent));
}

TEST(HeadersMatch, XKeysIgnoredUnlessWithX) {
  FieldTable binding{{"x-match", "all"}, {"x-custom", "1"}, {"k", "v"}};
  FieldTable msg{{"k", "v"}};
  EXPECT_TRUE(HeadersMatch(binding, &msg));
  FieldTable with_x{{"x-match", "all-with-x"}, {"x-custom", "1"}, {"k", "v"}};
  EXPECT_FALSE(HeadersMatch(with_x, &msg));
  FieldTable msg_x{{"k", "v"}, {"x-custom", "1"}};
  EXPECT_TRUE(HeadersMatch(with_x, &msg_x));
}

TEST(BindingMatches, DirectAndFanout) {
  EXPECT_TRUE(BindingMatches(ExchangeType::kDirect, "k", {}, "k", nullptr));
  EXPECT_FALSE(BindingMatches(ExchangeType::kDirect, "k", {}, "K", nullptr));
  EXPECT_TRUE(BindingMatches(ExchangeType::kFanout, "ignored", {}, "anything", nullptr));
  EXPECT_EQ(ParseExchangeType("topic"), ExchangeType::kTopic);
  EXPECT_EQ(ParseExchangeType("x-delayed-message"), std::nullopt);
}

}  // namespace
}  // namespace sluice::amqp
