// Fuzzes what the group coordinator decodes from outside bytes:
//  - consumer-protocol subscription and assignment (JoinGroup metadata, SyncGroup assignments);
//  - `__consumer_offsets` keys, offset values and group values (src/kafka/offsets_topic.h);
//  - a sequence of offsets-topic records replayed into a coordinator at start-up, which must
//    then answer ListGroups/DescribeGroups/OffsetFetch/Heartbeat without crashing.
// Whatever decodes must re-encode to something that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "net/kafka/messages/consumer_protocol_assignment.h"
#include "net/kafka/messages/consumer_protocol_subscription.h"
#include "src/kafka/group_coordinator.h"
#include "src/kafka/offsets_topic.h"

namespace {

using namespace sluice::broker;  // NOLINT
namespace kafka = sluice::kafka;

void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename T>
void FuzzVersioned(std::span<const uint8_t> data) {
  auto v = T::DecodeVersioned(data);
  if (!v.ok() || data.size() < 2) return;
  int16_t version = static_cast<int16_t>((data[0] << 8) | data[1]);
  if (version > 3) version = 3;
  auto again = T::DecodeVersioned(v->EncodeVersioned(version));
  Check(again.ok());
  Check(again->EncodeVersioned(version) == v->EncodeVersioned(version));
}

void FuzzRecords(std::span<const uint8_t> data) {
  if (auto k = DecodeOffsetsKey(data); k.ok()) {
    auto again = DecodeOffsetsKey(EncodeOffsetsKey(*k));
    Check(again.ok() && *again == *k);
  }
  if (auto v = DecodeOffsetValue(data); v.ok()) {
    auto again = DecodeOffsetValue(EncodeOffsetValue(*v));
    Check(again.ok());
    OffsetValue expect = *v;
    expect.expire_timestamp_ms = -1;  // only version 1 has it; we write version 3
    Check(*again == expect);
  }
  if (auto g = DecodeGroupValue(data); g.ok()) {
    auto again = DecodeGroupValue(EncodeGroupValue(*g));
    Check(again.ok() && *again == *g);
  }
}

// Timers never fire and appends succeed at once: only the loaded state matters here.
class NullEnv : public GroupEnv {
 public:
  int64_t NowMs() override { return 0; }
  uint64_t RunAfter(absl::Duration, absl::AnyInvocable<void()>) override { return ++next_; }
  void Cancel(uint64_t) override {}
  void Append(int32_t, std::vector<OffsetsRecord>,
              absl::AnyInvocable<void(absl::Status)> done) override {
    done(absl::OkStatus());
  }
  int32_t PartitionCount(const std::string&) override { return 4; }

 private:
  uint64_t next_ = 0;
};

// Records as [u16 key length][key][u16 value length, 0xffff = tombstone][value]...
void FuzzReplay(std::span<const uint8_t> data) {
  NullEnv env;
  GroupCoordinator coord(&env, GroupOptions{});
  std::vector<std::string> groups;
  auto u16 = [&](size_t at) { return static_cast<size_t>((data[at] << 8) | data[at + 1]); };
  size_t pos = 0;
  while (pos + 2 <= data.size()) {
    size_t klen = u16(pos);
    pos += 2;
    if (pos + klen + 2 > data.size()) break;
    std::span<const uint8_t> key = data.subspan(pos, klen);
    pos += klen;
    size_t vlen = u16(pos);
    pos += 2;
    std::optional<std::span<const uint8_t>> value;
    if (vlen != 0xffff) {
      if (pos + vlen > data.size()) break;
      value = data.subspan(pos, vlen);
      pos += vlen;
    }
    (void)coord.Replay(key, value);
    if (auto k = DecodeOffsetsKey(key); k.ok()) {
      groups.push_back(std::holds_alternative<OffsetKey>(*k) ? std::get<OffsetKey>(*k).group
                                                             : std::get<GroupKey>(*k).group);
    }
  }
  coord.FinishLoading();
  kafka::ListGroupsRequest list;
  (void)coord.ListGroups(list, 4);
  kafka::DescribeGroupsRequest describe;
  describe.groups = groups;
  (void)coord.DescribeGroups(describe, 5);
  for (const std::string& g : groups) {
    kafka::OffsetFetchRequest fetch;
    fetch.group_id = g;
    fetch.topics.reset();
    (void)coord.FetchOffsets(fetch, 7);
    kafka::HeartbeatRequest hb;
    hb.group_id = g;
    (void)coord.Heartbeat(hb);
    kafka::LeaveGroupRequest leave;
    leave.group_id = g;
    leave.members.emplace_back().member_id = "m";
    (void)coord.LeaveGroup(leave, 4);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::span<const uint8_t> in(data, size);
  FuzzVersioned<kafka::ConsumerProtocolSubscription>(in);
  FuzzVersioned<kafka::ConsumerProtocolAssignment>(in);
  FuzzRecords(in);
  FuzzReplay(in);
  return 0;
}
