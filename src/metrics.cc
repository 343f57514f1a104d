#include "src/metrics.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "net/reactor/loop_stats.h"
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
    {"sluice_log_open_files", "gauge",
     "Descriptors held by open log segments (3 each), per shard; at most log.max.open.files "
     "divided among the shards."},
    {"sluice_log_segment_reopens_total", "counter",
     "Segments whose files were closed for log.max.open.files and opened again by a later use, "
     "per shard."},
    {"sluice_loop_iteration_seconds", "histogram",
     "Busy time of each iteration of a shard's event loop: from the return of one poll for "
     "events to the start of the next (handlers, timers, posted tasks, storage submission), "
     "during which no new event is noticed; the time blocked in the poll is excluded. _count "
     "counts iterations."},
    {"sluice_loop_iteration_max_seconds", "gauge",
     "Longest busy time of one iteration of a shard's event loop since the start."},
    {"sluice_loop_ready_wait_seconds", "histogram",
     "Per iteration of a shard's event loop that served ready sockets or watched fds: how long "
     "they may have waited for the loop. If its poll found them already pending, the time "
     "since the previous poll returned (an upper bound of their wait); 0 if the loop slept in "
     "the poll until they came. Not resolved up to 100 us: after a shorter iteration the loop "
     "does not check, and records that iteration's busy time."},
    {"sluice_amqp_queue_messages_ready", "gauge", "AMQP messages ready for delivery."},
    {"sluice_amqp_queue_messages_unacked", "gauge", "AMQP messages delivered, not yet acked."},
    {"sluice_amqp_queue_consumers", "gauge", "AMQP consumers of a queue."},
    {"sluice_amqp_tick_queues", "gauge",
     "AMQP queues the 200 ms housekeeping tick visits: a cursor moved and the queue's log start "
     "has not caught up, or messages wait under a queue TTL. Idle queues are not counted."},
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
    // 12 significant digits: a sum of seconds keeps its nanoseconds up to 1000 s.
    absl::StrAppendFormat(out, "%.12g", v);
  }
}

std::string FormatValue(double v) {
  std::string out;
  AppendValue(v, &out);
  return out;
}

double Seconds(int64_t nanos) { return static_cast<double>(nanos) / 1e9; }

// The family a sample belongs to: its own name, or for a histogram's _bucket, _sum and _count
// samples the histogram's name.
std::string FamilyOf(const std::string& name) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!name.ends_with(suffix)) continue;
    const std::string_view base = std::string_view(name).substr(0, name.size() - suffix.size());
    for (const Family& f : kFamilies) {
      if (base == f.name && std::string_view(f.type) == "histogram") return std::string(base);
    }
  }
  return name;
}

// A Prometheus histogram of one shard: cumulative _bucket samples ("le" in seconds, then
// "+Inf"), _sum in seconds, _count.
void AddHistogram(const std::string& family, const std::string& shard,
                  const net::DurationHistogram::Snapshot& h, std::vector<MetricSample>* out) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < net::DurationHistogram::kBuckets; ++i) {
    cumulative += h.buckets[i];
    const std::string le = i < net::DurationHistogram::kBoundsNanos.size()
                               ? FormatValue(Seconds(net::DurationHistogram::kBoundsNanos[i]))
                               : std::string("+Inf");
    out->push_back(
        {family + "_bucket", {{"shard", shard}, {"le", le}}, static_cast<double>(cumulative)});
  }
  out->push_back({family + "_sum", {{"shard", shard}}, Seconds(h.sum_nanos)});
  out->push_back({family + "_count", {{"shard", shard}}, static_cast<double>(h.count)});
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
  const storage::SegmentCache& files = shard.logs().segment_cache();
  out->push_back(
      {"sluice_log_open_files", {{"shard", index}}, static_cast<double>(files.open_files())});
  out->push_back({"sluice_log_segment_reopens_total",
                  {{"shard", index}},
                  static_cast<double>(files.reopens())});
  // Read on the shard's own thread: the writer's, so each histogram is exact.
  const net::LoopStats& loop = shard.reactor().loop_stats();
  const net::DurationHistogram::Snapshot iteration = loop.iteration.Read();
  AddHistogram("sluice_loop_iteration_seconds", index, iteration, out);
  out->push_back(
      {"sluice_loop_iteration_max_seconds", {{"shard", index}}, Seconds(iteration.max_nanos)});
  AddHistogram("sluice_loop_ready_wait_seconds", index, loop.ready_wait.Read(), out);
}

void CollectAmqpMetrics(const AmqpBroker& amqp, std::vector<MetricSample>* out) {
  out->push_back({"sluice_amqp_tick_queues", {}, static_cast<double>(amqp.tick_queue_count())});
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
  for (const MetricSample& s : samples) by_family[FamilyOf(s.family)].push_back(&s);
  std::string out;
  for (const Family& f : kFamilies) {
    auto it = by_family.find(f.name);
    if (it == by_family.end()) continue;
    absl::StrAppend(&out, "# HELP ", f.name, " ", f.help, "\n# TYPE ", f.name, " ", f.type, "\n");
    for (const MetricSample* s : it->second) {
      out.append(s->family);
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
