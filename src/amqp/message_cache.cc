#include "src/amqp/message_cache.h"

namespace sluice::broker {

std::shared_ptr<const AmqpMessage> MessageCache::Find(int64_t offset) const {
  auto it = entries_.find(offset);
  return it == entries_.end() ? nullptr : it->second.message;
}

bool MessageCache::Insert(int64_t offset, std::shared_ptr<const AmqpMessage> message, size_t bytes,
                          size_t own_limit) {
  if (entries_.contains(offset)) return true;
  if (bytes_ + bytes > own_limit) return false;
  if (!budget_->MakeRoom(this, bytes)) return false;
  entries_.emplace(offset, Entry{std::move(message), bytes});
  SetBytes(bytes_ + bytes);
  return true;
}

void MessageCache::Erase(int64_t offset) {
  auto it = entries_.find(offset);
  if (it == entries_.end()) return;
  const size_t bytes = it->second.bytes;
  entries_.erase(it);
  SetBytes(bytes_ - bytes);
}

void MessageCache::EraseBelow(int64_t offset) {
  auto end = entries_.lower_bound(offset);
  if (end == entries_.begin()) return;
  size_t freed = 0;
  for (auto it = entries_.begin(); it != end; ++it) freed += it->second.bytes;
  entries_.erase(entries_.begin(), end);
  SetBytes(bytes_ - freed);
}

void MessageCache::EvictNewest() {
  auto last = std::prev(entries_.end());
  const size_t bytes = last->second.bytes;
  entries_.erase(last);
  SetBytes(bytes_ - bytes);
}

void MessageCache::SetBytes(size_t bytes) {
  if (bytes == bytes_) return;
  const size_t before = bytes_;
  bytes_ = bytes;
  budget_->Resized(this, before, bytes);
}

bool MessageCacheBudget::MakeRoom(const MessageCache* requester, size_t bytes) {
  if (bytes > limit_) return false;
  while (used_ + bytes > limit_) {
    // by_size_ is not empty here: used_ > 0.
    MessageCache* largest = by_size_.rbegin()->second;
    if (largest == requester || largest->bytes() <= requester->bytes() + bytes) return false;
    largest->EvictNewest();
    ++evictions_;
  }
  return true;
}

void MessageCacheBudget::Resized(MessageCache* cache, size_t before, size_t after) {
  if (before > 0) by_size_.erase({before, cache});
  if (after > 0) by_size_.insert({after, cache});
  used_ = used_ - before + after;
}

}  // namespace sluice::broker
