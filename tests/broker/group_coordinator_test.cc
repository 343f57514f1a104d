// The group coordinator's state machine on a manual clock: joins (KIP-394, initial delay,
// protocol selection), sync, heartbeats, session and rebalance timeouts, leaving, static
// membership (KIP-345), offsets and their durability, and rebuilding from the offsets topic.
#include "src/kafka/group_coordinator.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/offsets_topic.h"

namespace sluice::broker {
namespace {

namespace errors = kafka::errors;

// Time only moves when a test says so; timers fire in time order. Appends are recorded and
// completed at once, or held until Complete() when `hold_appends` is set.
class ManualEnv : public GroupEnv {
 public:
  int64_t now = 1'000'000;
  bool hold_appends = false;
  std::vector<std::pair<int32_t, OffsetsRecord>> records;
  std::vector<absl::AnyInvocable<void(absl::Status)>> held;

  int64_t NowMs() override { return now; }
  uint64_t RunAfter(absl::Duration delay, absl::AnyInvocable<void()> cb) override {
    uint64_t id = next_++;
    timers_[id] = Timer{now + absl::ToInt64Milliseconds(delay), std::move(cb)};
    return id;
  }
  void Cancel(uint64_t id) override { timers_.erase(id); }
  void Append(int32_t partition, std::vector<OffsetsRecord> recs,
              absl::AnyInvocable<void(absl::Status)> done) override {
    for (auto& r : recs) records.emplace_back(partition, std::move(r));
    if (hold_appends) {
      held.push_back(std::move(done));
    } else {
      done(absl::OkStatus());
    }
  }
  int32_t PartitionCount(const std::string& topic) override { return topic == "t" ? 6 : -1; }

  void CompleteHeld(absl::Status s = absl::OkStatus()) {
    auto h = std::move(held);
    held.clear();
    for (auto& d : h) d(s);
  }
  // Runs every timer due up to now + ms, in time order.
  void Advance(int64_t ms) {
    const int64_t target = now + ms;
    while (true) {
      auto best = timers_.end();
      for (auto it = timers_.begin(); it != timers_.end(); ++it) {
        if (it->second.at <= target && (best == timers_.end() || it->second.at < best->second.at))
          best = it;
      }
      if (best == timers_.end()) break;
      now = best->second.at;
      auto cb = std::move(best->second.cb);
      timers_.erase(best);
      cb();
    }
    now = target;
  }

 private:
  struct Timer {
    int64_t at;
    absl::AnyInvocable<void()> cb;
  };
  std::map<uint64_t, Timer> timers_;
  uint64_t next_ = 1;
};

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

kafka::JoinGroupRequest Join(const std::string& member,
                             std::vector<std::string> protocols = {"range"},
                             std::optional<std::string> instance = std::nullopt,
                             int32_t session_ms = 10000, int32_t rebalance_ms = 20000) {
  kafka::JoinGroupRequest r;
  r.group_id = "g";
  r.member_id = member;
  r.group_instance_id = instance;
  r.session_timeout_ms = session_ms;
  r.rebalance_timeout_ms = rebalance_ms;
  r.protocol_type = "consumer";
  for (const auto& p : protocols) {
    auto& rp = r.protocols.emplace_back();
    rp.name = p;
    rp.metadata = Bytes("md-" + p + "-" + member + instance.value_or(""));
  }
  return r;
}

class GroupCoordinatorTest : public ::testing::Test {
 protected:
  GroupCoordinatorTest() {
    options_.initial_rebalance_delay = absl::Milliseconds(3000);
    options_.offsets_partitions = 50;
    Make();
  }
  void Make() { coord_ = std::make_unique<GroupCoordinator>(&env_, options_); }

