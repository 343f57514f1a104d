// Fetch (sessionless, long-poll) and ListOffsets.
//
// Record data is never copied: each partition's answer is a FileSlice of whole batches from
// PartitionLog::Read, encoded as an external range of the response frame and sent as a file
// range (splice/sendfile). A fetch that finds fewer than min_bytes waits up to max_wait_ms: it
// is re-run at the end of a loop iteration in which one of its partitions' high watermark
// moved, and answered at the deadline with whatever is there.
//
// Fetch v2-3 (message format v1): the slice is read into memory and its records down-converted
// to uncompressed magic-1 messages (legacy_records.h), within partition_max_bytes / max_bytes
// but at least one message per response; no zero-copy for these.
#include <chrono>
#include <deque>

#include "absl/time/clock.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/handlers.h"
#include "src/kafka/legacy_records.h"

namespace sluice::broker {

namespace {

struct FetchTarget {
  size_t topic_index;
  size_t partition_index;
};

class FetchOperation : public PendingFetch, public std::enable_shared_from_this<FetchOperation> {
 public:
  FetchOperation(KafkaBroker* broker, kafka::FetchRequest req, Responder responder)
      : broker_(broker), req_(std::move(req)), responder_(std::move(responder)) {}

  // Reads every partition; answers and returns true when enough data is there (or the request
  // cannot wait).
  bool Run(bool final) {
    if (answered_) return true;
    std::vector<storage::FileSlice> slices;
    kafka::FetchResponse resp;
    uint64_t bytes = 0;
    bool error = false;
    int64_t remaining = req_.max_bytes <= 0 ? 0 : req_.max_bytes;
    const bool down_convert = responder_.api_version() < 4;  // message format v1
    std::deque<std::vector<uint8_t>> converted;              // borrowed by `resp`
    watermarks_.clear();
    for (const auto& t : req_.topics) {
      auto& rt = resp.responses.emplace_back();
      rt.topic = t.topic;
      for (const auto& p : t.partitions) {
        auto& rp = rt.partitions.emplace_back();
        rp.partition_index = p.partition;
        rp.aborted_transactions.reset();
        storage::PartitionLog* log = broker_->GetLog(t.topic, p.partition);
        if (log == nullptr) {
          rp.error_code = kafka::errors::kUnknownTopicOrPartition;
          rp.high_watermark = rp.last_stable_offset = rp.log_start_offset = -1;
          error = true;
          watermarks_.push_back(-1);
          continue;
        }
        rp.high_watermark = log->high_watermark();
        rp.last_stable_offset = log->high_watermark();  // no transactions: LSO = HW
        rp.log_start_offset = log->log_start_offset();
        watermarks_.push_back(log->high_watermark());
        if (p.fetch_offset == log->high_watermark()) continue;
        uint32_t limit = static_cast<uint32_t>(std::max<int32_t>(p.partition_max_bytes, 0));
        // max_bytes bounds the whole response and partition_max_bytes each partition; only
        // the first batch of the first non-empty partition may exceed them (so a consumer
        // always progresses).
        if (bytes > 0 && remaining <= 0) continue;
        limit = static_cast<uint32_t>(std::min<int64_t>(limit, std::max<int64_t>(remaining, 0)));
        auto slice = log->Read(p.fetch_offset, std::max<uint32_t>(limit, 1));
        if (!slice.ok()) {
          rp.error_code = absl::IsOutOfRange(slice.status()) ? kafka::errors::kOffsetOutOfRange
                                                             : kafka::errors::kKafkaStorageError;
          error = true;
          continue;
        }
        if (slice->size == 0) continue;
        // Read returns at least one whole batch; past the first partition that batch must fit.
        if (bytes > 0 && slice->size > limit) continue;
        if (down_convert) {
          auto raw = storage::PartitionLog::ReadBytes(*slice);
          std::vector<uint8_t>& out = converted.emplace_back();
          absl::StatusOr<legacy::DownConvertResult> r =
              raw.ok() ? legacy::DownConvertToV1(
                             *raw, p.fetch_offset,
                             std::min<int64_t>(limit, std::max<int64_t>(remaining, 0)),
                             /*at_least_one=*/bytes == 0, &out)
                       : raw.status();
          if (!r.ok()) {
            rp.error_code = kafka::errors::kKafkaStorageError;
            error = true;
            continue;
          }
          if (out.empty()) continue;
          rp.records = kafka::Records::Borrowed(out);
          bytes += out.size();
          remaining -= static_cast<int64_t>(out.size());
          continue;
        }
        rp.records.AppendExternal(slice->size, slices.size());
        slices.push_back(std::move(*slice));
        bytes += slices.back().size;
        remaining -= slices.back().size;
      }
    }
    if (!final && !error && bytes < static_cast<uint64_t>(std::max(req_.min_bytes, 1)) &&
        req_.max_wait_ms > 0) {
      return false;
    }
    answered_ = true;
    broker_->reactor().Cancel(timer_);
    responder_.Send(resp, slices);
    return true;
  }

