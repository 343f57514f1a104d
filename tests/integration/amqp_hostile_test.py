"""Hostile AMQP peers beside a well-behaved publisher: garbage, oversized and malformed
frames, protocol misuse on raw sockets, each answered with RabbitMQ's reply code, while a
pika publisher with confirms on another connection never sees an error."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from amqp_raw import HEADER, frame, longstr, method, shortstr  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402

AmqpBroker = harness.AmqpBroker


class Raw:
    """A minimal AMQP client on a raw socket, to send what real clients never would."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """(type, channel, payload) or None at EOF."""
        while True:
            if len(self.buf) >= 7:
                t, ch, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    self.buf = self.buf[8 + size:]
                    return t, ch, payload
            data = self.s.recv(65536)
            if not data:
                return None
            self.buf += data

    def read_method(self):
        """(channel, class, method, args), skipping heartbeats; None at EOF."""
        while True:
            f = self.read_frame()
            if f is None:
                return None
            if f[0] == 1:
                cls, mid = struct.unpack(">HH", f[2][:4])
                return f[1], cls, mid, f[2][4:]

    def handshake(self):
        self.send(HEADER)
        check(self.read_method()[1:3] == (10, 10), "connection.start")
        self.send(method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") +
                         longstr(b"\x00guest\x00guest") + shortstr(b"en_US")))
        check(self.read_method()[1:3] == (10, 30), "connection.tune")
        self.send(method(0, 10, 31, struct.pack(">HIH", 16, 131072, 0)))
        self.send(method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"))
        check(self.read_method()[1:3] == (10, 41), "connection.open-ok")
        self.send(method(1, 20, 10, shortstr(b"")))
        check(self.read_method()[1:3] == (20, 11), "channel.open-ok")

    def expect_close(self, cls, mid, code, what):
        m = self.read_method()
        check(m is not None and m[1:3] == (cls, mid), f"{what}: expected close, got {m}")
        got = struct.unpack(">H", m[3][:2])[0]
        check(got == code, f"{what}: reply code {got}, expected {code}: {m[3][3:]!r}")
        return m

    def at_eof(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while self.s.recv(65536):
                pass
            return True
        except OSError:
            return False

    def close(self):
        self.s.close()


def publisher(port, stop, stats):
    try:
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        ch.queue_declare("calm")
        ch.confirm_delivery()
        while not stop.is_set():
            ch.basic_publish("", "calm", b"x" * 100)
            stats["published"] += 1
        c.close()
    except Exception as e:  # noqa: BLE001
        stats["error"] = repr(e)


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        stop = threading.Event()
        stats = {"published": 0, "error": None}
        t = threading.Thread(target=publisher, args=(b.amqp_port, stop, stats))
        t.start()

        # Garbage instead of the protocol header: our header back, then close.
        r = Raw(b.amqp_port)
        r.send(os.urandom(64))
        data = b""
        while True:
            chunk = r.s.recv(100)
            if not chunk:
                break
            data += chunk
        check(data == HEADER, f"garbage answered with {data!r}")
        r.close()

        # A 4 GiB frame before tuning: refused from its 7 header bytes (501 FRAME_ERROR).
        r = Raw(b.amqp_port)
        r.send(HEADER)
        r.read_method()
        r.send(struct.pack(">BHI", 1, 0, 0xFFFFFFFF))
        r.expect_close(10, 50, 501, "oversized frame before tune")
        r.close()

        # Larger than the 4096-byte pre-tune limit: also refused.
        r = Raw(b.amqp_port)
        r.send(HEADER)
        r.read_method()
        r.send(struct.pack(">BHI", 1, 0, 5000) + b"\x00" * 100)
        r.expect_close(10, 50, 501, "frame above 4096 before tune")
        r.close()

        # Wrong frame-end octet.
        r = Raw(b.amqp_port)
        r.handshake()
        r.send(method(1, 50, 10, b"\x00\x00" + shortstr(b"q") + b"\x00" +
                      struct.pack(">I", 0))[:-1] + b"\x00")
        r.expect_close(10, 50, 501, "bad frame-end")
        r.close()

        # Above the negotiated frame_max.
        r = Raw(b.amqp_port)
        r.handshake()
        r.send(struct.pack(">BHI", 3, 1, 131072))
        r.expect_close(10, 50, 501, "frame above frame_max")
        r.close()

        # Unknown frame type: 505 UNEXPECTED_FRAME; unknown method: 503 COMMAND_INVALID;
        # a method on a channel never opened: 504 CHANNEL_ERROR.
        for payload, code, what in (
                (frame(7, 0, b""), 505, "unknown frame type"),
                (method(1, 60, 999), 503, "unknown method"),
                (method(9, 50, 10, b"\x00\x00" + shortstr(b"q") + b"\x00" +
                        struct.pack(">I", 0)), 504, "channel not open"),
                (method(1, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"), 503,
                 "connection method on a channel"),
                (method(1, 50, 10, b"\x00\x00\x05"), 502, "truncated arguments")):
            r = Raw(b.amqp_port)
            r.handshake()
            r.send(payload)
            r.expect_close(10, 50, code, what)
            r.send(method(0, 10, 51))  # close-ok
            check(r.at_eof(), f"{what}: socket closed after close-ok")
            r.close()

        # A body above the message size limit closes only the channel (406), the
        # connection goes on; so does an unknown delivery tag.
        r = Raw(b.amqp_port)
        r.handshake()
        r.send(method(1, 60, 40, b"\x00\x00" + shortstr(b"") + shortstr(b"calm") + b"\x00"))
        r.send(frame(2, 1, struct.pack(">HHQH", 60, 0, 1 << 40, 0)))
        r.expect_close(20, 40, 406, "huge body")
        r.send(method(1, 20, 41))  # channel.close-ok
        r.send(method(2, 20, 10, shortstr(b"")))
        check(r.read_method()[0:3] == (2, 20, 11), "connection usable after a channel error")
        r.send(method(2, 60, 80, struct.pack(">QB", 77, 0)))
        r.expect_close(20, 40, 406, "unknown delivery tag")
        # Consumer tag reuse on one channel: 530 NOT_ALLOWED, a connection error.
        r.send(method(2, 20, 41))
        r.send(method(3, 20, 10, shortstr(b"")))
        r.read_method()
        consume = method(3, 60, 20, b"\x00\x00" + shortstr(b"calm") + shortstr(b"dup") +
                         b"\x00" + struct.pack(">I", 0))
        r.send(consume)
        m = r.read_method()
        check(m[1:3] == (60, 21), f"consume-ok {m}")
        r.send(consume)
        while True:
            m = r.read_method()
            check(m is not None, "connection.close for a reused consumer tag")
            if m[1:3] == (10, 50):
                check(struct.unpack(">H", m[3][:2])[0] == 530, f"tag reuse {m}")
                break
        r.close()

        # A wrong password: 403 ACCESS_REFUSED (authentication_failure_close).
        r = Raw(b.amqp_port)
        r.send(HEADER)
        r.read_method()
        r.send(method(0, 10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") +
                      longstr(b"\x00guest\x00nope") + shortstr(b"en_US")))
        r.expect_close(10, 50, 403, "bad password")
        r.close()

        # Many connections dropped mid-frame.
        for _ in range(50):
            r = Raw(b.amqp_port)
            r.handshake()
            r.send(method(1, 60, 40, b"\x00\x00")[:9])
            r.close()

        stop.set()
        t.join(timeout=30)
        check(not t.is_alive(), "publisher stopped")
        check(stats["error"] is None, f"publisher saw an error: {stats['error']}")
        check(stats["published"] > 0, "publisher made progress")
        print(f"publisher: {stats['published']} confirmed publishes beside the hostile peers")
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
