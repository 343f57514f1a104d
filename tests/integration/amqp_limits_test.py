"""AMQP resource limits (issue 12, finding 6), each with the effect a client sees, while a
well-behaved pika publisher (confirms) and consumer beside the hostile client see no error
and no stall longer than 1 s:

- message caches: one budget for all queues (--amqp-message-cache-bytes): 40 queues x 33 MiB
  never consumed keep the broker's RSS growth under the budget plus slack, and every
  message is still delivered (read back from the log);
- max-queues (vhost limit, default from RLIMIT_NOFILE): queue.declare over it gets 406
  "queue limit in vhost '/' (N) is reached", whatever the queue kind;
- channel_max / user max-channels / consumer_max_per_channel / vhost and user
  max-connections: 504 / 530 with RabbitMQ's texts;
- uncommitted tx publishes bounded per connection (--amqp-max-uncommitted-bytes): the
  channel gets 406, its work is discarded, the broker's peak RSS stays bounded;
- output back-pressure (--amqp-max-unsent-bytes): pipelined basic.get from a client that
  reads nothing is not answered past the limit, a consumer that reads nothing (prefetch 0)
  and a requester that reads no direct replies hold the broker's memory bounded;
- the memory alarm (vm_memory_high_watermark): over it, publishers get Connection.Blocked
  "low on memory" and are not read; below it again, Connection.Unblocked.

RSS is read from /proc/PID/status of the (ASan) broker, with ASan's quarantine of freed
memory cut to 16 MiB so that it measures what the broker holds."""
# ctest-timeout: 420
import multiprocessing
import os
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from amqp_raw import HEADER, frame, longstr, method, shortstr  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import (ChannelClosedByBroker, ConnectionClosedByBroker,  # noqa: E402
                             UnroutableError)

MiB = 1 << 20
FRAME_MAX = 131072


def publish_frames(channel, routing_key, body, exchange=b"", flags=0, props=b""):
    """basic.publish + content header + body frames of at most FRAME_MAX."""
    out = [method(channel, 60, 40, b"\x00\x00" + shortstr(exchange) + shortstr(routing_key) +
                  b"\x00"),
           frame(2, channel, struct.pack(">HHQH", 60, 0, len(body), flags) + props)]
    step = FRAME_MAX - 8
    for i in range(0, len(body), step):
        out.append(frame(3, channel, body[i:i + step]))
    return b"".join(out)


