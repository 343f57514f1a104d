#include "index/mapped_index_file.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::storage {
namespace {

template <typename T>
T FromLe(T v) {
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
    if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
    if constexpr (sizeof(T) == 8) return __builtin_bswap64(v);
  }
  return v;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return FromLe(v);
}

template <typename T>
void Store(uint8_t* p, T v) {
  v = FromLe(v);  // byte swapping is its own inverse
  std::memcpy(p, &v, sizeof(v));
}

absl::Status ErrnoStatus(int err, const std::string& what, const std::string& path) {
  // Out of space is retriable, as for the log's files (log/file_util.cc): Unavailable, not
  // absl's ResourceExhausted, which the protocols read as "too large".
  if (err == ENOSPC || err == EDQUOT) {
    return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", strerror(err)));
  }
  return absl::ErrnoToStatus(err, absl::StrCat(what, " ", path));
}

// Writes all of `buf` at `offset`, continuing after short writes; 0 or -errno.
int PwriteAll(Env* env, int fd, const uint8_t* buf, size_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = env->Pwrite(fd, buf, len, offset);
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return -EIO;  // no progress possible
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

int PreadAll(Env* env, int fd, uint8_t* buf, size_t len, uint64_t offset) {
  while (len > 0) {
    ssize_t n = env->Pread(fd, buf, len, offset);
    if (n < 0) return static_cast<int>(n);
    if (n == 0) return -EIO;  // the file shrank under us
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return 0;
}

// Entry slots that fit in `max_bytes` after the header.
size_t SlotsFor(uint32_t max_bytes, uint16_t entry_size) {
  if (max_bytes < MappedIndexFile::kHeaderSize) return 0;
  return (max_bytes - MappedIndexFile::kHeaderSize) / entry_size;
}

// Every absolute offset base + u32 (and one past it) must fit in an int64.
absl::Status CheckBaseOffset(const std::string& path, int64_t base_offset) {
  constexpr int64_t kMaxBaseOffset = std::numeric_limits<int64_t>::max() - (int64_t{1} << 32);
  if (base_offset < 0 || base_offset > kMaxBaseOffset) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": base offset ", base_offset, " is outside [0, ", kMaxBaseOffset, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

uint16_t LoadLe16(const uint8_t* p) { return Load<uint16_t>(p); }
uint32_t LoadLe32(const uint8_t* p) { return Load<uint32_t>(p); }
uint64_t LoadLe64(const uint8_t* p) { return Load<uint64_t>(p); }
void StoreLe16(uint8_t* p, uint16_t v) { Store(p, v); }
void StoreLe32(uint8_t* p, uint32_t v) { Store(p, v); }
void StoreLe64(uint8_t* p, uint64_t v) { Store(p, v); }

MappedIndexFile::MappedIndexFile(std::string path, const Format& format, int64_t base_offset,
                                 Env* env, int fd)
    : path_(std::move(path)), format_(format), base_offset_(base_offset), env_(env), fd_(fd) {}

MappedIndexFile::~MappedIndexFile() {
  Unmap();
  if (fd_ >= 0) (void)env_->Close(fd_);
}

absl::Status MappedIndexFile::Map(size_t len, bool writable) {
  uint8_t* p = nullptr;
  if (int rc = env_->Map(fd_, len, writable, &p); rc < 0) return ErrnoStatus(-rc, "mmap", path_);
  Unmap();
  data_ = p;
  mapped_len_ = len;
  writable_ = writable;
  return absl::OkStatus();
}

void MappedIndexFile::Unmap() {
  if (data_ != nullptr) (void)env_->Unmap(data_, mapped_len_);
  data_ = nullptr;
  mapped_len_ = 0;
  writable_ = false;
}

absl::Status MappedIndexFile::Corrupt(const std::string& what) const {
  return absl::DataLossError(absl::StrCat(format_.kind, " ", path_, ": ", what));
}

void MappedIndexFile::BuildHeader(uint8_t* out, bool sealed, uint32_t count,
                                  uint64_t entries_checksum) const {
  std::memset(out, 0, kHeaderSize);
  StoreLe32(out + kMagicAt, format_.magic);
  StoreLe16(out + kVersionAt, kFormatVersion);
  StoreLe16(out + kEntrySizeAt, format_.entry_size);
  StoreLe64(out + kBaseOffsetAt, static_cast<uint64_t>(base_offset_));
  uint32_t flags = (sealed ? kFlagSealed : 0) | (header_flags_ & kFlagNonEmpty);
  StoreLe32(out + kFlagsAt, flags);
  StoreLe32(out + kCountAt, count);
  StoreLe64(out + kEntriesChecksumAt, entries_checksum);
  StoreLe64(out + kHeaderChecksumAt, XXH3_64bits(out, kHeaderChecksumAt));
}

void MappedIndexFile::WriteUnsealedHeader() {
  uint8_t header[kHeaderSize];
  BuildHeader(header, /*sealed=*/false, 0, 0);
  std::memcpy(data_, header, kHeaderSize);
  dirty_ = true;
}

uint64_t MappedIndexFile::EntriesChecksum(size_t n) const {
  return XXH3_64bits(data_ + kHeaderSize, n * format_.entry_size);
}

absl::StatusOr<std::unique_ptr<MappedIndexFile>> MappedIndexFile::Create(
    const std::string& path, const Format& format, int64_t base_offset, uint32_t max_bytes,
    Env* env, bool defer_file) {
  if (absl::Status s = CheckBaseOffset(path, base_offset); !s.ok()) return s;
  size_t slots = SlotsFor(max_bytes, format.entry_size);
  if (slots == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": max_bytes ", max_bytes, " holds no entry after the header"));
  }
  std::unique_ptr<MappedIndexFile> file(new MappedIndexFile(path, format, base_offset, env, -1));
  file->capacity_ = slots;
  file->deferred_ = true;
  if (!defer_file) {
    if (absl::Status s = file->Materialize(); !s.ok()) return s;
  }
  return file;
}

absl::Status MappedIndexFile::Materialize() {
  if (!deferred_) return absl::OkStatus();
  int fd = env_->Open(path_, OpenMode::kCreateTruncate);
  if (fd < 0) return ErrnoStatus(-fd, "open", path_);
  fd_ = fd;
  size_t size = kHeaderSize + capacity_ * format_.entry_size;
  absl::Status s;
  if (int rc = env_->Truncate(fd_, size); rc < 0) s = ErrnoStatus(-rc, "ftruncate", path_);
  if (s.ok()) s = Map(size, /*writable=*/true);
  if (!s.ok()) {
    // Not made: the next attempt starts over (and recovery ignores a half-made empty file).
    (void)env_->Close(fd_);
    (void)env_->Unlink(path_);
    fd_ = -1;
    return s;
  }
  deferred_ = false;
  WriteUnsealedHeader();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MappedIndexFile>> MappedIndexFile::Open(const std::string& path,
                                                                       const Format& format,
                                                                       int64_t base_offset,
                                                                       uint32_t max_bytes,
                                                                       Env* env) {
  if (absl::Status s = CheckBaseOffset(path, base_offset); !s.ok()) return s;
  int fd = env->Open(path, OpenMode::kReadWrite);
  // A read-only sealed file is still readable; an unsealed one then fails to map writable.
  if (fd == -EACCES || fd == -EROFS) fd = env->Open(path, OpenMode::kRead);
  if (fd < 0) return ErrnoStatus(-fd, "open", path);
  std::unique_ptr<MappedIndexFile> file(new MappedIndexFile(path, format, base_offset, env, fd));
  const off_t file_size = env->Size(fd);
  if (file_size < 0) return ErrnoStatus(static_cast<int>(-file_size), "fstat", path);
  uint64_t size = static_cast<uint64_t>(file_size);
  if (absl::Status s = file->ValidateHeader(size); !s.ok()) return s;
  absl::Status s = file->sealed_ ? file->OpenSealed(size) : file->OpenUnsealed(size, max_bytes);
  if (!s.ok()) return s;
  return file;
}

absl::Status MappedIndexFile::ValidateHeader(uint64_t file_size) {
  if (file_size < kHeaderSize) {
    return Corrupt(absl::StrCat("file is ", file_size, " bytes, shorter than the ", kHeaderSize,
                                "-byte header"));
  }
  uint8_t h[kHeaderSize];
  if (int rc = PreadAll(env_, fd_, h, kHeaderSize, 0); rc < 0) {
    return ErrnoStatus(-rc, "read header of", path_);
  }
  // Magic and version first: a file of another kind or version has no checksum we can trust.
  if (uint32_t magic = LoadLe32(h + kMagicAt); magic != format_.magic) {
    return Corrupt(
        absl::StrCat("bad magic 0x", absl::Hex(magic), ", want 0x", absl::Hex(format_.magic)));
  }
  if (uint16_t version = LoadLe16(h + kVersionAt); version != kFormatVersion) {
    return Corrupt(absl::StrCat("unsupported format version ", version, " (this build reads ",
                                kFormatVersion, ")"));
  }
  if (XXH3_64bits(h, kHeaderChecksumAt) != LoadLe64(h + kHeaderChecksumAt)) {
    return Corrupt("header checksum mismatch");
  }
  if (uint16_t es = LoadLe16(h + kEntrySizeAt); es != format_.entry_size) {
    return Corrupt(absl::StrCat("entry size ", es, ", want ", format_.entry_size));
  }
  if (int64_t base = static_cast<int64_t>(LoadLe64(h + kBaseOffsetAt)); base != base_offset_) {
    return Corrupt(absl::StrCat("base offset ", base, ", want ", base_offset_));
  }
  uint32_t flags = LoadLe32(h + kFlagsAt);
  if ((flags & ~kKnownFlags) != 0) {
    return Corrupt(absl::StrCat("unknown flags 0x", absl::Hex(flags)));
  }
  for (size_t i = kReservedAt; i < kHeaderChecksumAt; ++i) {
    if (h[i] != 0) return Corrupt(absl::StrCat("reserved header byte ", i, " is not zero"));
  }
  sealed_ = (flags & kFlagSealed) != 0;
  header_flags_ = flags;
  uint32_t count = LoadLe32(h + kCountAt);
  uint64_t entries_checksum = LoadLe64(h + kEntriesChecksumAt);
  if (sealed_) {
    if ((count > 0) != ((flags & kFlagNonEmpty) != 0)) {
      return Corrupt(absl::StrCat("sealed entry count ", count, " disagrees with non-empty flag"));
    }
    uint64_t want = kHeaderSize + static_cast<uint64_t>(count) * format_.entry_size;
    if (file_size != want) {
      return Corrupt(absl::StrCat("sealed with ", count, " entries (", want, " bytes) but file is ",
                                  file_size, " bytes"));
    }
    entries_ = count;
    capacity_ = count;
    sealed_checksum_ = entries_checksum;  // verified by OpenSealed once the entries are mapped
  } else if (count != 0 || entries_checksum != 0) {
    return Corrupt("unsealed header has a non-zero entry count or entries checksum");
  }
  return absl::OkStatus();
}

absl::Status MappedIndexFile::OpenSealed(uint64_t file_size) {
  if (absl::Status s = Map(file_size, /*writable=*/false); !s.ok()) return s;
  if (EntriesChecksum(entries_) != sealed_checksum_) return Corrupt("entries checksum mismatch");
  for (size_t i = 0; i < entries_; ++i) {
    if (!format_.valid_successor(i == 0 ? nullptr : entry(i - 1), entry(i))) {
      return Corrupt(absl::StrCat("entry ", i, " is out of order"));
    }
  }
  return absl::OkStatus();
}

absl::Status MappedIndexFile::OpenUnsealed(uint64_t file_size, uint32_t max_bytes) {
  size_t max_slots = SlotsFor(max_bytes, format_.entry_size);
  if (max_slots == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": max_bytes ", max_bytes, " holds no entry after the header"));
  }
  if (absl::Status s = Map(file_size, /*writable=*/true); !s.ok()) return s;
  size_t file_slots = (file_size - kHeaderSize) / format_.entry_size;
  // Entries are valid while each one may follow the previous; the first that may not (zeroed
  // tail, truncated entry, torn write) ends the list. Entry 0 counts only under the flag.
  // Only the entries and the slot after them are read: the rest of the file is never touched.
  size_t n = 0;
  if ((header_flags_ & kFlagNonEmpty) != 0) {
    while (n < file_slots && format_.valid_successor(n == 0 ? nullptr : entry(n - 1), entry(n))) {
      ++n;
    }
  }
  entries_ = n;
  size_t slots = std::max(max_slots, n);
  size_t size = kHeaderSize + slots * format_.entry_size;
  // Whatever follows the last entry must read as zeros, so that a later append cannot make
  // stale bytes look like valid successors on the next Open. Cutting the file at the end of
  // the entries and growing it back does that without reading or writing the tail: a
  // preallocated index is mostly holes, and touching its pages would fault in all of it
  // (max_index_bytes per index, for every log at every start). Durable with the next Sync.
  size_t used = kHeaderSize + n * format_.entry_size;
  Unmap();
  if (int rc = env_->Truncate(fd_, used); rc < 0) return ErrnoStatus(-rc, "ftruncate", path_);
  if (int rc = env_->Truncate(fd_, size); rc < 0) return ErrnoStatus(-rc, "ftruncate", path_);
  if (absl::Status s = Map(size, /*writable=*/true); !s.ok()) return s;
  capacity_ = slots;
  bool non_empty = n > 0;
  if (non_empty != ((header_flags_ & kFlagNonEmpty) != 0)) {
    header_flags_ = non_empty ? kFlagNonEmpty : 0;
    WriteUnsealedHeader();
  }
  return absl::OkStatus();
}

