#include "src/amqp/amqp_broker.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "log/file_util.h"
#include "log/log_manager.h"
#include "log/logging.h"
#include "log/record_batch.h"
#include "net/amqp/reply_codes.h"
#include "src/amqp/amqp_connection.h"
#include "src/amqp/metadata_image.h"

namespace sluice::broker {

using amqp::AmqpError;
using amqp::ReplyCode;

namespace {

constexpr std::string_view kHeaderExchange = "amqp.exchange";
constexpr std::string_view kHeaderProperties = "amqp.properties";

storage::TopicPartition QueueLogName(uint64_t id) {
  return storage::TopicPartition{absl::StrCat(std::string(kQueueLogPrefix), id), 0};
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return storage::ErrnoStatus("open", path, errno);
  std::string data;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      int err = errno;
      close(fd);
      return storage::ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

absl::Status WriteString(const std::string& path, const std::string& data) {
  return storage::WriteFileAtomically(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

}  // namespace

uint64_t TotalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  uint64_t total = pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * page_size : 0;
  // A container's limit (cgroup v2) is what the kernel enforces, when lower.
  if (absl::StatusOr<std::string> max = ReadWholeFile("/sys/fs/cgroup/memory.max"); max.ok()) {
    uint64_t limit;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*max), &limit) && limit > 0 &&
        (total == 0 || limit < total)) {
      total = limit;
    }
  }
  return total;
}

uint64_t DefaultMemoryHighWatermarkBytes() {
  const uint64_t total = TotalMemoryBytes();
  if (total == 0) return UINT64_MAX;
  return static_cast<uint64_t>(static_cast<double>(total) * kDefaultMemoryHighWatermark);
}

int64_t DefaultMaxQueues() {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return -1;
  return std::max<int64_t>(1, static_cast<int64_t>(r.rlim_cur) / 2 / 3);
}

storage::LogConfig AmqpQueueLogConfig(const storage::LogConfig& defaults, uint64_t max_message) {
  storage::LogConfig c = defaults;
  c.retention_ms = -1;
  c.retention_bytes = -1;
  c.segment_bytes = 64u << 20;
  c.segment_ms = storage::kNever;
  c.max_batch_bytes =
      static_cast<uint32_t>(std::min<uint64_t>(max_message + (1 << 16), 0x7fffffff));
  // The log has no per-append "sync now": with flush.messages=1 every append is made durable
  // by the next group commit, which confirms of persistent messages need (MAPPING.md).
  c.flush_messages = 1;
  return c;
}

// The cursor journal is rewritten (one full record per queue) once it is this large and twice
// its size after the last rewrite.
constexpr uint64_t kCursorJournalCompactBytes = 8 << 20;
// The metadata journal is folded into the snapshot once it is larger than the snapshot and
// than this.
constexpr uint64_t kMetaJournalCompactBytes = 64 << 10;

bool IsAmqpQueueLog(const std::string& topic) { return topic.rfind(kQueueLogPrefix, 0) == 0; }

// ---------------------------------------------------------------------------------------------
// AmqpQueue

void AmqpQueue::ApplyArguments() {
  auto int_arg = [this](const char* name) -> int64_t {
    const amqp::FieldValue* v = arguments.Find(name);
    std::optional<int64_t> i = v ? v->AsInt64() : std::nullopt;
    return i && *i >= 0 ? *i : -1;
  };
  auto str_arg = [this](const char* name) -> std::optional<std::string> {
    const amqp::FieldValue* v = arguments.Find(name);
    if (v && v->AsString()) return *v->AsString();
    return std::nullopt;
  };
  message_ttl_ms = int_arg("x-message-ttl");
  max_length = int_arg("x-max-length");
  max_length_bytes = int_arg("x-max-length-bytes");
  reject_publish = str_arg("x-overflow").value_or("") == "reject-publish";
  dead_letter_exchange = str_arg("x-dead-letter-exchange");
  dead_letter_routing_key = str_arg("x-dead-letter-routing-key");
  expires_ms = int_arg("x-expires");
  if (expires_ms == 0) expires_ms = -1;  // refused at declare; never in a file we wrote
}

bool AmqpQueue::Expired(const AmqpMessage& m, int64_t now_ms) const {
  int64_t ttl = message_ttl_ms;
  if (m.expiration_ms >= 0 && (ttl < 0 || m.expiration_ms < ttl)) ttl = m.expiration_ms;
  return ttl >= 0 && now_ms - m.timestamp_ms >= ttl;
}

void AmqpQueue::Remember(int64_t offset, MessagePtr m, size_t limit) {
  const size_t bytes = m->bytes();
  cache_.Insert(offset, std::move(m), bytes, limit);
}

namespace {
// Fires the confirm in `slot` once, whoever calls.
void FireOnce(const AmqpQueue::ConfirmSlot& slot, absl::Status s, const storage::AppendResult& r) {
  if (!*slot) return;
  storage::AppendCallback confirm = std::move(*slot);
  *slot = nullptr;
  confirm(std::move(s), r);
}
}  // namespace

storage::AppendCallback AmqpQueue::SyncCallback(ConfirmSlot slot) {
  return [slot = std::move(slot), awaiting = std::weak_ptr<AwaitingSync>(awaiting_sync_)](
             absl::Status s, const storage::AppendResult& r) {
    if (auto map = awaiting.lock()) map->erase(r.base_offset);
    FireOnce(slot, std::move(s), r);
  };
}

void AmqpQueue::AwaitSync(int64_t offset, const ConfirmSlot& slot) {
  if (*slot) (*awaiting_sync_)[offset] = slot;
}

void AmqpQueue::Consumed(int64_t offset) {
  if (awaiting_sync_->empty()) return;
  auto it = awaiting_sync_->find(offset);
  if (it == awaiting_sync_->end()) return;
  ConfirmSlot slot = it->second.lock();
  awaiting_sync_->erase(it);
  if (slot) FireOnce(slot, absl::OkStatus(), storage::AppendResult{offset, offset});
}

absl::StatusOr<std::vector<std::pair<int64_t, MessagePtr>>> AmqpQueue::ReadFrom(
    int64_t offset, uint32_t max_bytes) {
  std::vector<std::pair<int64_t, MessagePtr>> out;
  if (offset >= log->high_watermark()) return out;
  if (offset < log->log_start_offset()) return absl::NotFoundError("below the log start");
  absl::StatusOr<storage::FileSlice> slice = log->Read(offset, max_bytes);
  if (!slice.ok()) return slice.status();
  if (slice->size == 0) return out;
  absl::StatusOr<std::vector<uint8_t>> bytes = storage::PartitionLog::ReadBytes(*slice);
  if (!bytes.ok()) return bytes.status();
  std::span<const uint8_t> rest(*bytes);
  std::vector<uint8_t> scratch;
  while (rest.size() >= storage::kBatchHeaderSize) {
    absl::StatusOr<storage::BatchHeader> h =
        storage::ParseBatchHeader(rest, log->config().max_batch_bytes);
    if (!h.ok() || h->size_bytes() > rest.size()) break;
    std::span<const uint8_t> batch = rest.subspan(0, h->size_bytes());
    rest = rest.subspan(h->size_bytes());
    if (h->attributes & 0x20) continue;  // control batch (Kafka transactions): no messages
    // Kafka producers may compress; the records then live in `scratch` until the next batch
    // (every field below is copied out before that).
    absl::StatusOr<std::vector<storage::RecordView>> records = storage::DecompressAndDecodeRecords(
        batch, storage::kDefaultMaxDecompressedRecordsBytes, &scratch);
    if (!records.ok()) {
      // Produce validation keeps such batches out; one here predates it or is damage. Kafka
      // consumers still get its bytes, AMQP consumers cannot: say so, loudly.
      storage::LogError(
          "amqp: queue '%s': batch at offsets %d..%d cannot be decoded (%s): its %d messages "
          "are NOT delivered to AMQP consumers",
          name, h->base_offset, h->last_offset(), records.status().message(), h->records_count);
      continue;
    }
    for (const storage::RecordView& r : *records) {
      if (r.offset < offset) continue;
      auto m = std::make_shared<AmqpMessage>();
      if (r.key) m->routing_key = std::string(*r.key);
      if (r.value) m->body = std::string(*r.value);
      bool have_properties = false;
      amqp::FieldTable kafka_headers;
      for (const storage::RecordHeaderView& hv : r.headers) {
        if (hv.key == kHeaderExchange) {
          if (hv.value) m->exchange = std::string(*hv.value);
        } else if (hv.key == kHeaderProperties) {
          if (hv.value) m->properties = std::string(*hv.value);
          have_properties = true;
        } else if (!have_properties && hv.value) {
          kafka_headers.Append(std::string(hv.key), std::string_view(*hv.value));
        }
      }
      if (stream) {
        // RabbitMQ tells stream consumers each message's offset in x-stream-offset.
        amqp::BasicProperties props;
        if (have_properties) {
          absl::StatusOr<amqp::BasicProperties> p = amqp::BasicProperties::Decode(m->properties);
          if (p.ok()) props = *std::move(p);
        } else if (!kafka_headers.empty()) {
          props.headers = std::move(kafka_headers);
        }
        if (!props.headers) props.headers.emplace();
        props.headers->Set("x-stream-offset", r.offset);
        m->properties.clear();
        (void)props.Encode(&m->properties);
      } else if (!have_properties && !kafka_headers.empty()) {
        amqp::BasicProperties props;
        props.headers = std::move(kafka_headers);
        (void)props.Encode(&m->properties);
      }
      m->timestamp_ms = r.timestamp;
      if (have_properties && !stream) {
        absl::StatusOr<amqp::BasicProperties> p = amqp::BasicProperties::Decode(m->properties);
        if (p.ok()) {
          m->persistent = p->delivery_mode.value_or(1) == 2;
          int64_t e;
          if (p->expiration && absl::SimpleAtoi(*p->expiration, &e) && e >= 0) {
            m->expiration_ms = e;
          }
        }
      }
      out.emplace_back(r.offset, std::move(m));
    }
  }
  return out;
}

