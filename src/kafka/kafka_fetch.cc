// Fetch (sessionless, long-poll) and ListOffsets.
//
// Record data is never copied: each partition's answer is a FileSlice of whole batches from
// PartitionLog::Read, encoded as an external range of the response frame and sent as a file
// range (splice/sendfile). A fetch that finds fewer than min_bytes waits up to max_wait_ms: it
// is re-run at the end of a loop iteration in which one of its partitions' high watermark
// moved, and answered at the deadline with whatever is there.
//
// Shards: the connection's shard asks each partition's owner (src/shard_map.h) for its
// watermarks and a slice read up to min(partition_max_bytes, max_bytes), then assembles the
// response in request order under the max_bytes budget, cutting slices back to whole batches
// where the budget runs out (the same answer as reading each partition with what is left).
// A FileSlice holds its segment file open, so it can be sent from any shard. A waiting fetch
// leaves a one-shot PartitionWatch on each owner, whose wake re-runs it.
//
// Fetch v2-3 (message format v1): the slice is read into memory and its records down-converted
// to uncompressed magic-1 messages (legacy_records.h), within partition_max_bytes / max_bytes
// but at least one message per response; no zero-copy for these.
//
// Backpressure (src/kafka/responder.h): before building a response, the fetch reserves what it
// will hold against its connection (memory for a down-converted one, file ranges for a
// zero-copy one); when the connection has too much queued that its client has not read, the
// fetch waits for room instead of building, so pipelined fetches that are never read cannot
// fill the broker's memory or descriptor table. Down-conversion, the one fetch whose cost is
// CPU per byte, runs as reactor background work (Reactor::PostBackground: a couple of
// milliseconds of it per loop iteration), so a burst of pipelined v3 fetches is spread over
// iterations with other clients' requests in between instead of holding the loop.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <type_traits>

#include "absl/time/clock.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/handlers.h"
#include "src/kafka/legacy_records.h"

