#include "net/kafka/framing.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "net/kafka/error_codes.h"

namespace sluice::kafka {
namespace {

constexpr int16_t kApiVersionsKey = static_cast<int16_t>(ApiKey::kApiVersions);

// Abseil here may be built with its own string_view type.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

absl::StatusOr<size_t> ParseFrameSize(std::span<const uint8_t> prefix, size_t max_frame_size) {
  Reader r(prefix);
  int32_t size = 0;
  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt32(&size));
  if (size < 0) return absl::InvalidArgumentError(absl::StrCat("negative frame size ", size));
  if (static_cast<size_t>(size) > max_frame_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame size ", size, " exceeds the limit of ", max_frame_size));
  }
  return static_cast<size_t>(size);
}

int16_t RequestHeaderVersion(int16_t api_key, int16_t api_version) {
  return IsFlexibleVersion(api_key, api_version) ? 2 : 1;
}

int16_t ResponseHeaderVersion(int16_t api_key, int16_t api_version) {
  if (api_key == kApiVersionsKey) return 0;
  return IsFlexibleVersion(api_key, api_version) ? 1 : 0;
}

absl::Status DecodeRequestHeader(Reader& r, int16_t header_version, RequestHeader* out) {
  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt16(&out->api_key));
  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt16(&out->api_version));
  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt32(&out->correlation_id));
  out->client_id.reset();
  if (header_version >= 1) {
    SLUICE_KAFKA_RETURN_IF_ERROR(
        r.ReadNullableString(/*compact=*/false, /*nullable=*/true, &out->client_id));
  }
  if (header_version >= 2) {
    SLUICE_KAFKA_RETURN_IF_ERROR(
        r.ReadTaggedFields([](uint32_t, Reader&, bool*) { return absl::OkStatus(); }));
  }
  return absl::OkStatus();
}

void EncodeRequestHeader(const RequestHeader& header, int16_t header_version, Writer& w) {
  w.WriteInt16(header.api_key);
  w.WriteInt16(header.api_version);
  w.WriteInt32(header.correlation_id);
  if (header_version >= 1) {
    w.WriteNullableString(/*compact=*/false, /*nullable=*/true, header.client_id);
  }
  if (header_version >= 2) w.WriteUnsignedVarint(0);
}

absl::Status DecodeResponseHeader(Reader& r, int16_t header_version, ResponseHeader* out) {
  SLUICE_KAFKA_RETURN_IF_ERROR(r.ReadInt32(&out->correlation_id));
  if (header_version >= 1) {
    SLUICE_KAFKA_RETURN_IF_ERROR(
        r.ReadTaggedFields([](uint32_t, Reader&, bool*) { return absl::OkStatus(); }));
  }
  return absl::OkStatus();
}

void EncodeResponseHeader(const ResponseHeader& header, int16_t header_version, Writer& w) {
  w.WriteInt32(header.correlation_id);
  if (header_version >= 1) w.WriteUnsignedVarint(0);
}

std::string_view RequestErrorName(RequestError error) {
  switch (error) {
    case RequestError::kNone:
      return "none";
    case RequestError::kMalformedHeader:
      return "malformed header";
    case RequestError::kUnknownApiKey:
      return "unknown api key";
    case RequestError::kUnsupportedVersion:
      return "unsupported version";
    case RequestError::kMalformedBody:
      return "malformed body";
  }
  return "?";
}

