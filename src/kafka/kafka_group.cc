// Handlers of the consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups,
// DeleteGroups. The state lives in the broker's GroupCoordinator; these only move requests and
// answers between it and the wire. A single node coordinates every group; in cluster mode a
// group's coordinator is the leader of its __consumer_offsets partition (CoordinatorError).
#include <algorithm>

#include "log/logging.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/group_coordinator.h"
#include "src/kafka/handlers.h"
#include "src/kafka/offsets_topic.h"

namespace sluice::broker {

namespace {

constexpr int8_t kKeyTypeGroup = 0;

// Kafka names a member's host "/<address>".
std::string ClientHost(const std::string& peer) {
  std::string host = peer;
  if (size_t colon = host.rfind(':'); colon != std::string::npos) host.resize(colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return "/" + host;
}

// Cluster mode: a group is coordinated by the leader of its __consumer_offsets partition
// (Kafka's placement), which holds its offsets. 0 when that is this broker; NOT_COORDINATOR
// when it is another (the client finds the coordinator again); COORDINATOR_NOT_AVAILABLE while
// the partition has no leader or the topic is not in the cluster yet. Always 0 for one node.
int16_t CoordinatorError(RequestContext& ctx, std::string_view group, int32_t* coordinator) {
  const KafkaOptions& o = ctx.broker.options();
  *coordinator = o.node_id;
  if (o.cluster == nullptr) return 0;
  std::shared_ptr<const cluster::ClusterView> view = o.cluster->Get();
  auto it = view->topics.find(kOffsetsTopic);
  if (it == view->topics.end()) return kafka::errors::kCoordinatorNotAvailable;
  const auto partitions = static_cast<int32_t>(it->second.replicas.size());
  if (partitions != ctx.broker.groups().offsets_partitions()) {
    storage::LogError(
        "kafka: %s has %d partitions in the cluster but %d here (--offsets-topic-partitions "
        "must be the same on every broker): groups cannot be placed",
        kOffsetsTopic, partitions, ctx.broker.groups().offsets_partitions());
    return kafka::errors::kCoordinatorNotAvailable;
  }
  *coordinator = view->LeaderOf(kOffsetsTopic, OffsetsPartitionFor(group, partitions));
  if (*coordinator < 0) return kafka::errors::kCoordinatorNotAvailable;
  return *coordinator == o.node_id ? 0 : kafka::errors::kNotCoordinator;
}

int16_t CoordinatorError(RequestContext& ctx, std::string_view group) {
  int32_t unused;
  return CoordinatorError(ctx, group, &unused);
}

// One answer per group asked, in the order asked: those this broker coordinates from its
// own answers (`local`, in order), the others with their error. `id` gives a group's name.
template <typename Entry, typename Asked, typename Id>
std::vector<Entry> MergeByGroup(const std::vector<Asked>& asked, const std::vector<int16_t>& errors,
                                std::vector<Entry> local, Id id) {
  std::vector<Entry> out;
  out.reserve(asked.size());
  size_t next_local = 0;
  for (size_t i = 0; i < asked.size(); ++i) {
    if (errors[i] == 0 && next_local < local.size()) {
      out.push_back(std::move(local[next_local++]));
    } else {
      Entry& e = out.emplace_back();
      e.group_id = id(asked[i]);
      e.error_code = errors[i];
    }
  }
  return out;
}

}  // namespace

void HandleFindCoordinator(RequestContext& ctx, kafka::FindCoordinatorRequest& req) {
  const int16_t version = ctx.header.api_version;
  const int8_t key_type = version >= 1 ? req.key_type : kKeyTypeGroup;
  // Transactions are not served: there is no transaction coordinator to name.
  const int16_t key_error =
      key_type == kKeyTypeGroup ? kafka::errors::kNone : kafka::errors::kCoordinatorNotAvailable;
  kafka::FindCoordinatorResponse resp;
  // In cluster mode the leader of the group's __consumer_offsets partition coordinates it; the
  // topic is written to ZooKeeper by the first FindCoordinator that misses it (as Kafka makes
  // it on first use), when more brokers are likely up to share its partitions.
  const ClusterFacts facts = CurrentCluster(ctx);
  const KafkaOptions& o = ctx.broker.options();
  auto locate = [&](const std::string& key, int32_t* node, std::string* host, int32_t* port) {
    *node = facts.self_id;
    *host = facts.self_host;
    *port = facts.self_port;
    if (key_error != 0 || o.cluster == nullptr) return key_error;
    if (o.cluster->Get()->topics.count(kOffsetsTopic) == 0 && o.create_topic) {
      // offsets.topic.replication.factor: 3, or every live broker when there are fewer.
      const auto rf = static_cast<int32_t>(std::min<size_t>(3, facts.brokers.size()));
      o.create_topic(kOffsetsTopic, ctx.broker.groups().offsets_partitions(), std::max(rf, 1),
                     {{"cleanup.policy", "compact"}}, [](absl::Status s) {
                       if (!s.ok() && !absl::IsAlreadyExists(s)) {
                         storage::LogWarning("kafka: creating %s in the cluster: %s", kOffsetsTopic,
                                             s.message());
                       }
                     });
      return kafka::errors::kCoordinatorNotAvailable;
    }
    const int16_t e = CoordinatorError(ctx, key, node);
    if (e != 0 && e != kafka::errors::kNotCoordinator) return e;
    auto it = std::find_if(facts.brokers.begin(), facts.brokers.end(),
                           [node](const cluster::BrokerEndpoint& b) { return b.id == *node; });
    if (it == facts.brokers.end()) return kafka::errors::kCoordinatorNotAvailable;
    *host = it->host;
    *port = it->port;
    return kafka::errors::kNone;
  };
  if (version >= 4) {
    for (const std::string& key : req.coordinator_keys) {
      auto& c = resp.coordinators.emplace_back();
      int32_t node;
      std::string host;
      int32_t port;
      const int16_t error = locate(key, &node, &host, &port);
      c.key = key;
      c.error_code = error;
      c.error_message.reset();
      c.node_id = error == 0 ? node : -1;
      c.host = error == 0 ? host : "";
      c.port = error == 0 ? port : -1;
    }
  } else {
    int32_t node;
    std::string host;
    int32_t port;
    const int16_t error = locate(req.key, &node, &host, &port);
    resp.error_code = error;
    resp.error_message.reset();
    resp.node_id = error == 0 ? node : -1;
    resp.host = error == 0 ? host : "";
    resp.port = error == 0 ? port : -1;
  }
  ctx.responder.Send(resp);
}

void HandleJoinGroup(RequestContext& ctx, kafka::JoinGroupRequest& req) {
  if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
    kafka::JoinGroupResponse resp;
    resp.error_code = e;
    resp.member_id = req.member_id;
    ctx.responder.Send(resp);
    return;
  }
  ctx.broker.groups().JoinGroup(
      req, ctx.header.api_version, ctx.header.client_id.value_or(""), ClientHost(ctx.peer),
      [r = std::move(ctx.responder)](kafka::JoinGroupResponse resp) mutable { r.Send(resp); });
}

void HandleSyncGroup(RequestContext& ctx, kafka::SyncGroupRequest& req) {
  if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
    kafka::SyncGroupResponse resp;
    resp.error_code = e;
    ctx.responder.Send(resp);
    return;
  }
  ctx.broker.groups().SyncGroup(
      req, ctx.header.api_version,
      [r = std::move(ctx.responder)](kafka::SyncGroupResponse resp) mutable { r.Send(resp); });
}