  // Joins and returns a slot that holds the answer once it comes.
  std::shared_ptr<std::optional<kafka::JoinGroupResponse>> JoinAsync(
      const kafka::JoinGroupRequest& req, int16_t version = 5) {
    auto slot = std::make_shared<std::optional<kafka::JoinGroupResponse>>();
    coord_->JoinGroup(req, version, "client", "/127.0.0.1",
                      [slot](kafka::JoinGroupResponse r) { *slot = std::move(r); });
    return slot;
  }
  std::shared_ptr<std::optional<kafka::SyncGroupResponse>> SyncAsync(
      const std::string& member, int32_t generation,
      std::map<std::string, std::string> assignments = {},
      std::optional<std::string> instance = std::nullopt) {
    kafka::SyncGroupRequest r;
    r.group_id = "g";
    r.member_id = member;
    r.generation_id = generation;
    r.group_instance_id = instance;
    for (const auto& [m, a] : assignments) {
      auto& ra = r.assignments.emplace_back();
      ra.member_id = m;
      ra.assignment = Bytes(a);
    }
    auto slot = std::make_shared<std::optional<kafka::SyncGroupResponse>>();
    coord_->SyncGroup(r, 3, [slot](kafka::SyncGroupResponse resp) { *slot = std::move(resp); });
    return slot;
  }
  int16_t Heartbeat(const std::string& member, int32_t generation,
                    std::optional<std::string> instance = std::nullopt) {
    kafka::HeartbeatRequest r;
    r.group_id = "g";
    r.member_id = member;
    r.generation_id = generation;
    r.group_instance_id = instance;
    return coord_->Heartbeat(r);
  }
  // KIP-394 round trip: the member id handed out, then the join with it (pending answer).
  std::pair<std::string, std::shared_ptr<std::optional<kafka::JoinGroupResponse>>> JoinNew(
      std::vector<std::string> protocols = {"range"}) {
    auto first = JoinAsync(Join("", protocols));
    EXPECT_TRUE(first->has_value());
    EXPECT_EQ((*first)->error_code, errors::kMemberIdRequired);
    std::string id = (*first)->member_id;
    EXPECT_FALSE(id.empty());
    return {id, JoinAsync(Join(id, protocols))};
  }
  // Three members through KIP-394, the initial delay and a leader's sync: a stable group.
  std::vector<std::string> StableGroupOfThree() {
    std::vector<std::string> ids;
    std::vector<std::shared_ptr<std::optional<kafka::JoinGroupResponse>>> joins;
    for (int i = 0; i < 3; ++i) {
      auto [id, j] = JoinNew();
      ids.push_back(id);
      joins.push_back(j);
    }
    env_.Advance(3000);
    env_.Advance(3000);
    std::string leader;
    for (auto& j : joins) {
      EXPECT_TRUE(j->has_value());
      leader = (*j)->leader;
    }
    std::map<std::string, std::string> a;
    for (size_t i = 0; i < ids.size(); ++i) a[ids[i]] = "assignment-" + std::to_string(i);
    for (const auto& id : ids) {
      auto s = SyncAsync(id, 1, id == leader ? a : std::map<std::string, std::string>{});
      if (id == leader) EXPECT_TRUE(s->has_value());
    }
    EXPECT_EQ(coord_->State("g"), GroupState::kStable);
    return ids;
  }

  ManualEnv env_;
  GroupOptions options_;
  std::unique_ptr<GroupCoordinator> coord_;
};

TEST_F(GroupCoordinatorTest, MemberIdRequiredThenJoinAfterInitialDelay) {
  auto [id, join] = JoinNew();
  EXPECT_EQ(coord_->State("g"), GroupState::kPreparingRebalance);
  env_.Advance(2999);
  EXPECT_FALSE(join->has_value()) << "answered before group.initial.rebalance.delay.ms";
  env_.Advance(1);
  ASSERT_TRUE(join->has_value());
  EXPECT_EQ((*join)->error_code, 0);
  EXPECT_EQ((*join)->generation_id, 1);
  EXPECT_EQ((*join)->member_id, id);
  EXPECT_EQ((*join)->leader, id);
  EXPECT_EQ((*join)->protocol_name, "range");
  ASSERT_EQ((*join)->members.size(), 1u);
  EXPECT_EQ(coord_->State("g"), GroupState::kCompletingRebalance);
}

TEST_F(GroupCoordinatorTest, AnAbandonedMemberIdLeavesNoGroupBehind) {
  auto first = JoinAsync(Join(""));
  ASSERT_EQ((*first)->error_code, errors::kMemberIdRequired);
  EXPECT_EQ(coord_->group_count(), 1u);
  env_.Advance(10000);  // its session timeout: the id is forgotten
  EXPECT_EQ(coord_->group_count(), 0u);
  auto late = JoinAsync(Join((*first)->member_id));
  ASSERT_TRUE(late->has_value());
  EXPECT_EQ((*late)->error_code, errors::kUnknownMemberId);
}

TEST_F(GroupCoordinatorTest, OldVersionsJoinWithoutMemberIdRoundTrip) {
  auto join = JoinAsync(Join(""), /*version=*/3);
  EXPECT_FALSE(join->has_value());
  env_.Advance(3000);
  ASSERT_TRUE(join->has_value());
  EXPECT_EQ((*join)->error_code, 0);
  EXPECT_FALSE((*join)->member_id.empty());
}

TEST_F(GroupCoordinatorTest, MembersArrivingDuringTheDelayShareOneGeneration) {
  auto [a, ja] = JoinNew();
  env_.Advance(2000);
  auto [b, jb] = JoinNew();
  env_.Advance(1000);  // first delay ends; a member arrived during it: wait another
  EXPECT_FALSE(ja->has_value());
  auto [c, jc] = JoinNew();
  env_.Advance(3000);
  env_.Advance(3000);
  for (auto* j : {&ja, &jb, &jc}) {
    ASSERT_TRUE((*j)->has_value());
    EXPECT_EQ((**j)->generation_id, 1);
  }
  // Only the leader (first to join) sees the members' metadata.
  EXPECT_EQ((*ja)->leader, a);
  EXPECT_EQ((*ja)->members.size(), 3u);
  EXPECT_TRUE((*jb)->members.empty());
  EXPECT_TRUE((*jc)->members.empty());
}

TEST_F(GroupCoordinatorTest, ProtocolSelectionAndInconsistentProtocols) {
  auto [a, ja] = JoinNew({"roundrobin", "range"});
  auto [b, jb] = JoinNew({"range", "roundrobin"});
  auto [c, jc] = JoinNew({"range"});
  env_.Advance(3000);
  env_.Advance(3000);
  ASSERT_TRUE(ja->has_value());
  EXPECT_EQ((*ja)->protocol_name, "range");  // the only common one
  auto bad = JoinAsync(Join("", {"sticky"}), 3);
  ASSERT_TRUE(bad->has_value());
  EXPECT_EQ((*bad)->error_code, errors::kInconsistentGroupProtocol);
  auto other_type = Join("", {"range"});
  other_type.protocol_type = "connect";
  auto bt = JoinAsync(other_type, 3);
  ASSERT_TRUE(bt->has_value());
  EXPECT_EQ((*bt)->error_code, errors::kInconsistentGroupProtocol);
}

TEST_F(GroupCoordinatorTest, SyncDistributesTheLeadersAssignment) {
  auto [a, ja] = JoinNew();
  auto [b, jb] = JoinNew();
  env_.Advance(6000);
  ASSERT_TRUE(ja->has_value() && jb->has_value());
  const std::string leader = (*ja)->leader;
  const std::string follower = leader == a ? b : a;
  auto sf = SyncAsync(follower, 1);
  EXPECT_FALSE(sf->has_value()) << "a follower waits for the leader's assignment";
  EXPECT_EQ(Heartbeat(follower, 1), 0) << "heartbeats are fine while completing";
  auto stale = SyncAsync(follower, 0);
  ASSERT_TRUE(stale->has_value());
  EXPECT_EQ((*stale)->error_code, errors::kIllegalGeneration);
  auto sl = SyncAsync(leader, 1, {{leader, "L"}, {follower, "F"}});
  ASSERT_TRUE(sl->has_value() && sf->has_value());
  EXPECT_EQ((*sl)->assignment, Bytes("L"));
  EXPECT_EQ((*sf)->assignment, Bytes("F"));
  EXPECT_EQ(coord_->State("g"), GroupState::kStable);
  // A late sync in the stable group gets the same assignment.
  auto again = SyncAsync(follower, 1);
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->assignment, Bytes("F"));
}

TEST_F(GroupCoordinatorTest, SyncWaitsForTheGroupRecordToBeDurable) {
  auto [a, ja] = JoinNew();
  env_.Advance(3000);
  ASSERT_TRUE(ja->has_value());
  env_.hold_appends = true;
  auto s = SyncAsync(a, 1, {{a, "A"}});
  EXPECT_FALSE(s->has_value());
  EXPECT_EQ(coord_->State("g"), GroupState::kCompletingRebalance);
  env_.CompleteHeld();
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->error_code, 0);
  EXPECT_EQ((*s)->assignment, Bytes("A"));
}

