// sluice-log: dump and verify Sluice's on-disk files (log/FORMAT.md, index/FORMAT.md).
//
//   sluice-log dump SEGMENT.log [--records]   every batch (and record) of a segment
//   sluice-log index FILE.index|FILE.timeindex every index entry
//   sluice-log checkpoint DIR/recovery-point   the recovery checkpoint of a log
//   sluice-log checkpoint DATA/recovery-points.N   every log's point in a shard's file
//   sluice-log verify DIR                      a partition directory, or a data directory of
//                                              them: CRCs, index consistency, offset continuity
// Exit status: 0 when everything checked is sound, 1 when a problem was found, 2 on usage.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "index/offset_index.h"
#include "index/time_index.h"
#include "log/checkpoint.h"
#include "log/compression.h"
#include "log/file_util.h"
#include "log/log_manager.h"
#include "log/record_batch.h"
#include "log/recovery_points.h"
#include "log/segment.h"

using namespace sluice::storage;

namespace {

std::string Printable(std::string_view s, size_t max = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out +=
        (c >= 32 && c < 127) ? std::string(1, static_cast<char>(c)) : absl::StrFormat("\\x%02x", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

int Dump(const std::string& path, bool records) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "sluice-log: cannot open %s\n", path.c_str());
    return 2;
  }
  off_t size = ::lseek(fd, 0, SEEK_END);
  int bad = 0;
  uint64_t pos = 0;
  while (pos < static_cast<uint64_t>(size)) {
    uint8_t head[kBatchHeaderSize];
    auto got = PreadFully(fd, head, sizeof(head), pos);
    if (!got.ok() || *got < sizeof(head)) {
      printf("position %lu: torn header (%lu bytes left)\n", pos, size - pos);
      bad = 1;
      break;
    }
    auto h = ParseBatchHeader(std::span<const uint8_t>(head, sizeof(head)), UINT32_MAX);
    if (!h.ok()) {
      printf("position %lu: %s\n", pos, std::string(h.status().message()).c_str());
      bad = 1;
      break;
    }
    std::vector<uint8_t> batch(h->size_bytes());
    got = PreadFully(fd, batch.data(), batch.size(), pos);
    if (!got.ok() || *got < batch.size()) {
      printf("position %lu: batch of %lu bytes runs past the end of the file\n", pos, batch.size());
      bad = 1;
      break;
    }
    absl::Status valid = ValidateBatch(batch, UINT32_MAX);
    RecordBatchView v(batch);
    printf(
        "position %lu offsets %ld..%ld count %d size %lu crc %s compression %s "
        "timestamps %ld..%ld (%s) producer %ld/%d/%d%s%s\n",
        pos, v.base_offset(), v.last_offset(), v.records_count(), batch.size(),
        valid.ok() ? "ok" : "BAD", CompressionName(v.compression()), v.base_timestamp(),
        v.max_timestamp(),
        v.timestamp_type() == TimestampType::kLogAppendTime ? "LogAppendTime" : "CreateTime",
        v.producer_id(), v.producer_epoch(), v.base_sequence(),
        v.is_transactional() ? " transactional" : "", v.is_control() ? " control" : "");
    if (!valid.ok()) bad = 1;
    if (records && v.compression() == Compression::kNone) {
      auto decoded = DecodeRecords(batch);
      if (!decoded.ok()) {
        printf("  records: %s\n", std::string(decoded.status().message()).c_str());
        bad = 1;
      } else {
        for (const RecordView& r : *decoded) {
          printf("  offset %ld timestamp %ld key %s value %s", r.offset, r.timestamp,
                 r.key ? ("\"" + Printable(*r.key) + "\"").c_str() : "null",
                 r.value ? absl::StrFormat("%lu bytes \"%s\"", r.value->size(), Printable(*r.value))
                               .c_str()
                         : "null");
          for (const auto& hdr : r.headers) {
            printf(" [%s=%s]", Printable(hdr.key).c_str(),
                   hdr.value ? Printable(*hdr.value).c_str() : "null");
          }
          printf("\n");
        }
      }
    }
    pos += batch.size();
  }
  ::close(fd);
  return bad;
}