void HandleHeartbeat(RequestContext& ctx, kafka::HeartbeatRequest& req) {
  kafka::HeartbeatResponse resp;
  resp.error_code = CoordinatorError(ctx, req.group_id);
  if (resp.error_code == 0) resp.error_code = ctx.broker.groups().Heartbeat(req);
  ctx.responder.Send(resp);
}

void HandleLeaveGroup(RequestContext& ctx, kafka::LeaveGroupRequest& req) {
  if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
    kafka::LeaveGroupResponse resp;
    resp.error_code = e;
    ctx.responder.Send(resp);
    return;
  }
  ctx.responder.Send(ctx.broker.groups().LeaveGroup(req, ctx.header.api_version));
}

void HandleOffsetCommit(RequestContext& ctx, kafka::OffsetCommitRequest& req) {
  if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
    kafka::OffsetCommitResponse resp;
    for (const auto& t : req.topics) {
      auto& rt = resp.topics.emplace_back();
      rt.name = t.name;
      for (const auto& p : t.partitions) {
        auto& rp = rt.partitions.emplace_back();
        rp.partition_index = p.partition_index;
        rp.error_code = e;
      }
    }
    ctx.responder.Send(resp);
    return;
  }
  ctx.broker.groups().CommitOffsets(
      req, ctx.header.api_version,
      [r = std::move(ctx.responder)](kafka::OffsetCommitResponse resp) mutable { r.Send(resp); });
}