namespace sluice::broker {

namespace {

// One partition to read, as sent to its owner.
struct ReadRequest {
  std::string topic;
  int32_t partition;
  int64_t fetch_offset;
  uint32_t max_bytes;
  int32_t current_leader_epoch = -1;
  int32_t replica_id = -1;  // >= 0: a follower (broker id) fetching to replicate
};

// What the owner found.
struct ReadResult {
  bool unknown = false;  // no such topic or partition
  int16_t error_code = 0;
  int64_t high_watermark = -1;
  int64_t log_start_offset = -1;
  int64_t watched = -1;      // what a long poll waits to see move (PartitionWatch)
  storage::FileSlice slice;  // size 0: nothing to read
};

// On the owner shard.
std::vector<ReadResult> ReadPartitions(KafkaBroker& broker, const std::vector<ReadRequest>& reqs) {
  std::vector<ReadResult> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const ReadRequest& r = reqs[i];
    ReadResult& res = out[i];
    const bool follower = r.replica_id >= 0;
    const int16_t e =
        follower && broker.replicas() != nullptr
            ? broker.replicas()->OnFollowerFetch({r.topic, r.partition}, r.replica_id,
                                                 r.fetch_offset, r.current_leader_epoch)
            : broker.LeadershipError(r.topic, r.partition, r.current_leader_epoch);
    if (e != 0) {
      res.error_code = e;
      continue;
    }
    storage::PartitionLog* log = broker.GetLog(r.topic, r.partition);
    if (log == nullptr) {
      res.unknown = true;
      continue;
    }
    res.high_watermark = log->high_watermark();
    res.log_start_offset = log->log_start_offset();
    // A follower reads up to the written end (what it copies becomes replicated by its
    // copying); consumers up to the high watermark.
    const int64_t end = follower ? log->written_offset() : res.high_watermark;
    res.watched = end;
    if (r.fetch_offset == end) continue;
    auto slice = follower ? log->ReadForReplica(r.fetch_offset, std::max<uint32_t>(r.max_bytes, 1))
                          : log->Read(r.fetch_offset, std::max<uint32_t>(r.max_bytes, 1));
    if (!slice.ok()) {
      res.error_code = absl::IsOutOfRange(slice.status()) ? kafka::errors::kOffsetOutOfRange
                                                          : kafka::errors::kKafkaStorageError;
      continue;
    }
    res.slice = std::move(*slice);
  }
  return out;
}

// Cuts `slice` (whole batches) back to the batches that fit in `limit`, keeping at least the
// first: what PartitionLog::Read(offset, limit) returns. Reads the batch length fields.
absl::Status TrimToWholeBatches(storage::FileSlice* slice, uint32_t limit) {
  uint64_t kept = 0;
  while (kept < slice->size) {
    uint8_t len_field[4];
    // Batch header: base offset (8 bytes), then the length of the rest (4 bytes, big endian).
    ssize_t n = ::pread(slice->file->fd(), len_field, sizeof(len_field),
                        static_cast<off_t>(slice->position + kept + 8));
    if (n != static_cast<ssize_t>(sizeof(len_field))) {
      return absl::DataLossError("short read of a batch header");
    }
    const uint64_t batch = 12 + (uint64_t{len_field[0]} << 24 | uint64_t{len_field[1]} << 16 |
                                 uint64_t{len_field[2]} << 8 | uint64_t{len_field[3]});
    if (kept > 0 && kept + batch > limit) break;
    kept += batch;
    if (kept >= limit) break;
  }
  if (kept > slice->size) return absl::DataLossError("batch lengths exceed the slice");
  slice->size = static_cast<uint32_t>(kept);
  return absl::OkStatus();
}

// One partition of ListOffsets, on its owner shard.
void ListOffsetsPartition(KafkaBroker& broker, const std::string& topic, int32_t partition,
                          int64_t timestamp, int32_t current_leader_epoch,
                          kafka::ListOffsetsResponse::ListOffsetsPartitionResponse* rp) {
  constexpr int64_t kLatest = -1;
  constexpr int64_t kEarliest = -2;
  constexpr int64_t kMaxTimestamp = -3;  // KIP-734 (ListOffsets v7)
  rp->partition_index = partition;
  if (int16_t e = broker.LeadershipError(topic, partition, current_leader_epoch); e != 0) {
    rp->error_code = e;
    return;
  }
  storage::PartitionLog* log = broker.GetLog(topic, partition);
  if (log == nullptr) {
    rp->error_code = kafka::errors::kUnknownTopicOrPartition;
    return;
  }
  rp->leader_epoch = broker.replicas() != nullptr
                         ? std::max(broker.replicas()->LeaderEpoch({topic, partition}), 0)
                         : 0;
  if (timestamp == kLatest) {
    rp->offset = log->high_watermark();
  } else if (timestamp == kEarliest) {
    rp->offset = log->log_start_offset();
  } else if (timestamp == kMaxTimestamp) {
    // The batch holding the largest timestamp (its first offset: batch headers only, as the
    // time index; Kafka >= 3.7 names the record itself). Empty log: -1, -1 as Kafka.
    auto max = log->MaxTimestamp();
    rp->timestamp = max.ok() ? max->first : -1;
    rp->offset = max.ok() ? max->second : -1;
  } else if (timestamp < 0) {
    // Other specials (e.g. -4, KIP-1005's earliest-local) are not served.
    rp->error_code = kafka::errors::kUnsupportedVersion;
  } else {
    auto offset = log->OffsetForTime(timestamp);
    if (offset.ok()) {
      rp->offset = *offset;
      rp->timestamp = timestamp;
    } else {
      // No record at or after the timestamp: Kafka answers offset -1, timestamp -1.
      rp->offset = -1;
      rp->timestamp = -1;
    }
  }
}

class FetchOperation : public PendingFetch, public std::enable_shared_from_this<FetchOperation> {
 public:
  FetchOperation(KafkaBroker* broker, kafka::FetchRequest req, Responder responder)
      : broker_(broker), req_(std::move(req)), responder_(std::move(responder)) {
    const int64_t total = req_.max_bytes <= 0 ? 0 : req_.max_bytes;
    for (const auto& t : req_.topics) {
      for (const auto& p : t.partitions) {
        const uint32_t limit = static_cast<uint32_t>(
            std::min<int64_t>(std::max<int32_t>(p.partition_max_bytes, 0), total));
        targets_.push_back(
            {t.topic, p.partition, p.fetch_offset, limit, p.current_leader_epoch, req_.replica_id});
      }
    }
  }

