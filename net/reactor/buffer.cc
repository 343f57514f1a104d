#include "net/reactor/buffer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace sluice::net {

void InputBuffer::Consume(size_t n) {
  assert(n <= size());
  begin_ += n;
  consumed_total_ += n;
  // A cheap reset keeps the whole capacity writable, but not under a pending write: the recv
  // in flight lands at the old end, and Commit must find its bytes there.
  if (begin_ == end_ && !write_pending_) begin_ = end_ = 0;
}

absl::Span<uint8_t> InputBuffer::PrepareWrite(size_t n) {
  assert(!write_pending_);
  write_pending_ = true;
  if (begin_ == end_) begin_ = end_ = 0;  // a reset a pending write deferred
  if (capacity_ - end_ < n) {
    const size_t live = end_ - begin_;
    if (capacity_ - live >= n) {
      // Compaction is enough: move the partial frame to the front.
      std::memmove(data_.get(), data_.get() + begin_, live);
    } else {
      // Exact size, no doubling: the growth bound in the class comment depends on it.
      const size_t new_capacity = live + n;
      auto fresh = std::make_unique_for_overwrite<uint8_t[]>(new_capacity);
      if (live > 0) std::memcpy(fresh.get(), data_.get() + begin_, live);
      data_ = std::move(fresh);
      capacity_ = new_capacity;
    }
    begin_ = 0;
    end_ = live;
  }
  return {data_.get() + end_, capacity_ - end_};
}

void InputBuffer::ShrinkIfEmpty(size_t keep) {
  if (empty() && capacity_ > keep && !write_pending_) {
    data_.reset();
    capacity_ = begin_ = end_ = 0;
  }
}

FileRef::~FileRef() {
  if (fd_ >= 0 && owned_) ::close(fd_);
}

std::shared_ptr<const FileRef> FileRef::Adopt(int fd) { return std::make_shared<FileRef>(fd); }

std::shared_ptr<const FileRef> FileRef::Borrow(int fd, std::shared_ptr<const void> owner) {
  return std::make_shared<FileRef>(fd, std::move(owner));
}

absl::StatusOr<std::shared_ptr<const FileRef>> FileRef::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path));
  return Adopt(fd);
}

SharedBytes SharedBytes::FromString(std::string bytes) {
  auto owner = std::make_shared<const std::string>(std::move(bytes));
  SharedBytes out;
  out.data = reinterpret_cast<const uint8_t*>(owner->data());
  out.size = owner->size();
  out.owner = std::move(owner);
  return out;
}

uint64_t OutputChunk::size() const {
  switch (v_.index()) {
    case 0:
      return std::get<0>(v_).size();
    case 1:
      return std::get<1>(v_).size();
    case 2:
      return std::get<2>(v_).size;
    default:
      return std::get<3>(v_).length;
  }
}

absl::Span<const uint8_t> OutputChunk::bytes() const {
  switch (v_.index()) {
    case 0: {
      const std::string& s = std::get<0>(v_);
      return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
    }
    case 1:
      return std::get<1>(v_);
    case 2:
      return {std::get<2>(v_).data, std::get<2>(v_).size};
    default:
      return {};
  }
}

}  // namespace sluice::net
