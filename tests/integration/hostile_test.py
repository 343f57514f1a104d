"""Hostile connections (garbage, a 4 GiB declared length, truncated frames, unknown API keys,
malformed headers) while a second connection keeps producing: the bad connections are closed
with a log line, the producer sees no error, and pipelined requests are answered in order."""
import os
import socket
import struct
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from harness import Broker, check, read_frame, run, wait_until


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def request(api_key, version, corr, body=b"", client_id=b"hostile"):
    return frame(struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id + body)


def expect_closed(bs_port, data, what, timeout=10):
    started = time.time()
    s = socket.create_connection(("127.0.0.1", bs_port), timeout=timeout)
    try:
        s.sendall(data)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
        raise AssertionError(f"{what}: connection not closed")
    finally:
        print(f"  {what}: {time.time() - started:.2f}s")
        s.close()


def test(args):
    b = Broker(args.sluice, ["--num-partitions", "1"]).start()
    stop = threading.Event()
    errors, delivered = [], []
    try:
        def produce_loop():
            p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                          "acks": "all", "linger.ms": 1})
            i = 0
            deadline = time.time() + 30
            while not stop.is_set() and time.time() < deadline:
                p.produce("steady", value=f"m{i}".encode(),
                          on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg.offset()))
                p.poll(0.005)
                i += 1
            check(p.flush(20) == 0, "producer flushed")

        t = threading.Thread(target=produce_loop)
        t.start()
        # The producer is delivering before the hostile connections start.
        wait_until(lambda: len(delivered) >= 10 or errors, 20, "the producer's first deliveries")
        port = b.port
        # A 4 GiB declared length (int32 -1 / u32 0xffffffff), and 1 GiB before any valid request.
        expect_closed(port, b"\xff\xff\xff\xff" + b"x" * 100, "4 GiB length")
        expect_closed(port, struct.pack(">I", 1 << 30) + b"x" * 100, "1 GiB first request")
        # Garbage.
        expect_closed(port, frame(os.urandom(200)), "garbage")
        expect_closed(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http")
        # Header too short, unknown API key, bad group request body, unsupported version, bad body.
        expect_closed(port, frame(b"\x00\x12\x00"), "short header")
        expect_closed(port, request(999, 0, 7), "unknown API key")
        expect_closed(port, request(11, 0, 7, b"\x00\x05ab"), "truncated JoinGroup body")
        expect_closed(port, request(0, 2, 7), "Produce v2")
        expect_closed(port, request(3, 1, 7, b"\x00\x00\x00\x05\x00"), "truncated Metadata body")
        # Truncated frame: the client goes away mid-frame.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(struct.pack(">i", 1000) + b"\x00\x12\x00\x00")
        s.close()
        # KIP-511: ApiVersions of an unknown version gets UNSUPPORTED_VERSION with our list.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(request(18, 99, 42))
        resp = read_frame(s)
        corr, err = struct.unpack(">ih", resp[:6])
        check(corr == 42 and err == 35, f"KIP-511 answer corr={corr} err={err}")
        # Pipelined requests are answered in order.
        s.sendall(b"".join(request(18, 0, c) for c in range(100, 110)))
        corrs = [struct.unpack(">i", read_frame(s)[:4])[0] for _ in range(10)]
        check(corrs == list(range(100, 110)), f"pipelined order {corrs}")
        s.close()
        # ...and goes on delivering after them.
        after_hostile = len(delivered)
        wait_until(lambda: len(delivered) >= after_hostile + 10 or errors, 20,
                   "deliveries after the hostile connections")
        stop.set()
        t0 = time.time()
        t.join(60)
        print(f"  producer joined after {time.time() - t0:.2f}s, {len(delivered)} delivered")
        check(not errors, f"producer errors: {errors[:5]}")
        check(len(delivered) > 20, f"only {len(delivered)} delivered")
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused",
                      "broker.address.family": "v4", "enable.partition.eof": True,
                      "enable.auto.commit": False})
        c.assign([TopicPartition("steady", 0, 0)])
        n, deadline = 0, time.time() + 20
        while time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(str(m.error()))
            n += 1
        c.close()
        print(f"  consumed {n} after {time.time() - t0:.2f}s")
        check(n == len(delivered), f"consumed {n}, delivered {len(delivered)}")
        log = b.tail()
        check("closing connection from 127.0.0.1" in open(b.log_path, errors="replace").read(),
              "log names the peer")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        stop.set()
        print(b.tail())
        raise
    finally:
        stop.set()
        b.cleanup()


if __name__ == "__main__":
    run(test)
