#include "src/cluster/znode_json.h"

#include <algorithm>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace sluice::cluster {

namespace {

using Json = nlohmann::json;

Json Parse(std::string_view data) {
  return Json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
}

// An integer member within [lo, hi], if present as a JSON integer.
std::optional<int64_t> IntMember(const Json& j, const char* name, int64_t lo, int64_t hi) {
  auto it = j.find(name);
  if (it == j.end()) return std::nullopt;
  int64_t v;
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return std::nullopt;
    v = static_cast<int64_t>(u);
  } else if (it->is_number_integer()) {
    v = it->get<int64_t>();
  } else {
    return std::nullopt;
  }
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

std::optional<std::string> StringMember(const Json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

}  // namespace

std::string EncodeRegistration(const std::string& host, int32_t port, int64_t timestamp_ms) {
  Json j;
  j["version"] = 5;
  j["host"] = host;
  j["port"] = port;
  j["endpoints"] = {absl::StrCat("PLAINTEXT://", host, ":", port)};
  j["listener_security_protocol_map"] = {{"PLAINTEXT", "PLAINTEXT"}};
  j["jmx_port"] = -1;
  j["features"] = Json::object();
  j["timestamp"] = absl::StrCat(timestamp_ms);
  return j.dump();
}

std::optional<BrokerEndpoint> DecodeRegistration(int32_t id, std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  BrokerEndpoint out;
  out.id = id;
  auto host = StringMember(j, "host");
  auto port = IntMember(j, "port", 1, 65535);
  if (host && !host->empty() && port) {
    out.host = *host;
    out.port = static_cast<int32_t>(*port);
    return out;
  }
  auto eps = j.find("endpoints");
  if (eps == j.end() || !eps->is_array()) return std::nullopt;
  constexpr std::string_view kPrefix = "PLAINTEXT://";
  for (const Json& e : *eps) {
    if (!e.is_string()) continue;
    const std::string ep = e.get<std::string>();
    if (ep.rfind(kPrefix, 0) != 0) continue;
    const std::string hp = ep.substr(kPrefix.size());
    const size_t colon = hp.rfind(':');
    int32_t p;
    if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(hp.substr(colon + 1), &p) ||
        p < 1 || p > 65535) {
      continue;
    }
    out.host = hp.substr(0, colon);
    out.port = p;
    return out;
  }
  return std::nullopt;
}

std::string EncodeController(int32_t broker_id, int64_t timestamp_ms) {
  Json j;
  j["version"] = 1;
  j["brokerid"] = broker_id;
  j["timestamp"] = absl::StrCat(timestamp_ms);
  return j.dump();
}

std::optional<int32_t> DecodeController(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  auto id = IntMember(j, "brokerid", 0, INT32_MAX);
  if (!id) return std::nullopt;
  return static_cast<int32_t>(*id);
}

std::string EncodeClusterId(const std::string& id) {
  Json j;
  j["version"] = "1";
  j["id"] = id;
  return j.dump();
}

std::optional<std::string> DecodeClusterId(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  auto id = StringMember(j, "id");
  if (!id || id->empty()) return std::nullopt;
  return id;
}

std::string NewClusterId() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device rd;
  std::string out;
  uint32_t acc = 0;
  int nbits = 0;
  for (int i = 0; i < 16; ++i) {
    acc = (acc << 8) | (rd() & 0xff);
    nbits += 8;
    while (nbits >= 6) {
      out.push_back(kAlphabet[(acc >> (nbits - 6)) & 63]);
      nbits -= 6;
    }
  }
  if (nbits > 0) out.push_back(kAlphabet[(acc << (6 - nbits)) & 63]);
  return out;
}

std::optional<int32_t> DecodeControllerEpoch(std::string_view data) {
  int32_t epoch;
  // The next controller writes epoch + 1: the largest int32 is no epoch anyone can follow.
  if (!absl::SimpleAtoi(std::string(data), &epoch) || epoch < 0 || epoch == INT32_MAX)
    return std::nullopt;
  return epoch;
}

std::string EncodeProducerIdBlock(const ProducerIdBlock& block) {
  Json j;
  j["version"] = 1;
  j["broker"] = block.broker;
  j["block_start"] = absl::StrCat(block.start);
  j["block_end"] = absl::StrCat(block.end);
  return j.dump();
}

