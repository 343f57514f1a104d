#include "src/kafka/legacy_records.h"

#include <array>
#include <deque>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "log/compression.h"

namespace sluice::broker::legacy {

namespace {

constexpr uint8_t kCodecMask = 0x07;
constexpr uint8_t kLogAppendTimeBit = 0x08;
constexpr int16_t kControlBatchBit = 0x20;
constexpr size_t kLogOverhead = 12;  // offset + size
// crc + magic + attributes + key length + value length: the smallest v0 message after `size`.
constexpr int32_t kMinMessageSizeV0 = 4 + 1 + 1 + 4 + 4;

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t ReadBe32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
uint64_t ReadBe64(const uint8_t* p) { return (uint64_t{ReadBe32(p)} << 32) | ReadBe32(p + 4); }
void PutBe32(std::vector<uint8_t>* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<uint8_t>(v >> s));
}
void PutBe64(std::vector<uint8_t>* out, uint64_t v) {
  PutBe32(out, static_cast<uint32_t>(v >> 32));
  PutBe32(out, static_cast<uint32_t>(v));
}
void WriteBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

struct Message {
  int64_t offset = 0;
  int8_t magic = 0;
  uint8_t attributes = 0;
  int64_t timestamp = -1;
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
};

// Reads a length-prefixed nullable bytes field at `*pos` of [data, end).
absl::Status ReadBytesField(const uint8_t* data, size_t end, size_t* pos,
                            std::optional<std::string_view>* field) {
  if (end - *pos < 4) return absl::DataLossError("legacy message: truncated length");
  const int32_t len = static_cast<int32_t>(ReadBe32(data + *pos));
  *pos += 4;
  if (len == -1) {
    field->reset();
    return absl::OkStatus();
  }
  if (len < 0 || static_cast<size_t>(len) > end - *pos) {
    return absl::DataLossError(absl::StrCat("legacy message: bad length ", len));
  }
  *field = std::string_view(reinterpret_cast<const char*>(data + *pos), static_cast<size_t>(len));
  *pos += static_cast<size_t>(len);
  return absl::OkStatus();
}

// Parses the message at the start of `in` (magic 0 or 1), checking its CRC. Returns the bytes
// it takes.
absl::StatusOr<size_t> ParseMessage(std::span<const uint8_t> in, Message* m) {
  if (in.size() < kLogOverhead + 5) return absl::DataLossError("legacy message: truncated");
  const uint8_t* p = in.data();
  m->offset = static_cast<int64_t>(ReadBe64(p));
  const int32_t size = static_cast<int32_t>(ReadBe32(p + 8));
  m->magic = static_cast<int8_t>(p[16]);
  if (m->magic != kMagicV0 && m->magic != kMagicV1) {
    return absl::DataLossError(
        absl::StrCat("legacy message: magic ", m->magic, " among magic 0/1 messages"));
  }
  const int32_t min_size = m->magic == kMagicV0 ? kMinMessageSizeV0 : kMinMessageSizeV0 + 8;
  if (size < min_size) return absl::DataLossError(absl::StrCat("legacy message: size ", size));
  const size_t end = kLogOverhead + static_cast<size_t>(size);
  if (end > in.size()) return absl::DataLossError("legacy message: truncated");
  const uint32_t crc = ReadBe32(p + 12);
  if (Crc32Ieee(0, p + 16, end - 16) != crc) {
    return absl::DataLossError("legacy message: CRC mismatch");
  }
  m->attributes = p[17];
  size_t pos = 18;
  m->timestamp = -1;
  if (m->magic == kMagicV1) {
    m->timestamp = static_cast<int64_t>(ReadBe64(p + 18));
    pos = 26;
  }
  if (absl::Status s = ReadBytesField(p, end, &pos, &m->key); !s.ok()) return s;
  if (absl::Status s = ReadBytesField(p, end, &pos, &m->value); !s.ok()) return s;
  if (pos != end) return absl::DataLossError("legacy message: size does not match its fields");
  return end;
}

struct Item {
  int64_t timestamp;
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
};

}  // namespace

