#include "log/segment.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log/file_util.h"
#include "log/io_backend.h"
#include "log/logging.h"

namespace sluice::storage {

namespace {

// Recovery and index rebuilds walk whole files: large reads. Lookups read a few headers near
// an index entry: small reads (a 256 KiB read per lookup costs more than the search itself).
constexpr size_t kScanBlock = 1024 * 1024;
constexpr size_t kLookupBlock = 16 * 1024;

// Sequential reader over [start, limit) of a file that serves spans out of one buffer and
// refills with pread when asked for bytes outside it. Keeps scans to a few large reads.
class BlockReader {
 public:
  BlockReader(Env* env, int fd, uint64_t limit, size_t block)
      : env_(env), fd_(fd), limit_(limit), block_(block) {}

  // Bytes [pos, pos + n) or an error if the file ends first.
  absl::StatusOr<std::span<const uint8_t>> Get(uint64_t pos, size_t n) {
    if (pos < start_ || pos + n > start_ + filled_) {
      size_t want = std::max(n, block_);
      if (pos + want > limit_) want = std::max<uint64_t>(n, limit_ - pos);
      buf_.resize(want);
      auto got = PreadFully(fd_, buf_.data(), want, pos, env_);
      if (!got.ok()) return got.status();
      start_ = pos;
      filled_ = *got;
      if (filled_ < n) {
        return absl::OutOfRangeError(absl::StrFormat("file ends at %d", pos + filled_));
      }
    }
    return std::span<const uint8_t>(buf_.data() + (pos - start_), n);
  }

 private:
  Env* env_;
  int fd_;
  uint64_t limit_;
  size_t block_;
  std::vector<uint8_t> buf_;
  uint64_t start_ = 0;
  size_t filled_ = 0;
};

uint32_t ClampU32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v); }

}  // namespace

SegmentFile::~SegmentFile() {
  if (fd_ >= 0) (void)env_->Close(fd_);
}

ScanResult ScanBatches(int fd, uint64_t from, uint64_t limit, bool verify_crc, int64_t segment_base,
                       const std::function<void(const BatchHeader&, uint64_t)>& visit, Env* env) {
  ScanResult r;
  BlockReader reader(env, fd, limit, kScanBlock);
  uint64_t pos = from;
  while (pos < limit) {
    if (limit - pos < kBatchHeaderSize) {
      r.stop_reason = absl::DataLossError(
          absl::StrFormat("torn batch header at position %d (%d bytes left)", pos, limit - pos));
      break;
    }
    auto head = reader.Get(pos, kBatchHeaderSize);
    if (!head.ok()) {
      r.stop_reason = head.status();
      break;
    }
    auto header = ParseBatchHeader(*head, ClampU32(limit - pos));
    if (!header.ok()) {
      r.stop_reason = absl::DataLossError(
          absl::StrFormat("bad batch at position %d: %s", pos, header.status().message()));
      break;
    }
    const uint64_t size = header->size_bytes();
    if (size > limit - pos) {
      r.stop_reason = absl::DataLossError(absl::StrFormat(
          "batch at position %d of %d bytes runs past the end (%d)", pos, size, limit));
      break;
    }
    if (verify_crc) {
      auto whole = reader.Get(pos, size);
      absl::Status s = whole.ok() ? ValidateBatch(*whole, ClampU32(size)) : whole.status();
      if (!s.ok()) {
        r.stop_reason =
            absl::DataLossError(absl::StrFormat("bad batch at position %d: %s", pos, s.message()));
        break;
      }
    }
    // Offsets must belong to this segment: at or above its base, and close enough that the
    // index can express them relative to it (and the last offset cannot overflow).
    if (header->base_offset < segment_base ||
        header->base_offset > INT64_MAX - 1 - header->last_offset_delta ||
        header->last_offset() - segment_base >= static_cast<int64_t>(UINT32_MAX)) {
      r.stop_reason = absl::DataLossError(
          absl::StrFormat("batch at position %d has offsets %d..+%d outside segment %d", pos,
                          header->base_offset, header->last_offset_delta, segment_base));
      break;
    }
    if (r.next_offset >= 0 && header->base_offset < r.next_offset) {
      r.stop_reason = absl::DataLossError(absl::StrFormat(
          "batch at position %d has base offset %d below the previous batch's end %d", pos,
          header->base_offset, r.next_offset));
      break;
    }
    if (visit) visit(*header, pos);
    r.next_offset = header->last_offset() + 1;
    if (header->max_timestamp > r.max_timestamp) {
      r.max_timestamp = header->max_timestamp;
      r.offset_of_max_timestamp = header->base_offset;
    }
    ++r.batches;
    pos += size;
  }
  r.end_position = pos;
  return r;
}

