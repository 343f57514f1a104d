#include "log/cleaner.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "index/mapped_index_file.h"
#include "log/checkpoint.h"
#include "log/crc32c.h"
#include "log/file_util.h"
#include "log/logging.h"
#include "log/partition_log.h"
#include "log/segment.h"
#include "log/varint.h"

namespace sluice::storage {

namespace {

int g_crash_after = -1;

constexpr int16_t kCompressionMask = 0x07;
constexpr int16_t kControlBit = 0x20;
constexpr int16_t kDeleteHorizonBit = 0x40;  // Kafka's hasDeleteHorizonMs (KIP-534)
constexpr size_t kAttributesPos = 21;
constexpr size_t kBaseTimestampPos = 27;
constexpr size_t kRecordsCountPos = 57;
constexpr size_t kBatchLengthPos = 8;
constexpr size_t kCrcPos = 17;
constexpr size_t kReadBlock = 1 << 20;
constexpr size_t kWriteChunk = 1 << 20;

template <typename U>
U Swap(U v) {
  if constexpr (std::endian::native == std::endian::big) return v;
  if constexpr (sizeof(U) == 2) return __builtin_bswap16(v);
  if constexpr (sizeof(U) == 4) return __builtin_bswap32(v);
  if constexpr (sizeof(U) == 8) return __builtin_bswap64(v);
}
template <typename T>
void StoreBe(uint8_t* p, T v) {
  auto u = Swap(static_cast<std::make_unsigned_t<T>>(v));
  std::memcpy(p, &u, sizeof(u));
}
int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}

// One record of an uncompressed batch, as byte ranges of the batch (records are copied, not
// re-encoded, unless their timestamp delta must change).
struct RawRecord {
  size_t start = 0;       // the length varint
  size_t attributes = 0;  // the attributes byte, right after it
  size_t after_ts = 0;    // offsetDelta, the first byte after timestampDelta
  size_t end = 0;         // one past the record
  int64_t timestamp_delta = 0;
  int64_t offset = 0;
  std::optional<std::string_view> key;
  bool tombstone = false;
};

// Splits the records section. False when it does not parse (the caller keeps the batch whole:
// the append path checks only the CRC, so a producer can store records we cannot read).
bool ParseRecords(std::span<const uint8_t> batch, const BatchHeader& h,
                  std::vector<RawRecord>* out) {
  out->clear();
  const size_t end = h.size_bytes();
  if (end > batch.size()) return false;
  std::span<const uint8_t> data = batch.first(end);
  size_t pos = kBatchHeaderSize;
  for (int32_t i = 0; i < h.records_count; ++i) {
    RawRecord r;
    r.start = pos;
    int32_t len;
    if (!ReadVarint32(data, &pos, &len) || len < 1 || static_cast<size_t>(len) > end - pos) {
      return false;
    }
    const size_t rec_end = pos + static_cast<size_t>(len);
    std::span<const uint8_t> rec = data.first(rec_end);
    r.attributes = pos++;
    int32_t offset_delta, key_len, value_len;
    if (!ReadVarint64(rec, &pos, &r.timestamp_delta)) return false;
    r.after_ts = pos;
    if (!ReadVarint32(rec, &pos, &offset_delta) || offset_delta < 0 ||
        offset_delta > h.last_offset_delta) {
      return false;
    }
    r.offset = WrapAdd(h.base_offset, offset_delta);
    if (!ReadVarint32(rec, &pos, &key_len) || key_len < -1 ||
        (key_len > 0 && static_cast<size_t>(key_len) > rec_end - pos)) {
      return false;
    }
    if (key_len >= 0) {
      r.key = std::string_view(reinterpret_cast<const char*>(rec.data() + pos), key_len);
      pos += static_cast<size_t>(key_len);
    }
    if (!ReadVarint32(rec, &pos, &value_len) || value_len < -1 ||
        (value_len > 0 && static_cast<size_t>(value_len) > rec_end - pos)) {
      return false;
    }
    r.tombstone = value_len == -1;
    r.end = rec_end;  // headers are copied as opaque bytes
    pos = rec_end;
    out->push_back(r);
  }
  return pos == end;
}

bool IsControl(const BatchHeader& h) { return (h.attributes & kControlBit) != 0; }
Compression CodecOf(const BatchHeader& h) {
  return static_cast<Compression>(h.attributes & kCompressionMask);
}

// A batch's records in uncompressed form: `batch` itself when uncompressed, else its
// decompressed copy (kDefaultMaxDecompressedRecordsBytes at most), with that copy's header.
struct PlainBatch {
  std::span<const uint8_t> bytes;
  BatchHeader header;
  std::vector<uint8_t> decompressed;  // empty for an uncompressed batch
};

// False when the batch's records are not ours to look at: a control batch, an unknown codec, a
// records section that does not decompress or is too large (such a batch is kept whole, its
// keys unseen).
bool ToPlainBatch(std::span<const uint8_t> batch, const BatchHeader& h, PlainBatch* plain) {
  if (IsControl(h)) return false;
  if (CodecOf(h) == Compression::kNone) {
    plain->bytes = batch;
    plain->header = h;
    return true;
  }
  auto d = DecompressBatch(batch, kDefaultMaxDecompressedRecordsBytes);
  if (!d.ok()) return false;
  plain->decompressed = std::move(*d);
  plain->bytes = plain->decompressed;
  auto ph = ParseBatchHeader(plain->bytes, static_cast<uint32_t>(plain->bytes.size()));
  if (!ph.ok()) return false;
  plain->header = *ph;
  return true;
}

// Reads whole, validated batches of [0, limit) of one file through a reusable buffer.
class BatchReader {
 public:
  BatchReader(Env* env, int fd, uint64_t limit, std::vector<uint8_t>* buf)
      : env_(env), fd_(fd), limit_(limit), buf_(buf) {}