absl::StatusOr<MessagePtr> AmqpQueue::Load(int64_t offset) {
  if (MessagePtr cached = cache_.Find(offset)) return cached;
  auto read = ReadFrom(offset, 256 * 1024);
  if (!read.ok()) return read.status();
  if (read->empty()) {
    if (offset >= log->high_watermark()) return MessagePtr();
    return absl::DataLossError(absl::StrCat("offset ", offset, " not readable"));
  }
  MessagePtr found;
  for (auto& [o, m] : *read) {
    if (o == offset) {
      found = m;
    } else if (o > offset && o >= cursor.next()) {
      // Read ahead: the next deliveries come from this same read.
      Remember(o, m, 8 << 20);
    }
  }
  if (!found) return absl::DataLossError(absl::StrCat("offset ", offset, " not in its batch"));
  return found;
}

// ---------------------------------------------------------------------------------------------
// AmqpBroker: set-up

AmqpBroker::AmqpBroker(Shard* shard, AmqpOptions options)
    : shard_(shard),
      options_(std::move(options)),
      // Caches alone must never raise the memory alarm: at most half the watermark (where
      // RabbitMQ starts paging queues out).
      cache_budget_(std::make_shared<MessageCacheBudget>(static_cast<size_t>(
          std::min(options_.message_cache_bytes, options_.memory_high_watermark_bytes / 2)))) {}

absl::StatusOr<std::unique_ptr<AmqpBroker>> AmqpBroker::Create(Shard* shard, AmqpOptions options) {
  std::unique_ptr<AmqpBroker> b(new AmqpBroker(shard, std::move(options)));
  b->DeclareBuiltins();
  if (absl::Status s = b->Load(); !s.ok()) return s;
  AmqpBroker* self = b.get();
  shard->AddEndOfIterationHook([self] { self->OnEndOfIteration(); });
  shard->AddCloseHook([self] {
    self->CompactCursorJournal();
    self->closed_ = true;
  });
  b->tick_timer_ = shard->reactor().RunAfter(absl::Milliseconds(200), [self] { self->OnTick(); });
  b->CheckDisk();
  b->CheckMemory();
  return b;
}

AmqpBroker::~AmqpBroker() {
  closed_ = true;
  listener_.reset();
  shard_->reactor().Cancel(tick_timer_);
  shard_->reactor().Cancel(disk_timer_);
  shard_->reactor().Cancel(memory_timer_);
  // Their OnClose (channels requeue, exclusive queues go) runs now, while the broker lives.
  std::vector<AmqpConnection*> live(connections_.begin(), connections_.end());
  for (AmqpConnection* c : live) c->CloseNow();
}

std::string AmqpBroker::MetaPath() const {
  return absl::StrCat(shard_->config().data_dir, "/amqp.meta");
}
std::string AmqpBroker::MetaJournalPath() const {
  return absl::StrCat(shard_->config().data_dir, "/amqp.meta.journal");
}
std::string AmqpBroker::CursorJournalPath() const {
  return absl::StrCat(shard_->config().data_dir, "/amqp-cursors/journal");
}

std::string AmqpBroker::CursorPath(uint64_t id) const {
  return absl::StrCat(shard_->config().data_dir, "/amqp-cursors/", id);
}

void AmqpBroker::DeclareBuiltins() {
  auto add = [this](const std::string& name, amqp::ExchangeType type) {
    AmqpExchange& e = exchanges_[name];
    e.name = name;
    e.type = type;
    e.type_name = std::string(amqp::ExchangeTypeName(type));
    e.durable = true;
    e.builtin = true;
  };
  add("", amqp::ExchangeType::kDirect);
  add("amq.direct", amqp::ExchangeType::kDirect);
  add("amq.fanout", amqp::ExchangeType::kFanout);
  add("amq.topic", amqp::ExchangeType::kTopic);
  add("amq.headers", amqp::ExchangeType::kHeaders);
  add("amq.match", amqp::ExchangeType::kHeaders);
}

absl::StatusOr<storage::PartitionLog*> AmqpBroker::OpenQueueLog(uint64_t id) {
  storage::TopicPartition tp = QueueLogName(id);
  if (storage::PartitionLog* log = shard_->logs().GetLog(tp)) return log;
  return shard_->logs().CreateLog(
      tp, AmqpQueueLogConfig(shard_->topics().defaults(), options_.max_message_bytes));
}