TEST_F(GroupCoordinatorTest, HeartbeatErrors) {
  auto ids = StableGroupOfThree();
  EXPECT_EQ(Heartbeat(ids[0], 1), 0);
  EXPECT_EQ(Heartbeat(ids[0], 7), errors::kIllegalGeneration);
  EXPECT_EQ(Heartbeat("nobody", 1), errors::kUnknownMemberId);
  kafka::HeartbeatRequest other;
  other.group_id = "no-group";
  other.member_id = ids[0];
  EXPECT_EQ(coord_->Heartbeat(other), errors::kUnknownMemberId);
  // A member rejoining (new protocols) starts a rebalance: the others hear about it.
  auto rejoin = JoinAsync(Join(ids[1], {"range", "roundrobin"}));
  EXPECT_EQ(Heartbeat(ids[0], 1), errors::kRebalanceInProgress);
}

TEST_F(GroupCoordinatorTest, SessionTimeoutRemovesASilentMember) {
  auto ids = StableGroupOfThree();
  // Two members keep heartbeating; the third falls silent.
  for (int i = 0; i < 9; ++i) {
    env_.Advance(1000);
    EXPECT_EQ(Heartbeat(ids[0], 1), 0);
    EXPECT_EQ(Heartbeat(ids[1], 1), 0);
  }
  env_.Advance(1000);  // 10 s: ids[2]'s session expired
  EXPECT_EQ(coord_->State("g"), GroupState::kPreparingRebalance);
  EXPECT_EQ(Heartbeat(ids[2], 1), errors::kUnknownMemberId);
  EXPECT_EQ(Heartbeat(ids[0], 1), errors::kRebalanceInProgress);
  auto j0 = JoinAsync(Join(ids[0]));
  auto j1 = JoinAsync(Join(ids[1]));
  // Everyone left rejoined: no wait for the rebalance timeout.
  ASSERT_TRUE(j0->has_value() && j1->has_value());
  EXPECT_EQ((*j0)->generation_id, 2);
  EXPECT_EQ(coord_->Generation("g"), 2);
}

TEST_F(GroupCoordinatorTest, RebalanceTimeoutDropsMembersThatDoNotRejoin) {
  auto ids = StableGroupOfThree();
  auto j0 = JoinAsync(Join(ids[0], {"range", "roundrobin"}));
  env_.Advance(5000);
  EXPECT_EQ(Heartbeat(ids[1], 1), errors::kRebalanceInProgress);  // alive but not rejoining
  EXPECT_FALSE(j0->has_value());
  env_.Advance(15000);  // rebalance timeout (20 s) from the start of the rebalance
  ASSERT_TRUE(j0->has_value());
  EXPECT_EQ((*j0)->generation_id, 2);
  EXPECT_EQ((*j0)->members.size(), 1u);
  EXPECT_EQ(Heartbeat(ids[1], 2), errors::kUnknownMemberId);
}

