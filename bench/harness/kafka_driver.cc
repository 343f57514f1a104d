// Kafka driver on librdkafka's C API.
//
// Settings mirror OpenMessaging Benchmark's Kafka driver file: commonConfig, producerConfig,
// consumerConfig and topicConfig hold librdkafka / topic properties ("key=value" lines or a
// nested map); the common producer knobs may also be given at the top level (acks, linger.ms,
// batch.size, compression.type, ...). Each producer and consumer has its own rd_kafka_t.
#include <librdkafka/rdkafka.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/harness/clock.h"
#include "bench/harness/driver.h"

namespace sluice::bench {
namespace {

// Producer properties accepted at the top level of the settings file, as shorthands.
constexpr const char* kProducerShorthands[] = {"acks",
                                               "linger.ms",
                                               "batch.size",
                                               "batch.num.messages",
                                               "compression.type",
                                               "compression.codec",
                                               "queue.buffering.max.messages",
                                               "queue.buffering.max.kbytes",
                                               "max.in.flight.requests.per.connection",
                                               "enable.idempotence",
                                               "message.max.bytes"};

struct KafkaSettings {
  std::map<std::string, std::string> common, producer, consumer, topic;
  int replication_factor = 1;
  bool delete_at_end = true;
  int admin_timeout_ms = 10000;
  // Start() waits up to this long for the group to assign partitions, so that producers
  // start only once consumers are in place (joining a group takes seconds).
  int assign_wait_ms = 10000;
  // ackGapsFile: where each producer appends one line "partition<TAB>from_ms<TAB>to_ms" (wall
  // clock, ms) whenever a partition went kAckGapMs or longer without an acknowledgement: how
  // bench/failover/run times a leader's replacement (from its kill to its successor's first
  // acknowledgement of that partition).
  std::string ack_gaps_file;
};

constexpr int64_t kAckGapMs = 100;

absl::StatusOr<KafkaSettings> ReadSettings(DriverSettings& s) {
  KafkaSettings k;
  absl::Status status;
  auto props = [&](const char* key, std::map<std::string, std::string>* out) {
    absl::StatusOr<std::map<std::string, std::string>> v = s.GetProperties(key);
    if (!v.ok())
      status.Update(v.status());
    else
      *out = *std::move(v);
  };
  (void)s.GetString("name", "");
  (void)s.GetString("driver", "");
  (void)s.GetString("driverClass", "");
  props("commonConfig", &k.common);
  props("producerConfig", &k.producer);
  props("consumerConfig", &k.consumer);
  props("topicConfig", &k.topic);
  for (const char* key : kProducerShorthands) {
    if (!s.Has(key)) continue;
    absl::StatusOr<std::string> v = s.GetString(key, "");
    if (!v.ok())
      status.Update(v.status());
    else
      k.producer[key] = *v;
  }
  absl::StatusOr<int64_t> rf = s.GetInt("replicationFactor", 1);
  if (!rf.ok())
    status.Update(rf.status());
  else
    k.replication_factor = static_cast<int>(*rf);
  absl::StatusOr<bool> del = s.GetBool("deleteAtEnd", true);
  if (!del.ok())
    status.Update(del.status());
  else
    k.delete_at_end = *del;
  absl::StatusOr<int64_t> aw = s.GetInt("assignWaitMs", 10000);
  if (!aw.ok())
    status.Update(aw.status());
  else
    k.assign_wait_ms = static_cast<int>(*aw);
  absl::StatusOr<std::string> gaps = s.GetString("ackGapsFile", "");
  if (!gaps.ok())
    status.Update(gaps.status());
  else
    k.ack_gaps_file = *gaps;
  absl::StatusOr<int64_t> at = s.GetInt("adminTimeoutMs", 10000);
  if (!at.ok())
    status.Update(at.status());
  else
    k.admin_timeout_ms = static_cast<int>(*at);
  if (!status.ok()) return status;
  if (absl::Status st = s.CheckAllUsed(); !st.ok()) return st;
  return k;
}

absl::StatusOr<rd_kafka_conf_t*> MakeConf(const std::string& broker,
                                          const std::map<std::string, std::string>& a,
                                          const std::map<std::string, std::string>& b) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) -> absl::Status {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("librdkafka ", k, "=", v, ": ", err));
    }
    return absl::OkStatus();
  };
  absl::Status s = set("bootstrap.servers", broker);
  for (const auto& [k, v] : a) s.Update(set(k, v));
  for (const auto& [k, v] : b) s.Update(set(k, v));
  if (!s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  return conf;
}

