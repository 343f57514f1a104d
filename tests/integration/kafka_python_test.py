"""kafka-python against sluice: admin create topic with partitions, keyed records with headers
consumed from the beginning / an offset / a timestamp, compression codecs, too-large records,
idempotence is not in kafka-python 2.0.2; topic deletion."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import MessageSizeTooLargeError, TopicAlreadyExistsError

from harness import Broker, check, run

API = (2, 5, 0)  # skips version probing; every API used here is served


def consume(bs, tp, start, expect, timeout=15):
    c = KafkaConsumer(bootstrap_servers=bs, api_version=API, enable_auto_commit=False,
                      consumer_timeout_ms=1500, fetch_max_wait_ms=100)
    c.assign([tp])
    c.seek(tp, start)
    out = []
    deadline = time.time() + timeout
    while len(out) < expect and time.time() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    c.close()
    return out


def test(args):
    b = Broker(args.sluice).start()
    try:
        bs = b.bootstrap
        admin = KafkaAdminClient(bootstrap_servers=bs, api_version=API)
        admin.create_topics([NewTopic("kp", num_partitions=3, replication_factor=1,
                                      topic_configs={"max.message.bytes": "200000"})])
        try:
            admin.create_topics([NewTopic("kp", num_partitions=3, replication_factor=1)])
            raise AssertionError("duplicate create succeeded")
        except TopicAlreadyExistsError:
            pass
        t0 = int(time.time() * 1000)
        p = KafkaProducer(bootstrap_servers=bs, api_version=API, acks="all", linger_ms=5)
        futs = [p.send("kp", key=f"k{i % 5}".encode(), value=f"v{i}".encode(),
                       headers=[("idx", str(i).encode())]) for i in range(300)]
        p.flush(20)
        metas = [f.get(10) for f in futs]
        per_part = {}
        for i, m in enumerate(metas):
            per_part.setdefault(m.partition, []).append((m.offset, f"v{i}".encode(), i))
        for part, sent in per_part.items():
            got = consume(bs, TopicPartition("kp", part), 0, len(sent))
            check([(r.offset, r.value) for r in got] == [(o, v) for o, v, _ in sent],
                  f"partition {part} from the beginning")
            check(all(r.headers == [("idx", str(i).encode())] for r, (_, _, i) in zip(got, sent)),
                  "headers")
            check(len({r.key for r in got}) <= 5, "keys")
            got = consume(bs, TopicPartition("kp", part), 2, len(sent) - 2)
            check([r.value for r in got] == [v for _, v, _ in sent[2:]], "from offset 2")
        # By timestamp.
        time.sleep(0.05)  # not synchronisation: the clock moves past the earlier records' timestamps
        t1 = int(time.time() * 1000)
        m = p.send("kp", value=b"late", partition=0).get(10)
        c = KafkaConsumer(bootstrap_servers=bs, api_version=API)
        off = c.offsets_for_times({TopicPartition("kp", 0): t1})[TopicPartition("kp", 0)]
        old = c.offsets_for_times({TopicPartition("kp", 0): t0 - 1000})[TopicPartition("kp", 0)]
        c.close()
        check(off.offset == m.offset, f"timestamp lookup {off} vs {m.offset}")
        check(old.offset == 0, f"old timestamp {old}")
        # Every codec (python3-snappy, python3-lz4 and python3-zstandard are installed by
        # tools/lib/deps.sh; a missing one fails here rather than being skipped).
        for codec in ["gzip", "snappy", "lz4", "zstd"]:
            cp = KafkaProducer(bootstrap_servers=bs, api_version=API, compression_type=codec)
            fs = [cp.send("kp", value=f"{codec}{i}".encode() * 10, partition=1) for i in range(50)]
            cp.flush(10)
            first = fs[0].get(10).offset
            got = consume(bs, TopicPartition("kp", 1), first, 50)
            check([r.value for r in got] == [f"{codec}{i}".encode() * 10 for i in range(50)], codec)
            cp.close()
        # Too large for the topic's max.message.bytes.
        bp = KafkaProducer(bootstrap_servers=bs, api_version=API, max_request_size=4 << 20,
                           retries=0)
        try:
            bp.send("kp", value=b"x" * (1 << 20), partition=0).get(10)
            raise AssertionError("1 MiB record accepted with max.message.bytes=200000")
        except MessageSizeTooLargeError:
            pass
        bp.close()
        p.close()
        admin.delete_topics(["kp"])
        check("kp" not in admin.list_topics(), "deleted")
        admin.close()
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
