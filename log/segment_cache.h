// Bounds the files that the segments of one LogManager's logs hold open (`log.max.open.files`).
//
// A segment with its files open holds three descriptors (.log, .index, .timeindex) and two
// index mappings. Kafka keeps every segment of every partition open, so its descriptors grow
// with partitions × segments; here, as in leveldb's table cache, only the segments in use stay
// open. When more than the budget would be open, segments not used recently close their files
// (Segment::ReleaseFiles) and the next use opens them again (Segment::Acquire): a cost paid by
// partitions and queues that come back after being idle while others were busy.
//
// Replacement is CLOCK: every use sets the segment's reference bit; the hand clears set bits
// and releases the first segment found without one. Segments of the log being worked on (the
// `keep_owner` of Trim) are never released under it. Writes and syncs in flight, and zero-copy
// reads being sent, hold their own reference to the .log file (SegmentFile), so releasing a
// segment never closes a descriptor that is in use; those references are not counted here.
//
// Threading: the shard thread that owns the LogManager.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::storage {

class Segment;

class SegmentCache {
 public:
  static constexpr size_t kFilesPerSegment = 3;

  explicit SegmentCache(size_t max_open_files) : max_open_files_(max_open_files) {}
  SegmentCache(const SegmentCache&) = delete;
  SegmentCache& operator=(const SegmentCache&) = delete;

  // The segment opened its files / closed them (or is being destroyed). Called by Segment.
  void Add(Segment* segment);
  void Remove(Segment* segment);
  // Releases segments not used recently until at most max_open_files() are open (or every
  // remaining one belongs to `keep_owner` or is in use). Cost: proportional to the segments
  // it passes over, at most twice the number open.
  void Trim(const void* keep_owner = nullptr);

  size_t open_files() const { return segments_.size() * kFilesPerSegment; }
  size_t open_segments() const { return segments_.size(); }
  size_t max_open_files() const { return max_open_files_; }
  // Segments whose files were closed by Trim, and opened again by a later use.
  uint64_t releases() const { return releases_; }
  uint64_t reopens() const { return reopens_; }
  void CountReopen() { ++reopens_; }

 private:
  const size_t max_open_files_;
  std::vector<Segment*> segments_;  // every segment with open files; Segment::cache_slot_
  size_t hand_ = 0;
  uint64_t releases_ = 0;
  uint64_t reopens_ = 0;
};

}  // namespace sluice::storage