class Raw:
    """An AMQP client on a raw socket: pipelines what real clients would not, and can leave
    its socket unread (a small receive buffer makes the broker's output back up at once)."""

    def __init__(self, port, rcvbuf=None, user=b"guest", password=b"guest"):
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(20)
        self.s.connect(("127.0.0.1", port))
        self.buf = b""
        self.user, self.password = user, password

    def send(self, data):
        self.s.sendall(data)

    def reset(self):
        """Goes away abruptly (RST): a FIN would queue behind unsent data the broker is not
        reading, as a dead client's would until its heartbeat times out."""
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()

    def read_frame(self):
        while True:
            if len(self.buf) >= 7:
                t, ch, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    self.buf = self.buf[8 + size:]
                    return t, ch, payload
            data = self.s.recv(1 << 20)
            if not data:
                return None
            self.buf += data

    def read_method(self):
        """(channel, class, method, args) of the next method frame (content frames and
        heartbeats skipped); None at EOF."""
        while True:
            f = self.read_frame()
            if f is None:
                return None
            if f[0] == 1:
                cls, mid = struct.unpack(">HH", f[2][:4])
                return f[1], cls, mid, f[2][4:]

    def expect(self, channel, cls, mid, what):
        m = self.read_method()
        check(m is not None and m[:3] == (channel, cls, mid), f"{what}: got {m}")
        return m

    def connect(self, channel_max=0):
        """Handshake up to connection.open; returns the open-ok or the close."""
        self.send(HEADER)
        self.expect(0, 10, 10, "connection.start")
        self.send(method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") +
                         longstr(b"\x00" + self.user + b"\x00" + self.password) +
                         shortstr(b"en_US")))
        self.expect(0, 10, 30, "connection.tune")
        self.send(method(0, 10, 31, struct.pack(">HIH", channel_max, FRAME_MAX, 0)))
        self.send(method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"))
        return self.read_method()

    def handshake(self, channels=(1,)):
        m = self.connect()
        check(m is not None and m[1:3] == (10, 41), f"connection.open-ok: {m}")
        for c in channels:
            self.open_channel(c)
        return self

    def open_channel(self, c):
        self.send(method(c, 20, 10, shortstr(b"")))
        return self.expect(c, 20, 11, f"channel.open-ok {c}")

    def declare(self, channel, name, durable=False):
        self.send(method(channel, 50, 10, b"\x00\x00" + shortstr(name) +
                         bytes([2 if durable else 0]) + struct.pack(">I", 0)))
        m = self.expect(channel, 50, 11, f"queue.declare-ok {name}")
        n = m[3][0]
        return struct.unpack(">II", m[3][1 + n:9 + n])  # message count, consumer count

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def reply(m):
    """(code, text) of a connection.close / channel.close method."""
    code = struct.unpack(">H", m[3][:2])[0]
    n = m[3][2]
    return code, m[3][3:3 + n].decode()


def rss(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def connect(port, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", port, socket_timeout=15, blocked_connection_timeout=None, **kw))


class Bystander:
    """A well-behaved publisher (confirms, 1 KiB messages every 10 ms) and consumer on their own
    queue, in a child process (the test's own heavy sends must not stall them through the
    GIL). Records errors, the slowest publish (until its confirm) and the longest gap between
    deliveries, from the moment both are running."""

    def __init__(self, port, queue="bystander"):
        self.port, self.queue = port, queue
        ctx = multiprocessing.get_context("fork")
        self.stop_event, self.ready = ctx.Event(), ctx.Event()
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=self._run)

    def start(self):
        self.proc.start()
        check(self.ready.wait(15), "bystander running")
        return self

    def _run(self):
        stats = {"errors": [], "published": 0, "received": 0, "max_publish": 0.0,
                 "max_gap": 0.0}
        warm = threading.Event()

        def publish():
            try:
                c = connect(self.port)
                ch = c.channel()
                ch.confirm_delivery()
                while not self.stop_event.is_set():
                    t0 = time.time()
                    ch.basic_publish("", self.queue, b"b" * 1024)
                    if warm.is_set():
                        stats["max_publish"] = max(stats["max_publish"], time.time() - t0)
                        stats["published"] += 1
                    c.sleep(0.01)
                c.close()
            except Exception as e:  # noqa: BLE001
                stats["errors"].append(f"publisher: {e!r}")

        def consume():
            try:
                c = connect(self.port)
                ch = c.channel()
                last = [None]
                seen = [0]

                def on_message(ch_, m, p, body):
                    now = time.time()
                    seen[0] += 1
                    if warm.is_set():
                        stats["max_gap"] = max(stats["max_gap"], now - last[0])
                        stats["received"] += 1
                    elif seen[0] >= 5:
                        warm.set()
                        self.ready.set()
                    last[0] = now

                ch.basic_consume(self.queue, on_message, auto_ack=True)
                while not self.stop_event.is_set():
                    c.process_data_events(time_limit=0.05)
                c.close()
            except Exception as e:  # noqa: BLE001
                stats["errors"].append(f"consumer: {e!r}")
                self.ready.set()

        try:
            c = connect(self.port)
            c.channel().queue_declare(self.queue)
            c.close()
        except Exception as e:  # noqa: BLE001
            stats["errors"].append(f"declare: {e!r}")
            self.ready.set()
        threads = [threading.Thread(target=publish), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.results.put(stats)

    def stop_and_check(self, what):
        self.stop_event.set()
        stats = self.results.get(timeout=30)
        self.proc.join(10)
        print(f"{what}: bystander published {stats['published']}, received "
              f"{stats['received']}, slowest publish {stats['max_publish']:.3f} s, longest "
              f"delivery gap {stats['max_gap']:.3f} s")
        check(not stats["errors"], f"{what}: bystander errors {stats['errors']}")
        check(stats["published"] > 0 and stats["received"] > 0, f"{what}: bystander progress")
        check(stats["max_publish"] < 1.0,
              f"{what}: bystander publish stalled {stats['max_publish']:.2f} s")
        check(stats["max_gap"] < 1.0,
              f"{what}: bystander deliveries stalled {stats['max_gap']:.2f} s")


def started(args, extra=()):
    b = harness.AmqpBroker(args.sluice, list(extra))
    b.start()
    return b


def finish(b):
    """Cleans up after a broker; when the test is failing, shows the end of its log first."""
    if sys.exc_info()[0] is not None:
        print(f"--- broker log (end) ---\n{b.tail()}")
    b.cleanup()


def wait_count(ch, queue, want, timeout=20):
    deadline = time.time() + timeout
    while True:
        n = ch.queue_declare(queue, passive=True).method.message_count
        if n == want or time.time() > deadline:
            return n
        time.sleep(0.05)


def test_message_cache_budget(args):
    """40 queues x 33 MiB published and never consumed (1.43 GB RSS on the old main): the
    caches together stay within the default 256 MiB budget."""
    b = started(args)
    try:
        by = Bystander(b.amqp_port).start()
        time.sleep(0.5)
        before = rss(b.proc.pid)
        r = Raw(b.amqp_port).handshake()
        body = os.urandom(MiB)
        for q in range(40):
            name = b"cache%d" % q
            r.declare(1, name)
            message = publish_frames(1, name, body)
            for _ in range(33):
                r.send(message)
        counts = [r.declare(1, b"cache%d" % q)[0] for q in (0, 39)]
        check(counts == [33, 33], f"every message stored: {counts}")
        grown = rss(b.proc.pid) - before
        print(f"message caches: RSS grew {grown / MiB:.0f} MiB for 1320 MiB unconsumed "
              f"in 40 queues")
        # The budget (256 MiB), plus what the 40 queue logs keep (spare write buffers: 135 MiB
        # measured with --amqp-message-cache-bytes 0), plus slack. The old per-queue bound
        # held 40 x 32 MiB of caches.
        check(grown < 512 * MiB, f"RSS grew {grown / MiB:.0f} MiB (bound 512 MiB)")
        # Evicted messages are read back from the log: every one arrives intact.
        for q in (0, 17, 39):
            name = b"cache%d" % q
            r.send(b"".join(method(1, 60, 70, b"\x00\x00" + shortstr(name) + b"\x01")
                            for _ in range(33)))
            for i in range(33):
                m = r.expect(1, 60, 71, f"get-ok {name} {i}")
                h = r.read_frame()
                size = struct.unpack(">Q", h[2][4:12])[0]
                got = b""
                while len(got) < size:
                    got += r.read_frame()[2]
                check(got == body, f"{name} message {i} intact")
        r.close()
        by.stop_and_check("message caches")
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


def test_max_queues(args):
    """With RLIMIT_NOFILE 600 (soft and hard: the broker raises its soft limit to the hard one)
    the default max-queues is 600 / 2 / 3 = 100: every kind of queue counts, the 101st declare
    gets 406, deleting one makes room."""
    b = harness.AmqpBroker(args.sluice, [])
    b.prefix = ["prlimit", "--nofile=600:600", "--"]
    b.start()
    try:
        by = Bystander(b.amqp_port).start()  # its queue is number 1
        owner = connect(b.amqp_port)
        ch = owner.channel()
        for i in range(50):
            ch.queue_declare(f"durable{i}", durable=True)
        for i in range(20):
            ch.queue_declare(f"exclusive{i}", exclusive=True)
        for i in range(20):
            ch.queue_declare(f"autodelete{i}", auto_delete=True)
        for i in range(8):
            ch.queue_declare("")  # server-named
        ch.queue_declare("stream0", durable=True, arguments={"x-queue-type": "stream"})
        try:
            ch.queue_declare("one-too-many")
            raise AssertionError("the 101st queue was declared")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406 and e.reply_text ==
                  "PRECONDITION_FAILED - cannot declare queue 'one-too-many': queue limit in "
                  "vhost '/' (100) is reached", f"{e.reply_code} {e.reply_text}")
        ch = owner.channel()
        # Existing queues can still be declared (actively and passively) and used.
        ch.queue_declare("durable0", durable=True)
        ch.queue_declare("exclusive0", passive=True)
        ch.queue_delete("durable0")
        ch.queue_declare("one-too-many")
        # The exclusive queues go with their connection: room for 20 more.
        owner.close()
        other = connect(b.amqp_port)
        och = other.channel()
        for i in range(20):
            och.queue_declare(f"later{i}")
        try:
            och.queue_declare("later20")
            raise AssertionError("the 101st queue was declared")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"{e.reply_code} {e.reply_text}")
        fds = len(os.listdir(f"/proc/{b.proc.pid}/fd"))
        print(f"max-queues: 100 queues, broker holds {fds} fds (RLIMIT_NOFILE 600)")
        check(fds < 600, f"{fds} fds")
        other.close()
        by.stop_and_check("max-queues")
        check(b"queue limit in vhost" in open(b.log_path, "rb").read(), "logged")
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


def test_channel_and_consumer_limits(args):
    b = started(args)
    try:
        by = Bystander(b.amqp_port).start()
        # channel_max 2047: channel 2047 opens, 2048 closes the connection (504).
        r = Raw(b.amqp_port).handshake(channels=(2047,))
        r.send(method(2048, 20, 10, shortstr(b"")))
        m = r.expect(0, 10, 50, "connection.close for channel 2048")
        check(reply(m)[0] == 504, f"channel above channel_max: {reply(m)}")
        r.close()
        # consumer_max_per_channel 1024: the 1025th basic.consume closes the connection
        # with 530, as RabbitMQ.
        r = Raw(b.amqp_port).handshake(channels=(1, 2))
        r.declare(1, b"consumed")
        r.send(b"".join(method(1, 60, 20, b"\x00\x00" + shortstr(b"consumed") +
                               shortstr(b"c%d" % i) + b"\x08" + struct.pack(">I", 0))
                        for i in range(1024)))  # no-wait
        r.declare(1, b"consumed")  # a round trip: all 1024 were accepted
        # Another channel has its own 1024.
        r.send(method(2, 60, 20, b"\x00\x00" + shortstr(b"consumed") + shortstr(b"other") +
                      b"\x00" + struct.pack(">I", 0)))
        r.expect(2, 60, 21, "consume-ok on channel 2")
        r.send(method(1, 60, 20, b"\x00\x00" + shortstr(b"consumed") + shortstr(b"c1024") +
                      b"\x00" + struct.pack(">I", 0)))
        m = r.expect(0, 10, 50, "connection.close for consumer 1025")
        check(reply(m) == (530, "NOT_ALLOWED - reached maximum (1024) of consumers per "
                                "channel"), f"{reply(m)}")
        r.close()
        by.stop_and_check("channel/consumer limits")
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)

    # Lowered by flags, through pika: channel_max 8, 10 channels per user, 3 consumers per
    # channel.
    b = started(args, ["--channel-max", "8", "--amqp-user-max-channels", "10",
                       "--consumer-max-per-channel", "3"])
    try:
        r = Raw(b.amqp_port).handshake(channels=range(1, 9))
        r.send(method(9, 20, 10, shortstr(b"")))
        m = r.expect(0, 10, 50, "connection.close for channel 9")
        check(reply(m)[0] == 504, f"channel above --channel-max: {reply(m)}")
        r.close()
        c1, c2 = connect(b.amqp_port), connect(b.amqp_port)
        check(c1._impl.params.channel_max == 8, f"negotiated {c1._impl.params.channel_max}")
        chans = [c1.channel() for _ in range(8)] + [c2.channel() for _ in range(2)]
        try:
            c2.channel()
            raise AssertionError("an 11th channel of the user opened")
        except ConnectionClosedByBroker as e:
            check(e.reply_code == 530 and e.reply_text ==
                  "NOT_ALLOWED - number of channels opened for user 'guest' has reached the "
                  "maximum allowed user limit of 10", f"{e.reply_code} {e.reply_text}")
        chans[0].queue_declare("q")
        for i in range(3):
            chans[0].basic_consume("q", lambda *a: None, consumer_tag=f"t{i}")
        try:
            chans[0].basic_consume("q", lambda *a: None, consumer_tag="t3")
            raise AssertionError("a 4th consumer on the channel")
        except ConnectionClosedByBroker as e:
            check(e.reply_code == 530 and "reached maximum (3) of consumers per channel" in
                  e.reply_text, f"{e.reply_code} {e.reply_text}")
        # The closed connections gave their channels back.
        c3 = connect(b.amqp_port)
        for _ in range(8):
            c3.channel()
        c3.close()
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