TEST_F(GroupCoordinatorTest, LeaveGroupBatchAndLegacy) {
  auto ids = StableGroupOfThree();
  kafka::LeaveGroupRequest req;
  req.group_id = "g";
  req.members.emplace_back().member_id = ids[0];
  req.members.emplace_back().member_id = "ghost";
  auto resp = coord_->LeaveGroup(req, 3);
  ASSERT_EQ(resp.members.size(), 2u);
  EXPECT_EQ(resp.members[0].error_code, 0);
  EXPECT_EQ(resp.members[1].error_code, errors::kUnknownMemberId);
  EXPECT_EQ(coord_->State("g"), GroupState::kPreparingRebalance);
  kafka::LeaveGroupRequest legacy;
  legacy.group_id = "g";
  legacy.member_id = ids[1];
  EXPECT_EQ(coord_->LeaveGroup(legacy, 1).error_code, 0);
  legacy.member_id = ids[2];
  EXPECT_EQ(coord_->LeaveGroup(legacy, 1).error_code, 0);
  // Last member gone: the rebalance completes with nobody, the group is Empty.
  EXPECT_EQ(coord_->State("g"), GroupState::kEmpty);
}

TEST_F(GroupCoordinatorTest, StaticMemberRejoinKeepsAssignmentWithoutRebalance) {
  auto ja = JoinAsync(Join("", {"range"}, "inst-a"));
  auto jb = JoinAsync(Join("", {"range"}, "inst-b"));
  EXPECT_FALSE(ja->has_value()) << "static members skip MEMBER_ID_REQUIRED";
  env_.Advance(6000);
  ASSERT_TRUE(ja->has_value() && jb->has_value());
  const std::string a = (*ja)->member_id, b = (*jb)->member_id;
  EXPECT_EQ(a.rfind("inst-a-", 0), 0u);
  const std::string leader = (*ja)->leader;
  SyncAsync(b, 1,
            leader == b ? std::map<std::string, std::string>{{a, "A"}, {b, "B"}}
                        : std::map<std::string, std::string>{},
            "inst-b");
  SyncAsync(a, 1,
            leader == a ? std::map<std::string, std::string>{{a, "A"}, {b, "B"}}
                        : std::map<std::string, std::string>{},
            "inst-a");
  ASSERT_EQ(coord_->State("g"), GroupState::kStable);

  // inst-b restarts: new member id, same generation, no rebalance, its assignment back.
  auto rb = JoinAsync(Join("", {"range"}, "inst-b"));
  ASSERT_TRUE(rb->has_value());
  EXPECT_EQ((*rb)->error_code, 0);
  const std::string b2 = (*rb)->member_id;
  EXPECT_NE(b2, b);
  EXPECT_EQ((*rb)->generation_id, 1);
  EXPECT_NE((*rb)->leader, b2) << "no assignment duty for a member rejoining a stable group";
  EXPECT_EQ(coord_->State("g"), GroupState::kStable);
  EXPECT_EQ(coord_->Generation("g"), 1);
  auto sb = SyncAsync(b2, 1, {}, "inst-b");
  ASSERT_TRUE(sb->has_value());
  EXPECT_EQ((*sb)->assignment, Bytes("B"));
  EXPECT_EQ(Heartbeat(a, 1, "inst-a"), 0);
  // The old incarnation is fenced.
  EXPECT_EQ(Heartbeat(b, 1, "inst-b"), errors::kFencedInstanceId);
  EXPECT_EQ(Heartbeat(b, 1), errors::kUnknownMemberId);
  // The new member id was persisted with the group.
  auto last = DecodeGroupValue(*env_.records.back().second.value);
  ASSERT_TRUE(last.ok());
  bool found = false;
  for (const auto& m : last->members) found = found || m.member_id == b2;
  EXPECT_TRUE(found);
}

TEST_F(GroupCoordinatorTest, SessionTimeoutValidation) {
  auto j = JoinAsync(Join("", {"range"}, std::nullopt, /*session_ms=*/10));
  ASSERT_TRUE(j->has_value());
  EXPECT_EQ((*j)->error_code, errors::kInvalidSessionTimeout);
  auto empty = Join("");
  empty.group_id = "";
  auto k = JoinAsync(empty);
  ASSERT_TRUE(k->has_value());
  EXPECT_EQ((*k)->error_code, errors::kInvalidGroupId);
}

kafka::OffsetCommitRequest Commit(const std::string& group, int32_t generation,
                                  const std::string& member,
                                  std::vector<std::pair<int32_t, int64_t>> offsets,
                                  const std::string& topic = "t") {
  kafka::OffsetCommitRequest r;
  r.group_id = group;
  r.generation_id_or_member_epoch = generation;
  r.member_id = member;
  auto& t = r.topics.emplace_back();
  t.name = topic;
  for (auto [p, o] : offsets) {
    auto& rp = t.partitions.emplace_back();
    rp.partition_index = p;
    rp.committed_offset = o;
    rp.committed_metadata = "m";
  }
  return r;
}