  absl::StatusOr<std::span<const uint8_t>> At(uint64_t pos) {
    auto head = Get(pos, kBatchHeaderSize);
    if (!head.ok()) return head.status();
    const uint32_t max = static_cast<uint32_t>(std::min<uint64_t>(limit_ - pos, INT32_MAX));
    auto h = ParseBatchHeader(*head, max);
    if (!h.ok()) return h.status();
    auto whole = Get(pos, h->size_bytes());
    if (!whole.ok()) return whole.status();
    if (absl::Status s = ValidateBatch(*whole, max); !s.ok()) {
      return absl::DataLossError(absl::StrFormat("batch at %d: %s", pos, s.message()));
    }
    return *whole;
  }

 private:
  absl::StatusOr<std::span<const uint8_t>> Get(uint64_t pos, size_t n) {
    if (pos < start_ || pos + n > start_ + filled_) {
      if (pos + n > limit_) return absl::DataLossError("batch runs past the segment end");
      const size_t want = std::min<uint64_t>(std::max(n, kReadBlock), limit_ - pos);
      buf_->resize(want);
      auto got = PreadFully(fd_, buf_->data(), want, pos, env_);
      if (!got.ok()) return got.status();
      start_ = pos;
      filled_ = *got;
      if (filled_ < n) return absl::DataLossError("segment file shorter than expected");
    }
    return std::span<const uint8_t>(buf_->data() + (pos - start_), n);
  }

  Env* env_;
  int fd_;
  uint64_t limit_;
  std::vector<uint8_t>* buf_;
  uint64_t start_ = 0;
  size_t filled_ = 0;
};

std::string Path(const std::string& dir, int64_t base, const char* suffix) {
  return absl::StrCat(dir, "/", Segment::FileStem(base), suffix);
}

}  // namespace

// ---- OffsetMap, FilterBatch ----

void OffsetMap::Put(std::string_view key, int64_t offset) {
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  map_[{h.low64, h.high64}] = offset;
}

int64_t OffsetMap::Get(std::string_view key) const {
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  auto it = map_.find(std::make_pair(h.low64, h.high64));
  return it == map_.end() ? -1 : it->second;
}

size_t MapBatch(std::span<const uint8_t> batch, OffsetMap* map) {
  auto h =
      ParseBatchHeader(batch, static_cast<uint32_t>(std::min<size_t>(batch.size(), INT32_MAX)));
  if (!h.ok()) return 0;
  PlainBatch plain;
  if (!ToPlainBatch(batch, *h, &plain)) return 0;
  std::vector<RawRecord> records;
  if (ParseRecords(plain.bytes, plain.header, &records)) {
    for (const RawRecord& r : records) {
      if (r.key) map->Put(*r.key, r.offset);
    }
  }
  return plain.decompressed.size();
}

