// Kafka framing: the 4-byte size prefix, request and response headers, and the entry points a
// connection handler uses: DecodeRequest() on each received frame, EncodeResponse() for the
// answer. Rules and limits are in net/kafka/PROTOCOL.md.
//
// Typical handler:
//   DecodedRequest req = DecodeRequest(payload);   // payload: the frame after its size prefix
//   if (req.error == RequestError::kMalformedHeader) -> close the connection
//   if (!req.ok()) -> answer per req.error (UNSUPPORTED_VERSION etc.) using *req.header
//   auto& produce = std::get<ProduceRequest>(req.body);   // views borrow from `payload`
//   ProduceResponse resp = ...;
//   EncodedFrame out = EncodeResponse(req.header->correlation_id, req.header->api_version, resp);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/kafka/messages/registry.h"
#include "net/kafka/wire.h"

namespace sluice::kafka {

// Bytes of the big-endian int32 that precedes every request and response.
inline constexpr size_t kFrameSizePrefixBytes = 4;
// The largest request payload accepted by default (Kafka's socket.request.max.bytes default).
inline constexpr size_t kDefaultMaxFrameSize = 100 * 1024 * 1024;

// The payload length announced by a frame's size prefix (the first 4 bytes of `prefix`).
// Fails with kInvalidArgument when it is negative or above `max_frame_size`, and with
// kOutOfRange when fewer than 4 bytes are given.
absl::StatusOr<size_t> ParseFrameSize(std::span<const uint8_t> prefix,
                                      size_t max_frame_size = kDefaultMaxFrameSize);

// Request header. v0: api_key, api_version, correlation_id. v1: + client_id (a classic
// nullable string, never compact). v2: + a tagged-field section (no known tags).
struct RequestHeader {
  int16_t api_key = 0;
  int16_t api_version = 0;
  int32_t correlation_id = 0;
  std::optional<std::string> client_id;  // v1+

  friend bool operator==(const RequestHeader&, const RequestHeader&) = default;
};

// Response header. v0: correlation_id. v1: + a tagged-field section.
struct ResponseHeader {
  int32_t correlation_id = 0;

  friend bool operator==(const ResponseHeader&, const ResponseHeader&) = default;
};

// Header versions: flexible API versions use request header v2 and response header v1, the
// others v1 and v0; ApiVersions responses always use header v0 (a client that does not yet
// know the broker's versions must be able to read them). Unknown APIs get v1 / v0.
int16_t RequestHeaderVersion(int16_t api_key, int16_t api_version);
int16_t ResponseHeaderVersion(int16_t api_key, int16_t api_version);

absl::Status DecodeRequestHeader(Reader& r, int16_t header_version, RequestHeader* out);
void EncodeRequestHeader(const RequestHeader& header, int16_t header_version, Writer& w);
absl::Status DecodeResponseHeader(Reader& r, int16_t header_version, ResponseHeader* out);
void EncodeResponseHeader(const ResponseHeader& header, int16_t header_version, Writer& w);

// Why a request frame could not be decoded.
enum class RequestError {
  kNone,
  kMalformedHeader,     // not even api_key, api_version and correlation_id: close the connection
  kUnknownApiKey,       // header set (client_id may be missing); no body
  kUnsupportedVersion,  // header set; answer UNSUPPORTED_VERSION (ApiVersions: KIP-511 v0)
  kMalformedBody,       // header set; the body (or the v2 header's tagged fields) is invalid
};
std::string_view RequestErrorName(RequestError error);

struct DecodedRequest {
  RequestError error = RequestError::kNone;
  absl::Status status;                  // OK, or what was wrong
  std::optional<RequestHeader> header;  // set unless error == kMalformedHeader
  AnyRequest body;                      // set when error == kNone

  bool ok() const { return error == RequestError::kNone; }
};

// Decodes one request frame (the bytes after the size prefix). Records fields in the body
// borrow from `frame_payload`: they are valid while that buffer lives and is unchanged.
// Trailing bytes after the body are ignored (a newer client may append tagged data we do not
// know only inside tagged sections, so this is lenient rather than required).
DecodedRequest DecodeRequest(std::span<const uint8_t> frame_payload);

namespace internal {
// Writes the size placeholder and the response header; FinishFrame() fills in the size.
void BeginResponseFrame(int16_t api_key, int16_t api_version, int32_t correlation_id, Writer& w);
EncodedFrame FinishFrame(Writer&& w);
}  // namespace internal

// Encodes a whole response frame: size prefix (counting external records ranges), header of
// the right version, body at `api_version`. The response's Records pieces that are borrowed
// are copied into the frame; external pieces stay gaps (see EncodedFrame).
EncodedFrame EncodeResponse(int32_t correlation_id, int16_t api_version,
                            const AnyResponse& response);
template <typename Response>
EncodedFrame EncodeResponse(int32_t correlation_id, int16_t api_version, const Response& response) {
  Writer w;
  internal::BeginResponseFrame(Response::kApiKey, api_version, correlation_id, w);
  response.Encode(w, api_version);
  return internal::FinishFrame(std::move(w));
}

// Encodes a whole request frame for `header.api_version` (clients, tools and tests).
EncodedFrame EncodeRequest(const RequestHeader& header, const AnyRequest& request);

struct DecodedResponse {
  ResponseHeader header;
  AnyResponse body;
};
// Decodes one response frame (after the size prefix) of a request sent as `api_key` at
// `api_version` (responses do not name their API). Records borrow from `frame_payload`.
absl::StatusOr<DecodedResponse> DecodeResponse(int16_t api_key, int16_t api_version,
                                               std::span<const uint8_t> frame_payload);

// The ApiVersions entries for every supported API (kSupportedApis).
std::vector<ApiVersionsResponse::ApiVersion> SupportedApiVersions();

// The answer to an ApiVersions request whose version this broker does not support (KIP-511):
// a v0 response with UNSUPPORTED_VERSION and the supported versions, so the client can retry
// with one of them.
EncodedFrame EncodeUnsupportedApiVersionsResponse(int32_t correlation_id);

}  // namespace sluice::kafka