absl::Status AmqpBroker::Load() {
  const std::string path = MetaPath();
  std::set<std::string> keep;
  // Cursor records of durable queues, replayed per queue below in file order.
  if (absl::Status s =
          storage::CreateDirIfMissing(absl::StrCat(shard_->config().data_dir, "/amqp-cursors"));
      !s.ok()) {
    return s;
  }
  std::vector<amqp::CursorJournal::Record> journal;
  auto opened = amqp::CursorJournal::Open(CursorJournalPath(), &journal);
  if (!opened.ok()) return opened.status();
  cursor_journal_ = std::move(*opened);
  std::map<uint64_t, std::vector<const amqp::CursorJournal::Record*>> journal_of;
  for (const auto& rec : journal) journal_of[rec.queue_id].push_back(&rec);
  // The snapshot, then the changes since (both durable: each change was synced before it
  // was answered).
  amqp::MetadataImage image;
  if (storage::FileExists(path)) {
    absl::StatusOr<std::string> data = ReadWholeFile(path);
    if (!data.ok()) return data.status();
    absl::StatusOr<amqp::MetadataImage> parsed = amqp::MetadataImage::ParseSnapshot(*data);
    if (!parsed.ok())
      return absl::DataLossError(absl::StrCat(path, ": ", parsed.status().message()));
    image = *std::move(parsed);
    meta_snapshot_bytes_ = data->size();
  }
  std::vector<amqp::MetadataJournal::Record> changes;
  auto meta_journal = amqp::MetadataJournal::Open(MetaJournalPath(), &changes);
  if (!meta_journal.ok()) return meta_journal.status();
  meta_journal_ = std::move(*meta_journal);
  for (const amqp::MetadataJournal::Record& rec : changes) {
    // A record that passed its checksum and does not parse is not a torn write: stop rather
    // than guess what the durable topology is.
    if (absl::Status s = image.Apply(rec.type, rec.body); !s.ok()) {
      return absl::DataLossError(absl::StrCat(MetaJournalPath(), ": ", s.message()));
    }
  }
  next_queue_id_ = image.next_queue_id;
  for (auto& [name, stored] : image.exchanges) {
    auto type = amqp::ParseExchangeType(stored.type_name);
    if (!type) return absl::DataLossError(absl::StrCat(path, ": exchange type ", stored.type_name));
    if (exchanges_.contains(name)) continue;  // built in
    AmqpExchange& e = exchanges_[name];
    e.name = name;
    e.type = *type;
    e.type_name = stored.type_name;
    e.durable = true;
    e.auto_delete = stored.auto_delete;
    e.internal = stored.internal;
    e.arguments = std::move(stored.arguments);
  }
  for (auto& [name, stored] : image.queues) {
    auto q = std::make_shared<AmqpQueue>(cache_budget_);
    q->id = stored.id;
    q->name = name;
    q->arguments = std::move(stored.arguments);
    q->durable = true;
    q->auto_delete = stored.auto_delete;
    q->stream = stored.stream;
    q->ApplyArguments();
    // RabbitMQ restarts the x-expires lease of a durable queue when the broker boots.
    q->last_used_ms = absl::ToUnixMillis(absl::Now());
    absl::StatusOr<storage::PartitionLog*> log =
        q->stream ? OpenStreamLog(q->name) : OpenQueueLog(q->id);
    if (!log.ok()) return log.status();
    q->log = *log;
    if (storage::FileExists(CursorPath(q->id))) {
      absl::StatusOr<std::string> cdata = ReadWholeFile(CursorPath(q->id));
      if (!cdata.ok()) return cdata.status();
      absl::StatusOr<amqp::QueueCursor> c = amqp::QueueCursor::Decode(*cdata);
      if (!c.ok()) {
        storage::LogError("amqp: queue '%s': cursor unreadable (%s); delivering from the log start",
                          q->name, c.status().message());
      } else {
        q->cursor = *std::move(c);
      }
    }
    for (const amqp::CursorJournal::Record* rec : journal_of[q->id]) {
      if (rec->type == amqp::CursorJournal::Type::kFull) {
        q->cursor = rec->full;
      } else if (rec->type == amqp::CursorJournal::Type::kDeleted) {
        q->cursor = amqp::QueueCursor();  // not expected for a live queue: from the start
      } else if (absl::Status d = q->cursor.ApplyDelta(rec->delta); !d.ok()) {
        storage::LogError("amqp: queue '%s': cursor journal: %s; later records ignored", q->name,
                          d.message());
        break;
      }
    }
    q->cursor.EnableDeltas();
    // Transient messages past the last flush may be gone after a crash.
    q->cursor.SkipTo(q->log->log_start_offset());
    if (q->cursor.next() > q->log->log_end_offset()) {
      q->cursor = amqp::QueueCursor(q->log->log_end_offset());
      q->cursor.EnableDeltas();
    }
    if (q->max_length_bytes >= 0 && !q->stream) CountReadyBytes(*q);
    keep.insert(QueueLogName(q->id).topic);
    if (!q->stream) tick_queues_.insert(q->id);              // its log start may lag its cursor
    if (q->cursor.HasDelta()) dirty_cursors_.insert(q->id);  // SkipTo above moved it
    NoteExpiry(*q);
    queues_by_id_[q->id] = q;
    queues_[q->name] = std::move(q);
  }
  for (auto& [key, stored] : image.bindings) {
    auto it = exchanges_.find(stored.source);
    if (it == exchanges_.end()) continue;
    AmqpBinding b;
    b.to_exchange = stored.to_exchange;
    b.destination = std::move(stored.destination);
    b.routing_key = std::move(stored.routing_key);
    b.arguments = std::move(stored.arguments);
    it->second.bindings.push_back(std::move(b));
    it->second.had_binding = true;
  }
  // Logs of queues that did not survive: non-durable queues of the previous run.
  for (const storage::TopicPartition& tp : shard_->logs().ListLogs()) {
    if (IsAmqpQueueLog(tp.topic) && !keep.contains(tp.topic)) {
      (void)shard_->logs().DeleteLog(tp);
    }
  }
  // One full record per queue; the cursor files of earlier versions are then superseded.
  CompactCursorJournal();
  if (auto names = storage::ListDir(absl::StrCat(shard_->config().data_dir, "/amqp-cursors"));
      names.ok()) {
    // Everything but the journal: `<queue id>` files and their `.tmp` leftovers.
    for (const std::string& name : *names) {
      if (name == "journal") continue;
      (void)storage::RemoveFile(absl::StrCat(shard_->config().data_dir, "/amqp-cursors/", name));
    }
  }
  storage::LogInfo("amqp: %d exchanges, %d queues restored", exchanges_.size(), queues_.size());
  return absl::OkStatus();
}

amqp::StoredExchange AmqpBroker::Stored(const AmqpExchange& e) {
  return amqp::StoredExchange{e.name, e.type_name, e.auto_delete, e.internal, e.arguments};
}

amqp::StoredQueue AmqpBroker::Stored(const AmqpQueue& q) {
  return amqp::StoredQueue{q.id, q.name, q.auto_delete, q.stream, q.arguments};
}

amqp::StoredBinding AmqpBroker::Stored(const AmqpExchange& source, const AmqpBinding& b) {
  return amqp::StoredBinding{source.name, b.to_exchange, b.destination, b.routing_key, b.arguments};
}

bool AmqpBroker::DurableDestination(const AmqpBinding& b) const {
  if (b.to_exchange) {
    auto it = exchanges_.find(b.destination);
    return it != exchanges_.end() && it->second.durable;
  }
  auto it = queues_.find(b.destination);
  return it != queues_.end() && it->second->durable;
}

absl::Status AmqpBroker::SaveMetadata() {
  amqp::MetadataImage image;
  image.next_queue_id = next_queue_id_;
  for (auto& [name, e] : exchanges_) {
    if (e.durable && !e.builtin) image.exchanges[name] = Stored(e);
  }
  for (auto& [name, q] : queues_) {
    if (q->durable) image.queues[name] = Stored(*q);
  }
  for (auto& [name, e] : exchanges_) {
    if (!e.durable) continue;
    for (const AmqpBinding& b : e.bindings) {
      if (DurableDestination(b)) image.AddBinding(Stored(e, b));
    }
  }
  absl::StatusOr<std::string> out = image.EncodeSnapshot();
  absl::Status s = out.ok() ? WriteString(MetaPath(), *out) : out.status();
  if (!s.ok()) {
    storage::LogError("amqp: cannot write %s: %s", MetaPath(), s.message());
    return s;
  }
  meta_snapshot_bytes_ = out->size();
  // The snapshot holds every change: the journal starts over. Should emptying it fail, its
  // records replay onto this snapshot without changing it (metadata_image.h), and nothing is
  // appended behind them until an empty journal is durable.
  if (meta_journal_) {
    if (absl::Status r = meta_journal_->Reset(); !r.ok()) {
      storage::LogError("amqp: metadata journal: %s; the next change rewrites %s", r.message(),
                        MetaPath());
    }
  }
  return absl::OkStatus();
}

absl::Status AmqpBroker::Persist(uint8_t type, const absl::StatusOr<std::string>& body) {
  if (!body.ok()) return body.status();
  // The journal is rewritten into the snapshot once it is larger than the snapshot (at least
  // kMetaJournalCompactBytes): each change costs O(1) amortized, a restart replays little.
  if (meta_journal_ && !meta_journal_->broken() &&
      meta_journal_->size() < std::max(kMetaJournalCompactBytes, meta_snapshot_bytes_)) {
    absl::Status s = meta_journal_->AppendDurably(type, *body);
    if (s.ok()) return s;
    storage::LogError("amqp: metadata journal: %s; rewriting %s instead", s.message(), MetaPath());
  }
  return SaveMetadata();
}

void AmqpBroker::MarkCursorDirty(AmqpQueue& queue) {
  if (queue.durable) dirty_cursors_.insert(queue.id);
  if (!queue.stream) tick_queues_.insert(queue.id);
}

void AmqpBroker::NoteExpiry(const AmqpQueue& q) {
  if (q.expires_ms > 0 && !q.stream && !q.deleted) {
    expiring_queues_.insert(q.id);
  } else {
    expiring_queues_.erase(q.id);
  }
}

void AmqpBroker::WriteCursorJournal() {
  if (dirty_cursors_.empty() || !cursor_journal_) return;
  std::string records;
  for (uint64_t id : dirty_cursors_) {
    auto it = queues_by_id_.find(id);
    if (it == queues_by_id_.end() || it->second->deleted || !it->second->durable) continue;
    amqp::QueueCursor& cursor = it->second->cursor;
    const bool full = full_cursors_.erase(id) > 0;
    if (!full && !cursor.HasDelta()) continue;
    amqp::QueueCursor::Delta delta = cursor.TakeDelta();
    if (full || delta.overflow) {
      amqp::CursorJournal::EncodeFull(id, cursor, &records);
    } else {
      amqp::CursorJournal::EncodeDelta(id, delta, &records);
    }
  }
  if (absl::Status s = cursor_journal_->Append(records); !s.ok()) {
    // The lost records only make offsets look outstanding: redelivered, not lost. The next
    // records start over from full ones.
    JournalFailed(s);
    full_cursors_.insert(dirty_cursors_.begin(), dirty_cursors_.end());
  } else if (!records.empty()) {
    JournalWorked();
  }
  dirty_cursors_.clear();
}

void AmqpBroker::CursorJournalSynced(const absl::Status& s,
                                     const std::vector<std::pair<uint64_t, int64_t>>& advance) {
  if (!s.ok()) {
    // After a failed fdatasync the kernel may have dropped what it could not write, and a
    // later sync would not tell: the journal is rewritten whole instead.
    JournalFailed(s);
    journal_rewrite_needed_ = true;
    return;
  }
  for (const auto& [id, w] : advance) {
    auto it = queues_by_id_.find(id);
    if (it == queues_by_id_.end() || it->second->deleted) continue;
    (void)it->second->log->AdvanceLogStart(w);
  }
}

