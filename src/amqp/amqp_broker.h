// The AMQP 0-9-1 front end of one shard: the listener, the virtual host "/" (exchanges,
// queues, bindings) and the queues' delivery loop. Mapping onto the log: src/amqp/MAPPING.md;
// protocol behaviour and deviations from RabbitMQ: net/amqp/PROTOCOL.md.
//
// Threading: everything runs on the shard thread.
//
// Durability: exchange/queue/binding metadata of durable entities is written to
// `<data_dir>/amqp.meta` (atomically, fsync'ed) before the -ok is sent. Durable queues' cursors
// go to `<data_dir>/amqp-cursors/<queue id>` every tick when changed and at clean shutdown.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "log/partition_log.h"
#include "log/record_batch.h"
#include "net/amqp/field_table.h"
#include "net/reactor/listener.h"
#include "src/amqp/cursor_journal.h"
#include "src/amqp/message_cache.h"
#include "src/amqp/metadata_image.h"
#include "src/amqp/metadata_journal.h"
#include "src/amqp/queue_cursor.h"
#include "src/amqp/routing.h"
#include "src/shard.h"

namespace sluice::broker {

class AmqpConnection;
class AmqpChannel;

// What the host gives the broker, for the limits' defaults below.
// Physical memory, or the cgroup's memory.max when that is lower (RabbitMQ's
// total_memory_available): 0 when unknown.
uint64_t TotalMemoryBytes();
// RabbitMQ's vhost max-queues is unlimited by default; each queue log holds 3 descriptors
// (segment, offset index, time index) until an fd cache exists, so Sluice's default lets
// queue logs use at most half of RLIMIT_NOFILE: (soft limit / 2) / 3, at least 1.
int64_t DefaultMaxQueues();
// RabbitMQ's default vm_memory_high_watermark (relative; 3.x's, 4.x raised it to 0.6).
inline constexpr double kDefaultMemoryHighWatermark = 0.4;
// kDefaultMemoryHighWatermark of TotalMemoryBytes(); no limit when the memory is unknown.
uint64_t DefaultMemoryHighWatermarkBytes();

// Every limit of the AMQP front end (defaults; flags in src/broker_config.h). What a client
// sees when one is hit: net/amqp/PROTOCOL.md, "Resource limits".
struct AmqpOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 5672;
  // Largest message body (RabbitMQ's max_message_size default).
  uint64_t max_message_bytes = uint64_t{128} << 20;
  uint32_t frame_max = 131072;
  // RabbitMQ's channel_max: the highest channel number (so also the number of channels) of
  // a connection; channel.open above it closes the connection with 504 CHANNEL_ERROR.
  uint16_t channel_max = 2047;
  // RabbitMQ's consumer_max_per_channel (there unlimited by default): basic.consume beyond
  // it closes the connection with 530 NOT_ALLOWED "reached maximum (N) of consumers per
  // channel", as RabbitMQ does. -1 = unlimited.
  int64_t consumer_max_per_channel = 1024;
  // RabbitMQ's vhost limit max-queues: queue.declare of a new queue (of any kind: durable,
  // exclusive, auto-delete, stream) when the vhost has this many closes the channel with
  // 406 PRECONDITION_FAILED "cannot declare queue 'q': queue limit in vhost '/' (N) is
  // reached". -1 = unlimited, 0 = no queue can be declared.
  int64_t max_queues = DefaultMaxQueues();
  // RabbitMQ's vhost limit max-connections and the per-user limits max-connections and
  // max-channels (the same value for every user): connection.open / channel.open beyond them
  // closes the connection with 530 NOT_ALLOWED. -1 = unlimited (the listener's cap applies).
  int64_t max_connections = -1;
  int64_t user_max_connections = -1;
  int64_t user_max_channels = -1;
  uint16_t heartbeat_seconds = 60;
  absl::Duration handshake_timeout = absl::Seconds(10);
  // guest/guest only from loopback addresses, as RabbitMQ (the fuzzer's socketpair is not).
  bool guest_loopback_only = true;
  // Users besides guest/guest (--amqp-users): name -> password; an empty password disables
  // the user (also guest). Every user has full access to vhost "/".
  std::map<std::string, std::string> users;
  // Bytes of not-yet-delivered messages one queue keeps in memory beside its log; beyond it
  // deliveries read the log.
  size_t queue_cache_bytes = 32 << 20;
  // All queues' message caches together (src/amqp/message_cache.h); effectively at most
  // half the memory high watermark, so caches alone never raise the memory alarm (as
  // RabbitMQ pages queues out at half its watermark).
  uint64_t message_cache_bytes = uint64_t{256} << 20;
  // Unsent output one connection may hold (deliveries, basic.get-ok, returns, replies,
  // confirms): at or above it the connection gets no new deliveries and its input is not
  // read (so no basic.get, no publish with a return) until the output is below half of it.
  uint64_t max_unsent_bytes = 4 << 20;
  // Uncommitted transactional work (tx.select) one connection may hold over all its channels:
  // each publish counts its body, properties and a fixed overhead, each ack/nack/reject the
  // overhead. The publish or ack that would pass it closes its channel with 406
  // PRECONDITION_FAILED (the channel's transaction is discarded).
  uint64_t max_uncommitted_bytes = uint64_t{128} << 20;
  // Memory alarm (RabbitMQ's vm_memory_high_watermark): while the AMQP front end holds this
  // many bytes or more, publishing connections are blocked as for the disk alarm
  // (Connection.Blocked "low on memory", their input not read). What is counted (see
  // AccountedMemory): message caches, uncommitted transactions, unsent output, unfinished
  // incoming content and input buffers, checked every memory_check_interval. 0 blocks every
  // publisher (RabbitMQ's watermark 0). Default: 0.4 of TotalMemoryBytes().
  uint64_t memory_high_watermark_bytes = DefaultMemoryHighWatermarkBytes();
  absl::Duration memory_check_interval = absl::Milliseconds(100);
  // Disk alarm (RabbitMQ's disk_free_limit, 50 MB by default): below this many free bytes in
  // the data directory, publishing connections are blocked (Connection.Blocked, not read)
  // until there is room again. 0 disables. `<data_dir>/disk-free-limit-bytes`, while it
  // exists, overrides it at run time (as rabbitmqctl set_disk_free_limit).
  uint64_t disk_free_limit_bytes = 50'000'000;
  absl::Duration disk_check_interval = absl::Milliseconds(100);
  // Shared with the other listeners (src/main.cc): max.connections, max.connections.per.ip,
  // the descriptor budget, the request read timeout.
  net::ListenerLimits listener_limits;
};