std::optional<ProducerIdBlock> DecodeProducerIdBlock(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  constexpr int64_t kMaxId = int64_t{1} << 62;
  ProducerIdBlock b;
  auto broker = IntMember(j, "broker", -1, INT32_MAX);
  auto start = StringMember(j, "block_start");
  auto end = StringMember(j, "block_end");
  if (!start || !end || !absl::SimpleAtoi(*start, &b.start) || !absl::SimpleAtoi(*end, &b.end) ||
      b.start < 0 || b.end < b.start || b.end > kMaxId) {
    return std::nullopt;
  }
  b.broker = broker ? static_cast<int32_t>(*broker) : -1;
  return b;
}

std::string EncodeTopicAssignment(const std::vector<std::vector<int32_t>>& replicas) {
  Json j;
  j["version"] = 2;
  Json partitions = Json::object();
  for (size_t p = 0; p < replicas.size(); ++p) partitions[absl::StrCat(p)] = replicas[p];
  j["partitions"] = std::move(partitions);
  j["adding_replicas"] = Json::object();
  j["removing_replicas"] = Json::object();
  return j.dump();
}

std::optional<std::vector<std::vector<int32_t>>> DecodeTopicAssignment(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  auto parts = j.find("partitions");
  if (parts == j.end() || !parts->is_object() || parts->empty() ||
      parts->size() > kMaxTopicPartitions) {
    return std::nullopt;
  }
  std::vector<std::vector<int32_t>> out(parts->size());
  std::vector<bool> seen(parts->size(), false);
  for (auto it = parts->begin(); it != parts->end(); ++it) {
    size_t p;
    if (!absl::SimpleAtoi(it.key(), &p) || p >= out.size() || seen[p] ||
        absl::StrCat(p) != it.key() || !it->is_array() || it->empty()) {
      return std::nullopt;
    }
    seen[p] = true;
    for (const Json& id : *it) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return std::nullopt;
      }
      const int32_t b = static_cast<int32_t>(id.get<int64_t>());
      if (std::find(out[p].begin(), out[p].end(), b) != out[p].end()) return std::nullopt;
      out[p].push_back(b);
    }
  }
  return out;
}

std::string EncodeTopicConfig(const std::map<std::string, std::string>& configs) {
  Json j;
  j["version"] = 1;
  j["config"] = Json::object();
  for (const auto& [k, v] : configs) j["config"][k] = v;
  return j.dump();
}

std::optional<std::map<std::string, std::string>> DecodeTopicConfig(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  auto c = j.find("config");
  if (c == j.end() || !c->is_object()) return std::nullopt;
  std::map<std::string, std::string> out;
  for (auto it = c->begin(); it != c->end(); ++it) {
    if (!it->is_string()) return std::nullopt;
    out[it.key()] = it->get<std::string>();
  }
  return out;
}

std::string EncodePartitionState(const PartitionState& state) {
  Json j;
  j["version"] = 1;
  j["leader"] = state.leader;
  j["leader_epoch"] = state.leader_epoch;
  j["controller_epoch"] = state.controller_epoch;
  j["isr"] = state.isr;
  return j.dump();
}

std::optional<PartitionState> DecodePartitionState(std::string_view data) {
  const Json j = Parse(data);
  if (!j.is_object()) return std::nullopt;
  auto leader = IntMember(j, "leader", -1, INT32_MAX);
  auto leader_epoch = IntMember(j, "leader_epoch", 0, INT32_MAX);
  auto controller_epoch = IntMember(j, "controller_epoch", 0, INT32_MAX);
  auto isr = j.find("isr");
  if (!leader || !leader_epoch || !controller_epoch || isr == j.end() || !isr->is_array()) {
    return std::nullopt;
  }
  PartitionState s;
  s.leader = static_cast<int32_t>(*leader);
  s.leader_epoch = static_cast<int32_t>(*leader_epoch);
  s.controller_epoch = static_cast<int32_t>(*controller_epoch);
  for (const Json& id : *isr) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return std::nullopt;
    }
    const auto b = static_cast<int32_t>(id.get<int64_t>());
    if (std::find(s.isr.begin(), s.isr.end(), b) != s.isr.end()) return std::nullopt;
    s.isr.push_back(b);
  }
  return s;
}

}  // namespace sluice::cluster
