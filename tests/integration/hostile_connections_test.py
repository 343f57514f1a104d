"""Clients that hold connections rather than send work, beside well-behaved clients (a
confluent-kafka producer with acks=all and a consumer, a pika publisher with confirms, all
from 127.0.0.1):

(c) After one valid request, a client sends a frame one byte every 200 ms (every byte used to
    reset the idle timeout, so main held the connection open indefinitely): closed by the
    request read timeout (--request-read-timeout-ms 1000 plus 1 s per 100 bytes received here)
    within about a second. A large request sent slowly but steadily (20 KB/s, longer than the
    base timeout) is still answered.
(d) max.connections.per.ip 10: 30 connections from 127.0.0.2 to the Kafka port, the first 10
    kept, the rest closed at accept with a rate-limited log line; an AMQP connection from that
    address is refused too (the count covers Kafka and AMQP), while /healthz from it still
    works (the admin listener counts its own), and the bystanders see nothing."""
import os
import re
import socket
import struct
import sys
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bystanders import Bystanders  # noqa: E402
from harness import AmqpBroker, check, free_port, read_frame, run  # noqa: E402

PER_IP = 10


def s16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, corr, body=b""):
    req = struct.pack(">hhi", api_key, version, corr) + s16("hostile") + body
    return struct.pack(">i", len(req)) + req


def closed_within(sock, seconds):
    """True if the peer closed (EOF or reset) within `seconds`; data read meanwhile is dropped."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
    return False


def connect_from(source, port):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def dribble(b):
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    try:
        s.sendall(request(18, 0, 1))  # ApiVersions v0: a valid request first
        check(struct.unpack(">i", read_frame(s)[:4])[0] == 1, "ApiVersions answered")
        s.sendall(struct.pack(">i", 200))  # a 200-byte frame, then one byte per 200 ms
        started = time.time()
        closed = False
        for _ in range(40):
            try:
                s.sendall(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_within(s, 0.2):
                closed = True
                break
        took = time.time() - started
        print(f"(c) dribbling connection closed: {closed} after {took:.1f}s")
        check(closed, f"a dribbling connection was still open after {took:.1f}s")
        check(took < 3.0, f"closed only after {took:.1f}s")
    finally:
        s.close()


def slow_but_steady(b):
    """Metadata v4 for 3000 (missing) topics, 36 KB sent in 2 KB pieces every 100 ms: longer
    than the 1 s base timeout, but far above 100 B/s."""
    names = [f"missing-{i:05d}" for i in range(3000)]
    body = struct.pack(">i", len(names)) + b"".join(s16(n) for n in names) + b"\x00"
    frame = request(3, 4, 7, body)
    s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
    try:
        started = time.time()
        for at in range(0, len(frame), 2048):
            s.sendall(frame[at:at + 2048])
            time.sleep(0.1)
        resp = read_frame(s)
        took = time.time() - started
        print(f"(c) {len(frame)} bytes sent over {took:.1f}s: answered ({len(resp)} bytes)")
        check(struct.unpack(">i", resp[:4])[0] == 7, "Metadata answered")
        check(took > 1.0, "the request took longer than the base timeout")
    finally:
        s.close()


def per_ip(b, http_port):
    held, refused = [], 0
    try:
        for _ in range(30):
            s = connect_from("127.0.0.2", b.port)
            held.append(s)
        time.sleep(0.5)
        kept = []
        for s in held:
            if closed_within(s, 0.05):
                refused += 1
                s.close()
            else:
                kept.append(s)
        held = kept
        print(f"(d) 30 connections from 127.0.0.2: {len(held)} kept, {refused} refused")
        check(len(held) == PER_IP and refused == 30 - PER_IP, f"{len(held)} kept, {refused} refused")
        # The kept ones work.
        held[0].sendall(request(18, 0, 5))
        check(struct.unpack(">i", read_frame(held[0])[:4])[0] == 5, "a kept connection works")
        # AMQP shares the count; the admin listener has its own.
        amqp = connect_from("127.0.0.2", b.amqp_port)
        check(closed_within(amqp, 2.0), "an AMQP connection over the per-address cap is refused")
        amqp.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5) as r:
            check(r.status == 200, "/healthz from 127.0.0.1")
        h = connect_from("127.0.0.2", http_port)
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        h.settimeout(5)
        check(h.recv(100).startswith(b"HTTP/1.1 200"), "/healthz from the capped address")
        h.close()
        # Closing one frees a slot.
        held.pop().close()
        time.sleep(0.3)
        again = connect_from("127.0.0.2", b.port)
        held.append(again)
        again.sendall(request(18, 0, 6))
        check(struct.unpack(">i", read_frame(again)[:4])[0] == 6, "a freed slot is usable")
        with open(b.log_path, "rb") as f:
            log = f.read()
        lines = [ln for ln in log.splitlines()
                 if b"rejecting" in ln and b"max.connections.per.ip" in ln]
        shards = int(re.search(rb"sluice: (\d+) shards", log).group(1))
        print(f"(d) {len(lines)} log lines about the per-address cap for {refused + 1} refusals "
              f"(listeners: {shards} Kafka, 1 AMQP)")
        # At most one line per listener in 10 s.
        check(1 <= len(lines) <= shards + 1, f"{len(lines)} log lines: rate-limited")
    finally:
        for s in held:
            s.close()


def test(args):
    http_port = free_port()
    b = AmqpBroker(args.sluice, ["--http-port", str(http_port), "--request-read-timeout-ms",
                                 "1000", "--request-read-min-bytes-per-sec", "100",
                                 "--max-connections-per-ip", str(PER_IP)]).start()
    by = None
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("bystander", 1, 1)])["bystander"].result(20)
        by = Bystanders(b, amqp_port=b.amqp_port).start()
        dribble(b)
        slow_but_steady(b)
        per_ip(b, http_port)
        by.check("dribbling and per-address capped connections")
        by.stop()
        by = None
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        if by is not None:
            by.stop_event.set()
        b.cleanup()


if __name__ == "__main__":
    run(test)
