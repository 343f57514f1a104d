#include "src/metrics.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "src/amqp/amqp_broker.h"
#include "src/shard.h"

namespace sluice::broker {

namespace {

struct Family {
  const char* name;
  const char* type;
  const char* help;
};

// Every family, in output order.
constexpr Family kFamilies[] = {
    {"sluice_up", "gauge", "1 while the broker serves requests."},
    {"sluice_shards", "gauge", "Shards (reactor threads) of the broker."},
    {"sluice_topics", "gauge", "Kafka topics in the registry."},
    {"sluice_connections", "gauge", "Open client connections (Kafka, AMQP, HTTP) per shard."},
    {"sluice_log_start_offset", "gauge", "First offset readers may see, per partition log."},
    {"sluice_log_end_offset", "gauge", "Next offset to assign, per partition log."},
    {"sluice_log_high_watermark", "gauge",
     "Offset below which every batch is written and readable, per partition log."},
    {"sluice_log_size_bytes", "gauge", "Bytes of segment files, per partition log."},
    {"sluice_logs_out_of_space", "gauge",
     "Partition logs refusing appends until the disk has room again (retriable), per shard."},
    {"sluice_logs_fenced", "gauge",
     "Partition logs read-only after an I/O error until a restart, per shard."},
    {"sluice_amqp_queue_messages_ready", "gauge", "AMQP messages ready for delivery."},
    {"sluice_amqp_queue_messages_unacked", "gauge", "AMQP messages delivered, not yet acked."},
    {"sluice_amqp_queue_consumers", "gauge", "AMQP consumers of a queue."},
};

void EscapeLabelValue(const std::string& v, std::string* out) {
  for (char c : v) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendValue(double v, std::string* out) {
  if (std::isnan(v)) {
    out->append("NaN");
  } else if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    absl::StrAppend(out, static_cast<int64_t>(v));
  } else {
    absl::StrAppend(out, v);
  }
}

}  // namespace

void CollectShardMetrics(Shard& shard, int shard_index, std::vector<MetricSample>* out) {
  const std::string index = absl::StrCat(shard_index);
  out->push_back({"sluice_connections",
                  {{"shard", index}},
                  static_cast<double>(shard.reactor().connection_count())});
  double out_of_space = 0;
  double fenced = 0;
  for (const storage::TopicPartition& tp : shard.logs().ListLogs()) {
    const storage::PartitionLog* log = shard.logs().GetLog(tp);
    if (log == nullptr) continue;
    out_of_space += log->out_of_space() ? 1 : 0;
    fenced += log->fenced() ? 1 : 0;
    std::vector<std::pair<std::string, std::string>> labels = {
        {"topic", tp.topic}, {"partition", absl::StrCat(tp.partition)}};
    out->push_back(
        {"sluice_log_start_offset", labels, static_cast<double>(log->log_start_offset())});
    out->push_back({"sluice_log_end_offset", labels, static_cast<double>(log->log_end_offset())});
    out->push_back(
        {"sluice_log_high_watermark", labels, static_cast<double>(log->high_watermark())});
    out->push_back(
        {"sluice_log_size_bytes", std::move(labels), static_cast<double>(log->size_bytes())});
  }
  out->push_back({"sluice_logs_out_of_space", {{"shard", index}}, out_of_space});
  out->push_back({"sluice_logs_fenced", {{"shard", index}}, fenced});
}

void CollectAmqpMetrics(const AmqpBroker& amqp, std::vector<MetricSample>* out) {
  amqp.ForEachQueue([out](const AmqpQueue& q) {
    std::vector<std::pair<std::string, std::string>> labels = {{"vhost", "/"}, {"queue", q.name}};
    out->push_back({"sluice_amqp_queue_messages_ready", labels, static_cast<double>(q.ready())});
    out->push_back({"sluice_amqp_queue_messages_unacked", labels,
                    static_cast<double>(q.cursor.UnackedCount())});
    out->push_back({"sluice_amqp_queue_consumers", std::move(labels),
                    static_cast<double>(q.consumers.size())});
  });
}

std::string RenderMetrics(const std::vector<MetricSample>& samples) {
  std::map<std::string, std::vector<const MetricSample*>> by_family;
  for (const MetricSample& s : samples) by_family[s.family].push_back(&s);
  std::string out;
  for (const Family& f : kFamilies) {
    auto it = by_family.find(f.name);
    if (it == by_family.end()) continue;
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const MetricSample* s : it->second) {
      out.append(f.name);
      if (!s->labels.empty()) {
        out.push_back('{');
        for (size_t i = 0; i < s->labels.size(); ++i) {
          if (i > 0) out.push_back(',');
          absl::StrAppend(&out, s->labels[i].first, "=\"");
          EscapeLabelValue(s->labels[i].second, &out);
          out.push_back('"');
        }
        out.push_back('}');
      }
      out.push_back(' ');
      AppendValue(s->value, &out);
      out.push_back('\n');
    }
  }
  return out;
}

}  // namespace sluice::broker
