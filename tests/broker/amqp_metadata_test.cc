// AMQP metadata as a snapshot plus a journal of changes (src/amqp/metadata_image.h,
// metadata_journal.h): the snapshot round-trips; replaying the journal onto the snapshot it
// started from, or onto any later snapshot (a crash between writing a snapshot and emptying
// the journal), gives the live topology under random declares, deletes, binds and unbinds;
// the journal keeps every whole record and cuts a torn or damaged tail.
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "log/file_util.h"
#include "src/amqp/metadata_image.h"
#include "src/amqp/metadata_journal.h"
#include "tests/log/log_test_util.h"

namespace sluice::amqp {
namespace {

using storage::testing::TempDir;

// The topology as comparable values.
using BindingTuple = std::tuple<std::string, bool, std::string, std::string, std::string>;
struct Canonical {
  uint64_t next_queue_id = 0;
  std::set<std::tuple<std::string, std::string, bool, bool>> exchanges;
  std::set<std::tuple<std::string, uint64_t, bool, bool>> queues;
  std::set<BindingTuple> bindings;
  bool operator==(const Canonical&) const = default;
};

std::string ArgText(const FieldTable& t) {
  std::string s;
  EXPECT_TRUE(EncodeFieldTable(t, &s).ok());
  return s;
}

Canonical Canon(const MetadataImage& m) {
  Canonical c;
  c.next_queue_id = m.next_queue_id;
  for (const auto& [name, e] : m.exchanges) {
    EXPECT_EQ(name, e.name);
    c.exchanges.emplace(e.name, e.type_name, e.auto_delete, e.internal);
  }
  for (const auto& [name, q] : m.queues) {
    EXPECT_EQ(name, q.name);
    c.queues.emplace(q.name, q.id, q.auto_delete, q.stream);
  }
  for (const auto& [key, b] : m.bindings) {
    c.bindings.emplace(b.source, b.to_exchange, b.destination, b.routing_key, ArgText(b.arguments));
  }
  return c;
}

// A broker's topology changes, modelled independently of MetadataImage::Apply, each emitting
// the records the broker writes for it (AmqpBroker: removals never cascade in the journal).
class Model {
 public:
  struct Rec {
    uint8_t type;
    std::string body;
  };

  void DeclareExchange(const std::string& name, bool auto_delete) {
    if (exchanges_.contains(name)) return;
    StoredExchange e{name, "topic", auto_delete, false, {}};
    exchanges_[name] = e;
    Emit(MetadataImage::kExchangeSet, *MetadataImage::ExchangeSet(e));
  }
  void DeleteExchange(const std::string& name) {
    if (!exchanges_.contains(name)) return;
    exchanges_.erase(name);
    std::erase_if(bindings_, [&](const StoredBinding& b) { return b.source == name; });
    EmitRemoval(RemoveBindingsTo(name, true), MetadataImage::kExchangeRemove,
                MetadataImage::ExchangeRemove(name));
  }
  void DeclareQueue(const std::string& name) {
    if (queues_.contains(name)) return;
    StoredQueue q{next_id_++, name, false, false, {}};
    q.arguments.Set("x-max-length", FieldValue(static_cast<int64_t>(q.id)));
    queues_[name] = q;
    Emit(MetadataImage::kQueueSet, *MetadataImage::QueueSet(q, next_id_));
  }
  void DeleteQueue(const std::string& name) {
    auto it = queues_.find(name);
    if (it == queues_.end()) return;
    const uint64_t id = it->second.id;
    queues_.erase(it);
    EmitRemoval(RemoveBindingsTo(name, false), MetadataImage::kQueueRemove,
                MetadataImage::QueueRemove(id, name));
  }
  void Bind(const std::string& source, bool to_exchange, const std::string& dest,
            const std::string& key) {
    if (!exchanges_.contains(source)) return;
    if (to_exchange ? !exchanges_.contains(dest) : !queues_.contains(dest)) return;
    StoredBinding b{source, to_exchange, dest, key, {}};
    for (const StoredBinding& o : bindings_) {
      if (Same(o, b)) return;
    }
    bindings_.push_back(b);
    Emit(MetadataImage::kBindingSet, *MetadataImage::BindingSet(b));
  }
  void Unbind(size_t i) {
    if (bindings_.empty()) return;
    StoredBinding b = bindings_[i % bindings_.size()];
    bindings_.erase(bindings_.begin() + static_cast<long>(i % bindings_.size()));
    Emit(MetadataImage::kBindingRemove, *MetadataImage::BindingRemove(b));
  }

