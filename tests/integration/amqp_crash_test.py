"""kill -9 durability of AMQP: persistent messages confirmed on a durable queue survive
SIGKILL of the broker; messages acked before a synchronous method was answered are not
redelivered after the restart, however soon the kill follows; unacked ones come back with
redelivered=true."""
# ctest-timeout: 150
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402


AmqpBroker = harness.AmqpBroker


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, socket_timeout=10, connection_attempts=1))


def publisher(b, start, confirmed, stop):
    """Publishes ids from `start` with confirms until the broker dies; records confirmed ids."""
    try:
        c = connect(b)
        ch = c.channel()
        ch.confirm_delivery()
        i = start
        while not stop.is_set():
            ch.basic_publish("", "durable-q", str(i).encode(),
                             pika.BasicProperties(delivery_mode=2), mandatory=True)
            confirmed.append(i)  # basic_publish returned: the broker confirmed it
            i += 1
    except Exception:  # the broker was killed mid-publish
        pass


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        c = connect(b)
        ch = c.channel()
        ch.queue_declare("durable-q", durable=True)
        c.close()
        confirmed = []
        acked = set()
        next_id = 0
        for cycle in range(3):
            stop = threading.Event()
            before = len(confirmed)
            t = threading.Thread(target=publisher, args=(b, next_id, confirmed, stop))
            t.start()
            # Ack a few while publishing continues: out-of-order acks included.
            harness.wait_until(lambda: len(confirmed) >= before + 40, 20,
                               f"cycle {cycle}: 40 confirmed publishes")
            c = connect(b)
            ch = c.channel()
            got = []
            for _ in range(20):
                m = ch.basic_get("durable-q")
                if m[0] is None:
                    break
                got.append(m)
            for m in got[::2]:
                ch.basic_ack(m[0].delivery_tag)
                acked.add(int(m[2]))
            held = [int(m[2]) for m in got[1::2]]  # unacked when the broker dies
            # basic.ack has no answer: a synchronous method on the same channel is answered
            # only after the broker processed the acks before it. From then on they must
            # survive a kill -9 (cursor journal written before replies go out).
            ch.queue_declare("durable-q", durable=True, passive=True)
            # Not synchronisation: the kill lands at a random moment shortly after.
            time.sleep(random.uniform(0.0, 0.03))
            b.kill9()
            stop.set()
            t.join(timeout=15)
            check(not t.is_alive(), "publisher thread ended")
            check(len(confirmed) > before, f"cycle {cycle}: nothing confirmed")
            next_id = (confirmed[-1] + 1000) if confirmed else 1000
            b.start()
            print(f"cycle {cycle}: {len(confirmed)} confirmed, {len(acked)} acked")
        # Everything confirmed and not acked is there, once; acked ones are not redelivered.
        c = connect(b)
        ch = c.channel()
        received = {}
        while True:
            m = ch.basic_get("durable-q", auto_ack=True)
            if m[0] is None:
                break
            v = int(m[2])
            check(v not in received, f"message {v} delivered twice")
            received[v] = m[0].redelivered
        missing = [v for v in confirmed if v not in acked and v not in received]
        check(not missing, f"confirmed messages lost: {missing[:10]} ({len(missing)})")
        again = sorted(acked & set(received))
        check(not again, f"acked messages redelivered after restart: {again[:10]}")
        unacked = [v for v in received if v not in acked and received[v]]
        check(all(received.get(v) is True for v in held),
              f"unacked at the kill not redelivered=true: {[(v, received.get(v)) for v in held]}")
        print(f"received {len(received)}, {len(unacked)} of them redelivered=true")
        c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
