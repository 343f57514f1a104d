// Topic registry persistence and idempotent-producer sequence rules.
#include <unistd.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "log/file_util.h"
#include "log/record_batch.h"
#include "src/kafka/producer_state.h"
#include "src/topic_registry.h"

namespace sluice::broker {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-broker-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)storage::RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(TopicRegistry, SurvivesReopenWithConfigsAndIds) {
  TempDir dir;
  std::array<uint8_t, 16> id;
  {
    auto r = TopicRegistry::Open(dir.path(), {});
    ASSERT_TRUE(r.ok());
    auto t = (*r)->Create("orders", 4, {{"retention.ms", "1000"}, {"flush.messages", "1"}});
    ASSERT_TRUE(t.ok());
    id = (*t)->id;
    ASSERT_TRUE((*r)->Create("other", 1, {}).ok());
    EXPECT_TRUE(absl::IsAlreadyExists((*r)->Create("orders", 1, {}).status()));
    ASSERT_TRUE((*r)->SetPartitions("orders", 6).ok());
    ASSERT_TRUE((*r)->Delete("other").ok());
    EXPECT_EQ(*(*r)->NextProducerId(), 0);
    EXPECT_EQ(*(*r)->NextProducerId(), 1);
  }
  auto r = TopicRegistry::Open(dir.path(), {});
  ASSERT_TRUE(r.ok());
  const TopicInfo* t = (*r)->Find("orders");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->partitions, 6);
  EXPECT_EQ(t->id, id);
  EXPECT_EQ((*r)->Find("other"), nullptr);
  storage::LogConfig c = (*r)->ConfigFor(*t);
  EXPECT_EQ(c.retention_ms, 1000);
  EXPECT_EQ(c.flush_messages, 1);
  // Producer ids are never reused after a restart.
  EXPECT_GE(*(*r)->NextProducerId(), 2);
}

TEST(TopicRegistry, CorruptFileFailsOpenLoudly) {
  TempDir dir;
  {
    auto r = TopicRegistry::Open(dir.path(), {});
    ASSERT_TRUE((*r)->Create("orders", 1, {}).ok());
  }
  std::string path = dir.path() + "/topics.meta";
  auto bytes = storage::ReadWholeFile(path);
  ASSERT_TRUE(bytes.ok());
  (*bytes)[20] ^= 0x40;
  ASSERT_TRUE(storage::WriteFileAtomically(path, *bytes).ok());
  EXPECT_TRUE(absl::IsDataLoss(TopicRegistry::Open(dir.path(), {}).status()));
}

TEST(TopicRegistry, InternalTopicIsNeitherDeletedNorRepartitioned) {
  TempDir dir;
  EXPECT_TRUE(IsInternalTopic("__consumer_offsets"));
  EXPECT_FALSE(IsInternalTopic("orders"));
  {
    auto r = TopicRegistry::Open(dir.path(), {});
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Create("__consumer_offsets", 50, {{"cleanup.policy", "compact"}}).ok());
    EXPECT_TRUE(absl::IsPermissionDenied((*r)->Delete("__consumer_offsets")));
    EXPECT_TRUE(absl::IsPermissionDenied((*r)->SetPartitions("__consumer_offsets", 60)));
  }
  auto r = TopicRegistry::Open(dir.path(), {});
  ASSERT_TRUE(r.ok());
  const TopicInfo* t = (*r)->Find("__consumer_offsets");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->partitions, 50);
}