namespace {

// FilterBatch() on an uncompressed, non-control batch.
BatchFilterResult FilterPlainBatch(std::span<const uint8_t> batch, const BatchHeader& header,
                                   const BatchFilterInput& in, std::vector<uint8_t>* out) {
  BatchFilterResult res;
  const BatchHeader* const h = &header;
  std::vector<RawRecord> records;
  if (!ParseRecords(batch, *h, &records)) return res;
  const bool has_horizon = (h->attributes & kDeleteHorizonBit) != 0;
  const int64_t horizon = h->base_timestamp;
  std::vector<bool> keep(records.size(), true);
  size_t kept = records.size();
  bool kept_tombstone = false;
  for (size_t i = 0; i < records.size(); ++i) {
    const RawRecord& r = records[i];
    if (!r.key) continue;  // Kafka refuses these on compacted topics; we keep them
    if (in.map != nullptr && in.map->Get(*r.key) > r.offset) {
      keep[i] = false;
      ++res.records_removed;
    } else if (r.tombstone && has_horizon && in.now_ms >= horizon) {
      keep[i] = false;
      ++res.tombstones_removed;
    } else if (r.tombstone) {
      kept_tombstone = true;
    }
    if (!keep[i]) --kept;
  }
  const bool set_horizon = kept_tombstone && !has_horizon;
  if (kept == 0 && !in.keep_if_empty) {
    res.fate = BatchFilterResult::kDropped;  // also an empty batch an earlier pass kept
    return res;
  }
  if (kept == records.size() && !set_horizon) return res;  // unchanged: copied verbatim
  res.fate = BatchFilterResult::kRewritten;
  int64_t base_ts = h->base_timestamp;
  if (set_horizon) {
    base_ts = in.delete_retention_ms > INT64_MAX - in.now_ms ? INT64_MAX
                                                             : in.now_ms + in.delete_retention_ms;
  }
  out->assign(batch.begin(), batch.begin() + kBatchHeaderSize);
  for (size_t i = 0; i < records.size(); ++i) {
    if (!keep[i]) continue;
    const RawRecord& r = records[i];
    if (!set_horizon) {
      out->insert(out->end(), batch.begin() + r.start, batch.begin() + r.end);
      continue;
    }
    // Same record timestamp, expressed against the new base (the delete horizon).
    const int64_t ts = WrapAdd(h->base_timestamp, r.timestamp_delta);
    const int64_t delta = WrapSub(ts, base_ts);
    const size_t rest = r.end - r.after_ts;
    const size_t body = 1 + VarintSize64(delta) + rest;
    if (body > INT32_MAX) return BatchFilterResult{};  // cannot happen for a valid batch
    AppendVarint32(out, static_cast<int32_t>(body));
    out->push_back(batch[r.attributes]);
    AppendVarint64(out, delta);
    out->insert(out->end(), batch.begin() + r.after_ts, batch.begin() + r.end);
  }
  uint8_t* b = out->data();
  int16_t attributes = h->attributes;
  if (set_horizon) attributes |= kDeleteHorizonBit;
  StoreBe<int32_t>(b + kBatchLengthPos, static_cast<int32_t>(out->size() - kBatchLengthFieldEnd));
  StoreBe<int16_t>(b + kAttributesPos, attributes);
  StoreBe<int64_t>(b + kBaseTimestampPos, base_ts);
  StoreBe<int32_t>(b + kRecordsCountPos, static_cast<int32_t>(kept));
  StoreBe<uint32_t>(b + kCrcPos, Crc32c(0, b + kBatchCrcStart, out->size() - kBatchCrcStart));
  return res;
}

}  // namespace

BatchFilterResult FilterBatch(std::span<const uint8_t> batch, const BatchFilterInput& in,
                              std::vector<uint8_t>* out) {
  auto h =
      ParseBatchHeader(batch, static_cast<uint32_t>(std::min<size_t>(batch.size(), INT32_MAX)));
  if (!h.ok()) return BatchFilterResult{};
  PlainBatch plain;
  if (!ToPlainBatch(batch, *h, &plain)) return BatchFilterResult{};
  BatchFilterResult res = FilterPlainBatch(plain.bytes, plain.header, in, out);
  res.decompressed_bytes = plain.decompressed.size();
  const Compression codec = CodecOf(*h);
  if (res.fate != BatchFilterResult::kRewritten || codec == Compression::kNone) return res;
  // Kafka keeps the producer's codec. A batch left without records stays uncompressed, as
  // Kafka writes it: an empty records section has nothing to compress, and some readers do not
  // expect a compressed empty one.
  if (RecordBatchView(*out).records_count() == 0) return res;
  auto compressed = CompressBatch(*out, codec);
  // Our encoder (e.g. zstd level 3) may do worse than the producer's: a rewritten batch never
  // grows, so a group's output never outgrows its sources. Keeping the original whole is always
  // safe (as for a library failure, which cannot happen short of memory exhaustion).
  if (!compressed.ok() || compressed->size() > h->size_bytes()) {
    BatchFilterResult keep;
    keep.decompressed_bytes = res.decompressed_bytes;
    return keep;
  }
  *out = std::move(*compressed);
  return res;
}

