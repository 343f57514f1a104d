#include "src/shard_map.h"

#include <string>

#include "src/amqp/amqp_broker.h"
#include "src/kafka/offsets_topic.h"

namespace sluice::broker {

int OwnerShard(std::string_view topic, int32_t partition, int shards) {
  if (shards <= 1 || partition <= 0) return 0;
  if (topic == kOffsetsTopic || IsAmqpQueueLog(std::string(topic))) return 0;
  return static_cast<int>(partition % shards);
}

}  // namespace sluice::broker
