// Handlers of the cluster and topic administration APIs: ApiVersions, Metadata, CreateTopics,
// DeleteTopics, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs, DescribeCluster,
// InitProducerId. A single node is the whole cluster (node 0, controller of itself); in
// cluster mode the brokers and controller come from ZooKeeper (src/cluster/).
#include <algorithm>
#include <cstring>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "log/logging.h"
#include "net/kafka/error_codes.h"
#include "src/kafka/handlers.h"

namespace sluice::broker {

namespace {

// A single node's cluster id (a cluster's is made by its first broker, in ZooKeeper).
constexpr char kSingleNodeClusterId[] = "sluice-cluster-0000000";
constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;
// DescribeConfigs config sources.
constexpr int8_t kSourceDynamicTopic = 1;
constexpr int8_t kSourceDefault = 5;

kafka::Uuid TopicUuid(const TopicInfo& t) {
  kafka::Uuid u;
  std::copy(t.id.begin(), t.id.end(), u.bytes.begin());
  return u;
}

int16_t CreateErrorCode(const absl::Status& s) {
  if (absl::IsAlreadyExists(s)) return kafka::errors::kTopicAlreadyExists;
  if (absl::IsOutOfRange(s)) return kafka::errors::kInvalidPartitions;
  if (absl::IsInvalidArgument(s)) {
    return absl::StrContains(std::string(s.message()), "topic name")
               ? kafka::errors::kInvalidTopicException
               : kafka::errors::kInvalidConfig;
  }
  return kafka::errors::kUnknownServerError;
}

// Internal topics belong to the broker: clients get Kafka's INVALID_TOPIC_EXCEPTION and the
// broker says who tried.
void RefuseInternal(RequestContext& ctx, const char* api, const std::string& topic,
                    const char* what, int16_t* error_code,
                    std::optional<std::string>* error_message) {
  *error_code = kafka::errors::kInvalidTopicException;
  *error_message = absl::StrCat("'", topic, "' is an internal topic: it cannot be ", what);
  storage::LogWarning("kafka: %s of internal topic %s from %s (client %s) refused", api, topic,
                      ctx.peer, ctx.header.client_id.value_or(""));
}

}  // namespace

namespace {

// Metadata's topics in cluster mode: every topic of the cluster as ZooKeeper has it (the same
// answer from every broker), each partition with its leader (-1 and LEADER_NOT_AVAILABLE
// while its broker is gone). A missing topic asked for by name is created in ZooKeeper when
// auto-creation allows, and reported LEADER_NOT_AVAILABLE until the cluster has it (clients
// ask again). Topic ids are not kept in ZooKeeper yet: none is given (all zeros).
void DescribeClusterTopics(RequestContext& ctx, const kafka::MetadataRequest& req,
                           kafka::MetadataResponse& resp) {
  const KafkaOptions& o = ctx.broker.options();
  std::shared_ptr<const cluster::ClusterView> view = o.cluster->Get();
  auto describe = [&](const std::string& name, const cluster::TopicView* t, int16_t error) {
    kafka::MetadataResponse::MetadataResponseTopic rt;
    rt.name = name;
    rt.error_code = error;
    rt.is_internal = ctx.broker.IsInternalTopic(name);
    if (t != nullptr) {
      for (size_t p = 0; p < t->replicas.size(); ++p) {
        kafka::MetadataResponse::MetadataResponsePartition rp;
        rp.partition_index = static_cast<int32_t>(p);
        const cluster::PartitionState* state = view->StateOf(name, static_cast<int32_t>(p));
        rp.leader_id = state != nullptr ? state->leader : -1;
        // A broker without a live session names no leader rather than perhaps itself.
        if (!view->session_live) rp.leader_id = -1;
        rp.leader_epoch = state != nullptr ? state->leader_epoch : 0;
        rp.replica_nodes = t->replicas[p];
        if (state != nullptr) rp.isr_nodes = state->isr;
        for (int32_t r : t->replicas[p]) {
          if (view->brokers.count(r) == 0) rp.offline_replicas.push_back(r);
        }
        if (rp.leader_id < 0) rp.error_code = kafka::errors::kLeaderNotAvailable;
        rt.partitions.push_back(std::move(rp));
      }
    }
    resp.topics.push_back(std::move(rt));
  };
  const bool all = !req.topics.has_value() || (ctx.header.api_version == 0 && req.topics->empty());
  if (all) {
    for (const auto& [name, t] : view->topics) describe(name, &t, 0);
    return;
  }
  const bool may_create = ctx.broker.shard().config().auto_create_topics &&
                          (ctx.header.api_version < 4 || req.allow_auto_topic_creation);
  for (const auto& rt : *req.topics) {
    if (!rt.name.has_value()) {
      describe("", nullptr, kafka::errors::kUnknownTopicId);
      continue;
    }
    const std::string& name = *rt.name;
    if (auto it = view->topics.find(name); it != view->topics.end()) {
      describe(name, &it->second, 0);
    } else if (!IsValidTopicName(name)) {
      describe(name, nullptr, kafka::errors::kInvalidTopicException);
    } else if (may_create && !ctx.broker.IsInternalTopic(name) && o.create_topic) {
      o.create_topic(name, ctx.broker.shard().config().default_partitions,
                     o.default_replication_factor, {}, [name](absl::Status s) {
                       if (!s.ok() && !absl::IsAlreadyExists(s)) {
                         storage::LogWarning("kafka: auto-creating topic %s: %s", name,
                                             s.message());
                       }
                     });
      describe(name, nullptr, kafka::errors::kLeaderNotAvailable);
    } else {
      describe(name, nullptr, kafka::errors::kUnknownTopicOrPartition);
    }
  }
}

// What cluster mode does not offer yet (every broker would have to apply it): the message
// the client gets with the error.
constexpr char kNotInClusterMode[] =
    "not available in cluster mode yet (topics are kept in ZooKeeper; see docs/ARCHITECTURE.md)";

bool InClusterMode(const RequestContext& ctx) { return ctx.broker.options().cluster != nullptr; }

}  // namespace

ClusterFacts CurrentCluster(const RequestContext& ctx) {
  const KafkaOptions& o = ctx.broker.options();
  ClusterFacts f;
  f.self_id = o.node_id;
  f.self_host = o.advertised_host.empty() ? ctx.local_host : o.advertised_host;
  f.self_port = o.cluster != nullptr ? o.port : ctx.local_port;
  if (o.cluster == nullptr) {
    f.cluster_id = kSingleNodeClusterId;
    f.controller_id = f.self_id;
    f.brokers.push_back(cluster::BrokerEndpoint{f.self_id, f.self_host, f.self_port});
    return f;
  }
  std::shared_ptr<const cluster::ClusterView> view = o.cluster->Get();
  f.cluster_id = view->cluster_id;
  f.controller_id = view->controller_id;
  bool self_listed = false;
  for (const auto& [id, b] : view->brokers) {
    f.brokers.push_back(b);
    self_listed |= id == f.self_id;
  }
  // Clients reach this broker, registered or not (its session may be re-established).
  if (!self_listed)
    f.brokers.push_back(cluster::BrokerEndpoint{f.self_id, f.self_host, f.self_port});
  return f;
}

void HandleApiVersions(RequestContext& ctx, kafka::ApiVersionsRequest&) {
  kafka::ApiVersionsResponse resp;
  for (const KafkaApiHandler& h : KafkaApiHandlers()) {
    kafka::ApiVersionsResponse::ApiVersion v;
    v.api_key = h.api_key;
    v.min_version = h.min_version;
    v.max_version = h.max_version;
    resp.api_keys.push_back(v);
  }
  ctx.responder.Send(resp);
}

void HandleMetadata(RequestContext& ctx, kafka::MetadataRequest& req) {
  kafka::MetadataResponse resp;
  const ClusterFacts facts = CurrentCluster(ctx);
  for (const cluster::BrokerEndpoint& e : facts.brokers) {
    kafka::MetadataResponse::MetadataResponseBroker b;
    b.node_id = e.id;
    b.host = e.host;
    b.port = e.port;
    resp.brokers.push_back(std::move(b));
  }
  if (!facts.cluster_id.empty()) resp.cluster_id = facts.cluster_id;
  resp.controller_id = facts.controller_id;
  if (ctx.broker.options().cluster != nullptr) {
    DescribeClusterTopics(ctx, req, resp);
    ctx.responder.Send(resp);
    return;
  }
  const int32_t self = facts.self_id;

  auto describe = [&](const std::string& name, const TopicInfo* t, int16_t error) {
    kafka::MetadataResponse::MetadataResponseTopic rt;
    rt.name = name;
    rt.error_code = error;
    rt.is_internal = ctx.broker.IsInternalTopic(name);  // __consumer_offsets
    if (t != nullptr) {
      rt.topic_id = TopicUuid(*t);
      for (int32_t p = 0; p < t->partitions; ++p) {
        kafka::MetadataResponse::MetadataResponsePartition rp;
        rp.partition_index = p;
        rp.leader_id = self;
        rp.leader_epoch = 0;
        rp.replica_nodes = {self};
        rp.isr_nodes = {self};
        rt.partitions.push_back(std::move(rp));
      }
    }
    resp.topics.push_back(std::move(rt));
  };

  // v0: an empty list means all topics; v1+: null means all topics.
  bool all = !req.topics.has_value() || (ctx.header.api_version == 0 && req.topics->empty());
  if (all) {
    for (const TopicInfo* t : ctx.broker.topics().List()) describe(t->name, t, 0);
  } else {
    // Missing topics are auto-created together: one registry write.
    std::vector<std::string> names;
    for (const auto& rt : *req.topics) {
      if (rt.name.has_value()) names.push_back(*rt.name);
    }
    ctx.broker.AutoCreateTopics(names, ctx.header.api_version < 4 || req.allow_auto_topic_creation);
    for (const auto& rt : *req.topics) {
      if (!rt.name.has_value()) {
        describe("", nullptr, kafka::errors::kUnknownTopicId);
        continue;
      }
      const std::string& name = *rt.name;
      const TopicInfo* t = ctx.broker.topics().Find(name);
      int16_t err = 0;
      if (t == nullptr) {
        err = IsValidTopicName(name) ? kafka::errors::kUnknownTopicOrPartition
                                     : kafka::errors::kInvalidTopicException;
      }
      describe(name, t, err);
    }
  }
  ctx.responder.Send(resp);
}

namespace {
// A new topic's configs as CreateTopics v5+ reports them.
std::vector<kafka::CreateTopicsResponse::CreatableTopicConfigs> CreatedTopicConfigs(
    const storage::LogConfig& config, const std::map<std::string, std::string>& overrides) {
  std::vector<kafka::CreateTopicsResponse::CreatableTopicConfigs> out;
  out.reserve(kTopicConfigNames.size());
  for (const char* name : kTopicConfigNames) {
    kafka::CreateTopicsResponse::CreatableTopicConfigs c;
    c.name = name;
    c.value = TopicConfigValue(name, config);
    c.config_source = overrides.contains(name) ? kSourceDynamicTopic : kSourceDefault;
    out.push_back(std::move(c));
  }
  return out;
}
}  // namespace

// One request may create thousands of topics while every client of shard 0 waits: the work
// per topic is kept small (one registry write for all, configs of topics without overrides
// computed once, logs created later, a few per loop iteration: KafkaBroker::ApplyTopics).
void HandleCreateTopics(RequestContext& ctx, kafka::CreateTopicsRequest& req) {
  kafka::CreateTopicsResponse resp;
  resp.topics.reserve(req.topics.size());
  absl::flat_hash_set<std::string_view> seen;
  // Each topic is checked on its own; the valid ones are then created together
  // (`creating` indexes resp.topics).
  std::vector<TopicRegistry::NewTopic> to_create;
  std::vector<size_t> creating;
  // The effective config of each topic that has overrides (by index into resp.topics).
  absl::flat_hash_map<size_t, std::pair<storage::LogConfig, std::map<std::string, std::string>>>
      with_overrides;
  const storage::LogConfig& defaults = ctx.broker.topics().defaults();
  const KafkaOptions& options = ctx.broker.options();
  const bool cluster_mode = options.cluster != nullptr;
  std::shared_ptr<const cluster::ClusterView> view =
      cluster_mode ? options.cluster->Get() : nullptr;
  std::vector<int32_t> replication_factors;  // of to_create
  for (auto& t : req.topics) {
    kafka::CreateTopicsResponse::CreatableTopicResult r;
    r.name = t.name;
    const int32_t replication_factor = t.replication_factor == -1
                                           ? (cluster_mode ? options.default_replication_factor : 1)
                                           : t.replication_factor;
    int32_t partitions = t.num_partitions;
    if (partitions == -1) partitions = ctx.broker.shard().config().default_partitions;
    if (!t.assignments.empty()) partitions = static_cast<int32_t>(t.assignments.size());
    std::map<std::string, std::string> overrides;
    std::optional<storage::LogConfig> config;
    absl::Status s;
    for (const auto& c : t.configs) {
      if (!c.value.has_value()) continue;
      if (!config.has_value()) config = defaults;
      s = ApplyTopicConfig(c.name, *c.value, &*config);
      if (!s.ok()) break;
      overrides[c.name] = *c.value;
    }
    if (!seen.insert(t.name).second) {
      r.error_code = kafka::errors::kInvalidRequest;
      r.error_message = "topic named twice in the request";
    } else if (!s.ok()) {
      r.error_code = kafka::errors::kInvalidConfig;
      r.error_message = std::string(s.message());
    } else if (!cluster_mode && t.replication_factor != -1 && t.replication_factor != 1) {
      r.error_code = kafka::errors::kInvalidReplicationFactor;
      r.error_message = "this cluster has one broker: replication factor must be 1";
    } else if (cluster_mode && replication_factor < 1) {
      r.error_code = kafka::errors::kInvalidReplicationFactor;
      r.error_message = "replication factor must be at least 1";
    } else if (!IsValidTopicName(t.name)) {
      r.error_code = kafka::errors::kInvalidTopicException;
      r.error_message = "invalid topic name";
    } else if (cluster_mode ? view->topics.count(t.name) > 0
                            : ctx.broker.topics().Find(t.name) != nullptr) {
      r.error_code = kafka::errors::kTopicAlreadyExists;
      r.error_message = absl::StrCat("topic '", t.name, "' already exists");
    } else if (partitions < 1 || partitions > ctx.broker.options().max_partitions) {
      r.error_code = kafka::errors::kInvalidPartitions;
      r.error_message = absl::StrCat("partition count must be between 1 and ",
                                     ctx.broker.options().max_partitions);
    } else if (!req.validate_only) {
      creating.push_back(resp.topics.size());
      to_create.push_back(TopicRegistry::NewTopic{t.name, partitions, overrides});
      replication_factors.push_back(replication_factor);
    }
    if (r.error_code == 0) {
      r.num_partitions = partitions;
      r.replication_factor = static_cast<int16_t>(replication_factor);
      if (config.has_value()) {
        with_overrides.emplace(resp.topics.size(),
                               std::make_pair(std::move(*config), std::move(overrides)));
      }
    }
    resp.topics.push_back(std::move(r));
  }
  // v5+: each created topic's configs.
  auto add_configs = [version = ctx.header.api_version, defaults,
                      with_overrides](kafka::CreateTopicsResponse& resp) {
    if (version < 5) return;
    std::optional<std::vector<kafka::CreateTopicsResponse::CreatableTopicConfigs>> default_configs;
    for (size_t i = 0; i < resp.topics.size(); ++i) {
      kafka::CreateTopicsResponse::CreatableTopicResult& r = resp.topics[i];
      if (r.error_code != 0) continue;
      if (auto it = with_overrides.find(i); it != with_overrides.end()) {
        r.configs = CreatedTopicConfigs(it->second.first, it->second.second);
        continue;
      }
      if (!default_configs.has_value()) default_configs = CreatedTopicConfigs(defaults, {});
      r.configs = *default_configs;
    }
  };
  if (cluster_mode && !to_create.empty()) {
    // Written to ZooKeeper, each on its own; every broker then makes the logs it is given.
    struct Pending {
      kafka::CreateTopicsResponse resp;
      size_t left = 0;
      Responder responder;
      std::function<void(kafka::CreateTopicsResponse&)> add_configs;
    };
    auto pending = std::make_shared<Pending>(
        Pending{std::move(resp), creating.size(), std::move(ctx.responder), add_configs});
    for (size_t i = 0; i < creating.size(); ++i) {
      const size_t index = creating[i];
      options.create_topic(
          to_create[i].name, to_create[i].partitions, replication_factors[i],
          to_create[i].overrides, [pending, index](absl::Status s) {
            kafka::CreateTopicsResponse::CreatableTopicResult& r = pending->resp.topics[index];
            if (!s.ok()) {
              r.error_code = absl::IsAlreadyExists(s)     ? kafka::errors::kTopicAlreadyExists
                             : absl::IsInvalidArgument(s) ? kafka::errors::kInvalidReplicationFactor
                             : absl::IsUnavailable(s)     ? kafka::errors::kRequestTimedOut
                                                          : kafka::errors::kUnknownServerError;
              r.error_message = std::string(s.message());
              r.num_partitions = -1;
              r.replication_factor = -1;
            }
            if (--pending->left > 0) return;
            pending->add_configs(pending->resp);
            pending->responder.Send(pending->resp);
          });
    }
    return;
  }
  if (!to_create.empty()) {
    auto created = ctx.broker.CreateTopics(std::move(to_create));
    for (size_t i = 0; i < creating.size(); ++i) {
      kafka::CreateTopicsResponse::CreatableTopicResult& r = resp.topics[creating[i]];
      if (!created.ok()) {
        r.error_code = CreateErrorCode(created.status());
        r.error_message = std::string(created.status().message());
        r.num_partitions = -1;
        r.replication_factor = -1;
      } else {
        r.topic_id = TopicUuid(*(*created)[i]);
      }
    }
  }
  add_configs(resp);
  ctx.responder.Send(resp);
}

void HandleDeleteTopics(RequestContext& ctx, kafka::DeleteTopicsRequest& req) {
  kafka::DeleteTopicsResponse resp;
  std::vector<std::pair<std::optional<std::string>, kafka::Uuid>> targets;
  if (ctx.header.api_version >= 6) {
    for (const auto& t : req.topics) targets.emplace_back(t.name, t.topic_id);
  } else {
    for (const auto& n : req.topic_names) targets.emplace_back(n, kafka::Uuid{});
  }
  std::set<std::string> deleting;
  std::vector<std::string> to_delete;
  std::vector<size_t> deleted;  // indexes into resp.responses
  for (auto& [name, id] : targets) {
    kafka::DeleteTopicsResponse::DeletableTopicResult r;
    if (!name.has_value()) {
      // By id: find the topic with that id.
      for (const TopicInfo* t : ctx.broker.topics().List()) {
        if (TopicUuid(*t) == id) name = t->name;
      }
      if (!name.has_value()) {
        r.topic_id = id;
        r.error_code = kafka::errors::kUnknownTopicId;
        resp.responses.push_back(std::move(r));
        continue;
      }
    }
    r.name = *name;
    const TopicInfo* t = ctx.broker.topics().Find(*name);
    if (InClusterMode(ctx)) {
      r.error_code = kafka::errors::kTopicDeletionDisabled;
      r.error_message = kNotInClusterMode;
    } else if (t == nullptr || !deleting.insert(*name).second) {
      r.error_code = kafka::errors::kUnknownTopicOrPartition;  // a repeat: gone by then
    } else if (ctx.broker.IsInternalTopic(*name)) {
      // Every group's offsets live there. Kafka's word for operations it refuses on internal
      // topics (Produce, DeleteRecords) is INVALID_TOPIC_EXCEPTION.
      r.topic_id = TopicUuid(*t);
      RefuseInternal(ctx, "DeleteTopics", *name, "deleted", &r.error_code, &r.error_message);
    } else {
      r.topic_id = TopicUuid(*t);
      to_delete.push_back(*name);
      deleted.push_back(resp.responses.size());
    }
    resp.responses.push_back(std::move(r));
  }
  // Together: one registry write and one pass over each shard's logs.
  if (!to_delete.empty()) {
    if (absl::Status s = ctx.broker.DeleteTopics(to_delete); !s.ok()) {
      for (size_t i : deleted) {
        resp.responses[i].error_code = kafka::errors::kUnknownServerError;
        resp.responses[i].error_message = std::string(s.message());
      }
    }
  }
  ctx.responder.Send(resp);
}

void HandleCreatePartitions(RequestContext& ctx, kafka::CreatePartitionsRequest& req) {
  kafka::CreatePartitionsResponse resp;
  for (const auto& t : req.topics) {
    kafka::CreatePartitionsResponse::CreatePartitionsTopicResult r;
    r.name = t.name;
    const TopicInfo* info = ctx.broker.topics().Find(t.name);
    if (InClusterMode(ctx)) {
      r.error_code = kafka::errors::kInvalidRequest;
      r.error_message = kNotInClusterMode;
    } else if (info == nullptr) {
      r.error_code = kafka::errors::kUnknownTopicOrPartition;
    } else if (ctx.broker.IsInternalTopic(t.name)) {
      // Groups are placed by the partition count of the offsets topic.
      RefuseInternal(ctx, "CreatePartitions", t.name, "given partitions", &r.error_code,
                     &r.error_message);
    } else if (t.count <= info->partitions) {
      r.error_code = kafka::errors::kInvalidPartitions;
      r.error_message = absl::StrCat("topic has ", info->partitions, " partitions; ", t.count,
                                     " would not add any");
    } else if (!req.validate_only) {
      absl::Status s = ctx.broker.AddPartitions(t.name, t.count);
      if (!s.ok()) {
        r.error_code = absl::IsOutOfRange(s) ? kafka::errors::kInvalidPartitions
                                             : kafka::errors::kUnknownServerError;
        r.error_message = std::string(s.message());
      }
    }
    resp.results.push_back(std::move(r));
  }
  ctx.responder.Send(resp);
}

void HandleDescribeConfigs(RequestContext& ctx, kafka::DescribeConfigsRequest& req) {
  kafka::DescribeConfigsResponse resp;
  for (const auto& res : req.resources) {
    kafka::DescribeConfigsResponse::DescribeConfigsResult r;
    r.resource_type = res.resource_type;
    r.resource_name = res.resource_name;
    if (res.resource_type == kResourceBroker) {
      resp.results.push_back(std::move(r));  // no broker configs exposed yet
      continue;
    }
    const TopicInfo* t =
        res.resource_type == kResourceTopic ? ctx.broker.topics().Find(res.resource_name) : nullptr;
    if (t == nullptr) {
      r.error_code = res.resource_type == kResourceTopic ? kafka::errors::kUnknownTopicOrPartition
                                                         : kafka::errors::kInvalidRequest;
      r.error_message = "unknown resource";
      resp.results.push_back(std::move(r));
      continue;
    }
    storage::LogConfig config = ctx.broker.topics().ConfigFor(*t);
    for (const char* name : kTopicConfigNames) {
      if (res.configuration_keys.has_value() && !res.configuration_keys->empty() &&
          std::find(res.configuration_keys->begin(), res.configuration_keys->end(), name) ==
              res.configuration_keys->end()) {
        continue;
      }
      kafka::DescribeConfigsResponse::DescribeConfigsResourceResult c;
      c.name = name;
      auto it = t->overrides.find(name);
      c.value = it != t->overrides.end() ? it->second : TopicConfigValue(name, config);
      c.is_default = it == t->overrides.end();
      c.config_source = c.is_default ? kSourceDefault : kSourceDynamicTopic;
      r.configs.push_back(std::move(c));
    }
    resp.results.push_back(std::move(r));
  }
  ctx.responder.Send(resp);
}

void HandleIncrementalAlterConfigs(RequestContext& ctx,
                                   kafka::IncrementalAlterConfigsRequest& req) {
  kafka::IncrementalAlterConfigsResponse resp;
  for (const auto& res : req.resources) {
    kafka::IncrementalAlterConfigsResponse::AlterConfigsResourceResponse r;
    r.resource_type = res.resource_type;
    r.resource_name = res.resource_name;
    const TopicInfo* t =
        res.resource_type == kResourceTopic ? ctx.broker.topics().Find(res.resource_name) : nullptr;
    if (InClusterMode(ctx)) {
      r.error_code = kafka::errors::kInvalidRequest;
      r.error_message = kNotInClusterMode;
      resp.responses.push_back(std::move(r));
      continue;
    }
    if (t == nullptr) {
      r.error_code = res.resource_type == kResourceTopic ? kafka::errors::kUnknownTopicOrPartition
                                                         : kafka::errors::kInvalidRequest;
      r.error_message = "only topic configs can be altered";
      resp.responses.push_back(std::move(r));
      continue;
    }
    if (ctx.broker.IsInternalTopic(res.resource_name)) {
      // The broker sets the offsets topic's config (compact, --offsets-topic-segment-bytes)
      // and restores it at start-up; cleanup.policy=delete would expire committed offsets.
      RefuseInternal(ctx, "IncrementalAlterConfigs", res.resource_name, "reconfigured",
                     &r.error_code, &r.error_message);
      resp.responses.push_back(std::move(r));
      continue;
    }
    std::map<std::string, std::string> overrides = t->overrides;
    storage::LogConfig scratch = ctx.broker.topics().defaults();
    absl::Status s;
    for (const auto& c : res.configs) {
      switch (c.config_operation) {
        case 0:  // SET
          s = ApplyTopicConfig(c.name, c.value.value_or(""), &scratch);
          if (s.ok()) overrides[c.name] = c.value.value_or("");
          break;
        case 1:  // DELETE: back to the default
          s = ApplyTopicConfig(c.name, TopicConfigValue(c.name, scratch), &scratch);
          overrides.erase(c.name);
          break;
        default:  // APPEND/SUBTRACT apply to list configs; none of ours is one
          s = absl::InvalidArgumentError(
              absl::StrCat("operation ", c.config_operation, " not supported for ", c.name));
      }
      if (!s.ok()) break;
    }
    if (s.ok() && !req.validate_only) s = ctx.broker.SetTopicConfig(res.resource_name, overrides);
    if (!s.ok()) {
      r.error_code = kafka::errors::kInvalidConfig;
      r.error_message = std::string(s.message());
    }
    resp.responses.push_back(std::move(r));
  }
  ctx.responder.Send(resp);
}

void HandleDescribeCluster(RequestContext& ctx, kafka::DescribeClusterRequest&) {
  kafka::DescribeClusterResponse resp;
  const ClusterFacts facts = CurrentCluster(ctx);
  resp.cluster_id = facts.cluster_id;
  resp.controller_id = facts.controller_id;
  for (const cluster::BrokerEndpoint& e : facts.brokers) {
    kafka::DescribeClusterResponse::DescribeClusterBroker b;
    b.broker_id = e.id;
    b.host = e.host;
    b.port = e.port;
    resp.brokers.push_back(std::move(b));
  }
  ctx.responder.Send(resp);
}

void HandleInitProducerId(RequestContext& ctx, kafka::InitProducerIdRequest& req) {
  kafka::InitProducerIdResponse resp;
  if (req.transactional_id.has_value()) {
    // Transactions need a coordinator (a later issue).
    resp.error_code = kafka::errors::kTransactionalIdAuthorizationFailed;
  } else if (req.producer_id >= 0) {
    // KIP-360: an idempotent producer bumping its epoch after an error keeps its id.
    resp.producer_id = req.producer_id;
    resp.producer_epoch = static_cast<int16_t>(req.producer_epoch + 1);
    if (resp.producer_epoch < 0) resp.error_code = kafka::errors::kInvalidProducerEpoch;
  } else if (const auto& next = ctx.broker.options().next_producer_id) {
    // From this broker's block of the cluster's ids (src/cluster/ZNODES.md); a block claim
    // may wait for ZooKeeper.
    next([responder = std::move(ctx.responder)](absl::StatusOr<int64_t> id) mutable {
      kafka::InitProducerIdResponse r;
      if (id.ok()) {
        r.producer_id = *id;
        r.producer_epoch = 0;
      } else {
        r.error_code = absl::IsUnavailable(id.status()) ? kafka::errors::kCoordinatorNotAvailable
                                                        : kafka::errors::kUnknownServerError;
        r.producer_id = -1;
        r.producer_epoch = -1;
        storage::LogWarning("kafka: InitProducerId: %s", id.status().message());
      }
      responder.Send(r);
    });
    return;
  } else {
    auto id = ctx.broker.NextProducerId();
    if (!id.ok()) {
      resp.error_code = kafka::errors::kUnknownServerError;
    } else {
      resp.producer_id = *id;
      resp.producer_epoch = 0;
    }
  }
  ctx.responder.Send(resp);
}

}  // namespace sluice::broker