// ---- crash recovery of the swap ----

absl::Status RecoverInterruptedSwaps(const std::string& dir, Env* env) {
  auto names = ListDir(dir, env);
  if (!names.ok()) return names.status();
  bool changed = false;
  for (const std::string& name : *names) {
    if (!absl::EndsWith(name, ".log.swap")) continue;
    int64_t base;
    if (!Segment::ParseLogFileName(name.substr(0, name.size() - 5), &base)) continue;
    const std::string swap = absl::StrCat(dir, "/", name);
    int fd = env->Open(swap, OpenMode::kRead);
    if (fd < 0) return ErrnoStatus("open", swap, -fd);
    auto size = FileSize(swap, env);
    ScanResult r;
    if (size.ok()) r = ScanBatches(fd, 0, *size, /*verify_crc=*/true, base, nullptr, env);
    (void)env->Close(fd);
    if (!size.ok()) return size.status();
    if (!r.stop_reason.ok() || r.next_offset < 0) {
      // Synced before it was committed, so this is damage after the fact. The replaced
      // segments are still the truth if the first of them is there.
      if (FileExists(Path(dir, base, ".log"), env)) {
        LogError("%s: discarding damaged cleaner output %s: %s", dir, name,
                 r.stop_reason.message());
        (void)RemoveFile(swap, env);
        changed = true;
        continue;
      }
      return absl::DataLossError(absl::StrFormat("%s: committed cleaner output is damaged: %s",
                                                 swap, r.stop_reason.message()));
    }
    // The swap replaces every segment in [base, end): its last batch is the last batch of
    // the last segment it replaces (kept even when emptied), so `end` is the next one's base.
    const int64_t end = r.next_offset;
    LogWarning("%s: completing an interrupted cleaner swap of offsets [%d, %d)", dir, base, end);
    for (const std::string& other : *names) {
      int64_t b;
      if (!Segment::ParseLogFileName(other, &b) || b < base || b >= end) continue;
      // The .log first: without it, a crash here leaves only index files, removed at open.
      if (absl::Status s = RemoveFile(Path(dir, b, ".log"), env); !s.ok()) return s;
      (void)RemoveFile(Path(dir, b, ".index"), env);
      (void)RemoveFile(Path(dir, b, ".timeindex"), env);
    }
    // Index files of `base` may be the old ones or already the new ones: rebuilt at open.
    (void)RemoveFile(Path(dir, base, ".index"), env);
    (void)RemoveFile(Path(dir, base, ".timeindex"), env);
    if (absl::Status s = RenameFile(swap, Path(dir, base, ".log"), env); !s.ok()) return s;
    changed = true;
  }
  auto again = ListDir(dir, env);
  if (!again.ok()) return again.status();
  for (const std::string& name : *again) {
    if (absl::EndsWith(name, ".cleaned")) {
      (void)RemoveFile(absl::StrCat(dir, "/", name), env);
      changed = true;
    }
  }
  return changed ? SyncDir(dir, env) : absl::OkStatus();
}

// ---- LogCleaner ----

struct LogCleaner::Source {
  int64_t base = 0;
  // The segment (identity only: a swap or retention may replace it) and its .log file, held
  // open for the pass even if the segment cache closes the segment's own files meanwhile.
  const Segment* segment = nullptr;
  std::shared_ptr<SegmentFile> file;
  uint64_t size = 0;
  int64_t next_offset = 0;
  size_t index_entries = 0;
};

struct LogCleaner::Pass {
  int64_t now_ms = 0;
  int64_t first_dirty = 0;
  int64_t end = 0;  // first offset not cleaned by this pass (a segment base)
  std::vector<Source> sources;
  // Mapping the dirty part.
  bool mapped = false;
  size_t map_index = 0;
  uint64_t map_pos = 0;
  bool mapped_a_segment = false;
  OffsetMap map;
  absl::flat_hash_map<int64_t, int64_t> producer_last;  // producer id -> its last batch
  // Rewriting, group by group.
  std::vector<std::pair<size_t, size_t>> groups;  // [first, last) into sources
  size_t group = 0;
  size_t src = 0;
  uint64_t pos = 0;
  std::unique_ptr<Segment> out;
  std::vector<uint8_t> out_buf;
  uint64_t out_flushed = 0;
  bool out_unsynced = false;
  std::vector<uint8_t> read_buf;
  std::vector<uint8_t> scratch;
};

void LogCleaner::TEST_CrashAfter(int step) { g_crash_after = step; }

