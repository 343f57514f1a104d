#include "bench/harness/benchmark.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/harness/clock.h"
#include "bench/harness/proc_sampler.h"
#include "bench/harness/rate_limiter.h"
#include "bench/harness/stats.h"

namespace sluice::bench {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kMilli = 1'000'000;

std::atomic<bool> g_interrupted{false};

struct ProducerWorker {
  std::string topic;
  std::unique_ptr<Producer> producer;
  ProducerStats stats;
  RateLimiter limiter{0};
  std::thread thread;
};

struct ConsumerWorker {
  std::unique_ptr<Consumer> consumer;
  ConsumerStats stats;
  std::atomic<bool>* stop = nullptr;
  std::atomic<bool>* go = nullptr;
  uint64_t target = 0;  // Replay: messages to read before done.
  std::atomic<int64_t> done_ns{0};
  bool started = false;  // Start() already called (before the thread began).
  std::thread thread;
  explicit ConsumerWorker(bool record_e2e) : stats(record_e2e) {}
};

// Counter totals and process samples at one instant.
struct Snapshot {
  int64_t mono_ns = 0;
  uint64_t sent = 0, acked = 0, acked_bytes = 0, failed = 0;
  uint64_t received = 0, received_bytes = 0;
  int64_t backlog = 0;
  ProcSample broker, client;
  bool broker_ok = false;
};

std::string NowIso8601() {
  const time_t t = time(nullptr);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string HumanRate(double v) {
  if (v >= 1e6) return absl::StrFormat("%.2fM", v / 1e6);
  if (v >= 1e4) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.0f", v);
}

std::string HumanNs(int64_t ns) {
  if (ns >= 1'000'000'000) return absl::StrFormat("%.2f s", ns / 1e9);
  if (ns >= 1'000'000) return absl::StrFormat("%.1f ms", ns / 1e6);
  return absl::StrFormat("%.0f us", ns / 1e3);
}

class Runner {
 public:
  Runner(const Workload& w, Driver* d, const RunOptions& o) : w_(w), driver_(d), o_(o) {
    if (o_.duration_seconds >= 0) w_.test_duration_seconds = o_.duration_seconds;
    if (o_.warmup_seconds >= 0) w_.warmup_duration_seconds = o_.warmup_seconds;
    switch (o_.progress) {
      case RunOptions::Progress::kAuto:
        progress_ = true;
        tty_ = isatty(STDERR_FILENO) != 0;
        break;
      case RunOptions::Progress::kAlways:
        progress_ = true;
        tty_ = isatty(STDERR_FILENO) != 0;
        break;
      case RunOptions::Progress::kNever:
        progress_ = false;
        break;
    }
  }

  absl::StatusOr<Results> Run();

 private:
  absl::Status Setup();
  absl::Status MakePayload();
  void ProducerLoop(ProducerWorker* w, int index);
  absl::Status Produce(ProducerWorker* w, int index);
  void ConsumerLoop(ConsumerWorker* w);
  void ReportError(const absl::Status& s);
  bool Aborted() const { return aborted_.load() || g_interrupted.load(); }
  void SetTotalRate(double rate);
  Snapshot TakeSnapshot();
  TimeSample Tick(const std::string& phase);
  void Progress(const TimeSample& s);
  void SearchStep(const TimeSample& s);
  void EnterMeasured();
  void LeaveMeasured();
  void RunReplay();
  void RunWireReplay();
  void Finish();

  Workload w_;
  Driver* driver_;
  const RunOptions o_;
  bool progress_ = false;
  bool tty_ = false;
  Results r_;
  std::string payload_;
  std::vector<std::string> keys_;
  std::vector<std::string> topics_;
  std::vector<std::unique_ptr<ProducerWorker>> producers_;
  std::vector<std::unique_ptr<ConsumerWorker>> consumers_;
  std::vector<std::unique_ptr<ConsumerWorker>> replayers_;
  std::atomic<bool> stop_producers_{false};
  std::atomic<bool> stop_consumers_{false};
  std::atomic<bool> consumers_go_{false};
  std::atomic<bool> stop_replay_{false};
  std::atomic<bool> replay_go_{true};
  std::atomic<int> producers_running_{0};
  std::atomic<bool> aborted_{false};
  std::mutex error_mu_;
  std::string error_;

  int64_t run_start_ns_ = 0;
  Snapshot last_;  // At the previous tick.
  double total_rate_ = 0;
  // Measured-phase accounting.
  bool measuring_ = false;
  Snapshot measure_start_;
  double measured_seconds_ = 0;
  Snapshot measure_sum_;  // Deltas summed over measured spans.
  int64_t rss_sum_ = 0, rss_n_ = 0;
  // Rate search.
  bool searching_ = false;
  bool search_failed_once_ = false;
  int search_ok_streak_ = 0;
  int search_ticks_ = 0;
  Snapshot search_start_;
  double max_ok_rate_ = 0;
};

void Runner::ReportError(const absl::Status& s) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (error_.empty()) error_ = std::string(s.message());
  aborted_.store(true);
}

void Runner::SetTotalRate(double rate) {
  total_rate_ = rate;
  const double each = std::isinf(rate) ? rate : rate / std::max<size_t>(1, producers_.size());
  for (auto& p : producers_) p->limiter.SetRate(each);
}

absl::Status Runner::MakePayload() {
  if (!w_.payload_file.empty()) {
    absl::StatusOr<std::string> p = ReadFileToString(w_.payload_file);
    if (!p.ok()) return p.status();
    if (p->empty()) return absl::InvalidArgumentError("payloadFile is empty");
    payload_ = *std::move(p);
    w_.message_size = static_cast<int>(payload_.size());
  } else {
    // Random bytes so that compression (if configured) has no easy win.
    std::mt19937_64 rng(42);
    payload_.resize(w_.message_size);
    for (char& c : payload_) c = static_cast<char>(rng());
  }
  std::mt19937_64 rng(7);
  if (w_.key_distributor == KeyDistributor::kRandomNano) {
    for (int i = 0; i < 4096; ++i) keys_.push_back(absl::StrCat(rng() % 1'000'000'000));
  } else if (w_.key_distributor == KeyDistributor::kKeyRoundRobin) {
    for (int i = 0; i < 1024; ++i) keys_.push_back(absl::StrCat("key-", i));
  }
  return absl::OkStatus();
}

absl::Status Runner::Setup() {
  if (absl::Status s = MakePayload(); !s.ok()) return s;
  for (int t = 0; t < w_.topics; ++t) {
    const std::string topic = absl::StrCat("sluice-bench-", r_.run_id, "-", t);
    if (absl::Status s = driver_->CreateTopic(topic, w_.partitions_per_topic); !s.ok()) return s;
    topics_.push_back(topic);
  }
  // Subscriptions first, so that they store every message from the first one on.
  for (const std::string& topic : topics_) {
    for (int s = 0; s < w_.subscriptions_per_topic; ++s) {
      for (int c = 0; c < w_.consumer_per_subscription; ++c) {
        auto worker = std::make_unique<ConsumerWorker>(/*record_e2e=*/true);
        absl::StatusOr<std::unique_ptr<Consumer>> consumer = driver_->CreateConsumer(
            topic, absl::StrCat("sub-", s), ConsumerOptions{}, &worker->stats);
        if (!consumer.ok()) return consumer.status();
        worker->consumer = *std::move(consumer);
        worker->stop = &stop_consumers_;
        worker->go = &consumers_go_;
        consumers_.push_back(std::move(worker));
      }
    }
  }
  for (const std::string& topic : topics_) {
    for (int p = 0; p < w_.producers_per_topic; ++p) {
      auto worker = std::make_unique<ProducerWorker>();
      worker->topic = topic;
      absl::StatusOr<std::unique_ptr<Producer>> producer =
          driver_->CreateProducer(topic, &worker->stats);
      if (!producer.ok()) return producer.status();
      worker->producer = *std::move(producer);
      producers_.push_back(std::move(worker));
    }
  }
  return absl::OkStatus();
}

void Runner::ProducerLoop(ProducerWorker* w, int index) {
  absl::Status s = Produce(w, index);
  if (!s.ok()) {
    ReportError(s);
  } else if (!Aborted()) {
    if (absl::Status fs = w->producer->Flush(10'000); !fs.ok()) {
      fprintf(stderr, "\nsluice-bench: producer flush: %s\n", std::string(fs.message()).c_str());
    }
  }
  producers_running_--;
}

absl::Status Runner::Produce(ProducerWorker* w, int index) {
  std::string payload = payload_;  // Own copy: the timestamp is written into it.
  Producer* p = w->producer.get();
  uint64_t round_robin = index;
  uint64_t rng = 0x9E3779B97F4A7C15ULL * (index + 1);
  int64_t last_poll = MonoNanos();
  auto stopping = [&] { return stop_producers_.load(std::memory_order_relaxed) || Aborted(); };
  while (!stopping()) {
    const bool unlimited = std::isinf(w->limiter.rate());
    int64_t now = MonoNanos();
    const int64_t intended = w->limiter.Next(now);
    if (intended < 0) {  // Paused.
      if (absl::Status s = p->Poll(10'000); !s.ok()) return s;
      continue;
    }
    // Wait for the intended time, serving confirms meanwhile.
    while ((now = MonoNanos()) < intended && !stopping()) {
      const int64_t wait = intended - now;
      if (wait > 2 * kMilli) {
        if (absl::Status s = p->Poll(std::min<int64_t>(wait - kMilli, 10 * kMilli) / 1000);
            !s.ok()) {
          return s;
        }
      } else {
        // Hand over what the client buffered before sleeping, so it does not wait too.
        if (absl::Status s = p->Push(); !s.ok()) return s;
        SleepUntilMono(intended);
      }
    }
    // The client's window of unconfirmed messages.
    while (!p->CanSend() && !stopping()) {
      if (absl::Status s = p->Poll(1000); !s.ok()) return s;
    }
    if (stopping()) break;
    absl::string_view key;
    if (!keys_.empty()) {
      if (w_.key_distributor == KeyDistributor::kKeyRoundRobin) {
        key = keys_[round_robin++ % keys_.size()];
      } else {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        key = keys_[rng % keys_.size()];
      }
    }
    StampPayload(payload.data(), payload.size(), WallNanos());
    int64_t sent = MonoNanos();
    absl::Status s = p->Send(key, payload, sent);
    while (absl::IsResourceExhausted(s) && !stopping()) {
      if (absl::Status ps = p->Poll(1000); !ps.ok()) return ps;
      sent = MonoNanos();
      s = p->Send(key, payload, sent);
    }
    if (absl::IsResourceExhausted(s)) break;
    if (!s.ok()) return s;
    // Unthrottled sends have no schedule, hence no publish delay.
    w->stats.OnSent(unlimited ? 0 : intended, sent);
    if (sent - last_poll > kMilli) {
      if (absl::Status ps = p->Poll(0); !ps.ok()) return ps;
      last_poll = sent;
    }
  }
  return absl::OkStatus();
}

void Runner::ConsumerLoop(ConsumerWorker* w) {
  bool started = w->started;
  while (!w->stop->load(std::memory_order_relaxed) && !Aborted()) {
    if (!started) {
      if (!w->go->load()) {
        usleep(10'000);
        continue;
      }
      if (absl::Status s = w->consumer->Start(); !s.ok()) return ReportError(s);
      started = true;
    }
    if (absl::Status s = w->consumer->Poll(100'000); !s.ok()) return ReportError(s);
    if (w->target > 0 && w->done_ns.load() == 0 && w->stats.Counters().received >= w->target) {
      w->done_ns.store(MonoNanos());
    }
  }
  if (started && !Aborted()) {
    if (absl::Status s = w->consumer->Close(); !s.ok()) {
      fprintf(stderr, "\nsluice-bench: consumer close: %s\n", std::string(s.message()).c_str());
    }
  }
}

Snapshot Runner::TakeSnapshot() {
  Snapshot s;
  s.mono_ns = MonoNanos();
  for (auto& p : producers_) {
    const ProducerCounters c = p->stats.Counters();
    s.sent += c.sent;
    s.acked += c.acked;
    s.acked_bytes += c.bytes_acked;
    s.failed += c.failed;
  }
  for (auto& c : consumers_) {
    const ConsumerCounters cc = c->stats.Counters();
    s.received += cc.received;
    s.received_bytes += cc.bytes;
  }
  s.backlog = std::max<int64_t>(0, static_cast<int64_t>(s.acked) * w_.subscriptions_per_topic -
                                       static_cast<int64_t>(s.received));
  if (o_.broker_pid > 0) {
    absl::StatusOr<ProcSample> b = SampleProcess(o_.broker_pid);
    if (b.ok()) {
      s.broker = *b;
      s.broker_ok = true;
    }
  }
  absl::StatusOr<ProcSample> c = SampleProcess(0);
  if (c.ok()) s.client = *c;
  return s;
}

TimeSample Runner::Tick(const std::string& phase) {
  Histogram lat, delay, e2e;
  for (auto& p : producers_) p->stats.TakeHistograms(&lat, &delay);
  for (auto& c : consumers_) c->stats.TakeHistogram(&e2e);
  const Snapshot now = TakeSnapshot();
  const double dt = std::max(1e-9, (now.mono_ns - last_.mono_ns) / 1e9);

  TimeSample s;
  s.t = (now.mono_ns - run_start_ns_) / 1e9;
  s.phase = phase;
  s.target_rate = std::isinf(total_rate_) ? 0 : total_rate_;
  s.publish_rate = (now.acked - last_.acked) / dt;
  s.consume_rate = (now.received - last_.received) / dt;
  s.publish_mbps = (now.acked_bytes - last_.acked_bytes) / dt / 1e6;
  s.consume_mbps = (now.received_bytes - last_.received_bytes) / dt / 1e6;
  s.backlog = now.backlog;
  s.pub_latency_p50_ns = lat.ValueAtPercentile(50);
  s.pub_latency_p99_ns = lat.ValueAtPercentile(99);
  s.pub_delay_p99_ns = delay.ValueAtPercentile(99);
  s.e2e_p50_ns = e2e.ValueAtPercentile(50);
  s.e2e_p99_ns = e2e.ValueAtPercentile(99);
  if (now.broker_ok && last_.broker_ok) {
    s.broker_cpu_pct = (now.broker.cpu_seconds - last_.broker.cpu_seconds) / dt * 100;
    s.broker_rss_bytes = now.broker.rss_bytes;
  } else if (now.broker_ok) {
    s.broker_rss_bytes = now.broker.rss_bytes;
  }
  s.client_cpu_pct = (now.client.cpu_seconds - last_.client.cpu_seconds) / dt * 100;

  if (measuring_) {
    r_.pub_latency.Merge(lat);
    r_.pub_delay.Merge(delay);
    r_.e2e.Merge(e2e);
    if (now.broker_ok) {
      rss_sum_ += now.broker.rss_bytes;
      ++rss_n_;
      r_.broker.rss_max_bytes = std::max(r_.broker.rss_max_bytes, now.broker.rss_bytes);
    }
    r_.client.rss_max_bytes = std::max(r_.client.rss_max_bytes, now.client.rss_bytes);
  }
  last_ = now;
  r_.series.push_back(s);
  if (r_.phases.empty() || r_.phases.back().name != phase) {
    const double start = r_.phases.empty() ? 0 : r_.phases.back().end;
    r_.phases.push_back(PhaseSpan{phase, start, s.t});
  } else {
    r_.phases.back().end = s.t;
  }
  Progress(s);
  return s;
}

void Runner::Progress(const TimeSample& s) {
  if (!progress_ || s.phase == "replay") return;  // RunReplay prints its own line.
  std::string line = absl::StrFormat(
      "[%4.0fs %-7s] pub %s msg/s (%.1f MB/s) | cons %s msg/s | "
      "backlog %s | pub p99 %s | e2e p99 %s",
      s.t, s.phase, HumanRate(s.publish_rate), s.publish_mbps, HumanRate(s.consume_rate),
      HumanRate(s.backlog), HumanNs(s.pub_latency_p99_ns), HumanNs(s.e2e_p99_ns));
  if (s.target_rate > 0) absl::StrAppend(&line, " | target ", HumanRate(s.target_rate));
  if (s.broker_cpu_pct >= 0) {
    absl::StrAppendFormat(&line, " | broker cpu %.0f%% rss %.0f MiB", s.broker_cpu_pct,
                          s.broker_rss_bytes / 1048576.0);
  }
  if (tty_) {
    fprintf(stderr, "\r%s\x1b[K", line.c_str());
  } else {
    fprintf(stderr, "%s\n", line.c_str());
  }
  fflush(stderr);
}

// Every two ticks: raise the target while it is met and the backlog is bounded, otherwise
// settle just under what was achieved.
void Runner::SearchStep(const TimeSample& s) {
  if (!searching_ || ++search_ticks_ < 2) return;
  search_ticks_ = 0;
  const Snapshot& now = last_;
  const double dt = std::max(1e-9, (now.mono_ns - search_start_.mono_ns) / 1e9);
  const double achieved = (now.acked - search_start_.acked) / dt;
  const double consumed = (now.received - search_start_.received) / dt;
  const int subs = w_.subscriptions_per_topic;
  const int64_t growth = now.backlog - search_start_.backlog;
  const bool rate_ok = achieved >= 0.9 * total_rate_;
  const bool backlog_ok =
      subs == 0 || growth <= 0.05 * achieved * dt * subs || now.backlog <= 0.5 * achieved * subs;
  const bool errors_ok = now.failed == search_start_.failed;
  if (rate_ok && backlog_ok && errors_ok) {
    if (measuring_) max_ok_rate_ = std::max(max_ok_rate_, achieved);
    // Double until the first miss, then creep up (faster again after a run of successes).
    const double step = !search_failed_once_ ? 2.0 : (++search_ok_streak_ >= 3 ? 1.25 : 1.1);
    SetTotalRate(total_rate_ * step);
  } else {
    search_failed_once_ = true;
    search_ok_streak_ = 0;
    double base = std::min(achieved, total_rate_);
    if (!backlog_ok && subs > 0) base = std::min(base, consumed / subs);
    // At most halve per step: one bad window (a consumer group still joining, a GC pause)
    // must not throw the search back to nothing.
    SetTotalRate(std::max({1.0, base * 0.9, total_rate_ * 0.5}));
  }
  search_start_ = now;
}

void Runner::EnterMeasured() {
  measuring_ = true;
  measure_start_ = last_;
}

void Runner::LeaveMeasured() {
  if (!measuring_) return;
  measuring_ = false;
  const Snapshot& end = last_;
  measured_seconds_ += (end.mono_ns - measure_start_.mono_ns) / 1e9;
  measure_sum_.sent += end.sent - measure_start_.sent;
  measure_sum_.acked += end.acked - measure_start_.acked;
  measure_sum_.acked_bytes += end.acked_bytes - measure_start_.acked_bytes;
  measure_sum_.failed += end.failed - measure_start_.failed;
  measure_sum_.received += end.received - measure_start_.received;
  measure_sum_.received_bytes += end.received_bytes - measure_start_.received_bytes;
  if (end.broker_ok && measure_start_.broker_ok) {
    r_.broker.sampled = true;
    r_.broker.cpu_seconds += end.broker.cpu_seconds - measure_start_.broker.cpu_seconds;
    if (r_.broker.rss_start_bytes == 0) r_.broker.rss_start_bytes = measure_start_.broker.rss_bytes;
    r_.broker.rss_end_bytes = end.broker.rss_bytes;
  }
  r_.client.sampled = true;
  r_.client.cpu_seconds += end.client.cpu_seconds - measure_start_.client.cpu_seconds;
  if (r_.client.rss_start_bytes == 0) r_.client.rss_start_bytes = measure_start_.client.rss_bytes;
  r_.client.rss_end_bytes = end.client.rss_bytes;
}

void Runner::RunReplay() {
  r_.replay.ran = true;
  // One reader per topic; each should see every message published to it.
  std::vector<uint64_t> per_topic(topics_.size(), 0);
  for (size_t i = 0; i < producers_.size(); ++i) {
    const size_t t =
        std::find(topics_.begin(), topics_.end(), producers_[i]->topic) - topics_.begin();
    per_topic[t] += producers_[i]->stats.Counters().acked;
  }
  for (size_t t = 0; t < topics_.size(); ++t) {
    auto worker = std::make_unique<ConsumerWorker>(/*record_e2e=*/false);
    ConsumerOptions opts;
    opts.from_start = true;
    absl::StatusOr<std::unique_ptr<Consumer>> c =
        driver_->CreateConsumer(topics_[t], "replay", opts, &worker->stats);
    if (!c.ok()) {
      r_.replay.error = std::string(c.status().message());
      fprintf(stderr, "\nsluice-bench: replay skipped: %s\n", r_.replay.error.c_str());
      return;
    }
    worker->consumer = *std::move(c);
    worker->stop = &stop_replay_;
    worker->go = &replay_go_;
    worker->target = std::max<uint64_t>(1, per_topic[t]);
    replayers_.push_back(std::move(worker));
  }
  const int64_t start = MonoNanos();
  for (auto& c : replayers_) c->thread = std::thread([this, w = c.get()] { ConsumerLoop(w); });
  uint64_t last_total = 0, last_tick_total = 0;
  int64_t last_progress = start;
  int64_t next_tick = start + kSecond;
  const double cap = std::max(60.0, w_.test_duration_seconds * 4);
  while (!Aborted()) {
    SleepUntilMono(std::min(next_tick, MonoNanos() + 50 * kMilli));
    bool all_done = true;
    uint64_t total = 0;
    for (auto& c : replayers_) {
      all_done = all_done && c->done_ns.load() != 0;
      total += c->stats.Counters().received;
    }
    const int64_t now = MonoNanos();
    if (total != last_total) last_progress = now, last_total = total;
    if (now >= next_tick) {
      next_tick += kSecond;
      Tick("replay");
      // Tick() counts the live consumers (stopped now); show the replay readers instead.
      r_.series.back().consume_rate = static_cast<double>(total - last_tick_total);
      last_tick_total = total;
      if (progress_) {
        fprintf(stderr, "%s[replay] %s messages read%s", tty_ ? "\r" : "",
                HumanRate(static_cast<double>(total)).c_str(), tty_ ? "\x1b[K" : "\n");
      }
    }
    if (all_done) break;
    if (now - last_progress > 15 * kSecond) {
      r_.replay.error = "replay stalled for 15 s before reading every message";
      break;
    }
    if (now - start > cap * kSecond) {
      r_.replay.error = "replay did not finish in time";
      break;
    }
  }
  int64_t end = MonoNanos();
  int64_t last_done = 0;
  bool all = true;
  for (auto& c : replayers_) {
    const int64_t d = c->done_ns.load();
    all = all && d != 0;
    last_done = std::max(last_done, d);
    r_.replay.messages += c->stats.Counters().received;
    r_.replay.mbps += c->stats.Counters().bytes;  // Bytes for now.
  }
  if (all && last_done > 0) end = last_done;
  r_.replay.seconds = std::max(1e-9, (end - start) / 1e9);
  r_.replay.rate = r_.replay.messages / r_.replay.seconds;
  r_.replay.mbps = r_.replay.mbps / r_.replay.seconds / 1e6;
  stop_replay_.store(true);
  for (auto& c : replayers_) c->thread.join();
  if (!Aborted()) RunWireReplay();
}

void Runner::RunWireReplay() {
  uint64_t expected = 0;
  for (auto& p : producers_) expected += p->stats.Counters().acked;
  const int timeout_ms = static_cast<int>(std::max(60.0, w_.test_duration_seconds * 4) * 1000);
  for (const std::string& topic : topics_) {
    absl::StatusOr<WireReplayResult> wr =
        driver_->ReplayWire(topic, w_.partitions_per_topic, timeout_ms);
    if (absl::IsUnimplemented(wr.status())) return;
    r_.replay.wire_ran = true;
    if (!wr.ok()) {
      r_.replay.wire_error = std::string(wr.status().message());
      fprintf(stderr, "sluice-bench: wire replay failed: %s\n", r_.replay.wire_error.c_str());
      return;
    }
    r_.replay.wire_messages += wr->messages;
    r_.replay.wire_bytes += wr->record_bytes;
    r_.replay.wire_seconds += wr->seconds;
  }
  if (r_.replay.wire_messages < expected) {
    r_.replay.wire_error =
        absl::StrCat("read ", r_.replay.wire_messages, " of ", expected, " acknowledged messages");
  }
  r_.replay.wire_mbps = r_.replay.wire_bytes / std::max(1e-9, r_.replay.wire_seconds) / 1e6;
  if (progress_) {
    fprintf(stderr, "[replay, wire] %llu record bytes in %.2f s = %.1f MB/s\n",
            static_cast<unsigned long long>(r_.replay.wire_bytes), r_.replay.wire_seconds,
            r_.replay.wire_mbps);
  }
}

void Runner::Finish() {
  r_.measured_seconds = measured_seconds_;
  r_.published = measure_sum_.acked;
  r_.consumed = measure_sum_.received;
  r_.failed = measure_sum_.failed;
  const double secs = std::max(1e-9, measured_seconds_);
  r_.publish_rate = measure_sum_.acked / secs;
  r_.consume_rate = measure_sum_.received / secs;
  r_.publish_mbps = measure_sum_.acked_bytes / secs / 1e6;
  r_.consume_mbps = measure_sum_.received_bytes / secs / 1e6;
  r_.rate_searched = searching_;
  r_.max_sustainable_rate = max_ok_rate_;
  if (r_.published > 0) {
    r_.broker.cpu_us_per_msg = r_.broker.cpu_seconds * 1e6 / r_.published;
    r_.client.cpu_us_per_msg = r_.client.cpu_seconds * 1e6 / r_.published;
  }
  if (rss_n_ > 0) r_.broker.rss_avg_bytes = rss_sum_ / rss_n_;
  r_.error = error_;
  if (g_interrupted.load() && r_.error.empty()) r_.error = "interrupted";
}

absl::StatusOr<Results> Runner::Run() {
  r_.workload = w_;
  r_.options = o_;
  r_.driver = std::string(driver_->name());
  r_.driver_settings = driver_->Describe();
  r_.started_at = NowIso8601();
  r_.run_id = o_.run_id;
  if (r_.run_id.empty()) {
    std::random_device rd;
    r_.run_id = absl::StrFormat("%06x", rd() & 0xffffff);
  }
  r_.backlog_mode = w_.backlog_mode();
  if (absl::Status s = Setup(); !s.ok()) {
    for (const std::string& t : topics_) (void)driver_->DeleteTopic(t);
    return s;
  }

  // Initial rates and phase.
  std::string phase;
  if (r_.backlog_mode) {
    phase = "build";
    consumers_go_.store(false);
    SetTotalRate(w_.producer_rate > 0 ? w_.producer_rate : RateLimiter::kUnlimited);
  } else {
    phase = w_.warmup_duration_seconds > 0 ? "warmup" : "test";
    consumers_go_.store(true);
    searching_ = w_.producer_rate == 0;
    SetTotalRate(searching_ ? w_.rate_search_start : w_.producer_rate);
  }
  if (consumers_go_.load()) {
    // Subscribe before the first message is sent, so that consumers that start at the
    // current end (AMQP streams at "next", Kafka at "latest") miss nothing.
    for (auto& c : consumers_) {
      if (absl::Status s = c->consumer->Start(); !s.ok()) {
        for (const std::string& t : topics_) (void)driver_->DeleteTopic(t);
        return s;
      }
      c->started = true;
    }
  }
  // The clock starts once consumers are in place (a Kafka group join takes seconds).
  run_start_ns_ = MonoNanos();
  last_ = TakeSnapshot();
  search_start_ = last_;
  for (auto& c : consumers_) c->thread = std::thread([this, w = c.get()] { ConsumerLoop(w); });
  producers_running_.store(static_cast<int>(producers_.size()));
  for (size_t i = 0; i < producers_.size(); ++i) {
    producers_[i]->thread =
        std::thread([this, w = producers_[i].get(), i] { ProducerLoop(w, static_cast<int>(i)); });
  }
  if (phase != "warmup") EnterMeasured();

  int64_t phase_start = run_start_ns_;
  int64_t next_tick = run_start_ns_ + kSecond;
  Snapshot build_end;
  int64_t build_end_rss = -1;
  int64_t drain_progress_ns = 0;  // Last tick at which consumers received anything.
  uint64_t drain_last_received = 0;
  if (r_.backlog_mode) {
    r_.backlog.target_bytes = w_.BacklogTargetBytes();
    r_.backlog.target_messages = w_.consumer_backlog_messages;
  }
  while (!Aborted()) {
    SleepUntilMono(next_tick);
    next_tick += kSecond;
    const TimeSample s = Tick(phase);
    const double in_phase = (last_.mono_ns - phase_start) / 1e9;
    if (phase == "warmup" && in_phase >= w_.warmup_duration_seconds - 0.01) {
      phase = "test";
      phase_start = last_.mono_ns;
      EnterMeasured();
    } else if (phase == "test") {
      SearchStep(s);
      if (in_phase >= w_.test_duration_seconds - 0.01) break;
    } else if (phase == "warmup") {
      SearchStep(s);
    } else if (phase == "build") {
      r_.backlog.peak_backlog = std::max(r_.backlog.peak_backlog, last_.backlog);
      const int64_t stored_bytes = last_.backlog * static_cast<int64_t>(payload_.size());
      const bool reached =
          (w_.consumer_backlog_messages > 0 && last_.backlog >= w_.consumer_backlog_messages) ||
          (w_.consumer_backlog_size_gb > 0 && stored_bytes >= w_.BacklogTargetBytes());
      if (reached || in_phase >= o_.max_build_seconds) {
        build_end = last_;
        build_end_rss = s.broker_rss_bytes;
        r_.backlog.build_seconds = in_phase;
        r_.backlog.build_publish_rate =
            (last_.acked - measure_start_.acked) / std::max(1e-9, in_phase);
        r_.backlog.rss_at_peak_bytes = build_end_rss;
        const double drain_rate = w_.drain_producer_rate >= 0 ? w_.drain_producer_rate
                                                              : w_.drain_producer_rate_fraction *
                                                                    r_.backlog.build_publish_rate;
        SetTotalRate(drain_rate);
        consumers_go_.store(true);
        phase = "drain";
        phase_start = last_.mono_ns;
        drain_progress_ns = last_.mono_ns;
        drain_last_received = last_.received;
      }
    } else if (phase == "drain") {
      const double threshold =
          std::max(100.0, 0.5 * total_rate_ * std::max(1, w_.subscriptions_per_topic));
      const bool drained = last_.backlog <= threshold;
      if (last_.received != drain_last_received) drain_progress_ns = last_.mono_ns;
      drain_last_received = last_.received;
      // Consumers that received nothing for 30 s will not drain it: stop waiting.
      const bool stalled = last_.mono_ns - drain_progress_ns > 30 * kSecond;
      if (drained || stalled || in_phase >= w_.test_duration_seconds) {
        r_.backlog.drained = drained;
        r_.backlog.drain_seconds = in_phase;
        const double d = std::max(1e-9, in_phase);
        r_.backlog.drain_publish_rate = (last_.acked - build_end.acked) / d;
        r_.backlog.drain_consume_rate = (last_.received - build_end.received) / d;
        r_.backlog.drain_net_rate = (build_end.backlog - last_.backlog) / d;
        break;
      }
    }
    if (s.broker_rss_bytes >= 0 && r_.backlog_mode) {
      r_.backlog.rss_max_bytes = std::max(r_.backlog.rss_max_bytes, s.broker_rss_bytes);
    }
  }
  if (r_.backlog_mode && phase == "build" && Aborted()) r_.backlog.build_seconds = 0;
  LeaveMeasured();

  // Tail: stop producers, let consumers catch up.
  stop_producers_.store(true);
  const int64_t tail_start = MonoNanos();
  int64_t last_progress = tail_start;
  uint64_t last_received = last_.received;
  while (!Aborted()) {
    SleepUntilMono(next_tick);
    next_tick += kSecond;
    Tick("tail");
    if (last_.received != last_received) last_progress = last_.mono_ns;
    last_received = last_.received;
    const bool producers_done = producers_running_.load() == 0;
    if (producers_done && last_.backlog == 0) break;
    if ((MonoNanos() - tail_start) / 1e9 > o_.max_tail_seconds) break;
    // Consumers that have stopped making progress will not drain the rest.
    if (producers_done && MonoNanos() - last_progress > 5 * kSecond) break;
  }
  for (auto& p : producers_) p->thread.join();
  stop_consumers_.store(true);
  for (auto& c : consumers_) c->thread.join();
  // The whole run, tail included: the measured window ends with records still in flight, so
  // only these totals can show that everything acknowledged was consumed.
  for (auto& p : producers_) r_.published_total += p->stats.Counters().acked;
  for (auto& c : consumers_) r_.consumed_total += c->stats.Counters().received;
  if (w_.replay_from_start && !Aborted()) RunReplay();
  if (progress_ && tty_) fprintf(stderr, "\n");
  for (auto& p : producers_) p->producer.reset();
  for (auto& c : consumers_) c->consumer.reset();
  for (auto& c : replayers_) c->consumer.reset();
  for (const std::string& t : topics_) {
    if (absl::Status s = driver_->DeleteTopic(t); !s.ok()) {
      fprintf(stderr, "sluice-bench: cleanup: %s\n", std::string(s.message()).c_str());
    }
  }
  Finish();
  return std::move(r_);
}

}  // namespace

void RequestStop() { g_interrupted.store(true); }

absl::StatusOr<Results> RunBenchmark(const Workload& workload, Driver* driver,
                                     const RunOptions& options) {
  Runner runner(workload, driver, options);
  return runner.Run();
}

}  // namespace sluice::bench