void HandleOffsetFetch(RequestContext& ctx, kafka::OffsetFetchRequest& req) {
  const int16_t version = ctx.header.api_version;
  if (version < 8) {
    if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
      kafka::OffsetFetchResponse resp;
      resp.error_code = e;  // v2+; v0-1 read the partitions' codes
      if (req.topics.has_value()) {
        for (const auto& t : *req.topics) {
          auto& rt = resp.topics.emplace_back();
          rt.name = t.name;
          for (int32_t p : t.partition_indexes) {
            auto& rp = rt.partitions.emplace_back();
            rp.partition_index = p;
            rp.committed_offset = -1;
            rp.error_code = e;
          }
        }
      }
      ctx.responder.Send(resp);
      return;
    }
    ctx.responder.Send(ctx.broker.groups().FetchOffsets(req, version));
    return;
  }
  // v8: several groups, perhaps coordinated by different brokers: those of this one are
  // answered from it, the others with their error, in the order asked.
  std::vector<int16_t> errors;
  kafka::OffsetFetchRequest mine = req;
  mine.groups.clear();
  for (const auto& g : req.groups) {
    errors.push_back(CoordinatorError(ctx, g.group_id));
    if (errors.back() == 0) mine.groups.push_back(g);
  }
  kafka::OffsetFetchResponse local;
  if (!mine.groups.empty()) local = ctx.broker.groups().FetchOffsets(mine, version);
  kafka::OffsetFetchResponse resp;
  resp.throttle_time_ms = local.throttle_time_ms;
  resp.groups = MergeByGroup(req.groups, errors, std::move(local.groups),
                             [](const auto& g) { return g.group_id; });
  ctx.responder.Send(resp);
}

void HandleOffsetDelete(RequestContext& ctx, kafka::OffsetDeleteRequest& req) {
  if (int16_t e = CoordinatorError(ctx, req.group_id); e != 0) {
    kafka::OffsetDeleteResponse resp;
    resp.error_code = e;
    ctx.responder.Send(resp);
    return;
  }
  ctx.broker.groups().DeleteOffsets(
      req,
      [r = std::move(ctx.responder)](kafka::OffsetDeleteResponse resp) mutable { r.Send(resp); });
}

void HandleListGroups(RequestContext& ctx, kafka::ListGroupsRequest& req) {
  ctx.responder.Send(ctx.broker.groups().ListGroups(req, ctx.header.api_version));
}

void HandleDescribeGroups(RequestContext& ctx, kafka::DescribeGroupsRequest& req) {
  // Groups coordinated elsewhere are answered with NOT_COORDINATOR, in the order asked.
  std::vector<int16_t> errors;
  kafka::DescribeGroupsRequest mine = req;
  mine.groups.clear();
  for (const std::string& g : req.groups) {
    errors.push_back(CoordinatorError(ctx, g));
    if (errors.back() == 0) mine.groups.push_back(g);
  }
  kafka::DescribeGroupsResponse local;
  if (!mine.groups.empty())
    local = ctx.broker.groups().DescribeGroups(mine, ctx.header.api_version);
  kafka::DescribeGroupsResponse resp;
  resp.throttle_time_ms = local.throttle_time_ms;
  resp.groups = MergeByGroup(req.groups, errors, std::move(local.groups),
                             [](const std::string& g) { return g; });
  ctx.responder.Send(resp);
}

void HandleDeleteGroups(RequestContext& ctx, kafka::DeleteGroupsRequest& req) {
  // Groups coordinated elsewhere get NOT_COORDINATOR; those of this broker are deleted.
  std::vector<kafka::DeleteGroupsResponse::DeletableGroupResult> elsewhere;
  kafka::DeleteGroupsRequest mine = req;
  mine.groups_names.clear();
  for (const std::string& g : req.groups_names) {
    if (int16_t e = CoordinatorError(ctx, g); e != 0) {
      auto& r = elsewhere.emplace_back();
      r.group_id = g;
      r.error_code = e;
    } else {
      mine.groups_names.push_back(g);
    }
  }
  if (!elsewhere.empty()) {
    if (mine.groups_names.empty()) {
      kafka::DeleteGroupsResponse resp;
      resp.results = std::move(elsewhere);
      ctx.responder.Send(resp);
      return;
    }
    ctx.broker.groups().DeleteGroups(
        mine, [r = std::move(ctx.responder),
               elsewhere = std::move(elsewhere)](kafka::DeleteGroupsResponse resp) mutable {
          for (auto& e : elsewhere) resp.results.push_back(std::move(e));
          r.Send(resp);
        });
    return;
  }
  ctx.broker.groups().DeleteGroups(
      req,
      [r = std::move(ctx.responder)](kafka::DeleteGroupsResponse resp) mutable { r.Send(resp); });
}

}  // namespace sluice::broker