LogCleaner::LogCleaner(PartitionLog* log) : log_(log) {
  auto cp =
      ReadCleanerCheckpoint(absl::StrCat(log_->dir_, "/", kCleanerCheckpointFile), log_->env_);
  if (cp.ok()) {
    first_dirty_ = *cp;
  } else if (!absl::IsNotFound(cp.status())) {
    LogError("%s: %s; the next cleaning pass starts from the log start", log_->dir_,
             cp.status().message());
  }
}

// A crash leaves files as they are (recovery handles them); a clean drop removes the output.
LogCleaner::~LogCleaner() {
  if (pass_ != nullptr && !crashed_) RemoveCleanedFiles();
}

bool LogCleaner::CrashHere(SwapStep step) {
  if (g_crash_after != static_cast<int>(step)) return false;
  crashed_ = true;
  return true;
}

LogCleaner::Range LogCleaner::CleanableRange(int64_t now_ms) const {
  const LogConfig& c = log_->config_;
  const auto& segs = log_->segments_;
  Range r;
  if (segs.empty()) return r;
  const int64_t first_dirty = std::max(first_dirty_, segs.front()->base_offset());
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    const Segment& seg = *segs[i];
    // Never the active segment, nothing not fully written, nothing the recovery checkpoint on
    // disk does not cover (recovery re-reads from a position in that segment).
    if (seg.empty() || seg.base_offset() >= log_->written_end_.segment_base) break;
    if (std::find(log_->pending_seal_.begin(), log_->pending_seal_.end(), &seg) !=
        log_->pending_seal_.end()) {
      break;
    }
    if (seg.next_offset() >= log_->checkpointed_offset_) break;
    // Lags apply only when set (Kafka's rule): a producer clock ahead of ours must not stall
    // cleaning, and a segment without timestamps is never "overdue".
    const bool timed = seg.max_timestamp() >= 0;
    const int64_t age = timed ? now_ms - seg.max_timestamp() : kNever;
    if (c.min_compaction_lag_ms > 0 && age < c.min_compaction_lag_ms) break;
    r.total_bytes += seg.size();
    if (seg.base_offset() >= first_dirty) {
      r.dirty_bytes += seg.size();
      if (c.max_compaction_lag_ms != kNever && timed && age >= c.max_compaction_lag_ms) {
        r.overdue = true;
      }
    }
    r.count = i + 1;
  }
  return r;
}

double LogCleaner::DirtyRatio(int64_t now_ms) const {
  Range r = CleanableRange(now_ms);
  if (r.total_bytes == 0) return -1;
  return static_cast<double>(r.dirty_bytes) / static_cast<double>(r.total_bytes);
}

bool LogCleaner::StartPass(int64_t now_ms, bool force) {
  Range r = CleanableRange(now_ms);
  if (r.count == 0 || r.dirty_bytes == 0) return false;
  const double ratio = static_cast<double>(r.dirty_bytes) / static_cast<double>(r.total_bytes);
  if (!force && !r.overdue && ratio < log_->config_.min_cleanable_dirty_ratio) return false;
  const auto& segs = log_->segments_;
  pass_ = std::make_unique<Pass>();
  pass_->now_ms = now_ms;
  pass_->first_dirty = std::max(first_dirty_, segs.front()->base_offset());
  pass_->end = segs[r.count]->base_offset();
  for (size_t i = 0; i < r.count; ++i) {
    const Segment& seg = *segs[i];
    if (absl::Status s = seg.Acquire(); !s.ok()) {
      LogError("%s: cleaner: %s", log_->dir_, s.message());
      pass_.reset();
      return false;
    }
    pass_->sources.push_back(Source{seg.base_offset(), &seg, seg.file(), seg.size(),
                                    seg.next_offset(), seg.offset_index().entries()});
  }
  return true;
}

bool LogCleaner::SourcesStillThere() const {
  const auto& segs = log_->segments_;
  const size_t from = pass_->mapped ? pass_->groups[pass_->group].first : 0;
  for (size_t i = from; i < pass_->sources.size(); ++i) {
    const Source& s = pass_->sources[i];
    size_t k = log_->SegmentIndexFor(s.base);
    if (k >= segs.size() || segs[k]->base_offset() != s.base || segs[k].get() != s.segment) {
      return false;
    }
  }
  return true;
}