TEST_F(GroupCoordinatorTest, CommitIsAnsweredOnlyWhenDurable) {
  env_.hold_appends = true;
  std::optional<kafka::OffsetCommitResponse> resp;
  coord_->CommitOffsets(Commit("simple", -1, "", {{0, 10}, {1, 20}}), 8,
                        [&](kafka::OffsetCommitResponse r) { resp = std::move(r); });
  EXPECT_FALSE(resp.has_value());
  EXPECT_FALSE(coord_->CommittedOffset("simple", "t", 0).has_value());
  env_.CompleteHeld();
  ASSERT_TRUE(resp.has_value());
  EXPECT_EQ(resp->topics[0].partitions[0].error_code, 0);
  EXPECT_EQ(coord_->CommittedOffset("simple", "t", 0), 10);
  EXPECT_EQ(coord_->CommittedOffset("simple", "t", 1), 20);
  // A failed append is reported and changes nothing.
  coord_->CommitOffsets(Commit("simple", -1, "", {{0, 99}}), 8,
                        [&](kafka::OffsetCommitResponse r) { resp = std::move(r); });
  env_.CompleteHeld(absl::UnavailableError("disk"));
  EXPECT_EQ(resp->topics[0].partitions[0].error_code, errors::kCoordinatorNotAvailable);
  EXPECT_EQ(coord_->CommittedOffset("simple", "t", 0), 10);
}

TEST_F(GroupCoordinatorTest, CommitValidation) {
  auto ids = StableGroupOfThree();
  auto commit = [&](kafka::OffsetCommitRequest r) {
    std::optional<kafka::OffsetCommitResponse> out;
    coord_->CommitOffsets(r, 8, [&](kafka::OffsetCommitResponse x) { out = std::move(x); });
    EXPECT_TRUE(out.has_value());
    return out->topics[0].partitions[0].error_code;
  };
  EXPECT_EQ(commit(Commit("g", 1, ids[0], {{0, 5}})), 0);
  EXPECT_EQ(commit(Commit("g", 0, ids[0], {{0, 5}})), errors::kIllegalGeneration);
  EXPECT_EQ(commit(Commit("g", 1, "nobody", {{0, 5}})), errors::kUnknownMemberId);
  EXPECT_EQ(commit(Commit("g", -1, "", {{0, 5}})), errors::kUnknownMemberId)
      << "no commits from outside a group that has members";
  EXPECT_EQ(commit(Commit("g", 1, ids[0], {{9, 5}})), errors::kUnknownTopicOrPartition);
  EXPECT_EQ(commit(Commit("g", 1, ids[0], {{0, 5}}, "missing")), errors::kUnknownTopicOrPartition);
  EXPECT_EQ(coord_->CommittedOffset("g", "t", 0), 5);
}

TEST_F(GroupCoordinatorTest, FetchOffsetsAllAndSomeAcrossVersions) {
  coord_->CommitOffsets(Commit("s", -1, "", {{0, 3}, {2, 7}}), 2, [](auto) {});
  kafka::OffsetFetchRequest req;
  req.group_id = "s";
  req.topics.emplace().emplace_back();
  (*req.topics)[0].name = "t";
  (*req.topics)[0].partition_indexes = {0, 1};
  auto r = coord_->FetchOffsets(req, 5);
  ASSERT_EQ(r.topics.size(), 1u);
  ASSERT_EQ(r.topics[0].partitions.size(), 2u);
  EXPECT_EQ(r.topics[0].partitions[0].committed_offset, 3);
  EXPECT_EQ(r.topics[0].partitions[1].committed_offset, -1);
  req.topics.reset();  // all committed partitions
  r = coord_->FetchOffsets(req, 5);
  ASSERT_EQ(r.topics.size(), 1u);
  EXPECT_EQ(r.topics[0].partitions.size(), 2u);
  kafka::OffsetFetchRequest v8;
  auto& g = v8.groups.emplace_back();
  g.group_id = "s";
  g.topics.reset();
  auto& unknown = v8.groups.emplace_back();
  unknown.group_id = "unknown";
  r = coord_->FetchOffsets(v8, 8);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_EQ(r.groups[0].topics[0].partitions[1].committed_offset, 7);
  EXPECT_TRUE(r.groups[1].topics.empty());
}

