// The broker with several shards, in process: a ShardSet of 3 shards on a loopback port,
// driven over TCP with the Kafka codec. Partitions p of a topic are owned by shard p % 3
// (src/shard_map.h), so a request naming partitions 0-2 involves every shard whatever shard
// its connection landed on.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "log/file_util.h"
#include "log/record_batch.h"
#include "net/kafka/error_codes.h"
#include "net/kafka/framing.h"
#include "src/shard_map.h"
#include "src/shard_set.h"

namespace sluice::broker {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-shards-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { (void)storage::RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A blocking Kafka client connection.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{20, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }

  template <typename Request>
  void Send(int16_t version, const Request& req) {
    kafka::RequestHeader h;
    h.api_key = Request::kApiKey;
    h.api_version = version;
    h.correlation_id = ++correlation_;
    h.client_id = "shards-test";
    kafka::EncodedFrame frame = kafka::EncodeRequest(h, kafka::AnyRequest(req));
    size_t done = 0;
    while (done < frame.owned.size()) {
      ssize_t n = write(fd_, frame.owned.data() + done, frame.owned.size() - done);
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
    }
  }

  // The next response (records in it borrow from this client until the next Receive).
  template <typename Response>
  Response Receive(int16_t version) {
    uint8_t size[4];
    if (!ReadAll(size, 4)) return Response();
    uint32_t n =
        uint32_t{size[0]} << 24 | uint32_t{size[1]} << 16 | uint32_t{size[2]} << 8 | size[3];
    payload_.resize(n);
    if (!ReadAll(payload_.data(), n)) return Response();
    auto d = kafka::DecodeResponse(Response::kApiKey, version, payload_);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return Response();
    ok_ = true;
    return std::get<Response>(d->body);
  }
  template <typename Response, typename Request>
  Response Call(int16_t version, const Request& req) {
    Send(version, req);
    return Receive<Response>(version);
  }
  bool last_ok() const { return ok_; }

 private:
  bool ReadAll(uint8_t* p, size_t n) {
    ok_ = false;
    while (n > 0) {
      ssize_t r = read(fd_, p, n);
      if (r <= 0) {
        ADD_FAILURE() << "connection read failed or timed out";
        return false;
      }
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  bool ok_ = false;
  int32_t correlation_ = 0;
  std::vector<uint8_t> payload_;
};

constexpr int16_t kProduceV = 8;
constexpr int16_t kFetchV = 11;

std::vector<uint8_t> Batch(const std::string& value, int records = 1) {
  storage::RecordBatchBuilder b(0, 1700000000000);
  for (int i = 0; i < records; ++i) b.Add(std::nullopt, value);
  return b.Build();
}

// Values of every record in a records field, and the number of batches.
std::vector<std::string> Values(std::span<const uint8_t> records, int* batches = nullptr) {
  std::vector<std::string> out;
  if (batches) *batches = 0;
  while (records.size() >= storage::kBatchHeaderSize) {
    auto h = storage::ParseBatchHeader(records, UINT32_MAX);
    if (!h.ok() || h->size_bytes() > records.size()) break;
    auto r = storage::DecodeRecords(records.first(h->size_bytes()));
    EXPECT_TRUE(r.ok());
    if (r.ok()) {
      for (const auto& v : *r) out.emplace_back(v.value.value_or(""));
    }
    if (batches) ++*batches;
    records = records.subspan(h->size_bytes());
  }
  return out;
}

class ShardsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }
  void TearDown() override { StopBroker(); }

