// The changes to AMQP metadata (durable exchanges, queues and bindings) since the last snapshot
// (`amqp.meta`), kept as a journal: `amqp.meta.journal`, small checksummed records, each
// appended and fdatasync'd before the change is answered. A declare, delete, bind or unbind
// then writes a few dozen bytes however many queues exist, instead of rewriting the snapshot
// of all of them (10,000 queues: ~1 ms of CPU per declare, and the snapshot's temp file,
// fdatasync, rename and directory fsync). The broker rewrites the snapshot and empties the
// journal when the journal outgrows it, so each change costs O(1) amortized.
//
// Record: crc32c u32 (of everything after it), body length u32, type u8, body; big-endian.
// The bodies are the broker's (AmqpBroker, src/amqp/MAPPING.md "Metadata"). Replay applies
// records in file order; the first record that fails its checksum or is cut short ends the
// journal (a torn tail held only changes that were never answered).
//
// Threading: the shard thread. Pure file I/O; the broker decides what to write.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::amqp {

class MetadataJournal {
 public:
  struct Record {
    uint8_t type = 0;
    std::string body;
  };

  // Opens (creating if missing) the journal at `path` and returns its valid records in
  // `records`, in file order. A damaged or torn tail is logged and cut.
  static absl::StatusOr<std::unique_ptr<MetadataJournal>> Open(const std::string& path,
                                                               std::vector<Record>* records);
  ~MetadataJournal();
  MetadataJournal(const MetadataJournal&) = delete;
  MetadataJournal& operator=(const MetadataJournal&) = delete;

  // One encoded record appended to `out`.
  static void Encode(uint8_t type, std::string_view body, std::string* out);
  // Decodes records from the front of `bytes` until the end or the first invalid one; returns
  // how many bytes the valid records span.
  static size_t Decode(std::string_view bytes, std::vector<Record>* out);

  // Appends one record and fdatasyncs it. After a failure the journal is broken: nothing may
  // be appended behind what the failed write left until Reset() succeeds (a record after a
  // torn one would never be replayed).
  absl::Status AppendDurably(uint8_t type, std::string_view body);
  // Empties the journal durably: its records are in a snapshot written before. Clears broken.
  absl::Status Reset();
  uint64_t size() const { return size_; }
  bool broken() const { return broken_; }

 private:
  MetadataJournal(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  int fd_;
  uint64_t size_;
  bool broken_ = false;
};

}  // namespace sluice::amqp