void LogCleaner::PlanGroups() {
  const LogConfig& c = log_->config_;
  // Entry slots of the smaller (time) index; every source may add one entry by rounding.
  const size_t capacity =
      (c.max_index_bytes - std::min<uint32_t>(c.max_index_bytes, MappedIndexFile::kHeaderSize)) /
      12;
  auto& srcs = pass_->sources;
  for (size_t i = 0; i < srcs.size();) {
    size_t j = i + 1;
    uint64_t bytes = srcs[i].size;
    size_t entries = srcs[i].index_entries + 1;
    while (j < srcs.size() && bytes + srcs[j].size <= c.segment_bytes &&
           entries + srcs[j].index_entries + 1 <= capacity &&
           srcs[j].next_offset - srcs[i].base < static_cast<int64_t>(UINT32_MAX)) {
      bytes += srcs[j].size;
      entries += srcs[j].index_entries + 1;
      ++j;
    }
    pass_->groups.emplace_back(i, j);
    i = j;
  }
}

absl::Status LogCleaner::MapStep(uint64_t* budget) {
  Pass& p = *pass_;
  const uint64_t max_entries =
      log_->config_.cleaner_dedupe_buffer_bytes / OffsetMap::kBytesPerEntry;
  while (*budget > 0 && p.map_index < p.sources.size()) {
    const Source& s = p.sources[p.map_index];
    if (s.base < p.first_dirty || p.map_pos >= s.size) {
      if (s.base >= p.first_dirty) p.mapped_a_segment = true;
      ++p.map_index;
      p.map_pos = 0;
      continue;
    }
    if (p.map_pos == 0 && p.mapped_a_segment && p.map.size() >= max_entries) {
      // Map full: this pass cleans up to here, the next one goes on.
      p.end = s.base;
      p.sources.resize(p.map_index);
      break;
    }
    BatchReader reader(log_->env_, s.file->fd(), s.size, &p.read_buf);
    while (*budget > 0 && p.map_pos < s.size) {
      auto batch = reader.At(p.map_pos);
      if (!batch.ok()) {
        return absl::DataLossError(
            absl::StrFormat("%s: %s", Path(log_->dir_, s.base, ".log"), batch.status().message()));
      }
      const size_t decompressed = MapBatch(*batch, &p.map);
      RecordBatchView v(*batch);
      if (v.producer_id() >= 0) p.producer_last[v.producer_id()] = v.base_offset();
      p.map_pos += batch->size();
      stats_.bytes_read += batch->size();
      stats_.bytes_decompressed += decompressed;
      // A compressed batch costs its decompressed size too: that is the CPU work done on it.
      *budget -= std::min<uint64_t>(*budget, batch->size() + decompressed);
    }
  }
  if (p.map_index >= p.sources.size()) {
    p.mapped = true;
    PlanGroups();
  }
  return absl::OkStatus();
}

absl::Status LogCleaner::FlushOutput(bool sync) {
  Pass& p = *pass_;
  if (!p.out_buf.empty()) {
    const std::string& path = p.out->file()->path();
    if (absl::Status s = PwriteFully(p.out->fd(), p.out_buf.data(), p.out_buf.size(), p.out_flushed,
                                     path, log_->env_);
        !s.ok()) {
      return s;
    }
    stats_.bytes_written += p.out_buf.size();
    p.out_flushed += p.out_buf.size();
    p.out_buf.clear();
    p.out_unsynced = true;
  }
  // Syncing as we go keeps the final fdatasync before the swap (on the shard thread) short.
  if (sync && p.out_unsynced) {
    if (int rc = log_->env_->Fdatasync(p.out->fd()); rc < 0) {
      return ErrnoStatus("fdatasync", p.out->file()->path(), -rc);
    }
    p.out_unsynced = false;
  }
  return absl::OkStatus();
}

