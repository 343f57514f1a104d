"""The broker with --shards 3 (src/shard_set.h): partition p of a topic lives on shard p mod 3
and connections are spread over the shards by SO_REUSEPORT, so most requests below cross
shards. A 6-partition topic produced (confluent-kafka and kcat) and consumed back in
per-partition order; a consumer group that commits, closes and resumes where it committed; a
kill -9 during acks=all production to a flush.messages=1 topic, after which every acknowledged
record comes back at its acknowledged offset; a clean SIGTERM shutdown of every shard."""
# ctest-timeout: 240
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, check, consume_from_start, produce_acked_until_kill9, run

KCAT = "/usr/bin/kcat"
SHARDS = ["--shards", "3", "--group-initial-rebalance-delay-ms", "0"]


def kcat(broker, *args, input_data=None, timeout=30):
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "broker.address.family=v4"] + list(args)
    r = subprocess.run(cmd, input=input_data, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def conf(b, **extra):
    c = {"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"}
    c.update(extra)
    return c


def ordered_topic(b):
    admin = AdminClient(conf(b))
    admin.create_topics([NewTopic("orders", num_partitions=6)])["orders"].result(10)
    p = Producer(conf(b, **{"acks": "all", "linger.ms": 5}))
    errors = []
    for i in range(1200):
        part = i % 6
        p.produce("orders", value=f"{part}:{i // 6}".encode(), partition=part,
                  on_delivery=lambda err, msg: err and errors.append(err))
        if i % 100 == 0:
            p.poll(0)
    check(p.flush(20) == 0, "producer flushed")
    check(not errors, f"delivery errors: {errors[:3]}")
    # kcat appends to partition 4 (shard 1) and reads it back.
    kcat(b, "-P", "-t", "orders", "-p", "4", input_data=b"kcat-a\nkcat-b\n")
    lines = kcat(b, "-C", "-t", "orders", "-p", "4", "-o", "beginning", "-e", "-q").split("\n")
    check(lines[:3] == ["4:0", "4:1", "4:2"] and lines[-3:-1] == ["kcat-a", "kcat-b"],
          f"kcat read partition 4: {lines[:3]} ... {lines[-3:]}")
    meta = kcat(b, "-L", "-t", "orders")
    check("6 partitions" in meta, f"metadata: {meta}")

    got = consume_from_start(b, "orders", list(range(6)))
    for part in range(6):
        values = [v.decode() for _, v in got[part]]
        extra = ["kcat-a", "kcat-b"] if part == 4 else []
        check(values == [f"{part}:{n}" for n in range(200)] + extra,
              f"partition {part} in order: {values[:3]}... ({len(values)} records)")
        offsets = [o for o, _ in got[part]]
        check(offsets == list(range(len(offsets))), f"partition {part} offsets contiguous")
    print("  6 partitions x 200 records in order (+2 by kcat)")


def group_resume(b):
    def consumer():
        return Consumer(conf(b, **{"group.id": "resumers", "auto.offset.reset": "earliest",
                                   "enable.auto.commit": False, "session.timeout.ms": 6000}))

    c = consumer()
    c.subscribe(["orders"])
    seen, deadline = [], time.time() + 30
    while len(seen) < 500 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.append((m.partition(), m.offset()))
    check(len(seen) >= 500, f"first consumer read {len(seen)}")
    c.commit(asynchronous=False)
    committed = {tp.partition: tp.offset
                 for tp in c.committed([TopicPartition("orders", p) for p in range(6)], 10)}
    c.close()
    consumed = {}
    for part, off in seen:
        consumed[part] = max(consumed.get(part, -1), off)
    for part, off in consumed.items():
        check(committed[part] == off + 1, f"committed {part}: {committed[part]} vs {off + 1}")

    c = consumer()
    c.subscribe(["orders"])
    first = {}
    total, deadline = 0, time.time() + 30
    while total < 1202 - len(seen) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        first.setdefault(m.partition(), m.offset())
        total += 1
    c.close()
    for part, off in first.items():
        check(off == max(committed.get(part, 0), 0),
              f"partition {part} resumed at {off}, committed {committed.get(part)}")
    check(total == 1202 - len(seen), f"second consumer read {total} of {1202 - len(seen)}")
    print(f"  group: {len(seen)} then {total} records, resumed at the committed offsets")


def crash(b):
    admin = AdminClient(conf(b))
    admin.create_topics([NewTopic("durable", num_partitions=4,
                                  config={"flush.messages": "1"})])["durable"].result(10)
    acked = produce_acked_until_kill9(b, "durable", 4, conf(b))
    b.start()
    got = consume_from_start(b, "durable", list(range(4)))
    flat = {(p, o): v for p, records in got.items() for o, v in records}
    missing = [k for k, v in acked.items() if flat.get(k) != v]
    check(not missing, f"{len(missing)} of {len(acked)} acknowledged records lost: {missing[:5]}")
    parts = sorted({p for p, _ in acked})
    check(parts == [0, 1, 2, 3], f"acknowledged on partitions {parts}")
    print(f"  kill -9: {len(acked)} acknowledged, {len(flat)} recovered")


def full_log(b):
    with open(b.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def test(args):
    b = Broker(args.sluice, SHARDS).start()
    try:
        check("sluice: 3 shards" in full_log(b), "start-up logs the shard count")
        ordered_topic(b)
        group_resume(b)
        crash(b)
        # The data of the first run survived the crash too, and the group's offsets.
        got = consume_from_start(b, "orders", list(range(6)))
        check(sum(len(v) for v in got.values()) == 1202, "orders intact after restart")
        check(b.stop() == 0, "clean shutdown")
        check("sluice stopped cleanly" in full_log(b), "stopped cleanly")
        # A clean restart re-reads nothing.
        b.start()
        check(b.stop() == 0, "second clean shutdown")
        last_run = full_log(b).split("sluice starting")[-1]
        check("sluice stopped cleanly" in last_run, "second run stopped cleanly")
        check("recovered after crash" not in last_run,
              "every shard's logs were closed cleanly")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
