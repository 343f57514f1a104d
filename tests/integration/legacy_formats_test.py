"""Message format v0/v1: Produce v0-2 and Fetch v2-3.

librdkafka before confluentinc/librdkafka#4956 (Debian's 2.0.2: kcat, confluent-kafka)
compresses gzip/snappy/lz4 only when the broker's ApiVersions list Produce v0.
Here: kcat and confluent-kafka with each of those codecs now store COMPRESSED batches (the
attributes read from the segment files after a clean stop) that consume back intact; a raw
Produce v2 with a gzip-wrapped magic-1 message set is up-converted to a gzip RecordBatch v2,
and Fetch v2 / v3 down-convert to magic-1 messages (checked byte by byte, CRC included);
a corrupt legacy message gets CORRUPT_MESSAGE."""
import glob
import gzip
import json
import os
import socket
import struct
import subprocess
import zlib

from harness import Broker, check, read_frame, run

KCAT = "/usr/bin/kcat"
CODECS = {"gzip": 1, "snappy": 2, "lz4": 3}


def kcat(broker, *args, input_data=None):
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "broker.address.family=v4"] + list(args)
    r = subprocess.run(cmd, input=input_data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {r.stderr.decode(errors='replace')}")
    return r


def consume(broker, topic):
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J").stdout.decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---- raw protocol ----

def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, corr, body):
    payload = struct.pack(">hhi", api_key, version, corr) + string("legacy-test") + body
    return struct.pack(">i", len(payload)) + payload


def message(offset, magic, attributes, key, value, timestamp=0):
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    for f in (key, value):
        body += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return struct.pack(">qiI", offset, len(body) + 4, crc) + body


def parse_messages(data):
    """Magic-1 messages (offset, timestamp, attributes, key, value); checks size and CRC."""
    out, pos = [], 0
    while pos < len(data):
        offset, size, crc = struct.unpack_from(">qiI", data, pos)
        body = data[pos + 16:pos + 12 + size]
        check(len(body) == size - 4, "message cut")
        check(zlib.crc32(body) & 0xFFFFFFFF == crc, f"CRC of message at {offset}")
        magic, attrs, ts = struct.unpack_from(">bbq", body, 0)
        check(magic == 1, f"magic {magic}")
        p, fields = 10, []
        for _ in range(2):
            (n,) = struct.unpack_from(">i", body, p)
            p += 4
            fields.append(None if n < 0 else body[p:p + n])
            p += max(n, 0)
        out.append((offset, ts, attrs, fields[0], fields[1]))
        pos += 12 + size
    return out


def produce_v2(s, corr, topic, records, version=2):
    body = struct.pack(">hi", -1, 10000) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">ii", 0, len(records)) + records
    s.sendall(request(0, version, corr, body))
    r = read_frame(s)
    rcorr, ntopics = struct.unpack_from(">ii", r, 0)
    check(rcorr == corr and ntopics == 1, f"produce v{version} response header")
    (tlen,) = struct.unpack_from(">h", r, 8)
    pos = 10 + tlen
    nparts, index, err, base = struct.unpack_from(">iihq", r, pos)
    # v1 adds throttle_time_ms, v2 log_append_time_ms.
    size = pos + 18 + (8 if version >= 2 else 0) + (4 if version >= 1 else 0)
    check(len(r) == size and nparts == 1 and index == 0, f"produce v{version} response shape")
    return err, base


def fetch(s, corr, version, topic, offset, partition_max=1 << 20, max_bytes=None):
    body = struct.pack(">iii", -1, 100, 1)
    if version >= 3:
        body += struct.pack(">i", max_bytes if max_bytes is not None else 1 << 20)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">iiqi", 1, 0, offset, partition_max)
    s.sendall(request(1, version, corr, body))
    r = read_frame(s)
    rcorr, throttle, ntopics = struct.unpack_from(">iii", r, 0)
    check(rcorr == corr and ntopics == 1, f"fetch v{version} response header")
    (tlen,) = struct.unpack_from(">h", r, 12)
    pos = 14 + tlen
    nparts, part, err, hw, rlen = struct.unpack_from(">iihqi", r, pos)
    pos += 22
    check(nparts == 1 and part == 0, "fetch response shape")
    records = r[pos:pos + max(rlen, 0)]
    check(pos + max(rlen, 0) == len(r), "fetch response length")
    return err, hw, records


