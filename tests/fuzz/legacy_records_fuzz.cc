// libFuzzer target for the message format v0/v1 conversions (src/kafka/legacy_records.h):
// arbitrary bytes as a Produce v2 message set must up-convert to a valid RecordBatch v2 (one
// the produce validator accepts) or fail cleanly, and a converted batch must down-convert back
// to as many magic-1 messages; the same bytes as stored batches go through the down-converter.
//
// Input: byte 0 bit 0 set = the harness fixes the CRC of every top-level message first (so the
// fuzzer gets past the checksum); the rest is the message set.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "log/record_batch.h"
#include "src/kafka/legacy_records.h"

namespace sluice::broker::legacy {
namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void FixCrcs(std::vector<uint8_t>* set) {
  size_t pos = 0;
  while (set->size() - pos >= 17) {
    uint8_t* p = set->data() + pos;
    const uint32_t size =
        (uint32_t{p[8]} << 24) | (uint32_t{p[9]} << 16) | (uint32_t{p[10]} << 8) | uint32_t{p[11]};
    if (size < 5 || size > set->size() - pos - 12) return;
    const uint32_t crc = Crc32Ieee(0, p + 16, size - 4);
    p[12] = static_cast<uint8_t>(crc >> 24);
    p[13] = static_cast<uint8_t>(crc >> 16);
    p[14] = static_cast<uint8_t>(crc >> 8);
    p[15] = static_cast<uint8_t>(crc);
    pos += 12 + size;
  }
}

}  // namespace
}  // namespace sluice::broker::legacy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::broker::legacy;  // NOLINT
  if (size < 1) return 0;
  std::vector<uint8_t> input(data + 1, data + size);
  if (data[0] & 1) FixCrcs(&input);
  auto batch = UpConvertMessageSet(input, 1 << 20);
  if (batch.ok()) {
    Check(sluice::storage::ValidateBatch(*batch, UINT32_MAX).ok());
    // As valid as a v3+ producer's batch must be.
    static sluice::storage::ProducedBatchValidator validator;
    Check(validator.Validate(*batch, sluice::storage::ProduceRules{}).ok());
    const int32_t count = sluice::storage::RecordBatchView(*batch).records_count();
    std::vector<uint8_t> out;
    auto down = DownConvertToV1(*batch, 0, SIZE_MAX, true, &out);
    Check(down.ok() && down->messages == count);
    Check(UpConvertMessageSet(out, 1 << 20).ok());
  }
  std::vector<uint8_t> out;
  (void)DownConvertToV1(input, 0, 1 << 16, data[0] & 2, &out);
  return 0;
}
