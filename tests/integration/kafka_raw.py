"""Raw Kafka protocol for the limit tests (classic, non-flexible request versions only), a
well-behaved producer + consumer group to run beside hostile traffic, and the broker's RSS.
Field layouts are the Kafka protocol's."""
import collections
import socket
import struct
import threading
import time

from harness import check

# ---- record batches ----

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(v):
    v = (v << 1) ^ (v >> 63)
    out = b""
    while True:
        if v < 0x80:
            return out + bytes([v])
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7


def batch(pid, epoch, seq, values, ts=None):
    """A RecordBatch v2 (uncompressed) of `values`, producer id/epoch/base sequence given
    (pid -1: not idempotent)."""
    recs = b""
    for i, v in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    ts = int(time.time() * 1000) if ts is None else ts
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, pid, epoch, seq,
                            len(values)) + recs
    crc_part = struct.pack(">bI", 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qii", 0, 4 + len(crc_part), 0) + crc_part


# ---- encoding ----

def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def bytes_(b):
    return i32(-1) if b is None else i32(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def i8(self):
        return self.take(">b")

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.d[self.p:self.p + n].decode()
        self.p += n
        return s

    def bytes_(self):
        n = self.i32()
        if n < 0:
            return None
        b = self.d[self.p:self.p + n]
        self.p += n
        return b


class Conn:
    """One connection; `call` sends a request and returns its response body, `send`/`receive`
    pipeline (answers come in request order)."""

    def __init__(self, port, client_id="limits", timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.client_id = client_id
        self.corr = 0
        self.sent = collections.deque()

    def send(self, key, version, body):
        self.corr += 1
        req = struct.pack(">hhi", key, version, self.corr) + string(self.client_id) + body
        self.s.sendall(struct.pack(">i", len(req)) + req)
        self.sent.append(self.corr)

    def send_many(self, requests):
        """Pipelines (key, version, body) requests in one write."""
        out = []
        for key, version, body in requests:
            self.corr += 1
            req = struct.pack(">hhi", key, version, self.corr) + string(self.client_id) + body
            out.append(struct.pack(">i", len(req)) + req)
            self.sent.append(self.corr)
        self.s.sendall(b"".join(out))

    def receive(self):
        size = struct.unpack(">i", self._exactly(4))[0]
        frame = self._exactly(size)
        corr = struct.unpack(">i", frame[:4])[0]
        check(corr == self.sent.popleft(), "answers in request order")
        return frame[4:]

    def call(self, key, version, body):
        self.send(key, version, body)
        return self.receive()

    def close(self):
        self.s.close()

    def _exactly(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(min(n - len(buf), 1 << 20))
            check(chunk, f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)


# ---- requests (key, version, body) and their answers ----

def join_group_v3(group, member_id="", protocols=(("range", b"md"),), session_ms=30000,
                  rebalance_ms=60000):
    body = (string(group) + i32(session_ms) + i32(rebalance_ms) + string(member_id) +
            string("consumer") +
            array([string(n) + bytes_(m) for n, m in protocols]))
    return 11, 3, body


def parse_join_group_v3(data):
    """(error_code, generation, member_id, number of members listed)"""
    r = Reader(data)
    r.i32()  # throttle
    err, gen = r.i16(), r.i32()
    r.string()  # protocol
    r.string()  # leader
    member = r.string()
    return err, gen, member, r.i32()


def delete_topics_v3(names):
    return 20, 3, array([string(n) for n in names]) + i32(5000)


def parse_delete_topics_v3(data):
    """{name: error_code}"""
    r = Reader(data)
    r.i32()
    return {r.string(): r.i16() for _ in range(r.i32())}


def create_partitions_v1(name, count):
    body = array([string(name) + i32(count) + i32(-1)]) + i32(5000) + i8(0)
    return 37, 1, body


def parse_create_partitions_v1(data):
    """{name: (error_code, error_message)}"""
    r = Reader(data)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        out[name] = (r.i16(), r.string())
    return out


def incremental_alter_configs_v0(topic, configs, validate_only=False):
    """configs: [(name, value)] set (operation 0)."""
    resource = (i8(2) + string(topic) +
                array([string(n) + i8(0) + string(v) for n, v in configs]))
    return 44, 0, array([resource]) + i8(1 if validate_only else 0)


def parse_incremental_alter_configs_v0(data):
    """{resource name: (error_code, error_message)}"""
    r = Reader(data)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        err, msg = r.i16(), r.string()
        r.i8()
        out[r.string()] = (err, msg)
    return out


def metadata_v1(topics=None):
    body = i32(-1) if topics is None else array([string(t) for t in topics])
    return 3, 1, body


def parse_metadata_v1(data):
    """{name: (error_code, is_internal, partition count)}"""
    r = Reader(data)
    for _ in range(r.i32()):
        r.i32()
        r.string()
        r.i32()
        r.string()
    r.i32()  # controller
    out = {}
    for _ in range(r.i32()):
        err, name, internal = r.i16(), r.string(), r.i8()
        n = r.i32()
        for _ in range(n):
            r.i16()
            r.i32()
            r.i32()
            for _ in range(2):
                for _ in range(r.i32()):
                    r.i32()
        out[name] = (err, bool(internal), n)
    return out


def produce_v3(topic, partition, records, acks=-1):
    body = (string(None) + i16(acks) + i32(10000) +
            array([string(topic) + array([i32(partition) + bytes_(records)])]))
    return 0, 3, body


def parse_produce_v3(data):
    """(error_code, base_offset) of the first partition."""
    r = Reader(data)
    r.i32()  # topics
    r.string()
    r.i32()  # partitions
    r.i32()  # partition index
    return r.i16(), r.i64()


def describe_groups_v0(groups):
    return 15, 0, array([string(g) for g in groups])


def parse_describe_groups_v0(data):
    """{group: (error_code, state, member count)}"""
    r = Reader(data)
    out = {}
    for _ in range(r.i32()):
        err, group, state = r.i16(), r.string(), r.string()
        r.string()
        r.string()
        n = r.i32()
        for _ in range(n):
            r.string()
            r.string()
            r.string()
            r.bytes_()
            r.bytes_()
        out[group] = (err, state, n)
    return out


def init_producer_id_v0():
    return 22, 0, string(None) + i32(60000)


def parse_init_producer_id_v0(data):
    """(error_code, producer_id, epoch)"""
    r = Reader(data)
    r.i32()
    return r.i16(), r.i64(), r.i16()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ---- a well-behaved client pair beside hostile traffic ----

class Bystander:
    """An idempotent producer (acks=all) and a group consumer on their own topic, in threads.
    Every error is kept; the longest delivery latency, end-to-end latency and gap between
    consumed records are measured for records sent after the consumer got its first one."""

    def __init__(self, bootstrap, topic, group, interval=0.01):
        self.bootstrap, self.topic, self.group, self.interval = bootstrap, topic, group, interval
        self.errors = []
        self.stop_ev = threading.Event()
        self.consuming = threading.Event()
        self.lock = threading.Lock()
        self.measure_from = float("inf")
        self.delivery_max = 0.0
        self.e2e_max = 0.0
        self.gap_max = 0.0
        self.produced = 0
        self.values = []
        self.threads = []

    def start(self, timeout=30):
        # The topic exists before the consumer subscribes: a consumer whose first metadata
        # misses the topic reports "Subscribed topic not available" (a race with the producer's
        # auto-creation, not a bystander harmed).
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "broker.address.family": "v4"})
        for f in admin.create_topics([NewTopic(self.topic, 1, 1)]).values():
            f.result(timeout)
        # Daemons: a failing test must not wait for them.
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]
        for t in self.threads:
            t.start()
        check(self.consuming.wait(timeout), f"bystander consumer got nothing: {self.errors}")
        return self

    def _produce(self):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap, "broker.address.family": "v4",
                      "enable.idempotence": True, "acks": "all", "linger.ms": 1})

        def report(err, msg):
            if err is not None:
                with self.lock:
                    self.errors.append(f"delivery: {err}")
                return
            sent = float(msg.value().split()[1])
            if sent >= self.measure_from:
                with self.lock:
                    self.delivery_max = max(self.delivery_max, time.time() - sent)

        i = 0
        deadline = time.time() + 600
        while not self.stop_ev.is_set() and time.time() < deadline:
            try:
                p.produce(self.topic, value=f"{i} {time.time()!r}".encode(), on_delivery=report)
                i += 1
            except BufferError as e:
                self.errors.append(f"produce: {e}")
            p.poll(self.interval)
        if p.flush(20) != 0:
            self.errors.append("producer did not flush")
        self.produced = i

    def _consume(self):
        from confluent_kafka import Consumer, KafkaError
        c = Consumer({"bootstrap.servers": self.bootstrap, "broker.address.family": "v4",
                      "group.id": self.group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": True, "auto.commit.interval.ms": 200})
        c.subscribe([self.topic])
        last = None
        idle_since = None
        deadline = time.time() + 600
        while time.time() < deadline:
            m = c.poll(0.05)
            now = time.time()
            if m is None:
                if self.stop_ev.is_set():
                    idle_since = idle_since or now
                    if now - idle_since > 2:
                        break
                continue
            idle_since = None
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    with self.lock:
                        self.errors.append(f"consume: {m.error()}")
                continue
            sent = float(m.value().split()[1])
            with self.lock:
                self.values.append(m.value())
                if sent >= self.measure_from:
                    self.e2e_max = max(self.e2e_max, now - sent)
                    if not self.stop_ev.is_set():
                        self.gap_max = max(self.gap_max, now - last)
            last = now
            if not self.consuming.is_set():
                # Records produced while the group formed arrive late: measure what follows.
                self.measure_from = now
                self.consuming.set()
        c.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(60)
        return self

    def check_unharmed(self, limit=1.0):
        """No error, nothing lost or duplicated, no stall longer than `limit` seconds."""
        print(f"  bystander: {self.produced} produced, {len(self.values)} consumed, longest "
              f"delivery {self.delivery_max:.3f}s, end-to-end {self.e2e_max:.3f}s, gap "
              f"{self.gap_max:.3f}s")
        check(not self.errors, f"bystander errors: {self.errors[:5]}")
        check(len(set(self.values)) == len(self.values), "bystander got duplicates")
        check(len(self.values) == self.produced,
              f"bystander consumed {len(self.values)} of {self.produced}")
        check(self.delivery_max < limit, f"delivery stalled {self.delivery_max:.3f}s")
        check(self.e2e_max < limit, f"end-to-end stalled {self.e2e_max:.3f}s")
        check(self.gap_max < limit, f"consumer stalled {self.gap_max:.3f}s")
