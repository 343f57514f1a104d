// Records of the internal topic `__consumer_offsets`: committed offsets and group metadata,
// in Kafka's own key/value formats (so Kafka's tools can read the topic). The layouts and the
// rules for versions and tombstones are in src/kafka/GROUPS.md.
//
// Everything here is pure encoding/decoding of bytes; decoders accept any input (fuzzed in
// tests/fuzz/group_metadata_fuzz.cc) and fail with InvalidArgument/OutOfRange.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::broker {

inline constexpr char kOffsetsTopic[] = "__consumer_offsets";

// Kafka's partition of a group in the offsets topic: abs(java String.hashCode(group)) % n.
int32_t OffsetsPartitionFor(std::string_view group, int32_t partitions);
// java.lang.String#hashCode over the UTF-16 code units of a UTF-8 string (invalid UTF-8 bytes
// count as one unit each).
int32_t JavaStringHash(std::string_view s);

// Key version 0/1: a committed offset. Version 2: group metadata.
struct OffsetKey {
  std::string group;
  std::string topic;
  int32_t partition = 0;
  bool operator==(const OffsetKey&) const = default;
};
struct GroupKey {
  std::string group;
  bool operator==(const GroupKey&) const = default;
};
using OffsetsTopicKey = std::variant<OffsetKey, GroupKey>;

struct OffsetValue {
  int64_t offset = -1;
  int32_t leader_epoch = -1;
  std::string metadata;
  int64_t commit_timestamp_ms = -1;
  int64_t expire_timestamp_ms = -1;  // only in value version 1
  bool operator==(const OffsetValue&) const = default;
};

struct GroupMemberValue {
  std::string member_id;
  std::optional<std::string> group_instance_id;
  std::string client_id;
  std::string client_host;
  int32_t rebalance_timeout_ms = 0;
  int32_t session_timeout_ms = 0;
  std::vector<uint8_t> subscription;  // metadata of the selected protocol
  std::vector<uint8_t> assignment;
  bool operator==(const GroupMemberValue&) const = default;
};

struct GroupValue {
  std::string protocol_type;
  int32_t generation = 0;
  std::optional<std::string> protocol;
  std::optional<std::string> leader;
  int64_t current_state_timestamp_ms = -1;
  std::vector<GroupMemberValue> members;
  bool operator==(const GroupValue&) const = default;
};

// Encoders write the newest version we know: offset key v1, group key v2, offset value v3,
// group value v3.
std::vector<uint8_t> EncodeOffsetsKey(const OffsetsTopicKey& key);
std::vector<uint8_t> EncodeOffsetValue(const OffsetValue& value);
std::vector<uint8_t> EncodeGroupValue(const GroupValue& value);

// Decoders accept key versions 0-2 and value versions 0-3; trailing bytes after the known
// fields are ignored (a newer writer may append fields).
absl::StatusOr<OffsetsTopicKey> DecodeOffsetsKey(std::span<const uint8_t> bytes);
absl::StatusOr<OffsetValue> DecodeOffsetValue(std::span<const uint8_t> bytes);
absl::StatusOr<GroupValue> DecodeGroupValue(std::span<const uint8_t> bytes);

// One record to append: a key and a value, or a tombstone (no value).
struct OffsetsRecord {
  std::vector<uint8_t> key;
  std::optional<std::vector<uint8_t>> value;
};

}  // namespace sluice::broker