std::string Segment::FileStem(int64_t base_offset) { return absl::StrFormat("%020d", base_offset); }

bool Segment::ParseLogFileName(const std::string& name, int64_t* base_offset) {
  if (name.size() != 24 || name.compare(20, 4, ".log") != 0) return false;
  int64_t v = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    if (v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + (name[i] - '0');
  }
  *base_offset = v;
  return true;
}

Segment::Segment(std::string dir, int64_t base_offset, std::shared_ptr<SegmentFile> file,
                 const LogConfig& config, Env* env)
    : dir_(std::move(dir)),
      env_(env),
      base_offset_(base_offset),
      file_(std::move(file)),
      index_interval_bytes_(config.index_interval_bytes),
      max_index_bytes_(config.max_index_bytes),
      next_offset_(base_offset) {}

Segment::~Segment() {
  if (cache_ != nullptr && file_ != nullptr) cache_->Remove(this);
}

void Segment::set_cache(SegmentCache* cache, const void* owner) {
  if (cache_ != nullptr && file_ != nullptr) cache_->Remove(this);
  cache_ = cache;
  owner_ = owner;
  if (cache_ != nullptr && file_ != nullptr) {
    cache_->Add(this);
    cache_->Trim(owner_);
  }
}

absl::Status Segment::Acquire() const {
  referenced_ = true;
  if (file_ != nullptr) return absl::OkStatus();
  const std::string path = PathWithSuffix(".log");
  int fd = env_->Open(path, OpenMode::kReadWrite);
  if (fd < 0) return ErrnoStatus("reopen segment", path, -fd);
  auto file = std::make_shared<SegmentFile>(fd, path, env_);
  // An index whose file was never made stays so (MappedIndexFile::Create, defer_file).
  auto oi = released_oi_deferred_
                ? OffsetIndex::Create(PathWithSuffix(".index"), base_offset_, max_index_bytes_,
                                      env_, true)
                : OffsetIndex::Open(PathWithSuffix(".index"), base_offset_, max_index_bytes_, env_);
  if (!oi.ok()) return oi.status();
  auto ti = released_ti_deferred_ ? TimeIndex::Create(PathWithSuffix(".timeindex"), base_offset_,
                                                      max_index_bytes_, env_, true)
                                  : TimeIndex::Open(PathWithSuffix(".timeindex"), base_offset_,
                                                    max_index_bytes_, env_);
  if (!ti.ok()) return ti.status();
  if (sync_owed_) {
    (*oi)->MarkUnsynced();
    (*ti)->MarkUnsynced();
    sync_owed_ = false;
  }
  file_ = std::move(file);
  offset_index_ = std::move(*oi);
  time_index_ = std::move(*ti);
  if (cache_ != nullptr) {
    cache_->CountReopen();
    cache_->Add(const_cast<Segment*>(this));
    cache_->Trim(owner_);
  }
  return absl::OkStatus();
}

void Segment::ReleaseFiles() const {
  if (file_ == nullptr) return;
  if (offset_index_ != nullptr && time_index_ != nullptr) {
    released_sealed_ = offset_index_->sealed();
    released_full_ = offset_index_->full() || time_index_->full();
    released_oi_deferred_ = offset_index_->deferred();
    released_ti_deferred_ = time_index_->deferred();
    sync_owed_ = sync_owed_ || offset_index_->unsynced() || time_index_->unsynced();
  }
  if (cache_ != nullptr) cache_->Remove(const_cast<Segment*>(this));
  file_.reset();
  offset_index_.reset();
  time_index_.reset();
}