// CreateAll and DeleteAll change many topics with one write and one change call (a
// CreateTopics of thousands of topics is one registry write), and all or nothing.
TEST(TopicRegistry, CreateAllAndDeleteAllAreOneChangeAndAllOrNothing) {
  TempDir dir;
  std::vector<std::vector<std::string>> changes;
  {
    auto r = TopicRegistry::Open(dir.path(), {});
    ASSERT_TRUE(r.ok());
    (*r)->set_on_change([&](const std::vector<std::string>& names) { changes.push_back(names); });
    std::vector<TopicRegistry::NewTopic> topics;
    for (int i = 0; i < 1000; ++i) {
      topics.push_back({"t" + std::to_string(i), 1 + i % 3, {}});
    }
    topics[7].overrides["retention.ms"] = "5000";
    auto created = (*r)->CreateAll(topics);
    ASSERT_TRUE(created.ok()) << created.status();
    ASSERT_EQ(created->size(), 1000u);
    EXPECT_EQ((*created)[999]->name, "t999");
    ASSERT_EQ(changes.size(), 1u);
    EXPECT_EQ(changes[0].size(), 1000u);

    // One existing name, or one named twice: nothing created, no change.
    std::vector<TopicRegistry::NewTopic> clash = {{"new1", 1, {}}, {"t5", 1, {}}};
    EXPECT_TRUE(absl::IsAlreadyExists((*r)->CreateAll(clash).status()));
    std::vector<TopicRegistry::NewTopic> twice = {{"new2", 1, {}}, {"new2", 2, {}}};
    EXPECT_TRUE(absl::IsInvalidArgument((*r)->CreateAll(twice).status()));
    EXPECT_EQ((*r)->Find("new1"), nullptr);
    EXPECT_EQ((*r)->Find("new2"), nullptr);
    EXPECT_EQ(changes.size(), 1u);

    // Deletes: a missing or internal topic among them deletes none.
    ASSERT_TRUE((*r)->Create("__consumer_offsets", 1, {}).ok());
    EXPECT_TRUE(absl::IsNotFound((*r)->DeleteAll({"t1", "nope"})));
    EXPECT_TRUE(absl::IsPermissionDenied((*r)->DeleteAll({"t1", "__consumer_offsets"})));
    EXPECT_NE((*r)->Find("t1"), nullptr);
    std::vector<std::string> doomed;
    for (int i = 0; i < 500; ++i) doomed.push_back("t" + std::to_string(2 * i));
    ASSERT_TRUE((*r)->DeleteAll(doomed).ok());
    ASSERT_EQ(changes.size(), 3u);  // the offsets topic's creation, then the deletes
    EXPECT_EQ(changes[2], doomed);
  }
  auto r = TopicRegistry::Open(dir.path(), {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->List().size(), 501u);  // t1, t3, ..., t999 and the offsets topic
  EXPECT_EQ((*r)->Find("t8"), nullptr);
  ASSERT_NE((*r)->Find("t7"), nullptr);
  EXPECT_EQ((*r)->Find("t7")->partitions, 2);
  EXPECT_EQ((*r)->ConfigFor(*(*r)->Find("t7")).retention_ms, 5000);
}

TEST(TopicConfig, ParsesKafkaNamesAndRejectsBadValues) {
  storage::LogConfig c;
  EXPECT_TRUE(ApplyTopicConfig("message.timestamp.type", "LogAppendTime", &c).ok());
  EXPECT_EQ(c.timestamp_type, storage::TimestampType::kLogAppendTime);
  EXPECT_TRUE(ApplyTopicConfig("max.message.bytes", "2000000", &c).ok());
  EXPECT_EQ(c.max_batch_bytes, 2000000u);
  EXPECT_EQ(TopicConfigValue("max.message.bytes", c), "2000000");
  EXPECT_FALSE(ApplyTopicConfig("retention.ms", "soon", &c).ok());
  EXPECT_FALSE(ApplyTopicConfig("no.such.config", "1", &c).ok());
  EXPECT_FALSE(ApplyTopicConfig("segment.bytes", "99999999999", &c).ok());
  EXPECT_TRUE(IsValidTopicName("a.b_c-1"));
  EXPECT_FALSE(IsValidTopicName(".."));
  EXPECT_FALSE(IsValidTopicName("a/b"));
  EXPECT_FALSE(IsValidTopicName(std::string(250, 'a')));
}

using Verdict = PartitionProducerState::Verdict;

TEST(ProducerState, RetryIsDuplicateGapIsOutOfOrderOldEpochIsStale) {
  PartitionProducerState s;
  int64_t dup = -1;
  EXPECT_EQ(s.Check(7, 0, 0, 9, &dup), Verdict::kAppend);
  s.Record(7, 0, 0, 9, 100);
  EXPECT_EQ(s.Check(7, 0, 0, 9, &dup), Verdict::kDuplicate);
  EXPECT_EQ(dup, 100);
  EXPECT_EQ(s.Check(7, 0, 11, 12, &dup), Verdict::kOutOfOrder);
  EXPECT_EQ(s.Check(7, 0, 10, 12, &dup), Verdict::kAppend);
  s.Record(7, 1, 0, 0, 200);  // epoch bump starts over
  EXPECT_EQ(s.Check(7, 0, 13, 13, &dup), Verdict::kStaleEpoch);
  EXPECT_EQ(s.Check(7, 2, 5, 5, &dup), Verdict::kOutOfOrder);
  EXPECT_EQ(s.Check(7, 2, 0, 5, &dup), Verdict::kAppend);
}

TEST(ProducerState, RemembersOnlyTheLastFiveBatches) {
  PartitionProducerState s;
  for (int i = 0; i < 7; ++i) s.Record(1, 0, i * 10, i * 10 + 9, i * 10);
  int64_t dup = -1;
  EXPECT_EQ(s.Check(1, 0, 20, 29, &dup), Verdict::kDuplicate);
  EXPECT_EQ(dup, 20);
  // Aged out: no longer recognised as a retry.
  EXPECT_NE(s.Check(1, 0, 10, 19, &dup), Verdict::kDuplicate);
}

// A producer-state option set on a clock the test moves.
struct ManualClock {
  std::shared_ptr<int64_t> now = std::make_shared<int64_t>(1'700'000'000'000);
  ProducerStateOptions Options(int64_t expiration_ms = 86'400'000, size_t max = 10'000) const {
    ProducerStateOptions o;
    o.expiration_ms = expiration_ms;
    o.max_producers = max;
    o.now_ms = [n = now] { return *n; };
    return o;
  }
};

TEST(ProducerState, IdleProducerIdsExpireAfterProducerIdExpirationMs) {
  ManualClock clock;
  PartitionProducerState s(clock.Options(), "t-0");
  s.Record(7, 0, 0, 9, 100);
  *clock.now += 86'400'000 - 1;
  EXPECT_EQ(s.ExpireIdle(), 0u);
  int64_t dup = -1;
  EXPECT_EQ(s.Check(7, 0, 0, 9, &dup), Verdict::kDuplicate);
  s.Record(8, 0, 0, 0, 200);  // another producer: 7 stays the longest idle
  *clock.now += 1;
  EXPECT_EQ(s.ExpireIdle(), 1u) << "idle for exactly producer.id.expiration.ms";
  EXPECT_EQ(s.producers(), 1u);
  // Forgotten: its next batch is taken as a new producer's, at any sequence (as Kafka).
  EXPECT_EQ(s.Check(7, 0, 10, 12, &dup), Verdict::kAppend);
  // Recording expires lazily too.
  *clock.now += 86'400'000;
  s.Record(9, 0, 0, 0, 300);
  EXPECT_EQ(s.producers(), 1u);
}

TEST(ProducerState, ProducerIdsPerPartitionAreBoundedLongestIdleForgottenFirst) {
  ManualClock clock;
  PartitionProducerState s(clock.Options(86'400'000, 3), "t-0");
  s.Record(1, 0, 0, 0, 10);
  s.Record(2, 0, 0, 0, 11);
  s.Record(3, 0, 0, 0, 12);
  s.Record(1, 0, 1, 1, 13);  // 1 is active again: 2 is now the longest idle
  s.Record(4, 0, 0, 0, 14);
  EXPECT_EQ(s.producers(), 3u);
  EXPECT_EQ(s.evicted(), 1u);
  int64_t dup = -1;
  EXPECT_EQ(s.Check(1, 0, 1, 1, &dup), Verdict::kDuplicate);
  EXPECT_EQ(dup, 13);
  EXPECT_EQ(s.Check(3, 0, 0, 0, &dup), Verdict::kDuplicate);
  EXPECT_EQ(s.Check(4, 0, 0, 0, &dup), Verdict::kDuplicate);
  EXPECT_EQ(s.Check(2, 0, 0, 0, &dup), Verdict::kAppend) << "2 was forgotten";
}

TEST(ProducerState, TwoHundredThousandFabricatedProducerIdsStayBoundedBesideAnActiveProducer) {
  ManualClock clock;
  PartitionProducerState s(clock.Options(), "t-0");
  int64_t offset = 0;
  int32_t seq = 0;
  for (int64_t pid = 1'000'000; pid < 1'200'000; ++pid) {
    s.Record(pid, 0, 0, 0, offset++);
    if (pid % 1000 == 0) {  // a well-behaved producer keeps writing meanwhile
      int64_t dup = -1;
      ASSERT_EQ(s.Check(42, 0, seq, seq, &dup), Verdict::kAppend);
      s.Record(42, 0, seq, seq, offset++);
      ASSERT_EQ(s.Check(42, 0, seq, seq, &dup), Verdict::kDuplicate) << "its retry is known";
      ++seq;
    }
    ASSERT_LE(s.producers(), 10'000u);
  }
  EXPECT_EQ(s.producers(), 10'000u);
  EXPECT_EQ(s.evicted(), 200'001u - 10'000u);
}

TEST(ProducerState, SnapshotKeepsActivityTimesLeavesOutExpiredAndReadsVersion1) {
  TempDir dir;
  storage::LogConfig config;
  auto io = storage::IoBackend::CreatePwrite();
  std::string log_dir = dir.path() + "/t-0";
  auto log = storage::PartitionLog::Open(log_dir, config, io.get());
  ASSERT_TRUE(log.ok());
  ManualClock clock;
  const int64_t expiration = 60'000;
  {
    PartitionProducerState s(clock.Options(expiration), "t-0");
    s.Record(1, 0, 0, 4, 0);
    *clock.now += 30'000;
    s.Record(2, 0, 0, 4, 5);
    ASSERT_TRUE(s.SaveSnapshot(log_dir, 0).ok());
  }
  *clock.now += 40'000;  // 1 idle 70 s (expired), 2 idle 40 s
  auto loaded = PartitionProducerState::Load(**log, clock.Options(expiration));
  int64_t dup = -1;
  EXPECT_EQ(loaded->producers(), 1u);
  EXPECT_EQ(loaded->Check(2, 0, 0, 4, &dup), Verdict::kDuplicate);
  EXPECT_EQ(loaded->Check(1, 0, 0, 4, &dup), Verdict::kAppend);
  *clock.now += 20'000;  // 2 expires by its time from before the restart
  EXPECT_EQ(loaded->ExpireIdle(), 1u);

  // A version-1 snapshot (no activity times): its producers count as active at load.
  std::vector<uint8_t> v1 = {'S', 'L', 'P', 'S'};
  auto put = [&v1](const auto& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    v1.insert(v1.end(), p, p + sizeof(v));
  };
  put(uint32_t{1});
  put(int64_t{0});   // covered end offset
  put(uint32_t{1});  // producers
  put(int64_t{77});
  put(int16_t{2});
  put(uint32_t{1});
  put(int32_t{0});
  put(int32_t{3});
  put(int64_t{40});
  put(static_cast<uint64_t>(XXH3_64bits(v1.data(), v1.size())));
  ASSERT_TRUE(storage::WriteFileAtomically(log_dir + "/producer_state.snapshot", v1).ok());
  auto old = PartitionProducerState::Load(**log, clock.Options(expiration));
  EXPECT_EQ(old->Check(77, 2, 0, 3, &dup), Verdict::kDuplicate);
  EXPECT_EQ(dup, 40);
  ASSERT_TRUE((*log)->Close().ok());
}

TEST(ProducerState, SnapshotRoundTripsAndRebuildsFromBatchHeaders) {
  TempDir dir;
  storage::LogConfig config;
  auto io = storage::IoBackend::CreatePwrite();
  std::string log_dir = dir.path() + "/t-0";
  {
    auto log = storage::PartitionLog::Open(log_dir, config, io.get());
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 3; ++i) {
      storage::RecordBatchBuilder b(0, 1000);
      b.set_producer(42, 3, i * 2);
      b.Add(std::string_view("k"), std::string_view("v1"));
      b.Add(std::string_view("k"), std::string_view("v2"));
      std::vector<uint8_t> bytes = b.Build();
      ASSERT_TRUE((*log)->Append(bytes, storage::AckLevel::kWritten, nullptr).ok());
    }
    ASSERT_TRUE((*log)->Flush().ok());
    // No snapshot: rebuilt from the batch headers.
    auto state = PartitionProducerState::Load(**log);
    int64_t dup = -1;
    EXPECT_EQ(state->Check(42, 3, 2, 3, &dup), Verdict::kDuplicate);
    EXPECT_EQ(dup, 2);
    EXPECT_EQ(state->Check(42, 3, 6, 7, &dup), Verdict::kAppend);
    EXPECT_EQ(state->Check(42, 3, 8, 9, &dup), Verdict::kOutOfOrder);
    state->Record(42, 3, 6, 7, 99);  // only in the snapshot
    ASSERT_TRUE(state->SaveSnapshot(log_dir, (*log)->log_end_offset()).ok());
    auto again = PartitionProducerState::Load(**log);
    EXPECT_EQ(again->Check(42, 3, 6, 7, &dup), Verdict::kDuplicate);
    EXPECT_EQ(dup, 99);
    ASSERT_TRUE((*log)->Close().ok());
  }
}

}  // namespace
}  // namespace sluice::broker
