// Which shard owns a partition: the one place that decides it (docs/ARCHITECTURE.md,
// "Threads and ownership").
//
// Shard 0 owns the control plane: the topic registry, every partition of `__consumer_offsets`
// (the group coordinator runs there) and every AMQP queue log (the AMQP front end runs only on
// shard 0). Every other partition p of a topic is owned by shard p mod N. Partition 0 of every
// topic is therefore on shard 0: an AMQP stream queue is partition 0 of the Kafka topic of its
// name, read and written by the AMQP front end on shard 0, whether the topic was created by
// AMQP or by a Kafka client, and growing a topic (CreatePartitions) never moves a partition.
// The price: single-partition topics all live on shard 0; spreading load needs partitions.
//
// The function depends only on the name, the partition and N, so a restart with the same
// shard count opens every log on the same shard (a different count simply re-deals them).
#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::broker {

int OwnerShard(std::string_view topic, int32_t partition, int shards);

}  // namespace sluice::broker
