// Fuzzes the Kafka codec with arbitrary bytes:
//  - the whole input as a request frame payload (header + body, as DecodeRequest sees it);
//  - the input after its first 4 bytes as a response body of the api key / version those
//    bytes name (modulo the supported APIs);
//  - the input as embedded consumer-protocol structures.
// Whatever decodes must re-encode, and the re-encoding must decode to something that encodes
// to the same bytes (encode is a fixed point after one decode).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "net/kafka/framing.h"
#include "net/kafka/messages/registry.h"

namespace {

using sluice::kafka::AnyResponse;
using sluice::kafka::DecodedRequest;
using sluice::kafka::EncodedFrame;

void Check(bool condition) {
  if (!condition) std::abort();
}

void FuzzRequest(std::span<const uint8_t> data) {
  const DecodedRequest d = sluice::kafka::DecodeRequest(data);
  if (!d.ok()) {
    Check(d.error == sluice::kafka::RequestError::kMalformedHeader || d.header.has_value());
    return;
  }
  const EncodedFrame first = sluice::kafka::EncodeRequest(*d.header, d.body);
  Check(first.externals.empty());
  const std::span<const uint8_t> payload =
      std::span(first.owned).subspan(sluice::kafka::kFrameSizePrefixBytes);
  const DecodedRequest again = sluice::kafka::DecodeRequest(payload);
  Check(again.ok());
  const EncodedFrame second = sluice::kafka::EncodeRequest(*again.header, again.body);
  Check(second.owned == first.owned);
}

void FuzzResponse(std::span<const uint8_t> data) {
  if (data.size() < 4) return;
  const auto& apis = sluice::kafka::kSupportedApis;
  const auto& api = apis[data[0] % apis.size()];
  const int span = api.max_version - api.min_version + 1;
  const int16_t version = static_cast<int16_t>(api.min_version + data[1] % span);
  sluice::kafka::Reader r(data.subspan(4));
  AnyResponse response;
  if (!sluice::kafka::DecodeResponseBody(api.api_key, version, r, &response).ok()) return;
  const EncodedFrame first = sluice::kafka::EncodeResponse(1, version, response);
  const auto payload = std::span(first.owned).subspan(sluice::kafka::kFrameSizePrefixBytes);
  absl::StatusOr<sluice::kafka::DecodedResponse> again =
      sluice::kafka::DecodeResponse(api.api_key, version, payload);
  Check(again.ok());
  const EncodedFrame second = sluice::kafka::EncodeResponse(1, version, again->body);
  Check(second.owned == first.owned);
}

template <typename T>
void FuzzEmbedded(std::span<const uint8_t> data) {
  absl::StatusOr<T> value = T::DecodeVersioned(data);
  if (!value.ok()) return;
  for (int16_t v = T::kMinVersion; v <= T::kMaxVersion; ++v) (void)value->EncodeVersioned(v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  FuzzRequest(input);
  FuzzResponse(input);
  FuzzEmbedded<sluice::kafka::ConsumerProtocolSubscription>(input);
  FuzzEmbedded<sluice::kafka::ConsumerProtocolAssignment>(input);
  return 0;
}