  void Start() {
    stop_.store(false);
    std::promise<uint16_t> port;
    auto port_future = port.get_future();
    thread_ = std::thread([this, port = std::move(port)]() mutable {
      BrokerConfig config;
      config.data_dir = dir_.path();
      config.shards = 3;
      config.offsets_topic_partitions = 3;
      config.group_initial_rebalance_delay_ms = 0;
      KafkaOptions ko;
      ko.host = "127.0.0.1";
      ko.port = 0;
      auto set = ShardSet::Start(config, ko, true);
      if (!set.ok()) {
        ADD_FAILURE() << set.status();
        port.set_value(0);
        return;
      }
      EXPECT_EQ((*set)->size(), 3);
      port.set_value((*set)->kafka_port());
      EXPECT_TRUE((*set)->Run(stop_).ok());
      EXPECT_TRUE((*set)->Stop().ok());
    });
    port_ = port_future.get();
    ASSERT_NE(port_, 0);
  }
  void StopBroker() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  void CreateTopic(Client& c, const std::string& name, int partitions) {
    kafka::CreateTopicsRequest req;
    auto& t = req.topics.emplace_back();
    t.name = name;
    t.num_partitions = partitions;
    t.replication_factor = 1;
    auto resp = c.Call<kafka::CreateTopicsResponse>(5, req);
    ASSERT_EQ(resp.topics.size(), 1u);
    ASSERT_EQ(resp.topics[0].error_code, 0) << resp.topics[0].error_message.value_or("");
  }

  // Produces one batch per (partition, value) and returns the base offsets in that order.
  std::vector<int64_t> Produce(Client& c, const std::string& topic,
                               const std::vector<std::pair<int32_t, std::vector<uint8_t>>>& parts,
                               int16_t acks = -1) {
    kafka::ProduceRequest req;
    req.acks = acks;
    req.timeout_ms = 10000;
    auto& t = req.topic_data.emplace_back();
    t.name = topic;
    for (const auto& [p, batch] : parts) {
      auto& pd = t.partition_data.emplace_back();
      pd.index = p;
      pd.records = kafka::Records::Borrowed(batch);
    }
    auto resp = c.Call<kafka::ProduceResponse>(kProduceV, req);
    std::vector<int64_t> out;
    EXPECT_EQ(resp.responses.size(), 1u);
    if (resp.responses.size() != 1) return out;
    EXPECT_EQ(resp.responses[0].partition_responses.size(), parts.size());
    for (size_t i = 0; i < resp.responses[0].partition_responses.size(); ++i) {
      const auto& pr = resp.responses[0].partition_responses[i];
      EXPECT_EQ(pr.index, parts[i].first);
      EXPECT_EQ(pr.error_code, 0) << "partition " << pr.index;
      out.push_back(pr.base_offset);
    }
    return out;
  }

  kafka::FetchRequest FetchRequest(const std::string& topic,
                                   const std::vector<std::pair<int32_t, int64_t>>& partitions,
                                   int32_t max_bytes = 1 << 20, int32_t max_wait_ms = 0,
                                   int32_t partition_max_bytes = 1 << 20) {
    kafka::FetchRequest req;
    req.replica_id = -1;
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = max_bytes;
    auto& t = req.topics.emplace_back();
    t.topic = topic;
    for (const auto& [p, offset] : partitions) {
      auto& fp = t.partitions.emplace_back();
      fp.partition = p;
      fp.fetch_offset = offset;
      fp.partition_max_bytes = partition_max_bytes;
    }
    return req;
  }