TEST_F(GroupCoordinatorTest, RebuildsFromTheOffsetsTopic) {
  auto ids = StableGroupOfThree();
  coord_->CommitOffsets(Commit("g", 1, ids[0], {{0, 5}, {1, 6}}), 8, [](auto) {});
  coord_->CommitOffsets(Commit("g", 1, ids[0], {{0, 8}}), 8, [](auto) {});
  coord_->CommitOffsets(Commit("gone", -1, "", {{3, 1}}), 8, [](auto) {});
  kafka::DeleteGroupsRequest del;
  del.groups_names = {"gone", "g"};
  std::optional<kafka::DeleteGroupsResponse> dr;
  coord_->DeleteGroups(del, [&](kafka::DeleteGroupsResponse r) { dr = std::move(r); });
  ASSERT_TRUE(dr.has_value());
  EXPECT_EQ(dr->results[0].error_code, 0);
  EXPECT_EQ(dr->results[1].error_code, errors::kNonEmptyGroup);
  EXPECT_FALSE(coord_->State("gone").has_value());

  // Every record goes to the group's partition; replaying them rebuilds the state.
  for (const auto& [p, r] : env_.records) {
    auto key = DecodeOffsetsKey(r.key);
    ASSERT_TRUE(key.ok());
    const std::string& group = std::holds_alternative<OffsetKey>(*key)
                                   ? std::get<OffsetKey>(*key).group
                                   : std::get<GroupKey>(*key).group;
    EXPECT_EQ(p, OffsetsPartitionFor(group, 50));
  }
  auto records = env_.records;
  coord_.reset();
  ManualEnv fresh;
  GroupCoordinator loaded(&fresh, GroupOptions{});
  for (const auto& [p, r] : records) {
    std::optional<std::span<const uint8_t>> value;
    if (r.value) value = std::span<const uint8_t>(*r.value);
    ASSERT_TRUE(loaded.Replay(r.key, value).ok());
  }
  loaded.FinishLoading();
  EXPECT_EQ(loaded.CommittedOffset("g", "t", 0), 8);
  EXPECT_EQ(loaded.CommittedOffset("g", "t", 1), 6);
  EXPECT_FALSE(loaded.State("gone").has_value());
  EXPECT_EQ(loaded.State("g"), GroupState::kStable);
  EXPECT_EQ(loaded.Generation("g"), 1);
  // Members come back with their assignments; they may carry on with the same generation.
  kafka::HeartbeatRequest hb;
  hb.group_id = "g";
  hb.member_id = ids[1];
  hb.generation_id = 1;
  EXPECT_EQ(loaded.Heartbeat(hb), 0);
  kafka::DescribeGroupsRequest dreq;
  dreq.groups = {"g"};
  auto desc = loaded.DescribeGroups(dreq, 5);
  ASSERT_EQ(desc.groups[0].members.size(), 3u);
  int with_assignment = 0;
  for (const auto& m : desc.groups[0].members) with_assignment += !m.member_assignment.empty();
  EXPECT_EQ(with_assignment, 3);
  // Loaded members that never come back expire after their session timeout.
  fresh.Advance(5000);
  EXPECT_EQ(loaded.Heartbeat(hb), 0);
  fresh.Advance(5000);
  EXPECT_EQ(loaded.State("g"), GroupState::kPreparingRebalance);
  EXPECT_EQ(loaded.Heartbeat(hb), errors::kRebalanceInProgress);
}

TEST_F(GroupCoordinatorTest, DeleteOffsetsRespectsSubscriptions) {
  coord_->CommitOffsets(Commit("s", -1, "", {{0, 3}, {1, 4}}), 8, [](auto) {});
  kafka::OffsetDeleteRequest req;
  req.group_id = "s";
  auto& t = req.topics.emplace_back();
  t.name = "t";
  t.partitions.emplace_back().partition_index = 0;
  std::optional<kafka::OffsetDeleteResponse> out;
  coord_->DeleteOffsets(req, [&](kafka::OffsetDeleteResponse r) { out = std::move(r); });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->error_code, 0);
  EXPECT_EQ(out->topics[0].partitions[0].error_code, 0);
  EXPECT_FALSE(coord_->CommittedOffset("s", "t", 0).has_value());
  EXPECT_EQ(coord_->CommittedOffset("s", "t", 1), 4);
  EXPECT_FALSE(env_.records.back().second.value.has_value()) << "a tombstone";
  req.group_id = "nope";
  coord_->DeleteOffsets(req, [&](kafka::OffsetDeleteResponse r) { out = std::move(r); });
  EXPECT_EQ(out->error_code, errors::kGroupIdNotFound);
}

TEST_F(GroupCoordinatorTest, ListAndDescribe) {
  auto ids = StableGroupOfThree();
  kafka::ListGroupsRequest lr;
  auto list = coord_->ListGroups(lr, 4);
  ASSERT_EQ(list.groups.size(), 1u);
  EXPECT_EQ(list.groups[0].group_state, "Stable");
  lr.states_filter = {"empty"};
  EXPECT_TRUE(coord_->ListGroups(lr, 4).groups.empty());
  kafka::DescribeGroupsRequest dr;
  dr.groups = {"g", "unknown"};
  auto d = coord_->DescribeGroups(dr, 5);
  ASSERT_EQ(d.groups.size(), 2u);
  EXPECT_EQ(d.groups[0].protocol_data, "range");
  EXPECT_EQ(d.groups[0].members.size(), 3u);
  EXPECT_EQ(d.groups[0].members[0].client_host, "/127.0.0.1");
  EXPECT_EQ(d.groups[1].group_state, "Dead");
}

