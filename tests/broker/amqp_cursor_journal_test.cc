// Durable queue cursors as a journal (src/amqp/cursor_journal.h): cursor deltas replay to the
// same persistent state as a full snapshot, records survive a round trip, and a torn or
// damaged tail is cut without losing the records before it.
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "log/file_util.h"
#include "src/amqp/cursor_journal.h"
#include "src/amqp/queue_cursor.h"

namespace sluice::amqp {
namespace {

// What a restart sees of a cursor: Decode(Encode()) turns every outstanding offset requeued.
std::string PersistentForm(const QueueCursor& c) {
  auto d = QueueCursor::Decode(c.Encode());
  EXPECT_TRUE(d.ok());
  return d->Encode();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cursor-journal-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)storage::RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CursorDelta, ReplayedDeltasEqualTheLiveCursorUnderRandomOperations) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    QueueCursor live(static_cast<int64_t>(rng() % 5));
    live.EnableDeltas();
    auto replica = QueueCursor::Decode(live.Encode());
    ASSERT_TRUE(replica.ok());
    int64_t end = live.next();
    std::vector<int64_t> unacked;
    for (int step = 0; step < 300; ++step) {
      switch (rng() % 9) {
        case 0:
        case 1:
          end += rng() % 4;  // publishes
          break;
        case 2:
        case 3: {
          bool track = rng() % 4 != 0;
          if (auto t = live.Take(end, track); t && track) unacked.push_back(t->offset);
          break;
        }
        case 4:
        case 5:
          if (!unacked.empty()) {
            size_t i = rng() % unacked.size();
            EXPECT_TRUE(live.Settle(unacked[i]));
            unacked.erase(unacked.begin() + i);
          }
          break;
        case 6:
          if (!unacked.empty()) {
            size_t i = rng() % unacked.size();
            EXPECT_TRUE(live.Requeue(unacked[i]));
            unacked.erase(unacked.begin() + i);
          }
          break;
        case 7:
          if (rng() % 8 == 0) live.Purge(end);
          if (rng() % 8 == 0) live.SkipTo(std::min<int64_t>(end, live.Watermark() + rng() % 3));
          break;
        case 8:
          if (live.HasDelta()) {
            QueueCursor::Delta d = live.TakeDelta();
            ASSERT_FALSE(d.overflow);
            ASSERT_TRUE(replica->ApplyDelta(d).ok()) << "seed " << seed << " step " << step;
            ASSERT_EQ(PersistentForm(live), replica->Encode())
                << "seed " << seed << " step " << step;
          }
          break;
      }
      // Requeued ones may have been skipped away or purged: keep only what is still unacked.
      std::erase_if(unacked, [&](int64_t o) { return !live.IsUnacked(o); });
    }
    ASSERT_TRUE(replica->ApplyDelta(live.TakeDelta()).ok());
    EXPECT_EQ(PersistentForm(live), replica->Encode()) << "seed " << seed;
  }
}

TEST(CursorDelta, AcksInOrderBecomeOneRange) {
  QueueCursor c;
  c.EnableDeltas();
  for (int i = 0; i < 1000; ++i) c.Take(1000, true);
  for (int64_t o = 0; o < 1000; ++o) c.Settle(o);
  QueueCursor::Delta d = c.TakeDelta();
  EXPECT_EQ(d.next, 1000);
  ASSERT_EQ(d.settled.size(), 1u);
  EXPECT_EQ(d.settled[0].first, 0);
  EXPECT_EQ(d.settled[0].second, 1000);
  EXPECT_FALSE(c.HasDelta());
}

TEST(CursorDelta, NothingIsRecordedUnlessEnabled) {
  QueueCursor c;
  c.Take(5, true);
  c.Settle(0);
  EXPECT_FALSE(c.HasDelta());
}

TEST(CursorDelta, TooManyRangesOverflowIntoAFullRecord) {
  QueueCursor c;
  c.EnableDeltas();
  const int64_t n = 200000;
  for (int64_t i = 0; i < n; ++i) c.Take(n, true);
  for (int64_t o = 0; o < n; o += 2) c.Settle(o);  // 100000 separate ranges
  QueueCursor::Delta d = c.TakeDelta();
  EXPECT_TRUE(d.overflow);
  EXPECT_TRUE(d.settled.empty());
  c.Settle(1);
  EXPECT_FALSE(c.TakeDelta().overflow);
}

TEST(CursorDelta, ApplyRejectsDeltasThatDoNotFit) {
  QueueCursor c(10);
  QueueCursor::Delta back{.next = 5};
  EXPECT_FALSE(c.ApplyDelta(back).ok());
  QueueCursor::Delta above{.next = 12, .settled = {{11, 13}}};
  EXPECT_FALSE(c.ApplyDelta(above).ok());
  QueueCursor::Delta unordered{.next = 20, .settled = {{15, 17}, {12, 16}}};
  EXPECT_FALSE(c.ApplyDelta(unordered).ok());
  QueueCursor::Delta empty_range{.next = 20, .settled = {{12, 12}}};
  EXPECT_FALSE(c.ApplyDelta(empty_range).ok());
  EXPECT_EQ(c.next(), 10);
}

