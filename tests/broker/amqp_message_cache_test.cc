#include <memory>

#include "gtest/gtest.h"
#include "src/amqp/amqp_broker.h"
#include "src/amqp/message_cache.h"

namespace sluice::broker {
namespace {

constexpr size_t kUnlimited = SIZE_MAX;

std::shared_ptr<const AmqpMessage> Message() { return std::make_shared<AmqpMessage>(); }

TEST(MessageCacheTest, KeepsMessagesUpToItsOwnLimit) {
  auto budget = std::make_shared<MessageCacheBudget>(1000);
  MessageCache cache(budget);
  EXPECT_TRUE(cache.Insert(1, Message(), 40, 100));
  EXPECT_TRUE(cache.Insert(2, Message(), 60, 100));
  EXPECT_FALSE(cache.Insert(3, Message(), 1, 100));
  EXPECT_NE(cache.Find(1), nullptr);
  EXPECT_EQ(cache.Find(3), nullptr);
  EXPECT_EQ(cache.bytes(), 100u);
  EXPECT_EQ(budget->used(), 100u);
}

TEST(MessageCacheTest, EraseAndEraseBelowGiveBytesBack) {
  auto budget = std::make_shared<MessageCacheBudget>(1000);
  MessageCache cache(budget);
  for (int64_t o = 0; o < 10; ++o) cache.Insert(o, Message(), 10, kUnlimited);
  cache.Erase(3);
  cache.Erase(3);  // not cached any more: nothing
  EXPECT_EQ(budget->used(), 90u);
  cache.EraseBelow(5);
  EXPECT_EQ(cache.size(), 5u);
  EXPECT_EQ(budget->used(), 50u);
  EXPECT_EQ(cache.Find(4), nullptr);
  EXPECT_NE(cache.Find(5), nullptr);
}

TEST(MessageCacheTest, ADestroyedCacheGivesItsBytesBack) {
  auto budget = std::make_shared<MessageCacheBudget>(1000);
  {
    MessageCache cache(budget);
    cache.Insert(1, Message(), 300, kUnlimited);
    EXPECT_EQ(budget->used(), 300u);
  }
  EXPECT_EQ(budget->used(), 0u);
}

TEST(MessageCacheTest, AllCachesTogetherStayWithinTheBudget) {
  auto budget = std::make_shared<MessageCacheBudget>(1000);
  std::vector<std::unique_ptr<MessageCache>> caches;
  for (int i = 0; i < 40; ++i) caches.push_back(std::make_unique<MessageCache>(budget));
  for (int64_t o = 0; o < 100; ++o) {
    for (auto& c : caches) {
      c->Insert(o, Message(), 7, 330);
      ASSERT_LE(budget->used(), 1000u);
    }
  }
  size_t sum = 0;
  for (auto& c : caches) sum += c->bytes();
  EXPECT_EQ(sum, budget->used());
}

TEST(MessageCacheTest, AQueueNobodyConsumesGivesWayToAnother) {
  auto budget = std::make_shared<MessageCacheBudget>(1000);
  MessageCache idle(budget), busy(budget);
  for (int64_t o = 0; o < 100; ++o) idle.Insert(o, Message(), 10, kUnlimited);
  EXPECT_EQ(idle.bytes(), 1000u);
  // The idle cache gives up its newest entries until both hold about half.
  for (int64_t o = 0; o < 100; ++o) busy.Insert(o, Message(), 10, kUnlimited);
  EXPECT_EQ(busy.bytes(), 500u);
  EXPECT_EQ(idle.bytes(), 500u);
  EXPECT_NE(idle.Find(0), nullptr);  // the oldest (delivered first) stay
  EXPECT_EQ(idle.Find(99), nullptr);
  EXPECT_EQ(budget->evictions(), 50u);
  // Now neither takes from the other.
  EXPECT_FALSE(idle.Insert(100, Message(), 10, kUnlimited));
  EXPECT_FALSE(busy.Insert(100, Message(), 10, kUnlimited));
  // Consuming frees room for new messages again.
  busy.EraseBelow(10);
  EXPECT_TRUE(busy.Insert(100, Message(), 10, kUnlimited));
}

TEST(MessageCacheTest, AMessageLargerThanTheBudgetIsNotCached) {
  auto budget = std::make_shared<MessageCacheBudget>(100);
  MessageCache a(budget), b(budget);
  a.Insert(1, Message(), 50, kUnlimited);
  EXPECT_FALSE(b.Insert(1, Message(), 101, kUnlimited));
  EXPECT_EQ(a.bytes(), 50u);  // nothing evicted for it
}

TEST(MessageCacheTest, AZeroBudgetCachesNothing) {
  auto budget = std::make_shared<MessageCacheBudget>(0);
  MessageCache cache(budget);
  EXPECT_FALSE(cache.Insert(1, Message(), 1, kUnlimited));
  EXPECT_EQ(budget->used(), 0u);
}

}  // namespace
}  // namespace sluice::broker
