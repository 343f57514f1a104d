"""Produce validation (issue 12, finding 1 and the bombs of finding 6): raw Produce v7 requests
whose batches carry a correct CRC32C over lying contents are refused with INVALID_RECORD (87)
(a damaged CRC with CORRUPT_MESSAGE, 2): a records count other than lastOffsetDelta + 1, record
offset deltas not 0, 1, 2, ..., record lengths overrunning the batch, codec 7, zstd and gzip
flags over bytes that do not decompress, the control and transactional bits, a zstd bomb
(32 KB -> 1 GiB) and a gzip bomb. After each, ListOffsets' latest offset has not moved and the
next good batch gets the next offset; a confluent-kafka consumer and an AMQP stream consumer
(x-stream-offset) beside read every good record in order, compressed ones too. Produce to the
internal topic __consumer_offsets is refused with INVALID_TOPIC_EXCEPTION (17)."""
import os
import socket
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import AmqpBroker, check, consume_from_start, run  # noqa: E402
from kafka_raw import crc32c, varint  # noqa: E402

import pika  # noqa: E402

TOPIC = "validated"
INVALID_RECORD, CORRUPT_MESSAGE, INVALID_TOPIC, UNSUPPORTED_COMPRESSION = 87, 2, 17, 76


def record(delta, value, key=b"k"):
    body = b"\x00" + varint(0) + varint(delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(len(value)) + value + varint(0)
    return varint(len(body)) + body


def records(values):
    return b"".join(record(i, v) for i, v in enumerate(values))


def batch(section, count, last_offset_delta=None, attributes=0, base_offset=0, bad_crc=False):
    """A RecordBatch v2 around `section` with a correct CRC32C (unless bad_crc)."""
    lod = count - 1 if last_offset_delta is None else last_offset_delta
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", attributes, lod, ts, ts, -1, -1, -1, count) + section
    crc = crc32c(after_crc) ^ (1 if bad_crc else 0)
    crc_part = struct.pack(">bI", 2, crc) + after_crc
    return struct.pack(">qii", base_offset, 4 + len(crc_part), -1) + crc_part


def gzip(data):
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def zstd_frame(raw, zeros=0):
    """A zstd frame (128 KiB window, no content size): `raw` as a raw block, then `zeros` zero
    bytes as RLE blocks of 128 KiB (4 bytes each)."""
    out = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")

    def header(last, kind, size):
        h = (1 if last else 0) | (kind << 1) | (size << 3)
        out.extend(bytes([h & 0xFF, (h >> 8) & 0xFF, h >> 16]))

    header(zeros == 0, 0, len(raw))
    out.extend(raw)
    left = zeros
    while left > 0:
        n = min(left, 128 << 10)
        left -= n
        header(left == 0, 1, n)
        out.append(0)
    return bytes(out)


def bomb_prefix(value_len):
    """The start of one record whose value is `value_len` zero bytes (then 0 headers)."""
    body = b"\x00\x00\x00\x01" + varint(value_len)  # attributes, ts, offsetDelta 0, null key
    return varint(len(body) + value_len + 1) + body


class Kafka:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.corr = 0

    def call(self, key, version, body):
        self.corr += 1
        req = struct.pack(">hhih", key, version, self.corr, 2) + b"it" + body
        self.s.sendall(struct.pack(">i", len(req)) + req)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = self.s.recv(1 << 16)
            check(chunk, "connection closed")
            buf += chunk
        check(struct.unpack(">i", buf[4:8])[0] == self.corr, "correlation id")
        return buf[8:]

    def produce(self, records_field, topic=TOPIC, version=7):
        t = topic.encode()
        body = (struct.pack(">hhi", -1, -1, 10000) + struct.pack(">ih", 1, len(t)) + t +
                struct.pack(">ii", 1, 0) + struct.pack(">i", len(records_field)) + records_field)
        r = self.call(0, version, body)
        n = struct.unpack(">h", r[4:6])[0]
        pos = 6 + n + 4
        _, err, base = struct.unpack(">ihq", r[pos:pos + 14])
        return err, base

    def latest_offset(self, topic=TOPIC):
        t = topic.encode()
        body = struct.pack(">iih", -1, 1, len(t)) + t + struct.pack(">iiq", 1, 0, -1)
        r = self.call(2, 1, body)
        n = struct.unpack(">h", r[4:6])[0]
        pos = 6 + n + 4
        _, err, _ts, offset = struct.unpack(">ihqq", r[pos:pos + 22])
        check(err == 0, f"ListOffsets error {err}")
        return offset


def test(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        amqp = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
        amqp.channel().queue_declare(TOPIC, durable=True, arguments={"x-queue-type": "stream"})
        k = Kafka(b.port)
        good = []  # every value acknowledged, in offset order

        def produce_good(n, codec=None):
            values = [f"good-{len(good) + i}".encode() for i in range(n)]
            section = records(values)
            if codec == "gzip":
                raw = batch(gzip(section), n, attributes=1)
            elif codec == "zstd":
                raw = batch(zstd_frame(section), n, attributes=4)
            else:
                raw = batch(section, n)
            err, base = k.produce(raw)
            check(err == 0 and base == len(good),
                  f"good batch ({codec}): error {err}, base {base}, expected {len(good)}")
            good.extend(values)

        produce_good(3)
        one = record(0, b"lie")
        lies = {
            "recordsCount 0": batch(one, 0, last_offset_delta=0),
            "recordsCount 1000": batch(one, 1000, last_offset_delta=0),
            "recordsCount 2^31-1": batch(one, 2**31 - 1, last_offset_delta=0),
            "lastOffsetDelta 1000": batch(one, 1, last_offset_delta=1000),
            "lastOffsetDelta 2^31-1": batch(one, 1, last_offset_delta=2**31 - 1),
            "both lying alike": batch(one, 1001, last_offset_delta=1000),
            "offset deltas 0,2,1": batch(record(0, b"a") + record(2, b"b") + record(1, b"c"), 3),
            "offset deltas 0,0,0": batch(record(0, b"a") + record(0, b"b") + record(0, b"c"), 3),
            "record length overruns": batch(varint(200) + one[1:], 1),
            "second record cut short": batch(one + varint(60) + b"\x00\x00\x02", 2),
            "bytes after the last record": batch(one + b"\x00\x00", 1),
            "codec 7": batch(one, 1, attributes=7),
            "codec 5": batch(one, 1, attributes=5),
            "zstd over garbage": batch(b"these bytes are not zstd at all", 1, attributes=4),
            "gzip over garbage": batch(b"these bytes are not gzip at all", 1, attributes=1),
            "zstd over plain records": batch(one, 1, attributes=4),
            "gzip cut short": batch(gzip(records([b"x"] * 5))[:-6], 5, attributes=1),
            "control bit": batch(one, 1, attributes=0x20),
            "transactional bit": batch(one, 1, attributes=0x10),
            "baseOffset 5": batch(one, 1, base_offset=5),
            "two batches in one partition": batch(one, 1) + batch(one, 1),
            "zstd bomb (1 GiB value)":
                batch(zstd_frame(bomb_prefix((1 << 30) - 64), (1 << 30) - 63), 1, attributes=4),
            "zstd bomb (1 GiB of zeros)": batch(zstd_frame(b"", 1 << 30), 1, attributes=4),
        }
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        gz = z.compress(bomb_prefix(80 << 20))
        chunk = bytes(1 << 20)
        for _ in range(80):
            gz += z.compress(chunk)
        gz += z.compress(b"\x00") + z.flush()
        lies["gzip bomb (80 MiB value)"] = batch(gz, 1, attributes=1)
        check(len(lies["zstd bomb (1 GiB value)"]) < 40000, "the bomb is small")

        for i, (name, raw) in enumerate(lies.items()):
            before = k.latest_offset()
            started = time.time()
            err, base = k.produce(raw)
            took = time.time() - started
            check(err == INVALID_RECORD, f"{name}: error {err} (base {base}), want {INVALID_RECORD}")
            check(took < 10, f"{name}: refused after {took:.1f} s")
            check(k.latest_offset() == before, f"{name}: latest offset moved from {before}")
            produce_good(1 + i % 3, codec=(None, "gzip", "zstd")[i % 3])
        # The same lie with a damaged CRC is damage on the way: CORRUPT_MESSAGE.
        err, _ = k.produce(batch(one, 1000, last_offset_delta=0, bad_crc=True))
        check(err == CORRUPT_MESSAGE, f"bad CRC: error {err}")
        # zstd needs Produce v7 (Kafka's rule).
        err, _ = k.produce(batch(zstd_frame(records([b"z"])), 1, attributes=4), version=3)
        check(err == UNSUPPORTED_COMPRESSION, f"zstd in Produce v3: error {err}")
        # Only the broker writes its internal topic.
        err, _ = k.produce(batch(records([b"offsets"]), 1), topic="__consumer_offsets")
        check(err == INVALID_TOPIC, f"__consumer_offsets: error {err}")
        produce_good(2)
        check(k.latest_offset() == len(good), f"log end {k.latest_offset()} != {len(good)}")

        # Readers beside: every good record, in order, nothing else.
        got = consume_from_start(b, TOPIC, [0])[0]
        check([o for o, _ in got] == list(range(len(good))), f"kafka offsets {[o for o, _ in got]}")
        check([v for _, v in got] == good, "kafka consumer reads every good record in order")
        ch = amqp.channel()
        ch.basic_qos(prefetch_count=100)
        seen = []
        deadline = time.time() + 20
        for m, p, body in ch.consume(TOPIC, arguments={"x-stream-offset": "first"},
                                     inactivity_timeout=0.5):
            if m is not None:
                seen.append((p.headers["x-stream-offset"], body))
                ch.basic_ack(m.delivery_tag)
            if len(seen) >= len(good) or time.time() > deadline:
                break
        ch.close()
        check([o for o, _ in seen] == list(range(len(good))),
              f"amqp offsets {[o for o, _ in seen]}")
        check([v for _, v in seen] == good, "amqp stream consumer reads every good record")
        amqp.close()
        with open(b.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        check("refused with INVALID_RECORD" in log, "refusals are logged")
        check("cannot be decoded" not in log, "no undecodable batch stored")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