def raw_legacy(b):
    s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    # ApiVersions v0: Produce 2-9, Fetch 2-12.
    s.sendall(request(18, 0, 1, b""))
    r = read_frame(s)
    (corr, err, n) = struct.unpack_from(">ihi", r, 0)
    versions = {k: (lo, hi) for k, lo, hi in
                (struct.unpack_from(">hhh", r, 10 + 6 * i) for i in range(n))}
    check(versions[0] == (0, 9) and versions[1] == (2, 12), f"advertised {versions.get(0)} {versions.get(1)}")

    # Produce v2: an uncompressed magic-1 set, then a gzip wrapper (relative inner offsets).
    plain = message(0, 1, 0, b"k0", b"plain-0", 1000) + message(1, 1, 0, None, b"plain-1", 1001)
    err, base = produce_v2(s, 2, "raw", plain)
    check(err == 0 and base == 0, f"produce v2 plain: err {err} base {base}")
    inner = b"".join(message(i, 1, 0, b"key%d" % i, b"gz-%d-" % i + b"z" * 200, 2000 + i)
                     for i in range(5))
    wrapped = message(4, 1, 1, None, gzip.compress(inner), 2004)
    err, base = produce_v2(s, 3, "raw", wrapped)
    check(err == 0 and base == 2, f"produce v2 gzip: err {err} base {base}")
    # Produce v0 and v1 with magic-0 messages (no timestamps).
    err, base = produce_v2(s, 5, "raw0", message(0, 0, 0, b"a", b"m0"), version=0)
    check(err == 0 and base == 0, f"produce v0: err {err} base {base}")
    err, base = produce_v2(s, 6, "raw0", message(0, 0, 0, None, b"m1"), version=1)
    check(err == 0 and base == 1, f"produce v1: err {err} base {base}")
    _, _, records = fetch(s, 7, 2, "raw0", 0)
    got = [(o, ts, k, v) for o, ts, a, k, v in parse_messages(records)]
    check(got == [(0, -1, b"a", b"m0"), (1, -1, None, b"m1")], f"raw0: {got}")
    # A corrupt legacy message: CORRUPT_MESSAGE (2).
    bad = bytearray(message(0, 1, 0, b"k", b"v", 1))
    bad[-1] ^= 1
    err, _ = produce_v2(s, 4, "raw", bytes(bad))
    check(err == 2, f"bad CRC: err {err}")

    expected = [(0, 1000, b"k0", b"plain-0"), (1, 1001, None, b"plain-1")] + \
               [(2 + i, 2000 + i, b"key%d" % i, b"gz-%d-" % i + b"z" * 200) for i in range(5)]
    for version in (2, 3):
        err, hw, records = fetch(s, 10 + version, version, "raw", 0)
        check(err == 0 and hw == 7, f"fetch v{version}: err {err} hw {hw}")
        got = [(o, ts, k, v) for o, ts, a, k, v in parse_messages(records)]
        check(got == expected, f"fetch v{version} messages {got}")
        # From the middle of the gzip batch.
        err, _, records = fetch(s, 20 + version, version, "raw", 4)
        check([m[0] for m in parse_messages(records)] == [4, 5, 6], f"fetch v{version} from 4")
    # Limits: at least one message even when partition_max_bytes is tiny; v3 max_bytes.
    err, _, records = fetch(s, 30, 2, "raw", 2, partition_max=10)
    check(len(parse_messages(records)) == 1, "fetch v2 at least one message")
    err, _, records = fetch(s, 31, 3, "raw", 2, max_bytes=600)
    n = len(parse_messages(records))
    check(1 <= n < 5 and len(records) <= 600, f"fetch v3 max_bytes: {n} messages, {len(records)} bytes")
    s.close()


def batch_codecs(data_dir, topic):
    codecs = []
    for path in sorted(glob.glob(os.path.join(data_dir, f"{topic}-0", "*.log"))):
        data = open(path, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            if length <= 0:
                break
            (attrs,) = struct.unpack_from(">h", data, pos + 21)
            codecs.append(attrs & 7)
            pos += 12 + length
    return codecs


def test(args):
    from confluent_kafka import Producer
    b = Broker(args.sluice, ["--num-partitions", "1"]).start()
    try:
        raw_legacy(b)
        for codec in CODECS:
            payload = "".join(f"{codec}-{i}-" + "x" * 100 + "\n" for i in range(300))
            r = kcat(b, "-P", "-t", f"kc-{codec}", "-p", "0", "-z", codec, "-d", "feature",
                     input_data=payload.encode())
            err = r.stderr.decode(errors="replace")
            check("does not support compression" not in err, f"kcat {codec}: {err[-500:]}")
            got = consume(b, f"kc-{codec}")
            check([m["payload"] + "\n" for m in got] == payload.splitlines(keepends=True),
                  f"kcat {codec}: got {len(got)} records")

            p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                          "compression.type": codec, "linger.ms": 50})
            for i in range(300):
                p.produce(f"cf-{codec}", key=f"k{i}".encode(), value=f"{codec}:{i}:".encode() * 20,
                          partition=0)
            check(p.flush(30) == 0, f"confluent {codec}: undelivered")
            got = consume(b, f"cf-{codec}")
            check([(m["key"], m["payload"]) for m in got] ==
                  [(f"k{i}", f"{codec}:{i}:" * 20) for i in range(300)],
                  f"confluent {codec}: got {len(got)} records")
        check(b.stop() == 0, "clean shutdown")
        for codec, bits in CODECS.items():
            for topic in (f"kc-{codec}", f"cf-{codec}"):
                codecs = batch_codecs(b.data_dir, topic)
                check(codecs and all(c == bits for c in codecs),
                      f"{topic}: batch codecs {codecs}, want all {bits}")
        check(batch_codecs(b.data_dir, "raw") == [0, 1], "raw: uncompressed then gzip batch")
        print("  gzip/snappy/lz4 stored compressed for kcat and confluent-kafka")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
