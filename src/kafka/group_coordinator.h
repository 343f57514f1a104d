// The Kafka group coordinator: the classic rebalance protocol (JoinGroup/SyncGroup/Heartbeat/
// LeaveGroup), static membership (KIP-345), member ids required on join (KIP-394), committed
// offsets, and the group/offset records of `__consumer_offsets` (offsets_topic.h). The protocol
// rules it follows, and where it differs from Kafka, are in src/kafka/GROUPS.md.
//
// The coordinator takes Kafka request structs and produces Kafka response structs; the handlers
// (kafka_group.cc) only move them to and from the wire. Time, timers and durable appends come
// from a GroupEnv, so the state machine runs the same on the broker's reactor and in unit tests.
//
// Threading: the shard thread only. Callbacks (join/sync answers, commit answers) run on it,
// either inside the call or later (a rebalance completing, a durable append finishing).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "net/kafka/messages/delete_groups.h"
#include "net/kafka/messages/describe_groups.h"
#include "net/kafka/messages/heartbeat.h"
#include "net/kafka/messages/join_group.h"
#include "net/kafka/messages/leave_group.h"
#include "net/kafka/messages/list_groups.h"
#include "net/kafka/messages/offset_commit.h"
#include "net/kafka/messages/offset_delete.h"
#include "net/kafka/messages/offset_fetch.h"
#include "net/kafka/messages/sync_group.h"
#include "src/kafka/offsets_topic.h"

namespace sluice::broker {

enum class GroupState { kEmpty, kPreparingRebalance, kCompletingRebalance, kStable, kDead };
std::string_view GroupStateName(GroupState state);

struct GroupOptions {
  // group.initial.rebalance.delay.ms: a new group waits this long (and again while members keep
  // arriving, up to the rebalance timeout) before its first generation.
  absl::Duration initial_rebalance_delay = absl::Seconds(3);
  int32_t min_session_timeout_ms = 6000;     // group.min.session.timeout.ms
  int32_t max_session_timeout_ms = 1800000;  // group.max.session.timeout.ms
  int32_t offsets_partitions = 50;           // offsets.topic.num.partitions
  size_t max_metadata_bytes = 4096;          // offset.metadata.max.bytes
  // group.max.size: most members of one group; a join beyond it gets GROUP_MAX_SIZE_REACHED
  // (Kafka's rules, acceptJoiningMember). Kafka's default is unlimited; members cost memory
  // and every rebalance waits for each of them, so Sluice bounds it. Also bounds the member
  // ids handed out (KIP-394) and not yet used.
  int32_t max_size = 1000;
  // Sluice's group.max.member.metadata.bytes: most bytes one member may hold (its protocols'
  // names and metadata, and the assignment the leader gives it). A larger JoinGroup gets
  // MESSAGE_TOO_LARGE; a leader's SyncGroup with a larger assignment too.
  size_t max_member_metadata_bytes = 1 << 20;
  // Sluice's group.max.metadata.bytes: most of those bytes for all members of one group; a
  // join beyond it gets GROUP_MAX_SIZE_REACHED, a leader's SyncGroup MESSAGE_TOO_LARGE.
  size_t max_group_metadata_bytes = 4 << 20;
};

// What the coordinator needs from its host.
class GroupEnv {
 public:
  virtual ~GroupEnv() = default;
  virtual int64_t NowMs() = 0;
  // Runs `callback` once after `delay` unless cancelled. Ids are never 0.
  virtual uint64_t RunAfter(absl::Duration delay, absl::AnyInvocable<void()> callback) = 0;
  virtual void Cancel(uint64_t timer) = 0;
  // Appends `records` to partition `partition` of the offsets topic; `done` runs exactly once,
  // when they are durable or failed (possibly inside the call).
  virtual void Append(int32_t partition, std::vector<OffsetsRecord> records,
                      absl::AnyInvocable<void(absl::Status)> done) = 0;
  // Partition count of a topic, -1 when it does not exist.
  virtual int32_t PartitionCount(const std::string& topic) = 0;
};

class GroupCoordinator {
 public:
  using JoinCallback = absl::AnyInvocable<void(kafka::JoinGroupResponse)>;
  using SyncCallback = absl::AnyInvocable<void(kafka::SyncGroupResponse)>;
  using CommitCallback = absl::AnyInvocable<void(kafka::OffsetCommitResponse)>;
  using OffsetDeleteCallback = absl::AnyInvocable<void(kafka::OffsetDeleteResponse)>;
  using DeleteGroupsCallback = absl::AnyInvocable<void(kafka::DeleteGroupsResponse)>;

