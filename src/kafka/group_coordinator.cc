#include "src/kafka/group_coordinator.h"

#include <algorithm>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "log/logging.h"
#include "net/kafka/error_codes.h"
#include "net/kafka/messages/consumer_protocol_subscription.h"

namespace sluice::broker {

namespace errors = kafka::errors;

std::string_view GroupStateName(GroupState state) {
  switch (state) {
    case GroupState::kEmpty:
      return "Empty";
    case GroupState::kPreparingRebalance:
      return "PreparingRebalance";
    case GroupState::kCompletingRebalance:
      return "CompletingRebalance";
    case GroupState::kStable:
      return "Stable";
    case GroupState::kDead:
      return "Dead";
  }
  return "Dead";
}

namespace {

bool SameProtocols(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& a,
                   const std::vector<kafka::JoinGroupRequest::JoinGroupRequestProtocol>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].name || a[i].second != b[i].metadata) return false;
  }
  return true;
}

std::vector<std::pair<std::string, std::vector<uint8_t>>> ProtocolsOf(
    const kafka::JoinGroupRequest& req) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  for (const auto& p : req.protocols) out.emplace_back(p.name, p.metadata);
  return out;
}

kafka::JoinGroupResponse JoinError(int16_t error, const std::string& member_id, int16_t version) {
  kafka::JoinGroupResponse r;
  r.error_code = error;
  r.member_id = member_id;
  r.generation_id = -1;
  // Null only where the version allows it (v7+); older versions carry an empty string.
  if (version >= 7) r.protocol_name.reset();
  return r;
}

kafka::SyncGroupResponse SyncError(int16_t error) {
  kafka::SyncGroupResponse r;
  r.error_code = error;
  return r;
}

}  // namespace

const std::vector<uint8_t>* GroupCoordinator::Member::Metadata(const std::string& protocol) const {
  for (const auto& [name, metadata] : protocols) {
    if (name == protocol) return &metadata;
  }
  return nullptr;
}

size_t GroupCoordinator::Member::MetadataBytes() const {
  size_t bytes = assignment.size();
  for (const auto& [name, metadata] : protocols) bytes += name.size() + metadata.size();
  return bytes;
}

GroupCoordinator::GroupCoordinator(GroupEnv* env, GroupOptions options)
    : env_(env), options_(std::move(options)), id_seed_(std::random_device{}()) {}

GroupCoordinator::~GroupCoordinator() {
  for (auto& [id, g] : groups_) CancelTimers(*g);
}

void GroupCoordinator::CancelTimers(Group& g) {
  if (g.join_timer != 0) env_->Cancel(g.join_timer);
  g.join_timer = 0;
  ++g.join_token;
  for (auto& [id, timer] : g.pending_members) env_->Cancel(timer);
  for (auto& [id, m] : g.members) {
    if (m.session_timer != 0) env_->Cancel(m.session_timer);
    m.session_timer = 0;
  }
}

GroupCoordinator::Group* GroupCoordinator::Find(const std::string& id) {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : it->second.get();
}

const GroupCoordinator::Group* GroupCoordinator::Find(const std::string& id) const {
  auto it = groups_.find(id);
  return it == groups_.end() ? nullptr : it->second.get();
}

GroupCoordinator::Group& GroupCoordinator::GetOrCreate(const std::string& id) {
  auto& slot = groups_[id];
  if (!slot) {
    slot = std::make_unique<Group>();
    slot->id = id;
    slot->state_timestamp_ms = env_->NowMs();
  }
  return *slot;
}

void GroupCoordinator::Transition(Group& g, GroupState state) {
  g.state = state;
  g.state_timestamp_ms = env_->NowMs();
}

std::string GroupCoordinator::NewMemberId(std::string_view prefix) {
  // A random UUID-shaped suffix, as Kafka does (clientId or instance id + "-" + UUID).
  std::mt19937_64 rng(id_seed_ ^ (++id_counter_ * 0x9E3779B97F4A7C15ull));
  uint64_t a = rng(), b = rng();
  return absl::StrFormat("%s-%08x-%04x-%04x-%04x-%012x", prefix, a >> 32, (a >> 16) & 0xffff,
                         a & 0xffff, b >> 48, b & 0xffffffffffffull);
}

int16_t GroupCoordinator::ValidateMember(const Group& g, const std::string& member_id,
                                         const std::optional<std::string>& instance_id) const {
  if (instance_id.has_value()) {
    auto it = g.static_members.find(*instance_id);
    if (it != g.static_members.end() && it->second != member_id) return errors::kFencedInstanceId;
  }
  if (!g.members.contains(member_id)) return errors::kUnknownMemberId;
  return errors::kNone;
}

size_t GroupCoordinator::GroupMetadataBytes(const Group& g) const {
  size_t bytes = 0;
  for (const auto& [id, m] : g.members) bytes += m.MetadataBytes();
  return bytes;
}

int16_t GroupCoordinator::AdmitJoin(const Group& g, const kafka::JoinGroupRequest& req) const {
  size_t bytes = 0;
  for (const auto& p : req.protocols) bytes += p.name.size() + p.metadata.size();
  if (bytes > options_.max_member_metadata_bytes) return errors::kMessageTooLarge;
  // The member this join is from, if it is one: by id, or the static member it replaces.
  const Member* m = nullptr;
  if (auto it = g.members.find(req.member_id); it != g.members.end()) {
    m = &it->second;
  } else if (req.member_id.empty() && req.group_instance_id.has_value()) {
    if (auto s = g.static_members.find(*req.group_instance_id); s != g.static_members.end()) {
      if (auto it2 = g.members.find(s->second); it2 != g.members.end()) m = &it2->second;
    }
  }
  // group.max.size, as Kafka's acceptJoiningMember: while rebalancing, the members that
  // rejoined count (the last to rejoin of a group above the limit are the ones refused);
  // otherwise the members. A static member replacing its old id takes no new place.
  const size_t max_size = static_cast<size_t>(std::max(options_.max_size, 1));
  bool fits = true;
  switch (g.state) {
    case GroupState::kEmpty:
    case GroupState::kDead:
      break;
    case GroupState::kPreparingRebalance: {
      size_t awaiting = 0;
      for (const auto& [id, x] : g.members) awaiting += x.awaiting_join ? 1 : 0;
      fits = (m != nullptr && m->awaiting_join) || awaiting < max_size;
      break;
    }
    case GroupState::kCompletingRebalance:
    case GroupState::kStable:
      fits = m != nullptr || g.members.size() < max_size;
      break;
  }
  if (!fits) return errors::kGroupMaxSizeReached;
  // The join replaces the member's protocols; its assignment goes with the next generation.
  const size_t others = GroupMetadataBytes(g) - (m != nullptr ? m->MetadataBytes() : 0);
  if (others + bytes > options_.max_group_metadata_bytes) return errors::kGroupMaxSizeReached;
  return errors::kNone;
}

