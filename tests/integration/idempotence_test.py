"""Idempotent producer rules over the raw protocol (the clients never retry on demand): a
retried batch gets its original offset and is not appended again, a sequence gap is
OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch is INVALID_PRODUCER_EPOCH, and the state survives
a clean restart and a kill -9 (rebuilt from batch headers)."""
import os
import socket
import struct
import subprocess
import time

from harness import Broker, check, run, wait_until
from kafka_raw import crc32c, varint


def batch(pid, epoch, seq, values):
    recs = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, pid, epoch, seq,
                            len(values)) + recs
    crc_part = struct.pack(">bI", 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qii", 0, 4 + len(crc_part), 0) + crc_part


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.corr = 0

    def call(self, key, version, body):
        self.corr += 1
        req = struct.pack(">hhih", key, version, self.corr, 2) + b"it" + body
        self.s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = self.s.recv(65536)
            check(chunk, "connection closed")
            buf += chunk
        check(struct.unpack(">i", buf[4:8])[0] == self.corr, "correlation id")
        return buf[8:]

    def init_producer_id(self):
        r = self.call(22, 0, struct.pack(">hi", -1, 60000))
        _, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        check(err == 0, f"InitProducerId error {err}")
        return pid, epoch

    def produce(self, topic, records):
        t = topic.encode()
        body = (struct.pack(">hhi", -1, -1, 10000) + struct.pack(">i", 1) +
                struct.pack(">h", len(t)) + t + struct.pack(">i", 1) + struct.pack(">i", 0) +
                struct.pack(">i", len(records)) + records)
        r = self.call(0, 3, body)
        n = struct.unpack(">h", r[4:6])[0]
        pos = 6 + n + 4
        _, err, base = struct.unpack(">ihq", r[pos:pos + 14])
        return err, base


def count_records(broker, topic):
    out = subprocess.run(["/usr/bin/kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-q",
                          "-o", "beginning", "-f", "%o\n"], capture_output=True, timeout=30,
                         check=True).stdout.decode().split()
    return len(out)


def recovery_offset(broker, partition_dir):
    """recovery_offset of a partition's point in the shards' recovery-points files (log/FORMAT.md,
    "Recovery points": frames of records applied in order; the checksum is the broker's to
    check), -1 if none."""
    best = -1
    for name in os.listdir(broker.data_dir):
        if not name.startswith("recovery-points.") or not name[16:].isdigit():
            continue
        with open(os.path.join(broker.data_dir, name), "rb") as f:
            data = f.read()
        at, points = 0, {}
        while at + 32 <= len(data):
            magic, version, _, length, count = struct.unpack_from("<IHHII", data, at)
            if magic != 0x50524C53 or version != 1 or at + 32 + length > len(data):
                break
            p = at + 32
            for _ in range(count):
                n, kind = struct.unpack_from("<HB", data, p)
                log = data[p + 4:p + 4 + n].decode()
                p += 4 + n
                if kind == 1:
                    points[log] = struct.unpack_from("<q", data, p)[0]
                    p += 32
                else:
                    points.pop(log, None)
            at += 32 + length
        best = max(best, points.get(partition_dir, -1))
    return best


def test(args):
    b = Broker(args.sluice).start()
    try:
        c = Conn(b.port)
        pid, epoch = c.init_producer_id()
        pid2, _ = c.init_producer_id()
        check(pid2 != pid, "fresh producer ids")
        check(c.produce("idem", batch(pid, epoch, 0, [b"a", b"b"])) == (0, 0), "first batch")
        check(c.produce("idem", batch(pid, epoch, 2, [b"c"])) == (0, 2), "second batch")
        # Retries of both: original offsets, nothing appended.
        check(c.produce("idem", batch(pid, epoch, 0, [b"a", b"b"])) == (0, 0), "retry of first")
        check(c.produce("idem", batch(pid, epoch, 2, [b"c"])) == (0, 2), "retry of second")
        check(c.produce("idem", batch(pid, epoch, 5, [b"x"]))[0] == 45, "gap")
        check(c.produce("idem", batch(pid, epoch + 1, 0, [b"d"])) == (0, 3), "epoch bump")
        check(c.produce("idem", batch(pid, epoch, 3, [b"e"]))[0] == 47, "stale epoch")
        check(count_records(b, "idem") == 4, "no duplicates")
        # Clean restart (snapshot), then kill -9 (rebuilt from batch headers).
        check(b.stop() == 0, "clean shutdown")
        b.start()
        c = Conn(b.port)
        check(c.produce("idem", batch(pid, epoch + 1, 0, [b"d"])) == (0, 3), "retry after restart")
        check(c.produce("idem", batch(pid, epoch + 1, 1, [b"f"])) == (0, 4), "next after restart")
        check(c.init_producer_id()[0] not in (pid, pid2), "ids not reused after restart")
        # The background flush makes it durable and checkpoints it: after the kill -9 the
        # producer state comes from batches below the recovery point, not re-validated ones.
        wait_until(lambda: recovery_offset(b, "idem-0") >= 5, 10, "idem-0 checkpointed at 5")
        b.kill9()
        b.start()
        c = Conn(b.port)
        check(c.produce("idem", batch(pid, epoch + 1, 1, [b"f"])) == (0, 4), "retry after kill -9")
        check(c.produce("idem", batch(pid, epoch + 1, 3, [b"g"]))[0] == 45, "gap after kill -9")
        check(count_records(b, "idem") == 5, "no duplicates after restarts")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
