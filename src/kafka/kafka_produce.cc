// Produce: validate and append each partition's batches, check idempotent-producer sequences,
// and answer when every partition reached the ack level the request asked for.
//
// acks=0: no response. acks=1: answered once written (readable). acks=-1: answered when the
// batch is durable under the topic's flush policy (flush.messages=1 -> fdatasync'ed; otherwise,
// as in Kafka with one replica, when written). Batches are stored as produced (compressed ones
// too), once ProducedBatchValidator found them readable and honest (Kafka's LogValidator rules,
// log/FORMAT.md "Produce validation"); the log checks the header, size and CRC. Each partition
// takes exactly one batch per request; the internal topic `__consumer_offsets` takes none.
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
#include "absl/time/clock.h"
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

// The one mapping from what storage and the produce checks return to Produce error codes:
//   InvalidArgument   the producer broke a rule (ProducedBatchValidator, legacy conversion)
//                     -> INVALID_RECORD (87), not retriable: the same bytes fail again;
//   DataLoss          framing or CRC broken (damaged on the way) -> CORRUPT_MESSAGE (2);
//   ResourceExhausted above max.message.bytes -> MESSAGE_TOO_LARGE (10);
//   anything else     the log could not take it -> KAFKA_STORAGE_ERROR (56).
int16_t AppendErrorCode(const absl::Status& s) {
  if (absl::IsInvalidArgument(s)) return kafka::errors::kInvalidRecord;
  // Out of disk space (the log resumes by itself): retriable, the client tries again.
  if (absl::IsUnavailable(s)) return kafka::errors::kKafkaStorageError;
  if (absl::IsResourceExhausted(s)) return kafka::errors::kMessageTooLarge;
  if (absl::IsDataLoss(s)) return kafka::errors::kCorruptMessage;
  return kafka::errors::kKafkaStorageError;
}

// A refused batch is a client's doing: at most one log line per second per shard, so a client
// sending nothing else cannot flood the log.
void LogRefusedBatch(const std::string& topic, int32_t partition, int16_t error,
                     const absl::Status& why) {
  thread_local absl::Time last = absl::InfinitePast();
  thread_local int64_t suppressed = 0;
  const absl::Time now = absl::Now();
  if (now - last < absl::Seconds(1)) {
    ++suppressed;
    return;
  }
  storage::LogWarning(
      "kafka: produce to %s-%d refused with %s: %s (%d more refused since the "
      "last such line)",
      topic, partition, kafka::errors::ErrorCodeName(error), why.message(), suppressed);
  last = now;
  suppressed = 0;
}

// Validates produced batches on the owner shard's thread: its decompression contexts and
// window are reused by every produce there.
storage::ProducedBatchValidator& ShardValidator() {
  thread_local storage::ProducedBatchValidator validator;
  return validator;
}

