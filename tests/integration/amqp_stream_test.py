"""Stream queues (x-queue-type=stream) with pika, and the same data over Kafka with kcat:
every x-stream-offset form (first, last, next, an offset, a timestamp), messages kept on ack,
the prefetch requirement, AMQP -> Kafka (kcat replays from offset 0) and Kafka -> AMQP
(records produced by kcat consumed from x-stream-offset=first, compressed batches too),
persistence across restart."""
import datetime
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker  # noqa: E402
from kafka import KafkaProducer  # noqa: E402


AmqpBroker = harness.AmqpBroker


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))


def consume(c, queue, offset, n, timeout=10, prefetch=10):
    """n deliveries from a stream consumer starting at `offset`: [(offset, headers, body)]."""
    ch = c.channel()
    ch.basic_qos(prefetch_count=prefetch)
    args = {} if offset is None else {"x-stream-offset": offset}
    got = []
    deadline = time.time() + timeout
    for m, p, body in ch.consume(queue, arguments=args, inactivity_timeout=0.3):
        if m is not None:
            got.append((p.headers["x-stream-offset"], p.headers, body, m.routing_key))
            ch.basic_ack(m.delivery_tag)
        if len(got) >= n or time.time() > deadline:
            break
    ch.close()
    return got


def kcat(b, *args, stdin=None):
    r = subprocess.run(["/usr/bin/kcat", "-b", b.bootstrap] + list(args), input=stdin,
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"kcat {args}: {r.stderr.decode()}")
    return r.stdout.decode()


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        c = connect(b)
        ch = c.channel()
        ch.queue_declare("events", durable=True, arguments={"x-queue-type": "stream"})
        ch.confirm_delivery()
        for i in range(10):
            ch.basic_publish("", "events", b"e%d" % i,
                             pika.BasicProperties(headers={"idx": i, "src": "amqp"},
                                                  delivery_mode=2))
        got = consume(c, "events", "first", 10)
        check([g[0] for g in got] == list(range(10)), f"first: {[g[0] for g in got]}")
        check([g[2] for g in got] == [b"e%d" % i for i in range(10)], "bodies")
        check(all(g[1]["idx"] == g[0] and g[1]["src"] == "amqp" for g in got), "headers kept")
        # Acked messages stay: a second consumer reads them all again.
        check(len(consume(c, "events", "first", 10)) == 10, "stream keeps acked messages")
        check([g[0] for g in consume(c, "events", 5, 5)] == [5, 6, 7, 8, 9], "numeric offset")
        check([g[0] for g in consume(c, "events", "last", 1)] == [9], "last")
        check(consume(c, "events", "next", 1, timeout=1) == [], "next: nothing old")
        # Not synchronisation: an AMQP timestamp has whole seconds, so the clock moves on by
        # more than a second past the earlier messages, and a little past `since`.
        time.sleep(1.2)
        since = datetime.datetime.now()
        time.sleep(0.1)
        for i in range(10, 13):
            ch.basic_publish("", "events", b"e%d" % i, pika.BasicProperties(headers={"idx": i}))
        got = consume(c, "events", since, 3)
        check([g[0] for g in got] == [10, 11, 12], f"timestamp: {[g[0] for g in got]}")
        # The stream is a Kafka topic: kcat replays it from offset 0.
        out = kcat(b, "-C", "-t", "events", "-o", "beginning", "-e", "-q", "-J")
        recs = [json.loads(line) for line in out.splitlines() if line]
        check([r["payload"] for r in recs] == ["e%d" % i for i in range(13)], f"kcat {recs[:2]}")
        check(recs[0]["key"] == "events", "routing key is the Kafka key")
        h = recs[1]["headers"]
        check("idx" in h and h[h.index("idx") + 1] == "1", f"AMQP headers as Kafka headers {h}")
        # Kafka -> AMQP: records produced by kcat reach stream consumers.
        kcat(b, "-P", "-t", "events", "-k", "kkey", "-H", "origin=kafka",
             stdin=b"from-kafka\n")
        got = consume(c, "events", 13, 1)
        check(got and got[0][2] == b"from-kafka" and got[0][3] == "kkey" and
              got[0][1].get("origin") == "kafka", f"kafka record over AMQP: {got}")
        got = consume(c, "events", "first", 14)
        check(len(got) == 14 and got[-1][2] == b"from-kafka", "first sees Kafka records too")
        # Compressed Kafka batches are decompressed for AMQP consumers, records in order with
        # their keys and headers. Real producers that compress here: librdkafka (kcat) zstd, and
        # kafka-python gzip. (Debian's librdkafka 2.0.2 sends gzip/snappy/lz4 uncompressed to
        # a broker without Produce v2; kafka-python here lacks the other codecs' modules. All
        # four codecs are decoded by tests/log/compression_test.cc.)
        # Repetitive values: a client may send a batch uncompressed when that is smaller.
        want = []
        lines = [f"zstd-{i}-" + "compressible " * 40 for i in range(3)]
        kcat(b, "-P", "-t", "events", "-z", "zstd", "-k", "zstd", "-H", "codec=zstd",
             stdin=("\n".join(lines) + "\n").encode())
        want += [("zstd", line) for line in lines]
        kp = KafkaProducer(bootstrap_servers=b.bootstrap, compression_type="gzip", api_version=(2, 5, 0),
                           linger_ms=50)
        lines = [f"gzip-{i}-" + "compressible " * 40 for i in range(3)]
        for line in lines:
            kp.send("events", key=b"gzip", value=line.encode(), headers=[("codec", b"gzip")])
        kp.flush(10)
        kp.close()
        want += [("gzip", line) for line in lines]
        got = consume(c, "events", 14, len(want))
        check([(m[3], m[2].decode()) for m in got] == want,
              f"compressed Kafka batches over AMQP: {[(m[3], m[2][:12]) for m in got]}")
        check([m[0] for m in got] == list(range(14, 14 + len(want))), "offsets in order")
        check(all(m[1].get("codec") == m[3] for m in got), "headers of compressed records")
        # RabbitMQ's rules: a prefetch is required; basic.get is not for streams.
        try:
            c.channel().basic_consume("events", lambda *a: None)
            raise AssertionError("stream consume without prefetch accepted")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"no prefetch: {e.reply_code}")
        try:
            c.channel().basic_get("events")
            raise AssertionError("basic.get on a stream accepted")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"get: {e.reply_code}")
        try:
            c.channel().queue_declare("events", durable=True)
            raise AssertionError("redeclare as classic accepted")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 406, f"type change: {e.reply_code}")
        c.close()
        check(b.stop() == 0, "clean stop")
        b.start()
        c = connect(b)
        c.channel().queue_declare("events", passive=True)
        got = consume(c, "events", "first", 14)
        check(len(got) == 14, f"stream after restart: {len(got)}")
        ch = c.channel()
        ch.queue_delete("events")
        # (kcat -L without -t: asking for one topic would auto-create it again)
        out = kcat(b, "-L")
        check('topic "events"' not in out, f"topic gone with the stream: {out}")
        c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
