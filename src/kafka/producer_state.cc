#include "src/kafka/producer_state.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "absl/time/clock.h"
#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::broker {

namespace {
constexpr char kSnapshotName[] = "/producer_state.snapshot";
constexpr char kMagic[4] = {'S', 'L', 'P', 'S'};
// v1: no activity time per producer. v2: i64 last_active_ms after the epoch.
constexpr uint32_t kVersion = 2;
constexpr uint32_t kReplayReadBytes = 1 << 20;
// Evictions are logged at most this often per partition (a flood would log every batch).
constexpr int64_t kEvictionLogIntervalMs = 60'000;

int32_t NextSeq(int32_t seq) { return seq == INT32_MAX ? 0 : seq + 1; }

template <typename T>
void Put(std::vector<uint8_t>& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
template <typename T>
bool Get(std::span<const uint8_t> b, size_t* pos, T* v) {
  if (b.size() - *pos < sizeof(T)) return false;
  memcpy(v, b.data() + *pos, sizeof(T));
  *pos += sizeof(T);
  return true;
}
}  // namespace

void PartitionProducerState::Producer::Push(const BatchRange& r) {
  if (batch_count == kBatchesKept) {
    std::move(batches.begin() + 1, batches.end(), batches.begin());
    --batch_count;
  }
  batches[batch_count++] = r;
}

PartitionProducerState::PartitionProducerState(ProducerStateOptions options, std::string name)
    : options_(std::move(options)), name_(std::move(name)) {
  options_.max_producers = std::max<size_t>(options_.max_producers, 1);
  options_.expiration_ms = std::max<int64_t>(options_.expiration_ms, 1);
}

int64_t PartitionProducerState::Now() const {
  return options_.now_ms ? options_.now_ms() : absl::ToUnixMillis(absl::Now());
}

void PartitionProducerState::Clear() {
  index_.clear();
  lru_.clear();
}

void PartitionProducerState::DiscardSnapshot(const std::string& dir) {
  (void)storage::RemoveFile(dir + kSnapshotName);
}

std::unique_ptr<PartitionProducerState> PartitionProducerState::Load(
    const storage::PartitionLog& log, ProducerStateOptions options) {
  std::string name = log.dir();
  if (size_t slash = name.rfind('/'); slash != std::string::npos) name.erase(0, slash + 1);
  auto state = std::make_unique<PartitionProducerState>(std::move(options), std::move(name));
  int64_t from = log.log_start_offset();
  int64_t covered = -1;
  if (state->LoadSnapshot(log.dir() + kSnapshotName, &covered) && covered <= log.written_offset()) {
    from = std::max(from, covered);
  } else {
    state->Clear();
  }
  state->Replay(log, from);
  return state;
}

bool PartitionProducerState::LoadSnapshot(const std::string& path, int64_t* covered) {
  if (!storage::FileExists(path)) return false;
  auto bytes = storage::ReadWholeFile(path);
  if (!bytes.ok() || bytes->size() < 24 || memcmp(bytes->data(), kMagic, 4) != 0) return false;
  std::span<const uint8_t> b(*bytes);
  uint64_t sum;
  memcpy(&sum, b.data() + b.size() - 8, 8);
  if (sum != XXH3_64bits(b.data(), b.size() - 8)) {
    storage::LogWarning("%s: checksum mismatch, rebuilding producer state from the log", path);
    return false;
  }
  b = b.first(b.size() - 8);
  size_t pos = 4;
  uint32_t version, count;
  if (!Get(b, &pos, &version) || (version != 1 && version != 2) || !Get(b, &pos, covered) ||
      !Get(b, &pos, &count)) {
    return false;
  }
  const int64_t now = Now();
  for (uint32_t i = 0; i < count; ++i) {
    int64_t pid;
    Producer p;
    uint32_t n;
    if (!Get(b, &pos, &pid) || !Get(b, &pos, &p.epoch)) return false;
    // A v1 snapshot has no activity times: its producers count as active now.
    p.last_active_ms = now;
    if (version >= 2 && !Get(b, &pos, &p.last_active_ms)) return false;
    if (!Get(b, &pos, &n) || n > kBatchesKept) return false;
    for (uint32_t j = 0; j < n; ++j) {
      BatchRange r;
      if (!Get(b, &pos, &r.first_seq) || !Get(b, &pos, &r.last_seq) ||
          !Get(b, &pos, &r.base_offset)) {
        return false;
      }
      p.Push(r);
    }
    // Written least recently active first: appending keeps that order. Idle ones stay out; a
    // time ahead of the clock (it went back) counts as now.
    p.last_active_ms = std::min(p.last_active_ms, now);
    if (p.last_active_ms <= now - options_.expiration_ms) continue;
    if (auto old = index_.find(pid); old != index_.end()) Evict(old->second);
    p.id = pid;
    index_[pid] = lru_.insert(lru_.end(), p);
    if (index_.size() > options_.max_producers) Evict(lru_.begin());
  }
  return pos == b.size();
}

absl::Status PartitionProducerState::SaveSnapshot(const std::string& dir,
                                                  int64_t end_offset) const {
  const int64_t now = Now();
  std::vector<uint8_t> b(kMagic, kMagic + 4);
  Put(b, kVersion);
  Put(b, end_offset);
  const size_t count_at = b.size();
  Put(b, uint32_t{0});
  uint32_t count = 0;
  for (const Producer& p : lru_) {
    if (p.last_active_ms <= now - options_.expiration_ms) continue;
    Put(b, p.id);
    Put(b, p.epoch);
    Put(b, p.last_active_ms);
    Put(b, static_cast<uint32_t>(p.batch_count));
    for (uint8_t i = 0; i < p.batch_count; ++i) {
      Put(b, p.batches[i].first_seq);
      Put(b, p.batches[i].last_seq);
      Put(b, p.batches[i].base_offset);
    }
    ++count;
  }
  memcpy(b.data() + count_at, &count, sizeof(count));
  Put(b, static_cast<uint64_t>(XXH3_64bits(b.data(), b.size())));
  return storage::WriteFileAtomically(dir + kSnapshotName, b);
}

void PartitionProducerState::Replay(const storage::PartitionLog& log, int64_t from) {
  int64_t offset = from;
  while (offset < log.written_offset()) {
    auto slice = log.ReadForReplica(offset, kReplayReadBytes);
    if (!slice.ok() || slice->size == 0) break;
    auto bytes = storage::PartitionLog::ReadBytes(*slice);
    if (!bytes.ok()) break;
    std::span<const uint8_t> rest(*bytes);
    int64_t next = offset;
    while (rest.size() >= storage::kBatchHeaderSize) {
      auto h = storage::ParseBatchHeader(rest, UINT32_MAX);
      if (!h.ok() || h->size_bytes() > rest.size()) break;
      if (h->producer_id >= 0 && h->last_offset() >= offset) {
        Record(h->producer_id, h->producer_epoch, h->base_sequence,
               LastSequence(h->base_sequence, h->last_offset_delta), h->base_offset);
      }
      next = h->last_offset() + 1;
      rest = rest.subspan(h->size_bytes());
    }
    if (next <= offset) break;
    offset = next;
  }
}

PartitionProducerState::Verdict PartitionProducerState::Check(int64_t producer_id, int16_t epoch,
                                                              int32_t first_seq, int32_t last_seq,
                                                              int64_t* duplicate_offset) const {
  auto it = index_.find(producer_id);
  if (it == index_.end()) return Verdict::kAppend;
  const Producer& p = *it->second;
  if (epoch < p.epoch) return Verdict::kStaleEpoch;
  if (epoch > p.epoch) return first_seq == 0 ? Verdict::kAppend : Verdict::kOutOfOrder;
  for (uint8_t i = 0; i < p.batch_count; ++i) {
    const BatchRange& r = p.batches[i];
    if (r.first_seq == first_seq && r.last_seq == last_seq) {
      *duplicate_offset = r.base_offset;
      return Verdict::kDuplicate;
    }
  }
  if (p.batch_count == 0 || first_seq == NextSeq(p.batches[p.batch_count - 1].last_seq)) {
    return Verdict::kAppend;
  }
  return Verdict::kOutOfOrder;
}

void PartitionProducerState::Evict(ProducerList::iterator it) {
  index_.erase(it->id);
  lru_.erase(it);
}

PartitionProducerState::Producer& PartitionProducerState::Touch(int64_t producer_id,
                                                                int64_t now_ms) {
  auto found = index_.find(producer_id);
  if (found != index_.end()) {
    lru_.splice(lru_.end(), lru_, found->second);
  } else {
    Producer fresh;
    fresh.id = producer_id;
    index_.emplace(producer_id, lru_.insert(lru_.end(), fresh));
    if (index_.size() > options_.max_producers) {
      Evict(lru_.begin());
      ++evicted_;
      if (!eviction_logged_ || now_ms - last_eviction_log_ms_ >= kEvictionLogIntervalMs) {
        eviction_logged_ = true;
        storage::LogWarning(
            "kafka: %s: more than %d producer ids (max.producer.ids.per.partition): forgot the "
            "longest idle one (%d forgotten since the last line)",
            name_, options_.max_producers, evicted_ - evicted_at_last_log_);
        last_eviction_log_ms_ = now_ms;
        evicted_at_last_log_ = evicted_;
      }
    }
  }
  Producer& p = lru_.back();
  p.last_active_ms = now_ms;
  return p;
}

void PartitionProducerState::Record(int64_t producer_id, int16_t epoch, int32_t first_seq,
                                    int32_t last_seq, int64_t base_offset) {
  const int64_t now = Now();
  // Before Touch: the producer being recorded is never the one expired.
  ExpireIdleAt(now);
  Producer& p = Touch(producer_id, now);
  if (epoch != p.epoch) {
    p.epoch = epoch;
    p.batch_count = 0;
  }
  p.Push({first_seq, last_seq, base_offset});
}

size_t PartitionProducerState::ExpireIdle() { return ExpireIdleAt(Now()); }

size_t PartitionProducerState::ExpireIdleAt(int64_t now) {
  size_t expired = 0;
  // Least recently active first: stop at the first one still within the expiration time.
  while (!lru_.empty() && lru_.front().last_active_ms <= now - options_.expiration_ms) {
    Evict(lru_.begin());
    ++expired;
  }
  return expired;
}

}  // namespace sluice::broker