void AmqpBroker::JournalFailed(const absl::Status& s) {
  // On a full disk every iteration fails until there is room: one line until it works again.
  if (!journal_failing_) {
    storage::LogError(
        "amqp: cursor journal: %s (retried; until it works, a restart redelivers the acks "
        "since)",
        s.message());
  }
  journal_failing_ = true;
}

void AmqpBroker::JournalWorked() {
  if (journal_failing_) storage::LogInfo("amqp: cursor journal written again");
  journal_failing_ = false;
}

void AmqpBroker::CompactCursorJournal() {
  if (!cursor_journal_) return;
  std::string records;
  for (auto& [id, q] : queues_by_id_) {
    if (!q->durable || q->deleted) continue;
    (void)q->cursor.TakeDelta();
    amqp::CursorJournal::EncodeFull(id, q->cursor, &records);
  }
  if (absl::Status s = cursor_journal_->Rewrite(records); !s.ok()) {
    JournalFailed(s);
    for (auto& [id, q] : queues_by_id_) {
      if (q->durable) full_cursors_.insert(id);
    }
    return;
  }
  JournalWorked();
  journal_rewrite_needed_ = false;
  full_cursors_.clear();
  dirty_cursors_.clear();
  journal_compacted_bytes_ = cursor_journal_->size();
}

absl::Status AmqpBroker::Listen() {
  net::ListenerOptions lo;
  lo.host = options_.host;
  lo.port = options_.port;
  // Codec limits reject oversized frames first; this is the last line.
  lo.connection.max_input_bytes = options_.frame_max + 1024;
  options_.listener_limits.ApplyTo(lo);
  auto listener = net::Listener::Create(
      shard_->reactor(), lo,
      [this](net::Connection& conn) -> std::unique_ptr<net::ConnectionHandler> {
        return std::make_unique<AmqpConnection>(this, conn);
      });
  if (!listener.ok()) return listener.status();
  listener_ = std::move(*listener);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Entities

AmqpExchange* AmqpBroker::FindExchange(const std::string& name) {
  auto it = exchanges_.find(name);
  return it == exchanges_.end() ? nullptr : &it->second;
}

QueuePtr AmqpBroker::FindQueue(const std::string& name) {
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second;
}

absl::StatusOr<AmqpExchange*> AmqpBroker::DeclareExchange(
    const std::string& name, amqp::ExchangeType type, const std::string& type_name, bool durable,
    bool auto_delete, bool internal, const amqp::FieldTable& args) {
  if (AmqpExchange* e = FindExchange(name)) {
    if (e->type != type || e->durable != durable || e->auto_delete != auto_delete ||
        e->internal != internal) {
      return AmqpError(ReplyCode::kPreconditionFailed,
                       absl::StrFormat("inequivalent arg 'type' or flags for exchange '%s' in "
                                       "vhost '/': received '%s' but current is '%s'",
                                       name, type_name, e->type_name));
    }
    return e;
  }
  AmqpExchange& e = exchanges_[name];
  e.name = name;
  e.type = type;
  e.type_name = type_name;
  e.durable = durable;
  e.auto_delete = auto_delete;
  e.internal = internal;
  e.arguments = args;
  if (durable) {
    if (absl::Status s =
            Persist(amqp::MetadataImage::kExchangeSet, amqp::MetadataImage::ExchangeSet(Stored(e)));
        !s.ok()) {
      exchanges_.erase(name);
      return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
    }
  }
  return &e;
}

std::vector<std::string> AmqpBroker::RemoveBindingsTo(const std::string& name, bool to_exchange,
                                                      std::vector<amqp::StoredBinding>* stored) {
  std::vector<std::string> emptied;
  for (auto& entry : exchanges_) {
    AmqpExchange& e = entry.second;
    size_t before = e.bindings.size();
    std::erase_if(e.bindings, [&](const AmqpBinding& b) {
      if (b.to_exchange != to_exchange || b.destination != name) return false;
      if (stored != nullptr && e.durable) stored->push_back(Stored(e, b));
      return true;
    });
    if (before != e.bindings.size() && e.bindings.empty() && e.auto_delete)
      emptied.push_back(e.name);
  }
  return emptied;
}

absl::Status AmqpBroker::PersistRemoval(uint8_t type, std::string body,
                                        const std::vector<amqp::StoredBinding>& bindings) {
  // One record, so that a crash keeps all of the removal or none of it: the stored bindings to
  // the entity first (journal records never cascade), then the entity.
  std::vector<std::pair<uint8_t, std::string>> records;
  for (const amqp::StoredBinding& b : bindings) {
    absl::StatusOr<std::string> r = amqp::MetadataImage::BindingRemove(b);
    if (!r.ok()) return r.status();
    records.emplace_back(amqp::MetadataImage::kBindingRemove, *std::move(r));
  }
  records.emplace_back(type, std::move(body));
  if (records.size() == 1) return Persist(type, records[0].second);
  return Persist(amqp::MetadataImage::kBatch, amqp::MetadataImage::Batch(records));
}

void AmqpBroker::MaybeAutoDeleteExchange(const std::string& name) {
  AmqpExchange* e = FindExchange(name);
  if (e == nullptr || !e->auto_delete || !e->had_binding || !e->bindings.empty()) return;
  (void)DeleteExchange(name);
}

absl::Status AmqpBroker::DeleteExchange(const std::string& name) {
  auto it = exchanges_.find(name);
  if (it == exchanges_.end()) return absl::OkStatus();
  bool durable = it->second.durable;
  exchanges_.erase(it);  // its own bindings go with it (and with its removal record)
  std::vector<amqp::StoredBinding> stored;
  std::vector<std::string> emptied =
      RemoveBindingsTo(name, /*to_exchange=*/true, durable ? &stored : nullptr);
  absl::Status s;
  if (durable) {
    s = PersistRemoval(amqp::MetadataImage::kExchangeRemove,
                       amqp::MetadataImage::ExchangeRemove(name), stored);
  }
  for (const std::string& n : emptied) MaybeAutoDeleteExchange(n);
  return s;
}

namespace {

// RabbitMQ's name of a field's type, as its error texts show it.
const char* ArgTypeName(const amqp::FieldValue& v) {
  switch (v.tag()) {
    case 'S':
      return "longstr";
    case 'x':
      return "binary";
    case 't':
      return "bool";
    case 'f':
      return "float";
    case 'd':
      return "double";
    case 'D':
      return "decimal";
    case 'T':
      return "timestamp";
    case 'A':
      return "array";
    case 'F':
      return "table";
    case 'V':
      return "void";
    default:
      return "unknown";
  }
}

}  // namespace

absl::Status AmqpBroker::ValidateQueueArguments(const std::string& queue,
                                                const amqp::FieldTable& args) {
  auto invalid = [&](const char* arg, const std::string& why) {
    return AmqpError(
        ReplyCode::kPreconditionFailed,
        absl::StrFormat("invalid arg '%s' for queue '%s' in vhost '/': %s", arg, queue, why));
  };
  // x-expires: a positive integer (RabbitMQ: value_zero / value_negative / unacceptable_type).
  // x-max-length-bytes: a non-negative integer.
  for (const char* arg : {"x-expires", "x-max-length-bytes"}) {
    const amqp::FieldValue* v = args.Find(arg);
    if (v == nullptr) continue;
    std::optional<int64_t> i = v->AsInt64();
    if (!i) return invalid(arg, absl::StrCat("{unacceptable_type,", ArgTypeName(*v), "}"));
    if (*i < 0) return invalid(arg, absl::StrCat("{value_negative,", *i, "}"));
    if (*i == 0 && std::string_view(arg) == "x-expires") {
      return invalid(arg, "{value_zero,0}");
    }
  }
  return absl::OkStatus();
}

void AmqpBroker::Touch(AmqpQueue& queue) { queue.last_used_ms = absl::ToUnixMillis(absl::Now()); }

void AmqpBroker::ExpireQueues(int64_t now_ms) {
  std::vector<QueuePtr> expired;
  for (uint64_t id : expiring_queues_) {
    auto it = queues_by_id_.find(id);
    if (it == queues_by_id_.end()) continue;
    const QueuePtr& q = it->second;
    if (q->consumers.empty() && now_ms - q->last_used_ms >= q->expires_ms) expired.push_back(q);
  }
  for (const QueuePtr& q : expired) {
    storage::LogInfo("amqp: queue '%s' expired (x-expires %d ms unused)", q->name, q->expires_ms);
    if (absl::Status s = DeleteQueue(q); !s.ok()) {
      storage::LogError("amqp: deleting expired queue '%s': %s", q->name, s.message());
    }
  }
}

std::string AmqpBroker::NewQueueName() {
  // RabbitMQ's form: amq.gen- and 22 characters of base64url.
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint64_t seed = static_cast<uint64_t>(absl::GetCurrentTimeNanos()) ^ (++name_counter_ << 40);
  std::string name = "amq.gen-";
  for (int i = 0; i < 22; ++i) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    name.push_back(kAlphabet[(seed >> 58) & 63]);
  }
  return name;
}

