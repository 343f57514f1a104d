#include "src/kafka/responder.h"

namespace sluice::broker {

void ResponseQueue::Complete(uint64_t seq, std::vector<net::OutputChunk> chunks) {
  if (seq < first_seq_ || seq - first_seq_ >= slots_.size()) return;
  Slot& slot = slots_[seq - first_seq_];
  slot.ready = true;
  slot.chunks = std::move(chunks);
  if (closed_) return;
  for (const net::OutputChunk& c : slot.chunks) {
    if (c.is_file()) {
      ++slot.file_ranges;
    } else {
      slot.bytes += c.size();
    }
  }
  held_bytes_ += slot.bytes;
  held_file_ranges_ += slot.file_ranges;
  bool sent = false;
  while (!slots_.empty() && slots_.front().ready) {
    Slot& front = slots_.front();
    held_bytes_ -= front.bytes;
    held_file_ranges_ -= front.file_ranges;
    for (auto& c : front.chunks) {
      if (closed_) break;  // a Send closed the connection (OnClose ran)
      conn_->Send(std::move(c));
    }
    slots_.pop_front();
    ++first_seq_;
    sent = true;
    if (closed_) return;
  }
  if (sent) RoomMayHaveGrown();
}

void ResponseQueue::MarkClosed() {
  closed_ = true;
  conn_ = nullptr;
  on_room_ = nullptr;
  // A waiting fetch is owned by its waiter (or also by its broker until its deadline): let go.
  room_waiters_.clear();
}

uint64_t ResponseQueue::charged_bytes() const {
  return unsent_bytes() + held_bytes_ + reserved_bytes_;
}

size_t ResponseQueue::charged_file_ranges() const {
  return unsent_file_ranges() + held_file_ranges_ + reserved_file_ranges_;
}

bool ResponseQueue::Full() const {
  return charged_bytes() > limits_.max_bytes || charged_file_ranges() > limits_.max_file_ranges ||
         outstanding() >= limits_.max_outstanding;
}

bool ResponseQueue::BelowHalf() const {
  return charged_bytes() <= limits_.max_bytes / 2 &&
         charged_file_ranges() <= limits_.max_file_ranges / 2 &&
         outstanding() < limits_.max_outstanding / 2;
}

ResponseQueue::Reservation::~Reservation() {
  if (!queue_) return;
  queue_->reserved_bytes_ -= bytes_;
  queue_->reserved_file_ranges_ -= file_ranges_;
  // The response is queued by now (or was not built): its own charge replaced this one, or
  // there is room again.
  queue_->RoomMayHaveGrown();
}

bool ResponseQueue::HasRoomFor(uint64_t seq, uint64_t bytes, size_t file_ranges) const {
  if (closed_) return true;  // nothing will be sent; the caller stops
  const bool fits = charged_bytes() + bytes <= limits_.max_bytes &&
                    charged_file_ranges() + file_ranges <= limits_.max_file_ranges;
  // The front is never held up by what waits behind it, only by output the client has not
  // read yet. Without this a response larger than the limit could never be built.
  const bool front_may_go = is_front(seq) && unsent_bytes() <= limits_.max_bytes &&
                            unsent_file_ranges() <= limits_.max_file_ranges;
  return fits || front_may_go;
}

std::optional<ResponseQueue::Reservation> ResponseQueue::TryReserve(
    const std::shared_ptr<ResponseQueue>& queue, uint64_t seq, uint64_t bytes, size_t file_ranges) {
  if (!queue || !queue->HasRoomFor(seq, bytes, file_ranges)) return std::nullopt;
  ResponseQueue& q = *queue;
  q.reserved_bytes_ += bytes;
  q.reserved_file_ranges_ += file_ranges;
  return Reservation(queue, bytes, file_ranges);
}

void ResponseQueue::WaitForRoom(absl::AnyInvocable<void()> retry) {
  if (closed_) return;
  room_waiters_.push_back(std::move(retry));
  WatchOutput();
}

void ResponseQueue::WatchOutput() {
  if (conn_ == nullptr) return;
  const uint64_t half_bytes = limits_.max_bytes / 2;
  const size_t half_ranges = limits_.max_file_ranges / 2;
  if (unsent_bytes() > half_bytes || unsent_file_ranges() > half_ranges) {
    conn_->NotifyWhenOutputBelow(half_bytes, half_ranges);
  }
}

void ResponseQueue::RoomMayHaveGrown() {
  if (closed_) return;
  if (!room_waiters_.empty() && !waiters_posted_) {
    // From a task: this runs inside sends and answers (a waiter building its response here
    // would re-enter the queue).
    waiters_posted_ = true;
    reactor_->Post([weak = weak_from_this()] {
      std::shared_ptr<ResponseQueue> q = weak.lock();
      if (!q) return;
      q->waiters_posted_ = false;
      // Each retries once; one that still finds no room waits again.
      std::vector<absl::AnyInvocable<void()>> waiters;
      waiters.swap(q->room_waiters_);
      for (auto& w : waiters) {
        if (q->closed_) return;
        w();
      }
    });
  }
  if (on_room_) on_room_();
}

std::vector<net::OutputChunk> FrameToChunks(kafka::EncodedFrame frame,
                                            const std::vector<storage::FileSlice>& slices) {
  std::vector<net::OutputChunk> out;
  if (frame.externals.empty()) {
    out.emplace_back(std::move(frame.owned));
    return out;
  }
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(frame.owned));
  size_t pos = 0;
  for (const kafka::EncodedFrame::External& e : frame.externals) {
    if (e.position > pos) {
      out.emplace_back(net::SharedBytes{owned, owned->data() + pos, e.position - pos});
      pos = e.position;
    }
    const storage::FileSlice& slice = slices[e.token];
    // The range keeps the shared segment file open (through retention deleting the segment,
    // or a compaction swapping it) until it is sent: no descriptor of its own.
    out.emplace_back(net::FileRange{net::FileRef::Borrow(slice.file->fd(), slice.file),
                                    slice.position, e.length});
  }
  if (pos < owned->size()) {
    out.emplace_back(net::SharedBytes{owned, owned->data() + pos, owned->size() - pos});
  }
  return out;
}

}  // namespace sluice::broker
