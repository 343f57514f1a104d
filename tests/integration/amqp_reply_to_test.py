"""Direct reply-to (amq.rabbitmq.reply-to) with RabbitMQ's semantics, through pika: RPC across
connections and on one channel, reply-to rewritten to a per-consumer name that passive
declare finds while the consumer lives, errors (ack mode, no reply consumer, a second reply
consumer: 406), replies to a gone requester dropped or returned when mandatory."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker, UnroutableError  # noqa: E402

REPLY_TO = "amq.rabbitmq.reply-to"


AmqpBroker = harness.AmqpBroker


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, socket_timeout=10, blocked_connection_timeout=10))


def wait_for(conns, cond, what, timeout=10):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        for c in conns:
            c.process_data_events(time_limit=0.02)


def expect_406(fn, text):
    try:
        fn()
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406 and text in e.reply_text, f"expected 406 {text!r}: {e}")
        return
    raise AssertionError(f"expected 406 {text!r}")


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        client, server = connect(b), connect(b)
        sch = server.channel()
        sch.queue_declare("rpc")
        requests = []
        sch.basic_consume("rpc", lambda ch, m, p, body: requests.append((m, p, body)),
                          auto_ack=True)

        # The requester consumes the pseudo-queue in no-ack mode (declaring it is optional
        # and answers with its name).
        cch = client.channel()
        ok = cch.queue_declare(REPLY_TO, passive=True)
        check(ok.method.queue == REPLY_TO, f"declare of the pseudo-queue: {ok.method}")
        replies = []
        ctag = cch.basic_consume(REPLY_TO, lambda ch, m, p, body: replies.append((m, p, body)),
                                 auto_ack=True)
        for i in range(3):
            cch.basic_publish("", "rpc", b"question %d" % i, pika.BasicProperties(
                reply_to=REPLY_TO, correlation_id=str(i)))
        wait_for([client, server], lambda: len(requests) == 3, "requests")
        names = {p.reply_to for _, p, _ in requests}
        check(len(names) == 1, f"one reply name per reply consumer: {names}")
        name = names.pop()
        check(name.startswith(REPLY_TO + ".") and len(name) > len(REPLY_TO) + 8,
              f"reply-to rewritten: {name}")
        # A responder can check that the requester is still there.
        check(sch.queue_declare(name, passive=True).method.consumer_count == 1,
              "passive declare of the reply name")
        sch.confirm_delivery()
        for m, p, body in requests:
            sch.basic_publish("", p.reply_to, b"answer to " + body,
                              pika.BasicProperties(correlation_id=p.correlation_id),
                              mandatory=True)  # delivered: neither returned nor nacked
        wait_for([client, server], lambda: len(replies) == 3, "replies")
        for i, (m, p, body) in enumerate(replies):
            check(body == b"answer to question %d" % i and p.correlation_id == str(i),
                  f"reply {i}: {body!r} {p}")
            check(m.consumer_tag == ctag and m.exchange == "" and m.routing_key == name and
                  not m.redelivered, f"reply delivery {m}")

        # RPC on one channel, as in pika's direct_reply_to example.
        both = connect(b)
        ch = both.channel()
        ch.queue_declare("rpc-self", exclusive=True)
        got = []

        def serve(c, m, p, body):
            c.basic_publish("", p.reply_to, body.upper(),
                            pika.BasicProperties(correlation_id=p.correlation_id))
        ch.basic_consume("rpc-self", serve, auto_ack=True)
        ch.basic_consume(REPLY_TO, lambda c, m, p, body: got.append(body), auto_ack=True)
        ch.basic_publish("", "rpc-self", b"marco",
                         pika.BasicProperties(reply_to=REPLY_TO, correlation_id="x"))
        wait_for([both], lambda: got == [b"MARCO"], "reply on the same channel")

        # Errors, as RabbitMQ's.
        expect_406(lambda: both.channel().basic_consume(REPLY_TO, lambda *a: None),
                   "reply consumer cannot acknowledge")
        expect_406(lambda: ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True),
                   "reply consumer already set")
        lone = both.channel()

        def publish_without_consumer():
            lone.basic_publish("", "rpc", b"?", pika.BasicProperties(reply_to=REPLY_TO))
            lone.queue_declare("rpc", passive=True)  # the 406 arrives before this answer
        expect_406(publish_without_consumer, "fast reply consumer does not exist")
        check(len(requests) == 3, "the refused request was not routed")
        both.close()

        # The requester cancels: its reply name is gone; a mandatory reply comes back, a plain
        # one is dropped; a new reply consumer gets a new name.
        cch.basic_cancel(ctag)
        try:
            server.channel().queue_declare(name, passive=True)
            raise AssertionError("reply name still declared after cancel")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 404, f"gone reply name: {e}")
        sch = server.channel()
        sch.confirm_delivery()
        try:
            sch.basic_publish("", name, b"late", mandatory=True)
            raise AssertionError("reply to a gone requester was not returned")
        except UnroutableError:
            pass
        sch.basic_publish("", name, b"late, dropped")  # confirmed, delivered nowhere
        cch.basic_consume(REPLY_TO, lambda ch, m, p, body: replies.append((m, p, body)),
                          auto_ack=True)
        cch.basic_publish("", "rpc", b"again", pika.BasicProperties(reply_to=REPLY_TO))
        wait_for([client, server], lambda: len(requests) == 4, "request after re-consume")
        check(requests[3][1].reply_to != name, "a new consumer gets a new reply name")
        sch.basic_publish("", requests[3][1].reply_to, b"fresh")
        wait_for([client, server], lambda: len(replies) == 4, "reply to the new consumer")
        check([r[2] for r in replies[3:]] == [b"fresh"], f"late replies dropped: {replies}")

        # The requester's connection closes: its reply name is gone too.
        name = requests[3][1].reply_to
        client.close()
        try:
            sch.basic_publish("", name, b"after close", mandatory=True)
            raise AssertionError("reply to a closed connection was not returned")
        except UnroutableError:
            pass
        server.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