  GroupCoordinator(GroupEnv* env, GroupOptions options);
  ~GroupCoordinator();
  GroupCoordinator(const GroupCoordinator&) = delete;
  GroupCoordinator& operator=(const GroupCoordinator&) = delete;

  const GroupOptions& options() const { return options_; }
  int32_t offsets_partitions() const { return options_.offsets_partitions; }
  int32_t PartitionFor(std::string_view group) const {
    return OffsetsPartitionFor(group, options_.offsets_partitions);
  }

  void JoinGroup(const kafka::JoinGroupRequest& req, int16_t version, const std::string& client_id,
                 const std::string& client_host, JoinCallback done);
  void SyncGroup(const kafka::SyncGroupRequest& req, int16_t version, SyncCallback done);
  int16_t Heartbeat(const kafka::HeartbeatRequest& req);
  kafka::LeaveGroupResponse LeaveGroup(const kafka::LeaveGroupRequest& req, int16_t version);
  void CommitOffsets(const kafka::OffsetCommitRequest& req, int16_t version, CommitCallback done);
  kafka::OffsetFetchResponse FetchOffsets(const kafka::OffsetFetchRequest& req, int16_t version);
  void DeleteOffsets(const kafka::OffsetDeleteRequest& req, OffsetDeleteCallback done);
  kafka::ListGroupsResponse ListGroups(const kafka::ListGroupsRequest& req, int16_t version);
  kafka::DescribeGroupsResponse DescribeGroups(const kafka::DescribeGroupsRequest& req,
                                               int16_t version);
  void DeleteGroups(const kafka::DeleteGroupsRequest& req, DeleteGroupsCallback done);

  // Start-up: every record of the offsets topic, in log order, then FinishLoading (members of
  // loaded groups get a full session timeout to come back). A record that does not decode is
  // skipped (returns its error for the log line).
  absl::Status Replay(std::span<const uint8_t> key, std::optional<std::span<const uint8_t>> value);
  void FinishLoading();
  // Cluster mode: this broker stopped leading offsets partition `partition` (or is about to
  // load it again): its groups are forgotten here, their waiting joins and syncs answered
  // NOT_COORDINATOR (the client finds the new coordinator).
  void UnloadPartition(int32_t partition);
  // After its records were replayed (Replay): starts the session clocks of the partition's
  // groups, as FinishLoading does for all.
  void FinishLoadingPartition(int32_t partition);

  // Inspection (tests, lag).
  std::optional<int64_t> CommittedOffset(const std::string& group, const std::string& topic,
                                         int32_t partition) const;
  std::optional<GroupState> State(const std::string& group) const;
  int32_t Generation(const std::string& group) const;
  size_t group_count() const { return groups_.size(); }

 private:
  struct Member {
    std::string id;
    std::optional<std::string> instance_id;
    std::string client_id;
    std::string client_host;
    int32_t session_timeout_ms = 0;
    int32_t rebalance_timeout_ms = 0;
    std::string protocol_type;
    std::vector<std::pair<std::string, std::vector<uint8_t>>> protocols;  // by preference
    std::vector<uint8_t> assignment;
    uint64_t join_seq = 0;  // order of first join: the first one is the default leader
    JoinCallback awaiting_join;
    int16_t join_version = 0;
    SyncCallback awaiting_sync;
    uint64_t session_timer = 0;
    uint64_t session_token = 0;

