#include "src/amqp/metadata_image.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "log/crc32c.h"
#include "net/amqp/wire.h"

namespace sluice::amqp {

namespace {

constexpr std::string_view kMagic = "SLAM";
constexpr uint8_t kVersion = 1;

absl::Status PutExchange(const StoredExchange& e, std::string* out) {
  WireWriter w(out);
  w.ShortStr(e.name);
  w.ShortStr(e.type_name);
  w.Octet((e.auto_delete ? 1 : 0) | (e.internal ? 2 : 0));
  if (absl::Status s = w.Finish("exchange"); !s.ok()) return s;
  return EncodeFieldTable(e.arguments, out);
}

StoredExchange TakeExchange(WireReader& r) {
  StoredExchange e;
  e.name = r.ShortStr();
  e.type_name = r.ShortStr();
  const uint8_t flags = r.Octet();
  e.arguments = r.Table();
  e.auto_delete = flags & 1;
  e.internal = flags & 2;
  return e;
}

absl::Status PutQueue(const StoredQueue& q, std::string* out) {
  WireWriter w(out);
  w.LongLong(q.id);
  w.ShortStr(q.name);
  w.Octet((q.auto_delete ? 1 : 0) | (q.stream ? 2 : 0));
  if (absl::Status s = w.Finish("queue"); !s.ok()) return s;
  return EncodeFieldTable(q.arguments, out);
}

StoredQueue TakeQueue(WireReader& r) {
  StoredQueue q;
  q.id = r.LongLong();
  q.name = r.ShortStr();
  const uint8_t flags = r.Octet();
  q.arguments = r.Table();
  q.auto_delete = flags & 1;
  q.stream = flags & 2;
  return q;
}

// Everything of a binding but its source (the key within the source's range).
absl::Status PutBindingRest(const StoredBinding& b, std::string* out) {
  WireWriter w(out);
  w.Octet(b.to_exchange ? 1 : 0);
  w.ShortStr(b.destination);
  w.ShortStr(b.routing_key);
  if (absl::Status s = w.Finish("binding"); !s.ok()) return s;
  return EncodeFieldTable(b.arguments, out);
}

absl::Status PutBinding(const StoredBinding& b, std::string* out) {
  WireWriter w(out);
  w.ShortStr(b.source);
  if (absl::Status s = w.Finish("binding"); !s.ok()) return s;
  return PutBindingRest(b, out);
}

StoredBinding TakeBinding(WireReader& r) {
  StoredBinding b;
  b.source = r.ShortStr();
  b.to_exchange = r.Octet() != 0;
  b.destination = r.ShortStr();
  b.routing_key = r.ShortStr();
  b.arguments = r.Table();
  return b;
}

absl::StatusOr<std::pair<std::string, std::string>> KeyOf(const StoredBinding& b) {
  std::string rest;
  if (absl::Status s = PutBindingRest(b, &rest); !s.ok()) return s;
  return std::make_pair(b.source, std::move(rest));
}

absl::Status Malformed(std::string_view what) {
  return absl::DataLossError(absl::StrCat("AMQP metadata: malformed ", std::string(what)));
}

}  // namespace

absl::StatusOr<MetadataImage> MetadataImage::ParseSnapshot(std::string_view all) {
  if (all.size() < 9 || all.substr(0, 4) != kMagic) {
    return absl::DataLossError("not an AMQP metadata file");
  }
  std::string_view body = all.substr(0, all.size() - 4);
  WireReader crc(all.substr(all.size() - 4));
  if (crc.Long() != storage::Crc32c(0, body.data(), body.size())) {
    return absl::DataLossError("checksum mismatch");
  }
  WireReader r(body.substr(4));
  if (r.Octet() != kVersion) return absl::DataLossError("unknown version");
  MetadataImage image;
  image.next_queue_id = r.LongLong();
  uint32_t n = r.Long();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StoredExchange e = TakeExchange(r);
    if (r.ok()) image.exchanges[e.name] = std::move(e);
  }
  n = r.Long();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StoredQueue q = TakeQueue(r);
    if (r.ok()) image.queues[q.name] = std::move(q);
  }
  n = r.Long();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StoredBinding b = TakeBinding(r);
    if (r.ok()) image.AddBinding(std::move(b));
  }
  if (!r.Finish("amqp.meta").ok()) return Malformed("snapshot");
  return image;
}

absl::StatusOr<std::string> MetadataImage::EncodeSnapshot() const {
  std::string out(kMagic);
  WireWriter w(&out);
  w.Octet(kVersion);
  w.LongLong(next_queue_id);
  w.Long(static_cast<uint32_t>(exchanges.size()));
  for (const auto& [name, e] : exchanges) {
    if (absl::Status s = PutExchange(e, &out); !s.ok()) return s;
  }
  w.Long(static_cast<uint32_t>(queues.size()));
  for (const auto& [name, q] : queues) {
    if (absl::Status s = PutQueue(q, &out); !s.ok()) return s;
  }
  w.Long(static_cast<uint32_t>(bindings.size()));
  for (const auto& [key, b] : bindings) {
    if (absl::Status s = PutBinding(b, &out); !s.ok()) return s;
  }
  w.Long(storage::Crc32c(0, out.data(), out.size()));
  return out;
}

