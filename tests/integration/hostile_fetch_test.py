"""Pipelined fetches on connections that never read their responses, beside well-behaved
clients (a confluent-kafka producer with acks=all and a consumer, a pika publisher with
confirms):

(a) 600 pipelined Fetch v3 (answered from memory: down-converted) on 1, then 8 more
    connections that never read: the broker stops reading each connection once its queued
    responses reach connection.max.queued.bytes (4 MiB), so its RSS grows by at most about
    twice that per connection: bounds checked below are 64 MB for the first connection and
    160 MB with all nine (main before the fix: +590 MB for one, 1.2 GB for eight).
(b) 30,000 pipelined zero-copy Fetch v4 on 30 connections that never read: queued file ranges
    borrow the segment's descriptor instead of a dup each, and are bounded per connection
    (connection.max.queued.file.ranges), so the broker's descriptor count stays flat and
    /healthz and CreateTopics keep working (main before the fix: one fd per fetch, the fd limit
    reached, /healthz and CreateTopics failing).

The bystanders see no error and no stall (latency or gap between successes) over 1 s.
RSS is VmRSS from /proc; the test build is ASan, whose quarantine of freed memory (256 MiB by
default) would count as growth, so the broker runs with quarantine_size_mb=16 here."""
import os
import socket
import struct
import sys
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bystanders import Bystanders  # noqa: E402
from harness import AmqpBroker, check, free_port, run  # noqa: E402

FAT = "fat"
MB = 1 << 20
ONE_CONN_BOUND = 64 * MB
ALL_CONNS_BOUND = 160 * MB
FD_GROWTH_BOUND = 300


def s16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def fetch_request(corr, version, partition_max):
    body = struct.pack(">iiii", -1, 0, 1, partition_max)  # replica, max_wait, min_bytes, max
    if version >= 4:
        body += struct.pack(">b", 0)  # isolation level
    body += struct.pack(">i", 1) + s16(FAT) + struct.pack(">i", 1)
    body += struct.pack(">iq", 0, 0)
    if version >= 5:
        body += struct.pack(">q", -1)  # log start offset
    body += struct.pack(">i", partition_max)
    req = struct.pack(">hhi", 1, version, corr) + s16("hostile") + body
    return struct.pack(">i", len(req)) + req


def hostile(port, count, version, partition_max):
    """A connection that sends `count` pipelined fetches and never reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    s.sendall(b"".join(fetch_request(i, version, partition_max) for i in range(count)))
    return s


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def watch(pid, seconds, measure, give_up_above):
    """The largest `measure(pid)` seen over `seconds` (stops early above `give_up_above`, so a
    broken broker does not take the machine's memory with it)."""
    peak, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        peak = max(peak, measure(pid))
        if peak > give_up_above:
            break
        time.sleep(0.1)
    return peak


def test(args):
    os.environ["ASAN_OPTIONS"] = ":".join(
        o for o in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=16") if o)
    http_port = free_port()
    b = AmqpBroker(args.sluice, ["--http-port", str(http_port)]).start()
    hostile_conns = []
    by = None
    try:
        pid = b.proc.pid
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        for f in admin.create_topics([NewTopic(FAT, 1, 1), NewTopic("bystander", 1, 1)]).values():
            f.result(20)
        # 4 MB in the partition the hostile connections read: each Fetch v3 answer is 256 KB.
        p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                      "linger.ms": 50, "batch.size": 100000})
        for _ in range(400):
            p.produce(FAT, value=b"v" * 10000, partition=0)
        check(p.flush(30) == 0, "fat topic filled")

        by = Bystanders(b, amqp_port=b.amqp_port).start()
        base = rss(pid)
        # (a) one connection, 600 pipelined down-converted fetches, never read.
        hostile_conns.append(hostile(b.port, 600, 3, 256 * 1024))
        peak = watch(pid, 6, rss, base + 4 * ONE_CONN_BOUND)
        print(f"(a) 1 connection x 600 Fetch v3: RSS {base / MB:.0f} -> {peak / MB:.0f} MB "
              f"(+{(peak - base) / MB:.0f} MB, bound +{ONE_CONN_BOUND / MB:.0f} MB)")
        check(peak - base < ONE_CONN_BOUND, f"RSS grew by {(peak - base) / MB:.0f} MB")
        by.check("1 hostile Fetch v3 connection")
        # Eight more.
        by.mark()
        for _ in range(8):
            hostile_conns.append(hostile(b.port, 600, 3, 256 * 1024))
        peak = watch(pid, 8, rss, base + 4 * ALL_CONNS_BOUND)
        print(f"(a) 9 connections x 600 Fetch v3: RSS {base / MB:.0f} -> {peak / MB:.0f} MB "
              f"(+{(peak - base) / MB:.0f} MB, bound +{ALL_CONNS_BOUND / MB:.0f} MB)")
        check(peak - base < ALL_CONNS_BOUND, f"RSS grew by {(peak - base) / MB:.0f} MB")
        by.check("9 hostile Fetch v3 connections")
        for s in hostile_conns:
            s.close()
        hostile_conns.clear()

        # (b) 30,000 pipelined zero-copy fetches on 30 connections that never read.
        time.sleep(0.5)
        by.mark()
        base_fds = fds(pid)
        for _ in range(30):
            hostile_conns.append(hostile(b.port, 1000, 4, 1024))
        peak_fds = watch(pid, 6, fds, base_fds + 20 * FD_GROWTH_BOUND)
        print(f"(b) 30 connections x 1000 Fetch v4: fds {base_fds} -> {peak_fds} "
              f"(bound +{FD_GROWTH_BOUND}), RSS {rss(pid) / MB:.0f} MB")
        check(peak_fds - base_fds < FD_GROWTH_BOUND, f"{peak_fds - base_fds} more descriptors")
        # The admin listener and the control plane still work.
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as r:
            check(r.status == 200 and r.read() == b"ok\n", "/healthz")
        admin.create_topics([NewTopic("created-meanwhile", 1, 1)])["created-meanwhile"].result(10)
        by.check("30,000 zero-copy fetches never read")
        for s in hostile_conns:
            s.close()
        hostile_conns.clear()
        by.stop()
        by = None
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        for s in hostile_conns:
            s.close()
        if by is not None:
            by.stop_event.set()
        b.cleanup()


if __name__ == "__main__":
    run(test)
