#include "src/topic_registry.h"

#include <xxhash.h>

#include <cstring>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "log/file_util.h"

namespace sluice::broker {

namespace {

constexpr char kMagic[4] = {'S', 'L', 'T', 'M'};
constexpr uint32_t kVersion = 1;
constexpr size_t kPrefix = 12;  // magic, version, body length
constexpr int64_t kProducerIdBlock = 1000;

class Out {
 public:
  void U32(uint32_t v) { Raw(&v, 4); }
  void I32(int32_t v) { Raw(&v, 4); }
  void I64(int64_t v) { Raw(&v, 8); }
  void Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    Raw(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  }
  std::vector<uint8_t> bytes;
};

class In {
 public:
  explicit In(std::span<const uint8_t> b) : b_(b) {}
  bool Raw(void* p, size_t n) {
    if (b_.size() - pos_ < n) return false;
    memcpy(p, b_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool I32(int32_t* v) { return Raw(v, 4); }
  bool I64(int64_t* v) { return Raw(v, 8); }
  bool Str(std::string* s) {
    uint32_t n;
    if (!U32(&n) || b_.size() - pos_ < n) return false;
    s->assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

template <typename T>
absl::Status ParseNumber(const std::string& name, const std::string& value, T min, T* out) {
  T v;
  if (!absl::SimpleAtoi(value, &v) || v < min) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: '%s' is not an integer >= %d", name, value, min));
  }
  *out = v;
  return absl::OkStatus();
}

}  // namespace

bool IsValidTopicName(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

bool IsInternalTopic(std::string_view name) { return name == kConsumerOffsetsTopic; }

absl::Status ApplyTopicConfig(const std::string& name, const std::string& value,
                              storage::LogConfig* c) {
  if (name == "cleanup.policy") {
    uint8_t policy = 0;
    for (absl::string_view part : absl::StrSplit(value, ',')) {
      part = absl::StripAsciiWhitespace(part);
      if (part == "delete") {
        policy |= storage::kCleanupDelete;
      } else if (part == "compact") {
        policy |= storage::kCleanupCompact;
      } else {
        return absl::InvalidArgumentError("cleanup.policy: delete, compact or both");
      }
    }
    c->cleanup_policy = policy;
    return absl::OkStatus();
  }
  if (name == "delete.retention.ms") {
    return ParseNumber<int64_t>(name, value, 0, &c->delete_retention_ms);
  }
  if (name == "min.compaction.lag.ms") {
    return ParseNumber<int64_t>(name, value, 0, &c->min_compaction_lag_ms);
  }
  if (name == "max.compaction.lag.ms") {
    return ParseNumber<int64_t>(name, value, 1, &c->max_compaction_lag_ms);
  }
  if (name == "min.cleanable.dirty.ratio") {
    double v;
    if (!absl::SimpleAtod(value, &v) || !(v >= 0 && v <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: '%s' is not a number in [0, 1]", name, value));
    }
    c->min_cleanable_dirty_ratio = v;
    return absl::OkStatus();
  }
  if (name == "flush.messages") {
    int64_t v;
    absl::Status s = ParseNumber<int64_t>(name, value, 1, &v);
    if (s.ok()) c->flush_messages = v == INT64_MAX ? storage::kNever : v;
    return s;
  }
  if (name == "flush.ms") {
    int64_t v;
    absl::Status s = ParseNumber<int64_t>(name, value, 0, &v);
    if (s.ok()) c->flush_ms = v;
    return s;
  }
  if (name == "max.message.bytes") {
    int64_t v;
    absl::Status s = ParseNumber<int64_t>(name, value, 0, &v);
    if (s.ok()) c->max_batch_bytes = static_cast<uint32_t>(std::min<int64_t>(v, INT32_MAX));
    return s;
  }
  if (name == "message.timestamp.type") {
    if (value == "CreateTime") {
      c->timestamp_type = storage::TimestampType::kCreateTime;
    } else if (value == "LogAppendTime") {
      c->timestamp_type = storage::TimestampType::kLogAppendTime;
    } else {
      return absl::InvalidArgumentError("message.timestamp.type: CreateTime or LogAppendTime");
    }
    return absl::OkStatus();
  }
  if (name == "retention.bytes") return ParseNumber<int64_t>(name, value, -1, &c->retention_bytes);
  if (name == "retention.ms") return ParseNumber<int64_t>(name, value, -1, &c->retention_ms);
  if (name == "segment.bytes") {
    int64_t v;
    absl::Status s = ParseNumber<int64_t>(name, value, 14, &v);
    if (s.ok() && v > INT32_MAX) s = absl::InvalidArgumentError("segment.bytes: at most 2 GiB - 1");
    if (s.ok()) c->segment_bytes = static_cast<uint32_t>(v);
    return s;
  }
  if (name == "segment.ms") return ParseNumber<int64_t>(name, value, 1, &c->segment_ms);
  if (name == "min.insync.replicas") {
    return ParseNumber<int32_t>(name, value, 1, &c->min_insync_replicas);
  }
  if (name == "replica.lag.time.max.ms") {
    return ParseNumber<int64_t>(name, value, 1, &c->replica_lag_time_max_ms);
  }
  if (name == "unclean.leader.election.enable") {
    // Only the safe choice: an out-of-sync replica never leads (it could lose acked data).
    if (value == "false") return absl::OkStatus();
    return absl::InvalidArgumentError("unclean.leader.election.enable: only false is supported");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown topic config '", name, "'"));
}

std::string TopicConfigValue(const std::string& name, const storage::LogConfig& c) {
  if (name == "cleanup.policy") {
    if (c.compact() && c.delete_retention()) return "compact,delete";
    return c.compact() ? "compact" : "delete";
  }
  if (name == "delete.retention.ms") return absl::StrCat(c.delete_retention_ms);
  if (name == "min.compaction.lag.ms") return absl::StrCat(c.min_compaction_lag_ms);
  if (name == "max.compaction.lag.ms") return absl::StrCat(c.max_compaction_lag_ms);
  if (name == "min.cleanable.dirty.ratio") return absl::StrCat(c.min_cleanable_dirty_ratio);
  if (name == "flush.messages") return absl::StrCat(c.flush_messages);
  if (name == "flush.ms") return absl::StrCat(c.flush_ms);
  if (name == "max.message.bytes") return absl::StrCat(c.max_batch_bytes);
  if (name == "message.timestamp.type") {
    return c.timestamp_type == storage::TimestampType::kLogAppendTime ? "LogAppendTime"
                                                                      : "CreateTime";
  }
  if (name == "retention.bytes") return absl::StrCat(c.retention_bytes);
  if (name == "retention.ms") return absl::StrCat(c.retention_ms);
  if (name == "segment.bytes") return absl::StrCat(c.segment_bytes);
  if (name == "segment.ms") return absl::StrCat(c.segment_ms);
  if (name == "min.insync.replicas") return absl::StrCat(c.min_insync_replicas);
  if (name == "replica.lag.time.max.ms") return absl::StrCat(c.replica_lag_time_max_ms);
  if (name == "unclean.leader.election.enable") return "false";
  return "";
}

absl::StatusOr<std::unique_ptr<TopicRegistry>> TopicRegistry::Open(
    const std::string& data_dir, const storage::LogConfig& defaults) {
  if (absl::Status s = storage::CreateDirIfMissing(data_dir); !s.ok()) return s;
  std::unique_ptr<TopicRegistry> r(new TopicRegistry(data_dir + "/topics.meta", defaults));
  if (absl::Status s = r->Load(); !s.ok()) return s;
  return r;
}

absl::Status TopicRegistry::Load() {
  if (!storage::FileExists(path_)) return absl::OkStatus();
  auto bytes = storage::ReadWholeFile(path_);
  if (!bytes.ok()) return bytes.status();
  const std::vector<uint8_t>& b = *bytes;
  auto bad = [this](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(path_, ": ", why));
  };
  if (b.size() < kPrefix + 8 || memcmp(b.data(), kMagic, 4) != 0) return bad("not a topics file");
  uint32_t version, body_len;
  memcpy(&version, b.data() + 4, 4);
  memcpy(&body_len, b.data() + 8, 4);
  if (version != kVersion) return bad(absl::StrCat("unsupported version ", version));
  if (b.size() != kPrefix + body_len + 8) return bad("wrong length");
  uint64_t sum;
  memcpy(&sum, b.data() + kPrefix + body_len, 8);
  if (sum != XXH3_64bits(b.data(), kPrefix + body_len)) return bad("checksum mismatch");
  In in(std::span<const uint8_t>(b.data() + kPrefix, body_len));
  uint32_t count;
  if (!in.I64(&producer_id_block_end_) || !in.U32(&count)) return bad("truncated");
  next_producer_id_ = producer_id_block_end_;
  for (uint32_t i = 0; i < count; ++i) {
    TopicInfo t;
    uint32_t n;
    if (!in.Str(&t.name) || !in.I32(&t.partitions) || !in.Raw(t.id.data(), 16) || !in.U32(&n)) {
      return bad("truncated topic");
    }
    for (uint32_t j = 0; j < n; ++j) {
      std::string k, v;
      if (!in.Str(&k) || !in.Str(&v)) return bad("truncated config");
      t.overrides[k] = v;
    }
    std::string name = t.name;
    topics_[name] = std::move(t);
  }
  if (!in.done()) return bad("trailing bytes");
  return absl::OkStatus();
}

absl::Status TopicRegistry::Save() const {
  Out body;
  body.bytes.reserve(16 + topics_.size() * 64);
  body.I64(producer_id_block_end_);
  body.U32(static_cast<uint32_t>(topics_.size()));
  for (const auto& [name, t] : topics_) {
    body.Str(name);
    body.I32(t.partitions);
    body.Raw(t.id.data(), 16);
    body.U32(static_cast<uint32_t>(t.overrides.size()));
    for (const auto& [k, v] : t.overrides) {
      body.Str(k);
      body.Str(v);
    }
  }
  Out file;
  file.Raw(kMagic, 4);
  file.U32(kVersion);
  file.U32(static_cast<uint32_t>(body.bytes.size()));
  file.Raw(body.bytes.data(), body.bytes.size());
  uint64_t sum = XXH3_64bits(file.bytes.data(), file.bytes.size());
  file.Raw(&sum, 8);
  return storage::WriteFileAtomically(path_, file.bytes);
}

const TopicInfo* TopicRegistry::Find(const std::string& name) const {
  auto it = topics_.find(name);
  return it == topics_.end() ? nullptr : &it->second;
}

std::vector<const TopicInfo*> TopicRegistry::List() const {
  std::vector<const TopicInfo*> out;
  for (const auto& [name, t] : topics_) out.push_back(&t);
  return out;
}

namespace {
storage::LogConfig ConfigWithOverrides(const storage::LogConfig& defaults, const TopicInfo& topic) {
  storage::LogConfig c = defaults;
  for (const auto& [k, v] : topic.overrides) {
    // Overrides were validated when set; a bad one (older version) keeps the default.
    (void)ApplyTopicConfig(k, v, &c);
  }
  return c;
}
}  // namespace

storage::LogConfig TopicRegistry::ConfigFor(const TopicInfo& topic) const {
  return ConfigWithOverrides(defaults_, topic);
}

const TopicInfo* TopicSnapshot::Find(const std::string& name) const {
  auto it = topics.find(name);
  return it == topics.end() ? nullptr : &it->second;
}

storage::LogConfig TopicSnapshot::ConfigFor(const TopicInfo& topic) const {
  return ConfigWithOverrides(defaults, topic);
}

std::shared_ptr<const TopicSnapshot> TopicRegistry::Snapshot() const {
  auto s = std::make_shared<TopicSnapshot>();
  s->defaults = defaults_;
  s->topics = topics_;
  return s;
}

absl::StatusOr<const TopicInfo*> TopicRegistry::Create(
    const std::string& name, int32_t partitions, std::map<std::string, std::string> overrides) {
  std::vector<NewTopic> one;
  one.push_back(NewTopic{name, partitions, std::move(overrides)});
  auto created = CreateAll(std::move(one));
  if (!created.ok()) return created.status();
  return created->front();
}

absl::StatusOr<std::vector<const TopicInfo*>> TopicRegistry::CreateAll(
    std::vector<NewTopic> topics) {
  std::set<std::string> names;
  for (const NewTopic& n : topics) {
    if (topics_.contains(n.name)) {
      return absl::AlreadyExistsError(absl::StrCat("topic '", n.name, "' already exists"));
    }
    if (!names.insert(n.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("topic '", n.name, "' named twice"));
    }
  }
  std::random_device rd;
  for (NewTopic& n : topics) {
    TopicInfo t;
    t.name = n.name;
    t.partitions = n.partitions;
    t.overrides = std::move(n.overrides);
    for (size_t i = 0; i < t.id.size(); i += 4) {
      uint32_t v = rd();
      memcpy(t.id.data() + i, &v, 4);
    }
    topics_[n.name] = std::move(t);
  }
  if (absl::Status s = Save(); !s.ok()) {
    for (const NewTopic& n : topics) topics_.erase(n.name);
    return s;
  }
  std::vector<std::string> changed;
  std::vector<const TopicInfo*> out;
  changed.reserve(topics.size());
  out.reserve(topics.size());
  for (const NewTopic& n : topics) {
    changed.push_back(n.name);
    out.push_back(&topics_[n.name]);
  }
  Changed(changed);
  return out;
}

absl::Status TopicRegistry::Delete(const std::string& name) { return DeleteAll({name}); }

absl::Status TopicRegistry::DeleteAll(const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (!topics_.contains(name)) {
      return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
    }
    if (IsInternalTopic(name)) {
      return absl::PermissionDeniedError(absl::StrCat("'", name, "' is an internal topic"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("topic '", name, "' named twice"));
    }
  }
  std::vector<TopicInfo> old;
  old.reserve(names.size());
  for (const std::string& name : names) {
    auto it = topics_.find(name);
    old.push_back(std::move(it->second));
    topics_.erase(it);
  }
  if (absl::Status s = Save(); !s.ok()) {
    for (TopicInfo& t : old) {
      std::string name = t.name;
      topics_[name] = std::move(t);
    }
    return s;
  }
  Changed(names);
  return absl::OkStatus();
}

absl::Status TopicRegistry::SetPartitions(const std::string& name, int32_t partitions) {
  auto it = topics_.find(name);
  if (it == topics_.end()) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  if (IsInternalTopic(name)) {
    // Groups are placed by the partition count of the offsets topic: it never changes.
    return absl::PermissionDeniedError(absl::StrCat("'", name, "' is an internal topic"));
  }
  int32_t old = it->second.partitions;
  it->second.partitions = partitions;
  absl::Status s = Save();
  if (!s.ok()) {
    it->second.partitions = old;
    return s;
  }
  Changed({name});
  return s;
}

absl::Status TopicRegistry::SetOverrides(const std::string& name,
                                         std::map<std::string, std::string> overrides) {
  auto it = topics_.find(name);
  if (it == topics_.end()) return absl::NotFoundError(absl::StrCat("no topic '", name, "'"));
  std::swap(it->second.overrides, overrides);
  absl::Status s = Save();
  if (!s.ok()) {
    std::swap(it->second.overrides, overrides);
    return s;
  }
  Changed({name});
  return s;
}

absl::StatusOr<int64_t> TopicRegistry::NextProducerId() {
  if (next_producer_id_ >= producer_id_block_end_) {
    producer_id_block_end_ = next_producer_id_ + kProducerIdBlock;
    if (absl::Status s = Save(); !s.ok()) {
      producer_id_block_end_ = next_producer_id_;
      return s;
    }
  }
  return next_producer_id_++;
}

}  // namespace sluice::broker