  // Reads every partition on its owner; Evaluate runs when all answered.
  void StartRound() {
    if (answered_) return;
    if (round_cancel_) round_cancel_->store(true);  // the previous round's watches
    round_cancel_ = std::make_shared<std::atomic<bool>>(false);
    results_.assign(targets_.size(), ReadResult{});
    std::map<int, std::vector<size_t>> by_owner;
    for (size_t i = 0; i < targets_.size(); ++i) {
      by_owner[broker_->OwnerOf(targets_[i].topic, targets_[i].partition)].push_back(i);
    }
    outstanding_ = static_cast<int>(by_owner.size()) + 1;
    const int home = broker_->shard_index();
    for (auto& [owner, indexes] : by_owner) {
      std::vector<ReadRequest> reqs;
      for (size_t i : indexes) reqs.push_back(targets_[i]);
      broker_->RunOn(owner, [self = shared_from_this(), home, indexes = std::move(indexes),
                             reqs = std::move(reqs)](KafkaBroker& b) mutable {
        std::vector<ReadResult> results = ReadPartitions(b, reqs);
        b.RunOn(home, [self = std::move(self), indexes = std::move(indexes),
                       results = std::move(results)](KafkaBroker&) mutable {
          self->OnResults(indexes, std::move(results));
        });
      });
    }
    Finished();
  }

  void Wait() {
    std::weak_ptr<FetchOperation> weak = shared_from_this();
    timer_ = broker_->reactor().RunAfter(absl::Milliseconds(req_.max_wait_ms), [weak] {
      if (auto self = weak.lock()) self->OnDeadline();
    });
    broker_->AddPendingFetch(shared_from_this());
  }

  bool Check() override { return answered_; }

 private:
  enum class Outcome { kAnswered, kNotEnoughData, kNoRoom, kConvertLater };

  void OnResults(const std::vector<size_t>& indexes, std::vector<ReadResult> results) {
    for (size_t k = 0; k < indexes.size(); ++k) results_[indexes[k]] = std::move(results[k]);
    Finished();
  }

  void Finished() {
    if (--outstanding_ > 0) return;
    Decide(Evaluate(final_));
  }

  void Decide(Outcome outcome) {
    switch (outcome) {
      case Outcome::kAnswered:
        return;
      case Outcome::kNoRoom:
        WaitForRoom();
        return;
      case Outcome::kConvertLater:
        ConvertLater();
        return;
      case Outcome::kNotEnoughData:
        break;
    }
    if (!waiting_) {
      waiting_ = true;
      Wait();
    }
    WatchPartitions();
  }

  // Evaluates this round again as background work of the reactor, converting then.
  void ConvertLater() {
    if (convert_scheduled_) return;
    convert_scheduled_ = true;
    broker_->reactor().PostBackground([self = shared_from_this()] {
      self->convert_scheduled_ = false;
      if (self->answered_ || self->outstanding_ > 0) return;  // that round decides
      self->in_background_ = true;
      const Outcome outcome = self->Evaluate(self->final_);
      self->in_background_ = false;
      self->Decide(outcome);
    });
  }

  // The connection holds too much its client has not read: read again once it has room for
  // what this round found (the waiter owns the operation meanwhile; a long poll's deadline
  // timer still runs, and a deadline passed while waiting is kept in final_).
  void WaitForRoom() {
    if (room_wait_) return;
    room_wait_ = true;
    responder_.WaitForRoom([self = shared_from_this()] { self->OnRoom(); });
  }

  void OnRoom() {
    room_wait_ = false;
    if (answered_ || outstanding_ > 0) return;
    if (!responder_.connection_closed() &&
        !responder_.HasRoomFor(wanted_bytes_, wanted_file_ranges_)) {
      WaitForRoom();  // cheap: no re-read until it would fit
      return;
    }
    StartRound();
  }

  void OnDeadline() {
    if (answered_) return;
    final_ = true;
    if (outstanding_ == 0) StartRound();  // else the round in flight answers
  }

  void OnWake() {
    if (answered_ || outstanding_ > 0) return;
    StartRound();
  }

