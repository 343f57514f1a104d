// In-memory copies of AMQP messages beside their queue logs, under one budget for all queues.
//
// A queue keeps the messages it will deliver soon (just published, or read ahead from its
// log) so that deliveries need not read the file. Every cached message is also in the log:
// dropping one costs a read later, never the message. The budget
// (--amqp-message-cache-bytes) bounds the sum over every queue. When an insert would pass
// it, the largest other cache gives up its newest entries (delivered last, so read back
// last) for as long as it stays larger than the requester after the insert; otherwise the
// new message is simply not cached. So caches converge to equal shares, and a queue that
// nobody consumes cannot hold the budget while the queues being consumed need it.
//
// Threading: the shard thread; no locking.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <utility>

namespace sluice::broker {

struct AmqpMessage;
class MessageCacheBudget;

class MessageCache {
 public:
  explicit MessageCache(std::shared_ptr<MessageCacheBudget> budget) : budget_(std::move(budget)) {}
  ~MessageCache() { Clear(); }
  MessageCache(const MessageCache&) = delete;
  MessageCache& operator=(const MessageCache&) = delete;

  // The message at `offset`, or nullptr when it is not cached.
  std::shared_ptr<const AmqpMessage> Find(int64_t offset) const;
  // Caches `message` (`bytes` is what it holds in memory) unless this cache would then hold
  // more than `own_limit` or the budget has no room for it. Returns whether it was cached.
  bool Insert(int64_t offset, std::shared_ptr<const AmqpMessage> message, size_t bytes,
              size_t own_limit);
  void Erase(int64_t offset);
  // Erases every entry below `offset`.
  void EraseBelow(int64_t offset);
  void Clear() { EraseBelow(INT64_MAX); }

  size_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }

 private:
  friend class MessageCacheBudget;
  struct Entry {
    std::shared_ptr<const AmqpMessage> message;
    size_t bytes;
  };
  // Drops the entry with the highest offset (the cache is not empty).
  void EvictNewest();
  void SetBytes(size_t bytes);

  const std::shared_ptr<MessageCacheBudget> budget_;
  std::map<int64_t, Entry> entries_;
  size_t bytes_ = 0;
};

class MessageCacheBudget {
 public:
  explicit MessageCacheBudget(size_t limit) : limit_(limit) {}
  MessageCacheBudget(const MessageCacheBudget&) = delete;
  MessageCacheBudget& operator=(const MessageCacheBudget&) = delete;

  size_t limit() const { return limit_; }
  // Bytes held by every cache together (never above limit()).
  size_t used() const { return used_; }
  // Entries dropped to make room for others (for tests and metrics).
  uint64_t evictions() const { return evictions_; }

 private:
  friend class MessageCache;
  // Evicts from the largest caches other than `requester` until `bytes` more fit, as long
  // as each stays larger than `requester` would be with them. Whether they fit now.
  bool MakeRoom(const MessageCache* requester, size_t bytes);
  // Keeps used_ and the size index current when a cache goes from `before` to `after`.
  void Resized(MessageCache* cache, size_t before, size_t after);

  const size_t limit_;
  size_t used_ = 0;
  uint64_t evictions_ = 0;
  // Caches holding something, by size (the largest last).
  std::set<std::pair<size_t, MessageCache*>> by_size_;
};

}  // namespace sluice::broker