absl::Status MappedIndexFile::Append(const uint8_t* bytes) {
  if (sealed_) return absl::FailedPreconditionError(absl::StrCat(path_, " is sealed"));
  if (full()) return absl::ResourceExhaustedError(absl::StrCat(path_, " is full"));
  if (absl::Status s = Materialize(); !s.ok()) return s;
  std::memcpy(data_ + kHeaderSize + entries_ * format_.entry_size, bytes, format_.entry_size);
  ++entries_;
  dirty_ = true;
  // Entry first, flag second: a kill in between loses only this entry, never invents one.
  if ((header_flags_ & kFlagNonEmpty) == 0) {
    header_flags_ |= kFlagNonEmpty;
    WriteUnsealedHeader();
  }
  return absl::OkStatus();
}

void MappedIndexFile::TruncateTo(size_t n) {
  if (n >= entries_) return;  // a deferred index has no entries
  size_t es = format_.entry_size;
  if (!sealed_) {
    // Invalidate the first removed entry before the rest, so a kill mid-way still ends the
    // list at `n` on the next Open.
    if (n == 0) {
      header_flags_ &= ~kFlagNonEmpty;
      WriteUnsealedHeader();
    }
    uint8_t* first = data_ + kHeaderSize + n * es;
    std::memset(first, 0, es);
    std::memset(first + es, 0, (entries_ - n - 1) * es);
    entries_ = n;
    dirty_ = true;
    return;
  }
  // Sealed: the new header goes first. Until the ftruncate lands the file size disagrees with
  // the count, which Open reports as DataLoss (rebuild) rather than trusting stale entries.
  entries_ = n;
  capacity_ = n;
  header_flags_ = n > 0 ? kFlagNonEmpty : 0;
  uint8_t header[kHeaderSize];
  BuildHeader(header, /*sealed=*/true, static_cast<uint32_t>(n), EntriesChecksum(n));
  if (PwriteAll(env_, fd_, header, kHeaderSize, 0) < 0) return;
  if (env_->Truncate(fd_, kHeaderSize + n * es) < 0) return;
  (void)env_->Fdatasync(fd_);
}

