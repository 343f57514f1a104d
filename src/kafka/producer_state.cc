#include "src/kafka/producer_state.h"

#include <xxhash.h>

#include <cstring>

#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::broker {

namespace {
constexpr char kSnapshotName[] = "/producer_state.snapshot";
constexpr char kMagic[4] = {'S', 'L', 'P', 'S'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kReplayReadBytes = 1 << 20;

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

std::unique_ptr<PartitionProducerState> PartitionProducerState::Load(
    const storage::PartitionLog& log) {
  auto state = std::make_unique<PartitionProducerState>();
  int64_t from = log.log_start_offset();
  int64_t covered = -1;
  if (state->LoadSnapshot(log.dir() + kSnapshotName, &covered) && covered <= log.high_watermark()) {
    from = std::max(from, covered);
  } else {
    state->producers_.clear();
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
  if (!Get(b, &pos, &version) || version != kVersion || !Get(b, &pos, covered) ||
      !Get(b, &pos, &count)) {
    return false;
  }
  for (uint32_t i = 0; i < count; ++i) {
    int64_t pid;
    Producer p;
    uint32_t n;
    if (!Get(b, &pos, &pid) || !Get(b, &pos, &p.epoch) || !Get(b, &pos, &n) || n > kBatchesKept) {
      return false;
    }
    for (uint32_t j = 0; j < n; ++j) {
      BatchRange r;
      if (!Get(b, &pos, &r.first_seq) || !Get(b, &pos, &r.last_seq) ||
          !Get(b, &pos, &r.base_offset)) {
        return false;
      }
      p.batches.push_back(r);
    }
    producers_[pid] = std::move(p);
  }
  return pos == b.size();
}

absl::Status PartitionProducerState::SaveSnapshot(const std::string& dir,
                                                  int64_t end_offset) const {
  std::vector<uint8_t> b(kMagic, kMagic + 4);
  Put(b, kVersion);
  Put(b, end_offset);
  Put(b, static_cast<uint32_t>(producers_.size()));
  for (const auto& [pid, p] : producers_) {
    Put(b, pid);
    Put(b, p.epoch);
    Put(b, static_cast<uint32_t>(p.batches.size()));
    for (const BatchRange& r : p.batches) {
      Put(b, r.first_seq);
      Put(b, r.last_seq);
      Put(b, r.base_offset);
    }
  }
  Put(b, static_cast<uint64_t>(XXH3_64bits(b.data(), b.size())));
  return storage::WriteFileAtomically(dir + kSnapshotName, b);
}

void PartitionProducerState::Replay(const storage::PartitionLog& log, int64_t from) {
  int64_t offset = from;
  while (offset < log.high_watermark()) {
    auto slice = log.Read(offset, kReplayReadBytes);
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
  auto it = producers_.find(producer_id);
  if (it == producers_.end()) return Verdict::kAppend;
  const Producer& p = it->second;
  if (epoch < p.epoch) return Verdict::kStaleEpoch;
  if (epoch > p.epoch) return first_seq == 0 ? Verdict::kAppend : Verdict::kOutOfOrder;
  for (const BatchRange& r : p.batches) {
    if (r.first_seq == first_seq && r.last_seq == last_seq) {
      *duplicate_offset = r.base_offset;
      return Verdict::kDuplicate;
    }
  }
  if (p.batches.empty() || first_seq == NextSeq(p.batches.back().last_seq)) {
    return Verdict::kAppend;
  }
  return Verdict::kOutOfOrder;
}

void PartitionProducerState::Record(int64_t producer_id, int16_t epoch, int32_t first_seq,
                                    int32_t last_seq, int64_t base_offset) {
  Producer& p = producers_[producer_id];
  if (epoch != p.epoch) {
    p.epoch = epoch;
    p.batches.clear();
  }
  p.batches.push_back({first_seq, last_seq, base_offset});
  while (p.batches.size() > kBatchesKept) p.batches.pop_front();
}

}  // namespace sluice::broker
