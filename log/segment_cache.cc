#include "log/segment_cache.h"

#include "log/segment.h"

namespace sluice::storage {

void SegmentCache::Add(Segment* segment) {
  segment->cache_slot_ = segments_.size();
  segments_.push_back(segment);
}

void SegmentCache::Remove(Segment* segment) {
  const size_t slot = segment->cache_slot_;
  Segment* last = segments_.back();
  segments_[slot] = last;
  last->cache_slot_ = slot;
  segments_.pop_back();
}

void SegmentCache::Trim(const void* keep_owner) {
  // Two sweeps clear every reference bit, so a segment that can go is found within them.
  size_t steps = 2 * segments_.size();
  while (open_files() > max_open_files_ && steps-- > 0) {
    if (hand_ >= segments_.size()) hand_ = 0;
    Segment* s = segments_[hand_];
    if (s->owner_ == keep_owner) {
      ++hand_;
    } else if (s->referenced_) {
      s->referenced_ = false;
      ++hand_;
    } else {
      s->ReleaseFiles();  // removes it: the segment moved into its slot is looked at next
      ++releases_;
    }
  }
}

}  // namespace sluice::storage