DecodedRequest DecodeRequest(std::span<const uint8_t> frame_payload) {
  DecodedRequest out;
  Reader r(frame_payload);
  RequestHeader header;
  // The fixed part is the same in every header version.
  Reader fixed(frame_payload);
  if (absl::Status s = DecodeRequestHeader(fixed, /*header_version=*/0, &header); !s.ok()) {
    out.error = RequestError::kMalformedHeader;
    out.status = std::move(s);
    return out;
  }
  const ApiInfo* api = FindApi(header.api_key);
  if (api == nullptr || header.api_version < api->min_version ||
      header.api_version > api->max_version) {
    // Best effort for the client id (every supported API has it from header v1 on).
    RequestHeader with_client;
    if (DecodeRequestHeader(r, /*header_version=*/1, &with_client).ok()) header = with_client;
    out.header = std::move(header);
    if (api == nullptr) {
      out.error = RequestError::kUnknownApiKey;
      out.status = absl::NotFoundError(absl::StrCat("unknown api key ", out.header->api_key));
    } else {
      out.error = RequestError::kUnsupportedVersion;
      out.status = absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(api->name), " version ", out.header->api_version,
                       " is not supported (", api->min_version, "-", api->max_version, ")"));
    }
    return out;
  }
  const int16_t header_version = RequestHeaderVersion(header.api_key, header.api_version);
  absl::Status s = DecodeRequestHeader(r, header_version, &header);
  out.header = header;  // on failure: at least the fixed part
  if (!s.ok()) {
    out.error = RequestError::kMalformedBody;
    out.status = std::move(s);
    return out;
  }
  s = DecodeRequestBody(header.api_key, header.api_version, r, &out.body);
  if (!s.ok()) {
    out.error = RequestError::kMalformedBody;
    out.status = absl::Status(s.code(), absl::StrCat(AsAbsl(api->name), " v", header.api_version,
                                                     " request: ", s.message()));
    out.body = std::monostate();
  }
  return out;
}

namespace internal {

void BeginResponseFrame(int16_t api_key, int16_t api_version, int32_t correlation_id, Writer& w) {
  w.WriteInt32(0);  // size, patched by FinishFrame
  EncodeResponseHeader(ResponseHeader{.correlation_id = correlation_id},
                       ResponseHeaderVersion(api_key, api_version), w);
}

EncodedFrame FinishFrame(Writer&& w) {
  const size_t payload = w.size() - kFrameSizePrefixBytes;
  w.PatchInt32(0, static_cast<int32_t>(payload));
  return std::move(w).Finish();
}

}  // namespace internal

EncodedFrame EncodeResponse(int32_t correlation_id, int16_t api_version,
                            const AnyResponse& response) {
  Writer w;
  internal::BeginResponseFrame(ApiKeyOf(response), api_version, correlation_id, w);
  EncodeResponseBody(response, api_version, w);
  return internal::FinishFrame(std::move(w));
}

EncodedFrame EncodeRequest(const RequestHeader& header, const AnyRequest& request) {
  Writer w;
  w.WriteInt32(0);
  EncodeRequestHeader(header, RequestHeaderVersion(header.api_key, header.api_version), w);
  EncodeRequestBody(request, header.api_version, w);
  return internal::FinishFrame(std::move(w));
}

absl::StatusOr<DecodedResponse> DecodeResponse(int16_t api_key, int16_t api_version,
                                               std::span<const uint8_t> frame_payload) {
  Reader r(frame_payload);
  DecodedResponse out;
  SLUICE_KAFKA_RETURN_IF_ERROR(
      DecodeResponseHeader(r, ResponseHeaderVersion(api_key, api_version), &out.header));
  SLUICE_KAFKA_RETURN_IF_ERROR(DecodeResponseBody(api_key, api_version, r, &out.body));
  return out;
}

std::vector<ApiVersionsResponse::ApiVersion> SupportedApiVersions() {
  std::vector<ApiVersionsResponse::ApiVersion> out;
  out.reserve(kSupportedApis.size());
  for (const ApiInfo& api : kSupportedApis) {
    out.push_back(
        {.api_key = api.api_key, .min_version = api.min_version, .max_version = api.max_version});
  }
  return out;
}

EncodedFrame EncodeUnsupportedApiVersionsResponse(int32_t correlation_id) {
  ApiVersionsResponse response;
  response.error_code = errors::kUnsupportedVersion;
  response.api_keys = SupportedApiVersions();
  return EncodeResponse(correlation_id, /*api_version=*/0, response);
}

}  // namespace sluice::kafka
