// Publisher confirms of persistent messages on durable queues: confirmed when the message is
// fdatasync'ed or, first, when it is consumed from the queue (RabbitMQ's rule), exactly once,
// and a queue keeps no bookkeeping for messages whose sync came first.
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "log/io_backend.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "src/amqp/amqp_broker.h"
#include "src/amqp/message_cache.h"
#include "tests/log/log_test_util.h"

namespace sluice::broker {
namespace {

class AmqpConfirmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::LogConfig config;
    config.flush_messages = 1;  // as durable queues' logs run
    auto log = storage::PartitionLog::Open(dir_.Sub("q"), config, io_.get());
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = std::move(*log);
    queue_.log = log_.get();
  }
  void TearDown() override { log_.reset(); }

  // Appends one persistent message whose confirm counts into `fired`; returns its offset.
  int64_t AppendDurable(int* fired, absl::Status* status = nullptr) {
    storage::RecordBatchBuilder b(0, 1000);
    b.Add("k", "persistent message", {}, 1000);
    std::vector<uint8_t> batch = b.Build();
    auto slot = std::make_shared<storage::AppendCallback>(
        [fired, status](absl::Status s, const storage::AppendResult&) {
          ++*fired;
          if (status != nullptr) *status = s;
        });
    auto r = log_->Append(batch, storage::AckLevel::kDurable, queue_.SyncCallback(slot));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return -1;
    queue_.AwaitSync(r->base_offset, slot);
    return r->base_offset;
  }

  // Completes the writes only: the log then asks for its sync, which stays unsubmitted.
  void CompleteWrites() {
    log_->SubmitBuffered();
    io_->Submit();
    io_->Poll(absl::ZeroDuration());
  }

  void CompleteSyncs() {
    for (int i = 0; i < 100 && log_->durable_offset() < log_->high_watermark(); ++i) {
      io_->Submit();
      io_->Poll(absl::Milliseconds(10));
    }
    ASSERT_EQ(log_->durable_offset(), log_->high_watermark());
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<storage::IoBackend> io_ = storage::IoBackend::CreatePwrite();
  std::unique_ptr<storage::PartitionLog> log_;
  AmqpQueue queue_{std::make_shared<MessageCacheBudget>(1 << 20)};
};

TEST_F(AmqpConfirmTest, AMessageConsumedBeforeItsSyncIsConfirmedThenAndOnlyOnce) {
  int fired = 0;
  absl::Status status = absl::UnknownError("not fired");
  const int64_t offset = AppendDurable(&fired, &status);
  CompleteWrites();
  ASSERT_EQ(log_->high_watermark(), 1);
  ASSERT_EQ(log_->durable_offset(), 0);  // written, not synced
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 1u);

  queue_.Consumed(offset);  // acked by its consumer
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 0u);

  CompleteSyncs();
  EXPECT_EQ(fired, 1);
}

TEST_F(AmqpConfirmTest, AMessageSyncedFirstIsConfirmedBySyncAndItsConsumptionChangesNothing) {
  int fired = 0;
  const int64_t offset = AppendDurable(&fired);
  CompleteWrites();
  EXPECT_EQ(fired, 0);
  CompleteSyncs();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 0u);
  queue_.Consumed(offset);
  EXPECT_EQ(fired, 1);
}

TEST_F(AmqpConfirmTest, ConsumingAnotherMessageConfirmsNothing) {
  int first = 0, second = 0;
  const int64_t a = AppendDurable(&first);
  AppendDurable(&second);
  CompleteWrites();
  queue_.Consumed(a);
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 0);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 1u);
  CompleteSyncs();
  EXPECT_EQ(second, 1);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 0u);
}

// A backlog nobody consumes costs no bookkeeping once synced.
TEST_F(AmqpConfirmTest, ABacklogLeavesNoEntriesAfterItsSync) {
  int fired = 0;
  for (int i = 0; i < 1000; ++i) AppendDurable(&fired);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 1000u);
  CompleteWrites();
  CompleteSyncs();
  EXPECT_EQ(fired, 1000);
  EXPECT_EQ(queue_.confirms_awaiting_sync(), 0u);
}

// A queue deleted before the sync: the confirm still comes from the log.
TEST_F(AmqpConfirmTest, TheSyncConfirmsAfterTheQueueIsGone) {
  int fired = 0;
  auto queue = std::make_unique<AmqpQueue>(std::make_shared<MessageCacheBudget>(1 << 20));
  queue->log = log_.get();
  storage::RecordBatchBuilder b(0, 1000);
  b.Add("k", "v", {}, 1000);
  std::vector<uint8_t> batch = b.Build();
  auto slot = std::make_shared<storage::AppendCallback>(
      [&fired](absl::Status, const storage::AppendResult&) { ++fired; });
  auto r = log_->Append(batch, storage::AckLevel::kDurable, queue->SyncCallback(slot));
  ASSERT_TRUE(r.ok());
  queue->AwaitSync(r->base_offset, slot);
  slot.reset();
  queue.reset();
  CompleteWrites();
  CompleteSyncs();
  EXPECT_EQ(fired, 1);
}

}  // namespace
}  // namespace sluice::broker
