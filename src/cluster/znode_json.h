// The JSON of the znodes Sluice reads and writes (ZNODES.md), in Kafka's layout. The parsers
// take bytes from ZooKeeper, which any client of the ensemble may have written: they accept
// only well-formed values in range and say no otherwise, never throw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/cluster/cluster_view.h"

namespace sluice::cluster {

// /brokers/ids/<id> (version 5). `timestamp_ms` is the registration time.
std::string EncodeRegistration(const std::string& host, int32_t port, int64_t timestamp_ms);
// Host and Kafka port of a registration: "host" and "port", or else the first PLAINTEXT
// endpoint. A port outside 1..65535 or an empty host is no registration.
std::optional<BrokerEndpoint> DecodeRegistration(int32_t id, std::string_view data);

// /controller (version 1).
std::string EncodeController(int32_t broker_id, int64_t timestamp_ms);
// The controller's broker id, if the data names one (0..2^31-1).
std::optional<int32_t> DecodeController(std::string_view data);

// /cluster/id (version "1").
std::string EncodeClusterId(const std::string& id);
std::optional<std::string> DecodeClusterId(std::string_view data);
// A new cluster's id: 16 random bytes in URL-safe base64 without padding (22 characters), the
// form of Kafka's cluster ids.
std::string NewClusterId();

// /controller_epoch: a decimal integer 0..2^31-2 (a new controller writes it plus one).
std::optional<int32_t> DecodeControllerEpoch(std::string_view data);

// /latest_producer_id_block (version 1): the last block of producer ids a broker claimed,
// both ends inclusive and written as decimal strings, as Kafka writes them.
struct ProducerIdBlock {
  int32_t broker = -1;
  int64_t start = 0;
  int64_t end = -1;  // inclusive
};
std::string EncodeProducerIdBlock(const ProducerIdBlock& block);
// A block with 0 <= start <= end <= 2^62 (ids stay far from overflow), if the data holds one.
std::optional<ProducerIdBlock> DecodeProducerIdBlock(std::string_view data);

// /brokers/topics/<topic> (version 2): the replicas of each partition, in assignment order.
std::string EncodeTopicAssignment(const std::vector<std::vector<int32_t>>& replicas);
// Partitions "0".."n-1" each once (n at most kMaxTopicPartitions), each with one or more
// distinct broker ids >= 0; anything else is no assignment.
inline constexpr size_t kMaxTopicPartitions = 1 << 20;
std::optional<std::vector<std::vector<int32_t>>> DecodeTopicAssignment(std::string_view data);

// /config/topics/<topic> (version 1): the topic's config overrides, string to string.
std::string EncodeTopicConfig(const std::map<std::string, std::string>& configs);
std::optional<std::map<std::string, std::string>> DecodeTopicConfig(std::string_view data);

// /brokers/topics/<topic>/partitions/<p>/state (version 1). The znode's version is not in
// the data (DecodePartitionState leaves `version` at -1).
std::string EncodePartitionState(const PartitionState& state);
// leader >= -1, epochs >= 0, ISR ids >= 0 and distinct.
std::optional<PartitionState> DecodePartitionState(std::string_view data);

}  // namespace sluice::cluster
