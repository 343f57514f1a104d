"""confluent-kafka-python (librdkafka) against sluice: admin (create topic with partitions and
configs, describe and incrementally alter configs, create partitions, delete), keyed records with headers
consumed from the beginning / an offset / a timestamp, every compression codec, 1 MiB records
vs max.message.bytes, idempotent producer."""
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from harness import Broker, check, run


def produce(bootstrap, topic, records, **conf):
    """records: (partition or None, key, value, headers). Returns delivery reports."""
    reports = []
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "linger.ms": 5, "message.max.bytes": 4 << 20, **conf})
    for part, key, value, headers in records:
        kw = {"key": key, "value": value, "headers": headers,
              "on_delivery": lambda err, msg: reports.append((err, msg))}
        if part is not None:
            kw["partition"] = part
        p.produce(topic, **kw)
        p.poll(0)
    left = p.flush(30)
    check(left == 0, f"{left} records not delivered")
    return reports


def consume(bootstrap, assignments, expect, timeout=20):
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "group.id": "unused", "enable.auto.commit": False,
                  "fetch.max.bytes": 8 << 20, "receive.message.max.bytes": 16 << 20})
    c.assign(assignments)
    out = []
    deadline = time.time() + timeout
    while len(out) < expect and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consume error {m.error()}")
        out.append(m)
    # Nothing more than expected arrives.
    extra = c.poll(0.3)
    check(extra is None or extra.error(), f"unexpected extra record at {extra and extra.offset()}")
    c.close()
    return out


def incremental_alter(port, topic, name, value):
    """IncrementalAlterConfigs v0 by hand (confluent-kafka 2.0.2 has no client for it)."""
    import socket
    import struct

    def string(v):
        return struct.pack(">h", len(v)) + v.encode()

    body = (struct.pack(">i", 1) + struct.pack(">b", 2) + string(topic) + struct.pack(">i", 1) +
            string(name) + struct.pack(">b", 0) + string(value) + b"\x00")
    req = struct.pack(">hhi", 44, 0, 9) + string("it") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            check(chunk, "IncrementalAlterConfigs: connection closed")
            buf += chunk
    # size, correlation id, throttle, count, error code
    corr, _, count, err = struct.unpack(">iiih", buf[4:18])
    check(corr == 9 and count == 1, "IncrementalAlterConfigs response")
    return err


