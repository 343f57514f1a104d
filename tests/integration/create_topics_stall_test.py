"""A CreateTopics of 1,000 topics in one request completes within 5 s, and no other client sees
a stall of 100 ms or more meanwhile (issue 13): a Kafka producer (acks=all) and a consumer of
its topic run beside it, through the request and while the broker creates the new logs
afterwards (a few per loop iteration on each shard). Every new topic is then usable: one record
produced to each and read back. A DeleteTopics of the 1,000 in one request then removes them
all (topics and log directories).

Timing-sensitive: it runs alone (ctest-run-serial), the sanitizer build's broker with 2 shards."""
# ctest-timeout: 300
# ctest-run-serial
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kafka_raw as kr  # noqa: E402
from bystanders import Bystanders  # noqa: E402
from harness import check  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPICS = 1000
CREATE_LIMIT_S = 5.0
STALL_LIMIT_S = 0.1


def log_dirs(data_dir, prefix):
    return [d for d in os.listdir(data_dir) if d.startswith(prefix)]


def main(args):
    b = harness.Broker(args.sluice, ["--shards", "2", "--offsets-topic-partitions", "1"])
    try:
        b.start()
        by = Bystanders(b).start()
        names = [f"many-{i}" for i in range(TOPICS)]
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})

        # The same bystanders with nothing else going on, for comparison (not bounded: the
        # machine's own noise).
        by.mark()
        time.sleep(2)
        by.check("2 s with nothing else to do", limit=10)
        by.mark()
        start = time.monotonic()
        futures = admin.create_topics([NewTopic(n, 1, 1) for n in names],
                                      operation_timeout=60, request_timeout=60)
        for n, f in futures.items():
            f.result(60)
        took = time.monotonic() - start
        print(f"CreateTopics of {TOPICS} topics in one request: {took:.3f} s")
        check(took <= CREATE_LIMIT_S, f"CreateTopics took {took:.3f} s (limit {CREATE_LIMIT_S})")
        # The logs are created after the answer, a few per iteration: the bystanders are
        # watched until every one exists.
        harness.wait_until(lambda: len(log_dirs(b.data_dir, "many-")) == TOPICS, 120,
                           f"the {TOPICS} new logs to be created")
        print(f"... every log created {time.monotonic() - start:.3f} s after the request")
        time.sleep(0.5)
        by.check("CreateTopics and the creation of its logs", limit=STALL_LIMIT_S)
        by.stop()

        # Every new topic takes and serves a record.
        p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                      "acks": "all", "linger.ms": 5,
                      "queue.buffering.max.messages": 4 * TOPICS})
        errors = []
        for n in names:
            p.produce(n, value=n.encode(), partition=0,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        check(p.flush(60) == 0 and not errors, f"one record to each topic: {errors[:3]}")
        c = Consumer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                      "group.id": "stall-check", "enable.auto.commit": False})
        c.assign([TopicPartition(n, 0, 0) for n in names])
        seen = set()
        deadline = time.time() + 60
        while len(seen) < TOPICS and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                check(m.value() == m.topic().encode(), f"{m.topic()} holds {m.value()!r}")
                seen.add(m.topic())
        c.close()
        check(len(seen) == TOPICS, f"read back {len(seen)} of {TOPICS} topics")

        # One DeleteTopics of all of them: gone from Metadata and from the disk.
        conn = kr.Conn(b.port, client_id="deleter", timeout=120)
        errors = kr.parse_delete_topics_v3(conn.call(*kr.delete_topics_v3(names)))
        check(sorted(errors) == sorted(names) and all(e == 0 for e in errors.values()),
              f"DeleteTopics answers: {[(n, e) for n, e in errors.items() if e][:5]}")
        meta = kr.parse_metadata_v1(conn.call(*kr.metadata_v1(None)))
        left = [t for t in meta if t.startswith("many-")]
        check(not left, f"topics left after DeleteTopics: {left[:5]}")
        harness.wait_until(lambda: not log_dirs(b.data_dir, "many-"), 60,
                           "the deleted topics' log directories to go")
        conn.close()
        code = b.stop()
        check(code == 0, f"clean stop exits 0, got {code}")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
