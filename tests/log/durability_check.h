// What a partition log must hold after a crash, power cut or disk error, checked against a
// model of what was appended and acknowledged (power_cut_test.cc, disk_error_test.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "log/partition_log.h"
#include "log/record_batch.h"

namespace sluice::storage::testing {

inline void StoreBigEndian64(uint8_t* p, int64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

struct Batch {
  int64_t base = 0;
  int64_t last = 0;
  int64_t timestamp = 0;  // of every record in it (strictly increasing from batch to batch)
  std::vector<uint8_t> bytes;
};

// What the log may hold: every batch appended at its offset (a later life's append replaces
// one that a power cut lost), and which of them must survive any power cut.
struct Model {
  std::map<int64_t, Batch> appended;
  std::set<int64_t> must_survive;  // base offsets
};

// Everything readable from the log start to the high watermark, batch by batch.
inline absl::StatusOr<std::vector<Batch>> ReadEverything(const PartitionLog& log) {
  std::vector<Batch> out;
  int64_t offset = log.log_start_offset();
  while (offset < log.high_watermark()) {
    auto slice = log.Read(offset, 4096);
    if (!slice.ok()) return slice.status();
    if (slice->size == 0) {
      return absl::DataLossError(absl::StrCat("empty read at ", offset, " below the hw"));
    }
    auto bytes = PartitionLog::ReadBytes(*slice);
    if (!bytes.ok()) return bytes.status();
    size_t pos = 0;
    while (pos < bytes->size()) {
      std::span<const uint8_t> rest(bytes->data() + pos, bytes->size() - pos);
      auto h = ParseBatchHeader(rest, static_cast<uint32_t>(rest.size()));
      if (!h.ok()) return h.status();
      std::span<const uint8_t> whole = rest.first(h->size_bytes());
      if (absl::Status s = ValidateBatch(whole, static_cast<uint32_t>(whole.size())); !s.ok()) {
        return s;
      }
      Batch b;
      b.base = h->base_offset;
      b.last = h->last_offset();
      b.timestamp = h->base_timestamp;
      b.bytes.assign(whole.begin(), whole.end());
      if (b.last < offset) {
        return absl::DataLossError(
            absl::StrCat("Read(", offset, ") returned batch ", b.base, "..", b.last, " below it"));
      }
      offset = b.last + 1;
      pos += whole.size();
      out.push_back(std::move(b));
    }
  }
  return out;
}

inline std::string Describe(const Batch& b) { return absl::StrCat("batch ", b.base, "..", b.last); }

// Key and value of every record, by offset.
inline std::map<int64_t, std::pair<std::string, std::string>> RecordsOf(const Batch& b) {
  std::map<int64_t, std::pair<std::string, std::string>> out;
  auto records = DecodeRecords(b.bytes);
  if (!records.ok()) return out;
  for (const RecordView& r : *records) {
    out[r.offset] = {std::string(r.key.value_or("")), std::string(r.value.value_or(""))};
  }
  return out;
}

// Checks a recovered log against the model; returns what it holds (batches in order).
inline absl::StatusOr<std::vector<Batch>> CheckRecovered(const PartitionLog& log,
                                                         const Model& model, int64_t allowed_start,
                                                         bool compacted) {
  const int64_t start = log.log_start_offset();
  const int64_t end = log.high_watermark();
  if (start > allowed_start) {
    return absl::DataLossError(
        absl::StrCat("log start ", start, " is past where the log was (", allowed_start, ")"));
  }
  auto read = ReadEverything(log);
  if (!read.ok()) return read.status();
  const std::vector<Batch>& batches = *read;
  // Every readable batch (record) was appended at that offset: no garbage, nothing invented.
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& b = batches[i];
    auto it = model.appended.upper_bound(b.base);
    if (it == model.appended.begin()) {
      return absl::DataLossError(absl::StrCat(Describe(b), " was never appended"));
    }
    --it;
    if (!compacted) {
      if (it->first != b.base || it->second.bytes != b.bytes) {
        return absl::DataLossError(
            absl::StrCat(Describe(b), " differs from what was appended at ", b.base));
      }
      if (i > 0 && b.base != batches[i - 1].last + 1) {
        return absl::DataLossError(absl::StrCat("gap before ", Describe(b)));
      }
    } else {
      // Compaction removes records and rewrites batches, but keeps every record's offset.
      for (const auto& [offset, kv] : RecordsOf(b)) {
        auto src = model.appended.upper_bound(offset);
        if (src == model.appended.begin()) {
          return absl::DataLossError(absl::StrCat("record ", offset, " was never appended"));
        }
        --src;
        auto original = RecordsOf(src->second);
        auto rec = original.find(offset);
        if (rec == original.end() || rec->second != kv) {
          return absl::DataLossError(
              absl::StrCat("record ", offset, " differs from what was appended there"));
        }
      }
      if (i > 0 && b.base <= batches[i - 1].last) {
        return absl::DataLossError(absl::StrCat("offsets go backwards at ", Describe(b)));
      }
    }
  }
  if (!batches.empty() && batches.back().last + 1 != end) {
    return absl::DataLossError(absl::StrCat("last batch ends at ", batches.back().last,
                                            " but the high watermark is ", end));
  }
  // Everything that had to survive did.
  if (!compacted) {
    for (int64_t base : model.must_survive) {
      const Batch& b = model.appended.at(base);
      if (b.last < allowed_start) continue;  // legitimately below the log start
      if (b.last >= end) {
        return absl::DataLossError(absl::StrCat("durable ", Describe(b), " lost (log ends at ", end,
                                                ", starts at ", start, ")"));
      }
    }
  } else {
    std::map<std::string, int64_t> latest_durable;  // key -> offset
    for (int64_t base : model.must_survive) {
      for (const auto& [offset, kv] : RecordsOf(model.appended.at(base))) {
        if (offset < allowed_start) continue;
        int64_t& o = latest_durable[kv.first];
        o = std::max(o, offset);
      }
    }
    std::map<std::string, int64_t> latest_present;
    for (const Batch& b : batches) {
      for (const auto& [offset, kv] : RecordsOf(b)) latest_present[kv.first] = offset;
    }
    for (const auto& [key, offset] : latest_durable) {
      auto it = latest_present.find(key);
      if (it == latest_present.end() || it->second < offset) {
        return absl::DataLossError(
            absl::StrCat("key ", key, ": durable record at ", offset, " lost and not superseded"));
      }
    }
  }
  // The indexes find every batch: from its first and its last offset, and by time.
  for (const Batch& b : batches) {
    for (int64_t offset : {std::max(b.base, start), b.last}) {
      auto slice = log.Read(offset, 1);
      if (!slice.ok() || slice->size == 0 || slice->first_offset != b.base) {
        return absl::DataLossError(
            absl::StrCat("Read(", offset, ") does not find ", Describe(b), ": ",
                         slice.ok() ? absl::StrCat("first offset ", slice->first_offset)
                                    : slice.status().ToString()));
      }
    }
    if (!compacted) {
      auto by_time = log.OffsetForTime(b.timestamp);
      if (!by_time.ok() || *by_time != std::max(b.base, start)) {
        return absl::DataLossError(
            absl::StrCat("OffsetForTime(", b.timestamp, ") does not find ", Describe(b), ": ",
                         by_time.ok() ? absl::StrCat(*by_time) : by_time.status().ToString()));
      }
    }
  }
  return batches;
}

}  // namespace sluice::storage::testing
