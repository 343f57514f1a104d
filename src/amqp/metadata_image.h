// What survives a restart of the AMQP side's topology: the durable exchanges, queues and
// bindings, as plain values. Stored as a snapshot file (`amqp.meta`) plus the journal of the
// changes made since (MetadataJournal, `amqp.meta.journal`); loading parses the snapshot and
// replays the journal onto it. Formats: src/amqp/MAPPING.md ("Metadata").
//
// Every journal record is "set" or "remove" of one entity, with no cascade (a queue's delete
// carries, in one batch, the removal of each binding to it), so replaying a journal onto any
// snapshot written after its records were made leaves that snapshot unchanged: a crash between
// writing a new snapshot and emptying the journal loses nothing and duplicates nothing.
//
// Pure values and bytes: no files, no broker state; fuzzed by tests/fuzz/amqp_metadata_fuzz.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/amqp/field_table.h"

namespace sluice::amqp {

struct StoredExchange {
  std::string name;
  std::string type_name;
  bool auto_delete = false;
  bool internal = false;
  FieldTable arguments;
};

struct StoredQueue {
  uint64_t id = 0;
  std::string name;
  bool auto_delete = false;
  bool stream = false;
  FieldTable arguments;
};

struct StoredBinding {
  std::string source;
  bool to_exchange = false;
  std::string destination;
  std::string routing_key;
  FieldTable arguments;
};

class MetadataImage {
 public:
  // Journal record types (MetadataJournal::Record::type).
  enum RecordType : uint8_t {
    kExchangeSet = 1,
    kExchangeRemove = 2,
    kQueueSet = 3,
    kQueueRemove = 4,
    kBindingSet = 5,
    kBindingRemove = 6,
    kBatch = 7,  // records applied together or not at all (one checksum covers them)
  };

  // The snapshot file's bytes: DataLoss when its magic, version, checksum or layout is wrong.
  static absl::StatusOr<MetadataImage> ParseSnapshot(std::string_view file);
  // The snapshot file's bytes of this image.
  absl::StatusOr<std::string> EncodeSnapshot() const;

  // Journal record bodies.
  static absl::StatusOr<std::string> ExchangeSet(const StoredExchange& e);
  static std::string ExchangeRemove(std::string_view name);
  // Carries next_queue_id: queue ids are never reused, across restarts too.
  static absl::StatusOr<std::string> QueueSet(const StoredQueue& q, uint64_t next_queue_id);
  static std::string QueueRemove(uint64_t id, std::string_view name);
  static absl::StatusOr<std::string> BindingSet(const StoredBinding& b);
  static absl::StatusOr<std::string> BindingRemove(const StoredBinding& b);
  // A batch of (type, body) records, none of them a batch.
  static std::string Batch(const std::vector<std::pair<uint8_t, std::string>>& records);

  // Replays one journal record. An exchange set empties the bindings it is the source of (a
  // new exchange has none); a queue remove applies only to the queue of that id. DataLoss for
  // a record that does not parse (the caller stops replaying there).
  absl::Status Apply(uint8_t type, std::string_view body);

  uint64_t next_queue_id = 1;
  std::map<std::string, StoredExchange> exchanges;
  std::map<std::string, StoredQueue> queues;
  // Keyed by (source, the rest of the binding encoded): set and remove find it in O(log n),
  // and an exchange's own bindings are one range.
  std::map<std::pair<std::string, std::string>, StoredBinding> bindings;

  void AddBinding(StoredBinding b);
  void RemoveBinding(const StoredBinding& b);
};

}  // namespace sluice::amqp
