"""The admin HTTP listener (--http-port): /healthz, /metrics with the logs a Kafka client
wrote to and an AMQP queue's depth, and clear errors (400, 404, 405, 431, a silent client)
while the broker keeps serving."""
# ctest-timeout: 60
import os
import socket
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from confluent_kafka import Producer  # noqa: E402


def get(port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def raw(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def main(args):
    http_port = harness.free_port()
    # Two shards: partition 1 lives on shard 1, whose samples reach /metrics through shard 0.
    b = harness.AmqpBroker(args.sluice, ["--http-port", str(http_port), "--shards", "2",
                                         "--num-partitions", "2"])
    try:
        b.start()
        status, _, body = get(http_port, "/healthz")
        check(status == 200 and body == "ok\n", f"/healthz: {status} {body!r}")

        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(25):
            p.produce("metered", value=b"v%d" % i, partition=0)
        for i in range(9):
            p.produce("metered", value=b"w%d" % i, partition=1)
        check(p.flush(15) == 0, "produced")
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
        ch = c.channel()
        ch.queue_declare("metered-q")
        for i in range(7):
            ch.basic_publish("", "metered-q", b"x")
        ch.queue_declare("metered-q", passive=True)  # the publishes were processed
        status, headers, body = get(http_port, "/metrics")
        check(status == 200, f"/metrics status {status}")
        check(headers["Content-Type"].startswith("text/plain; version=0.0.4"), "content type")
        lines = body.splitlines()
        check("sluice_up 1" in lines, "sluice_up")
        check('sluice_log_end_offset{topic="metered",partition="0"} 25' in lines,
              "end offset of the produced topic:\n" + body[:2000])
        check('sluice_log_end_offset{topic="metered",partition="1"} 9' in lines,
              "end offset of the partition on shard 1")
        check('sluice_shards 2' in lines, "shard count")
        check('sluice_amqp_queue_messages_ready{vhost="/",queue="metered-q"} 7' in lines,
              "ready messages of the queue")
        for shard in (0, 1):
            check(any(line.startswith(f'sluice_connections{{shard="{shard}"}}') for line in lines),
                  f"connections of shard {shard}")
        check(body.count("# TYPE sluice_log_end_offset gauge") == 1, "one TYPE line per family")
        status, _, body = get(http_port, "/metrics", method="HEAD")
        check(status == 200 and body == "", "HEAD /metrics")
        c.close()

        status, _, _ = get(http_port, "/nope")
        check(status == 404, f"unknown path: {status}")
        status, headers, _ = get(http_port, "/metrics", method="DELETE")
        check(status == 405 and headers["Allow"] == "GET, HEAD", f"DELETE: {status}")
        check(raw(http_port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 "), "garbage: 400")
        big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        check(raw(http_port, big).startswith(b"HTTP/1.1 431 "), "oversized head: 431")
        # A client that sends half a head and nothing more is not answered but cut off in time.
        with socket.create_connection(("127.0.0.1", http_port), timeout=20) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            check(s.recv(100) == b"", "half a head: closed after the deadline")
        status, _, body = get(http_port, "/healthz")
        check(status == 200, "still serving")
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