int DumpIndex(const std::string& path) {
  std::string name = path.substr(path.rfind('/') + 1);
  int64_t base = 0;
  std::string stem = name.substr(0, name.find('.'));
  if (!Segment::ParseLogFileName(stem + ".log", &base)) {
    fprintf(stderr, "sluice-log: %s is not named <20-digit base offset>.index/.timeindex\n",
            path.c_str());
    return 2;
  }
  if (absl::EndsWith(name, ".timeindex")) {
    auto idx = TimeIndex::Open(path, base, 1 << 30);
    if (!idx.ok()) {
      printf("%s\n", std::string(idx.status().message()).c_str());
      return 1;
    }
    printf("time index %s: base %ld, %lu entries, %s\n", path.c_str(), base, (*idx)->entries(),
           (*idx)->sealed() ? "sealed" : "active");
    for (size_t i = 0; i < (*idx)->entries(); ++i) {
      printf("  timestamp %ld offset %ld\n", (*idx)->entry(i).timestamp, (*idx)->entry(i).offset);
    }
    return 0;
  }
  auto idx = OffsetIndex::Open(path, base, 1 << 30);
  if (!idx.ok()) {
    printf("%s\n", std::string(idx.status().message()).c_str());
    return 1;
  }
  printf("offset index %s: base %ld, %lu entries, %s\n", path.c_str(), base, (*idx)->entries(),
         (*idx)->sealed() ? "sealed" : "active");
  for (size_t i = 0; i < (*idx)->entries(); ++i) {
    printf("  offset %ld position %u\n", (*idx)->entry(i).offset, (*idx)->entry(i).position);
  }
  return 0;
}

// A shard's recovery-points file: every log's point, in name order.
int DumpRecoveryPoints(const std::string& path) {
  auto bytes = ReadWholeFile(path);
  if (!bytes.ok()) {
    printf("%s\n", std::string(bytes.status().message()).c_str());
    return 1;
  }
  ParsedRecoveryPoints parsed = ParseRecoveryPoints(*bytes);
  std::vector<std::string> names;
  for (const auto& [name, point] : parsed.points) names.push_back(name);
  std::sort(names.begin(), names.end());
  printf("generation %lu, %lu logs, %lu of %lu bytes valid\n", parsed.generation, names.size(),
         parsed.valid_bytes, bytes->size());
  for (const std::string& name : names) {
    const RecoveryPoint& p = parsed.points[name];
    printf("%s: recovery offset %ld (segment %ld, position %lu), log start offset %ld%s\n",
           name.c_str(), p.cp.recovery_offset, p.cp.segment_base, p.cp.position,
           p.cp.log_start_offset, p.clean ? ", closed cleanly" : "");
  }
  if (!parsed.stop_reason.empty()) {
    printf("stopped: %s\n", parsed.stop_reason.c_str());
    return 1;
  }
  return 0;
}

int DumpCheckpoint(const std::string& path) {
  int shard;
  if (ParseRecoveryPointFileName(path.substr(path.rfind('/') + 1), &shard)) {
    return DumpRecoveryPoints(path);
  }
  auto cp = ReadRecoveryCheckpoint(path);
  if (!cp.ok()) {
    printf("%s\n", std::string(cp.status().message()).c_str());
    return 1;
  }
  printf("recovery offset %ld (segment %ld, position %lu), log start offset %ld\n",
         cp->recovery_offset, cp->segment_base, cp->position, cp->log_start_offset);
  return 0;
}

