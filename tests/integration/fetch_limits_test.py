"""Fetch byte limits with raw Fetch v4 requests: partition_max_bytes bounds each partition and
max_bytes the whole response; only the first batch of the first non-empty partition may exceed
them (so a consumer always progresses). A response once grew to the whole log when the first
partition's batch overshot max_bytes (a negative remainder turned into a huge limit)."""
import os
import socket
import struct
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Broker, check, recv_exactly, run

TOPIC = "limits"
PARTITIONS = 4


def s16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def fetch(sock, corr, partition_max, max_bytes):
    body = struct.pack(">iiiib", -1, 0, 1, max_bytes, 0) + struct.pack(">i", 1) + s16(TOPIC)
    body += struct.pack(">i", PARTITIONS)
    for p in range(PARTITIONS):
        body += struct.pack(">iqi", p, 0, partition_max)
    req = struct.pack(">hhi", 1, 4, corr) + s16("limits-test") + body
    sock.sendall(struct.pack(">i", len(req)) + req)
    n = struct.unpack(">i", recv_exactly(sock, 4))[0]
    check(0 < n < 64 << 20, f"response of {n} bytes")
    d = recv_exactly(sock, n)
    check(struct.unpack(">i", d[:4])[0] == corr, "correlation id")
    pos = 8  # correlation id, throttle time
    sizes = {}
    (topics,) = struct.unpack_from(">i", d, pos)
    pos += 4
    for _ in range(topics):
        (ln,) = struct.unpack_from(">h", d, pos)
        pos += 2 + ln
        (parts,) = struct.unpack_from(">i", d, pos)
        pos += 4
        for _ in range(parts):
            p, err, _hw, _lso, aborted = struct.unpack_from(">ihqqi", d, pos)
            pos += 4 + 2 + 8 + 8 + 4
            if aborted > 0:
                pos += 16 * aborted
            (rl,) = struct.unpack_from(">i", d, pos)
            pos += 4
            check(err == 0, f"partition {p} error {err}")
            sizes[p] = batch_sizes(d[pos:pos + max(rl, 0)])
            pos += max(rl, 0)
    return sizes


def batch_sizes(records):
    out, at = [], 0
    while len(records) - at >= 12:
        (length,) = struct.unpack_from(">i", records, at + 8)
        out.append(12 + length)
        at += 12 + length
    check(at == len(records), "whole batches only")
    return out


def test(args):
    b = Broker(args.sluice).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(20)
        # About 200 KB batches: 20 records of 10 KB, several batches per partition.
        p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                      "linger.ms": 200, "batch.size": 200000, "batch.num.messages": 20})
        for i in range(PARTITIONS * 60):
            p.produce(TOPIC, value=b"v" * 10000, partition=i % PARTITIONS)
        check(p.flush(30) == 0, "all produced")
        with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
            every = fetch(s, 1, 16 << 20, 64 << 20)
            check(all(len(every[q]) >= 2 for q in range(PARTITIONS)), f"batches {every}")
            first = every[0][0]
            # max_bytes below one batch: only the first partition's first batch comes back.
            got = fetch(s, 2, 16 << 20, 1)
            check(got[0] == [first] and all(got[q] == [] for q in range(1, PARTITIONS)),
                  f"max_bytes=1: {got}")
            # max_bytes of 1.5 batches: the first batch, then nothing that would exceed it.
            limit = first + first // 2
            got = fetch(s, 3, 16 << 20, limit)
            total = sum(sum(v) for v in got.values())
            check(0 < total <= limit, f"max_bytes={limit}: {total} bytes {got}")
            # partition_max_bytes below one batch: the first partition still gets one batch,
            # the others none (their first batch does not fit).
            got = fetch(s, 4, 1000, 64 << 20)
            check(got[0] == [first] and all(got[q] == [] for q in range(1, PARTITIONS)),
                  f"partition_max_bytes=1000: {got}")
            # Both generous: each partition up to partition_max_bytes, whole batches. The
            # producer's batches differ in size (a linger may close one after a single
            # record), so the bound is set from the largest first batch: every partition's
            # first batch fits and none is the exception.
            pmax = 2 * max(every[q][0] for q in range(PARTITIONS)) + 10
            got = fetch(s, 5, pmax, 64 << 20)
            check(all(0 < sum(got[q]) <= pmax for q in range(PARTITIONS)), f"pmax: {got}")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