absl::StatusOr<QueuePtr> AmqpBroker::DeclareQueue(const std::string& name, bool durable,
                                                  bool exclusive, bool auto_delete,
                                                  const amqp::FieldTable& args,
                                                  AmqpConnection* owner) {
  if (absl::Status s = CheckQueueLimit(name); !s.ok()) return s;
  auto q = std::make_shared<AmqpQueue>(cache_budget_);
  q->name = name;
  q->id = next_queue_id_++;
  q->durable = durable;
  q->exclusive = exclusive;
  q->auto_delete = auto_delete;
  q->arguments = args;
  q->ApplyArguments();
  q->last_used_ms = absl::ToUnixMillis(absl::Now());
  q->owner = exclusive ? owner : nullptr;
  // Exclusive queues die with their connection: never durable in effect (RabbitMQ 3.x keeps
  // the flag but deletes them at restart; so do we, by not persisting them).
  if (exclusive) q->durable = false;
  absl::StatusOr<storage::PartitionLog*> log = OpenQueueLog(q->id);
  if (!log.ok()) return AmqpError(ReplyCode::kInternalError, std::string(log.status().message()));
  q->log = *log;
  if (!q->durable) {
    // Nothing of a transient queue survives a restart: no per-append sync.
    storage::LogConfig c = q->log->config();
    c.flush_messages = storage::kNever;
    q->log->UpdateConfig(c);
  }
  q->cursor = amqp::QueueCursor(q->log->log_end_offset());
  if (q->max_length_bytes >= 0) q->cursor.EnableBytes();
  if (q->durable) {
    q->cursor.EnableDeltas();
    full_cursors_.insert(q->id);
    dirty_cursors_.insert(q->id);
  }
  queues_[name] = q;
  queues_by_id_[q->id] = q;
  NoteExpiry(*q);
  if (q->durable) {
    if (absl::Status s = Persist(amqp::MetadataImage::kQueueSet,
                                 amqp::MetadataImage::QueueSet(Stored(*q), next_queue_id_));
        !s.ok()) {
      (void)DeleteQueue(q);
      return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
    }
  } else {
    // next_queue_id_ moved: persist it lazily with the next durable change; ids of transient
    // queues are never reused within a run and their logs are dropped at start-up.
  }
  return q;
}

absl::StatusOr<storage::PartitionLog*> AmqpBroker::OpenStreamLog(const std::string& name) {
  TopicRegistry& topics = shard_->topics();
  const TopicInfo* t = topics.Find(name);
  if (t == nullptr) {
    absl::StatusOr<const TopicInfo*> created = topics.Create(name, 1, {});
    if (!created.ok()) return created.status();
    t = *created;
  }
  storage::TopicPartition tp{name, 0};
  if (storage::PartitionLog* log = shard_->logs().GetLog(tp)) return log;
  return shard_->logs().CreateLog(tp, topics.ConfigFor(*t));
}

absl::StatusOr<QueuePtr> AmqpBroker::DeclareStream(const std::string& name,
                                                   const amqp::FieldTable& args) {
  if (!IsValidTopicName(name)) {
    return AmqpError(ReplyCode::kPreconditionFailed,
                     absl::StrFormat("stream queue name '%s' is not a valid Kafka topic name "
                                     "([a-zA-Z0-9._-], at most 249)",
                                     name));
  }
  // A stream queue is the Kafka topic of its name: the internal topic holds every group's
  // committed offsets, and deleting the queue would delete its partition 0.
  if (IsInternalTopic(name)) {
    return AmqpError(ReplyCode::kAccessRefused,
                     absl::StrFormat("queue name '%s' is Kafka's internal topic", name));
  }
  if (absl::Status s = CheckQueueLimit(name); !s.ok()) return s;
  absl::StatusOr<storage::PartitionLog*> log = OpenStreamLog(name);
  if (!log.ok()) return AmqpError(ReplyCode::kInternalError, std::string(log.status().message()));
  auto q = std::make_shared<AmqpQueue>(cache_budget_);
  q->name = name;
  q->id = next_queue_id_++;
  q->durable = true;
  q->stream = true;
  q->arguments = args;
  q->log = *log;
  q->cursor = amqp::QueueCursor(q->log->log_end_offset());
  queues_[name] = q;
  queues_by_id_[q->id] = q;
  if (absl::Status s = Persist(amqp::MetadataImage::kQueueSet,
                               amqp::MetadataImage::QueueSet(Stored(*q), next_queue_id_));
      !s.ok()) {
    queues_.erase(name);
    queues_by_id_.erase(q->id);
    return AmqpError(ReplyCode::kInternalError, std::string(s.message()));
  }
  return q;
}

absl::StatusOr<int64_t> AmqpBroker::StreamStart(const AmqpQueue& q, const amqp::FieldValue* spec) {
  const int64_t first = q.log->log_start_offset();
  const int64_t next = q.log->high_watermark();
  if (spec == nullptr) return next;  // RabbitMQ's default: next
  if (const std::string* s = spec->AsString()) {
    if (*s == "first") return first;
    if (*s == "last") return std::max(first, next - 1);  // the last message (RabbitMQ: chunk)
    if (*s == "next") return next;
    return absl::InvalidArgumentError(absl::StrCat("x-stream-offset '", *s, "'"));
  }
  if (const amqp::Timestamp* t = spec->get_if<amqp::Timestamp>()) {
    absl::StatusOr<int64_t> o = q.log->OffsetForTime(static_cast<int64_t>(t->seconds) * 1000);
    return o.ok() ? std::max(*o, first) : next;
  }
  if (std::optional<int64_t> o = spec->AsInt64()) return std::clamp(*o, first, next);
  return absl::InvalidArgumentError("x-stream-offset of an unsupported type");
}

absl::Status AmqpBroker::DeleteQueue(const QueuePtr& queue) {
  if (queue->deleted) return absl::OkStatus();
  queue->deleted = true;
  // Consumers are cancelled by the server (consumer_cancel_notify).
  std::vector<AmqpConsumer*> consumers = queue->consumers;
  queue->consumers.clear();
  consuming_.erase(queue->id);
  for (AmqpConsumer* c : consumers) c->channel->CancelByServer(c->tag);
  queues_.erase(queue->name);
  queues_by_id_.erase(queue->id);
  wake_.erase(queue->id);
  dirty_cursors_.erase(queue->id);
  full_cursors_.erase(queue->id);
  tick_queues_.erase(queue->id);
  expiring_queues_.erase(queue->id);
  if (queue->durable && cursor_journal_) {
    std::string record;
    amqp::CursorJournal::EncodeDeleted(queue->id, &record);
    if (absl::Status s = cursor_journal_->Append(record); !s.ok()) {
      storage::LogError("amqp: cursor journal: %s", s.message());
    }
  }
  std::vector<amqp::StoredBinding> stored;
  std::vector<std::string> emptied =
      RemoveBindingsTo(queue->name, /*to_exchange=*/false, queue->durable ? &stored : nullptr);
  absl::Status s;
  if (queue->durable) {
    s = PersistRemoval(amqp::MetadataImage::kQueueRemove,
                       amqp::MetadataImage::QueueRemove(queue->id, queue->name), stored);
  }
  for (const std::string& n : emptied) MaybeAutoDeleteExchange(n);
  queue->ForgetBelow(INT64_MAX);
  if (queue->stream) {
    // The stream is the Kafka topic: deleting the queue deletes the topic (RabbitMQ deletes
    // a stream's data with it).
    if (absl::Status d = shard_->topics().Delete(queue->name); !d.ok()) {
      storage::LogError("amqp: deleting topic of stream '%s': %s", queue->name, d.message());
    }
    (void)shard_->logs().DeleteLog(storage::TopicPartition{queue->name, 0});
  } else if (absl::Status d = shard_->logs().DeleteLog(QueueLogName(queue->id)); !d.ok()) {
    storage::LogError("amqp: deleting the log of queue '%s': %s", queue->name, d.message());
  }
  queue->log = nullptr;
  return s;
}