// Verifies one partition directory without modifying anything. `point`: its entry in the
// data directory's recovery-points files, when it has one.
int VerifyPartition(const std::string& dir, const RecoveryCheckpoint* point = nullptr) {
  auto names = ListDir(dir);
  if (!names.ok()) {
    printf("%s: %s\n", dir.c_str(), std::string(names.status().message()).c_str());
    return 1;
  }
  std::vector<int64_t> bases;
  for (const auto& n : *names) {
    int64_t b;
    if (Segment::ParseLogFileName(n, &b)) bases.push_back(b);
  }
  std::sort(bases.begin(), bases.end());
  int problems = 0;
  int64_t expect = -1;
  uint64_t bytes = 0, batches = 0;
  for (int64_t base : bases) {
    const std::string stem = absl::StrCat(dir, "/", Segment::FileStem(base));
    int fd = ::open((stem + ".log").c_str(), O_RDONLY | O_CLOEXEC);
    off_t size = ::lseek(fd, 0, SEEK_END);
    std::vector<std::pair<int64_t, uint64_t>> starts;  // (base offset, position) of each batch
    ScanResult r = ScanBatches(
        fd, 0, static_cast<uint64_t>(size), /*verify_crc=*/true, base,
        [&](const BatchHeader& h, uint64_t pos) { starts.emplace_back(h.base_offset, pos); });
    ::close(fd);
    bytes += static_cast<uint64_t>(size);
    batches += r.batches;
    if (!r.stop_reason.ok()) {
      printf("%s.log: %s\n", stem.c_str(), std::string(r.stop_reason.message()).c_str());
      ++problems;
    }
    // Segments are contiguous by name: each is named after the offset where the previous one
    // ended. (Compaction may remove a segment's first records, so its first batch can start
    // above its name; it never starts below.)
    if (expect >= 0 && base != expect) {
      printf("%s.log: named %ld, previous segment ended at %ld\n", stem.c_str(), base, expect);
      ++problems;
    }
    if (!starts.empty() && starts.front().first < base) {
      printf("%s.log: starts at offset %ld, below its name\n", stem.c_str(), starts.front().first);
      ++problems;
    }
    if (r.next_offset >= 0) expect = r.next_offset;
    // A small segment's index files are made with its first entry (log/FORMAT.md): their
    // absence is no problem there. The broker uses the same bound.
    const bool small = static_cast<uint64_t>(size) < 2 * LogConfig().index_interval_bytes;
    if (small && !FileExists(stem + ".index") && !FileExists(stem + ".timeindex")) continue;
    auto oi = OffsetIndex::Open(stem + ".index", base, 1 << 30);
    if (!oi.ok()) {
      printf("%s.index: %s (would be rebuilt)\n", stem.c_str(),
             std::string(oi.status().message()).c_str());
      ++problems;
    } else {
      for (size_t i = 0; i < (*oi)->entries(); ++i) {
        OffsetPosition e = (*oi)->entry(i);
        auto it =
            std::lower_bound(starts.begin(), starts.end(), std::make_pair(e.offset, uint64_t{0}));
        if (it == starts.end() || it->first != e.offset || it->second != e.position) {
          printf("%s.index: entry %lu (offset %ld position %u) is not a batch start\n",
                 stem.c_str(), i, e.offset, e.position);
          ++problems;
          break;
        }
      }
    }
    auto ti = TimeIndex::Open(stem + ".timeindex", base, 1 << 30);
    if (!ti.ok()) {
      printf("%s.timeindex: %s (would be rebuilt)\n", stem.c_str(),
             std::string(ti.status().message()).c_str());
      ++problems;
    }
  }
  const std::string cp_path = absl::StrCat(dir, "/", kRecoveryCheckpointFile);
  if (point != nullptr && expect >= 0 && point->recovery_offset > expect) {
    printf(
        "%s: recovery offset %ld (recovery-points file) beyond the log end %ld: durable data "
        "missing\n",
        dir.c_str(), point->recovery_offset, expect);
    ++problems;
  }
  if (FileExists(cp_path)) {
    auto cp = ReadRecoveryCheckpoint(cp_path);
    if (!cp.ok()) {
      printf("%s: %s\n", cp_path.c_str(), std::string(cp.status().message()).c_str());
      ++problems;
    } else if (expect >= 0 && cp->recovery_offset > expect) {
      printf("%s: recovery offset %ld beyond the log end %ld: durable data missing\n",
             cp_path.c_str(), cp->recovery_offset, expect);
      ++problems;
    }
  }
  printf("%s: %lu segments, %lu batches, %lu bytes, next offset %ld: %s\n", dir.c_str(),
         bases.size(), batches, bytes, expect, problems ? "PROBLEMS FOUND" : "ok");
  return problems ? 1 : 0;
}

int Verify(const std::string& dir) {
  auto names = ListDir(dir);
  if (!names.ok()) {
    fprintf(stderr, "sluice-log: %s\n", std::string(names.status().message()).c_str());
    return 2;
  }
  bool has_segments = false;
  for (const auto& n : *names) {
    int64_t b;
    has_segments |= Segment::ParseLogFileName(n, &b);
  }
  if (has_segments) return VerifyPartition(dir);
  int rc = 0;
  auto points = ReadRecoveryPointFiles(dir);
  if (!points.ok()) {
    printf("%s: recovery points: %s\n", dir.c_str(),
           std::string(points.status().message()).c_str());
    rc = 1;
  }
  std::sort(names->begin(), names->end());
  for (const auto& n : *names) {
    TopicPartition tp;
    if (!TopicPartition::FromDirName(n, &tp)) continue;
    const RecoveryCheckpoint* point = nullptr;
    if (points.ok()) {
      if (auto it = points->points.find(n); it != points->points.end()) point = &it->second.cp;
    }
    rc |= VerifyPartition(absl::StrCat(dir, "/", n), point);
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 2 && args[0] == "dump") {
    return Dump(args[1], args.size() > 2 && args[2] == "--records");
  }
  if (args.size() == 2 && args[0] == "index") return DumpIndex(args[1]);
  if (args.size() == 2 && args[0] == "checkpoint") return DumpCheckpoint(args[1]);
  if (args.size() == 2 && args[0] == "verify") return Verify(args[1]);
  fprintf(stderr,
          "usage: sluice-log dump SEGMENT.log [--records]\n"
          "       sluice-log index FILE.index|FILE.timeindex\n"
          "       sluice-log checkpoint DIR/recovery-point | DATA/recovery-points.N\n"
          "       sluice-log verify DIR\n");
  return 2;
}