absl::Status MappedIndexFile::Sync() {
  if (sealed_ || data_ == nullptr) return absl::OkStatus();  // sealing already synced
  // Nothing stored since the last sync: the checkpoint of every idle log would otherwise
  // cost an msync per index.
  if (!dirty_) return absl::OkStatus();
  if (int rc = env_->SyncMapped(data_, mapped_len_); rc < 0)
    return ErrnoStatus(-rc, "msync", path_);
  dirty_ = false;
  return absl::OkStatus();
}

absl::Status MappedIndexFile::Seal() {
  if (sealed_) return absl::OkStatus();
  // A sealed index always has its file: a segment that is no longer active is never opened
  // without one (a missing one is rebuilt).
  if (absl::Status s = Materialize(); !s.ok()) return s;
  size_t n = entries_;
  size_t used = kHeaderSize + n * format_.entry_size;
  uint64_t checksum = EntriesChecksum(n);
  if (int rc = env_->SyncMapped(data_, mapped_len_); rc < 0)
    return ErrnoStatus(-rc, "msync", path_);
  // From here on the file is shorter than the mapping: never append past the used size.
  capacity_ = n;
  if (int rc = env_->Truncate(fd_, used); rc < 0) return ErrnoStatus(-rc, "ftruncate", path_);
  uint8_t header[kHeaderSize];
  BuildHeader(header, /*sealed=*/true, static_cast<uint32_t>(n), checksum);
  if (int rc = PwriteAll(env_, fd_, header, kHeaderSize, 0); rc < 0) {
    return ErrnoStatus(-rc, "write header", path_);
  }
  if (int rc = env_->Fdatasync(fd_); rc < 0) return ErrnoStatus(-rc, "fdatasync", path_);
  sealed_ = true;
  header_flags_ |= kFlagSealed;
  // Remap read-only so a stray write faults instead of silently breaking the checksum. If
  // that fails the old mapping still serves lookups.
  return Map(used, /*writable=*/false);
}

absl::StatusOr<uint32_t> MappedIndexFile::RelativeOffsetForAppend(int64_t offset) const {
  if (sealed_) return absl::FailedPreconditionError(absl::StrCat(path_, " is sealed"));
  if (offset < base_offset_ || static_cast<uint64_t>(offset) - static_cast<uint64_t>(base_offset_) >
                                   std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": offset ", offset, " is outside [base, base + 2^32) for base ", base_offset_));
  }
  return static_cast<uint32_t>(static_cast<uint64_t>(offset) - static_cast<uint64_t>(base_offset_));
}

}  // namespace sluice::storage