absl::Status LogCleaner::RewriteStep(uint64_t* budget) {
  Pass& p = *pass_;
  const LogConfig& c = log_->config_;
  while (*budget > 0 && p.group < p.groups.size()) {
    const auto [first, last] = p.groups[p.group];
    if (p.out == nullptr) {
      auto out = Segment::CreateCleaned(log_->dir_, p.sources[first].base, c, log_->env_);
      if (!out.ok()) return out.status();
      p.out = std::move(*out);
      p.src = first;
      p.pos = 0;
      p.out_flushed = 0;
      p.out_buf.clear();
    }
    if (p.src == last) {
      if (absl::Status s = SwapGroup(); !s.ok()) return s;
      if (crashed_) return absl::OkStatus();
      ++p.group;
      continue;
    }
    const Source& s = p.sources[p.src];
    BatchReader reader(log_->env_, s.file->fd(), s.size, &p.read_buf);
    while (*budget > 0 && p.pos < s.size) {
      auto batch = reader.At(p.pos);
      if (!batch.ok()) {
        return absl::DataLossError(
            absl::StrFormat("%s: %s", Path(log_->dir_, s.base, ".log"), batch.status().message()));
      }
      RecordBatchView v(*batch);
      const uint64_t size = batch->size();
      BatchFilterInput in;
      in.map = &p.map;
      in.now_ms = p.now_ms;
      in.delete_retention_ms = c.delete_retention_ms;
      const bool last_of_group = p.src + 1 == last && p.pos + size == s.size;
      bool last_of_producer = false;
      if (v.producer_id() >= 0) {
        auto it = p.producer_last.find(v.producer_id());
        // Producers not seen in the dirty part keep what earlier passes left them.
        last_of_producer = it == p.producer_last.end() ? v.base_offset() < p.first_dirty
                                                       : it->second == v.base_offset();
      }
      in.keep_if_empty = last_of_group || last_of_producer;
      BatchFilterResult r = FilterBatch(*batch, in, &p.scratch);
      stats_.records_removed += r.records_removed;
      stats_.tombstones_removed += r.tombstones_removed;
      std::span<const uint8_t> kept;
      if (r.fate == BatchFilterResult::kKeepAsIs) kept = *batch;
      if (r.fate == BatchFilterResult::kRewritten) kept = p.scratch;
      if (r.fate == BatchFilterResult::kDropped) ++stats_.batches_removed;
      if (!kept.empty()) {
        auto h = ParseBatchHeader(kept, static_cast<uint32_t>(kept.size()));
        if (!h.ok()) return h.status();
        const uint64_t at = p.out_flushed + p.out_buf.size();
        p.out_buf.insert(p.out_buf.end(), kept.begin(), kept.end());
        p.out->OnAppend(*h, at, static_cast<uint32_t>(kept.size()));
        if (p.out_buf.size() >= kWriteChunk) {
          if (absl::Status st = FlushOutput(false); !st.ok()) return st;
        }
      }
      p.pos += size;
      stats_.bytes_read += size;
      stats_.bytes_decompressed += r.decompressed_bytes;
      *budget -= std::min<uint64_t>(*budget, size + r.decompressed_bytes);
    }
    if (p.pos >= s.size) {
      ++p.src;
      p.pos = 0;
    }
  }
  if (p.out != nullptr) return FlushOutput(true);
  return absl::OkStatus();
}

// The swap of one group (log/FORMAT.md "Compaction"): output synced -> commit by renaming the
// .log to .swap -> old segments deleted -> output renamed into place.
absl::Status LogCleaner::SwapGroup() {
  Pass& p = *pass_;
  const auto [first, last] = p.groups[p.group];
  const std::string& dir = log_->dir_;
  Env* const env = log_->env_;
  const int64_t base = p.sources[first].base;
  if (absl::Status s = FlushOutput(true); !s.ok()) return s;
  if (absl::Status s = p.out->Seal(); !s.ok()) return s;  // also fdatasyncs the indexes
  const uint64_t size = p.out->size();
  p.out.reset();
  if (CrashHere(SwapStep::kOutputWritten)) return absl::OkStatus();
  if (absl::Status s =
          RenameFile(Path(dir, base, ".log.cleaned"), Path(dir, base, ".log.swap"), env);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = SyncDir(dir, env); !s.ok()) return s;
  // Committed: from here on a failure leaves the log to the next open's recovery.
  auto fail = [this](absl::Status s) {
    log_->Fail(absl::Status(s.code(), absl::StrCat("cleaner swap: ", s.message())));
    return s;
  };
  if (CrashHere(SwapStep::kCommitted)) return absl::OkStatus();
  auto& segs = log_->segments_;
  const size_t at = log_->SegmentIndexFor(base);
  for (size_t i = 0; i < last - first; ++i) {
    if (absl::Status s = segs[at + i]->Delete(log_->io_); !s.ok()) return fail(s);
    if (i == 0 && CrashHere(SwapStep::kFirstSourceDeleted)) return absl::OkStatus();
  }
  // The deletions must be durable before the output takes its final name: without the .swap
  // file, start-up could no longer tell an old segment of the range from a live one.
  if (absl::Status s = SyncDir(dir, env); !s.ok()) return fail(s);
  if (CrashHere(SwapStep::kSourcesDeleted)) return absl::OkStatus();
  for (const char* suffix : {".index", ".timeindex"}) {
    if (absl::Status s = RenameFile(Path(dir, base, absl::StrCat(suffix, ".cleaned").c_str()),
                                    Path(dir, base, suffix), env);
        !s.ok()) {
      return fail(s);
    }
  }
  if (CrashHere(SwapStep::kIndexesRenamed)) return absl::OkStatus();
  if (absl::Status s = RenameFile(Path(dir, base, ".log.swap"), Path(dir, base, ".log"), env);
      !s.ok()) {
    return fail(s);
  }
  if (absl::Status s = SyncDir(dir, env); !s.ok()) return fail(s);
  if (CrashHere(SwapStep::kLogRenamed)) return absl::OkStatus();
  auto seg = Segment::Open(dir, base, log_->config_, env);
  if (!seg.ok()) return fail(seg.status());
  if (absl::Status s = (*seg)->OpenIndexes(size); !s.ok()) {
    auto r = (*seg)->RebuildIndexes(size, /*verify_crc=*/true);
    if (!r.ok()) return fail(r.status());
    if (!r->stop_reason.ok()) return fail(r->stop_reason);
    (void)(*seg)->Seal();
  }
  segs.erase(segs.begin() + static_cast<std::ptrdiff_t>(at),
             segs.begin() + static_cast<std::ptrdiff_t>(at + (last - first)));
  log_->Track(**seg);
  segs.insert(segs.begin() + static_cast<std::ptrdiff_t>(at), std::move(*seg));
  ++stats_.groups_swapped;
  return absl::OkStatus();
}