std::string Segment::PathWithSuffix(const char* suffix) const {
  return absl::StrCat(dir_, "/", FileStem(base_offset_), suffix, extra_suffix_);
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Create(const std::string& dir,
                                                         int64_t base_offset,
                                                         const LogConfig& config, Env* env) {
  return CreateWithSuffix(dir, base_offset, config, "", env);
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::CreateCleaned(const std::string& dir,
                                                                int64_t base_offset,
                                                                const LogConfig& config, Env* env) {
  return CreateWithSuffix(dir, base_offset, config, ".cleaned", env);
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::CreateWithSuffix(const std::string& dir,
                                                                   int64_t base_offset,
                                                                   const LogConfig& config,
                                                                   const char* extra_suffix,
                                                                   Env* env) {
  std::string path = absl::StrCat(dir, "/", FileStem(base_offset), ".log", extra_suffix);
  int fd = env->Open(path, OpenMode::kCreateTruncate);
  if (fd < 0) return ErrnoStatus("create segment", path, -fd);
  auto seg = std::unique_ptr<Segment>(
      new Segment(dir, base_offset, std::make_shared<SegmentFile>(fd, path, env), config, env));
  seg->extra_suffix_ = extra_suffix;
  // A segment is created whole or not at all: the files of a half-made one are removed
  // (recovery drops them anyway, as an empty segment left by an interrupted roll).
  auto undo = [&](absl::Status s) {
    const std::string index_path = seg->PathWithSuffix(".index");
    seg.reset();
    (void)RemoveFile(index_path, env);
    (void)RemoveFile(path, env);
    return s;
  };
  // The index files of a segment are made with its first index entry (or at seal): most
  // partitions of a broker with thousands never fill index.interval.bytes, and two files
  // fewer per new partition is most of what creating one costs. A cleaner's output gets them
  // at once (its files are renamed into place whole).
  const bool defer = extra_suffix[0] == '\0';
  auto oi = OffsetIndex::Create(seg->PathWithSuffix(".index"), base_offset, config.max_index_bytes,
                                env, defer);
  if (!oi.ok()) return undo(oi.status());
  auto ti = TimeIndex::Create(seg->PathWithSuffix(".timeindex"), base_offset,
                              config.max_index_bytes, env, defer);
  if (!ti.ok()) return undo(ti.status());
  seg->offset_index_ = std::move(*oi);
  seg->time_index_ = std::move(*ti);
  return seg;
}

absl::StatusOr<std::unique_ptr<Segment>> Segment::Open(const std::string& dir, int64_t base_offset,
                                                       const LogConfig& config, Env* env) {
  std::string path = absl::StrCat(dir, "/", FileStem(base_offset), ".log");
  int fd = env->Open(path, OpenMode::kReadWrite);
  if (fd < 0) return ErrnoStatus("open segment", path, -fd);
  off_t end = env->Size(fd);
  if (end < 0) {
    (void)env->Close(fd);
    return ErrnoStatus("fstat", path, static_cast<int>(-end));
  }
  auto seg = std::unique_ptr<Segment>(
      new Segment(dir, base_offset, std::make_shared<SegmentFile>(fd, path, env), config, env));
  seg->size_ = static_cast<uint64_t>(end);
  return seg;
}

void Segment::ResetIndexBookkeeping() {
  next_offset_ = base_offset_;
  max_timestamp_ = -1;
  offset_of_max_timestamp_ = -1;
  bytes_since_index_entry_ = 0;
}

absl::Status Segment::OpenIndexes(uint64_t trusted_limit) {
  // A missing index file of a small segment is one never made (its first entry not reached,
  // see CreateWithSuffix): an empty index, still deferred. A larger segment missing one gets
  // the caller's rebuild, as for a damaged file.
  const bool small = size_ < 2 * static_cast<uint64_t>(index_interval_bytes_);
  auto oi = OffsetIndex::Open(PathWithSuffix(".index"), base_offset_, max_index_bytes_, env_);
  if (absl::IsNotFound(oi.status()) && small) {
    oi = OffsetIndex::Create(PathWithSuffix(".index"), base_offset_, max_index_bytes_, env_, true);
  }
  if (!oi.ok()) return oi.status();
  auto ti = TimeIndex::Open(PathWithSuffix(".timeindex"), base_offset_, max_index_bytes_, env_);
  if (absl::IsNotFound(ti.status()) && small) {
    ti =
        TimeIndex::Create(PathWithSuffix(".timeindex"), base_offset_, max_index_bytes_, env_, true);
  }
  if (!ti.ok()) return ti.status();
  offset_index_ = std::move(*oi);
  time_index_ = std::move(*ti);
  trusted_limit = std::min(trusted_limit, size_);
  if (!offset_index_->sealed()) {
    // Entries past the trusted end may describe writes that never reached the file.
    offset_index_->TruncateToPosition(static_cast<uint32_t>(trusted_limit));
  }
  // Entries can only point inside the file; anything else means the index is not ours to trust.
  if (auto last = offset_index_->last(); last && last->position >= size_ && size_ > 0) {
    return absl::DataLossError(absl::StrFormat("%s: entry position %d past log end %d",
                                               offset_index_->path(), last->position, size_));
  }
  if (absl::Status s = RecoverBookkeeping(trusted_limit); !s.ok()) return s;
  if (!time_index_->sealed()) time_index_->TruncateTo(next_offset_);
  return absl::OkStatus();
}

// Next offset and max timestamp from the last index entry below the limit: a walk of about one
// index interval, so opening (or cutting) a segment costs the same whatever its size.
absl::Status Segment::RecoverBookkeeping(uint64_t limit) {
  ResetIndexBookkeeping();
  uint64_t from = 0;
  {
    size_t lo = 0, hi = offset_index_->entries();
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (offset_index_->entry(mid).position <= limit)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo > 0) from = offset_index_->entry(lo - 1).position;
  }
  ScanResult r = ScanBatches(fd(), from, limit, /*verify_crc=*/false, base_offset_, nullptr, env_);
  if (!r.stop_reason.ok()) {
    return absl::DataLossError(absl::StrFormat("%s: log does not match its index: %s",
                                               file_->path(), r.stop_reason.message()));
  }
  if (r.next_offset >= 0) {
    next_offset_ = r.next_offset;
  } else if (from > 0) {
    return absl::DataLossError(file_->path() + ": index entry at the trusted end");
  }
  // A time entry below the end carries the max timestamp of the batches up to the one it
  // names, even when it was written past the end (the max was reached below it).
  for (size_t i = time_index_->entries(); i > 0; --i) {
    TimestampOffset e = time_index_->entry(i - 1);
    if (e.offset < next_offset_ && e.timestamp >= 0) {
      max_timestamp_ = e.timestamp;
      offset_of_max_timestamp_ = e.offset;
      break;
    }
  }
  if (r.max_timestamp > max_timestamp_) {
    max_timestamp_ = r.max_timestamp;
    offset_of_max_timestamp_ = r.offset_of_max_timestamp;
  }
  bytes_since_index_entry_ = limit - from;
  size_ = limit;
  return absl::OkStatus();
}

absl::StatusOr<ScanResult> Segment::RebuildIndexes(uint64_t limit, bool verify_crc) {
  offset_index_.reset();
  time_index_.reset();
  auto oi = OffsetIndex::Create(PathWithSuffix(".index"), base_offset_, max_index_bytes_, env_);
  if (!oi.ok()) return oi.status();
  auto ti = TimeIndex::Create(PathWithSuffix(".timeindex"), base_offset_, max_index_bytes_, env_);
  if (!ti.ok()) return ti.status();
  offset_index_ = std::move(*oi);
  time_index_ = std::move(*ti);
  ResetIndexBookkeeping();
  size_ = 0;
  ScanResult r = ScanBatches(
      fd(), 0, limit, verify_crc, base_offset_,
      [this](const BatchHeader& h, uint64_t pos) {
        OnAppend(h, pos, static_cast<uint32_t>(h.size_bytes()));
      },
      env_);
  return r;
}

ScanResult Segment::RecoverTail(uint64_t from, uint64_t limit) {
  size_ = from;
  if (!offset_index_->sealed() && !time_index_->sealed()) {
    return ScanBatches(
        fd(), from, limit, /*verify_crc=*/true, base_offset_,
        [this](const BatchHeader& h, uint64_t pos) {
          OnAppend(h, pos, static_cast<uint32_t>(h.size_bytes()));
        },
        env_);
  }
  // Sealed indexes already describe the whole segment: validate without touching them, and
  // rebuild them only if the tail turns out to be torn.
  ScanResult r = ScanBatches(
      fd(), from, limit, /*verify_crc=*/true, base_offset_,
      [this](const BatchHeader& h, uint64_t pos) {
        if (h.max_timestamp > max_timestamp_) {
          max_timestamp_ = h.max_timestamp;
          offset_of_max_timestamp_ = h.base_offset;
        }
        size_ = pos + h.size_bytes();
        next_offset_ = h.last_offset() + 1;
      },
      env_);
  if (!r.stop_reason.ok()) {
    auto rebuilt = RebuildIndexes(r.end_position, /*verify_crc=*/false);
    if (!rebuilt.ok()) r.stop_reason = rebuilt.status();
  }
  return r;
}

void Segment::OnAppend(const BatchHeader& header, uint64_t position, uint32_t size) {
  if (header.max_timestamp > max_timestamp_) {
    max_timestamp_ = header.max_timestamp;
    offset_of_max_timestamp_ = header.base_offset;
  }
  if (bytes_since_index_entry_ >= index_interval_bytes_ && position > 0) {
    // The first entry makes both index files (they exist together or not at all, unless a
    // creation failed: then the missing one is rebuilt at the next open).
    if (offset_index_->deferred()) {
      (void)time_index_->Materialize();
      index_files_created_ = true;
    }
    // A full index only costs lookup precision; rolling on indexes_full() keeps it rare.
    if (offset_index_->Append(header.base_offset, static_cast<uint32_t>(position)).ok()) {
      (void)time_index_->MaybeAppend(max_timestamp_, offset_of_max_timestamp_);
    }
    bytes_since_index_entry_ = 0;
  }
  bytes_since_index_entry_ += size;
  size_ = position + size;
  next_offset_ = header.last_offset() + 1;
}

absl::Status Segment::TruncateTo(uint64_t position, int64_t next_offset) {
  if (absl::Status s = Acquire(); !s.ok()) return s;
  if (int rc = env_->Truncate(fd(), position); rc < 0) {
    return ErrnoStatus("ftruncate", file_->path(), -rc);
  }
  offset_index_->TruncateToPosition(static_cast<uint32_t>(position));
  time_index_->TruncateTo(next_offset);
  // The max timestamp (and where it is) may have been in the bytes cut off: recomputed, or
  // OffsetForTime, MaxTimestamp, retention.ms and the time entry written at seal would still
  // see the removed batches.
  if (absl::Status s = RecoverBookkeeping(position); !s.ok()) return s;
  if (next_offset_ != next_offset) {
    return absl::DataLossError(
        absl::StrFormat("%s: the batches before position %d end at offset %d, not %d",
                        file_->path(), position, next_offset_, next_offset));
  }
  if (size_ == 0) first_append_ms_ = -1;
  return absl::OkStatus();
}

absl::Status Segment::Seal() {
  if (absl::Status s = Acquire(); !s.ok()) return s;
  if (max_timestamp_ >= 0) {
    // The last time entry must carry the segment's max timestamp (retention.ms reads it).
    (void)time_index_->MaybeAppend(max_timestamp_, offset_of_max_timestamp_);
  }
  absl::Status s = offset_index_->Seal();
  if (s.ok()) s = time_index_->Seal();
  return s;
}

absl::Status Segment::SyncIndexes() {
  if (file_ == nullptr && !sync_owed_) return absl::OkStatus();
  if (absl::Status s = Acquire(); !s.ok()) return s;
  absl::Status s = offset_index_->Sync();
  if (s.ok()) s = time_index_->Sync();
  return s;
}

absl::Status Segment::TakeUnsyncedIndexFds(std::vector<int>* fds) {
  if (file_ == nullptr && !sync_owed_) return absl::OkStatus();
  if (absl::Status s = Acquire(); !s.ok()) return s;
  for (int fd : {offset_index_->TakeUnsyncedFd(), time_index_->TakeUnsyncedFd()}) {
    if (fd >= 0) fds->push_back(fd);
  }
  return absl::OkStatus();
}

void Segment::MarkIndexesUnsynced() {
  if (file_ == nullptr) {
    sync_owed_ = true;
    return;
  }
  offset_index_->MarkUnsynced();
  time_index_->MarkUnsynced();
}

absl::Status Segment::Delete(IoBackend* io) {
  const std::string log_path = PathWithSuffix(".log");
  const std::string doomed = log_path + ".deleted";
  // The rename is the commit point: after it, start-up treats the segment as gone.
  absl::Status s = RenameFile(log_path, doomed, env_);
  if (!s.ok()) return s;
  ReleaseFiles();  // closes the indexes too; holders of file() keep reading the renamed file
  if (io == nullptr) {
    (void)RemoveFile(PathWithSuffix(".index"), env_);
    (void)RemoveFile(PathWithSuffix(".timeindex"), env_);
    return RemoveFile(doomed, env_);
  }
  for (std::string path : {PathWithSuffix(".index"), PathWithSuffix(".timeindex"), doomed}) {
    io->Unlink(path, [path](int result) {
      // A .deleted file left behind is removed by the next start; index files without
      // their .log too.
      if (result < 0 && result != -ENOENT) {
        LogWarning("removing %s: %s (the next start removes it)", path, strerror(-result));
      }
    });
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Segment::FindPosition(int64_t offset, uint64_t limit) const {
  if (offset >= next_offset_) return absl::NotFoundError("offset past segment end");
  if (absl::Status s = Acquire(); !s.ok()) return s;
  OffsetPosition start = offset_index_->Lookup(offset);
  uint64_t found = 0;
  bool hit = false;
  BlockReader reader(env_, fd(), limit, kLookupBlock);
  uint64_t pos = start.position;
  while (pos < limit) {
    auto head = reader.Get(pos, kBatchHeaderSize);
    if (!head.ok()) return head.status();
    auto h = ParseBatchHeader(*head, ClampU32(limit - pos));
    if (!h.ok()) {
      return absl::DataLossError(
          absl::StrFormat("%s: bad batch at %d: %s", file_->path(), pos, h.status().message()));
    }
    if (h->last_offset() >= offset) {
      found = pos;
      hit = true;
      break;
    }
    pos += h->size_bytes();
  }
  if (!hit) return absl::NotFoundError("offset not in the readable part of the segment");
  return found;
}

absl::StatusOr<uint64_t> Segment::FindBatchBoundaryAtOrBelow(uint64_t from, uint64_t position_limit,
                                                             uint64_t written_limit) const {
  if (absl::Status s = Acquire(); !s.ok()) return s;
  const uint64_t hard = std::min(position_limit, written_limit);
  // Start from the last index entry at or below the limit, if it is past `from`.
  uint64_t pos = from;
  size_t lo = 0, hi = offset_index_->entries();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (offset_index_->entry(mid).position <= hard)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0) pos = std::max<uint64_t>(pos, offset_index_->entry(lo - 1).position);
  BlockReader reader(env_, fd(), written_limit, kLookupBlock);
  while (pos + kBatchHeaderSize <= hard) {
    auto head = reader.Get(pos, kBatchHeaderSize);
    if (!head.ok()) return head.status();
    auto h = ParseBatchHeader(*head, ClampU32(written_limit - pos));
    if (!h.ok()) {
      return absl::DataLossError(
          absl::StrFormat("%s: bad batch at %d: %s", file_->path(), pos, h.status().message()));
    }
    if (pos + h->size_bytes() > hard) break;
    pos += h->size_bytes();
  }
  return pos;
}

absl::StatusOr<int64_t> Segment::FindOffsetForTime(int64_t timestamp, uint64_t limit) const {
  if (max_timestamp_ < timestamp) return absl::NotFoundError("segment is older");
  if (absl::Status s = Acquire(); !s.ok()) return s;
  TimestampOffset entry = time_index_->Lookup(timestamp);
  int64_t from_offset = std::max(entry.offset, base_offset_);
  uint64_t pos = offset_index_->Lookup(from_offset).position;
  BlockReader reader(env_, fd(), limit, kLookupBlock);
  while (pos < limit) {
    auto head = reader.Get(pos, kBatchHeaderSize);
    if (!head.ok()) return head.status();
    auto h = ParseBatchHeader(*head, ClampU32(limit - pos));
    if (!h.ok()) return absl::DataLossError(h.status().message());
    if (h->max_timestamp >= timestamp && h->last_offset() >= from_offset) {
      // Within an uncompressed CreateTime batch, find the exact record; otherwise the batch.
      if (static_cast<Compression>(h->attributes & 0x7) == Compression::kNone &&
          (h->attributes & 0x8) == 0) {
        auto whole = reader.Get(pos, h->size_bytes());
        if (whole.ok()) {
          auto records = DecodeRecords(*whole);
          if (records.ok()) {
            for (const RecordView& r : *records) {
              if (r.timestamp >= timestamp && r.offset >= from_offset) return r.offset;
            }
          }
        }
      }
      return std::max(h->base_offset, from_offset);
    }
    pos += h->size_bytes();
  }
  return absl::NotFoundError("no batch at or after the timestamp");
}

}  // namespace sluice::storage