// The log-config of queue logs: no retention (acks delete, via AdvanceLogStart), batches as
// large as the largest message, and every append synced (see MAPPING.md, "Confirms").
storage::LogConfig AmqpQueueLogConfig(const storage::LogConfig& defaults, uint64_t max_message);
// Internal queue logs are topics whose names Kafka cannot spell ('~'), so they never collide.
inline constexpr std::string_view kQueueLogPrefix = "amqp~q~";
// Direct reply-to: the pseudo-queue an RPC client consumes from (no-ack) and names in
// reply-to; the server turns it into kReplyToPrefix + a token naming that consumer.
inline constexpr std::string_view kReplyTo = "amq.rabbitmq.reply-to";
inline constexpr std::string_view kReplyToPrefix = "amq.rabbitmq.reply-to.";
bool IsAmqpQueueLog(const std::string& topic);

// One message as published: stored once per queue it was routed to, shared in memory.
struct AmqpMessage {
  std::string exchange;
  std::string routing_key;
  std::string properties;  // encoded flag words + values, forwarded as received
  std::string body;
  bool persistent = false;     // delivery-mode 2
  int64_t timestamp_ms = 0;    // when published (the record's timestamp)
  int64_t expiration_ms = -1;  // the `expiration` property (per-message TTL), -1 = none
  // Application headers as text, for Kafka readers of stream queues.
  std::vector<storage::RecordBatchBuilder::Header> kafka_headers;
  size_t bytes() const {
    return exchange.size() + routing_key.size() + properties.size() + body.size() + 64;
  }
};
using MessagePtr = std::shared_ptr<const AmqpMessage>;