def test_connection_limits(args):
    fd, users = tempfile.mkstemp(prefix="sluice-users-")
    os.close(fd)
    with open(users, "w") as f:
        f.write("alice:secret\n")
    b = started(args, ["--amqp-max-connections", "3", "--amqp-user-max-connections", "2",
                       "--amqp-users", users])
    try:
        g1, g2 = connect(b.amqp_port), connect(b.amqp_port)
        r = Raw(b.amqp_port)
        m = r.connect()
        check(m[1:3] == (10, 50) and reply(m) ==
              (530, "NOT_ALLOWED - connection refused for user 'guest': user connection limit "
                    "(2) is reached"), f"third guest connection: {m and reply(m)}")
        r.close()
        a1 = connect(b.amqp_port, credentials=pika.PlainCredentials("alice", "secret"))
        r = Raw(b.amqp_port, user=b"alice", password=b"secret")
        m = r.connect()
        check(m[1:3] == (10, 50) and reply(m) ==
              (530, "NOT_ALLOWED - access to vhost '/' refused for user 'alice': connection "
                    "limit (3) is reached"), f"fourth connection: {m and reply(m)}")
        r.close()
        g1.close()
        g3 = connect(b.amqp_port)  # room again
        for c in (g2, g3, a1):
            c.channel().queue_declare("", exclusive=True)
            c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)
        os.unlink(users)