absl::StatusOr<rd_kafka_t*> NewClient(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof(err));  // Owns conf on success.
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("rd_kafka_new: ", err));
  }
  return rk;
}

absl::Status KafkaError(rd_kafka_resp_err_t e, absl::string_view what) {
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", rd_kafka_err2str(e)));
}

class KafkaProducer final : public Producer {
 public:
  KafkaProducer(ProducerStats* stats) : stats_(stats) {}
  ~KafkaProducer() override {
    if (rkt_ != nullptr) rd_kafka_topic_destroy(rkt_);
    if (rk_ != nullptr) {
      rd_kafka_flush(rk_, 5000);
      rd_kafka_destroy(rk_);
    }
    if (gaps_ != nullptr) fclose(gaps_);
  }

  absl::Status Open(const std::string& broker, const KafkaSettings& s, const std::string& topic) {
    absl::StatusOr<rd_kafka_conf_t*> conf = MakeConf(broker, s.common, s.producer);
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(*conf, this);
    rd_kafka_conf_set_dr_msg_cb(*conf, &KafkaProducer::OnDelivery);
    absl::StatusOr<rd_kafka_t*> rk = NewClient(RD_KAFKA_PRODUCER, *conf);
    if (!rk.ok()) return rk.status();
    rk_ = *rk;
    rkt_ = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    if (rkt_ == nullptr) return KafkaError(rd_kafka_last_error(), "rd_kafka_topic_new");
    // acks=0 gives no delivery confirmation worth timing.
    auto it = s.producer.find("acks");
    unconfirmed_ = it != s.producer.end() && it->second == "0";
    if (!s.ack_gaps_file.empty()) {
      gaps_ = fopen(s.ack_gaps_file.c_str(), "a");
      if (gaps_ == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("ackGapsFile ", s.ack_gaps_file, ": ", strerror(errno)));
      }
    }
    return absl::OkStatus();
  }

  bool CanSend() const override { return true; }

  absl::Status Send(absl::string_view key, absl::string_view payload, int64_t sent_ns) override {
    // The send time travels as the message opaque: no per-message allocation.
    const int rc = rd_kafka_produce(rkt_, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                    const_cast<char*>(payload.data()), payload.size(),
                                    key.empty() ? nullptr : key.data(), key.size(),
                                    reinterpret_cast<void*>(static_cast<intptr_t>(sent_ns)));
    if (rc != 0) {
      const rd_kafka_resp_err_t e = rd_kafka_last_error();
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) return absl::ResourceExhaustedError("queue full");
      return KafkaError(e, "produce");
    }
    if (++since_poll_ >= 64) {
      since_poll_ = 0;
      rd_kafka_poll(rk_, 0);
    }
    return absl::OkStatus();
  }

  absl::Status Poll(int64_t timeout_us) override {
    since_poll_ = 0;
    rd_kafka_poll(rk_, static_cast<int>(timeout_us / 1000));
    return absl::OkStatus();
  }

  absl::Status Flush(int timeout_ms) override {
    return KafkaError(rd_kafka_flush(rk_, timeout_ms), "flush");
  }

 private:
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaProducer*>(opaque);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->stats_->OnFailed(1);
      if (self->errors_logged_++ < 5) {
        fprintf(stderr, "sluice-bench: kafka delivery failed: %s\n", rd_kafka_err2str(m->err));
      }
      return;
    }
    if (self->gaps_ != nullptr && m->partition >= 0) self->NoteAck(m->partition);
    if (self->unconfirmed_) {
      self->stats_->OnPublishedUnconfirmed(static_cast<int>(m->len));
    } else {
      const int64_t sent = static_cast<int64_t>(reinterpret_cast<intptr_t>(m->_private));
      self->stats_->OnAcked(sent, MonoNanos(), static_cast<int>(m->len));
    }
  }

  void NoteAck(int32_t partition) {
    const int64_t now = absl::ToUnixMillis(absl::Now());
    if (static_cast<size_t>(partition) >= last_ack_ms_.size()) {
      last_ack_ms_.resize(static_cast<size_t>(partition) + 1, 0);
    }
    int64_t& last = last_ack_ms_[static_cast<size_t>(partition)];
    if (last > 0 && now - last >= kAckGapMs) {
      fprintf(gaps_, "%d\t%lld\t%lld\n", partition, static_cast<long long>(last),
              static_cast<long long>(now));
      fflush(gaps_);
    }
    last = now;
  }

  ProducerStats* stats_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_topic_t* rkt_ = nullptr;
  FILE* gaps_ = nullptr;
  std::vector<int64_t> last_ack_ms_;  // per partition, wall clock
  bool unconfirmed_ = false;
  int since_poll_ = 0;
  int errors_logged_ = 0;
};