uint32_t Crc32Ieee(uint32_t crc, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

int MagicOfFirstEntry(std::span<const uint8_t> records) {
  if (records.size() < 17) return -1;
  return static_cast<int8_t>(records[16]);
}

absl::StatusOr<std::vector<uint8_t>> UpConvertMessageSet(std::span<const uint8_t> message_set,
                                                         size_t max_decompressed_bytes) {
  std::vector<Item> items;
  std::deque<std::vector<uint8_t>> inflated;  // decompressed inner sets; items point into them
  size_t budget = max_decompressed_bytes;     // for all wrappers together
  storage::Compression codec = storage::Compression::kNone;
  for (std::span<const uint8_t> rest = message_set; !rest.empty();) {
    Message m;
    absl::StatusOr<size_t> used = ParseMessage(rest, &m);
    if (!used.ok()) return used.status();
    rest = rest.subspan(*used);
    const uint8_t wrapper_codec = m.attributes & kCodecMask;
    if (wrapper_codec == 0) {
      items.push_back({m.timestamp, m.key, m.value});
      continue;
    }
    if (wrapper_codec > static_cast<uint8_t>(storage::Compression::kLz4)) {
      return absl::InvalidArgumentError(absl::StrCat("legacy message: codec ", wrapper_codec,
                                                     " in a magic ", m.magic, " message"));
    }
    if (!m.value.has_value()) return absl::DataLossError("legacy message: null compressed value");
    const auto c = static_cast<storage::Compression>(wrapper_codec);
    auto inner = storage::DecompressRecords(
        c, {reinterpret_cast<const uint8_t*>(m.value->data()), m.value->size()}, budget);
    if (!inner.ok()) {
      if (absl::IsResourceExhausted(inner.status())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "legacy message set decompresses to more than ", max_decompressed_bytes, " bytes"));
      }
      return absl::DataLossError(absl::StrCat("legacy message: ", inner.status().message()));
    }
    budget -= inner->size();
    if (codec == storage::Compression::kNone) codec = c;
    const std::vector<uint8_t>& set = inflated.emplace_back(*std::move(inner));
    const bool log_append_time = m.magic == kMagicV1 && (m.attributes & kLogAppendTimeBit) != 0;
    size_t count = 0;
    for (std::span<const uint8_t> in = set; !in.empty(); ++count) {
      Message im;
      absl::StatusOr<size_t> n = ParseMessage(in, &im);
      if (!n.ok()) return n.status();
      in = in.subspan(*n);
      if ((im.attributes & kCodecMask) != 0) {
        return absl::InvalidArgumentError("legacy message: compressed message inside a wrapper");
      }
      items.push_back({log_append_time ? m.timestamp : im.timestamp, im.key, im.value});
    }
    if (count == 0) return absl::DataLossError("legacy message: empty compressed message set");
  }
  if (items.empty()) return absl::DataLossError("legacy message set: no messages");
  storage::RecordBatchBuilder builder(0, items.front().timestamp);
  for (const Item& it : items) builder.Add(it.key, it.value, {}, it.timestamp);
  if (codec == storage::Compression::kNone) return builder.Build();
  return builder.BuildCompressed(codec);
}

absl::StatusOr<DownConvertResult> DownConvertToV1(std::span<const uint8_t> batches,
                                                  int64_t fetch_offset, size_t max_bytes,
                                                  bool at_least_one, std::vector<uint8_t>* out) {
  DownConvertResult result;
  result.next_offset = fetch_offset;
  size_t written = 0;
  std::vector<uint8_t> scratch;
  for (std::span<const uint8_t> rest = batches; rest.size() >= storage::kBatchHeaderSize;) {
    auto h = storage::ParseBatchHeader(rest, UINT32_MAX);
    if (!h.ok()) return absl::DataLossError(h.status().message());
    if (h->size_bytes() > rest.size()) break;  // a partial batch at the end of the read
    std::span<const uint8_t> batch = rest.first(h->size_bytes());
    rest = rest.subspan(h->size_bytes());
    if (h->last_offset() < fetch_offset || (h->attributes & kControlBatchBit) != 0) continue;
    auto records = storage::DecompressAndDecodeRecords(
        batch, storage::kDefaultMaxDecompressedRecordsBytes, &scratch);
    if (!records.ok()) return records.status();
    const uint8_t attributes = (h->attributes & kLogAppendTimeBit) != 0 ? kLogAppendTimeBit : 0;
    for (const storage::RecordView& r : *records) {
      if (r.offset < fetch_offset) continue;
      const size_t size =
          kMessageOverheadV1 + (r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0);
      if (written + size > max_bytes && !(at_least_one && result.messages == 0)) return result;
      const size_t start = out->size();
      out->reserve(start + size);
      PutBe64(out, static_cast<uint64_t>(r.offset));
      PutBe32(out, static_cast<uint32_t>(size - kLogOverhead));
      PutBe32(out, 0);  // crc, below
      out->push_back(static_cast<uint8_t>(kMagicV1));
      out->push_back(attributes);
      PutBe64(out, static_cast<uint64_t>(r.timestamp));
      for (const std::optional<std::string_view>& f : {r.key, r.value}) {
        if (!f) {
          PutBe32(out, 0xFFFFFFFFu);
          continue;
        }
        PutBe32(out, static_cast<uint32_t>(f->size()));
        out->insert(out->end(), f->begin(), f->end());
      }
      uint8_t* msg = out->data() + start;
      WriteBe32(msg + 12, Crc32Ieee(0, msg + 16, size - 16));
      written += size;
      ++result.messages;
      result.next_offset = r.offset + 1;
    }
  }
  return result;
}

}  // namespace sluice::broker::legacy