absl::Status AmqpBroker::Bind(AmqpExchange& source, AmqpBinding binding) {
  for (const AmqpBinding& b : source.bindings) {
    if (b == binding) return absl::OkStatus();
  }
  source.bindings.push_back(std::move(binding));
  source.had_binding = true;
  const AmqpBinding& added = source.bindings.back();
  if (source.durable && DurableDestination(added)) {
    return Persist(amqp::MetadataImage::kBindingSet,
                   amqp::MetadataImage::BindingSet(Stored(source, added)));
  }
  return absl::OkStatus();
}

absl::Status AmqpBroker::Unbind(AmqpExchange& source, const AmqpBinding& binding) {
  size_t before = source.bindings.size();
  std::erase(source.bindings, binding);
  if (before == source.bindings.size()) return absl::OkStatus();
  absl::Status s;
  if (source.durable) {
    s = Persist(amqp::MetadataImage::kBindingRemove,
                amqp::MetadataImage::BindingRemove(Stored(source, binding)));
  }
  MaybeAutoDeleteExchange(source.name);
  return s;
}

std::vector<QueuePtr> AmqpBroker::Route(const AmqpExchange& exchange,
                                        const std::string& routing_key,
                                        const amqp::FieldTable* headers) {
  std::vector<QueuePtr> out;
  std::set<uint64_t> seen_queues;
  if (exchange.name.empty()) {
    if (QueuePtr q = FindQueue(routing_key)) out.push_back(q);
    return out;
  }
  std::set<std::string> seen_exchanges{exchange.name};
  std::deque<const AmqpExchange*> todo{&exchange};
  while (!todo.empty()) {
    const AmqpExchange* e = todo.front();
    todo.pop_front();
    for (const AmqpBinding& b : e->bindings) {
      if (!amqp::BindingMatches(e->type, b.routing_key, b.arguments, routing_key, headers))
        continue;
      if (b.to_exchange) {
        if (seen_exchanges.insert(b.destination).second) {
          if (const AmqpExchange* d = FindExchange(b.destination)) todo.push_back(d);
        }
      } else if (QueuePtr q = FindQueue(b.destination)) {
        if (seen_queues.insert(q->id).second) out.push_back(std::move(q));
      }
    }
  }
  return out;
}

absl::Status AmqpBroker::Append(AmqpQueue& queue, const MessagePtr& message,
                                storage::AppendCallback done) {
  storage::RecordBatchBuilder builder(0, absl::ToUnixMillis(absl::Now()));
  std::vector<storage::RecordBatchBuilder::Header> headers = {
      {std::string(kHeaderExchange), message->exchange},
      {std::string(kHeaderProperties), message->properties}};
  if (queue.stream && !message->kafka_headers.empty()) {
    // Kafka readers of a stream see the AMQP headers as record headers.
    headers.insert(headers.end(), message->kafka_headers.begin(), message->kafka_headers.end());
  }
  if (!queue.stream && (queue.max_length >= 0 || queue.max_length_bytes >= 0)) {
    switch (MakeRoom(queue, message->body.size())) {
      case Room::kStore:
        break;
      case Room::kReject:
        return absl::ResourceExhaustedError(
            absl::StrCat("queue '", queue.name, "' is full (reject-publish)"));
      case Room::kDrop:
        // Taken and dropped at once (drop-head): stored nowhere, yet confirmed.
        DeadLetter(queue, message, "maxlen");
        if (done) done(absl::OkStatus(), storage::AppendResult{});
        return absl::OkStatus();
    }
  }
  builder.Add(message->routing_key, message->body, headers);
  std::vector<uint8_t> batch = builder.Build();
  // Streams confirm when written, as RabbitMQ's (which confirm on replication, not fsync).
  storage::AckLevel level = message->persistent && queue.durable && !queue.stream
                                ? storage::AckLevel::kDurable
                                : storage::AckLevel::kWritten;
  // The early confirm (AmqpQueue::AwaitSync) costs an entry per message, worth it only where
  // a consumer may take the message before its sync: a queue with consumers whose delivery
  // frontier is near the end. A growing backlog skips it (it cost amqp-backlog-2m ~10% of
  // its publish rate).
  constexpr int64_t kEarlyConfirmWindow = 4096;
  AmqpQueue::ConfirmSlot confirm;
  if (level == storage::AckLevel::kDurable && done && !queue.consumers.empty() &&
      queue.end() - queue.cursor.next() <= kEarlyConfirmWindow) {
    confirm = std::make_shared<storage::AppendCallback>(std::move(done));
    done = queue.SyncCallback(confirm);
  }
  absl::StatusOr<storage::AppendResult> r = queue.log->Append(batch, level, std::move(done));
  if (!r.ok()) return r.status();
  if (confirm) queue.AwaitSync(r->base_offset, confirm);
  if (!queue.stream) {
    queue.cursor.NoteBytes(r->base_offset, message->body.size());
    queue.Remember(r->base_offset, message, options_.queue_cache_bytes);
    Wake(queue);
    if (queue.message_ttl_ms >= 0) tick_queues_.insert(queue.id);  // its head expires
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Delivery

void AmqpBroker::AddConsumer(AmqpQueue& queue, AmqpConsumer* consumer) {
  queue.consumers.push_back(consumer);
  queue.had_consumer = true;
  consuming_.insert(queue.id);
  Wake(queue);
}

void AmqpBroker::RemoveConsumer(const QueuePtr& queue, AmqpConsumer* consumer) {
  std::erase(queue->consumers, consumer);
  if (queue->consumers.empty()) {
    consuming_.erase(queue->id);
    Touch(*queue);  // the x-expires lease starts when the last consumer goes
    if (queue->auto_delete && queue->had_consumer && !queue->deleted) (void)DeleteQueue(queue);
  }
}

void AmqpBroker::Pump(const QueuePtr& qp) {
  AmqpQueue& q = *qp;
  if (q.deleted || q.consumers.empty()) return;
  if (q.stream) return PumpStream(qp);
  bool progressed = false;
  while (!q.consumers.empty()) {
    std::optional<amqp::QueueCursor::Taken> peek = q.cursor.Peek(q.end());
    if (!peek) break;
    AmqpConsumer* chosen = nullptr;
    const size_t n = q.consumers.size();
    for (size_t i = 0; i < n; ++i) {
      AmqpConsumer* c = q.consumers[(q.next_consumer + i) % n];
      if (c->channel->CanTake(*c)) {
        chosen = c;
        q.next_consumer = (q.next_consumer + i + 1) % n;
        break;
      }
    }
    if (chosen == nullptr) {
      break;
    }
    absl::StatusOr<MessagePtr> m = q.Load(peek->offset);
    if (m.ok() && *m == nullptr) {
      break;  // not written yet: next iteration
    }
    if (m.ok() && q.Expired(**m, absl::ToUnixMillis(absl::Now()))) {
      q.cursor.Take(q.end(), /*track=*/false);
      q.Forget(peek->offset);
      DeadLetter(q, *m, "expired");
      progressed = true;
      continue;
    }
    std::optional<amqp::QueueCursor::Taken> t = q.cursor.Take(q.end(), !chosen->no_ack);
    progressed = true;
    if (!m.ok()) {
      // Gone from the log (cannot happen for unsettled offsets unless the log failed).
      storage::LogError("amqp: queue '%s': message at offset %d unreadable: %s", q.name,
                        peek->offset, m.status().message());
      if (!chosen->no_ack) q.cursor.Settle(t->offset);
      continue;
    }
    if (chosen->no_ack) {
      q.Forget(t->offset);
      q.Consumed(t->offset);
    }
    chosen->channel->Deliver(*chosen, qp, t->offset, t->redelivered, *m);
  }
  if (progressed) MarkCursorDirty(q);
}

void AmqpBroker::PumpStream(const QueuePtr& qp) {
  AmqpQueue& q = *qp;
  // Every consumer reads the whole stream from its own offset, within its prefetch.
  for (AmqpConsumer* c : std::vector<AmqpConsumer*>(q.consumers)) {
    while (c->channel->CanTake(*c)) {
      if (c->stream_buffer.empty()) {
        if (c->stream_offset < q.log->log_start_offset()) {
          c->stream_offset = q.log->log_start_offset();  // retention moved past it
        }
        if (c->stream_offset >= q.log->high_watermark()) break;
        auto read = q.ReadFrom(c->stream_offset, 64 * 1024);
        if (!read.ok() || read->empty()) {
          if (!read.ok()) {
            storage::LogError("amqp: stream '%s' at offset %d: %s", q.name, c->stream_offset,
                              read.status().message());
          }
          ++c->stream_offset;  // never stuck on an unreadable position
          continue;
        }
        c->stream_buffer.assign(read->begin(), read->end());
      }
      auto [offset, m] = std::move(c->stream_buffer.front());
      c->stream_buffer.pop_front();
      c->stream_offset = offset + 1;
      c->channel->Deliver(*c, qp, offset, /*redelivered=*/false, m);
    }
  }
}

void AmqpBroker::ExpireHead(AmqpQueue& q) {
  const int64_t now = absl::ToUnixMillis(absl::Now());
  bool changed = false;
  while (std::optional<amqp::QueueCursor::Taken> peek = q.cursor.Peek(q.end())) {
    absl::StatusOr<MessagePtr> m = q.Load(peek->offset);
    if (!m.ok() || *m == nullptr || !q.Expired(**m, now)) break;
    q.cursor.Take(q.end(), /*track=*/false);
    q.Forget(peek->offset);
    DeadLetter(q, *m, "expired");
    changed = true;
  }
  if (changed) MarkCursorDirty(q);
}

AmqpBroker::Room AmqpBroker::MakeRoom(AmqpQueue& q, uint64_t body_bytes) {
  const bool bytes_limited = q.max_length_bytes >= 0;
  const uint64_t max_bytes = bytes_limited ? static_cast<uint64_t>(q.max_length_bytes) : 0;
  // RabbitMQ: reject-publish refuses a message that would take the queue over a limit;
  // drop-head stores it and drops the oldest while over.
  auto full = [&] {
    return (q.max_length >= 0 && q.ready() >= q.max_length) ||
           (bytes_limited && q.ready() > 0 && q.cursor.ReadyBytes() + body_bytes > max_bytes);
  };
  if (q.reject_publish) {
    return full() || (bytes_limited && body_bytes > max_bytes) ? Room::kReject : Room::kStore;
  }
  if (bytes_limited && body_bytes > max_bytes) {
    // Alone over the limit: the whole queue and then the message itself would be dropped.
    while (q.ready() > 0 && q.cursor.Peek(q.end())) DropHead(q);
    return Room::kDrop;
  }
  while (full()) {
    if (!q.cursor.Peek(q.end())) return q.max_length > 0 ? Room::kStore : Room::kReject;
    DropHead(q);
  }
  return Room::kStore;
}

void AmqpBroker::DropHead(AmqpQueue& q) {
  std::optional<amqp::QueueCursor::Taken> peek = q.cursor.Peek(q.end());
  if (!peek) return;
  absl::StatusOr<MessagePtr> m = q.Load(peek->offset);
  q.cursor.Take(q.end(), /*track=*/false);
  q.Forget(peek->offset);
  MarkCursorDirty(q);
  if (m.ok() && *m != nullptr) DeadLetter(q, *m, "maxlen");
}

void AmqpBroker::CountReadyBytes(AmqpQueue& q) {
  q.cursor.EnableBytes();
  int64_t offset = q.cursor.Watermark();
  const int64_t end = q.log->high_watermark();
  while (offset < end) {
    auto read = q.ReadFrom(offset, 1 << 20);
    if (!read.ok() || read->empty()) {
      storage::LogError("amqp: queue '%s': cannot count ready bytes from offset %d", q.name,
                        offset);
      return;
    }
    for (auto& [o, m] : *read) q.cursor.NoteBytes(o, m->body.size());
    offset = read->back().first + 1;
  }
}

void AmqpBroker::DeadLetter(AmqpQueue& q, const MessagePtr& m, std::string_view reason) {
  if (!q.dead_letter_exchange) return;
  AmqpExchange* dlx = FindExchange(*q.dead_letter_exchange);
  // A dead-letter cycle (e.g. a full queue dead-lettering into itself) ends here.
  if (dlx == nullptr || dead_letter_depth_ >= 4) return;
  absl::StatusOr<amqp::BasicProperties> props = amqp::BasicProperties::Decode(m->properties);
  if (!props.ok()) return;
  // RabbitMQ's x-death: one entry per (queue, reason), newest first, with a count.
  if (!props->headers) props->headers.emplace();
  amqp::FieldTable& headers = *props->headers;
  amqp::FieldArray deaths;
  if (const amqp::FieldValue* v = headers.Find("x-death")) {
    if (const amqp::FieldArray* a = v->get_if<amqp::FieldArray>()) deaths = *a;
  }
  int64_t count = 1;
  for (auto it = deaths.begin(); it != deaths.end(); ++it) {
    const amqp::FieldTable* t = it->get_if<amqp::FieldTable>();
    if (!t) continue;
    const amqp::FieldValue* tq = t->Find("queue");
    const amqp::FieldValue* tr = t->Find("reason");
    if (tq && tq->AsString() && *tq->AsString() == q.name && tr && tr->AsString() &&
        *tr->AsString() == reason) {
      const amqp::FieldValue* c = t->Find("count");
      count = (c && c->AsInt64() ? *c->AsInt64() : 0) + 1;
      deaths.erase(it);
      break;
    }
  }
  amqp::FieldTable death{
      {"count", int64_t{count}},
      {"reason", std::string_view(reason)},
      {"queue", std::string_view(q.name)},
      {"time", amqp::Timestamp{static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now()))}},
      {"exchange", std::string_view(m->exchange)},
      {"routing-keys", amqp::FieldArray{std::string_view(m->routing_key)}}};
  if (m->expiration_ms >= 0) {
    death.Append("original-expiration", std::string_view(absl::StrCat(m->expiration_ms)));
  }
  deaths.insert(deaths.begin(), amqp::FieldValue(std::move(death)));
  headers.Set("x-death", std::move(deaths));
  if (!headers.Find("x-first-death-reason")) {
    headers.Set("x-first-death-exchange", std::string_view(m->exchange));
    headers.Set("x-first-death-queue", std::string_view(q.name));
    headers.Set("x-first-death-reason", reason);
  }
  props->expiration.reset();  // a dead-lettered message does not expire again
  auto copy = std::make_shared<AmqpMessage>(*m);
  copy->exchange = *q.dead_letter_exchange;
  copy->routing_key = q.dead_letter_routing_key.value_or(m->routing_key);
  copy->expiration_ms = -1;
  copy->timestamp_ms = absl::ToUnixMillis(absl::Now());
  copy->properties.clear();
  if (!props->Encode(&copy->properties).ok()) return;
  ++dead_letter_depth_;
  MessagePtr shared = std::move(copy);
  for (const QueuePtr& target : Route(*dlx, shared->routing_key, &*props->headers)) {
    if (absl::Status s = Append(*target, shared, nullptr);
        !s.ok() && !absl::IsResourceExhausted(s) && !absl::IsUnavailable(s)) {
      storage::LogError("amqp: dead-lettering into '%s': %s", target->name, s.message());
    }
  }
  --dead_letter_depth_;
}