struct AmqpConsumer {
  std::string tag;
  // Stream queues: each consumer reads the log from its own offset (x-stream-offset); the
  // records of the last read wait in `stream_buffer`.
  int64_t stream_offset = -1;
  std::deque<std::pair<int64_t, MessagePtr>> stream_buffer;
  AmqpChannel* channel = nullptr;
  bool no_ack = false;
  bool exclusive = false;
  uint32_t prefetch = 0;  // 0 = unlimited
  uint32_t unacked = 0;
};

class AmqpQueue {
 public:
  explicit AmqpQueue(std::shared_ptr<MessageCacheBudget> cache_budget)
      : cache_(std::move(cache_budget)) {}

  std::string name;
  uint64_t id = 0;
  bool durable = false;
  bool exclusive = false;
  bool auto_delete = false;
  // x-queue-type=stream: the queue is the Kafka topic `name` (partition 0); messages stay
  // on ack, consumers choose where to start (MAPPING.md, "Stream queues").
  bool stream = false;
  amqp::FieldTable arguments;
  AmqpConnection* owner = nullptr;  // exclusive queues
  storage::PartitionLog* log = nullptr;
  amqp::QueueCursor cursor;
  std::vector<AmqpConsumer*> consumers;
  size_t next_consumer = 0;
  bool had_consumer = false;
  // Queue arguments applied (RabbitMQ's meaning): -1 = not set.
  int64_t message_ttl_ms = -1;                      // x-message-ttl
  int64_t max_length = -1;                          // x-max-length (ready messages)
  int64_t max_length_bytes = -1;                    // x-max-length-bytes (bodies of ready messages)
  bool reject_publish = false;                      // x-overflow reject-publish (else drop-head)
  std::optional<std::string> dead_letter_exchange;  // x-dead-letter-exchange
  std::optional<std::string> dead_letter_routing_key;
  // x-expires: deleted after this long unused (no consumers, no basic.get, no declare).
  int64_t expires_ms = -1;
  int64_t last_used_ms = 0;  // when it was last used (boot time after a restart)
  // Whether `m` has outlived its TTL (per queue or per message) at `now_ms`.
  bool Expired(const AmqpMessage& m, int64_t now_ms) const;
  // Reads the x- arguments above from `arguments`.
  void ApplyArguments();
  bool deleted = false;
  bool cursor_dirty = false;

  int64_t end() const { return log->log_end_offset(); }
  int64_t ready() const { return stream ? 0 : cursor.ReadyCount(end()); }
  // The message at `offset`: from memory, else read from the log. nullptr while it is not
  // yet readable (written); NotFound if the log no longer has it.
  absl::StatusOr<MessagePtr> Load(int64_t offset);
  // The records of the log from `offset` on (at least one if any is readable), as messages;
  // records written by Kafka clients get their key as routing key and their headers as
  // AMQP headers; stream queues add the x-stream-offset header.
  absl::StatusOr<std::vector<std::pair<int64_t, MessagePtr>>> ReadFrom(int64_t offset,
                                                                       uint32_t max_bytes);
  // Keeps `m` in memory unless the queue already holds `limit` bytes or the broker's cache
  // budget has no room (the log has it anyway).
  void Remember(int64_t offset, MessagePtr m, size_t limit);
  void Forget(int64_t offset) { cache_.Erase(offset); }
  void ForgetBelow(int64_t offset) { cache_.EraseBelow(offset); }
  size_t cached_bytes() const { return cache_.bytes(); }

