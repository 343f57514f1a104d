// Produce: validate and append each partition's batches, check idempotent-producer sequences,
// and answer when every partition reached the ack level the request asked for.
//
// acks=0: no response. acks=1: answered once written (readable). acks=-1: answered when the
// batch is durable under the topic's flush policy (flush.messages=1 -> fdatasync'ed; otherwise,
// as in Kafka with one replica, when written). Batches are stored as produced (compressed ones
// too); the log checks the header, size and CRC.
//
// Produce v0-2 carry a legacy message set (magic 0/1): it is up-converted to one RecordBatch v2
// per partition (recompressed with the wrappers' codec), as Kafka does; see legacy_records.h.
// A Produce v0-2 whose records are magic-2 batches is served like v3 (Kafka checks the magic
// only from v3 on).
//
// Shards: the connection's shard groups the partitions by owner (src/shard_map.h) and runs
// each group on its owner (idempotent-producer state and appends live there); owners post
// their partitions' answers back and the response is assembled in request order. Records of
// partitions on other shards are copied first (the request borrows the input buffer).
#include <map>

#include "absl/strings/str_cat.h"
#include "log/logging.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/handlers.h"
#include "src/kafka/legacy_records.h"

namespace sluice::broker {

namespace {

using PartitionResponse = kafka::ProduceResponse::PartitionProduceResponse;

struct ProduceState {
  explicit ProduceState(Responder r) : responder(std::move(r)) {}
  Responder responder;
  kafka::ProduceResponse response;
  int pending = 1;  // +1 held until every partition was started
  bool reply = true;

  void Done() {
    if (--pending > 0) return;
    if (reply) {
      responder.Send(response);
    } else {
      responder.SendNothing();
    }
  }
};

// The partitions of one request owned by one shard, on that shard. `done` gets their answers
// (in `results` order) once every partition reached its ack level.
struct OwnerBatch {
  std::vector<PartitionResponse> results;
  int pending = 1;  // +1 held until every partition was started
  absl::AnyInvocable<void(std::vector<PartitionResponse>)> done;

