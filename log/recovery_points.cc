#include "log/recovery_points.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "log/file_util.h"
#include "log/logging.h"
#include "log/partition_log.h"

namespace sluice::storage {

namespace {

constexpr char kPrefix[] = "recovery-points.";
constexpr uint32_t kFrameMagic = 0x50524c53;  // "SLRP" little-endian
constexpr uint16_t kFrameVersion = 1;
constexpr size_t kFrameHeader = 32;
constexpr size_t kMaxPayload = size_t{1} << 30;
constexpr size_t kMaxName = 4096;
constexpr uint8_t kKindPoint = 1;
constexpr uint8_t kKindRemoval = 2;
constexpr uint8_t kFlagClean = 1;
constexpr size_t kPointBytes = 32;
// Appends go on until they outgrow the last snapshot (and this much at least): the rewrite
// of every point then costs no more than the appends since, so a round's cost follows the
// logs it checkpoints, not the logs the shard holds.
constexpr size_t kMinAppendedBeforeRewrite = 1 << 20;

template <typename T>
void Put(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  memcpy(out.data() + at, &v, sizeof(T));  // little-endian hosts only, as log/FORMAT.md says
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  memcpy(&v, p, sizeof(T));
  return v;
}

uint64_t FrameChecksum(const uint8_t* header, std::span<const uint8_t> payload) {
  return XXH3_64bits_withSeed(payload.data(), payload.size(), XXH3_64bits(header, 24));
}

void EncodeRecord(const std::string& name, const std::optional<RecoveryPoint>& point,
                  std::vector<uint8_t>& out) {
  Put<uint16_t>(out, static_cast<uint16_t>(name.size()));
  Put<uint8_t>(out, point ? kKindPoint : kKindRemoval);
  Put<uint8_t>(out, point && point->clean ? kFlagClean : 0);
  out.insert(out.end(), name.begin(), name.end());
  if (point) {
    Put<int64_t>(out, point->cp.recovery_offset);
    Put<int64_t>(out, point->cp.segment_base);
    Put<uint64_t>(out, point->cp.position);
    Put<int64_t>(out, point->cp.log_start_offset);
  }
}

// Header first (checksum filled in last), then the records.
std::vector<uint8_t> StartFrame(uint64_t generation) {
  std::vector<uint8_t> f;
  f.reserve(4096);
  Put<uint32_t>(f, kFrameMagic);
  Put<uint16_t>(f, kFrameVersion);
  Put<uint16_t>(f, 0);
  Put<uint32_t>(f, 0);  // payload length
  Put<uint32_t>(f, 0);  // records
  Put<uint64_t>(f, generation);
  Put<uint64_t>(f, 0);  // checksum
  return f;
}

void FinishFrame(std::vector<uint8_t>& f, uint32_t records) {
  const uint32_t payload = static_cast<uint32_t>(f.size() - kFrameHeader);
  memcpy(f.data() + 8, &payload, 4);
  memcpy(f.data() + 12, &records, 4);
  const uint64_t sum =
      FrameChecksum(f.data(), std::span<const uint8_t>(f.data() + kFrameHeader, payload));
  memcpy(f.data() + 24, &sum, 8);
}

// Applies the records of one checksummed payload; false (nothing applied) if any is malformed.
bool ApplyPayload(std::span<const uint8_t> p, uint32_t records,
                  absl::flat_hash_map<std::string, RecoveryPoint>& points) {
  std::vector<std::pair<std::string, std::optional<RecoveryPoint>>> decoded;
  size_t at = 0;
  for (uint32_t i = 0; i < records; ++i) {
    if (p.size() - at < 4) return false;
    const uint16_t len = Get<uint16_t>(p.data() + at);
    const uint8_t kind = p[at + 2];
    const uint8_t flags = p[at + 3];
    at += 4;
    if (len == 0 || len > kMaxName || p.size() - at < len) return false;
    std::string name(reinterpret_cast<const char*>(p.data() + at), len);
    at += len;
    if (kind == kKindRemoval) {
      if (flags != 0) return false;
      decoded.emplace_back(std::move(name), std::nullopt);
      continue;
    }
    if (kind != kKindPoint || (flags & ~kFlagClean) != 0 || p.size() - at < kPointBytes) {
      return false;
    }
    RecoveryPoint point;
    point.clean = (flags & kFlagClean) != 0;
    point.cp.recovery_offset = Get<int64_t>(p.data() + at);
    point.cp.segment_base = Get<int64_t>(p.data() + at + 8);
    point.cp.position = Get<uint64_t>(p.data() + at + 16);
    point.cp.log_start_offset = Get<int64_t>(p.data() + at + 24);
    at += kPointBytes;
    if (!Consistent(point.cp)) return false;
    decoded.emplace_back(std::move(name), point);
  }
  if (at != p.size()) return false;
  for (auto& [name, point] : decoded) {
    if (point) {
      points[name] = *point;
    } else {
      points.erase(name);
    }
  }
  return true;
}

}  // namespace

std::string RecoveryPointFileName(int index) { return absl::StrCat(kPrefix, index); }

bool ParseRecoveryPointFileName(const std::string& name, int* index) {
  if (name.rfind(kPrefix, 0) != 0) return false;
  const std::string digits = name.substr(strlen(kPrefix));
  if (digits.empty() || digits.size() > 6 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return absl::SimpleAtoi(digits, index);
}

ParsedRecoveryPoints ParseRecoveryPoints(std::span<const uint8_t> bytes) {
  ParsedRecoveryPoints out;
  size_t at = 0;
  bool first = true;
  while (at < bytes.size()) {
    const uint8_t* h = bytes.data() + at;
    if (bytes.size() - at < kFrameHeader) {
      out.stop_reason =
          absl::StrFormat("%d bytes at %d, less than a frame header", bytes.size() - at, at);
      break;
    }
    const uint32_t payload = Get<uint32_t>(h + 8);
    if (Get<uint32_t>(h) != kFrameMagic || Get<uint16_t>(h + 4) != kFrameVersion ||
        Get<uint16_t>(h + 6) != 0 || payload > kMaxPayload ||
        bytes.size() - at - kFrameHeader < payload) {
      out.stop_reason = absl::StrFormat("no whole frame at %d", at);
      break;
    }
    std::span<const uint8_t> p(h + kFrameHeader, payload);
    const uint64_t generation = Get<uint64_t>(h + 16);
    if (Get<uint64_t>(h + 24) != FrameChecksum(h, p)) {
      out.stop_reason = absl::StrFormat("checksum mismatch in the frame at %d", at);
      break;
    }
    if (!first && generation != out.generation) {
      out.stop_reason = absl::StrFormat("frame at %d is of generation %d, not %d", at, generation,
                                        out.generation);
      break;
    }
    if (!ApplyPayload(p, Get<uint32_t>(h + 12), out.points)) {
      out.stop_reason = absl::StrFormat("malformed record in the frame at %d", at);
      break;
    }
    out.generation = generation;
    first = false;
    at += kFrameHeader + payload;
    out.valid_bytes = at;
  }
  return out;
}

absl::StatusOr<RecoveryPointFiles> ReadRecoveryPointFiles(const std::string& data_dir, Env* env) {
  RecoveryPointFiles out;
  if (!FileExists(data_dir, env)) return out;  // a first start
  auto names = ListDir(data_dir, env);
  if (!names.ok()) return names.status();
  absl::flat_hash_map<std::string, uint64_t> from_generation;
  for (const std::string& name : *names) {
    int index;
    if (!ParseRecoveryPointFileName(name, &index)) continue;
    const std::string path = absl::StrCat(data_dir, "/", name);
    auto bytes = ReadWholeFile(path, env);
    if (!bytes.ok()) return bytes.status();
    ParsedRecoveryPoints parsed = ParseRecoveryPoints(*bytes);
    if (!parsed.stop_reason.empty()) {
      // A torn last append is expected after a crash; the frames before it stand.
      LogWarning("storage: %s: %s; using the %d bytes before it (older checkpoints)", path,
                 parsed.stop_reason, parsed.valid_bytes);
    }
    out.generation = std::max(out.generation, parsed.generation);
    for (auto& [log, point] : parsed.points) {
      auto [it, inserted] = from_generation.emplace(log, parsed.generation);
      if (!inserted && it->second >= parsed.generation) continue;
      it->second = parsed.generation;
      out.points[log] = point;
    }
  }
  return out;
}

absl::Status RemoveUnusedRecoveryPointFiles(const std::string& data_dir, int shard_count,
                                            Env* env) {
  auto names = ListDir(data_dir, env);
  if (!names.ok()) return names.status();
  bool removed = false;
  for (const std::string& name : *names) {
    int index;
    const bool temp = name.rfind(kPrefix, 0) == 0 && name.ends_with(".tmp");
    if (!temp && !(ParseRecoveryPointFileName(name, &index) && index >= shard_count)) continue;
    if (absl::Status s = RemoveFile(absl::StrCat(data_dir, "/", name), env); !s.ok()) return s;
    removed = true;
  }
  return removed ? SyncDir(data_dir, env) : absl::OkStatus();
}

RecoveryPointStore::RecoveryPointStore(std::string data_dir, int index, uint64_t generation,
                                       Env* env)
    : data_dir_(std::move(data_dir)),
      path_(absl::StrCat(data_dir_, "/", RecoveryPointFileName(index))),
      generation_(generation),
      env_(env) {}

RecoveryPointStore::~RecoveryPointStore() {
  *alive_ = false;
  CloseFile();
}

void RecoveryPointStore::CloseFile() {
  if (fd_ >= 0) (void)env_->Close(fd_);
  fd_ = -1;
}

void RecoveryPointStore::Stage(const std::string& name, const RecoveryPoint& point,
                               PartitionLog* owner) {
  // Longer names cannot be read back (topic names stop at 249 bytes): such a log goes
  // without a point, and a crash re-validates it whole.
  if (name.empty() || name.size() > kMaxName) return;
  Staged& s = staged_[name];
  s.point = point;
  s.owner = owner;
}

void RecoveryPointStore::Remove(const std::string& name) {
  auto flying = in_flight_.find(name);
  if (flying != in_flight_.end()) flying->second.owner = nullptr;
  if (!live_.contains(name) && flying == in_flight_.end()) {
    staged_.erase(name);  // nothing on disk to remove
    return;
  }
  Staged& s = staged_[name];
  s.point.reset();
  s.owner = nullptr;
}

bool RecoveryPointStore::removal_staged(const std::string& name) const {
  for (const auto* records : {&staged_, &in_flight_}) {
    auto it = records->find(name);
    if (it != records->end() && !it->second.point.has_value()) return true;
  }
  return false;
}

absl::Status RecoveryPointStore::Commit(bool rewrite, IoBackend* io) {
  // The file's end and the live points are the in-flight commit's until it completes.
  for (int i = 0; commit_in_flight() && io != nullptr && i < 6000; ++i) {
    io->Poll(absl::Milliseconds(10));
  }
  if (commit_in_flight()) return absl::UnavailableError(path_ + ": a commit is still in flight");
  if (staged_.empty() && !rewrite) return absl::OkStatus();
  absl::Status status;
  if (!rewrite && !RewriteDue()) {
    // The common round: its cost follows the staged records, not the points held.
    status = Append(StagedFrame());
    if (status.ok()) Apply(staged_, nullptr);
  } else {
    // The rewrite encodes live_ with the staged records applied; undone if it fails.
    std::vector<std::pair<std::string, std::optional<RecoveryPoint>>> undo;
    Apply(staged_, &undo);
    status = Rewrite();
    if (!status.ok()) {
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
        if (it->second) {
          live_[it->first] = *it->second;
        } else {
          live_.erase(it->first);
        }
      }
    }
  }
  if (!status.ok()) return status;
  ++commits_;
  // Owners learn last: a callback may stage again (it does not today).
  absl::flat_hash_map<std::string, Staged> done;
  done.swap(staged_);
  NotifyOwners(done);
  return absl::OkStatus();
}

bool RecoveryPointStore::RewriteDue() const {
  return must_rewrite_ ||
         file_bytes_ - snapshot_bytes_ >= std::max(snapshot_bytes_, kMinAppendedBeforeRewrite);
}

std::vector<uint8_t> RecoveryPointStore::StagedFrame() const {
  std::vector<uint8_t> frame = StartFrame(generation_);
  for (const auto& [name, st] : staged_) EncodeRecord(name, st.point, frame);
  FinishFrame(frame, static_cast<uint32_t>(staged_.size()));
  return frame;
}

void RecoveryPointStore::NotifyOwners(const absl::flat_hash_map<std::string, Staged>& records) {
  for (const auto& [name, s] : records) {
    if (s.owner != nullptr && s.point) s.owner->CheckpointCommitted(s.point->cp);
  }
}

void RecoveryPointStore::CommitThrough(IoBackend& io, absl::AnyInvocable<void(absl::Status)> done) {
  if (staged_.empty()) {
    done(absl::OkStatus());
    return;
  }
  if (RewriteDue() || fd_ < 0) {
    done(Commit());
    return;
  }
  in_flight_frame_ = StagedFrame();
  in_flight_.swap(staged_);
  io.Write(fd_, in_flight_frame_.data(), static_cast<uint32_t>(in_flight_frame_.size()),
           file_bytes_, [this, alive = alive_, &io, done = std::move(done)](int result) mutable {
             if (*alive) InFlightDone(io, 0, result, std::move(done));
           });
  io.Submit();
}

void RecoveryPointStore::InFlightDone(IoBackend& io, int step, int result,
                                      absl::AnyInvocable<void(absl::Status)> done) {
  if (result >= 0 && step == 0) {
    io.Sync(fd_, [this, alive = alive_, &io, done = std::move(done)](int r) mutable {
      if (*alive) InFlightDone(io, 1, r, std::move(done));
    });
    io.Submit();
    return;
  }
  absl::flat_hash_map<std::string, Staged> records;
  records.swap(in_flight_);
  if (result < 0) {
    // What the failed write left past file_bytes_ is unknown: the next commit rewrites. The
    // records go back to the staged ones, behind any staged since for the same log.
    must_rewrite_ = true;
    for (auto& [name, st] : records) staged_.try_emplace(name, std::move(st));
    done(ErrnoStatus(step == 0 ? "write" : "fdatasync", path_, -result));
    return;
  }
  file_bytes_ += in_flight_frame_.size();
  Apply(records, nullptr);
  ++commits_;
  NotifyOwners(records);
  done(absl::OkStatus());
}

void RecoveryPointStore::Apply(
    const absl::flat_hash_map<std::string, Staged>& records,
    std::vector<std::pair<std::string, std::optional<RecoveryPoint>>>* undo) {
  for (const auto& [name, s] : records) {
    auto it = live_.find(name);
    if (undo != nullptr) {
      undo->emplace_back(
          name, it == live_.end() ? std::nullopt : std::optional<RecoveryPoint>(it->second));
    }
    if (s.point) {
      live_[name] = *s.point;
    } else if (it != live_.end()) {
      live_.erase(it);
    }
  }
}

absl::Status RecoveryPointStore::Append(const std::vector<uint8_t>& frame) {
  absl::Status s = PwriteFully(fd_, frame.data(), frame.size(), file_bytes_, path_, env_);
  if (s.ok()) {
    if (int rc = env_->Fdatasync(fd_); rc < 0) s = ErrnoStatus("fdatasync", path_, -rc);
  }
  if (!s.ok()) {
    // What the failed write left past file_bytes_ is unknown: the next commit rewrites.
    must_rewrite_ = true;
    return s;
  }
  file_bytes_ += frame.size();
  return absl::OkStatus();
}

absl::Status RecoveryPointStore::Rewrite() {
  std::vector<uint8_t> frame = StartFrame(generation_);
  // Sorted, so that the file's bytes do not depend on hash order (tests and diffs).
  std::vector<const std::pair<const std::string, RecoveryPoint>*> sorted;
  sorted.reserve(live_.size());
  for (const auto& entry : live_) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* entry : sorted) EncodeRecord(entry->first, entry->second, frame);
  FinishFrame(frame, static_cast<uint32_t>(sorted.size()));
  CloseFile();
  must_rewrite_ = true;
  if (absl::Status s = WriteFileAtomically(path_, frame, env_); !s.ok()) return s;
  const int fd = env_->Open(path_, OpenMode::kReadWrite);
  if (fd < 0) return ErrnoStatus("open", path_, -fd);
  fd_ = fd;
  file_bytes_ = snapshot_bytes_ = frame.size();
  must_rewrite_ = false;
  ++rewrites_;
  return absl::OkStatus();
}

}  // namespace sluice::storage