  // Publisher confirms of persistent messages stored here and waiting for their fdatasync.
  // RabbitMQ confirms a persistent message once it is "persisted to disk or consumed on every
  // queue": one consumed here first (acked, rejected without requeue, or delivered to a
  // no-ack consumer) is confirmed for this queue then (MAPPING.md, "Confirms and durability").
  // The slot holds the confirm; whichever comes first, the sync or the consumption, fires it.
  using ConfirmSlot = std::shared_ptr<storage::AppendCallback>;
  // The callback to hand to the log for `slot`'s append.
  storage::AppendCallback SyncCallback(ConfirmSlot slot);
  // Once the append returned its offset (the slot may have fired already).
  void AwaitSync(int64_t offset, const ConfirmSlot& slot);
  // The message at `offset` left the queue for good: its confirm, if still waiting, fires.
  void Consumed(int64_t offset);
  size_t confirms_awaiting_sync() const { return awaiting_sync_->size(); }

 private:
  using AwaitingSync = absl::flat_hash_map<int64_t, std::weak_ptr<storage::AppendCallback>>;
  MessageCache cache_;
  // offset -> slot. Shared with the log's callbacks, which may outlive the queue.
  std::shared_ptr<AwaitingSync> awaiting_sync_ = std::make_shared<AwaitingSync>();
};
using QueuePtr = std::shared_ptr<AmqpQueue>;

struct AmqpBinding {
  std::string destination;
  bool to_exchange = false;
  std::string routing_key;
  amqp::FieldTable arguments;
  bool operator==(const AmqpBinding& o) const {
    return destination == o.destination && to_exchange == o.to_exchange &&
           routing_key == o.routing_key && arguments == o.arguments;
  }
};

struct AmqpExchange {
  std::string name;
  amqp::ExchangeType type = amqp::ExchangeType::kDirect;
  std::string type_name;
  bool durable = false;
  bool auto_delete = false;
  bool internal = false;
  bool builtin = false;  // "" and amq.*: cannot be deleted or redeclared differently
  amqp::FieldTable arguments;
  std::vector<AmqpBinding> bindings;  // this exchange is the source
  bool had_binding = false;
};

class AmqpBroker {
 public:
  // Loads amqp.meta and the cursors, opens the queues' logs, drops logs of queues that did
  // not survive (non-durable queues of the previous run).
  static absl::StatusOr<std::unique_ptr<AmqpBroker>> Create(Shard* shard, AmqpOptions options);
  ~AmqpBroker();

  absl::Status Listen();
  void StopListening() { listener_.reset(); }
  uint16_t port() const { return listener_ ? listener_->port() : 0; }
  const AmqpOptions& options() const { return options_; }
  Shard& shard() { return *shard_; }

  // --- vhost "/" ---
  AmqpExchange* FindExchange(const std::string& name);
  QueuePtr FindQueue(const std::string& name);
  absl::StatusOr<AmqpExchange*> DeclareExchange(const std::string& name, amqp::ExchangeType type,
                                                const std::string& type_name, bool durable,
                                                bool auto_delete, bool internal,
                                                const amqp::FieldTable& args);
  absl::Status DeleteExchange(const std::string& name);
  absl::StatusOr<QueuePtr> DeclareQueue(const std::string& name, bool durable, bool exclusive,
                                        bool auto_delete, const amqp::FieldTable& args,
                                        AmqpConnection* owner);
  // A stream queue: the Kafka topic `name` with one partition, created if missing.
  absl::StatusOr<QueuePtr> DeclareStream(const std::string& name, const amqp::FieldTable& args);
  // Where a stream consumer starts: x-stream-offset first / last / next / an offset / a
  // timestamp (seconds). InvalidArgument for anything else.
  absl::StatusOr<int64_t> StreamStart(const AmqpQueue& queue, const amqp::FieldValue* spec);
  // Deletes the queue: its log, bindings, consumers (cancelled with basic.cancel).
  absl::Status DeleteQueue(const QueuePtr& queue);
  // Adds a binding (idempotent). The caller checked both ends exist.
  absl::Status Bind(AmqpExchange& source, AmqpBinding binding);
  absl::Status Unbind(AmqpExchange& source, const AmqpBinding& binding);
  // The queues a message reaches (exchange-to-exchange bindings followed, each queue once).
  std::vector<QueuePtr> Route(const AmqpExchange& exchange, const std::string& routing_key,
                              const amqp::FieldTable* headers);
  std::string NewQueueName();
  // Checks the queue arguments RabbitMQ validates at declare time (x-expires,
  // x-max-length-bytes): 406 PRECONDITION_FAILED with RabbitMQ's text otherwise.
  static absl::Status ValidateQueueArguments(const std::string& queue,
                                             const amqp::FieldTable& args);
  // The queue was used (declared, basic.get, consumer gone): its x-expires timer restarts.
  static void Touch(AmqpQueue& queue);