def test(args):
    b = Broker(args.sluice, ["--auto-create-topics", "false"]).start()
    try:
        bs = b.bootstrap
        admin = AdminClient({"bootstrap.servers": bs, "broker.address.family": "v4"})
        fs = admin.create_topics([NewTopic("orders", num_partitions=4, replication_factor=1,
                                           config={"retention.ms": "3600000",
                                                   "max.message.bytes": "2000000"})])
        fs["orders"].result(15)
        # Creating it again fails with TOPIC_ALREADY_EXISTS.
        try:
            admin.create_topics([NewTopic("orders", num_partitions=1)])["orders"].result(15)
            raise AssertionError("duplicate create succeeded")
        except KafkaException as e:
            check(e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, str(e))
        md = admin.list_topics(timeout=10)
        check(len(md.topics["orders"].partitions) == 4, "4 partitions")
        # Configs: describe, alter, describe.
        res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
        cfg = admin.describe_configs([res])[res].result(10)
        check(cfg["retention.ms"].value == "3600000", f"retention.ms {cfg['retention.ms'].value}")
        check(incremental_alter(b.port, "orders", "retention.ms", "7200000") == 0, "alter")
        check(incremental_alter(b.port, "orders", "retention.ms", "soon") == 40, "INVALID_CONFIG")
        cfg = admin.describe_configs([res])[res].result(10)
        check(cfg["retention.ms"].value == "7200000", f"altered {cfg['retention.ms'].value}")
        # Keyed records with headers.
        t0 = int(time.time() * 1000)
        recs = [(None, f"key{i % 10}".encode(), f"value-{i}".encode(), [("n", str(i).encode())])
                for i in range(400)]
        reports = produce(bs, "orders", recs, acks="all")
        check(all(err is None for err, _ in reports), "all delivered")
        got = consume(bs, [TopicPartition("orders", p, 0) for p in range(4)], 400)
        check(len(got) == 400, f"got {len(got)}")
        by_part = {}
        for m in got:
            by_part.setdefault(m.partition(), []).append(m)
            check(m.headers() == [("n", m.value().split(b"-")[1])], f"headers {m.headers()}")
        sent = {}
        for err, m in reports:
            sent.setdefault(m.partition(), []).append((m.offset(), m.key(), m.value()))
        for p, ms in by_part.items():
            check([(m.offset(), m.key(), m.value()) for m in ms] == sorted(sent[p]),
                  f"partition {p} differs from what was produced")
        # From an offset.
        p0 = sorted(sent[0])
        got = consume(bs, [TopicPartition("orders", 0, 3)], len(p0) - 3)
        check([m.value() for m in got] == [v for _, _, v in p0[3:]], "from offset 3")
        # From a timestamp.
        time.sleep(0.05)  # not synchronisation: the clock moves past the earlier records' timestamps
        t1 = int(time.time() * 1000)
        produce(bs, "orders", [(2, b"late", b"late-1", None), (2, b"late", b"late-2", None)])
        c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "broker.address.family": "v4"})
        offs = [c.offsets_for_times([TopicPartition("orders", 2, t)], 10)[0] for t in (t1, t0 - 1000)]
        c.close()
        got = consume(bs, [TopicPartition("orders", 2, offs[0].offset)], 2)
        check([m.value() for m in got] == [b"late-1", b"late-2"], "from timestamp")
        check(offs[1].offset == 0, f"old timestamp maps to offset 0, got {offs[1].offset}")

        # LogAppendTime: the broker's clock replaces the producer's timestamp.
        admin.create_topics([NewTopic("stamped", num_partitions=1, config={
            "message.timestamp.type": "LogAppendTime"})])["stamped"].result(10)
        before = int(time.time() * 1000)
        p = Producer({"bootstrap.servers": bs, "broker.address.family": "v4"})
        p.produce("stamped", value=b"old", partition=0, timestamp=1000)
        check(p.flush(10) == 0, "stamped delivered")
        m = consume(bs, [TopicPartition("stamped", 0, 0)], 1)[0]
        kind, ts = m.timestamp()
        check(kind == 2 and before - 1000 <= ts <= int(time.time() * 1000) + 1000,
              f"LogAppendTime: {kind} {ts}")

        # Compression codecs.
        admin.create_topics([NewTopic("codecs", num_partitions=1)])["codecs"].result(10)
        for n, codec in enumerate(["gzip", "snappy", "lz4", "zstd"]):
            vals = [f"{codec}-{i}".encode() * 20 for i in range(200)]
            produce(bs, "codecs", [(0, None, v, None) for v in vals], **{"compression.type": codec})
            got = consume(bs, [TopicPartition("codecs", 0, -2)], 200 * (n + 1))
            check([m.value() for m in got][-200:] == vals, f"{codec} round trip")

        # A 1 MiB record: accepted under max.message.bytes=2000000, refused under the default.
        big = b"B" * (1 << 20)
        reports = produce(bs, "orders", [(1, b"big", big, None)])
        check(reports[0][0] is None, f"1 MiB record refused: {reports[0][0]}")
        got = consume(bs, [TopicPartition("orders", 1, reports[0][1].offset())], 1)
        check(got[0].value() == big, "1 MiB record round trip")
        admin.create_topics([NewTopic("small", num_partitions=1,
                                      config={"max.message.bytes": "100000"})])["small"].result(10)
        reports = produce(bs, "small", [(0, None, big, None)], **{"compression.type": "none"})
        check(reports[0][0] is not None and reports[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE,
              f"expected MESSAGE_TOO_LARGE, got {reports[0][0]}")

        # Idempotent producer: no duplicates, sequence state kept.
        admin.create_topics([NewTopic("idem", num_partitions=2)])["idem"].result(10)
        recs = [(i % 2, None, f"i{i}".encode(), None) for i in range(1000)]
        produce(bs, "idem", recs, **{"enable.idempotence": True})
        got = consume(bs, [TopicPartition("idem", p, 0) for p in range(2)], 1000)
        check(sorted(m.value() for m in got) == sorted(v for _, _, v, _ in recs), "idempotent once")

        # Partitions can be added; deleting a topic removes it.
        admin.create_partitions([NewPartitions("codecs", 3)])["codecs"].result(10)
        check(len(admin.list_topics(timeout=10).topics["codecs"].partitions) == 3, "3 partitions")
        admin.delete_topics(["codecs"])["codecs"].result(10)
        check("codecs" not in admin.list_topics(timeout=10).topics, "deleted")
        check(b.stop() == 0, "clean shutdown")
        # Topics, partition counts and configs survive a restart.
        b.start()
        admin = AdminClient({"bootstrap.servers": bs, "broker.address.family": "v4"})
        res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
        cfg = admin.describe_configs([res])[res].result(10)
        check(cfg["retention.ms"].value == "7200000", "config persisted")
        md = admin.list_topics(timeout=10)
        check(len(md.topics["orders"].partitions) == 4 and "codecs" not in md.topics, "topics")
        check(b.stop() == 0, "clean shutdown after restart")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