TEST(OffsetsTopic, RecordsRoundTripAndPartitioning) {
  OffsetKey k{"group", "topic", 3};
  auto kd = DecodeOffsetsKey(EncodeOffsetsKey(k));
  ASSERT_TRUE(kd.ok());
  EXPECT_EQ(std::get<OffsetKey>(*kd), k);
  OffsetValue v{42, 7, "meta", 123, -1};
  auto vd = DecodeOffsetValue(EncodeOffsetValue(v));
  ASSERT_TRUE(vd.ok());
  EXPECT_EQ(*vd, v);
  GroupValue g;
  g.protocol_type = "consumer";
  g.generation = 4;
  g.protocol = "range";
  g.leader = "m1";
  g.current_state_timestamp_ms = 99;
  g.members.push_back({"m1", "i1", "c", "/h", 100, 200, {1, 2}, {3}});
  auto gd = DecodeGroupValue(EncodeGroupValue(g));
  ASSERT_TRUE(gd.ok());
  EXPECT_EQ(*gd, g);
  // Kafka's placement: abs(String.hashCode) % partitions.
  EXPECT_EQ(JavaStringHash("hello"), 99162322);
  EXPECT_EQ(JavaStringHash("polygenelubricants"), INT32_MIN);
  EXPECT_EQ(OffsetsPartitionFor("polygenelubricants", 50), 0);
  EXPECT_EQ(OffsetsPartitionFor("test-group", 50),
            (JavaStringHash("test-group") & 0x7fffffff) % 50);
  EXPECT_EQ(JavaStringHash("\xF0\x9F\x98\x80"), 0xD83D * 31 + 0xDE00);  // one surrogate pair
  EXPECT_FALSE(DecodeOffsetsKey(std::vector<uint8_t>{0, 9}).ok());
  EXPECT_FALSE(DecodeGroupValue(std::vector<uint8_t>{0, 3, 0}).ok());
}

kafka::JoinGroupRequest JoinWithMetadata(const std::string& member, size_t metadata_bytes) {
  kafka::JoinGroupRequest r = Join(member);
  r.protocols[0].metadata.assign(metadata_bytes, 0x5a);
  return r;
}

TEST_F(GroupCoordinatorTest, JoinBeyondGroupMaxSizeGetsGroupMaxSizeReached) {
  options_.max_size = 2;
  Make();
  auto [a, ja] = JoinNew();
  auto [b, jb] = JoinNew();
  // A third member while the first generation forms: as Kafka, refused (before any member id
  // is handed out).
  auto jc = JoinAsync(Join(""));
  ASSERT_TRUE(jc->has_value());
  EXPECT_EQ((*jc)->error_code, errors::kGroupMaxSizeReached);
  EXPECT_EQ((*jc)->member_id, "");
  env_.Advance(6000);
  ASSERT_TRUE(ja->has_value() && jb->has_value());
  EXPECT_EQ((*ja)->error_code, 0);
  EXPECT_EQ((*jb)->error_code, 0);
  const std::string leader = (*ja)->leader;
  EXPECT_EQ(leader == a ? (*ja)->members.size() : (*jb)->members.size(), 2u);
  SyncAsync(a, 1,
            leader == a ? std::map<std::string, std::string>{{a, "A"}, {b, "B"}}
                        : std::map<std::string, std::string>{});
  SyncAsync(b, 1,
            leader == b ? std::map<std::string, std::string>{{a, "A"}, {b, "B"}}
                        : std::map<std::string, std::string>{});
  ASSERT_EQ(coord_->State("g"), GroupState::kStable);
  // A full stable group refuses newcomers without disturbing its members.
  auto jd = JoinAsync(Join(""));
  ASSERT_TRUE(jd->has_value());
  EXPECT_EQ((*jd)->error_code, errors::kGroupMaxSizeReached);
  auto old_version = JoinAsync(Join(""), /*version=*/3);
  ASSERT_TRUE(old_version->has_value());
  EXPECT_EQ((*old_version)->error_code, errors::kGroupMaxSizeReached);
  EXPECT_EQ(coord_->State("g"), GroupState::kStable);
  EXPECT_EQ(Heartbeat(a, 1), 0);
  EXPECT_EQ(Heartbeat(b, 1), 0);
  // Its members may still rejoin: they take no new place.
  auto again = JoinAsync(Join(leader == a ? b : a));
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->error_code, 0);
}

TEST_F(GroupCoordinatorTest, MemberIdsHandedOutAreBoundedByGroupMaxSize) {
  options_.max_size = 2;
  Make();
  for (int i = 0; i < 2; ++i) {
    auto j = JoinAsync(Join(""));
    ASSERT_TRUE(j->has_value());
    EXPECT_EQ((*j)->error_code, errors::kMemberIdRequired);
  }
  auto third = JoinAsync(Join(""));
  ASSERT_TRUE(third->has_value());
  EXPECT_EQ((*third)->error_code, errors::kGroupMaxSizeReached);
  env_.Advance(10000);  // the unused ids expire with their session timeout
  auto later = JoinAsync(Join(""));
  ASSERT_TRUE(later->has_value());
  EXPECT_EQ((*later)->error_code, errors::kMemberIdRequired);
}

TEST_F(GroupCoordinatorTest, OversizedMemberMetadataGetsMessageTooLargeAndLeavesNothing) {
  options_.max_member_metadata_bytes = 4096;
  Make();
  auto big = JoinAsync(JoinWithMetadata("", 5000));
  ASSERT_TRUE(big->has_value());
  EXPECT_EQ((*big)->error_code, errors::kMessageTooLarge);
  EXPECT_EQ(coord_->group_count(), 0u) << "nothing of the refused join is kept";
  auto old_version = JoinAsync(JoinWithMetadata("", 5000), /*version=*/3);
  ASSERT_TRUE(old_version->has_value());
  EXPECT_EQ((*old_version)->error_code, errors::kMessageTooLarge);
  EXPECT_EQ(coord_->group_count(), 0u);
  auto fits = JoinAsync(JoinWithMetadata("", 4000), 3);
  EXPECT_FALSE(fits->has_value()) << "waits for the initial delay like any join";
}