// Appends one partition's batch (on its owner shard). When the partition is not answered at
// once (error, or a retried batch), `state->pending` was raised and the append's callback
// completes the partition.
void ProducePartition(KafkaBroker& broker, const std::shared_ptr<OwnerBatch>& state, size_t index,
                      const std::string& topic, int32_t partition, std::span<const uint8_t> records,
                      int16_t acks, int16_t api_version, int32_t timeout_ms) {
  auto resp = [state, index]() -> PartitionResponse& { return state->results[index]; };
  if (int16_t e = broker.LeadershipError(topic, partition); e != 0) {
    resp().error_code = e;
    return;
  }
  // Cluster mode, acks=all: the batch is answered once the ISR has it (the high watermark
  // passed it), and refused up front while the ISR is below min.insync.replicas.
  ReplicaManager* replicas =
      acks == -1 && !broker.IsInternalTopic(topic) ? broker.replicas() : nullptr;
  if (replicas != nullptr) {
    if (int16_t e = replicas->CheckMinInsync({topic, partition}); e != 0) {
      resp().error_code = e;
      resp().error_message = "the ISR is smaller than min.insync.replicas";
      return;
    }
  }
  // Runs once the batch ending at `last_offset` is stored here as asked (status `s`): then
  // waits for the ISR where acks=all asks for it.
  auto stored = [&broker, replicas, state, resp, topic, partition, timeout_ms](
                    absl::Status s, int64_t last_offset) {
    if (!s.ok() && resp().error_code == 0) resp().error_code = AppendErrorCode(s);
    if (!s.ok() || replicas == nullptr) {
      state->Done();
      return;
    }
    broker.replicas()->WaitForReplication({topic, partition}, last_offset,
                                          absl::Milliseconds(std::max(timeout_ms, 0)),
                                          [state, resp](int16_t e) {
                                            if (e != 0 && resp().error_code == 0)
                                              resp().error_code = e;
                                            state->Done();
                                          });
  };
  storage::PartitionLog* log = broker.GetLog(topic, partition);
  if (log == nullptr) {
    resp().error_code = kafka::errors::kUnknownTopicOrPartition;
    return;
  }
  resp().log_start_offset = log->log_start_offset();
  auto refuse = [&](int16_t error, const absl::Status& why) {
    resp().error_code = error;
    resp().error_message = std::string(why.message());
    LogRefusedBatch(topic, partition, error, why);
  };
  std::vector<uint8_t> converted;  // Append copies it (the overload without keep_alive)
  if (const int magic = legacy::MagicOfFirstEntry(records);
      api_version < 3 && (magic == legacy::kMagicV0 || magic == legacy::kMagicV1)) {
    auto batch =
        legacy::UpConvertMessageSet(records, broker.options().max_decompressed_batch_bytes);
    if (!batch.ok()) return refuse(AppendErrorCode(batch.status()), batch.status());
    converted = *std::move(batch);
    records = converted;
  }
  // Exactly one batch per partition, as Kafka requires of magic-2 records.
  if (records.size() < storage::kBatchHeaderSize) {
    return refuse(kafka::errors::kCorruptMessage,
                  absl::DataLossError("records shorter than a batch header"));
  }
  const storage::RecordBatchView view(records);
  if (view.magic() == storage::kBatchMagicV2 && view.batch_length() >= 0 &&
      view.size_bytes() < records.size()) {
    return refuse(kafka::errors::kInvalidRecord,
                  absl::InvalidArgumentError("more than one batch for the partition"));
  }
  if (records.size() > log->config().max_batch_bytes) {
    return refuse(kafka::errors::kMessageTooLarge,
                  absl::ResourceExhaustedError(absl::StrCat("batch of ", records.size(),
                                                            " bytes exceeds max.message.bytes ",
                                                            log->config().max_batch_bytes)));
  }
  if (api_version < 7 && view.magic() == storage::kBatchMagicV2 &&
      view.compression() == storage::Compression::kZstd) {
    return refuse(kafka::errors::kUnsupportedCompressionType,
                  absl::InvalidArgumentError("zstd needs Produce v7 or later"));
  }
  storage::ProduceRules rules;
  rules.max_decompressed_bytes = broker.options().max_decompressed_batch_bytes;
  rules.require_keys = log->config().compact();
  if (absl::Status valid = ShardValidator().Validate(records, rules); !valid.ok()) {
    return refuse(AppendErrorCode(valid), valid);
  }
  const int64_t producer_id = view.producer_id();
  const int16_t producer_epoch = view.producer_epoch();
  const int32_t base_sequence = view.base_sequence();
  const int32_t last_seq =
      PartitionProducerState::LastSequence(base_sequence, view.last_offset_delta());
  // What the answer waits for, for a new batch and for a retried one alike.
  const storage::AckLevel level = acks == -1 && log->config().flush_messages == 1
                                      ? storage::AckLevel::kDurable
                                      : storage::AckLevel::kWritten;
  PartitionProducerState* ps = nullptr;
  if (producer_id >= 0) {
    ps = broker.ProducerState(topic, partition, log);
    int64_t dup = -1;
    switch (ps->Check(producer_id, producer_epoch, base_sequence, last_seq, &dup)) {
      case PartitionProducerState::Verdict::kAppend:
        break;
      case PartitionProducerState::Verdict::kDuplicate:
        // A retry of a batch already appended: answer with its offset, append nothing, and
        // only once the original is stored as this request asks (while the log is out of disk
        // space: at once, with the retriable error).
        resp().base_offset = dup;
        if (acks != 0) {
          ++state->pending;
          const int64_t last = dup + view.last_offset_delta();
          if (!log->WaitFor(last, level,
                            [stored, last](absl::Status s, const storage::AppendResult&) mutable {
                              stored(s, last);
                            })) {
            stored(absl::OkStatus(), last);  // already stored here
          }
        }
        return;
      case PartitionProducerState::Verdict::kOutOfOrder:
        resp().error_code = kafka::errors::kOutOfOrderSequenceNumber;
        return;
      case PartitionProducerState::Verdict::kStaleEpoch:
        resp().error_code = kafka::errors::kInvalidProducerEpoch;
        return;
    }
  }
  storage::AppendCallback done;
  if (acks != 0) {
    ++state->pending;
    done = [stored, resp](absl::Status s, const storage::AppendResult& r) mutable {
      if (s.ok() && r.log_append_time_ms >= 0) resp().log_append_time_ms = r.log_append_time_ms;
      stored(s, r.last_offset);
    };
  }
  auto result = log->Append(records, level, std::move(done));
  if (!result.ok()) {
    // The callback was not taken on failure: finish the partition here.
    resp().error_code = AppendErrorCode(result.status());
    if (acks != 0) state->Done();
    // Out of space (Unavailable) is logged once by the log itself.
    if (!absl::IsResourceExhausted(result.status()) && !absl::IsDataLoss(result.status()) &&
        !absl::IsUnavailable(result.status())) {
      storage::LogWarning("kafka: append to %s-%d failed: %s", topic, partition,
                          result.status().message());
    }
    return;
  }
  resp().base_offset = result->base_offset;
  if (result->log_append_time_ms >= 0) resp().log_append_time_ms = result->log_append_time_ms;
  if (ps != nullptr) {
    ps->Record(producer_id, producer_epoch, base_sequence, last_seq, result->base_offset);
  }
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
                     int16_t acks, int16_t api_version, int32_t timeout_ms) {
  std::map<int, std::vector<ProducePart>> by_owner;
  for (ProducePart& p : parts) {
    const std::string& topic = topic_names[p.topic_index];
    if (home.IsInternalTopic(topic)) {
      // Only the broker writes its internal topics (Kafka's ReplicaManager: "Cannot append to
      // internal topic").
      auto& r = state->response.responses[p.topic_index].partition_responses[p.partition_index];
      r.error_code = kafka::errors::kInvalidTopicException;
      r.error_message = absl::StrCat("Cannot append to internal topic ", topic);
      continue;
    }
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
                       api_version, timeout_ms, merge = std::move(merge)](KafkaBroker& b) mutable {
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
                         api_version, timeout_ms);
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
  const int32_t timeout_ms = req.timeout_ms;
  bool known = true;
  for (const std::string& n : names) known &= home.FindTopic(n) != nullptr;
  if (known || home.shard_index() == 0) {
    // Shard 0 auto-creates synchronously; known topics need no round trip.
    if (!known) home.EnsureTopics(names, true, [] {});
    DispatchProduce(home, state, names, std::move(parts), acks, api_version, timeout_ms);
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
  home.EnsureTopics(
      names, true,
      [&home, state, names, parts = std::move(parts), copy, acks, api_version, timeout_ms] {
        DispatchProduce(home, state, names, parts, acks, api_version, timeout_ms);
      });
}

}  // namespace sluice::broker