def test_uncommitted_tx(args):
    """400 MiB published in a transaction never committed (+412 MB on the old main): the
    publish that passes 128 MiB closes the channel with 406; the peak RSS stays bounded."""
    b = started(args)
    try:
        by = Bystander(b.amqp_port).start()
        time.sleep(0.5)
        before = rss(b.proc.pid, "VmHWM")
        r = Raw(b.amqp_port).handshake(channels=(1, 2))
        r.declare(1, b"txq")
        r.send(method(1, 90, 10))
        r.expect(1, 90, 11, "tx.select-ok")
        body = os.urandom(MiB)
        message = publish_frames(1, b"txq", body)
        for _ in range(400):
            r.send(message)
        m = r.expect(1, 20, 40, "channel.close for the uncommitted transaction")
        code, text = reply(m)
        check(code == 406 and "uncommitted" in text, f"{code} {text}")
        r.send(method(1, 20, 41))  # close-ok
        # The connection goes on, and its other channels may still use transactions.
        r.send(method(2, 90, 10))
        r.expect(2, 90, 11, "tx.select-ok on channel 2")
        r.send(publish_frames(2, b"txq", b"small") * 10 + method(2, 90, 20))
        r.expect(2, 90, 21, "tx.commit-ok")
        check(r.declare(2, b"txq")[0] == 10, "only the committed messages are in the queue")
        peak = rss(b.proc.pid, "VmHWM") - before
        print(f"uncommitted tx: peak RSS grew {peak / MiB:.0f} MiB for 400 MiB sent "
              f"(limit 128 MiB)")
        check(peak < 220 * MiB, f"peak RSS grew {peak / MiB:.0f} MiB (bound 220 MiB)")
        r.close()
        by.stop_and_check("uncommitted tx")
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