  // One watch per owner on the watermarks this round saw.
  void WatchPartitions() {
    std::map<int, std::vector<std::pair<storage::TopicPartition, int64_t>>> by_owner;
    for (size_t i = 0; i < targets_.size(); ++i) {
      const ReadRequest& t = targets_[i];
      by_owner[broker_->OwnerOf(t.topic, t.partition)].push_back(
          {storage::TopicPartition{t.topic, t.partition}, results_[i].watched});
    }
    const int home = broker_->shard_index();
    const absl::Time deadline = absl::Now() + absl::Milliseconds(req_.max_wait_ms);
    std::weak_ptr<FetchOperation> weak = shared_from_this();
    for (auto& [owner, marks] : by_owner) {
      PartitionWatch w;
      w.watermarks = std::move(marks);
      w.replica = req_.replica_id >= 0;
      w.cancelled = round_cancel_;
      w.deadline = deadline;
      broker_->RunOn(owner, [w = std::move(w), weak, home](KafkaBroker& b) mutable {
        w.wake = [&b, weak, home] {
          b.RunOn(home, [weak](KafkaBroker&) {
            if (auto self = weak.lock()) self->OnWake();
          });
        };
        b.AddWatch(std::move(w));
      });
    }
  }

  // What building the response from this round's reads will hold against the connection
  // until sent: for down-conversion the bytes read plus those written (at most twice the
  // slices), for zero-copy one file range per partition with data.
  void EstimateResponse(bool down_convert, uint64_t* bytes, size_t* file_ranges) const {
    *bytes = 0;
    *file_ranges = 0;
    uint64_t largest = 0;
    for (const ReadResult& r : results_) {
      if (r.slice.size == 0) continue;
      if (down_convert) {
        *bytes += 2 * uint64_t{r.slice.size};
        largest = std::max<uint64_t>(largest, r.slice.size);
      } else {
        ++*file_ranges;
      }
    }
    if (down_convert) {
      // max_bytes bounds the whole response, except that the first batch always goes.
      const uint64_t cap =
          2 * std::max<uint64_t>(static_cast<uint64_t>(std::max(req_.max_bytes, 0)), largest);
      *bytes = std::min(*bytes, cap);
    }
  }

