// Kafka API handlers: one per API, each declaring the versions it serves, all listed in one
// table (kafka_handlers.cc). The ApiVersions answer is built from this table, so the broker
// advertises exactly what it handles (the codec knows more APIs, e.g. the group APIs).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "net/kafka/framing.h"
#include "src/kafka/kafka_broker.h"
#include "src/kafka/responder.h"

namespace sluice::broker {

struct RequestContext {
  KafkaBroker& broker;
  const kafka::RequestHeader& header;
  std::string local_host;  // address the client connected to: advertised in Metadata
  int32_t local_port = 0;
  std::string peer;
  Responder responder;
};

// This broker and its cluster as clients are told them (Metadata, FindCoordinator,
// DescribeCluster): a single node is node 0, its own controller, reached at the address the
// client connected to; in cluster mode, the registered brokers by their advertised addresses.
struct ClusterFacts {
  int32_t self_id = 0;
  std::string self_host;
  int32_t self_port = 0;
  std::string cluster_id;
  int32_t controller_id = -1;
  std::vector<cluster::BrokerEndpoint> brokers;  // this one included
};
ClusterFacts CurrentCluster(const RequestContext& ctx);

struct KafkaApiHandler {
  int16_t api_key;
  int16_t min_version;
  int16_t max_version;
  std::string_view name;
  // Must answer through ctx.responder exactly once (now or later).
  void (*handle)(RequestContext& ctx, kafka::AnyRequest& request);
};

std::span<const KafkaApiHandler> KafkaApiHandlers();
const KafkaApiHandler* FindKafkaApiHandler(int16_t api_key);

// Handlers (one per API), in kafka_*.cc.
void HandleApiVersions(RequestContext& ctx, kafka::ApiVersionsRequest& req);
void HandleMetadata(RequestContext& ctx, kafka::MetadataRequest& req);
void HandleCreateTopics(RequestContext& ctx, kafka::CreateTopicsRequest& req);
void HandleDeleteTopics(RequestContext& ctx, kafka::DeleteTopicsRequest& req);
void HandleCreatePartitions(RequestContext& ctx, kafka::CreatePartitionsRequest& req);
void HandleDescribeConfigs(RequestContext& ctx, kafka::DescribeConfigsRequest& req);
void HandleIncrementalAlterConfigs(RequestContext& ctx, kafka::IncrementalAlterConfigsRequest& req);
void HandleDescribeCluster(RequestContext& ctx, kafka::DescribeClusterRequest& req);
void HandleInitProducerId(RequestContext& ctx, kafka::InitProducerIdRequest& req);
void HandleProduce(RequestContext& ctx, kafka::ProduceRequest& req);
void HandleFetch(RequestContext& ctx, kafka::FetchRequest& req);
void HandleListOffsets(RequestContext& ctx, kafka::ListOffsetsRequest& req);
void HandleOffsetForLeaderEpoch(RequestContext& ctx, kafka::OffsetForLeaderEpochRequest& req);
// Consumer groups (kafka_group.cc).
void HandleFindCoordinator(RequestContext& ctx, kafka::FindCoordinatorRequest& req);
void HandleJoinGroup(RequestContext& ctx, kafka::JoinGroupRequest& req);
void HandleSyncGroup(RequestContext& ctx, kafka::SyncGroupRequest& req);
void HandleHeartbeat(RequestContext& ctx, kafka::HeartbeatRequest& req);
void HandleLeaveGroup(RequestContext& ctx, kafka::LeaveGroupRequest& req);
void HandleOffsetCommit(RequestContext& ctx, kafka::OffsetCommitRequest& req);
void HandleOffsetFetch(RequestContext& ctx, kafka::OffsetFetchRequest& req);
void HandleOffsetDelete(RequestContext& ctx, kafka::OffsetDeleteRequest& req);
void HandleListGroups(RequestContext& ctx, kafka::ListGroupsRequest& req);
void HandleDescribeGroups(RequestContext& ctx, kafka::DescribeGroupsRequest& req);
void HandleDeleteGroups(RequestContext& ctx, kafka::DeleteGroupsRequest& req);

}  // namespace sluice::broker
