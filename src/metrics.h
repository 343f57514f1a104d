// Broker metrics in Prometheus' text exposition format (version 0.0.4), for GET /metrics on
// the admin listener (src/http_admin.h).
//
// Samples are plain values, so each shard can gather its own (its logs, its connections) on
// its thread and hand them to shard 0, which renders them: a family's samples must be
// contiguous in the output, whichever shard they came from.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sluice::broker {

class Shard;
class AmqpBroker;

struct MetricSample {
  // e.g. "sluice_log_end_offset"; a histogram's samples are named after it with _bucket (one
  // per "le" label, cumulative, ending with "+Inf"), _sum and _count.
  std::string family;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

// The samples one shard can give about itself: its logs (start/end offsets, high watermark,
// size), its live connections and its loop timing (iteration and ready-wait histograms,
// net/reactor/loop_stats.h). Shard thread.
void CollectShardMetrics(Shard& shard, int shard_index, std::vector<MetricSample>* out);
// AMQP queue depths (ready, unacked, consumers). Shard 0's thread.
void CollectAmqpMetrics(const AmqpBroker& amqp, std::vector<MetricSample>* out);

// The exposition text: each family known to Sluice with its HELP and TYPE lines, then its
// samples in the order given. Label values are escaped; unknown families are skipped.
std::string RenderMetrics(const std::vector<MetricSample>& samples);

}  // namespace sluice::broker
