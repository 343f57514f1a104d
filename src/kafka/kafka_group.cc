// Handlers of the consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups,
// DeleteGroups. The state lives in the broker's GroupCoordinator; these only move requests and
// answers between it and the wire. A single node coordinates every group; in cluster mode the
// controller does (FindCoordinator).
#include <algorithm>

#include "net/kafka/error_codes.h"
#include "src/kafka/group_coordinator.h"
#include "src/kafka/handlers.h"

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

}  // namespace

void HandleFindCoordinator(RequestContext& ctx, kafka::FindCoordinatorRequest& req) {
  const int16_t version = ctx.header.api_version;
  const int8_t key_type = version >= 1 ? req.key_type : kKeyTypeGroup;
  // Transactions are not served: there is no transaction coordinator to name.
  const int16_t key_error =
      key_type == kKeyTypeGroup ? kafka::errors::kNone : kafka::errors::kCoordinatorNotAvailable;
  kafka::FindCoordinatorResponse resp;
  // A single node coordinates its groups. In cluster mode the controller coordinates every
  // group (with its own __consumer_offsets) until that topic is replicated and groups follow
  // its partitions' leaders: every broker names the same one.
  const ClusterFacts facts = CurrentCluster(ctx);
  int32_t node = facts.self_id;
  std::string host = facts.self_host;
  int32_t port = facts.self_port;
  int16_t error = key_error;
  if (error == 0 && ctx.broker.options().cluster != nullptr) {
    node = facts.controller_id;
    auto it = std::find_if(facts.brokers.begin(), facts.brokers.end(),
                           [node](const cluster::BrokerEndpoint& b) { return b.id == node; });
    if (it == facts.brokers.end()) {
      error = kafka::errors::kCoordinatorNotAvailable;
    } else {
      host = it->host;
      port = it->port;
    }
  }
  if (version >= 4) {
    for (const std::string& key : req.coordinator_keys) {
      auto& c = resp.coordinators.emplace_back();
      c.key = key;
      c.error_code = error;
      c.error_message.reset();
      c.node_id = error == 0 ? node : -1;
      c.host = error == 0 ? host : "";
      c.port = error == 0 ? port : -1;
    }
  } else {
    resp.error_code = error;
    resp.error_message.reset();
    resp.node_id = error == 0 ? node : -1;
    resp.host = error == 0 ? host : "";
    resp.port = error == 0 ? port : -1;
  }
  ctx.responder.Send(resp);
}

void HandleJoinGroup(RequestContext& ctx, kafka::JoinGroupRequest& req) {
  ctx.broker.groups().JoinGroup(
      req, ctx.header.api_version, ctx.header.client_id.value_or(""), ClientHost(ctx.peer),
      [r = std::move(ctx.responder)](kafka::JoinGroupResponse resp) mutable { r.Send(resp); });
}

void HandleSyncGroup(RequestContext& ctx, kafka::SyncGroupRequest& req) {
  ctx.broker.groups().SyncGroup(
      req, ctx.header.api_version,
      [r = std::move(ctx.responder)](kafka::SyncGroupResponse resp) mutable { r.Send(resp); });
}

void HandleHeartbeat(RequestContext& ctx, kafka::HeartbeatRequest& req) {
  kafka::HeartbeatResponse resp;
  resp.error_code = ctx.broker.groups().Heartbeat(req);
  ctx.responder.Send(resp);
}

void HandleLeaveGroup(RequestContext& ctx, kafka::LeaveGroupRequest& req) {
  ctx.responder.Send(ctx.broker.groups().LeaveGroup(req, ctx.header.api_version));
}

void HandleOffsetCommit(RequestContext& ctx, kafka::OffsetCommitRequest& req) {
  ctx.broker.groups().CommitOffsets(
      req, ctx.header.api_version,
      [r = std::move(ctx.responder)](kafka::OffsetCommitResponse resp) mutable { r.Send(resp); });
}

void HandleOffsetFetch(RequestContext& ctx, kafka::OffsetFetchRequest& req) {
  ctx.responder.Send(ctx.broker.groups().FetchOffsets(req, ctx.header.api_version));
}

void HandleOffsetDelete(RequestContext& ctx, kafka::OffsetDeleteRequest& req) {
  ctx.broker.groups().DeleteOffsets(
      req,
      [r = std::move(ctx.responder)](kafka::OffsetDeleteResponse resp) mutable { r.Send(resp); });
}

void HandleListGroups(RequestContext& ctx, kafka::ListGroupsRequest& req) {
  ctx.responder.Send(ctx.broker.groups().ListGroups(req, ctx.header.api_version));
}

void HandleDescribeGroups(RequestContext& ctx, kafka::DescribeGroupsRequest& req) {
  ctx.responder.Send(ctx.broker.groups().DescribeGroups(req, ctx.header.api_version));
}

void HandleDeleteGroups(RequestContext& ctx, kafka::DeleteGroupsRequest& req) {
  ctx.broker.groups().DeleteGroups(
      req,
      [r = std::move(ctx.responder)](kafka::DeleteGroupsResponse resp) mutable { r.Send(resp); });
}

}  // namespace sluice::broker
