// Fuzzes the decoders of what Sluice reads from ZooKeeper (src/cluster/znode_json.h), bytes
// any client of the ensemble may have written: nothing may crash, and whatever decodes must
// encode to something that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "src/cluster/znode_json.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::cluster;  // NOLINT
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto b = DecodeRegistration(1, bytes)) {
    Check(b->port >= 1 && b->port <= 65535 && !b->host.empty());
    auto again = DecodeRegistration(1, EncodeRegistration(b->host, b->port, 0));
    Check(again.has_value() && again->host == b->host && again->port == b->port);
  }
  if (auto id = DecodeController(bytes)) {
    Check(*id >= 0);
    Check(DecodeController(EncodeController(*id, 0)) == id);
  }
  if (auto id = DecodeClusterId(bytes)) Check(DecodeClusterId(EncodeClusterId(*id)) == id);
  if (auto epoch = DecodeControllerEpoch(bytes)) Check(*epoch >= 0 && *epoch < INT32_MAX);
  if (auto b = DecodeProducerIdBlock(bytes)) {
    Check(b->start >= 0 && b->end >= b->start);
    auto again = DecodeProducerIdBlock(EncodeProducerIdBlock(*b));
    Check(again.has_value() && again->start == b->start && again->end == b->end &&
          again->broker == b->broker);
  }
  if (auto a = DecodeTopicAssignment(bytes)) {
    Check(!a->empty() && a->size() <= kMaxTopicPartitions);
    for (const auto& r : *a) Check(!r.empty());
    Check(DecodeTopicAssignment(EncodeTopicAssignment(*a)) == a);
  }
  if (auto c = DecodeTopicConfig(bytes)) Check(DecodeTopicConfig(EncodeTopicConfig(*c)) == c);
  if (auto s = DecodePartitionState(bytes)) {
    Check(s->leader >= -1 && s->leader_epoch >= 0 && s->version == -1);
    Check(DecodePartitionState(EncodePartitionState(*s)) == s);
  }
  return 0;
}