void LogCleaner::FinishPass() {
  first_dirty_ = pass_->end;
  absl::Status s = WriteCleanerCheckpoint(absl::StrCat(log_->dir_, "/", kCleanerCheckpointFile),
                                          first_dirty_, log_->env_);
  if (!s.ok()) LogError("%s: writing cleaner checkpoint: %s", log_->dir_, s.message());
  ++stats_.passes;
  pass_.reset();
}

void LogCleaner::RemoveCleanedFiles() {
  if (pass_ == nullptr || !pass_->mapped || pass_->group >= pass_->groups.size()) return;
  pass_->out.reset();
  const int64_t base = pass_->sources[pass_->groups[pass_->group].first].base;
  for (const char* suffix : {".log.cleaned", ".index.cleaned", ".timeindex.cleaned"}) {
    (void)RemoveFile(Path(log_->dir_, base, suffix), log_->env_);
  }
}

void LogCleaner::Abort(absl::string_view why) {
  if (pass_ == nullptr) return;
  LogWarning("%s: cleaning pass abandoned: %s", log_->dir_, why);
  RemoveCleanedFiles();
  ++stats_.passes_aborted;
  pass_.reset();
}

void LogCleaner::LogTruncated(int64_t offset) {
  Abort("log truncated");
  if (first_dirty_ <= offset) return;
  first_dirty_ = offset;
  if (absl::Status s = WriteCleanerCheckpoint(absl::StrCat(log_->dir_, "/", kCleanerCheckpointFile),
                                              first_dirty_, log_->env_);
      !s.ok()) {
    LogError("%s: lowering the cleaner checkpoint to %d: %s", log_->dir_, offset, s.message());
  }
}

absl::Status LowerCleanerCheckpoint(const std::string& dir, int64_t offset, Env* env) {
  const std::string path = absl::StrCat(dir, "/", kCleanerCheckpointFile);
  auto cp = ReadCleanerCheckpoint(path, env);
  if (!cp.ok() || *cp <= offset) return absl::OkStatus();
  return WriteCleanerCheckpoint(path, offset, env);
}

bool LogCleaner::Step(int64_t now_ms, uint64_t budget_bytes, bool force) {
  if (crashed_) return false;
  if (log_->closed_ || !log_->failure_.ok() || !log_->config_.compact()) {
    Abort("log closed, failed or no longer compacted");
    return false;
  }
  if (pass_ == nullptr && !StartPass(now_ms, force)) return false;
  if (!SourcesStillThere()) {
    Abort("segments deleted under the pass");
    return false;
  }
  uint64_t budget = std::max<uint64_t>(budget_bytes, 1);
  absl::Status s = pass_->mapped ? absl::OkStatus() : MapStep(&budget);
  if (s.ok() && pass_->mapped && budget > 0) s = RewriteStep(&budget);
  if (crashed_) return false;
  if (!s.ok()) {
    LogError("%s: log cleaner: %s", log_->dir_, s.message());
    Abort(s.message());
    return false;
  }
  if (pass_->mapped && pass_->group >= pass_->groups.size()) FinishPass();
  return pass_ != nullptr;
}

// ---- PartitionLog's compaction entry point ----

bool PartitionLog::CleanStep(int64_t now_ms, uint64_t max_bytes, bool force) {
  if (cleaner_ == nullptr) cleaner_ = std::make_unique<LogCleaner>(this);
  return cleaner_->Step(now_ms, max_bytes, force);
}

}  // namespace sluice::storage
