// The queue cursor (src/amqp/queue_cursor.h): delivery order, out-of-order acks, requeue,
// the acked watermark, purge and the persistent form.
#include "gtest/gtest.h"
#include "src/amqp/queue_cursor.h"

namespace sluice::amqp {
namespace {

TEST(QueueCursor, DeliversInOrderUpToTheEnd) {
  QueueCursor c(10);
  EXPECT_EQ(c.ReadyCount(13), 3);
  for (int64_t o = 10; o < 13; ++o) {
    auto t = c.Take(13, /*track=*/true);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->offset, o);
    EXPECT_FALSE(t->redelivered);
  }
  EXPECT_FALSE(c.Take(13, true));
  EXPECT_EQ(c.UnackedCount(), 3);
  EXPECT_EQ(c.Watermark(), 10);
}

TEST(QueueCursor, OutOfOrderAcksMoveTheWatermarkOnlyOverAContiguousPrefix) {
  QueueCursor c;
  for (int i = 0; i < 5; ++i) c.Take(5, true);
  EXPECT_TRUE(c.Settle(2));
  EXPECT_TRUE(c.Settle(4));
  EXPECT_EQ(c.Watermark(), 0);
  EXPECT_TRUE(c.Settle(0));
  EXPECT_EQ(c.Watermark(), 1);
  EXPECT_TRUE(c.Settle(1));
  EXPECT_EQ(c.Watermark(), 3);
  EXPECT_FALSE(c.Settle(1));  // twice
  EXPECT_FALSE(c.Settle(7));  // never delivered
  EXPECT_TRUE(c.Settle(3));
  EXPECT_EQ(c.Watermark(), 5);
}

TEST(QueueCursor, RequeuedComeFirstMarkedRedelivered) {
  QueueCursor c;
  for (int i = 0; i < 4; ++i) c.Take(10, true);
  EXPECT_TRUE(c.Requeue(3));
  EXPECT_TRUE(c.Requeue(1));
  EXPECT_FALSE(c.Requeue(1));
  EXPECT_EQ(c.ReadyCount(10), 2 + 6);
  auto t = c.Take(10, true);
  EXPECT_EQ(t->offset, 1);
  EXPECT_TRUE(t->redelivered);
  t = c.Take(10, false);  // no-ack: settled at once
  EXPECT_EQ(t->offset, 3);
  EXPECT_TRUE(t->redelivered);
  EXPECT_FALSE(c.IsUnacked(3));
  t = c.Take(10, true);
  EXPECT_EQ(t->offset, 4);
  EXPECT_FALSE(t->redelivered);
  EXPECT_EQ(c.Watermark(), 0);
}

TEST(QueueCursor, PurgeDropsReadyButNotUnacked) {
  QueueCursor c;
  c.Take(10, true);
  c.Take(10, true);
  c.Requeue(1);
  EXPECT_EQ(c.Purge(10), 1 + 8);
  EXPECT_EQ(c.ReadyCount(10), 0);
  EXPECT_TRUE(c.IsUnacked(0));
  EXPECT_EQ(c.Watermark(), 0);
  c.Settle(0);
  EXPECT_EQ(c.Watermark(), 10);
}

TEST(QueueCursor, EncodeDecodeTurnsUnackedIntoRequeued) {
  QueueCursor c(5);
  for (int i = 0; i < 4; ++i) c.Take(20, true);  // 5, 6, 7, 8
  c.Settle(6);
  c.Requeue(8);
  auto d = QueueCursor::Decode(c.Encode());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->next(), 9);
  EXPECT_EQ(d->UnackedCount(), 0);
  EXPECT_EQ(d->ReadyCount(20), 3 + 11);  // 5, 7, 8 requeued + 9..19
  EXPECT_EQ(d->Watermark(), 5);
  auto t = d->Take(20, true);
  EXPECT_EQ(t->offset, 5);
  EXPECT_TRUE(t->redelivered);
  EXPECT_EQ(d->Take(20, true)->offset, 7);
  EXPECT_EQ(d->Take(20, true)->offset, 8);
  EXPECT_FALSE(d->Take(20, true)->redelivered);
}

TEST(QueueCursor, DecodeRejectsDamage) {
  QueueCursor c;
  c.Take(3, true);
  std::string bytes = c.Encode();
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x40;
    EXPECT_FALSE(QueueCursor::Decode(bad).ok()) << "flip at " << i;
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(QueueCursor::Decode(bytes.substr(0, n)).ok()) << "cut at " << n;
  }
}

TEST(QueueCursor, SkipToDropsWhatTheLogNoLongerHas) {
  QueueCursor c;
  for (int i = 0; i < 3; ++i) c.Take(10, true);
  c.Requeue(0);
  c.Requeue(2);
  c.SkipTo(1);
  EXPECT_EQ(c.Take(10, true)->offset, 2);
  c.SkipTo(6);
  EXPECT_EQ(c.Take(10, true)->offset, 6);
}

TEST(QueueCursor, ByteAccountingFollowsReadyMessages) {
  QueueCursor c(0);
  c.NoteBytes(0, 100);  // off until enabled
  EXPECT_EQ(c.ReadyBytes(), 0u);
  c.EnableBytes();
  for (int64_t o = 0; o < 4; ++o) c.NoteBytes(o, 10 * (o + 1));  // 10 20 30 40
  EXPECT_EQ(c.ReadyBytes(), 100u);
  c.NoteBytes(0, 999);  // known already: ignored
  EXPECT_EQ(c.ReadyBytes(), 100u);
  c.Take(4, /*track=*/true);  // 0 unacked: not ready
  EXPECT_EQ(c.ReadyBytes(), 90u);
  c.Take(4, /*track=*/false);  // 1 settled (no-ack, drop-head)
  EXPECT_EQ(c.ReadyBytes(), 70u);
  EXPECT_TRUE(c.Requeue(0));  // ready again
  EXPECT_EQ(c.ReadyBytes(), 80u);
  c.Take(4, true);  // 0 again
  EXPECT_TRUE(c.Settle(0));
  EXPECT_EQ(c.ReadyBytes(), 70u);
  c.Take(4, true);           // 2 unacked
  EXPECT_EQ(c.Purge(4), 1);  // 3
  EXPECT_EQ(c.ReadyBytes(), 0u);
  EXPECT_TRUE(c.Requeue(2));  // the unacked one kept its size
  EXPECT_EQ(c.ReadyBytes(), 30u);
  c.SkipTo(3);  // below the log start: gone
  EXPECT_EQ(c.ReadyBytes(), 0u);
  c.NoteBytes(1, 5);  // settled offsets are not recorded
  EXPECT_EQ(c.ReadyBytes(), 0u);
}

}  // namespace
}  // namespace sluice::amqp