std::string ThreeRecords() {
  std::string out;
  QueueCursor c(3);
  c.Take(10, true);
  CursorJournal::EncodeFull(7, c, &out);
  CursorJournal::EncodeDelta(7, QueueCursor::Delta{.next = 9, .settled = {{3, 4}, {5, 8}}}, &out);
  CursorJournal::EncodeDeleted(8, &out);
  return out;
}

TEST(CursorJournal, RecordsRoundTrip) {
  const std::string bytes = ThreeRecords();
  std::vector<CursorJournal::Record> recs;
  EXPECT_EQ(CursorJournal::DecodeRecords(bytes, &recs), bytes.size());
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].type, CursorJournal::Type::kFull);
  EXPECT_EQ(recs[0].queue_id, 7u);
  EXPECT_EQ(recs[0].full.next(), 4);
  EXPECT_EQ(recs[1].type, CursorJournal::Type::kDelta);
  EXPECT_EQ(recs[1].delta.next, 9);
  ASSERT_EQ(recs[1].delta.settled.size(), 2u);
  EXPECT_EQ(recs[1].delta.settled[1].first, 5);
  EXPECT_EQ(recs[1].delta.settled[1].second, 8);
  EXPECT_EQ(recs[2].type, CursorJournal::Type::kDeleted);
  EXPECT_EQ(recs[2].queue_id, 8u);
  // Replayed: 3 was outstanding, settled; 4..8 delivered since, 5..7 settled.
  QueueCursor replay = recs[0].full;
  ASSERT_TRUE(replay.ApplyDelta(recs[1].delta).ok());
  EXPECT_EQ(replay.next(), 9);
  EXPECT_EQ(replay.Watermark(), 4);
  EXPECT_EQ(replay.ReadyCount(9), 2);  // 4 and 8 requeued
}

TEST(CursorJournal, ATornTailKeepsEveryWholeRecordBeforeIt) {
  const std::string bytes = ThreeRecords();
  std::vector<size_t> ends;
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::vector<CursorJournal::Record> recs;
    size_t valid = CursorJournal::DecodeRecords(std::string_view(bytes).substr(0, cut), &recs);
    EXPECT_LE(valid, cut);
    if (cut == bytes.size()) EXPECT_EQ(recs.size(), 3u);
    if (valid == cut && !recs.empty()) ends.push_back(cut);
  }
  EXPECT_EQ(ends.size(), 3u);  // exactly at each record's end
}

TEST(CursorJournal, ABitFlipEndsTheJournalAtThatRecord) {
  const std::string bytes = ThreeRecords();
  std::vector<CursorJournal::Record> whole;
  CursorJournal::DecodeRecords(bytes, &whole);
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x08;
    std::vector<CursorJournal::Record> recs;
    CursorJournal::DecodeRecords(bad, &recs);
    EXPECT_LT(recs.size(), 3u) << "flip at " << i;
  }
}

TEST(CursorJournal, OpenCutsADamagedTailAndAppendsAfterTheLastGoodRecord) {
  TempDir dir;
  const std::string path = dir.path() + "/journal";
  {
    std::vector<CursorJournal::Record> recs;
    auto j = CursorJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_TRUE(recs.empty());
    ASSERT_TRUE((*j)->Append(ThreeRecords()).ok());
    ASSERT_TRUE((*j)->Append("\x01\x02\x03 torn").ok());
    ASSERT_TRUE((*j)->Sync().ok());
  }
  std::string more;
  CursorJournal::EncodeDeleted(9, &more);
  {
    std::vector<CursorJournal::Record> recs;
    auto j = CursorJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(recs.size(), 3u);
    EXPECT_EQ((*j)->size(), ThreeRecords().size());
    ASSERT_TRUE((*j)->Append(more).ok());
  }
  {
    std::vector<CursorJournal::Record> recs;
    auto j = CursorJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok());
    ASSERT_EQ(recs.size(), 4u);
    EXPECT_EQ(recs[3].queue_id, 9u);
    // A rewrite replaces everything.
    ASSERT_TRUE((*j)->Rewrite(more).ok());
    ASSERT_TRUE((*j)->Append(more).ok());
  }
  std::vector<CursorJournal::Record> recs;
  ASSERT_TRUE(CursorJournal::Open(path, &recs).ok());
  EXPECT_EQ(recs.size(), 2u);
}

}  // namespace
}  // namespace sluice::amqp