  void Wait() {
    std::weak_ptr<FetchOperation> weak = shared_from_this();
    timer_ = broker_->reactor().RunAfter(absl::Milliseconds(req_.max_wait_ms), [weak] {
      if (auto self = weak.lock()) self->Run(/*final=*/true);
    });
    broker_->AddPendingFetch(shared_from_this());
  }

  // End of a loop iteration: re-run only when a high watermark moved.
  bool Check() override {
    if (answered_) return true;
    size_t i = 0;
    bool moved = false;
    for (const auto& t : req_.topics) {
      for (const auto& p : t.partitions) {
        storage::PartitionLog* log = broker_->GetLog(t.topic, p.partition);
        int64_t hw = log ? log->high_watermark() : -1;
        if (i >= watermarks_.size() || hw != watermarks_[i]) moved = true;
        ++i;
      }
    }
    return moved ? Run(/*final=*/false) : false;
  }

 private:
  KafkaBroker* const broker_;
  const kafka::FetchRequest req_;
  Responder responder_;
  std::vector<int64_t> watermarks_;
  net::TimerId timer_;
  bool answered_ = false;
};

}  // namespace

void HandleFetch(RequestContext& ctx, kafka::FetchRequest& req) {
  auto op = std::make_shared<FetchOperation>(&ctx.broker, std::move(req), std::move(ctx.responder));
  if (!op->Run(/*final=*/false)) op->Wait();
}

void HandleListOffsets(RequestContext& ctx, kafka::ListOffsetsRequest& req) {
  constexpr int64_t kLatest = -1;
  constexpr int64_t kEarliest = -2;
  kafka::ListOffsetsResponse resp;
  for (const auto& t : req.topics) {
    auto& rt = resp.topics.emplace_back();
    rt.name = t.name;
    for (const auto& p : t.partitions) {
      auto& rp = rt.partitions.emplace_back();
      rp.partition_index = p.partition_index;
      storage::PartitionLog* log = ctx.broker.GetLog(t.name, p.partition_index);
      if (log == nullptr) {
        rp.error_code = kafka::errors::kUnknownTopicOrPartition;
        continue;
      }
      rp.leader_epoch = 0;
      if (p.timestamp == kLatest) {
        rp.offset = log->high_watermark();
      } else if (p.timestamp == kEarliest) {
        rp.offset = log->log_start_offset();
      } else if (p.timestamp < 0) {
        // -3 (max timestamp) and other specials are not supported yet.
        rp.error_code = kafka::errors::kUnsupportedVersion;
      } else {
        auto offset = log->OffsetForTime(p.timestamp);
        if (offset.ok()) {
          rp.offset = *offset;
          rp.timestamp = p.timestamp;
        } else {
          // No record at or after the timestamp: Kafka answers offset -1, timestamp -1.
          rp.offset = -1;
          rp.timestamp = -1;
        }
      }
    }
  }
  ctx.responder.Send(resp);
}

}  // namespace sluice::broker
