"""Idempotent-producer state is bounded (raw protocol, beside a well-behaved idempotent
confluent-kafka producer and group consumer):
- 200,000 fabricated producer ids (never issued by InitProducerId) into one partition: the
  batches are stored (Kafka accepts unknown producer ids too), but the partition remembers at
  most max.producer.ids.per.partition (10000) of them, so the broker's RSS grows by less than
  40 MB (once +146 MB); a producer that keeps writing meanwhile keeps its retries deduplicated;
- producer.id.expiration.ms: state idle that long is forgotten, in memory and in the snapshot
  written at shutdown (a retry after that is appended again, as in Kafka), while a retry
  within it is answered with its original offset, also after a restart.
The bystanders see no error and no stall longer than 1 s."""
import collections
import os
import struct
import time

from harness import Broker, check, run
from kafka_raw import (Bystander, Conn, batch, crc32c, init_producer_id_v0,
                       parse_init_producer_id_v0, parse_produce_v3, produce_v3, rss_kb, varint)

RSS_GROWTH_BOUND_KB = 40 * 1024
FABRICATED = 200_000
# Kafka takes one batch per partition per Produce request: the flood pipelines this many
# one-batch requests per socket write.
PER_WINDOW = 1000


def fabricated_batches(first_pid, count, ts, joined=True):
    """`count` one-record batches, producer ids first_pid.., epoch 0, sequence 0. Only the
    producer id differs, so the CRC32C is computed once per request for the common part:
    CRC32C is linear over equal-length inputs (crc(a^b) = crc(a)^crc(b)^crc(0)), and the
    producer id's 8 bytes change it by a table lookup per byte."""
    record = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(1) + b"x" + varint(0)
    records = varint(len(record)) + record

    def after_crc(pid):
        return struct.pack(">hiqqqhii", 0, 0, ts, ts, pid, 0, 0, 1) + records

    base = after_crc(0)
    zero = crc32c(bytes(len(base)))
    pid_at = 2 + 4 + 8 + 8
    table = []
    for i in range(8):
        row = []
        for v in range(256):
            probe = bytearray(len(base))
            probe[pid_at + i] = v
            row.append(crc32c(bytes(probe)) ^ zero)
        table.append(row)
    base_crc = crc32c(base)
    head = struct.pack(">qi", 0, 4 + 1 + 4 + len(base)) + struct.pack(">i", 0)
    out = []
    for pid in range(first_pid, first_pid + count):
        pid_bytes = struct.pack(">q", pid)
        crc = base_crc
        for i in range(8):
            crc ^= table[i][pid_bytes[i]]
        out.append(head + struct.pack(">bI", 2, crc) + after_crc(pid))
    return b"".join(out) if joined else out


def fabricated_flood(b):
    c = Conn(b.port, "fabricator", timeout=60)
    # Make the topic and check the CRC shortcut against the plain one.
    ts = int(time.time() * 1000)
    check(fabricated_batches(5, 1, ts) == batch(5, 0, 0, [b"x"], ts), "CRC shortcut")
    check(parse_produce_v3(c.call(*produce_v3("fabricated", 0, batch(-1, -1, -1, [b"warm"]))))[0]
          == 0, "first produce")
    steady, epoch = parse_init_producer_id_v0(c.call(*init_producer_id_v0()))[1:]
    before = rss_kb(b.proc.pid)
    started = time.time()
    kinds, seq, steady_offset = collections.deque(), 0, None

    def receive_one():
        nonlocal steady_offset
        err, base = parse_produce_v3(c.receive())
        kind = kinds.popleft()
        check(err == 0, f"{kind} produce error {err}")
        if kind == "steady":
            steady_offset = base

    for first in range(1_000_000_000, 1_000_000_000 + FABRICATED, PER_WINDOW):
        c.send_many([produce_v3("fabricated", 0, one, acks=1)
                     for one in fabricated_batches(first, PER_WINDOW, ts, joined=False)])
        kinds += ["fabricated"] * PER_WINDOW
        # A producer that keeps writing between the flood's requests.
        c.send(*produce_v3("fabricated", 0, batch(steady, epoch, seq, [b"steady"])))
        kinds.append("steady")
        seq += 1
        while len(kinds) > 3 * PER_WINDOW:
            receive_one()
    while kinds:
        receive_one()
    # The steady producer's last batch, retried: its original offset, nothing appended.
    err, base = parse_produce_v3(c.call(*produce_v3("fabricated", 0, batch(
        steady, epoch, seq - 1, [b"steady"]))))
    check((err, base) == (0, steady_offset), f"the steady producer's retry got {(err, base)}, "
          f"not its original offset {steady_offset}")
    time.sleep(1.0)
    after = rss_kb(b.proc.pid)
    print(f"  {FABRICATED} fabricated producer ids in {time.time() - started:.1f}s: RSS "
          f"{before // 1024} -> {after // 1024} MB (+{(after - before) // 1024} MB)")
    check(after - before < RSS_GROWTH_BOUND_KB, f"RSS grew by {(after - before) // 1024} MB")
    c.close()


def expiration(args):
    """producer.id.expiration.ms of 3 s on a broker of its own."""
    b = Broker(args.sluice, ["--producer-id-expiration-ms", "3000"]).start()
    try:
        c = Conn(b.port)
        _, pid, epoch = parse_init_producer_id_v0(c.call(*init_producer_id_v0()))
        first = batch(pid, epoch, 0, [b"a"])
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, first))) == (0, 0), "first batch")
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, first))) == (0, 0),
              "a retry within producer.id.expiration.ms keeps its offset")
        time.sleep(5.0)  # idle past the expiration (the broker sweeps every second)
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, first))) == (0, 1),
              "after producer.id.expiration.ms the producer is forgotten")
        # The snapshot written at shutdown leaves out what expired while the broker was down.
        _, pid2, epoch2 = parse_init_producer_id_v0(c.call(*init_producer_id_v0()))
        second = batch(pid2, epoch2, 0, [b"b"])
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, second))) == (0, 2), "second")
        c.close()
        check(b.stop() == 0, "clean shutdown")
        b.start()
        c = Conn(b.port)
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, second))) == (0, 2),
              "a retry after a restart within the expiration keeps its offset")
        c.close()
        check(b.stop() == 0, "clean shutdown")
        time.sleep(3.5)
        b.start()
        c = Conn(b.port)
        check(parse_produce_v3(c.call(*produce_v3("exp", 0, second))) == (0, 3),
              "expired while the broker was down: not in the snapshot")
        c.close()
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


def test(args):
    # ASan keeps freed memory in quarantine (256 MB by default), which RSS would count: keep it
    # small so RSS shows what the broker holds.
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
    b = Broker(args.sluice, ["--num-partitions", "1"]).start()
    try:
        bystander = Bystander(b.bootstrap, "bystander", "bystander-group").start()
        fabricated_flood(b)
        time.sleep(1.0)
        bystander.stop().check_unharmed()
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()
    expiration(args)


if __name__ == "__main__":
    run(test)