class KafkaConsumer final : public Consumer {
 public:
  KafkaConsumer(std::string topic, int assign_wait_ms, ConsumerStats* stats)
      : topic_(std::move(topic)), assign_wait_ms_(assign_wait_ms), stats_(stats) {}
  ~KafkaConsumer() override {
    if (rk_ != nullptr) {
      if (started_) rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    }
  }

  absl::Status Open(const std::string& broker, const KafkaSettings& s, const std::string& group,
                    bool from_start) {
    std::map<std::string, std::string> props = s.consumer;
    // Each subscription is its own group; a configured group.id becomes the prefix.
    auto configured = props.find("group.id");
    props["group.id"] = configured == props.end() ? group : configured->second + "." + group;
    if (from_start || props.find("auto.offset.reset") == props.end()) {
      props["auto.offset.reset"] = "earliest";
    }
    absl::StatusOr<rd_kafka_conf_t*> conf = MakeConf(broker, s.common, props);
    if (!conf.ok()) return conf.status();
    absl::StatusOr<rd_kafka_t*> rk = NewClient(RD_KAFKA_CONSUMER, *conf);
    if (!rk.ok()) return rk.status();
    rk_ = *rk;
    rd_kafka_poll_set_consumer(rk_);
    return absl::OkStatus();
  }