TEST_F(GroupCoordinatorTest, GroupMetadataBytesAreCappedAcrossMembers) {
  // 300 members of 256 KiB each once grew the broker by 157 MB: the group's total is capped.
  options_.max_member_metadata_bytes = 300 * 1024;
  options_.max_group_metadata_bytes = 1 << 20;
  Make();
  int accepted = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    auto j = JoinAsync(JoinWithMetadata("", 256 * 1024), 3);
    if (j->has_value()) {
      EXPECT_EQ((*j)->error_code, errors::kGroupMaxSizeReached);
      ++refused;
    } else {
      ++accepted;
    }
  }
  EXPECT_EQ(accepted, 3) << "3 x (256 KiB + name) fit in 1 MiB, a fourth does not";
  EXPECT_EQ(refused, 297);
  env_.Advance(6000);  // the members that fit form the generation
  EXPECT_EQ(coord_->State("g"), GroupState::kCompletingRebalance);
}

TEST_F(GroupCoordinatorTest, RejoinWithMetadataOverTheGroupCapRemovesTheMember) {
  options_.max_group_metadata_bytes = 64 * 1024;
  Make();
  auto ids = StableGroupOfThree();
  auto big = JoinAsync(JoinWithMetadata(ids[1], 70 * 1024));
  ASSERT_TRUE(big->has_value());
  EXPECT_EQ((*big)->error_code, errors::kGroupMaxSizeReached);
  EXPECT_EQ((*big)->member_id, "");
  EXPECT_EQ(Heartbeat(ids[1], 1), errors::kUnknownMemberId) << "removed, as Kafka does";
  EXPECT_EQ(coord_->State("g"), GroupState::kPreparingRebalance);
}

TEST_F(GroupCoordinatorTest, OversizedAssignmentIsRefusedAndTheGroupRebalances) {
  options_.max_member_metadata_bytes = 4096;
  Make();
  auto [a, ja] = JoinNew();
  auto [b, jb] = JoinNew();
  env_.Advance(6000);
  ASSERT_TRUE(ja->has_value() && jb->has_value());
  const std::string leader = (*ja)->leader;
  const std::string follower = leader == a ? b : a;
  auto sf = SyncAsync(follower, 1);
  const size_t records_before = env_.records.size();
  auto sl = SyncAsync(leader, 1, {{leader, "L"}, {follower, std::string(5000, 'x')}});
  ASSERT_TRUE(sl->has_value() && sf->has_value());
  EXPECT_EQ((*sl)->error_code, errors::kMessageTooLarge);
  EXPECT_EQ((*sf)->error_code, errors::kRebalanceInProgress);
  EXPECT_EQ(env_.records.size(), records_before) << "nothing persisted";
  EXPECT_EQ(coord_->State("g"), GroupState::kPreparingRebalance);
  // The next generation with a sensible assignment works.
  auto ra = JoinAsync(Join(a));
  auto rb = JoinAsync(Join(b));
  ASSERT_TRUE(ra->has_value() && rb->has_value());
  EXPECT_EQ((*ra)->generation_id, 2);
  const std::string leader2 = (*ra)->leader;
  auto s2 = SyncAsync(leader2, 2, {{a, "A"}, {b, "B"}});
  ASSERT_TRUE(s2->has_value());
  EXPECT_EQ((*s2)->error_code, 0);
}

TEST_F(GroupCoordinatorTest, GroupLoadedAboveGroupMaxSizeRebalancesAndRefusesTheLastToRejoin) {
  auto ids = StableGroupOfThree();
  auto records = env_.records;
  coord_.reset();
  ManualEnv fresh;
  GroupOptions smaller = options_;
  smaller.max_size = 2;  // lowered across a restart
  GroupCoordinator loaded(&fresh, smaller);
  for (const auto& [p, r] : records) {
    std::optional<std::span<const uint8_t>> value;
    if (r.value) value = std::span<const uint8_t>(*r.value);
    ASSERT_TRUE(loaded.Replay(r.key, value).ok());
  }
  loaded.FinishLoading();
  EXPECT_EQ(loaded.State("g"), GroupState::kPreparingRebalance);
  std::vector<std::optional<kafka::JoinGroupResponse>> answers(3);
  for (int i = 0; i < 3; ++i) {
    loaded.JoinGroup(Join(ids[i]), 5, "client", "/127.0.0.1",
                     [&answers, i](kafka::JoinGroupResponse r) { answers[i] = std::move(r); });
  }
  ASSERT_TRUE(answers[2].has_value());
  EXPECT_EQ(answers[2]->error_code, errors::kGroupMaxSizeReached);
  ASSERT_TRUE(answers[0].has_value() && answers[1].has_value());
  EXPECT_EQ(answers[0]->error_code, 0);
  EXPECT_EQ(answers[0]->generation_id, 2);
  EXPECT_EQ(loaded.Generation("g"), 2);
}

}  // namespace
}  // namespace sluice::broker