  void Done() {
    if (--pending > 0) return;
    auto f = std::move(done);
    f(std::move(results));
  }
};

int16_t AppendErrorCode(const absl::Status& s) {
  // Out of disk space (the log resumes by itself): retriable, the client tries again.
  if (absl::IsUnavailable(s)) return kafka::errors::kKafkaStorageError;
  if (absl::IsResourceExhausted(s)) return kafka::errors::kMessageTooLarge;
  if (absl::IsDataLoss(s)) return kafka::errors::kCorruptMessage;
  return kafka::errors::kKafkaStorageError;
}

// Appends every batch of one partition's records (on its owner shard). When the partition is
// not answered at once (error, or only retried batches), `state->pending` was raised and the
// last batch's callback completes the partition.
void ProducePartition(KafkaBroker& broker, const std::shared_ptr<OwnerBatch>& state, size_t index,
                      const std::string& topic, int32_t partition, std::span<const uint8_t> records,
                      int16_t acks, int16_t api_version) {
  auto resp = [state, index]() -> PartitionResponse& { return state->results[index]; };
  storage::PartitionLog* log = broker.GetLog(topic, partition);
  if (log == nullptr) {
    resp().error_code = kafka::errors::kUnknownTopicOrPartition;
    return;
  }
  resp().log_start_offset = log->log_start_offset();
  std::vector<uint8_t> converted;  // Append copies it (the overload without keep_alive)
  if (const int magic = legacy::MagicOfFirstEntry(records);
      api_version < 3 && (magic == legacy::kMagicV0 || magic == legacy::kMagicV1)) {
    auto batch = legacy::UpConvertMessageSet(records, storage::kDefaultMaxDecompressedRecordsBytes);
    if (!batch.ok()) {
      resp().error_code = absl::IsInvalidArgument(batch.status()) ? kafka::errors::kInvalidRecord
                                                                  : AppendErrorCode(batch.status());
      return;
    }
    converted = *std::move(batch);
    records = converted;
  }
  // Split into batches by their length fields; each is validated fully by Append.
  std::vector<std::span<const uint8_t>> batches;
  std::vector<storage::BatchHeader> headers;
  for (std::span<const uint8_t> rest = records; !rest.empty();) {
    auto h = storage::ParseBatchHeader(rest, UINT32_MAX);
    if (!h.ok() || h->size_bytes() > rest.size()) {
      resp().error_code = kafka::errors::kCorruptMessage;
      return;
    }
    batches.push_back(rest.first(h->size_bytes()));
    headers.push_back(*h);
    rest = rest.subspan(h->size_bytes());
  }
  if (batches.empty()) {
    resp().error_code = kafka::errors::kCorruptMessage;
    return;
  }
  const storage::AckLevel level = acks == -1 && log->config().flush_messages == 1
                                      ? storage::AckLevel::kDurable
                                      : storage::AckLevel::kWritten;
  int64_t first_base = -1;
  int64_t duplicate_last = -1;  // last offset of the newest retried batch found stored
  bool appended_any = false;
  for (size_t i = 0; i < batches.size(); ++i) {
    const storage::BatchHeader& h = headers[i];
    PartitionProducerState* ps = nullptr;
    int32_t last_seq = PartitionProducerState::LastSequence(h.base_sequence, h.last_offset_delta);
    if (h.producer_id >= 0) {
      ps = broker.ProducerState(topic, partition, log);
      int64_t dup = -1;
      switch (ps->Check(h.producer_id, h.producer_epoch, h.base_sequence, last_seq, &dup)) {
        case PartitionProducerState::Verdict::kAppend:
          break;
        case PartitionProducerState::Verdict::kDuplicate:
          // A retry of a batch already appended: answer with its offset, append nothing.
          if (first_base < 0) first_base = dup;
          duplicate_last = std::max(duplicate_last, dup + h.last_offset_delta);
          if (i + 1 == batches.size() && acks != 0) {
            // Answered once the original is stored as this request asks, never before (while
            // the log is out of disk space: at once, with the retriable error).
            ++state->pending;
            if (!log->WaitFor(duplicate_last, level,
                              [state, resp](absl::Status s, const storage::AppendResult&) {
                                if (!s.ok() && resp().error_code == 0) {
                                  resp().error_code = AppendErrorCode(s);
                                }
                                state->Done();
                              })) {
              --state->pending;  // already stored
            }
          }
          continue;
        case PartitionProducerState::Verdict::kOutOfOrder:
          resp().error_code = kafka::errors::kOutOfOrderSequenceNumber;
          return;
        case PartitionProducerState::Verdict::kStaleEpoch:
          resp().error_code = kafka::errors::kInvalidProducerEpoch;
          return;
      }
    }
    bool last = i + 1 == batches.size();
    storage::AppendCallback done;
    if (last && acks != 0) {
      ++state->pending;
      done = [state, resp](absl::Status s, const storage::AppendResult& r) {
        if (!s.ok() && resp().error_code == 0) resp().error_code = AppendErrorCode(s);
        if (s.ok() && r.log_append_time_ms >= 0) resp().log_append_time_ms = r.log_append_time_ms;
        state->Done();
      };
    }
    auto result = log->Append(batches[i], level, std::move(done));
    if (!result.ok()) {
      // The callback was not taken on failure: finish the partition here.
      resp().error_code = AppendErrorCode(result.status());
      if (last && acks != 0) state->Done();
      // Out of space (Unavailable) is logged once by the log itself.
      if (!absl::IsResourceExhausted(result.status()) && !absl::IsDataLoss(result.status()) &&
          !absl::IsUnavailable(result.status())) {
        storage::LogWarning("kafka: append to %s-%d failed: %s", topic, partition,
                            result.status().message());
      }
      return;
    }
    appended_any = true;
    if (first_base < 0) first_base = result->base_offset;
    if (result->log_append_time_ms >= 0) resp().log_append_time_ms = result->log_append_time_ms;
    if (ps != nullptr) {
      ps->Record(h.producer_id, h.producer_epoch, h.base_sequence, last_seq, result->base_offset);
    }
  }
  resp().base_offset = first_base;
  (void)appended_any;
}

// One partition of a produce request.
struct ProducePart {
  size_t topic_index;
  size_t partition_index;
  int32_t partition;
  std::span<const uint8_t> records;
};

// Runs the partitions on their owners and assembles the response on this (the connection's)
// shard. Records must stay valid until this returns; parts for other shards get a copy.
void DispatchProduce(KafkaBroker& home, const std::shared_ptr<ProduceState>& state,
                     const std::vector<std::string>& topic_names, std::vector<ProducePart> parts,
                     int16_t acks, int16_t api_version) {
  std::map<int, std::vector<ProducePart>> by_owner;
  for (ProducePart& p : parts) {
    const std::string& topic = topic_names[p.topic_index];
    if (home.FindTopic(topic) == nullptr) {
      state->response.responses[p.topic_index].partition_responses[p.partition_index].error_code =
          kafka::errors::kUnknownTopicOrPartition;
      continue;
    }
    by_owner[home.OwnerOf(topic, p.partition)].push_back(p);
  }
  const int here = home.shard_index();
  for (auto& [owner, list] : by_owner) {
    ++state->pending;
    // Where each result goes, in `list` order.
    std::vector<std::pair<size_t, size_t>> slots;
    for (const ProducePart& p : list) slots.emplace_back(p.topic_index, p.partition_index);
    auto merge = [state, slots = std::move(slots)](std::vector<PartitionResponse> results) {
      for (size_t k = 0; k < results.size(); ++k) {
        state->response.responses[slots[k].first].partition_responses[slots[k].second] =
            std::move(results[k]);
      }
      state->Done();
    };
    std::shared_ptr<std::vector<uint8_t>> copy;
    std::vector<std::string> names;
    if (owner != here) {
      size_t total = 0;
      for (const ProducePart& p : list) total += p.records.size();
      copy = std::make_shared<std::vector<uint8_t>>();
      copy->reserve(total);
      for (ProducePart& p : list) {
        const size_t at = copy->size();
        copy->insert(copy->end(), p.records.begin(), p.records.end());
        p.records = std::span<const uint8_t>(copy->data() + at, p.records.size());
      }
    }
    for (const ProducePart& p : list) names.push_back(topic_names[p.topic_index]);
    home.RunOn(owner, [here, list = std::move(list), names = std::move(names), copy, acks,
                       api_version, merge = std::move(merge)](KafkaBroker& b) mutable {
      auto batch = std::make_shared<OwnerBatch>();
      batch->results.resize(list.size());
      for (size_t k = 0; k < list.size(); ++k) {
        batch->results[k].index = list[k].partition;
        batch->results[k].base_offset = -1;
      }
      if (b.shard_index() == here) {
        batch->done = std::move(merge);
      } else {
        batch->done = [&b, here, merge = std::move(merge),
                       copy](std::vector<PartitionResponse> results) mutable {
          copy.reset();  // the appends copied the records
          b.RunOn(here, [merge = std::move(merge), results = std::move(results)](
                            KafkaBroker&) mutable { merge(std::move(results)); });
        };
      }
      for (size_t k = 0; k < list.size(); ++k) {
        ProducePartition(b, batch, k, names[k], list[k].partition, list[k].records, acks,
                         api_version);
      }
      batch->Done();
    });
  }
  state->Done();
}

}  // namespace

void HandleProduce(RequestContext& ctx, kafka::ProduceRequest& req) {
  auto state = std::make_shared<ProduceState>(std::move(ctx.responder));
  const int16_t acks = req.acks;
  state->reply = acks != 0;
  if (acks != 0 && acks != 1 && acks != -1) {
    for (const auto& t : req.topic_data) {
      auto& rt = state->response.responses.emplace_back();
      rt.name = t.name;
      for (const auto& p : t.partition_data) {
        auto& rp = rt.partition_responses.emplace_back();
        rp.index = p.index;
        rp.error_code = kafka::errors::kInvalidRequiredAcks;
      }
    }
    state->Done();
    return;
  }
  if (req.transactional_id.has_value()) {
    // Not yet: transactions need the coordinator.
    for (const auto& t : req.topic_data) {
      auto& rt = state->response.responses.emplace_back();
      rt.name = t.name;
      for (const auto& p : t.partition_data) {
        auto& rp = rt.partition_responses.emplace_back();
        rp.index = p.index;
        rp.error_code = kafka::errors::kTransactionalIdAuthorizationFailed;
      }
    }
    state->Done();
    return;
  }
  // Size the response first: answers are placed by index.
  std::vector<std::string> names;
  std::vector<ProducePart> parts;
  for (size_t i = 0; i < req.topic_data.size(); ++i) {
    const auto& t = req.topic_data[i];
    names.push_back(t.name);
    auto& rt = state->response.responses.emplace_back();
    rt.name = t.name;
    rt.partition_responses.resize(t.partition_data.size());
    for (size_t j = 0; j < t.partition_data.size(); ++j) {
      rt.partition_responses[j].index = t.partition_data[j].index;
      rt.partition_responses[j].base_offset = -1;
      parts.push_back({i, j, t.partition_data[j].index, t.partition_data[j].records.contiguous()});
    }
  }
  KafkaBroker& home = ctx.broker;
  const int16_t api_version = ctx.header.api_version;
  bool known = true;
  for (const std::string& n : names) known &= home.FindTopic(n) != nullptr;
  if (known || home.shard_index() == 0) {
    // Shard 0 auto-creates synchronously; known topics need no round trip.
    if (!known) home.EnsureTopics(names, true, [] {});
    DispatchProduce(home, state, names, std::move(parts), acks, api_version);
    return;
  }
  // Unknown topics are auto-created on shard 0 first: keep a copy of the records until then.
  auto copy = std::make_shared<std::vector<uint8_t>>();
  size_t total = 0;
  for (const ProducePart& p : parts) total += p.records.size();
  copy->reserve(total);
  for (ProducePart& p : parts) {
    const size_t at = copy->size();
    copy->insert(copy->end(), p.records.begin(), p.records.end());
    p.records = std::span<const uint8_t>(copy->data() + at, p.records.size());
  }
  home.EnsureTopics(names, true,
                    [&home, state, names, parts = std::move(parts), copy, acks, api_version] {
                      DispatchProduce(home, state, names, parts, acks, api_version);
                    });
}

}  // namespace sluice::broker
