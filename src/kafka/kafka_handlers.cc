// The one table of Kafka API handlers.
#include <array>

#include "src/kafka/handlers.h"

namespace sluice::broker {

namespace {

template <typename Request, void (*F)(RequestContext&, Request&)>
void Typed(RequestContext& ctx, kafka::AnyRequest& request) {
  F(ctx, std::get<Request>(request));
}

template <typename Request, void (*F)(RequestContext&, Request&)>
constexpr KafkaApiHandler Entry(int16_t min_version, int16_t max_version, std::string_view name) {
  static_assert(Request::kMinVersion <= Request::kMaxVersion);
  return {Request::kApiKey, min_version, max_version, name, &Typed<Request, F>};
}

using namespace kafka;  // NOLINT: message types only

constexpr std::array kHandlers = {
    Entry<ProduceRequest, HandleProduce>(0, 9, "Produce"),
    Entry<FetchRequest, HandleFetch>(2, 12, "Fetch"),
    Entry<ListOffsetsRequest, HandleListOffsets>(1, 7, "ListOffsets"),
    Entry<OffsetForLeaderEpochRequest, HandleOffsetForLeaderEpoch>(0, 4, "OffsetForLeaderEpoch"),
    Entry<MetadataRequest, HandleMetadata>(0, 12, "Metadata"),
    Entry<ApiVersionsRequest, HandleApiVersions>(0, 3, "ApiVersions"),
    Entry<CreateTopicsRequest, HandleCreateTopics>(0, 7, "CreateTopics"),
    Entry<DeleteTopicsRequest, HandleDeleteTopics>(0, 6, "DeleteTopics"),
    Entry<InitProducerIdRequest, HandleInitProducerId>(0, 4, "InitProducerId"),
    Entry<DescribeConfigsRequest, HandleDescribeConfigs>(0, 4, "DescribeConfigs"),
    Entry<CreatePartitionsRequest, HandleCreatePartitions>(0, 3, "CreatePartitions"),
    Entry<IncrementalAlterConfigsRequest, HandleIncrementalAlterConfigs>(0, 1,
                                                                         "IncrementalAlterConfigs"),
    Entry<DescribeClusterRequest, HandleDescribeCluster>(0, 0, "DescribeCluster"),
    Entry<FindCoordinatorRequest, HandleFindCoordinator>(0, 4, "FindCoordinator"),
    Entry<JoinGroupRequest, HandleJoinGroup>(0, 9, "JoinGroup"),
    Entry<SyncGroupRequest, HandleSyncGroup>(0, 5, "SyncGroup"),
    Entry<HeartbeatRequest, HandleHeartbeat>(0, 4, "Heartbeat"),
    Entry<LeaveGroupRequest, HandleLeaveGroup>(0, 5, "LeaveGroup"),
    Entry<OffsetCommitRequest, HandleOffsetCommit>(0, 8, "OffsetCommit"),
    Entry<OffsetFetchRequest, HandleOffsetFetch>(0, 8, "OffsetFetch"),
    Entry<OffsetDeleteRequest, HandleOffsetDelete>(0, 0, "OffsetDelete"),
    Entry<ListGroupsRequest, HandleListGroups>(0, 4, "ListGroups"),
    Entry<DescribeGroupsRequest, HandleDescribeGroups>(0, 5, "DescribeGroups"),
    Entry<DeleteGroupsRequest, HandleDeleteGroups>(0, 2, "DeleteGroups"),
};

}  // namespace

std::span<const KafkaApiHandler> KafkaApiHandlers() { return kHandlers; }

const KafkaApiHandler* FindKafkaApiHandler(int16_t api_key) {
  for (const KafkaApiHandler& h : kHandlers) {
    if (h.api_key == api_key) return &h;
  }
  return nullptr;
}

}  // namespace sluice::broker