    const std::vector<uint8_t>* Metadata(const std::string& protocol) const;
    // What counts against group.max.member.metadata.bytes.
    size_t MetadataBytes() const;
  };
  struct Group {
    std::string id;
    GroupState state = GroupState::kEmpty;
    int32_t generation = 0;
    std::string protocol_type;
    std::optional<std::string> protocol;
    std::optional<std::string> leader;
    std::map<std::string, Member> members;
    std::map<std::string, std::string> static_members;  // instance id -> member id
    std::map<std::string, uint64_t> pending_members;    // KIP-394 ids handed out -> timer
    std::map<std::pair<std::string, int32_t>, OffsetValue> offsets;
    int64_t state_timestamp_ms = -1;
    // The join phase: a timer completes it (rebalance timeout or initial delay).
    uint64_t join_timer = 0;
    uint64_t join_token = 0;
    bool initial_join = false;
    bool new_member_added = false;
    int64_t initial_remaining_ms = 0;
  };

  Group* Find(const std::string& id);
  const Group* Find(const std::string& id) const;
  Group& GetOrCreate(const std::string& id);
  void Transition(Group& g, GroupState state);
  std::string NewMemberId(std::string_view prefix);
  int16_t ValidateMember(const Group& g, const std::string& member_id,
                         const std::optional<std::string>& instance_id) const;
  // Room for a join of `req` (group.max.size and the metadata caps): kNone or the error.
  int16_t AdmitJoin(const Group& g, const kafka::JoinGroupRequest& req) const;
  size_t GroupMetadataBytes(const Group& g) const;

  void AddMemberAndRebalance(Group& g, Member member, JoinCallback done, int16_t version);
  void UpdateMemberAndRebalance(Group& g, Member& m, const kafka::JoinGroupRequest& req,
                                JoinCallback done, int16_t version);
  void ReplaceStaticMember(Group& g, const std::string& old_id, const kafka::JoinGroupRequest& req,
                           JoinCallback done, int16_t version);
  void MaybePrepareRebalance(Group& g, std::string_view reason);
  void PrepareRebalance(Group& g, std::string_view reason);
  void TryCompleteJoin(Group& g);
  void OnJoinTimer(const std::string& group_id, uint64_t token);
  void CompleteJoin(Group& g);
  void RemoveMember(Group& g, const std::string& member_id, std::string_view reason);
  void ScheduleSession(Group& g, Member& m);
  void OnSessionExpired(const std::string& group_id, const std::string& member_id, uint64_t token);
  void CancelTimers(Group& g);
  std::optional<std::string> SelectProtocol(const Group& g) const;
  bool SupportsProtocols(const Group& g, const std::string& type,
                         const std::vector<std::string>& names) const;
  kafka::JoinGroupResponse JoinResponseFor(const Group& g, const Member& m, bool with_members,
                                           int16_t version) const;
  void AnswerJoin(Member& m, kafka::JoinGroupResponse resp);
  void AnswerSyncError(Group& g, int16_t error);
  GroupValue GroupRecord(const Group& g) const;
  // Persists the group's metadata, then runs `done` with the append status.
  void StoreGroup(Group& g, absl::AnyInvocable<void(absl::Status)> done);
  std::set<std::string> SubscribedTopics(const Group& g) const;
  void MaybeDropGroup(const std::string& id);
  // A log line for a refusal by group.max.size or the metadata caps, at most one a minute.
  void LogLimit(const std::string& group, const std::string& what);

  GroupEnv* const env_;
  const GroupOptions options_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
  uint64_t next_join_seq_ = 1;
  uint64_t next_token_ = 1;
  uint64_t id_counter_ = 0;
  uint64_t id_seed_;
  uint64_t limit_hits_ = 0;
  uint64_t limit_hits_logged_ = 0;
  int64_t last_limit_log_ms_ = INT64_MIN / 2;
};

}  // namespace sluice::broker
