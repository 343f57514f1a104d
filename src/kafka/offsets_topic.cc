#include "src/kafka/offsets_topic.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "net/kafka/wire.h"
#include "src/topic_registry.h"

namespace sluice::broker {

// The registry protects the topic under this name (IsInternalTopic).
static_assert(std::string_view(kOffsetsTopic) == kConsumerOffsetsTopic);

namespace {

constexpr bool kClassic = false;  // every field of these records uses the classic encoding

#define SLUICE_RETURN_IF_ERROR(expr)                   \
  do {                                                 \
    if (absl::Status _s = (expr); !_s.ok()) return _s; \
  } while (0)

std::vector<uint8_t> Bytes(kafka::Writer&& w) {
  kafka::EncodedFrame f = std::move(w).Finish();
  return std::move(f.owned);
}

absl::Status ReadVersion(kafka::Reader& r, int16_t max, int16_t* v) {
  SLUICE_RETURN_IF_ERROR(r.ReadInt16(v));
  if (*v < 0 || *v > max) return absl::InvalidArgumentError(absl::StrCat("unknown version ", *v));
  return absl::OkStatus();
}

}  // namespace

int32_t JavaStringHash(std::string_view s) {
  uint32_t h = 0;
  auto unit = [&h](uint32_t u) { h = h * 31 + u; };
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<uint8_t>(s[i]);
    uint32_t cp = 0;
    size_t n = 0;
    if (b < 0x80) {
      cp = b, n = 1;
    } else if ((b & 0xE0) == 0xC0) {
      cp = b & 0x1F, n = 2;
    } else if ((b & 0xF0) == 0xE0) {
      cp = b & 0x0F, n = 3;
    } else if ((b & 0xF8) == 0xF0) {
      cp = b & 0x07, n = 4;
    }
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (!ok) {
      unit(b);
      ++i;
      continue;
    }
    if (cp >= 0x10000) {  // a surrogate pair in UTF-16
      cp -= 0x10000;
      unit(0xD800 + (cp >> 10));
      unit(0xDC00 + (cp & 0x3FF));
    } else {
      unit(cp);
    }
    i += n;
  }
  return static_cast<int32_t>(h);
}

int32_t OffsetsPartitionFor(std::string_view group, int32_t partitions) {
  // Kafka's Utils.abs: the sign bit cleared (so INT_MIN maps to 0, not to itself).
  const int32_t h = JavaStringHash(group) & 0x7fffffff;
  return partitions > 0 ? h % partitions : 0;
}

std::vector<uint8_t> EncodeOffsetsKey(const OffsetsTopicKey& key) {
  kafka::Writer w;
  if (const auto* k = std::get_if<OffsetKey>(&key)) {
    w.WriteInt16(1);
    w.WriteString(kClassic, k->group);
    w.WriteString(kClassic, k->topic);
    w.WriteInt32(k->partition);
  } else {
    w.WriteInt16(2);
    w.WriteString(kClassic, std::get<GroupKey>(key).group);
  }
  return Bytes(std::move(w));
}

std::vector<uint8_t> EncodeOffsetValue(const OffsetValue& v) {
  kafka::Writer w;
  w.WriteInt16(3);
  w.WriteInt64(v.offset);
  w.WriteInt32(v.leader_epoch);
  w.WriteString(kClassic, v.metadata);
  w.WriteInt64(v.commit_timestamp_ms);
  return Bytes(std::move(w));
}

std::vector<uint8_t> EncodeGroupValue(const GroupValue& v) {
  kafka::Writer w;
  w.WriteInt16(3);
  w.WriteString(kClassic, v.protocol_type);
  w.WriteInt32(v.generation);
  w.WriteNullableString(kClassic, true, v.protocol);
  w.WriteNullableString(kClassic, true, v.leader);
  w.WriteInt64(v.current_state_timestamp_ms);
  w.WriteArrayCount(kClassic, static_cast<int32_t>(v.members.size()));
  for (const GroupMemberValue& m : v.members) {
    w.WriteString(kClassic, m.member_id);
    w.WriteNullableString(kClassic, true, m.group_instance_id);
    w.WriteString(kClassic, m.client_id);
    w.WriteString(kClassic, m.client_host);
    w.WriteInt32(m.rebalance_timeout_ms);
    w.WriteInt32(m.session_timeout_ms);
    w.WriteBytes(kClassic, m.subscription);
    w.WriteBytes(kClassic, m.assignment);
  }
  return Bytes(std::move(w));
}