def test_output_backpressure(args):
    b = started(args)
    try:
        by = Bystander(b.amqp_port).start()
        body = os.urandom(MiB)
        pub = Raw(b.amqp_port).handshake()
        for q in (b"gets", b"slow", b"rpc"):
            pub.declare(1, q)
        message = publish_frames(1, b"gets", body)
        for _ in range(200):
            pub.send(message)
        check(pub.declare(1, b"gets")[0] == 200, "200 messages to get")
        time.sleep(0.5)
        before = rss(b.proc.pid)

        # 200 pipelined basic.get (no-ack) from a client that reads nothing: answered only up
        # to 4 MiB of unsent output; the rest waits in its input.
        getter = Raw(b.amqp_port, rcvbuf=4096).handshake()
        getter.send(b"".join(method(1, 60, 70, b"\x00\x00" + shortstr(b"gets") + b"\x01")
                             for _ in range(200)))
        time.sleep(2)
        left = pub.declare(1, b"gets")[0]
        grown = rss(b.proc.pid) - before
        print(f"pipelined basic.get: {200 - left} of 200 answered while unread, RSS grew "
              f"{grown / MiB:.0f} MiB")
        check(left >= 180, f"only {left} of 200 left: the gets were answered unread")
        check(grown < 64 * MiB, f"RSS grew {grown / MiB:.0f} MiB (bound 64 MiB)")
        # Reading resumes them: every message arrives.
        got = 0
        while got < 200:
            m = getter.expect(1, 60, 71, f"get-ok {got}")
            size = struct.unpack(">Q", getter.read_frame()[2][4:12])[0]
            n = 0
            while n < size:
                n += len(getter.read_frame()[2])
            check(n == MiB, "body size")
            got += 1
        check(pub.declare(1, b"gets")[0] == 0, "every get answered")
        getter.close()

        # A consumer (prefetch unlimited, manual ack) that reads nothing.
        before = rss(b.proc.pid)
        consumer = Raw(b.amqp_port, rcvbuf=4096).handshake()
        consumer.send(method(1, 60, 20, b"\x00\x00" + shortstr(b"slow") + shortstr(b"") +
                             b"\x00" + struct.pack(">I", 0)))
        message = publish_frames(1, b"slow", body)
        for _ in range(200):
            pub.send(message)
        pub.declare(1, b"slow")
        time.sleep(2)
        grown = rss(b.proc.pid) - before
        print(f"consumer reading nothing: RSS grew {grown / MiB:.0f} MiB for 200 MiB queued")
        check(grown < 96 * MiB, f"RSS grew {grown / MiB:.0f} MiB (bound 96 MiB)")
        consumer.close()

        # Direct reply-to: a requester that reads none of its replies. Past the limit,
        # replies are unroutable: returned to a mandatory publisher.
        requester = Raw(b.amqp_port, rcvbuf=4096).handshake()
        requester.send(method(1, 60, 20, b"\x00\x00" + shortstr(b"amq.rabbitmq.reply-to") +
                              shortstr(b"") + b"\x02" + struct.pack(">I", 0)))  # no-ack
        requester.expect(1, 60, 21, "reply consumer")
        requester.send(publish_frames(1, b"rpc", b"question", flags=1 << 9,
                                      props=shortstr(b"amq.rabbitmq.reply-to")))
        responder = connect(b.amqp_port)
        rch = responder.channel()
        deadline = time.time() + 10
        while True:
            m, props, _ = rch.basic_get("rpc", auto_ack=True)
            if m is not None or time.time() > deadline:
                break
            time.sleep(0.05)
        check(m is not None and props.reply_to.startswith("amq.rabbitmq.reply-to."),
              f"request: {m} {props}")
        rch.confirm_delivery()
        returned = 0
        before = rss(b.proc.pid)
        for _ in range(100):
            try:
                rch.basic_publish("", props.reply_to, body, mandatory=True)
            except UnroutableError:
                returned += 1
        grown = rss(b.proc.pid) - before
        print(f"direct reply-to, requester reading nothing: {returned} of 100 replies "
              f"returned, RSS grew {grown / MiB:.0f} MiB")
        check(returned >= 90, f"{returned} replies returned")
        check(grown < 64 * MiB, f"RSS grew {grown / MiB:.0f} MiB (bound 64 MiB)")
        responder.close()
        requester.close()
        pub.close()
        by.stop_and_check("output back-pressure")
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


