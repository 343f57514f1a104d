"""Idle AMQP queues cost the broker's housekeeping nothing (issue 13): the 200 ms tick visits
only queues with work (a cursor that moved while the queue's log start has not caught up, or
messages under a queue TTL), shown by the sluice_amqp_tick_queues gauge on /metrics.

400 queues (durable and transient) each get a message that is fetched and acked: the gauge
falls to 0 once their log starts have caught up (a durable queue's after its cursor journal
sync), and stays 0 while they idle. A queue with x-message-ttl stays listed
while it holds a message and leaves once the message has expired; x-expires still deletes an
unused queue."""
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402


def tick_queues(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("sluice_amqp_tick_queues "):
                return float(line.split()[1])
    raise AssertionError("no sluice_amqp_tick_queues on /metrics")


def main(args):
    http_port = harness.free_port()
    b = harness.AmqpBroker(args.sluice, ["--http-port", str(http_port)])
    try:
        b.start()
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", b.amqp_port, blocked_connection_timeout=30, socket_timeout=30))
        ch = conn.channel()
        ch.confirm_delivery()
        names = [f"durable-{i}" for i in range(300)] + [f"transient-{i}" for i in range(100)]
        for name in names:
            ch.queue_declare(name, durable=name.startswith("durable"))
            ch.basic_publish("", name, b"m", pika.BasicProperties(delivery_mode=2))
        check(tick_queues(http_port) == 0, "nothing consumed yet: no tick work")
        for name in names:
            method, _, body = ch.basic_get(name, auto_ack=False)
            check(method is not None and body == b"m", f"{name}: its message")
            ch.basic_ack(method.delivery_tag)
        harness.wait_until(lambda: tick_queues(http_port) == 0, 10,
                           "the tick list to empty once every log start caught up")
        time.sleep(1)  # five ticks of idling
        check(tick_queues(http_port) == 0, "idle queues stay off the tick list")

        ch.queue_declare("ttl", durable=True, arguments={"x-message-ttl": 500})
        ch.basic_publish("", "ttl", b"short-lived", pika.BasicProperties(delivery_mode=2))
        check(tick_queues(http_port) >= 1, "a message under a queue TTL is listed")
        harness.wait_until(
            lambda: ch.queue_declare("ttl", passive=True).method.message_count == 0, 10,
            "the TTL message to expire without a consumer")
        harness.wait_until(lambda: tick_queues(http_port) == 0, 10,
                           "the TTL queue to leave the tick list once empty")

        ch.queue_declare("lease", arguments={"x-expires": 500})
        deadline = time.time() + 10
        gone = False
        while time.time() < deadline and not gone:
            time.sleep(1.0)  # a passive declare renews the lease: probe less often than 500 ms
            probe = conn.channel()
            try:
                probe.queue_declare("lease", passive=True)
                probe.close()
            except pika.exceptions.ChannelClosedByBroker as e:
                check(e.reply_code == 404, f"passive declare of an expired queue: {e}")
                gone = True
        check(gone, "x-expires deleted the unused queue")
        conn.close()
    finally:
        if sys.exc_info()[0] is not None:
            print(f"--- broker log (end) ---\n{b.tail()}")
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
