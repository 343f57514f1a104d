"""AMQP with more unmodified clients: rabbitmq-c's amqp-tools (amqp-declare-queue,
amqp-publish, amqp-get, amqp-consume) and python3-kombu (with py-amqp underneath),
interoperating with each other and with pika."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import kombu  # noqa: E402
import pika  # noqa: E402


AmqpBroker = harness.AmqpBroker


def tool(b, name, *args, stdin=None):
    r = subprocess.run(["/usr/bin/" + name, "--server", "127.0.0.1", "--port", str(b.amqp_port)]
                       + list(args), input=stdin, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"{name} {args} failed ({r.returncode}): {r.stderr.decode()}")
    return r.stdout


def test_amqp_tools(b):
    out = tool(b, "amqp-declare-queue", "-q", "tools-q", "-d")
    check(out.strip() == b"tools-q", f"declare printed {out!r}")
    tool(b, "amqp-publish", "-r", "tools-q", "-p", "-C", "text/plain", "-H", "h1: v1",
         "-b", "hello from rabbitmq-c")
    tool(b, "amqp-publish", "-r", "tools-q", "-l", stdin=b"line1\nline2\nline3\n")
    got = tool(b, "amqp-get", "-q", "tools-q")
    check(got == b"hello from rabbitmq-c", f"amqp-get {got!r}")
    # amqp-consume runs a command per message with the body on stdin.
    got = tool(b, "amqp-consume", "-q", "tools-q", "-c", "3", "-p", "1", "cat")
    # -l publishes each line as read, newline included.
    check(got == b"line1\nline2\nline3\n", f"amqp-consume {got!r}")
    # Properties set by rabbitmq-c, read by pika.
    tool(b, "amqp-publish", "-r", "tools-q", "-p", "-C", "application/json", "-H", "k: v",
         "-t", "reply-here", "-b", "{}")
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    ch = c.channel()
    [(m, p, body)] = harness.amqp_get_n(ch, "tools-q", 1)
    check(body == b"{}" and p.content_type == "application/json" and p.delivery_mode == 2 and
          p.headers == {"k": "v"} and p.reply_to == "reply-here", f"properties {p}")
    # Exchange + binding by amqp-consume, published by pika.
    ch.exchange_declare("tools-x", "topic")
    proc = subprocess.Popen(["/usr/bin/amqp-consume", "--server", "127.0.0.1", "--port",
                             str(b.amqp_port), "-e", "tools-x", "-r", "a.#", "-c", "2", "cat"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        # Publish until the consumer's queue is bound (it declares it after connecting).
        sent = 0
        while time.time() < deadline and proc.poll() is None:
            ch.basic_publish("tools-x", "a.b", b"t%d;" % sent)
            ch.basic_publish("tools-x", "b.a", b"never;")
            sent += 1
            time.sleep(0.1)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    check(proc.returncode == 0, f"amqp-consume exit {proc.returncode}: {err!r}")
    check(out.count(b";") == 2 and b"never" not in out, f"topic via amqp-consume {out!r}")
    c.close()


def test_kombu(b):
    url = f"amqp://guest:guest@127.0.0.1:{b.amqp_port}//"
    exchange = kombu.Exchange("kombu-x", type="direct", durable=True)
    queue = kombu.Queue("kombu-q", exchange, routing_key="task", durable=True)
    with kombu.Connection(url) as conn:
        producer = conn.Producer(serializer="json")
        for i in range(20):
            producer.publish({"n": i}, exchange=exchange, routing_key="task",
                             declare=[queue], delivery_mode=2, headers={"i": i})
        got = []

        def on_message(body, message):
            got.append((body["n"], message.headers.get("i")))
            message.ack()
        with conn.Consumer(queue, callbacks=[on_message], prefetch_count=5):
            deadline = time.time() + 10
            while len(got) < 20 and time.time() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
        check(got == [(i, i) for i in range(20)], f"kombu consumed {got}")
        # SimpleQueue: put/get with reject and requeue.
        sq = conn.SimpleQueue("kombu-simple")
        sq.put({"hello": "world"})
        m = sq.get(block=True, timeout=5)
        check(m.payload == {"hello": "world"}, f"simple queue {m.payload}")
        m.requeue()
        m = sq.get(block=True, timeout=5)
        check(m.delivery_info["redelivered"], "requeued message redelivered")
        m.ack()
        sq.close()


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        test_amqp_tools(b)
        print("amqp-tools: ok")
        test_kombu(b)
        print("kombu: ok")
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