std::string AmqpBroker::RegisterReplyConsumer(AmqpChannel* channel) {
  std::string key;
  do {
    // 22 random base64url characters (as queue names) and a counter: unique, not guessable.
    key = absl::StrCat(std::string(kReplyToPrefix), NewQueueName().substr(8), ".", name_counter_);
  } while (reply_consumers_.contains(key));
  reply_consumers_[key] = channel;
  return key;
}

AmqpChannel* AmqpBroker::FindReplyConsumer(const std::string& key) const {
  auto it = reply_consumers_.find(key);
  return it == reply_consumers_.end() ? nullptr : it->second;
}

void AmqpBroker::ConnectionGone(AmqpConnection* conn) {
  output_.erase(conn);
  output_paused_.erase(conn);
  connections_.erase(conn);
  std::vector<QueuePtr> owned;
  for (auto& [name, q] : queues_) {
    if (q->owner == conn) owned.push_back(q);
  }
  for (const QueuePtr& q : owned) (void)DeleteQueue(q);
}

void AmqpBroker::OnEndOfIteration() {
  if (closed_) return;
  std::set<uint64_t> ids = std::move(wake_);
  wake_.clear();
  ids.insert(consuming_.begin(), consuming_.end());
  for (uint64_t id : ids) {
    auto it = queues_by_id_.find(id);
    if (it != queues_by_id_.end()) Pump(it->second);
  }
  // Acks and deliveries of this iteration reach the journal before any reply goes out: an ack
  // followed by a synchronous method whose answer the client saw survives kill -9.
  WriteCursorJournal();
  // Flushing may queue more (coalesced confirms mark their connection again): take a copy.
  std::vector<AmqpConnection*> conns(output_.begin(), output_.end());
  output_.clear();
  for (AmqpConnection* c : conns) c->Flush();
  output_.clear();
  if (!output_paused_.empty()) {
    std::vector<AmqpConnection*> paused(output_paused_.begin(), output_paused_.end());
    for (AmqpConnection* c : paused) {
      if (c->MaybeResumeOutput()) output_paused_.erase(c);
    }
  }
}

