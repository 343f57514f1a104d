// Topic registry persistence and idempotent-producer sequence rules.
#include <unistd.h>

#include <cstdlib>
#include <string>

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
