"""AMQP metadata survives restarts as a snapshot plus a journal of changes (amqp.meta,
amqp.meta.journal; src/amqp/MAPPING.md "Metadata"): 1,500 durable queues bound to a durable
exchange, an exchange-to-exchange binding, deletes and unbinds, enough records to fold the
journal into a new snapshot on the way; after a clean restart and after kill -9 every
answered declare, delete, bind and unbind holds (queues by passive declare, bindings by
routing a message with each key), and a queue name declared again after a delete is a new
queue."""
# ctest-timeout: 300
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker  # noqa: E402

N = 1500


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, blocked_connection_timeout=60, socket_timeout=60))


def verify(b, queues, bound, gone, what):
    """queues: names that must exist; bound: {key: queue} routed by exchange 'ex'; gone:
    names that must not exist. Each existing queue must hold exactly the messages routed to
    it now (one per binding); the queues are purged afterwards."""
    conn = connect(b)
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(N):
        ch.basic_publish("ex", f"k{i}", b"probe", mandatory=False)
    ch.basic_publish("fan", "", b"fanned")
    want = {q: 0 for q in queues}
    for key, q in bound.items():
        want[q] += 1
    if "m0" in want:
        want["m0"] += 1  # bound to 'fan' as well
    wrong = []
    for q in sorted(queues):
        n = ch.queue_declare(q, passive=True).method.message_count
        if n != want[q]:
            wrong.append((q, n, want[q]))
        ch.queue_purge(q)
    check(not wrong, f"{what}: queues holding the wrong number of messages "
                     f"(queue, got, want): {wrong[:10]}")
    for q in sorted(gone)[:25]:
        probe = conn.channel()
        try:
            probe.queue_declare(q, passive=True)
            raise AssertionError(f"{what}: deleted queue {q} is back")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 404, f"{what}: passive declare of deleted {q}: {e}")
    conn.close()


def main(args):
    b = harness.AmqpBroker(args.sluice)
    try:
        b.start()
        conn = connect(b)
        ch = conn.channel()
        ch.exchange_declare("ex", "direct", durable=True)
        ch.exchange_declare("fan", "fanout", durable=True)
        ch.exchange_declare("side", "fanout", durable=True)
        ch.exchange_bind("side", "ex", routing_key="k0")  # exchange to exchange
        queues, bound, gone = set(), {}, set()
        for i in range(N):
            q = f"m{i}"
            ch.queue_declare(q, durable=True)
            ch.queue_bind(q, "ex", routing_key=f"k{i}")
            queues.add(q)
            bound[f"k{i}"] = q
        ch.queue_declare("transient", durable=False)
        ch.queue_bind("transient", "ex", routing_key="k1")
        ch.queue_bind("m0", "fan")
        for i in range(0, N, 3):
            if i == 0:
                continue
            ch.queue_delete(f"m{i}")
            queues.discard(f"m{i}")
            gone.add(f"m{i}")
            del bound[f"k{i}"]
        for i in range(1, N, 5):
            if f"m{i}" in queues:
                ch.queue_unbind(f"m{i}", "ex", routing_key=f"k{i}")
                del bound[f"k{i}"]
        ch.exchange_delete("side")  # its binding from 'ex' goes with it
        conn.close()
        check(os.path.exists(os.path.join(b.data_dir, "amqp.meta")),
              "the journal was folded into a snapshot on the way")
        verify(b, queues, bound, gone, "live")

        b.stop()
        b.start()
        verify(b, queues, bound, gone | {"transient"}, "after a clean restart")

        conn = connect(b)
        ch = conn.channel()
        ch.queue_declare("m3", durable=True)  # deleted before: a new, empty, unbound queue
        queues.add("m3")
        gone.discard("m3")
        ch.queue_bind("m3", "ex", routing_key="k4")  # k4 -> m4 and m3
        ch.queue_delete("m2")
        queues.discard("m2")
        gone.add("m2")
        del bound["k2"]
        conn.close()  # every change above was answered
        b.kill9()
        b.start()
        conn = connect(b)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("ex", "k4", b"four")
        n3 = ch.queue_declare("m3", passive=True).method.message_count
        n4 = ch.queue_declare("m4", passive=True).method.message_count
        check((n3, n4) == (1, 1), f"after kill -9: k4 routes to m3 and m4: {(n3, n4)}")
        ch.queue_purge("m3")
        ch.queue_purge("m4")
        ch.queue_unbind("m3", "ex", routing_key="k4")
        conn.close()
        verify(b, queues, bound, gone | {"transient"}, "after kill -9")
    finally:
        if sys.exc_info()[0] is not None:
            print(f"--- broker log (end) ---\n{b.tail()}")
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