absl::StatusOr<std::string> MetadataImage::ExchangeSet(const StoredExchange& e) {
  std::string out;
  if (absl::Status s = PutExchange(e, &out); !s.ok()) return s;
  return out;
}

std::string MetadataImage::ExchangeRemove(std::string_view name) {
  std::string out;
  WireWriter(&out).ShortStr(name);
  return out;
}

absl::StatusOr<std::string> MetadataImage::QueueSet(const StoredQueue& q, uint64_t next_id) {
  std::string out;
  WireWriter(&out).LongLong(next_id);
  if (absl::Status s = PutQueue(q, &out); !s.ok()) return s;
  return out;
}

std::string MetadataImage::QueueRemove(uint64_t id, std::string_view name) {
  std::string out;
  WireWriter w(&out);
  w.LongLong(id);
  w.ShortStr(name);
  return out;
}

absl::StatusOr<std::string> MetadataImage::BindingSet(const StoredBinding& b) {
  std::string out;
  if (absl::Status s = PutBinding(b, &out); !s.ok()) return s;
  return out;
}

absl::StatusOr<std::string> MetadataImage::BindingRemove(const StoredBinding& b) {
  return BindingSet(b);  // the same fields identify it
}

std::string MetadataImage::Batch(const std::vector<std::pair<uint8_t, std::string>>& records) {
  std::string out;
  WireWriter w(&out);
  w.Long(static_cast<uint32_t>(records.size()));
  for (const auto& [type, body] : records) {
    w.Octet(type);
    w.Long(static_cast<uint32_t>(body.size()));
    out.append(body);
  }
  return out;
}

void MetadataImage::AddBinding(StoredBinding b) {
  absl::StatusOr<std::pair<std::string, std::string>> key = KeyOf(b);
  if (key.ok()) bindings.try_emplace(*std::move(key), std::move(b));
}

void MetadataImage::RemoveBinding(const StoredBinding& b) {
  absl::StatusOr<std::pair<std::string, std::string>> key = KeyOf(b);
  if (key.ok()) bindings.erase(*key);
}

absl::Status MetadataImage::Apply(uint8_t type, std::string_view body) {
  WireReader r(body);
  switch (type) {
    case kExchangeSet: {
      StoredExchange e = TakeExchange(r);
      if (!r.Finish("").ok()) return Malformed("exchange record");
      // A declared exchange is new: bindings it had before a delete are gone.
      auto first = bindings.lower_bound({e.name, std::string()});
      auto last = first;
      while (last != bindings.end() && last->first.first == e.name) ++last;
      bindings.erase(first, last);
      exchanges[e.name] = std::move(e);
      return absl::OkStatus();
    }
    case kExchangeRemove: {
      std::string name = r.ShortStr();
      if (!r.Finish("").ok()) return Malformed("exchange removal");
      exchanges.erase(name);
      auto first = bindings.lower_bound({name, std::string()});
      auto last = first;
      while (last != bindings.end() && last->first.first == name) ++last;
      bindings.erase(first, last);
      return absl::OkStatus();
    }
    case kQueueSet: {
      const uint64_t next = r.LongLong();
      StoredQueue q = TakeQueue(r);
      if (!r.Finish("").ok()) return Malformed("queue record");
      next_queue_id = std::max(next_queue_id, next);
      queues[q.name] = std::move(q);
      return absl::OkStatus();
    }
    case kQueueRemove: {
      const uint64_t id = r.LongLong();
      std::string name = r.ShortStr();
      if (!r.Finish("").ok()) return Malformed("queue removal");
      auto it = queues.find(name);
      if (it != queues.end() && it->second.id == id) queues.erase(it);
      return absl::OkStatus();
    }
    case kBindingSet:
    case kBindingRemove: {
      StoredBinding b = TakeBinding(r);
      if (!r.Finish("").ok()) return Malformed("binding record");
      if (type == kBindingSet) {
        AddBinding(std::move(b));
      } else {
        RemoveBinding(b);
      }
      return absl::OkStatus();
    }
    case kBatch: {
      // Parsed whole before anything is applied.
      std::vector<std::pair<uint8_t, std::string_view>> inner;
      const uint32_t n = r.Long();
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        const uint8_t t = r.Octet();
        const std::string_view b = r.Bytes(r.Long());
        if (!r.ok() || t == kBatch) return Malformed("batch");
        inner.emplace_back(t, b);
      }
      if (!r.Finish("").ok()) return Malformed("batch");
      for (const auto& [t, b] : inner) {
        if (absl::Status s = Apply(t, b); !s.ok()) return s;
      }
      return absl::OkStatus();
    }
    default:
      return Malformed(absl::StrCat("record type ", static_cast<int>(type)));
  }
}

}  // namespace sluice::amqp