uint64_t AmqpBroker::DiskFreeLimit() {
  const std::string path = absl::StrCat(shard_->config().data_dir, "/disk-free-limit-bytes");
  if (!storage::FileExists(path)) return options_.disk_free_limit_bytes;
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  uint64_t limit;
  if (!text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &limit)) {
    return options_.disk_free_limit_bytes;  // unreadable or being written: the flag's value
  }
  return limit;
}

void AmqpBroker::CheckDisk() {
  if (closed_) return;
  const uint64_t limit = DiskFreeLimit();
  struct statvfs v;
  if (statvfs(shard_->config().data_dir.c_str(), &v) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
    const bool low = free_bytes < limit;
    if (low != disk_alarm_) {
      disk_alarm_ = low;
      if (low) {
        storage::LogWarning("amqp: disk alarm: %d bytes free in %s, limit %d: blocking publishers",
                            free_bytes, shard_->config().data_dir, limit);
      } else {
        storage::LogInfo("amqp: disk alarm cleared: %d bytes free, limit %d", free_bytes, limit);
      }
      AlarmsChanged();
    }
  }
  disk_timer_ = shard_->reactor().RunAfter(options_.disk_check_interval, [this] { CheckDisk(); });
}

void AmqpBroker::AlarmsChanged() {
  std::vector<AmqpConnection*> conns(connections_.begin(), connections_.end());
  for (AmqpConnection* c : conns) c->OnAlarmsChanged();
}

std::string AmqpBroker::AlarmReason() const {
  if (memory_alarm_ && disk_alarm_) return "low on memory & disk";
  return memory_alarm_ ? "low on memory" : "low on disk";
}

uint64_t AmqpBroker::AccountedMemory() const {
  uint64_t total = cache_budget_->used();
  for (const AmqpConnection* c : connections_) total += c->MemoryBytes();
  return total;
}

void AmqpBroker::CheckMemory() {
  if (closed_) return;
  if (alarmed()) {
    std::vector<AmqpConnection*> conns(connections_.begin(), connections_.end());
    for (AmqpConnection* c : conns) c->CloseIfPeerGoneWhileBlocked();
  }
  const uint64_t used = AccountedMemory();
  const uint64_t limit = options_.memory_high_watermark_bytes;
  const bool high = used >= limit;
  if (high != memory_alarm_) {
    memory_alarm_ = high;
    if (high) {
      storage::LogWarning(
          "amqp: memory alarm: %d bytes in use (message caches %d), vm_memory_high_watermark "
          "%d: blocking publishers",
          used, cache_budget_->used(), limit);
    } else {
      storage::LogInfo("amqp: memory alarm cleared: %d bytes in use, vm_memory_high_watermark %d",
                       used, limit);
    }
    AlarmsChanged();
  }
  memory_timer_ =
      shard_->reactor().RunAfter(options_.memory_check_interval, [this] { CheckMemory(); });
}

void AmqpBroker::LogLimit(std::string_view limit, std::string_view text) {
  LimitLog& log = limit_logs_[std::string(limit)];
  const absl::Time now = absl::Now();
  if (now - log.last < absl::Seconds(1)) {
    ++log.suppressed;
    return;
  }
  if (log.suppressed > 0) {
    storage::LogWarning("amqp: %s: %s (and %d more in the last second)", limit, text,
                        log.suppressed);
  } else {
    storage::LogWarning("amqp: %s: %s", limit, text);
  }
  log.last = now;
  log.suppressed = 0;
}

absl::Status AmqpBroker::CheckQueueLimit(const std::string& name) {
  if (options_.max_queues < 0 || static_cast<int64_t>(queues_.size()) < options_.max_queues) {
    return absl::OkStatus();
  }
  std::string text =
      absl::StrFormat("cannot declare queue '%s': queue limit in vhost '/' (%d) is reached", name,
                      options_.max_queues);
  LogLimit("max-queues", text);
  return AmqpError(ReplyCode::kPreconditionFailed, text);
}

absl::Status AmqpBroker::AdmitConnection(const std::string& user) {
  if (options_.max_connections >= 0 && open_connections_ >= options_.max_connections) {
    std::string text = absl::StrFormat(
        "access to vhost '/' refused for user '%s': connection limit (%d) is reached", user,
        options_.max_connections);
    LogLimit("max-connections", text);
    return AmqpError(ReplyCode::kNotAllowed, text);
  }
  int64_t& mine = user_connections_[user];
  if (options_.user_max_connections >= 0 && mine >= options_.user_max_connections) {
    std::string text =
        absl::StrFormat("connection refused for user '%s': user connection limit (%d) is reached",
                        user, options_.user_max_connections);
    LogLimit("user max-connections", text);
    if (mine == 0) user_connections_.erase(user);
    return AmqpError(ReplyCode::kNotAllowed, text);
  }
  ++mine;
  ++open_connections_;
  return absl::OkStatus();
}

void AmqpBroker::ConnectionClosedForUser(const std::string& user) {
  --open_connections_;
  auto it = user_connections_.find(user);
  if (it != user_connections_.end() && --it->second <= 0) user_connections_.erase(it);
}

absl::Status AmqpBroker::AdmitChannel(const std::string& user) {
  int64_t& mine = user_channels_[user];
  if (options_.user_max_channels >= 0 && mine >= options_.user_max_channels) {
    std::string text = absl::StrFormat(
        "number of channels opened for user '%s' has reached the maximum allowed user limit "
        "of %d",
        user, options_.user_max_channels);
    LogLimit("user max-channels", text);
    if (mine == 0) user_channels_.erase(user);
    return AmqpError(ReplyCode::kNotAllowed, text);
  }
  ++mine;
  return absl::OkStatus();
}

void AmqpBroker::ChannelClosedForUser(const std::string& user) {
  auto it = user_channels_.find(user);
  if (it != user_channels_.end() && --it->second <= 0) user_channels_.erase(it);
}

void AmqpBroker::OnTick() {
  if (closed_) return;
  WriteCursorJournal();
  if (cursor_journal_ && !cursor_journal_->sync_in_flight()) {
    // A durable queue's log start may pass an offset only once the cursor that settled it is
    // durable: the watermarks are taken now, covered by this sync, and applied when it is
    // done (a restart never finds offsets it still needs cut). A durable queue stays in
    // tick_queues_ until its log start has caught up.
    std::vector<std::pair<uint64_t, int64_t>> advance;
    if (!journal_failing_ && dirty_cursors_.empty()) {
      for (uint64_t id : tick_queues_) {
        auto it = queues_by_id_.find(id);
        if (it == queues_by_id_.end()) continue;
        AmqpQueue& q = *it->second;
        if (q.stream || !q.durable) continue;
        const int64_t w = std::min(q.cursor.Watermark(), q.log->high_watermark());
        if (w > q.log->log_start_offset()) advance.emplace_back(id, w);
      }
    }
    cursor_journal_->SyncThrough(
        shard_->logs().io(),
        [this, advance = std::move(advance)](absl::Status s) { CursorJournalSynced(s, advance); });
  }
  if (cursor_journal_) {
    if (journal_rewrite_needed_ ||
        cursor_journal_->size() >
            std::max<uint64_t>(kCursorJournalCompactBytes, 2 * journal_compacted_bytes_)) {
      CompactCursorJournal();
    }
  }
  ExpireQueues(absl::ToUnixMillis(absl::Now()));
  // A snapshot: expiry dead-letters into other queues, which may list them meanwhile. A queue
  // leaves the list right after its own visit found nothing left, so a later listing stays.
  const std::vector<uint64_t> listed(tick_queues_.begin(), tick_queues_.end());
  for (uint64_t id : listed) {
    auto it = queues_by_id_.find(id);
    if (it == queues_by_id_.end() || !TickQueue(*it->second)) tick_queues_.erase(id);
  }
  tick_timer_ = shard_->reactor().RunAfter(absl::Milliseconds(200), [this] { OnTick(); });
}

bool AmqpBroker::TickQueue(AmqpQueue& q) {
  if (q.stream || q.deleted) return false;  // a stream's retention is the topic's
  if (q.message_ttl_ms >= 0) ExpireHead(q);
  // Disk follows the queue depth: segments wholly below the acked watermark go.
  const int64_t w = std::min(q.cursor.Watermark(), q.log->high_watermark());
  if (w > q.log->log_start_offset()) {
    // A durable queue's log start follows its journal sync (OnTick).
    if (!q.durable) (void)q.log->AdvanceLogStart(w);
    q.ForgetBelow(w);
  }
  // The watermark itself, not w: acked messages the high watermark has not reached yet
  // still have their log start to catch up once it does.
  const bool behind = q.cursor.Watermark() > q.log->log_start_offset();
  return behind || (q.message_ttl_ms >= 0 && q.ready() > 0);
}

}  // namespace sluice::broker