absl::StatusOr<OffsetsTopicKey> DecodeOffsetsKey(std::span<const uint8_t> bytes) {
  kafka::Reader r(bytes);
  int16_t version;
  SLUICE_RETURN_IF_ERROR(ReadVersion(r, 2, &version));
  if (version == 2) {
    GroupKey k;
    SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &k.group));
    return k;
  }
  OffsetKey k;
  SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &k.group));
  SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &k.topic));
  SLUICE_RETURN_IF_ERROR(r.ReadInt32(&k.partition));
  return k;
}

absl::StatusOr<OffsetValue> DecodeOffsetValue(std::span<const uint8_t> bytes) {
  kafka::Reader r(bytes);
  int16_t version;
  SLUICE_RETURN_IF_ERROR(ReadVersion(r, 3, &version));
  OffsetValue v;
  SLUICE_RETURN_IF_ERROR(r.ReadInt64(&v.offset));
  if (version >= 3) SLUICE_RETURN_IF_ERROR(r.ReadInt32(&v.leader_epoch));
  SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &v.metadata));
  SLUICE_RETURN_IF_ERROR(r.ReadInt64(&v.commit_timestamp_ms));
  if (version == 1) SLUICE_RETURN_IF_ERROR(r.ReadInt64(&v.expire_timestamp_ms));
  return v;
}

absl::StatusOr<GroupValue> DecodeGroupValue(std::span<const uint8_t> bytes) {
  kafka::Reader r(bytes);
  int16_t version;
  SLUICE_RETURN_IF_ERROR(ReadVersion(r, 3, &version));
  GroupValue v;
  SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &v.protocol_type));
  SLUICE_RETURN_IF_ERROR(r.ReadInt32(&v.generation));
  SLUICE_RETURN_IF_ERROR(r.ReadNullableString(kClassic, true, &v.protocol));
  SLUICE_RETURN_IF_ERROR(r.ReadNullableString(kClassic, true, &v.leader));
  if (version >= 2) SLUICE_RETURN_IF_ERROR(r.ReadInt64(&v.current_state_timestamp_ms));
  int32_t count;
  // A member is at least 2+2+2+4+4+4 bytes (v0: three empty strings, a timeout, two empty
  // byte arrays); the reader checks that many remain before we reserve.
  SLUICE_RETURN_IF_ERROR(r.ReadArrayCount(kClassic, false, 18, &count));
  v.members.reserve(static_cast<size_t>(std::min(count, kafka::kMaxArrayReserve)));
  for (int32_t i = 0; i < count; ++i) {
    GroupMemberValue& m = v.members.emplace_back();
    SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &m.member_id));
    if (version >= 3) {
      SLUICE_RETURN_IF_ERROR(r.ReadNullableString(kClassic, true, &m.group_instance_id));
    }
    SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &m.client_id));
    SLUICE_RETURN_IF_ERROR(r.ReadString(kClassic, &m.client_host));
    if (version >= 1) SLUICE_RETURN_IF_ERROR(r.ReadInt32(&m.rebalance_timeout_ms));
    SLUICE_RETURN_IF_ERROR(r.ReadInt32(&m.session_timeout_ms));
    if (version == 0) m.rebalance_timeout_ms = m.session_timeout_ms;
    SLUICE_RETURN_IF_ERROR(r.ReadBytes(kClassic, &m.subscription));
    SLUICE_RETURN_IF_ERROR(r.ReadBytes(kClassic, &m.assignment));
  }
  return v;
}

}  // namespace sluice::broker