def test_memory_alarm(args):
    """Two connections hold 60 MiB of uncommitted publishes each: over a 100 MB watermark,
    publishers get Connection.Blocked("low on memory") and are not read; a connection that
    never published keeps working. When they go, Connection.Unblocked."""
    b = started(args, ["--vm-memory-high-watermark-absolute", "100000000"])
    try:
        events = []
        pub = connect(b.amqp_port)
        pub.add_on_connection_blocked_callback(
            lambda c, m: events.append(("blocked", m.method.reason)))
        pub.add_on_connection_unblocked_callback(lambda c, m: events.append(("unblocked",)))
        pch = pub.channel()
        pch.queue_declare("alarm")
        pch.basic_publish("", "alarm", b"before")
        watcher = connect(b.amqp_port)
        wch = watcher.channel()
        check(wait_count(wch, "alarm", 1) == 1, "published before the alarm")

        hostile = []
        body = os.urandom(MiB)

        def hold(r):
            try:
                message = publish_frames(1, b"alarm", body)
                for _ in range(60):
                    r.send(message)
            except OSError:
                pass  # closed by the test while blocked

        for _ in range(2):
            r = Raw(b.amqp_port).handshake()
            r.send(method(1, 90, 10))
            r.expect(1, 90, 11, "tx.select-ok")
            t = threading.Thread(target=hold, args=(r,))
            t.start()
            hostile.append((r, t))
        deadline = time.time() + 20
        while not events and time.time() < deadline:
            pub.process_data_events(time_limit=0.05)
        check(events == [("blocked", "low on memory")], f"publisher blocked: {events}")
        blocked_at = time.time()
        pch.basic_publish("", "alarm", b"while blocked")
        # Not read while blocked; a connection that never published is not blocked.
        t0 = time.time()
        while time.time() - t0 < 1.0:
            check(wch.queue_declare("alarm", passive=True).method.message_count == 1,
                  "a blocked publisher's message was read")
            time.sleep(0.05)
        check(b"memory alarm" in open(b.log_path, "rb").read(), "logged")
        for r, t in hostile:
            r.s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in sendall
            t.join(10)
            r.reset()
        deadline = time.time() + 10
        while len(events) < 2 and time.time() < deadline:
            pub.process_data_events(time_limit=0.05)
        check(events[1:] == [("unblocked",)], f"unblocked: {events}")
        print(f"memory alarm: blocked for {time.time() - blocked_at:.1f} s, unblocked "
              f"once the hostile connections closed")
        check(wait_count(wch, "alarm", 2) == 2, "the held publish arrives")
        pch.confirm_delivery()
        pch.basic_publish("", "alarm", b"after")
        pub.close()
        watcher.close()
        check(b.stop() == 0, "clean stop")
    finally:
        finish(b)


TESTS = [test_message_cache_budget, test_max_queues, test_channel_and_consumer_limits,
         test_connection_limits, test_uncommitted_tx, test_output_backpressure,
         test_memory_alarm]


def main(args):
    # ASan keeps up to 256 MiB of freed memory in quarantine by default: RSS would measure it.
    opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    os.environ["ASAN_OPTIONS"] = ":".join(opts + ["quarantine_size_mb=16"])
    only = os.environ.get("AMQP_LIMITS_ONLY")  # e.g. test_max_queues, to run one
    for test in TESTS:
        if only and test.__name__ != only:
            continue
        started_at = time.time()
        test(args)
        print(f"{test.__name__} passed in {time.time() - started_at:.1f} s")


if __name__ == "__main__":
    harness.run(main)
