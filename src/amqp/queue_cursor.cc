#include "src/amqp/queue_cursor.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "log/crc32c.h"
#include "net/amqp/wire.h"

namespace sluice::amqp {

std::optional<QueueCursor::Taken> QueueCursor::Peek(int64_t end) const {
  if (!requeued_.empty()) return Taken{*requeued_.begin(), true};
  if (next_ < end) return Taken{next_, false};
  return std::nullopt;
}

std::optional<QueueCursor::Taken> QueueCursor::Take(int64_t end, bool track) {
  std::optional<Taken> t = Peek(end);
  if (!t) return t;
  if (t->redelivered) {
    requeued_.erase(requeued_.begin());
  } else {
    ++next_;
    NoteChanged();
  }
  if (track) {
    unacked_.insert(t->offset);
  } else {
    NoteSettled(t->offset, t->offset + 1);
  }
  if (track_bytes_) {
    ready_bytes_ -= BytesOf(t->offset);
    if (!track) bytes_.erase(t->offset);
  }
  return t;
}

bool QueueCursor::Settle(int64_t offset) {
  if (unacked_.erase(offset) == 0) return false;
  if (track_bytes_) bytes_.erase(offset);
  NoteSettled(offset, offset + 1);
  return true;
}

bool QueueCursor::Requeue(int64_t offset) {
  if (unacked_.erase(offset) == 0) return false;
  requeued_.insert(offset);
  if (track_bytes_) ready_bytes_ += BytesOf(offset);
  return true;
}

int64_t QueueCursor::Purge(int64_t end) {
  int64_t n = static_cast<int64_t>(requeued_.size()) + std::max<int64_t>(0, end - next_);
  for (int64_t o : requeued_) NoteSettled(o, o + 1);
  requeued_.clear();
  if (end > next_) {
    NoteSettled(next_, end);
    next_ = end;
  }
  if (track_bytes_) Recount();
  return n;
}

uint64_t QueueCursor::BytesOf(int64_t offset) const {
  auto it = bytes_.find(offset);
  return it == bytes_.end() ? 0 : it->second;
}

void QueueCursor::NoteBytes(int64_t offset, uint64_t bytes) {
  if (!track_bytes_ || bytes_.contains(offset)) return;
  bool ready = IsReady(offset);
  if (!ready && !unacked_.contains(offset)) return;  // settled
  bytes_[offset] = bytes;
  if (ready) ready_bytes_ += bytes;
}

void QueueCursor::Recount() {
  ready_bytes_ = 0;
  for (auto it = bytes_.begin(); it != bytes_.end();) {
    if (IsReady(it->first)) {
      ready_bytes_ += it->second;
    } else if (!unacked_.contains(it->first)) {
      it = bytes_.erase(it);
      continue;
    }
    ++it;
  }
}

int64_t QueueCursor::ReadyCount(int64_t end) const {
  return static_cast<int64_t>(requeued_.size()) + std::max<int64_t>(0, end - next_);
}

int64_t QueueCursor::Watermark() const {
  int64_t w = next_;
  if (!unacked_.empty()) w = std::min(w, *unacked_.begin());
  if (!requeued_.empty()) w = std::min(w, *requeued_.begin());
  return w;
}

void QueueCursor::SkipTo(int64_t start) {
  if (next_ < start) {
    NoteSettled(next_, start);
    next_ = start;
  }
  auto dropped_end = requeued_.lower_bound(start);
  for (auto it = requeued_.begin(); it != dropped_end; ++it) NoteSettled(*it, *it + 1);
  requeued_.erase(requeued_.begin(), dropped_end);
  if (track_bytes_) Recount();
}

void QueueCursor::NoteSettled(int64_t first, int64_t last) {
  if (!record_deltas_) return;
  delta_dirty_ = true;
  if (delta_overflow_) return;
  if (!settled_log_.empty() && settled_log_.back().second == first) {
    settled_log_.back().second = last;
    return;
  }
  // A full record replaces the ranges once they would cost more than it.
  constexpr size_t kMaxRanges = 1 << 16;
  if (settled_log_.size() >= kMaxRanges) {
    delta_overflow_ = true;
    settled_log_.clear();
    settled_log_.shrink_to_fit();
    return;
  }
  settled_log_.emplace_back(first, last);
}

QueueCursor::Delta QueueCursor::TakeDelta() {
  Delta d;
  d.next = next_;
  d.overflow = delta_overflow_;
  std::sort(settled_log_.begin(), settled_log_.end());
  for (const auto& r : settled_log_) {
    if (!d.settled.empty() && r.first <= d.settled.back().second) {
      d.settled.back().second = std::max(d.settled.back().second, r.second);
    } else {
      d.settled.push_back(r);
    }
  }
  settled_log_.clear();
  delta_dirty_ = false;
  delta_overflow_ = false;
  return d;
}

absl::Status QueueCursor::ApplyDelta(const Delta& delta) {
  if (delta.next < next_) return absl::InvalidArgumentError("cursor delta: next moves back");
  int64_t prev_end = -1;
  for (const auto& [first, last] : delta.settled) {
    if (first < 0 || first >= last || last > delta.next || first < prev_end) {
      return absl::InvalidArgumentError("cursor delta: bad settled range");
    }
    prev_end = last;
  }
  // As after Decode: whatever was outstanding is requeued.
  requeued_.insert(unacked_.begin(), unacked_.end());
  unacked_.clear();
  // Offsets delivered since (outstanding unless a settled range covers them).
  auto range = delta.settled.begin();
  for (int64_t o = next_; o < delta.next;) {
    while (range != delta.settled.end() && range->second <= o) ++range;
    if (range != delta.settled.end() && range->first <= o) {
      o = range->second;
      continue;
    }
    int64_t stop = range != delta.settled.end() ? std::min(range->first, delta.next) : delta.next;
    for (; o < stop; ++o) requeued_.insert(requeued_.end(), o);
  }
  for (const auto& [first, last] : delta.settled) {
    requeued_.erase(requeued_.lower_bound(first), requeued_.lower_bound(last));
  }
  next_ = delta.next;
  if (track_bytes_) Recount();
  return absl::OkStatus();
}

namespace {
constexpr std::string_view kMagic = "SLQC";
constexpr uint8_t kVersion = 1;
}  // namespace

std::string QueueCursor::Encode() const {
  std::string out(kMagic);
  WireWriter w(&out);
  w.Octet(kVersion);
  w.LongLong(static_cast<uint64_t>(next_));
  std::set<int64_t> outstanding = unacked_;
  outstanding.insert(requeued_.begin(), requeued_.end());
  w.Long(static_cast<uint32_t>(outstanding.size()));
  for (int64_t o : outstanding) w.LongLong(static_cast<uint64_t>(o));
  w.Long(storage::Crc32c(0, out.data(), out.size()));
  return out;
}

absl::StatusOr<QueueCursor> QueueCursor::Decode(std::string_view bytes) {
  if (bytes.size() < kMagic.size() + 1 + 8 + 4 + 4 || bytes.substr(0, 4) != kMagic) {
    return absl::DataLossError("queue cursor: bad header");
  }
  std::string_view body = bytes.substr(0, bytes.size() - 4);
  WireReader crc_reader(bytes.substr(bytes.size() - 4));
  if (crc_reader.Long() != storage::Crc32c(0, body.data(), body.size())) {
    return absl::DataLossError("queue cursor: checksum mismatch");
  }
  WireReader r(body.substr(kMagic.size()));
  if (r.Octet() != kVersion) return absl::DataLossError("queue cursor: unknown version");
  QueueCursor c;
  c.next_ = static_cast<int64_t>(r.LongLong());
  uint32_t n = r.Long();
  if (!r.ok() || r.remaining() != uint64_t{n} * 8 || c.next_ < 0) {
    return absl::DataLossError("queue cursor: truncated");
  }
  for (uint32_t i = 0; i < n; ++i) {
    int64_t o = static_cast<int64_t>(r.LongLong());
    if (o < 0 || o >= c.next_) return absl::DataLossError("queue cursor: offset out of range");
    c.requeued_.insert(o);
  }
  return c;
}

}  // namespace sluice::amqp