  // Appends the message to the queue's log; `done` runs when it is stored (written, or
  // durable for persistent messages on durable queues).
  absl::Status Append(AmqpQueue& queue, const MessagePtr& message, storage::AppendCallback done);

  void AddConsumer(AmqpQueue& queue, AmqpConsumer* consumer);
  // Removes the consumer; auto-delete queues go when their last consumer leaves.
  void RemoveConsumer(const QueuePtr& queue, AmqpConsumer* consumer);
  // Marks a queue for a delivery pass at the end of the iteration.
  void Wake(AmqpQueue& queue) { wake_.insert(queue.id); }
  // Every change of a queue's cursor is reported here: a durable queue's goes into the
  // journal, and the queue gets a tick visit (its log start and message cache follow).
  void MarkCursorDirty(AmqpQueue& queue);
  // Connections with output to flush at the end of the iteration.
  void MarkOutput(AmqpConnection* conn) { output_.insert(conn); }
  void ConnectionOpened(AmqpConnection* conn) { connections_.insert(conn); }
  void ConnectionGone(AmqpConnection* conn);
  // Resource alarms (RabbitMQ's): while one is on, publishing connections are blocked.
  // Disk: free space below the limit. Memory: AccountedMemory() at or above the watermark.
  bool disk_alarm() const { return disk_alarm_; }
  bool memory_alarm() const { return memory_alarm_; }
  bool alarmed() const { return disk_alarm_ || memory_alarm_; }
  // Connection.Blocked's reason, as RabbitMQ words it: "low on memory", "low on disk",
  // "low on memory & disk".
  std::string AlarmReason() const;
  // What the memory alarm measures: message caches + every connection's MemoryBytes()
  // (uncommitted transactions, unsent output, unfinished content, input buffer).
  uint64_t AccountedMemory() const;
  const MessageCacheBudget& cache_budget() const { return *cache_budget_; }

  // Limits checked by the connections (530 NOT_ALLOWED with RabbitMQ's texts): the vhost's
  // and the user's connection limits at connection.open, the user's channel limit at
  // channel.open. Counted from the -ok on until ConnectionClosedForUser / ChannelClosedForUser.
  absl::Status AdmitConnection(const std::string& user);
  void ConnectionClosedForUser(const std::string& user);
  absl::Status AdmitChannel(const std::string& user);
  void ChannelClosedForUser(const std::string& user);
  // A connection stopped reading because its unsent output reached max_unsent_bytes; it is
  // asked to resume (MaybeResumeOutput) after each iteration's flush.
  void WatchOutput(AmqpConnection* conn) { output_paused_.insert(conn); }
  // Logs a limit being hit, at most once a second per `limit` (a client hitting one in a
  // loop must not flood the log); the others are counted in the next line.
  void LogLimit(std::string_view limit, std::string_view text);
  // Runs a delivery pass over one queue now.
  void Pump(const QueuePtr& queue);
  // Republishes a message leaving `queue` (reason: rejected, expired, maxlen) to the
  // queue's dead-letter exchange with an x-death header; nothing without one.
  void DeadLetter(AmqpQueue& queue, const MessagePtr& message, std::string_view reason);
  // Removes expired messages from the head of the queue (RabbitMQ expires at the head).
  void ExpireHead(AmqpQueue& queue);
  // x-max-length / x-max-length-bytes, before a message of `body_bytes` is appended:
  // kStore (room made: the head dropped or dead-lettered with drop-head), kReject
  // (reject-publish and full), kDrop (drop-head, but the message alone is over
  // x-max-length-bytes: it is dead-lettered instead of stored, as RabbitMQ drops it at once).
  enum class Room { kStore, kReject, kDrop };
  Room MakeRoom(AmqpQueue& queue, uint64_t body_bytes);
  // Byte accounting for x-max-length-bytes after a restart: the sizes of the ready messages.
  void CountReadyBytes(AmqpQueue& queue);
  // Drops (dead-letters with reason maxlen) the message at the head of the queue.
  void DropHead(AmqpQueue& queue);
  void PumpStream(const QueuePtr& queue);