  TempDir dir_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  uint16_t port_ = 0;
};

TEST(ShardMap, ControlPlaneAndPartitionZeroOnShardZero) {
  EXPECT_EQ(OwnerShard("t", 0, 3), 0);
  EXPECT_EQ(OwnerShard("t", 1, 3), 1);
  EXPECT_EQ(OwnerShard("t", 5, 3), 2);
  EXPECT_EQ(OwnerShard("__consumer_offsets", 7, 3), 0);
  EXPECT_EQ(OwnerShard("amqp~q~12", 0, 3), 0);
  for (int p = 0; p < 10; ++p) EXPECT_EQ(OwnerShard("t", p, 1), 0);
}

TEST_F(ShardsTest, ProduceSpanningShardsThenFetchAndRestart) {
  Client c(port_);
  ASSERT_TRUE(c.connected());
  CreateTopic(c, "spread", 6);
  std::vector<std::pair<int32_t, std::vector<uint8_t>>> parts;
  for (int32_t p = 0; p < 6; ++p) parts.emplace_back(p, Batch("a" + std::to_string(p)));
  EXPECT_EQ(Produce(c, "spread", parts), std::vector<int64_t>(6, 0));
  parts.clear();
  // Request order differs from partition order: answers come back in request order.
  for (int32_t p : {5, 3, 1, 4, 2, 0}) parts.emplace_back(p, Batch("b" + std::to_string(p), 2));
  EXPECT_EQ(Produce(c, "spread", parts), std::vector<int64_t>(6, 1));

  auto check = [&](Client& client) {
    auto resp = client.Call<kafka::FetchResponse>(
        kFetchV, FetchRequest("spread", {{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}}));
    ASSERT_EQ(resp.responses.size(), 1u);
    ASSERT_EQ(resp.responses[0].partitions.size(), 6u);
    for (int32_t p = 0; p < 6; ++p) {
      const auto& rp = resp.responses[0].partitions[p];
      EXPECT_EQ(rp.partition_index, p);
      EXPECT_EQ(rp.error_code, 0);
      EXPECT_EQ(rp.high_watermark, 3);
      std::string s = std::to_string(p);
      EXPECT_EQ(Values(rp.records.contiguous()),
                (std::vector<std::string>{"a" + s, "b" + s, "b" + s}));
    }
  };
  check(c);
  StopBroker();
  Start();
  Client again(port_);
  ASSERT_TRUE(again.connected());
  check(again);
}

TEST_F(ShardsTest, FetchAcrossShardsHonoursMaxBytes) {
  Client c(port_);
  CreateTopic(c, "limits", 3);
  const std::string value(1000, 'x');
  const size_t batch_size = Batch(value).size();
  for (int i = 0; i < 3; ++i) {
    Produce(c, "limits", {{0, Batch(value)}, {1, Batch(value)}, {2, Batch(value)}});
  }
  // Two batches fit: they come from the first partition asked (on shard 1); the others' first
  // batches would overshoot the rest of the budget and are left out.
  auto resp = c.Call<kafka::FetchResponse>(
      kFetchV, FetchRequest("limits", {{1, 0}, {2, 0}, {0, 0}}, 2 * batch_size + 100));
  ASSERT_EQ(resp.responses.size(), 1u);
  ASSERT_EQ(resp.responses[0].partitions.size(), 3u);
  int batches = 0;
  EXPECT_EQ(Values(resp.responses[0].partitions[0].records.contiguous(), &batches).size(), 2u);
  EXPECT_EQ(batches, 2);
  EXPECT_EQ(resp.responses[0].partitions[1].records.size(), 0u);
  EXPECT_EQ(resp.responses[0].partitions[2].records.size(), 0u);
  EXPECT_EQ(resp.responses[0].partitions[1].high_watermark, 3);

  // Budget for one batch and a half starting at offset 2 of partition 1 (one batch left
  // there): partition 2 gets none (its first batch overshoots), partition 0 none either.
  resp = c.Call<kafka::FetchResponse>(
      kFetchV, FetchRequest("limits", {{1, 2}, {2, 0}, {0, 0}}, batch_size * 3 / 2));
  EXPECT_EQ(Values(resp.responses[0].partitions[0].records.contiguous()).size(), 1u);
  EXPECT_EQ(resp.responses[0].partitions[1].records.size(), 0u);
  EXPECT_EQ(resp.responses[0].partitions[2].records.size(), 0u);

  // partition_max_bytes of 2.5 batches, max_bytes of 4: partition 2 gets 2, partition 0 the
  // remaining 2 batches' worth.
  resp = c.Call<kafka::FetchResponse>(kFetchV, FetchRequest("limits", {{2, 0}, {0, 0}, {1, 0}},
                                                            4 * batch_size, 0, batch_size * 5 / 2));
  EXPECT_EQ(Values(resp.responses[0].partitions[0].records.contiguous()).size(), 2u);
  EXPECT_EQ(Values(resp.responses[0].partitions[1].records.contiguous()).size(), 2u);
  EXPECT_EQ(resp.responses[0].partitions[2].records.size(), 0u);

  // A max_bytes below one batch still returns the first batch of the first partition.
  resp = c.Call<kafka::FetchResponse>(kFetchV, FetchRequest("limits", {{2, 0}, {1, 0}}, 10));
  EXPECT_EQ(Values(resp.responses[0].partitions[0].records.contiguous()).size(), 1u);
  EXPECT_EQ(resp.responses[0].partitions[1].records.size(), 0u);
}

TEST_F(ShardsTest, LongPollWokenByProduceOnAnotherShard) {
  Client admin(port_);
  CreateTopic(admin, "poll", 3);
  // Several connections: the kernel spreads them over the shards, so most wait on a shard
  // that owns neither partition 1 nor 2.
  std::vector<std::unique_ptr<Client>> waiters;
  for (int i = 0; i < 6; ++i) {
    waiters.push_back(std::make_unique<Client>(port_));
    waiters.back()->Send(kFetchV, FetchRequest("poll", {{1, 0}, {2, 0}}, 1 << 20, 10000));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  Produce(admin, "poll", {{2, Batch("wake")}});
  for (auto& w : waiters) {
    auto resp = w->Receive<kafka::FetchResponse>(kFetchV);
    ASSERT_TRUE(w->last_ok());
    ASSERT_EQ(resp.responses[0].partitions.size(), 2u);
    EXPECT_EQ(resp.responses[0].partitions[0].records.size(), 0u);
    EXPECT_EQ(Values(resp.responses[0].partitions[1].records.contiguous()),
              std::vector<std::string>{"wake"});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));

  // Nothing arriving: answered empty at max_wait_ms.
  const auto t0 = std::chrono::steady_clock::now();
  auto resp = admin.Call<kafka::FetchResponse>(
      kFetchV, FetchRequest("poll", {{1, 0}, {2, 1}}, 1 << 20, 300));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  EXPECT_EQ(resp.responses[0].partitions[0].records.size(), 0u);
  EXPECT_EQ(resp.responses[0].partitions[1].records.size(), 0u);
}

TEST_F(ShardsTest, CreateDeleteRecreateTopic) {
  Client c(port_);
  CreateTopic(c, "again", 3);
  EXPECT_EQ(Produce(c, "again", {{0, Batch("x")}, {1, Batch("x")}, {2, Batch("x")}}),
            (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(Produce(c, "again", {{0, Batch("y")}, {1, Batch("y")}, {2, Batch("y")}}),
            (std::vector<int64_t>{1, 1, 1}));
  kafka::DeleteTopicsRequest del;
  del.topic_names = {"again"};
  auto dresp = c.Call<kafka::DeleteTopicsResponse>(4, del);
  ASSERT_EQ(dresp.responses.size(), 1u);
  EXPECT_EQ(dresp.responses[0].error_code, 0);
  // Deleted everywhere: the partitions on shards 1 and 2 are gone too.
  auto fresp = c.Call<kafka::FetchResponse>(kFetchV, FetchRequest("again", {{1, 0}, {2, 0}}));
  EXPECT_EQ(fresp.responses[0].partitions[0].error_code, kafka::errors::kUnknownTopicOrPartition);
  EXPECT_EQ(fresp.responses[0].partitions[1].error_code, kafka::errors::kUnknownTopicOrPartition);

  CreateTopic(c, "again", 3);
  kafka::ListOffsetsRequest lo;
  lo.replica_id = -1;
  auto& lt = lo.topics.emplace_back();
  lt.name = "again";
  for (int32_t p = 0; p < 3; ++p) {
    auto& lp = lt.partitions.emplace_back();
    lp.partition_index = p;
    lp.timestamp = -1;
  }
  auto lresp = c.Call<kafka::ListOffsetsResponse>(5, lo);
  ASSERT_EQ(lresp.topics.size(), 1u);
  ASSERT_EQ(lresp.topics[0].partitions.size(), 3u);
  for (int32_t p = 0; p < 3; ++p) {
    EXPECT_EQ(lresp.topics[0].partitions[p].partition_index, p);
    EXPECT_EQ(lresp.topics[0].partitions[p].error_code, 0);
    EXPECT_EQ(lresp.topics[0].partitions[p].offset, 0) << "partition " << p;
  }
  EXPECT_EQ(Produce(c, "again", {{2, Batch("z")}, {1, Batch("z")}, {0, Batch("z")}}),
            (std::vector<int64_t>{0, 0, 0}));
  // Other connections (likely on other shards) see the new topic, and only its data.
  for (int i = 0; i < 4; ++i) {
    Client other(port_);
    auto resp =
        other.Call<kafka::FetchResponse>(kFetchV, FetchRequest("again", {{0, 0}, {1, 0}, {2, 0}}));
    for (int32_t p = 0; p < 3; ++p) {
      EXPECT_EQ(Values(resp.responses[0].partitions[p].records.contiguous()),
                std::vector<std::string>{"z"});
    }
  }
}

TEST_F(ShardsTest, ListOffsetsMaxTimestampNamesTheBatchWithTheLargestTimestamp) {
  Client c(port_);
  CreateTopic(c, "ts", 3);
  auto at = [](int64_t ts, int records) {
    storage::RecordBatchBuilder b(0, ts);
    for (int i = 0; i < records; ++i) b.Add(std::nullopt, "v");
    return b.Build();
  };
  // Partition 1 (on shard 1): offsets 0-1 at t=1000, 2 at 5000, 3-5 at 3000; partition 2: none.
  ASSERT_EQ(Produce(c, "ts", {{1, at(1000, 2)}}), std::vector<int64_t>{0});
  ASSERT_EQ(Produce(c, "ts", {{1, at(5000, 1)}}), std::vector<int64_t>{2});
  ASSERT_EQ(Produce(c, "ts", {{1, at(3000, 3)}}), std::vector<int64_t>{3});
  kafka::ListOffsetsRequest lo;
  lo.replica_id = -1;
  auto& lt = lo.topics.emplace_back();
  lt.name = "ts";
  for (int32_t p : {1, 2}) {
    auto& lp = lt.partitions.emplace_back();
    lp.partition_index = p;
    lp.timestamp = -3;
  }
  auto resp = c.Call<kafka::ListOffsetsResponse>(7, lo);
  ASSERT_EQ(resp.topics.size(), 1u);
  ASSERT_EQ(resp.topics[0].partitions.size(), 2u);
  const auto& p1 = resp.topics[0].partitions[0];
  EXPECT_EQ(p1.error_code, 0);
  EXPECT_EQ(p1.offset, 2);
  EXPECT_EQ(p1.timestamp, 5000);
  const auto& p2 = resp.topics[0].partitions[1];
  EXPECT_EQ(p2.error_code, 0);
  EXPECT_EQ(p2.offset, -1);
  EXPECT_EQ(p2.timestamp, -1);
}

TEST_F(ShardsTest, AutoCreateFromAnyShard) {
  for (int i = 0; i < 4; ++i) {
    Client c(port_);
    const std::string topic = "auto" + std::to_string(i);
    EXPECT_EQ(Produce(c, topic, {{0, Batch("v")}}), std::vector<int64_t>{0});
    auto resp = c.Call<kafka::FetchResponse>(kFetchV, FetchRequest(topic, {{0, 0}}));
    EXPECT_EQ(Values(resp.responses[0].partitions[0].records.contiguous()),
              std::vector<std::string>{"v"});
  }
}

}  // namespace
}  // namespace sluice::broker
