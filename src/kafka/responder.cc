#include "src/kafka/responder.h"

#include <unistd.h>

namespace sluice::broker {

void ResponseQueue::Complete(uint64_t seq, std::vector<net::OutputChunk> chunks) {
  if (seq < first_seq_ || seq - first_seq_ >= slots_.size()) return;
  Slot& slot = slots_[seq - first_seq_];
  slot.ready = true;
  slot.chunks = std::move(chunks);
  if (closed_) return;
  net::Connection* conn = reactor_->FindConnection(id_);
  bool sent = false;
  while (!slots_.empty() && slots_.front().ready) {
    if (conn) {
      for (auto& c : slots_.front().chunks) conn->Send(std::move(c));
    }
    slots_.pop_front();
    ++first_seq_;
    sent = true;
  }
  if (sent && on_drained_) on_drained_();
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
    // The connection closes its FileRef when the range is sent; a dup keeps the segment's
    // own fd independent of that (and of retention deleting the segment meanwhile).
    int fd = dup(slice.file->fd());
    if (fd >= 0) {
      out.emplace_back(net::FileRange{net::FileRef::Adopt(fd), slice.position, e.length});
    } else {
      auto bytes = storage::PartitionLog::ReadBytes(slice);
      std::vector<uint8_t> b = bytes.ok() ? std::move(*bytes) : std::vector<uint8_t>();
      b.resize(e.length);  // keeps the frame length honest even if the read came up short
      out.emplace_back(std::move(b));
    }
  }
  if (pos < owned->size()) {
    out.emplace_back(net::SharedBytes{owned, owned->data() + pos, owned->size() - pos});
  }
  return out;
}

}  // namespace sluice::broker
