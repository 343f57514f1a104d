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
  }
  if (track) unacked_.insert(t->offset);
  if (track_bytes_) {
    ready_bytes_ -= BytesOf(t->offset);
    if (!track) bytes_.erase(t->offset);
  }
  return t;
}

bool QueueCursor::Settle(int64_t offset) {
  if (unacked_.erase(offset) == 0) return false;
  if (track_bytes_) bytes_.erase(offset);
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
  requeued_.clear();
  next_ = std::max(next_, end);
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
  if (next_ < start) next_ = start;
  requeued_.erase(requeued_.begin(), requeued_.lower_bound(start));
  if (track_bytes_) Recount();
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