  // Builds the response from this round's reads and answers when enough data is there (or
  // the request cannot wait), if the connection has room for it.
  Outcome Evaluate(bool final) {
    if (answered_) return Outcome::kAnswered;
    const bool down_convert = responder_.api_version() < 4;  // message format v1
    if (responder_.connection_closed()) {
      // Nobody will read the answer: drop it without building it.
      Finish();
      return Outcome::kAnswered;
    }
    EstimateResponse(down_convert, &wanted_bytes_, &wanted_file_ranges_);
    const bool need_room = wanted_bytes_ > 0 || wanted_file_ranges_ > 0;
    std::optional<ResponseQueue::Reservation> room =
        need_room ? responder_.TryReserve(wanted_bytes_, wanted_file_ranges_) : std::nullopt;
    if (need_room && !room) return Outcome::kNoRoom;
    if (down_convert && wanted_bytes_ > 0 && !in_background_) return Outcome::kConvertLater;
    std::vector<storage::FileSlice> slices;
    kafka::FetchResponse resp;
    uint64_t bytes = 0;
    bool error = false;
    int64_t remaining = req_.max_bytes <= 0 ? 0 : req_.max_bytes;
    std::deque<std::vector<uint8_t>> converted;  // borrowed by `resp`
    size_t i = 0;
    for (const auto& t : req_.topics) {
      auto& rt = resp.responses.emplace_back();
      rt.topic = t.topic;
      for (const auto& p : t.partitions) {
        ReadResult& r = results_[i++];
        auto& rp = rt.partitions.emplace_back();
        rp.partition_index = p.partition;
        rp.aborted_transactions.reset();
        if (r.unknown) {
          rp.error_code = kafka::errors::kUnknownTopicOrPartition;
          rp.high_watermark = rp.last_stable_offset = rp.log_start_offset = -1;
          error = true;
          continue;
        }
        rp.high_watermark = r.high_watermark;
        rp.last_stable_offset = r.high_watermark;  // no transactions: LSO = HW
        rp.log_start_offset = r.log_start_offset;
        if (r.error_code != 0) {
          rp.error_code = r.error_code;
          error = true;
          continue;
        }
        if (r.slice.size == 0) continue;
        uint32_t limit = static_cast<uint32_t>(std::max<int32_t>(p.partition_max_bytes, 0));
        // max_bytes bounds the whole response and partition_max_bytes each partition; only
        // the first batch of the first non-empty partition may exceed them (so a consumer
        // always progresses).
        if (bytes > 0 && remaining <= 0) continue;
        limit = static_cast<uint32_t>(std::min<int64_t>(limit, std::max<int64_t>(remaining, 0)));
        storage::FileSlice slice = r.slice;
        if (slice.size > std::max<uint32_t>(limit, 1)) {
          if (!TrimToWholeBatches(&slice, std::max<uint32_t>(limit, 1)).ok()) {
            rp.error_code = kafka::errors::kKafkaStorageError;
            error = true;
            continue;
          }
        }
        // A read returns at least one whole batch; past the first partition that batch must fit.
        if (bytes > 0 && slice.size > limit) continue;
        if (down_convert) {
          auto raw = storage::PartitionLog::ReadBytes(slice);
          std::vector<uint8_t>& out = converted.emplace_back();
          absl::StatusOr<legacy::DownConvertResult> dc =
              raw.ok() ? legacy::DownConvertToV1(
                             *raw, p.fetch_offset,
                             std::min<int64_t>(limit, std::max<int64_t>(remaining, 0)),
                             /*at_least_one=*/bytes == 0, &out)
                       : raw.status();
          if (!dc.ok()) {
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
        rp.records.AppendExternal(slice.size, slices.size());
        slices.push_back(std::move(slice));
        bytes += slices.back().size;
        remaining -= slices.back().size;
      }
    }
    if (!final && !error && bytes < static_cast<uint64_t>(std::max(req_.min_bytes, 1)) &&
        req_.max_wait_ms > 0) {
      return Outcome::kNotEnoughData;
    }
    Finish();
    responder_.Send(resp, slices);
    return Outcome::kAnswered;  // `room` is given back now that the response is queued
  }

  void Finish() {
    answered_ = true;
    if (round_cancel_) round_cancel_->store(true);
    if (waiting_) broker_->reactor().Cancel(timer_);
    results_.clear();
  }

  KafkaBroker* const broker_;
  const kafka::FetchRequest req_;
  Responder responder_;
  std::vector<ReadRequest> targets_;  // request order
  std::vector<ReadResult> results_;   // of the current round, request order
  int outstanding_ = 0;               // owners of the current round yet to answer (+1)
  std::shared_ptr<std::atomic<bool>> round_cancel_;
  net::TimerId timer_;
  bool waiting_ = false;
  bool final_ = false;
  bool answered_ = false;
  bool room_wait_ = false;
  bool convert_scheduled_ = false;
  bool in_background_ = false;
  uint64_t wanted_bytes_ = 0;  // this round's estimate (EstimateResponse)
  size_t wanted_file_ranges_ = 0;
};

}  // namespace

void HandleFetch(RequestContext& ctx, kafka::FetchRequest& req) {
  auto op = std::make_shared<FetchOperation>(&ctx.broker, std::move(req), std::move(ctx.responder));
  op->StartRound();
}

namespace {

// Answers a request made of topics of partitions (ListOffsets, OffsetForLeaderEpoch): `compute`
// runs on each partition's owner shard with what was asked of it (`asked[topic][partition]`,
// which names its `partition`) and returns its answer, placed in `resp` (topics and their
// partitions already sized as asked) where it was asked; `resp` goes out once every owner
// answered.
template <typename Response, typename Asked, typename Compute>
void AnswerOnOwners(RequestContext& ctx, Response resp, const std::vector<std::string>& names,
                    const std::vector<std::vector<Asked>>& asked, Compute compute) {
  using Answer = std::decay_t<decltype(resp.topics[0].partitions[0])>;
  struct Gather {
    Gather(Responder r, Response response) : responder(std::move(r)), resp(std::move(response)) {}
    Responder responder;
    Response resp;
    int pending = 1;
    void Done() {
      if (--pending == 0) responder.Send(resp);
    }
  };
  struct Item {
    size_t topic_index;
    size_t partition_index;
    Asked asked;
  };
  auto gather = std::make_shared<Gather>(std::move(ctx.responder), std::move(resp));
  std::map<int, std::vector<Item>> by_owner;
  for (size_t i = 0; i < asked.size(); ++i) {
    for (size_t j = 0; j < asked[i].size(); ++j) {
      by_owner[ctx.broker.OwnerOf(names[i], asked[i][j].partition)].push_back({i, j, asked[i][j]});
    }
  }
  const int home = ctx.broker.shard_index();
  for (auto& [owner, items] : by_owner) {
    ++gather->pending;
    std::vector<std::string> topics;
    for (const Item& it : items) topics.push_back(names[it.topic_index]);
    ctx.broker.RunOn(owner, [gather, home, compute, items = std::move(items),
                             topics = std::move(topics)](KafkaBroker& b) mutable {
      std::vector<Answer> out(items.size());
      for (size_t k = 0; k < items.size(); ++k) out[k] = compute(b, topics[k], items[k].asked);
      b.RunOn(home, [gather = std::move(gather), items = std::move(items),
                     out = std::move(out)](KafkaBroker&) mutable {
        for (size_t k = 0; k < items.size(); ++k) {
          gather->resp.topics[items[k].topic_index].partitions[items[k].partition_index] =
              std::move(out[k]);
        }
        gather->Done();
      });
    });
  }
  gather->Done();
}

// One partition of OffsetForLeaderEpoch, on its owner shard.
kafka::OffsetForLeaderEpochResponse::EpochEndOffset EpochEndPartition(KafkaBroker& b,
                                                                      const std::string& topic,
                                                                      int32_t partition,
                                                                      int32_t current_leader_epoch,
                                                                      int32_t leader_epoch) {
  kafka::OffsetForLeaderEpochResponse::EpochEndOffset r;
  r.partition = partition;
  storage::PartitionLog* log = b.GetLog(topic, partition);
  if (log == nullptr) {
    r.error_code = kafka::errors::kUnknownTopicOrPartition;
    return r;
  }
  if (b.replicas() == nullptr) {
    // A single node leads everything at epoch 0 and never cut its log.
    if (leader_epoch > 0 || current_leader_epoch > 0) {
      r.error_code = kafka::errors::kUnknownLeaderEpoch;
    } else {
      r.leader_epoch = 0;
      r.end_offset = log->log_end_offset();
    }
    return r;
  }
  ReplicaManager::EpochEnd e =
      b.replicas()->EndOffsetForEpoch({topic, partition}, current_leader_epoch, leader_epoch);
  r.error_code = e.error;
  r.leader_epoch = e.epoch;
  r.end_offset = e.end_offset;
  return r;
}

}  // namespace

void HandleListOffsets(RequestContext& ctx, kafka::ListOffsetsRequest& req) {
  struct Asked {
    int32_t partition;
    int64_t timestamp;
    int32_t current_leader_epoch;
  };
  kafka::ListOffsetsResponse resp;
  std::vector<std::string> names;
  std::vector<std::vector<Asked>> asked;
  for (const auto& t : req.topics) {
    names.push_back(t.name);
    auto& rt = resp.topics.emplace_back();
    rt.name = t.name;
    auto& a = asked.emplace_back();
    for (const auto& p : t.partitions) {
      rt.partitions.emplace_back().partition_index = p.partition_index;
      a.push_back({p.partition_index, p.timestamp, p.current_leader_epoch});
    }
  }
  AnswerOnOwners(ctx, std::move(resp), names, asked,
                 [](KafkaBroker& b, const std::string& topic, const Asked& a) {
                   kafka::ListOffsetsResponse::ListOffsetsPartitionResponse out;
                   ListOffsetsPartition(b, topic, a.partition, a.timestamp, a.current_leader_epoch,
                                        &out);
                   return out;
                 });
}

void HandleOffsetForLeaderEpoch(RequestContext& ctx, kafka::OffsetForLeaderEpochRequest& req) {
  // Asked by followers (replica_id >= 0) before they fetch, and by consumers that check a
  // position after a leader change (KIP-320).
  struct Asked {
    int32_t partition;
    int32_t current_leader_epoch;
    int32_t leader_epoch;
  };
  kafka::OffsetForLeaderEpochResponse resp;
  std::vector<std::string> names;
  std::vector<std::vector<Asked>> asked;
  for (const auto& t : req.topics) {
    names.push_back(t.topic);
    auto& rt = resp.topics.emplace_back();
    rt.topic = t.topic;
    auto& a = asked.emplace_back();
    for (const auto& p : t.partitions) {
      rt.partitions.emplace_back().partition = p.partition;
      a.push_back({p.partition, p.current_leader_epoch, p.leader_epoch});
    }
  }
  AnswerOnOwners(ctx, std::move(resp), names, asked,
                 [](KafkaBroker& b, const std::string& topic, const Asked& a) {
                   return EpochEndPartition(b, topic, a.partition, a.current_leader_epoch,
                                            a.leader_epoch);
                 });
}

}  // namespace sluice::broker