  // The live topology as a snapshot image.
  MetadataImage Image() const {
    MetadataImage m;
    m.next_queue_id = next_id_;
    m.exchanges = exchanges_;
    m.queues = queues_;
    for (const StoredBinding& b : bindings_) m.AddBinding(b);
    return m;
  }
  const std::vector<Rec>& records() const { return records_; }

 private:
  static bool Same(const StoredBinding& a, const StoredBinding& b) {
    return a.source == b.source && a.to_exchange == b.to_exchange &&
           a.destination == b.destination && a.routing_key == b.routing_key;
  }
  // The removal records of the bindings to `name` (the broker's: no cascade on replay).
  std::vector<std::pair<uint8_t, std::string>> RemoveBindingsTo(const std::string& name,
                                                                bool to_exchange) {
    std::vector<std::pair<uint8_t, std::string>> recs;
    for (size_t i = 0; i < bindings_.size();) {
      if (bindings_[i].to_exchange == to_exchange && bindings_[i].destination == name) {
        recs.emplace_back(MetadataImage::kBindingRemove,
                          *MetadataImage::BindingRemove(bindings_[i]));
        bindings_.erase(bindings_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    return recs;
  }
  // As AmqpBroker::PersistRemoval: one batch when bindings go with the entity.
  void EmitRemoval(std::vector<std::pair<uint8_t, std::string>> recs, uint8_t type,
                   std::string body) {
    if (recs.empty()) return Emit(type, std::move(body));
    recs.emplace_back(type, std::move(body));
    Emit(MetadataImage::kBatch, MetadataImage::Batch(recs));
  }
  void Emit(uint8_t type, std::string body) { records_.push_back({type, std::move(body)}); }

  uint64_t next_id_ = 1;
  std::map<std::string, StoredExchange> exchanges_;
  std::map<std::string, StoredQueue> queues_;
  std::vector<StoredBinding> bindings_;
  std::vector<Rec> records_;
};

MetadataImage Replay(MetadataImage base, const std::vector<Model::Rec>& recs, size_t from) {
  for (size_t i = from; i < recs.size(); ++i) {
    EXPECT_TRUE(base.Apply(recs[i].type, recs[i].body).ok());
  }
  return base;
}

TEST(AmqpMetadata, SnapshotRoundTrips) {
  Model m;
  m.DeclareExchange("logs", true);
  m.DeclareExchange("audit", false);
  m.DeclareQueue("q1");
  m.DeclareQueue("q2");
  m.Bind("logs", false, "q1", "a.#");
  m.Bind("logs", true, "audit", "");
  m.Bind("amq.topic", false, "q2", "x");  // source unknown to the model: not bound
  MetadataImage image = m.Image();
  absl::StatusOr<std::string> bytes = image.EncodeSnapshot();
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<MetadataImage> back = MetadataImage::ParseSnapshot(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Canon(*back), Canon(image));
  EXPECT_EQ(back->bindings.size(), 2u);

  std::string damaged = *bytes;
  damaged[damaged.size() / 2] ^= 0x20;
  EXPECT_FALSE(MetadataImage::ParseSnapshot(damaged).ok());
  EXPECT_FALSE(MetadataImage::ParseSnapshot(bytes->substr(0, bytes->size() - 1)).ok());
}

TEST(AmqpMetadata, ReplayOntoTheStartingOrAnyLaterSnapshotGivesTheLiveTopology) {
  for (uint32_t seed = 1; seed <= 100; ++seed) {
    std::mt19937 rng(seed);
    Model m;
    std::vector<std::pair<size_t, MetadataImage>> snapshots = {{0, MetadataImage()}};
    auto pick = [&rng](int n) { return std::to_string(rng() % n); };
    for (int step = 0; step < 400; ++step) {
      switch (rng() % 8) {
        case 0:
          m.DeclareExchange("e" + pick(6), rng() % 2);
          break;
        case 1:
          m.DeleteExchange("e" + pick(6));
          break;
        case 2:
        case 3:
          m.DeclareQueue("q" + pick(10));
          break;
        case 4:
          m.DeleteQueue("q" + pick(10));
          break;
        case 5:
        case 6:
          if (rng() % 3 == 0) {
            m.Bind("e" + pick(6), true, "e" + pick(6), "k" + pick(3));
          } else {
            m.Bind("e" + pick(6), false, "q" + pick(10), "k" + pick(3));
          }
          break;
        default:
          m.Unbind(rng());
      }
      if (rng() % 40 == 0) snapshots.emplace_back(m.records().size(), m.Image());
    }
    const Canonical live = Canon(m.Image());
    for (const auto& [at, snapshot] : snapshots) {
      // The journal since this snapshot, replayed onto it (a normal restart).
      EXPECT_EQ(Canon(Replay(snapshot, m.records(), at)), live) << "seed " << seed;
    }
    // Every record from any earlier point replayed onto the latest snapshot changes nothing.
    MetadataImage latest = m.Image();
    for (const auto& [at, snapshot] : snapshots) {
      EXPECT_EQ(Canon(Replay(latest, m.records(), at)), live) << "seed " << seed << " from " << at;
    }
  }
}

TEST(AmqpMetadata, RecordsThatDoNotParseAreRefused) {
  MetadataImage m;
  EXPECT_FALSE(m.Apply(MetadataImage::kQueueSet, "\x01").ok());
  EXPECT_FALSE(m.Apply(99, "").ok());
  // A batch holding a batch, or a truncated one.
  std::string inner = MetadataImage::Batch({{MetadataImage::kExchangeRemove, "\x01x"}});
  EXPECT_FALSE(
      m.Apply(MetadataImage::kBatch, MetadataImage::Batch({{MetadataImage::kBatch, inner}})).ok());
  EXPECT_FALSE(m.Apply(MetadataImage::kBatch, inner.substr(0, inner.size() - 1)).ok());
  EXPECT_TRUE(m.Apply(MetadataImage::kBatch, inner).ok());
  std::string body = MetadataImage::ExchangeRemove("x");
  EXPECT_FALSE(m.Apply(MetadataImage::kExchangeRemove, body + "junk").ok());
  EXPECT_TRUE(m.Apply(MetadataImage::kExchangeRemove, body).ok());
}

TEST(MetadataJournal, KeepsWholeRecordsCutsATornTailAndResets) {
  TempDir dir;
  const std::string path = dir.path() + "/amqp.meta.journal";
  {
    std::vector<MetadataJournal::Record> recs;
    auto j = MetadataJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok()) << j.status();
    EXPECT_TRUE(recs.empty());
    ASSERT_TRUE((*j)->AppendDurably(MetadataImage::kExchangeRemove, "one").ok());
    ASSERT_TRUE((*j)->AppendDurably(MetadataImage::kQueueRemove, "two").ok());
  }
  // A torn third record: its first bytes only.
  std::string third;
  MetadataJournal::Encode(MetadataImage::kBindingSet, "three", &third);
  {
    absl::StatusOr<std::vector<uint8_t>> before = storage::ReadWholeFile(path);
    ASSERT_TRUE(before.ok());
    std::string all(before->begin(), before->end());
    all += third.substr(0, third.size() - 2);
    ASSERT_TRUE(storage::WriteFileAtomically(
                    path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(all.data()),
                                                   all.size()))
                    .ok());
  }
  {
    std::vector<MetadataJournal::Record> recs;
    auto j = MetadataJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok());
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0].type, MetadataImage::kExchangeRemove);
    EXPECT_EQ(recs[0].body, "one");
    EXPECT_EQ(recs[1].body, "two");
    // Appends continue right after the last whole record.
    ASSERT_TRUE((*j)->AppendDurably(MetadataImage::kBindingSet, "four").ok());
  }
  {
    std::vector<MetadataJournal::Record> recs;
    auto j = MetadataJournal::Open(path, &recs);
    ASSERT_TRUE(j.ok());
    ASSERT_EQ(recs.size(), 3u);
    EXPECT_EQ(recs[2].body, "four");
    ASSERT_TRUE((*j)->Reset().ok());
    EXPECT_EQ((*j)->size(), 0u);
  }
  std::vector<MetadataJournal::Record> recs;
  ASSERT_TRUE(MetadataJournal::Open(path, &recs).ok());
  EXPECT_TRUE(recs.empty());
}

}  // namespace
}  // namespace sluice::amqp
