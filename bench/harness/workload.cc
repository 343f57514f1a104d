#include "bench/harness/workload.h"

#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice::bench {
namespace {

absl::Status KeyError(const YamlEntry& e, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", e.line, ": ", e.key, ": ", what));
}

absl::StatusOr<double> ToDouble(const YamlEntry& e) {
  double v;
  if (e.is_list || !absl::SimpleAtod(e.scalar, &v)) return KeyError(e, "expected a number");
  return v;
}

absl::StatusOr<int64_t> ToInt(const YamlEntry& e) {
  int64_t v;
  if (!e.is_list && absl::SimpleAtoi(e.scalar, &v)) return v;
  // Allow "1e6"-style integers.
  double d;
  if (!e.is_list && absl::SimpleAtod(e.scalar, &d) && d == static_cast<double>(int64_t(d))) {
    return static_cast<int64_t>(d);
  }
  return KeyError(e, "expected an integer");
}

absl::StatusOr<bool> ToBool(const YamlEntry& e) {
  const std::string v = absl::AsciiStrToLower(e.scalar);
  if (!e.is_list && (v == "true" || v == "yes" || v == "on" || v == "1")) return true;
  if (!e.is_list && (v == "false" || v == "no" || v == "off" || v == "0")) return false;
  return KeyError(e, "expected true or false");
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::string_view KeyDistributorName(KeyDistributor k) {
  switch (k) {
    case KeyDistributor::kNoKey:
      return "NO_KEY";
    case KeyDistributor::kRandomNano:
      return "RANDOM_NANO";
    case KeyDistributor::kKeyRoundRobin:
      return "KEY_ROUND_ROBIN";
  }
  return "?";
}

absl::StatusOr<Workload> ParseWorkload(absl::string_view text, const std::string& base_dir) {
  absl::StatusOr<YamlDoc> doc = ParseYamlLite(text);
  if (!doc.ok()) return doc.status();
  Workload w;
  bool have_duration_min = false, have_duration_sec = false;
  bool have_warmup_min = false, have_warmup_sec = false;
  for (const YamlEntry& e : doc->entries()) {
    const std::string& k = e.key;
    // Integers that must be >= lo.
    auto int_at_least = [&](int lo, int* out) -> absl::Status {
      absl::StatusOr<int64_t> v = ToInt(e);
      if (!v.ok()) return v.status();
      if (*v < lo || *v > 1'000'000) return KeyError(e, absl::StrCat("must be >= ", lo));
      *out = static_cast<int>(*v);
      return absl::OkStatus();
    };
    auto non_negative = [&](double* out) -> absl::Status {
      absl::StatusOr<double> v = ToDouble(e);
      if (!v.ok()) return v.status();
      if (*v < 0) return KeyError(e, "must be >= 0");
      *out = *v;
      return absl::OkStatus();
    };
    absl::Status s;
    double d = 0;
    if (k == "name") {
      w.name = e.scalar;
    } else if (k == "description") {
    } else if (k == "topics") {
      s = int_at_least(1, &w.topics);
    } else if (k == "partitionsPerTopic") {
      s = int_at_least(1, &w.partitions_per_topic);
    } else if (k == "messageSize") {
      s = int_at_least(1, &w.message_size);
    } else if (k == "payloadFile") {
      w.payload_file = e.scalar;
      if (!w.payload_file.empty() && w.payload_file[0] != '/') {
        w.payload_file = absl::StrCat(base_dir, "/", w.payload_file);
      }
    } else if (k == "useRandomizedPayloads" || k == "randomBytesRatio" ||
               k == "randomizedPayloadPoolSize") {
      // OMB knobs for payload entropy; our payloads are random bytes already.
    } else if (k == "keyDistributor") {
      if (e.scalar == "NO_KEY") {
        w.key_distributor = KeyDistributor::kNoKey;
      } else if (e.scalar == "RANDOM_NANO") {
        w.key_distributor = KeyDistributor::kRandomNano;
      } else if (e.scalar == "KEY_ROUND_ROBIN") {
        w.key_distributor = KeyDistributor::kKeyRoundRobin;
      } else {
        s = KeyError(e, "expected NO_KEY, RANDOM_NANO or KEY_ROUND_ROBIN");
      }
    } else if (k == "producersPerTopic") {
      s = int_at_least(1, &w.producers_per_topic);
    } else if (k == "subscriptionsPerTopic") {
      s = int_at_least(0, &w.subscriptions_per_topic);
    } else if (k == "consumerPerSubscription") {
      s = int_at_least(1, &w.consumer_per_subscription);
    } else if (k == "producerRate") {
      s = non_negative(&w.producer_rate);
    } else if (k == "testDurationMinutes") {
      s = non_negative(&d);
      w.test_duration_seconds = d * 60;
      have_duration_min = true;
    } else if (k == "testDurationSeconds") {
      s = non_negative(&w.test_duration_seconds);
      have_duration_sec = true;
    } else if (k == "warmupDurationMinutes") {
      s = non_negative(&d);
      w.warmup_duration_seconds = d * 60;
      have_warmup_min = true;
    } else if (k == "warmupDurationSeconds") {
      s = non_negative(&w.warmup_duration_seconds);
      have_warmup_sec = true;
    } else if (k == "consumerBacklogSizeGB") {
      s = non_negative(&w.consumer_backlog_size_gb);
    } else if (k == "consumerBacklogMessages") {
      absl::StatusOr<int64_t> v = ToInt(e);
      s = v.status();
      if (v.ok()) w.consumer_backlog_messages = *v;
    } else if (k == "drainProducerRateFraction") {
      s = non_negative(&w.drain_producer_rate_fraction);
    } else if (k == "drainProducerRate") {
      s = non_negative(&w.drain_producer_rate);
    } else if (k == "replayFromStart") {
      absl::StatusOr<bool> v = ToBool(e);
      s = v.status();
      if (v.ok()) w.replay_from_start = *v;
    } else if (k == "rateSearchStart") {
      s = non_negative(&w.rate_search_start);
      if (s.ok() && w.rate_search_start <= 0) s = KeyError(e, "must be > 0");
    } else {
      s = KeyError(e, "unknown workload key");
    }
    if (!s.ok()) return s;
  }
  if (have_duration_min && have_duration_sec) {
    return absl::InvalidArgumentError("give testDurationMinutes or testDurationSeconds, not both");
  }
  if (have_warmup_min && have_warmup_sec) {
    return absl::InvalidArgumentError(
        "give warmupDurationMinutes or warmupDurationSeconds, not both");
  }
  if (w.backlog_mode() && w.subscriptions_per_topic == 0) {
    return absl::InvalidArgumentError("a consumer backlog needs subscriptionsPerTopic >= 1");
  }
  if (w.name.empty()) w.name = "unnamed";
  return w;
}

absl::StatusOr<Workload> LoadWorkload(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Workload> w = ParseWorkload(*text, DirName(path));
  if (!w.ok())
    return absl::Status(w.status().code(), absl::StrCat(path, ": ", w.status().message()));
  return w;
}

absl::StatusOr<DriverSettings> DriverSettings::Parse(absl::string_view text) {
  absl::StatusOr<YamlDoc> doc = ParseYamlLite(text);
  if (!doc.ok()) return doc.status();
  DriverSettings s;
  s.doc_ = *std::move(doc);
  return s;
}

absl::StatusOr<DriverSettings> DriverSettings::Load(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<DriverSettings> s = Parse(*text);
  if (!s.ok())
    return absl::Status(s.status().code(), absl::StrCat(path, ": ", s.status().message()));
  return s;
}

bool DriverSettings::Has(absl::string_view key) const { return doc_.Find(key) != nullptr; }

absl::StatusOr<std::string> DriverSettings::GetString(absl::string_view key,
                                                      absl::string_view def) {
  const YamlEntry* e = doc_.Find(key);
  if (e == nullptr) return std::string(def);
  used_[e->key] = true;
  if (e->is_list) return KeyError(*e, "expected a scalar");
  return e->scalar;
}

absl::StatusOr<int64_t> DriverSettings::GetInt(absl::string_view key, int64_t def) {
  const YamlEntry* e = doc_.Find(key);
  if (e == nullptr) return def;
  used_[e->key] = true;
  return ToInt(*e);
}

absl::StatusOr<bool> DriverSettings::GetBool(absl::string_view key, bool def) {
  const YamlEntry* e = doc_.Find(key);
  if (e == nullptr) return def;
  used_[e->key] = true;
  return ToBool(*e);
}

absl::StatusOr<std::map<std::string, std::string>> DriverSettings::GetProperties(
    absl::string_view key) {
  std::map<std::string, std::string> out;
  const std::string prefix = absl::StrCat(key, ".");
  for (const YamlEntry& e : doc_.entries()) {
    if (e.key == key) {
      used_[e.key] = true;
      if (e.is_list) return KeyError(e, "expected 'key=value' lines");
      for (absl::string_view line : absl::StrSplit(e.scalar, '\n')) {
        line = absl::StripAsciiWhitespace(line);
        if (line.empty() || line[0] == '#') continue;
        const size_t eq = line.find('=');
        if (eq == absl::string_view::npos) return KeyError(e, "expected 'key=value' lines");
        out[std::string(absl::StripAsciiWhitespace(line.substr(0, eq)))] =
            std::string(absl::StripAsciiWhitespace(line.substr(eq + 1)));
      }
    } else if (absl::StartsWith(e.key, prefix)) {
      used_[e.key] = true;
      if (e.is_list) return KeyError(e, "expected a scalar");
      out[e.key.substr(prefix.size())] = e.scalar;
    }
  }
  return out;
}

absl::Status DriverSettings::CheckAllUsed() const {
  std::vector<std::string> unused;
  for (const YamlEntry& e : doc_.entries()) {
    if (used_.find(e.key) == used_.end())
      unused.push_back(absl::StrCat(e.key, " (line ", e.line, ")"));
  }
  if (unused.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown driver settings: ", absl::StrJoin(unused, ", ")));
}

std::map<std::string, std::string> DriverSettings::AsMap() const {
  std::map<std::string, std::string> out;
  for (const YamlEntry& e : doc_.entries()) {
    out[e.key] = e.is_list ? absl::StrCat("[", absl::StrJoin(e.list, ", "), "]") : e.scalar;
  }
  return out;
}

}  // namespace sluice::bench