  // Queues the next tick will visit (metrics: idle queues are not among them).
  size_t tick_queue_count() const { return tick_queues_.size(); }
  // Calls `f` for every queue (metrics).
  template <typename F>
  void ForEachQueue(F&& f) const {
    for (const auto& [name, q] : queues_) f(*q);
  }

  // Direct reply-to: a channel's reply consumer gets a routing key (kReplyToPrefix + token)
  // under which replies published to the default exchange reach it; unregistered when the
  // consumer is cancelled or the channel goes.
  std::string RegisterReplyConsumer(AmqpChannel* channel);
  void UnregisterReplyConsumer(const std::string& key) { reply_consumers_.erase(key); }
  AmqpChannel* FindReplyConsumer(const std::string& key) const;

 private:
  AmqpBroker(Shard* shard, AmqpOptions options);
  void DeclareBuiltins();
  absl::Status Load();
  // Writes the snapshot of every durable exchange, queue and binding (amqp.meta) and empties
  // the metadata journal. O(entities): Persist calls it when the journal has grown.
  absl::Status SaveMetadata();
  // Makes one change durable before it is answered: a journal record (body, or the error of
  // encoding it), or a new snapshot when the journal is due for one or broken.
  absl::Status Persist(uint8_t type, const absl::StatusOr<std::string>& body);
  // Persists the removal of a queue or exchange (type, body) with the removal of the stored
  // bindings to it, as one record.
  absl::Status PersistRemoval(uint8_t type, std::string body,
                              const std::vector<amqp::StoredBinding>& bindings);
  static amqp::StoredExchange Stored(const AmqpExchange& e);
  static amqp::StoredQueue Stored(const AmqpQueue& q);
  static amqp::StoredBinding Stored(const AmqpExchange& source, const AmqpBinding& b);
  // A binding is stored when both its ends are durable.
  bool DurableDestination(const AmqpBinding& b) const;
  absl::StatusOr<storage::PartitionLog*> OpenQueueLog(uint64_t id);
  absl::StatusOr<storage::PartitionLog*> OpenStreamLog(const std::string& name);
  // Appends a journal record for every durable queue whose cursor changed (see
  // src/amqp/cursor_journal.h); no sync.
  void WriteCursorJournal();
  // Replaces the journal with one full record per durable queue (durable when it returns).
  void CompactCursorJournal();
  void OnEndOfIteration();
  void OnTick();
  // Every disk_check_interval: free space of the data dir (statvfs) against the limit;
  // raises or clears the disk alarm.
  void CheckDisk();
  // Cursor journal writes failed / worked again (one log line per failing episode).
  // A journal sync queued by OnTick completed: on success the durable queues' log starts move
  // to the watermarks (queue id, offset) it covers.
  void CursorJournalSynced(const absl::Status& s,
                           const std::vector<std::pair<uint64_t, int64_t>>& advance);
  void JournalFailed(const absl::Status& s);
  void JournalWorked();
  uint64_t DiskFreeLimit();
  // Every memory_check_interval: AccountedMemory() against the watermark; raises or clears
  // the memory alarm.
  void CheckMemory();
  // Tells every connection that an alarm changed.
  void AlarmsChanged();
  // max-queues: 406 PRECONDITION_FAILED when the vhost holds max_queues queues.
  absl::Status CheckQueueLimit(const std::string& name);
  // x-expires: deletes queues unused for longer than their expiry.
  void ExpireQueues(int64_t now_ms);
  // The tick's work for one queue listed in tick_queues_ (TTL expiry at the head, the log start
  // and the cache following the acked watermark); false once it has nothing left to do.
  bool TickQueue(AmqpQueue& q);
  // A queue starts (or stops) being one whose x-expires lease the tick checks.
  void NoteExpiry(const AmqpQueue& q);
  // Removes every binding to the exchange or queue `name`, adding those the metadata holds
  // (durable source) to `stored` unless it is null; returns the auto-delete exchanges it left
  // without bindings (for MaybeAutoDeleteExchange, once the removal is persisted).
  std::vector<std::string> RemoveBindingsTo(const std::string& name, bool to_exchange,
                                            std::vector<amqp::StoredBinding>* stored);
  void MaybeAutoDeleteExchange(const std::string& name);
  std::string CursorPath(uint64_t id) const;  // cursor files before the journal (read once)
  std::string CursorJournalPath() const;
  std::string MetaJournalPath() const;
  std::string MetaPath() const;