  absl::Status Start() override {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic_.c_str(), RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t e = rd_kafka_subscribe(rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    started_ = e == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!started_) return KafkaError(e, "subscribe");
    // Wait for an assignment (served by polling). More consumers than partitions leaves some
    // without one: that is why the wait is bounded rather than an error.
    const int64_t deadline = MonoNanos() + int64_t{assign_wait_ms_} * 1'000'000;
    while (MonoNanos() < deadline) {
      if (absl::Status s = Poll(100'000); !s.ok()) return s;
      rd_kafka_topic_partition_list_t* assigned = nullptr;
      if (rd_kafka_assignment(rk_, &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const int n = assigned->cnt;
        rd_kafka_topic_partition_list_destroy(assigned);
        if (n > 0) break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Poll(int64_t timeout_us) override {
    int timeout_ms = static_cast<int>(timeout_us / 1000);
    for (int i = 0; i < 4096; ++i) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, timeout_ms);
      timeout_ms = 0;
      if (m == nullptr) break;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        stats_->OnReceived(m->payload, m->len, WallNanos());
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        const absl::Status s = KafkaError(m->err, "consume");
        rd_kafka_message_destroy(m);
        // Transient fetch errors are retried by the client; only give up on fatal ones.
        if (rd_kafka_fatal_error(rk_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) return s;
        continue;
      }
      rd_kafka_message_destroy(m);
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (!started_) return absl::OkStatus();
    started_ = false;
    return KafkaError(rd_kafka_consumer_close(rk_), "consumer close");
  }

 private:
  const std::string topic_;
  const int assign_wait_ms_;
  ConsumerStats* stats_;
  rd_kafka_t* rk_ = nullptr;
  bool started_ = false;
};

class KafkaDriver final : public Driver {
 public:
  KafkaDriver(std::string broker, KafkaSettings s, std::map<std::string, std::string> raw)
      : broker_(std::move(broker)), s_(std::move(s)), raw_(std::move(raw)) {}
  ~KafkaDriver() override {
    if (admin_ != nullptr) rd_kafka_destroy(admin_);
  }

  absl::string_view name() const override { return "kafka"; }

  absl::Status Probe(int timeout_ms) override {
    absl::StatusOr<rd_kafka_t*> rk = Admin();
    if (!rk.ok()) return rk.status();
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e = rd_kafka_metadata(*rk, 0, nullptr, &md, timeout_ms);
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    return KafkaError(e, absl::StrCat("metadata from ", broker_));
  }

  absl::Status CreateTopic(const std::string& topic, int partitions) override {
    absl::StatusOr<rd_kafka_t*> rk = Admin();
    if (!rk.ok()) return rk.status();
    // A topic made beforehand (e.g. by an operator, or a test's mock cluster) is used as is.
    absl::StatusOr<int> existing = PartitionCount(*rk, topic);
    if (existing.ok() && *existing > 0) {
      if (*existing != partitions) {
        fprintf(stderr, "sluice-bench: topic %s exists with %d partitions (workload: %d)\n",
                topic.c_str(), *existing, partitions);
      }
      return absl::OkStatus();
    }
    char err[512];
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, s_.replication_factor, err, sizeof(err));
    if (nt == nullptr) return absl::InvalidArgumentError(absl::StrCat("NewTopic: ", err));
    for (const auto& [k, v] : s_.topic) {
      rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    }
    rd_kafka_queue_t* q = rd_kafka_queue_new(*rk);
    rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(*rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, s_.admin_timeout_ms, err, sizeof(err));
    rd_kafka_AdminOptions_set_request_timeout(opts, s_.admin_timeout_ms, err, sizeof(err));
    rd_kafka_CreateTopics(*rk, &nt, 1, opts, q);
    absl::Status status = WaitAdmin(q, "create topic " + topic, /*create=*/true);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    if (absl::IsDeadlineExceeded(status) || absl::IsUnimplemented(status)) {
      // A broker without CreateTopics: carry on and let it auto-create the topic.
      fprintf(stderr, "sluice-bench: %s; relying on auto-creation\n",
              std::string(status.message()).c_str());
      return absl::OkStatus();
    }
    return status;
  }

  absl::Status DeleteTopic(const std::string& topic) override {
    if (!s_.delete_at_end) return absl::OkStatus();
    absl::StatusOr<rd_kafka_t*> rk = Admin();
    if (!rk.ok()) return rk.status();
    rd_kafka_DeleteTopic_t* dt = rd_kafka_DeleteTopic_new(topic.c_str());
    rd_kafka_queue_t* q = rd_kafka_queue_new(*rk);
    rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(*rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    char err[512];
    rd_kafka_AdminOptions_set_request_timeout(opts, s_.admin_timeout_ms, err, sizeof(err));
    rd_kafka_DeleteTopics(*rk, &dt, 1, opts, q);
    absl::Status status = WaitAdmin(q, "delete topic " + topic, /*create=*/false);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_queue_destroy(q);
    return status;
  }

  absl::StatusOr<std::unique_ptr<Consumer>> CreateConsumer(const std::string& topic,
                                                           const std::string& subscription,
                                                           const ConsumerOptions& options,
                                                           ConsumerStats* stats) override {
    auto c = std::make_unique<KafkaConsumer>(topic, s_.assign_wait_ms, stats);
    if (absl::Status s =
            c->Open(broker_, s_, absl::StrCat(topic, ".", subscription), options.from_start);
        !s.ok()) {
      return s;
    }
    return std::unique_ptr<Consumer>(std::move(c));
  }

  absl::StatusOr<std::unique_ptr<Producer>> CreateProducer(const std::string& topic,
                                                           ProducerStats* stats) override {
    auto p = std::make_unique<KafkaProducer>(stats);
    if (absl::Status s = p->Open(broker_, s_, topic); !s.ok()) return s;
    return std::unique_ptr<Producer>(std::move(p));
  }

  absl::StatusOr<WireReplayResult> ReplayWire(const std::string& topic, int partitions,
                                              int timeout_ms) override {
    return ReplayKafkaWire(broker_, topic, partitions, timeout_ms);
  }

  std::map<std::string, std::string> Describe() const override {
    std::map<std::string, std::string> d;
    for (const auto& [k, v] : s_.common) d["common." + k] = v;
    for (const auto& [k, v] : s_.producer) d["producer." + k] = v;
    for (const auto& [k, v] : s_.consumer) d["consumer." + k] = v;
    for (const auto& [k, v] : s_.topic) d["topic." + k] = v;
    d["replicationFactor"] = absl::StrCat(s_.replication_factor);
    return d;
  }

 private:
  absl::StatusOr<rd_kafka_t*> Admin() {
    if (admin_ != nullptr) return admin_;
    absl::StatusOr<rd_kafka_conf_t*> conf = MakeConf(broker_, s_.common, {});
    if (!conf.ok()) return conf.status();
    absl::StatusOr<rd_kafka_t*> rk = NewClient(RD_KAFKA_PRODUCER, *conf);
    if (!rk.ok()) return rk.status();
    admin_ = *rk;
    return admin_;
  }

  // Partitions of an existing topic, from a metadata request for all topics (asking for one
  // topic by name could make the broker auto-create it with default settings).
  absl::StatusOr<int> PartitionCount(rd_kafka_t* rk, const std::string& topic) {
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, nullptr, &md, s_.admin_timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(e, "metadata");
    int count = 0;
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count = md->topics[i].partition_cnt;
      }
    }
    rd_kafka_metadata_destroy(md);
    return count;
  }

  absl::Status WaitAdmin(rd_kafka_queue_t* q, const std::string& what, bool create) {
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, s_.admin_timeout_ms + 5000);
    if (ev == nullptr) return absl::DeadlineExceededError(what + ": no answer");
    absl::Status status;
    if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
      status = absl::UnimplementedError(absl::StrCat(what, ": ", rd_kafka_event_error_string(ev)));
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      status = absl::UnavailableError(absl::StrCat(what, ": ", rd_kafka_event_error_string(ev)));
    } else {
      const rd_kafka_topic_result_t** results = nullptr;
      size_t n = 0;
      if (create) {
        results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
      } else {
        results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
      }
      for (size_t i = 0; i < n; ++i) {
        const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
        if (e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
            e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION) {
          status = absl::UnimplementedError(absl::StrCat(what, ": ", rd_kafka_err2str(e)));
          continue;
        }
        if (create && e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue;
        const char* msg = rd_kafka_topic_result_error_string(results[i]);
        status = absl::UnavailableError(absl::StrCat(what, ": ", rd_kafka_err2str(e),
                                                     msg != nullptr ? ": " : "",
                                                     msg != nullptr ? msg : ""));
      }
    }
    rd_kafka_event_destroy(ev);
    return status;
  }

  const std::string broker_;
  const KafkaSettings s_;
  const std::map<std::string, std::string> raw_;
  rd_kafka_t* admin_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> MakeKafkaDriver(const std::string& broker,
                                                        DriverSettings settings) {
  std::string host;
  int port = 0;
  if (absl::Status s = ParseHostPort(broker, &host, &port); !s.ok()) return s;
  std::map<std::string, std::string> raw = settings.AsMap();
  absl::StatusOr<KafkaSettings> s = ReadSettings(settings);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Driver>(new KafkaDriver(broker, *std::move(s), std::move(raw)));
}

}  // namespace sluice::bench