void GroupCoordinator::LogLimit(const std::string& group, const std::string& what) {
  // A flood of refused joins must not flood the log: one line a minute, with the count.
  ++limit_hits_;
  const int64_t now = env_->NowMs();
  if (now - last_limit_log_ms_ < 60'000) return;
  storage::LogWarning("kafka: group %s: %s (%d refusals by group limits since the last line)",
                      group, what, limit_hits_ - limit_hits_logged_);
  last_limit_log_ms_ = now;
  limit_hits_logged_ = limit_hits_;
}

bool GroupCoordinator::SupportsProtocols(const Group& g, const std::string& type,
                                         const std::vector<std::string>& names) const {
  if (g.members.empty()) return !type.empty() && !names.empty();
  if (type != g.protocol_type) return false;
  for (const std::string& name : names) {
    bool all = true;
    for (const auto& [id, m] : g.members) {
      if (m.Metadata(name) == nullptr) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

std::optional<std::string> GroupCoordinator::SelectProtocol(const Group& g) const {
  if (g.members.empty()) return std::nullopt;
  // Candidates: supported by every member, in the order the first-joined member prefers them.
  const Member* first = nullptr;
  for (const auto& [id, m] : g.members) {
    if (first == nullptr || m.join_seq < first->join_seq) first = &m;
  }
  std::vector<std::string> candidates;
  for (const auto& [name, md] : first->protocols) {
    bool all = true;
    for (const auto& [id, m] : g.members) all = all && m.Metadata(name) != nullptr;
    if (all) candidates.push_back(name);
  }
  if (candidates.empty()) return std::nullopt;
  // Each member votes for its most preferred candidate; most votes wins, ties by the order above.
  std::map<std::string, int> votes;
  for (const auto& [id, m] : g.members) {
    for (const auto& [name, md] : m.protocols) {
      if (std::find(candidates.begin(), candidates.end(), name) != candidates.end()) {
        ++votes[name];
        break;
      }
    }
  }
  std::string best = candidates.front();
  for (const std::string& c : candidates) {
    if (votes[c] > votes[best]) best = c;
  }
  return best;
}

kafka::JoinGroupResponse GroupCoordinator::JoinResponseFor(const Group& g, const Member& m,
                                                           bool with_members,
                                                           int16_t version) const {
  kafka::JoinGroupResponse r;
  r.generation_id = g.generation;
  r.protocol_type = g.protocol_type;
  r.protocol_name = g.protocol;
  if (version < 7 && !r.protocol_name) r.protocol_name = "";
  r.leader = g.leader.value_or("");
  r.member_id = m.id;
  if (with_members && g.protocol.has_value()) {
    std::vector<const Member*> order;
    for (const auto& [id, x] : g.members) order.push_back(&x);
    std::sort(order.begin(), order.end(),
              [](const Member* a, const Member* b) { return a->join_seq < b->join_seq; });
    for (const Member* x : order) {
      auto& rm = r.members.emplace_back();
      rm.member_id = x->id;
      rm.group_instance_id = x->instance_id;
      if (const auto* md = x->Metadata(*g.protocol)) rm.metadata = *md;
    }
  }
  return r;
}

void GroupCoordinator::AnswerJoin(Member& m, kafka::JoinGroupResponse resp) {
  if (!m.awaiting_join) return;
  JoinCallback cb = std::move(m.awaiting_join);
  m.awaiting_join = nullptr;
  cb(std::move(resp));
}

void GroupCoordinator::AnswerSyncError(Group& g, int16_t error) {
  for (auto& [id, m] : g.members) {
    if (!m.awaiting_sync) continue;
    SyncCallback cb = std::move(m.awaiting_sync);
    m.awaiting_sync = nullptr;
    cb(SyncError(error));
  }
}

// ---- JoinGroup ----

void GroupCoordinator::JoinGroup(const kafka::JoinGroupRequest& req, int16_t version,
                                 const std::string& client_id, const std::string& client_host,
                                 JoinCallback done) {
  auto fail = [&](int16_t error, const std::string& member_id = "") {
    done(JoinError(error, member_id, version));
  };
  if (req.group_id.empty()) return fail(errors::kInvalidGroupId, req.member_id);
  if (req.session_timeout_ms < options_.min_session_timeout_ms ||
      req.session_timeout_ms > options_.max_session_timeout_ms) {
    return fail(errors::kInvalidSessionTimeout, req.member_id);
  }
  Group* g = Find(req.group_id);
  if (g == nullptr) {
    if (!req.member_id.empty()) return fail(errors::kUnknownMemberId, req.member_id);
    g = &GetOrCreate(req.group_id);
  }
  if (g->state == GroupState::kDead) return fail(errors::kCoordinatorNotAvailable, req.member_id);
  std::vector<std::string> names;
  for (const auto& p : req.protocols) names.push_back(p.name);
  if (!SupportsProtocols(*g, req.protocol_type, names)) {
    MaybeDropGroup(req.group_id);
    return fail(errors::kInconsistentGroupProtocol, req.member_id);
  }
  if (int16_t err = AdmitJoin(*g, req); err != errors::kNone) {
    LogLimit(g->id,
             absl::StrFormat(
                 "join of member '%s' (client %s, %s) refused with %s: %d "
                 "members, %d metadata bytes (group.max.size %d, "
                 "group.max.member.metadata.bytes %d, "
                 "group.max.metadata.bytes %d)",
                 req.member_id, client_id, client_host,
                 err == errors::kMessageTooLarge ? "MESSAGE_TOO_LARGE" : "GROUP_MAX_SIZE_REACHED",
                 g->members.size(), GroupMetadataBytes(*g), options_.max_size,
                 options_.max_member_metadata_bytes, options_.max_group_metadata_bytes));
    // As Kafka: a member that cannot stay is removed and starts over without an id.
    if (g->members.contains(req.member_id)) {
      RemoveMember(*g, req.member_id, "its join was refused by the group's limits");
    } else if (auto p = g->pending_members.find(req.member_id); p != g->pending_members.end()) {
      env_->Cancel(p->second);
      g->pending_members.erase(p);
      TryCompleteJoin(*g);
    }
    MaybeDropGroup(req.group_id);
    return fail(err);
  }
  auto new_member = [&](std::string id) {
    Member m;
    m.id = std::move(id);
    m.instance_id = req.group_instance_id;
    m.client_id = client_id;
    m.client_host = client_host;
    m.session_timeout_ms = req.session_timeout_ms;
    // v0 has no rebalance timeout: the session timeout serves for both.
    m.rebalance_timeout_ms =
        req.rebalance_timeout_ms > 0 ? req.rebalance_timeout_ms : req.session_timeout_ms;
    m.protocol_type = req.protocol_type;
    m.protocols = ProtocolsOf(req);
    return m;
  };

  if (req.member_id.empty()) {
    if (req.group_instance_id.has_value()) {
      auto it = g->static_members.find(*req.group_instance_id);
      if (it != g->static_members.end() && g->members.contains(it->second)) {
        return ReplaceStaticMember(*g, it->second, req, std::move(done), version);
      }
      // Static members skip KIP-394's round trip: the instance id already names them.
      return AddMemberAndRebalance(*g, new_member(NewMemberId(*req.group_instance_id)),
                                   std::move(done), version);
    }
    if (version >= 4) {
      // KIP-394: hand out the id and wait for the member to come back with it. Ids handed out
      // and not yet used are bounded like members (each holds a timer).
      if (g->pending_members.size() >= static_cast<size_t>(std::max(options_.max_size, 1))) {
        LogLimit(g->id, absl::StrFormat("%d member ids handed out and not yet used: join from "
                                        "client %s refused (group.max.size %d)",
                                        g->pending_members.size(), client_id, options_.max_size));
        return fail(errors::kGroupMaxSizeReached);
      }
      std::string id = NewMemberId(client_id);
      const int32_t session = req.session_timeout_ms;
      g->pending_members[id] =
          env_->RunAfter(absl::Milliseconds(session), [this, gid = g->id, id]() {
            Group* pg = Find(gid);
            if (pg == nullptr) return;
            pg->pending_members.erase(id);
            TryCompleteJoin(*pg);
            MaybeDropGroup(gid);  // a group only this member would have created
          });
      return fail(errors::kMemberIdRequired, id);
    }
    return AddMemberAndRebalance(*g, new_member(NewMemberId(client_id)), std::move(done), version);
  }

  if (auto p = g->pending_members.find(req.member_id); p != g->pending_members.end()) {
    env_->Cancel(p->second);
    g->pending_members.erase(p);
    return AddMemberAndRebalance(*g, new_member(req.member_id), std::move(done), version);
  }
  if (int16_t err = ValidateMember(*g, req.member_id, req.group_instance_id); err != 0) {
    return fail(err, req.member_id);
  }
  Member& m = g->members.at(req.member_id);
  switch (g->state) {
    case GroupState::kPreparingRebalance:
      return UpdateMemberAndRebalance(*g, m, req, std::move(done), version);
    case GroupState::kCompletingRebalance:
      if (SameProtocols(m.protocols, req.protocols)) {
        // A retry of a join whose answer was lost: the same answer again.
        return done(JoinResponseFor(*g, m, g->leader == m.id, version));
      }
      return UpdateMemberAndRebalance(*g, m, req, std::move(done), version);
    case GroupState::kStable:
      if (g->leader == m.id || !SameProtocols(m.protocols, req.protocols)) {
        // The leader rejoining (e.g. it saw a metadata change) or new protocols: rebalance.
        return UpdateMemberAndRebalance(*g, m, req, std::move(done), version);
      }
      ScheduleSession(*g, m);
      return done(JoinResponseFor(*g, m, false, version));
    case GroupState::kEmpty:
    case GroupState::kDead:
      return fail(errors::kUnknownMemberId, req.member_id);
  }
}

void GroupCoordinator::AddMemberAndRebalance(Group& g, Member member, JoinCallback done,
                                             int16_t version) {
  member.join_seq = next_join_seq_++;
  member.awaiting_join = std::move(done);
  member.join_version = version;
  if (g.members.empty()) g.protocol_type = member.protocol_type;
  if (member.instance_id.has_value()) g.static_members[*member.instance_id] = member.id;
  if (g.state == GroupState::kPreparingRebalance && g.initial_join) g.new_member_added = true;
  std::string id = member.id;
  g.members.emplace(id, std::move(member));
  MaybePrepareRebalance(g, "a new member joined");
  if (g.state == GroupState::kPreparingRebalance) TryCompleteJoin(g);
}

void GroupCoordinator::UpdateMemberAndRebalance(Group& g, Member& m,
                                                const kafka::JoinGroupRequest& req,
                                                JoinCallback done, int16_t version) {
  m.protocols = ProtocolsOf(req);
  m.session_timeout_ms = req.session_timeout_ms;
  m.rebalance_timeout_ms =
      req.rebalance_timeout_ms > 0 ? req.rebalance_timeout_ms : req.session_timeout_ms;
  if (m.awaiting_join) {
    // A second join from the same member supersedes the first; the first must still be
    // answered (its connection waits for it in order).
    AnswerJoin(m, JoinError(errors::kRebalanceInProgress, m.id, m.join_version));
  }
  m.awaiting_join = std::move(done);
  m.join_version = version;
  MaybePrepareRebalance(g, "a member rejoined");
  if (g.state == GroupState::kPreparingRebalance) TryCompleteJoin(g);
}

void GroupCoordinator::ReplaceStaticMember(Group& g, const std::string& old_id,
                                           const kafka::JoinGroupRequest& req, JoinCallback done,
                                           int16_t version) {
  auto node = g.members.extract(old_id);
  Member m = std::move(node.mapped());
  if (m.session_timer != 0) env_->Cancel(m.session_timer);
  m.session_timer = 0;
  // The old incarnation is fenced: anything it still waits for is answered so.
  AnswerJoin(m, JoinError(errors::kFencedInstanceId, old_id, m.join_version));
  if (m.awaiting_sync) {
    SyncCallback cb = std::move(m.awaiting_sync);
    m.awaiting_sync = nullptr;
    cb(SyncError(errors::kFencedInstanceId));
  }
  const std::optional<std::string> leader_before = g.leader;
  const std::string new_id = NewMemberId(*req.group_instance_id);
  if (g.leader == old_id) g.leader = new_id;
  g.static_members[*req.group_instance_id] = new_id;
  const bool same_protocols = SameProtocols(m.protocols, req.protocols);
  m.id = new_id;
  m.protocols = ProtocolsOf(req);
  m.session_timeout_ms = req.session_timeout_ms;
  m.rebalance_timeout_ms =
      req.rebalance_timeout_ms > 0 ? req.rebalance_timeout_ms : req.session_timeout_ms;
  Member& nm = g.members.emplace(new_id, std::move(m)).first->second;

  switch (g.state) {
    case GroupState::kStable: {
      std::optional<std::string> next = SelectProtocol(g);
      if (!same_protocols && next != g.protocol) {
        nm.awaiting_join = std::move(done);
        nm.join_version = version;
        MaybePrepareRebalance(g, "a static member rejoined with other protocols");
        return;
      }
      // KIP-345: the member's assignment stays; persist the new member id, then answer with
      // the current generation. The leader named is the one before the replacement, so a
      // returning leader does not run a (pointless) assignment of a stable group.
      ScheduleSession(g, nm);
      StoreGroup(g, [this, gid = g.id, new_id, leader_before, version,
                     done = std::move(done)](absl::Status s) mutable {
        Group* cg = Find(gid);
        const Member* m = nullptr;
        if (cg != nullptr) {
          auto it = cg->members.find(new_id);
          if (it != cg->members.end()) m = &it->second;
        }
        if (!s.ok() || m == nullptr) {
          done(JoinError(s.ok() ? errors::kUnknownMemberId : errors::kCoordinatorNotAvailable,
                         new_id, version));
          return;
        }
        const bool skip = version >= 9 && cg->leader == new_id;
        kafka::JoinGroupResponse r = JoinResponseFor(*cg, *m, skip, version);
        r.leader = leader_before.value_or("");
        r.skip_assignment = skip;
        done(std::move(r));
      });
      return;
    }
    case GroupState::kCompletingRebalance:
      // The old id may already be in the leader's assignment: start over.
      nm.awaiting_join = std::move(done);
      nm.join_version = version;
      PrepareRebalance(g, "a static member rejoined during a sync");
      return;
    case GroupState::kPreparingRebalance:
    case GroupState::kEmpty:
    case GroupState::kDead:
      nm.awaiting_join = std::move(done);
      nm.join_version = version;
      MaybePrepareRebalance(g, "a static member rejoined");
      if (g.state == GroupState::kPreparingRebalance) TryCompleteJoin(g);
      return;
  }
}

void GroupCoordinator::MaybePrepareRebalance(Group& g, std::string_view reason) {
  if (g.state == GroupState::kStable || g.state == GroupState::kCompletingRebalance ||
      g.state == GroupState::kEmpty) {
    PrepareRebalance(g, reason);
  }
}

void GroupCoordinator::PrepareRebalance(Group& g, std::string_view reason) {
  storage::LogInfo("kafka: group %s: preparing rebalance in %s (generation %d, %d members): %s",
                   g.id, GroupStateName(g.state), g.generation, g.members.size(), reason);
  if (g.state == GroupState::kCompletingRebalance) {
    // Members waiting for the assignment of the aborted generation rejoin.
    AnswerSyncError(g, errors::kRebalanceInProgress);
  }
  if (g.join_timer != 0) env_->Cancel(g.join_timer);
  int64_t rebalance_timeout_ms = 0;
  for (const auto& [id, m] : g.members) {
    rebalance_timeout_ms = std::max<int64_t>(rebalance_timeout_ms, m.rebalance_timeout_ms);
  }
  const int64_t initial_delay_ms = absl::ToInt64Milliseconds(options_.initial_rebalance_delay);
  int64_t delay_ms = rebalance_timeout_ms;
  g.initial_join = false;
  if (g.state == GroupState::kEmpty && initial_delay_ms > 0) {
    // group.initial.rebalance.delay.ms: wait for more members before the first generation.
    g.initial_join = true;
    g.new_member_added = false;
    delay_ms = std::min(initial_delay_ms, rebalance_timeout_ms);
    g.initial_remaining_ms = std::max<int64_t>(rebalance_timeout_ms - delay_ms, 0);
  }
  Transition(g, GroupState::kPreparingRebalance);
  const uint64_t token = ++g.join_token;
  g.join_timer = env_->RunAfter(absl::Milliseconds(delay_ms),
                                [this, gid = g.id, token] { OnJoinTimer(gid, token); });
  if (!g.initial_join) TryCompleteJoin(g);
}

void GroupCoordinator::TryCompleteJoin(Group& g) {
  if (g.state != GroupState::kPreparingRebalance || g.initial_join) return;
  if (!g.pending_members.empty()) return;
  for (const auto& [id, m] : g.members) {
    if (!m.awaiting_join) return;
  }
  CompleteJoin(g);
}

void GroupCoordinator::OnJoinTimer(const std::string& group_id, uint64_t token) {
  Group* g = Find(group_id);
  if (g == nullptr || g->join_token != token || g->state != GroupState::kPreparingRebalance) {
    return;
  }
  g->join_timer = 0;
  if (g->initial_join && g->new_member_added && g->initial_remaining_ms > 0) {
    // Members are still arriving: wait another delay (bounded by the rebalance timeout).
    g->new_member_added = false;
    const int64_t delay_ms = std::min<int64_t>(
        absl::ToInt64Milliseconds(options_.initial_rebalance_delay), g->initial_remaining_ms);
    g->initial_remaining_ms -= delay_ms;
    const uint64_t next = ++g->join_token;
    g->join_timer = env_->RunAfter(absl::Milliseconds(delay_ms),
                                   [this, gid = g->id, next] { OnJoinTimer(gid, next); });
    return;
  }
  CompleteJoin(*g);
}

void GroupCoordinator::CompleteJoin(Group& g) {
  if (g.join_timer != 0) env_->Cancel(g.join_timer);
  g.join_timer = 0;
  ++g.join_token;
  g.initial_join = false;
  // Members that did not rejoin within the rebalance timeout are out.
  std::vector<std::string> gone;
  for (const auto& [id, m] : g.members) {
    if (!m.awaiting_join) gone.push_back(id);
  }
  for (const std::string& id : gone) {
    storage::LogInfo("kafka: group %s: member %s did not rejoin in time: removed", g.id, id);
    Member& m = g.members.at(id);
    if (m.session_timer != 0) env_->Cancel(m.session_timer);
    if (m.instance_id.has_value()) {
      auto it = g.static_members.find(*m.instance_id);
      if (it != g.static_members.end() && it->second == id) g.static_members.erase(it);
    }
    g.members.erase(id);
  }
  if (g.leader.has_value() && !g.members.contains(*g.leader)) g.leader.reset();
  ++g.generation;
  if (g.members.empty()) {
    g.protocol.reset();
    g.leader.reset();
    Transition(g, GroupState::kEmpty);
    StoreGroup(g, [](absl::Status) {});
    return;
  }
  g.protocol = SelectProtocol(g);
  if (!g.leader.has_value()) {
    const Member* first = nullptr;
    for (const auto& [id, m] : g.members) {
      if (first == nullptr || m.join_seq < first->join_seq) first = &m;
    }
    g.leader = first->id;
  }
  Transition(g, GroupState::kCompletingRebalance);
  storage::LogInfo("kafka: group %s: generation %d with %d members, protocol %s, leader %s", g.id,
                   g.generation, g.members.size(), g.protocol.value_or(""), *g.leader);
  for (auto& [id, m] : g.members) {
    m.assignment.clear();
    ScheduleSession(g, m);
    AnswerJoin(m, JoinResponseFor(g, m, g.leader == id, m.join_version));
  }
}

// ---- sessions, leaving ----

void GroupCoordinator::ScheduleSession(Group& g, Member& m) {
  if (m.session_timer != 0) env_->Cancel(m.session_timer);
  const uint64_t token = next_token_++;
  m.session_token = token;
  m.session_timer =
      env_->RunAfter(absl::Milliseconds(m.session_timeout_ms),
                     [this, gid = g.id, mid = m.id, token] { OnSessionExpired(gid, mid, token); });
}

void GroupCoordinator::OnSessionExpired(const std::string& group_id, const std::string& member_id,
                                        uint64_t token) {
  Group* g = Find(group_id);
  if (g == nullptr) return;
  auto it = g->members.find(member_id);
  if (it == g->members.end() || it->second.session_token != token) return;
  it->second.session_timer = 0;
  if (it->second.awaiting_join || it->second.awaiting_sync) {
    // Waiting on us, not silent: the join timer or the leader's session bounds the wait.
    ScheduleSession(*g, it->second);
    return;
  }
  RemoveMember(*g, member_id, "session timeout");
}

void GroupCoordinator::RemoveMember(Group& g, const std::string& member_id,
                                    std::string_view reason) {
  auto it = g.members.find(member_id);
  if (it == g.members.end()) return;
  storage::LogInfo("kafka: group %s: member %s removed: %s", g.id, member_id, reason);
  Member& m = it->second;
  if (m.session_timer != 0) env_->Cancel(m.session_timer);
  AnswerJoin(m, JoinError(errors::kUnknownMemberId, member_id, m.join_version));
  if (m.awaiting_sync) {
    SyncCallback cb = std::move(m.awaiting_sync);
    m.awaiting_sync = nullptr;
    cb(SyncError(errors::kUnknownMemberId));
  }
  if (m.instance_id.has_value()) {
    auto s = g.static_members.find(*m.instance_id);
    if (s != g.static_members.end() && s->second == member_id) g.static_members.erase(s);
  }
  g.members.erase(it);
  if (g.leader == member_id) g.leader.reset();
  switch (g.state) {
    case GroupState::kStable:
    case GroupState::kCompletingRebalance:
      MaybePrepareRebalance(g, "a member left");
      break;
    case GroupState::kPreparingRebalance:
      TryCompleteJoin(g);
      break;
    case GroupState::kEmpty:
    case GroupState::kDead:
      break;
  }
}

// ---- SyncGroup, Heartbeat, LeaveGroup ----

void GroupCoordinator::SyncGroup(const kafka::SyncGroupRequest& req, int16_t version,
                                 SyncCallback done) {
  (void)version;
  Group* g = Find(req.group_id);
  if (g == nullptr) return done(SyncError(errors::kUnknownMemberId));
  if (g->state == GroupState::kDead) return done(SyncError(errors::kCoordinatorNotAvailable));
  if (int16_t err = ValidateMember(*g, req.member_id, req.group_instance_id); err != 0) {
    return done(SyncError(err));
  }
  if (req.generation_id != g->generation) return done(SyncError(errors::kIllegalGeneration));
  if ((req.protocol_type.has_value() && *req.protocol_type != g->protocol_type) ||
      (req.protocol_name.has_value() && req.protocol_name != g->protocol)) {
    return done(SyncError(errors::kInconsistentGroupProtocol));
  }
  Member& m = g->members.at(req.member_id);
  auto answer = [g](const Member& x) {
    kafka::SyncGroupResponse r;
    r.protocol_type = g->protocol_type;
    r.protocol_name = g->protocol;
    r.assignment = x.assignment;
    return r;
  };
  switch (g->state) {
    case GroupState::kEmpty:
      return done(SyncError(errors::kUnknownMemberId));
    case GroupState::kPreparingRebalance:
      return done(SyncError(errors::kRebalanceInProgress));
    case GroupState::kStable:
      ScheduleSession(*g, m);
      return done(answer(m));
    case GroupState::kDead:
      return done(SyncError(errors::kCoordinatorNotAvailable));
    case GroupState::kCompletingRebalance:
      break;
  }
  if (m.awaiting_sync) {
    SyncCallback old = std::move(m.awaiting_sync);
    old(SyncError(errors::kRebalanceInProgress));
  }
  m.awaiting_sync = std::move(done);
  ScheduleSession(*g, m);
  if (g->leader != m.id) return;
  // The leader's assignment: persist it with the group, then hand it out.
  std::map<std::string, std::vector<uint8_t>> assignments;
  for (const auto& a : req.assignments) {
    if (g->members.contains(a.member_id)) assignments[a.member_id] = a.assignment;
  }
  // The assignments count against the metadata caps like the members' own metadata.
  size_t group_bytes = 0;
  bool member_too_large = false;
  for (const auto& [id, x] : g->members) {
    auto a = assignments.find(id);
    const size_t bytes =
        x.MetadataBytes() - x.assignment.size() + (a != assignments.end() ? a->second.size() : 0);
    member_too_large |= bytes > options_.max_member_metadata_bytes;
    group_bytes += bytes;
  }
  if (member_too_large || group_bytes > options_.max_group_metadata_bytes) {
    LogLimit(g->id, absl::StrFormat("assignment of leader %s refused with MESSAGE_TOO_LARGE: "
                                    "%d bytes with the members' metadata "
                                    "(group.max.member.metadata.bytes %d, "
                                    "group.max.metadata.bytes %d)",
                                    m.id, group_bytes, options_.max_member_metadata_bytes,
                                    options_.max_group_metadata_bytes));
    SyncCallback cb = std::move(m.awaiting_sync);
    m.awaiting_sync = nullptr;
    cb(SyncError(errors::kMessageTooLarge));
    // The others rejoin (REBALANCE_IN_PROGRESS); the leader may assign again.
    PrepareRebalance(*g, "the leader's assignment was too large");
    return;
  }
  for (auto& [id, x] : g->members) x.assignment = assignments[id];
  const int32_t generation = g->generation;
  StoreGroup(*g, [this, gid = g->id, generation](absl::Status s) {
    Group* cg = Find(gid);
    // A rebalance that started meanwhile already answered the waiting members.
    if (cg == nullptr || cg->state != GroupState::kCompletingRebalance ||
        cg->generation != generation) {
      return;
    }
    if (!s.ok()) {
      for (auto& [id, x] : cg->members) x.assignment.clear();
      AnswerSyncError(*cg, errors::kCoordinatorNotAvailable);
      PrepareRebalance(*cg, "the group record could not be written");
      return;
    }
    Transition(*cg, GroupState::kStable);
    for (auto& [id, x] : cg->members) {
      if (!x.awaiting_sync) continue;
      SyncCallback cb = std::move(x.awaiting_sync);
      x.awaiting_sync = nullptr;
      kafka::SyncGroupResponse r;
      r.protocol_type = cg->protocol_type;
      r.protocol_name = cg->protocol;
      r.assignment = x.assignment;
      cb(std::move(r));
    }
  });
}

int16_t GroupCoordinator::Heartbeat(const kafka::HeartbeatRequest& req) {
  Group* g = Find(req.group_id);
  if (g == nullptr) return errors::kUnknownMemberId;
  if (g->state == GroupState::kDead) return errors::kCoordinatorNotAvailable;
  if (int16_t err = ValidateMember(*g, req.member_id, req.group_instance_id); err != 0) return err;
  Member& m = g->members.at(req.member_id);
  switch (g->state) {
    case GroupState::kEmpty:
    case GroupState::kDead:
      return errors::kUnknownMemberId;
    case GroupState::kPreparingRebalance:
      ScheduleSession(*g, m);
      return errors::kRebalanceInProgress;
    case GroupState::kCompletingRebalance:
    case GroupState::kStable:
      if (req.generation_id != g->generation) return errors::kIllegalGeneration;
      ScheduleSession(*g, m);
      return errors::kNone;
  }
  return errors::kNone;
}

kafka::LeaveGroupResponse GroupCoordinator::LeaveGroup(const kafka::LeaveGroupRequest& req,
                                                       int16_t version) {
  kafka::LeaveGroupResponse resp;
  std::vector<kafka::LeaveGroupRequest::MemberIdentity> who = req.members;
  if (version < 3) {
    who.clear();
    who.emplace_back().member_id = req.member_id;
  }
  Group* g = Find(req.group_id);
  for (const auto& id : who) {
    auto& r = resp.members.emplace_back();
    r.member_id = id.member_id;
    r.group_instance_id = id.group_instance_id;
    if (g == nullptr || g->state == GroupState::kDead) {
      r.error_code = errors::kUnknownMemberId;
      continue;
    }
    std::string member_id = id.member_id;
    if (id.group_instance_id.has_value()) {
      auto it = g->static_members.find(*id.group_instance_id);
      if (it == g->static_members.end()) {
        r.error_code = errors::kUnknownMemberId;
        continue;
      }
      if (!member_id.empty() && it->second != member_id) {
        r.error_code = errors::kFencedInstanceId;
        continue;
      }
      member_id = it->second;
    } else if (auto p = g->pending_members.find(member_id); p != g->pending_members.end()) {
      env_->Cancel(p->second);
      g->pending_members.erase(p);
      TryCompleteJoin(*g);
      continue;
    }
    if (!g->members.contains(member_id)) {
      r.error_code = errors::kUnknownMemberId;
      continue;
    }
    RemoveMember(*g, member_id, "left the group");
  }
  if (version < 3) {
    resp.error_code = resp.members.front().error_code;
    resp.members.clear();
  }
  return resp;
}

// ---- offsets ----

void GroupCoordinator::CommitOffsets(const kafka::OffsetCommitRequest& req, int16_t version,
                                     CommitCallback done) {
  kafka::OffsetCommitResponse resp;
  for (const auto& t : req.topics) {
    auto& rt = resp.topics.emplace_back();
    rt.name = t.name;
    for (const auto& p : t.partitions)
      rt.partitions.emplace_back().partition_index = p.partition_index;
  }
  auto fail_all = [&](int16_t error) {
    for (auto& t : resp.topics) {
      for (auto& p : t.partitions) p.error_code = error;
    }
    done(std::move(resp));
  };
  if (req.group_id.empty()) return fail_all(errors::kInvalidGroupId);
  const int32_t generation = version >= 1 ? req.generation_id_or_member_epoch : -1;
  const std::string member_id = version >= 1 ? req.member_id : "";
  Group* g = Find(req.group_id);
  if (g == nullptr) {
    // Kafka allows commits without group management (generation -1) to any group.
    if (generation >= 0) return fail_all(errors::kIllegalGeneration);
    g = &GetOrCreate(req.group_id);
  } else if (g->state == GroupState::kDead) {
    return fail_all(errors::kCoordinatorNotAvailable);
  } else if (generation >= 0 || !member_id.empty() || req.group_instance_id.has_value()) {
    if (int16_t err = ValidateMember(*g, member_id, req.group_instance_id); err != 0) {
      return fail_all(err);
    }
    if (generation != g->generation) return fail_all(errors::kIllegalGeneration);
    if (g->state == GroupState::kCompletingRebalance) {
      return fail_all(errors::kRebalanceInProgress);
    }
    ScheduleSession(*g, g->members.at(member_id));
  } else if (g->state != GroupState::kEmpty) {
    return fail_all(errors::kUnknownMemberId);
  }

  struct Pending {
    size_t topic, partition;
    std::string name;
    int32_t index;
    OffsetValue value;
  };
  std::vector<Pending> pending;
  std::vector<OffsetsRecord> records;
  const int64_t now = env_->NowMs();
  for (size_t i = 0; i < req.topics.size(); ++i) {
    const auto& t = req.topics[i];
    const int32_t partitions = env_->PartitionCount(t.name);
    for (size_t j = 0; j < t.partitions.size(); ++j) {
      const auto& p = t.partitions[j];
      int16_t& err = resp.topics[i].partitions[j].error_code;
      if (p.partition_index < 0 || p.partition_index >= partitions) {
        err = errors::kUnknownTopicOrPartition;
        continue;
      }
      const std::string metadata = p.committed_metadata.value_or("");
      if (metadata.size() > options_.max_metadata_bytes) {
        err = errors::kOffsetMetadataTooLarge;
        continue;
      }
      OffsetValue v;
      v.offset = p.committed_offset;
      v.leader_epoch = version >= 6 ? p.committed_leader_epoch : -1;
      v.metadata = metadata;
      v.commit_timestamp_ms = now;
      records.push_back({EncodeOffsetsKey(OffsetKey{req.group_id, t.name, p.partition_index}),
                         EncodeOffsetValue(v)});
      pending.push_back({i, j, t.name, p.partition_index, v});
    }
  }
  if (records.empty()) return done(std::move(resp));
  // Answered only once the records are durable: a commit acknowledged survives kill -9.
  env_->Append(PartitionFor(req.group_id), std::move(records),
               [this, gid = req.group_id, pending = std::move(pending), resp = std::move(resp),
                done = std::move(done)](absl::Status s) mutable {
                 Group* cg = s.ok() ? &GetOrCreate(gid) : nullptr;
                 for (const Pending& p : pending) {
                   if (cg != nullptr) {
                     cg->offsets[{p.name, p.index}] = p.value;
                   } else {
                     resp.topics[p.topic].partitions[p.partition].error_code =
                         errors::kCoordinatorNotAvailable;
                   }
                 }
                 done(std::move(resp));
               });
}

kafka::OffsetFetchResponse GroupCoordinator::FetchOffsets(const kafka::OffsetFetchRequest& req,
                                                          int16_t version) {
  using Topic = kafka::OffsetFetchRequest::OffsetFetchRequestTopics;
  struct Query {
    std::string group;
    std::optional<std::vector<Topic>> topics;  // nullopt: every committed partition
  };
  std::vector<Query> queries;
  if (version >= 8) {
    for (const auto& g : req.groups) queries.push_back({g.group_id, g.topics});
  } else {
    Query q{req.group_id, std::nullopt};
    if (req.topics.has_value()) {
      q.topics.emplace();
      for (const auto& t : *req.topics) q.topics->push_back(Topic{t.name, t.partition_indexes});
    }
    queries.push_back(std::move(q));
  }
  struct Row {
    std::string topic;
    int32_t partition;
    const OffsetValue* value;  // nullptr: nothing committed
  };
  kafka::OffsetFetchResponse resp;
  for (const Query& q : queries) {
    const Group* g = Find(q.group);
    std::vector<Row> rows;
    if (!q.topics.has_value()) {
      if (g != nullptr) {
        for (const auto& [tp, v] : g->offsets) rows.push_back({tp.first, tp.second, &v});
      }
    } else {
      for (const Topic& t : *q.topics) {
        for (int32_t p : t.partition_indexes) {
          const OffsetValue* v = nullptr;
          if (g != nullptr) {
            auto it = g->offsets.find({t.name, p});
            if (it != g->offsets.end()) v = &it->second;
          }
          rows.push_back({t.name, p, v});
        }
      }
    }
    if (version >= 8) {
      auto& rg = resp.groups.emplace_back();
      rg.group_id = q.group;
      for (const Row& row : rows) {
        if (rg.topics.empty() || rg.topics.back().name != row.topic) {
          rg.topics.emplace_back().name = row.topic;
        }
        auto& rp = rg.topics.back().partitions.emplace_back();
        rp.partition_index = row.partition;
        rp.committed_offset = row.value ? row.value->offset : -1;
        rp.committed_leader_epoch = row.value ? row.value->leader_epoch : -1;
        rp.metadata = row.value ? row.value->metadata : "";
      }
    } else {
      for (const Row& row : rows) {
        if (resp.topics.empty() || resp.topics.back().name != row.topic) {
          resp.topics.emplace_back().name = row.topic;
        }
        auto& rp = resp.topics.back().partitions.emplace_back();
        rp.partition_index = row.partition;
        rp.committed_offset = row.value ? row.value->offset : -1;
        rp.committed_leader_epoch = row.value ? row.value->leader_epoch : -1;
        rp.metadata = row.value ? row.value->metadata : "";
      }
    }
  }
  return resp;
}

std::set<std::string> GroupCoordinator::SubscribedTopics(const Group& g) const {
  std::set<std::string> topics;
  if (!g.protocol.has_value()) return topics;
  for (const auto& [id, m] : g.members) {
    const auto* md = m.Metadata(*g.protocol);
    if (md == nullptr) continue;
    auto sub = kafka::ConsumerProtocolSubscription::DecodeVersioned(*md);
    if (!sub.ok()) continue;
    topics.insert(sub->topics.begin(), sub->topics.end());
  }
  return topics;
}

void GroupCoordinator::DeleteOffsets(const kafka::OffsetDeleteRequest& req,
                                     OffsetDeleteCallback done) {
  kafka::OffsetDeleteResponse resp;
  Group* g = Find(req.group_id);
  if (g == nullptr || g->state == GroupState::kDead) {
    resp.error_code = errors::kGroupIdNotFound;
    return done(std::move(resp));
  }
  if (g->state != GroupState::kEmpty && g->protocol_type != "consumer") {
    resp.error_code = errors::kNonEmptyGroup;
    return done(std::move(resp));
  }
  const std::set<std::string> subscribed =
      g->state == GroupState::kEmpty ? std::set<std::string>{} : SubscribedTopics(*g);
  std::vector<OffsetsRecord> records;
  std::vector<std::pair<std::string, int32_t>> erase;
  for (const auto& t : req.topics) {
    auto& rt = resp.topics.emplace_back();
    rt.name = t.name;
    const int32_t partitions = env_->PartitionCount(t.name);
    for (const auto& p : t.partitions) {
      auto& rp = rt.partitions.emplace_back();
      rp.partition_index = p.partition_index;
      if (subscribed.contains(t.name)) {
        rp.error_code = errors::kGroupSubscribedToTopic;
      } else if (p.partition_index < 0 || p.partition_index >= partitions) {
        rp.error_code = errors::kUnknownTopicOrPartition;
      } else if (g->offsets.contains({t.name, p.partition_index})) {
        records.push_back({EncodeOffsetsKey(OffsetKey{g->id, t.name, p.partition_index}), {}});
        erase.emplace_back(t.name, p.partition_index);
      }
    }
  }
  if (records.empty()) return done(std::move(resp));
  env_->Append(PartitionFor(g->id), std::move(records),
               [this, gid = g->id, erase = std::move(erase), resp = std::move(resp),
                done = std::move(done)](absl::Status s) mutable {
                 if (!s.ok()) {
                   resp.error_code = errors::kCoordinatorNotAvailable;
                 } else if (Group* cg = Find(gid)) {
                   for (const auto& tp : erase) cg->offsets.erase(tp);
                 }
                 done(std::move(resp));
               });
}

// ---- listing, describing, deleting groups ----

kafka::ListGroupsResponse GroupCoordinator::ListGroups(const kafka::ListGroupsRequest& req,
                                                       int16_t version) {
  kafka::ListGroupsResponse resp;
  for (const auto& [id, g] : groups_) {
    if (g->state == GroupState::kDead) continue;
    const std::string state(GroupStateName(g->state));
    if (version >= 4 && !req.states_filter.empty() &&
        std::none_of(req.states_filter.begin(), req.states_filter.end(),
                     [&](const std::string& s) { return absl::EqualsIgnoreCase(s, state); })) {
      continue;
    }
    auto& lg = resp.groups.emplace_back();
    lg.group_id = id;
    lg.protocol_type = g->protocol_type;
    lg.group_state = state;
  }
  return resp;
}

kafka::DescribeGroupsResponse GroupCoordinator::DescribeGroups(
    const kafka::DescribeGroupsRequest& req, int16_t version) {
  (void)version;
  kafka::DescribeGroupsResponse resp;
  for (const std::string& id : req.groups) {
    auto& dg = resp.groups.emplace_back();
    dg.group_id = id;
    const Group* g = Find(id);
    if (g == nullptr) {
      dg.group_state = std::string(GroupStateName(GroupState::kDead));
      continue;
    }
    dg.group_state = std::string(GroupStateName(g->state));
    dg.protocol_type = g->protocol_type;
    const bool stable = g->state == GroupState::kStable;
    // As Kafka: protocol, metadata and assignments only once the generation is stable.
    if (stable) dg.protocol_data = g->protocol.value_or("");
    for (const auto& [mid, m] : g->members) {
      auto& dm = dg.members.emplace_back();
      dm.member_id = mid;
      dm.group_instance_id = m.instance_id;
      dm.client_id = m.client_id;
      dm.client_host = m.client_host;
      if (stable) {
        if (const auto* md = m.Metadata(g->protocol.value_or(""))) dm.member_metadata = *md;
        dm.member_assignment = m.assignment;
      }
    }
  }
  return resp;
}

void GroupCoordinator::DeleteGroups(const kafka::DeleteGroupsRequest& req,
                                    DeleteGroupsCallback done) {
  struct State {
    kafka::DeleteGroupsResponse resp;
    int pending = 1;
    DeleteGroupsCallback done;
    void Finish() {
      if (--pending == 0) done(std::move(resp));
    }
  };
  auto state = std::make_shared<State>();
  state->done = std::move(done);
  for (const std::string& id : req.groups_names) {
    const size_t index = state->resp.results.size();
    auto& r = state->resp.results.emplace_back();
    r.group_id = id;
    Group* g = Find(id);
    if (g == nullptr || g->state == GroupState::kDead) {
      r.error_code = errors::kGroupIdNotFound;
      continue;
    }
    if (g->state != GroupState::kEmpty) {
      r.error_code = errors::kNonEmptyGroup;
      continue;
    }
    std::vector<OffsetsRecord> records;
    for (const auto& [tp, v] : g->offsets) {
      records.push_back({EncodeOffsetsKey(OffsetKey{id, tp.first, tp.second}), {}});
    }
    records.push_back({EncodeOffsetsKey(GroupKey{id}), {}});
    // Dead while the tombstones are written: no one joins a group being deleted.
    Transition(*g, GroupState::kDead);
    ++state->pending;
    env_->Append(PartitionFor(id), std::move(records), [this, id, index, state](absl::Status s) {
      Group* cg = Find(id);
      if (!s.ok()) {
        state->resp.results[index].error_code = errors::kCoordinatorNotAvailable;
        if (cg != nullptr) Transition(*cg, GroupState::kEmpty);
      } else if (cg != nullptr) {
        CancelTimers(*cg);
        groups_.erase(id);
      }
      state->Finish();
    });
  }
  state->Finish();
}

// ---- persistence ----

GroupValue GroupCoordinator::GroupRecord(const Group& g) const {
  GroupValue v;
  v.protocol_type = g.protocol_type;
  v.generation = g.generation;
  v.protocol = g.protocol;
  v.leader = g.leader;
  v.current_state_timestamp_ms = g.state_timestamp_ms;
  for (const auto& [id, m] : g.members) {
    GroupMemberValue mv;
    mv.member_id = id;
    mv.group_instance_id = m.instance_id;
    mv.client_id = m.client_id;
    mv.client_host = m.client_host;
    mv.rebalance_timeout_ms = m.rebalance_timeout_ms;
    mv.session_timeout_ms = m.session_timeout_ms;
    if (g.protocol.has_value()) {
      if (const auto* md = m.Metadata(*g.protocol)) mv.subscription = *md;
    }
    mv.assignment = m.assignment;
    v.members.push_back(std::move(mv));
  }
  return v;
}

void GroupCoordinator::StoreGroup(Group& g, absl::AnyInvocable<void(absl::Status)> done) {
  std::vector<OffsetsRecord> records;
  records.push_back({EncodeOffsetsKey(GroupKey{g.id}), EncodeGroupValue(GroupRecord(g))});
  env_->Append(PartitionFor(g.id), std::move(records), std::move(done));
}

void GroupCoordinator::MaybeDropGroup(const std::string& id) {
  Group* g = Find(id);
  if (g == nullptr || g->state != GroupState::kEmpty || g->generation != 0 || !g->members.empty() ||
      !g->offsets.empty() || !g->pending_members.empty()) {
    return;
  }
  CancelTimers(*g);
  groups_.erase(id);
}

absl::Status GroupCoordinator::Replay(std::span<const uint8_t> key_bytes,
                                      std::optional<std::span<const uint8_t>> value) {
  auto key = DecodeOffsetsKey(key_bytes);
  if (!key.ok()) return key.status();
  if (const auto* k = std::get_if<OffsetKey>(&*key)) {
    if (!value.has_value()) {
      if (Group* g = Find(k->group)) g->offsets.erase({k->topic, k->partition});
      return absl::OkStatus();
    }
    auto v = DecodeOffsetValue(*value);
    if (!v.ok()) return v.status();
    GetOrCreate(k->group).offsets[{k->topic, k->partition}] = *v;
    return absl::OkStatus();
  }
  const std::string& id = std::get<GroupKey>(*key).group;
  if (!value.has_value()) {
    if (Group* g = Find(id)) CancelTimers(*g);
    groups_.erase(id);
    return absl::OkStatus();
  }
  auto v = DecodeGroupValue(*value);
  if (!v.ok()) return v.status();
  Group& g = GetOrCreate(id);
  g.protocol_type = v->protocol_type;
  g.generation = v->generation;
  g.protocol = v->protocol;
  g.leader = v->leader;
  g.members.clear();
  g.static_members.clear();
  for (const GroupMemberValue& mv : v->members) {
    Member m;
    m.id = mv.member_id;
    m.instance_id = mv.group_instance_id;
    m.client_id = mv.client_id;
    m.client_host = mv.client_host;
    m.session_timeout_ms = mv.session_timeout_ms;
    m.rebalance_timeout_ms = mv.rebalance_timeout_ms;
    m.protocol_type = v->protocol_type;
    // Only the selected protocol's metadata is stored: it is all the member is known to speak.
    m.protocols.emplace_back(v->protocol.value_or(""), mv.subscription);
    m.assignment = mv.assignment;
    m.join_seq = next_join_seq_++;
    if (m.instance_id.has_value()) g.static_members[*m.instance_id] = m.id;
    g.members.emplace(m.id, std::move(m));
  }
  if (g.leader.has_value() && !g.members.contains(*g.leader)) g.leader.reset();
  g.state = g.members.empty() || !g.protocol.has_value() ? GroupState::kEmpty : GroupState::kStable;
  g.state_timestamp_ms = v->current_state_timestamp_ms;
  return absl::OkStatus();
}

void GroupCoordinator::FinishLoading() {
  for (auto& [id, g] : groups_) {
    for (auto& [mid, m] : g->members) ScheduleSession(*g, m);
    if (g->state == GroupState::kStable &&
        g->members.size() > static_cast<size_t>(std::max(options_.max_size, 1))) {
      // As Kafka: a group loaded above group.max.size (the limit was lowered) rebalances; the
      // members that rejoin last are refused.
      PrepareRebalance(*g, "loaded with more members than group.max.size");
    }
  }
}

void GroupCoordinator::UnloadPartition(int32_t partition) {
  std::vector<std::string> ids;
  for (const auto& [id, g] : groups_) {
    if (PartitionFor(id) == partition) ids.push_back(id);
  }
  for (const std::string& id : ids) {
    Group& g = *groups_[id];
    CancelTimers(g);
    for (auto& [mid, m] : g.members) {
      if (m.awaiting_join) {
        kafka::JoinGroupResponse r;
        r.error_code = kafka::errors::kNotCoordinator;
        auto done = std::move(m.awaiting_join);
        done(std::move(r));
      }
      if (m.awaiting_sync) {
        kafka::SyncGroupResponse r;
        r.error_code = kafka::errors::kNotCoordinator;
        auto done = std::move(m.awaiting_sync);
        done(std::move(r));
      }
    }
    groups_.erase(id);
  }
}

void GroupCoordinator::FinishLoadingPartition(int32_t partition) {
  for (auto& [id, g] : groups_) {
    if (PartitionFor(id) != partition) continue;
    for (auto& [mid, m] : g->members) ScheduleSession(*g, m);
  }
}

std::optional<int64_t> GroupCoordinator::CommittedOffset(const std::string& group,
                                                         const std::string& topic,
                                                         int32_t partition) const {
  const Group* g = Find(group);
  if (g == nullptr) return std::nullopt;
  auto it = g->offsets.find({topic, partition});
  if (it == g->offsets.end()) return std::nullopt;
  return it->second.offset;
}

std::optional<GroupState> GroupCoordinator::State(const std::string& group) const {
  const Group* g = Find(group);
  if (g == nullptr) return std::nullopt;
  return g->state;
}

int32_t GroupCoordinator::Generation(const std::string& group) const {
  const Group* g = Find(group);
  return g == nullptr ? -1 : g->generation;
}

}  // namespace sluice::broker