  Shard* const shard_;
  const AmqpOptions options_;
  // Shared with every queue's cache (a queue may outlive the broker in a stray reference).
  const std::shared_ptr<MessageCacheBudget> cache_budget_;
  std::unique_ptr<net::Listener> listener_;
  std::map<std::string, AmqpExchange> exchanges_;
  std::map<std::string, QueuePtr> queues_;
  std::map<uint64_t, QueuePtr> queues_by_id_;
  uint64_t next_queue_id_ = 1;
  uint64_t name_counter_ = 0;
  int dead_letter_depth_ = 0;
  std::set<uint64_t> wake_;
  std::set<uint64_t> dirty_cursors_;  // durable queues whose cursor changed
  // Queues with work for the tick: a cursor changed since their log start last caught up, or
  // messages under a queue TTL. The tick visits these, not every queue (10,000 idle queues
  // cost nothing).
  absl::flat_hash_set<uint64_t> tick_queues_;
  absl::flat_hash_set<uint64_t> expiring_queues_;  // x-expires set: the lease is checked
  std::set<uint64_t> full_cursors_;  // ... whose next journal record must be a full one
  std::unique_ptr<amqp::MetadataJournal> meta_journal_;
  uint64_t meta_snapshot_bytes_ = 0;  // amqp.meta's size (when this process last wrote it)
  std::unique_ptr<amqp::CursorJournal> cursor_journal_;
  uint64_t journal_compacted_bytes_ = 0;  // journal size after the last compaction
  bool journal_failing_ = false;          // a write or sync failed (logged once)
  bool journal_rewrite_needed_ = false;   // a sync failed: rewrite the journal whole
  absl::flat_hash_set<AmqpConnection*> output_;
  // Live connections: closed by the destructor, whose OnClose must not outlive the broker.
  absl::flat_hash_set<AmqpConnection*> connections_;
  net::TimerId tick_timer_;
  net::TimerId disk_timer_;
  bool disk_alarm_ = false;
  net::TimerId memory_timer_;
  bool memory_alarm_ = false;
  absl::flat_hash_set<AmqpConnection*> output_paused_;
  int64_t open_connections_ = 0;  // past connection.open-ok
  std::map<std::string, int64_t> user_connections_;
  std::map<std::string, int64_t> user_channels_;
  struct LimitLog {
    absl::Time last = absl::InfinitePast();
    uint64_t suppressed = 0;
  };
  std::map<std::string, LimitLog, std::less<>> limit_logs_;
  std::set<uint64_t> consuming_;  // queues with consumers: pumped every iteration
  std::map<std::string, AmqpChannel*> reply_consumers_;  // direct reply-to key -> channel
  bool closed_ = false;
};

}  // namespace sluice::broker
