"""Queue arguments with RabbitMQ's semantics, through pika: x-message-ttl and per-message
expiration, x-max-length with drop-head and reject-publish, dead-lettering (expired, maxlen,
rejected) with x-death and x-dead-letter-routing-key."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402


AmqpBroker = harness.AmqpBroker


def get_exactly(ch, q, n):
    """The n messages of q [(properties, body)], and then none."""
    return [(p, body) for _, p, body in harness.amqp_get_exactly(ch, q, n)]


def wait_count(ch, q, n, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ch.queue_declare(q, passive=True).method.message_count == n:
            return True
        time.sleep(0.05)
    return False


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
        ch = c.channel()
        ch.exchange_declare("dlx", "direct")
        for q, key in (("dead", "ttl-q"), ("dead-ml", "ml"), ("dead-rej", "custom-key"),
                       ("dead-exp", "exp")):
            ch.queue_declare(q)
            ch.queue_bind(q, "dlx", key)

        # x-message-ttl: expired at the head without any consumer, dead-lettered.
        ch.queue_declare("ttl-q", arguments={"x-message-ttl": 200,
                                             "x-dead-letter-exchange": "dlx"})
        for i in range(3):
            ch.basic_publish("", "ttl-q", b"t%d" % i)
        check(wait_count(ch, "ttl-q", 0), "ttl: expired messages leave the queue")
        check(wait_count(ch, "dead", 3), "ttl: dead-lettered")
        dead = get_exactly(ch, "dead", 3)
        check([bd for _, bd in dead] == [b"t0", b"t1", b"t2"], "ttl: order kept")
        xd = dead[0][0].headers["x-death"][0]
        check(xd["reason"] == "expired" and xd["queue"] == "ttl-q" and xd["count"] == 1 and
              xd["routing-keys"] == ["ttl-q"], f"x-death {xd}")
        check(dead[0][0].headers["x-first-death-reason"] == "expired", "x-first-death")

        # Per-message expiration, found at the head by basic.get.
        ch.queue_declare("exp", arguments={"x-dead-letter-exchange": "dlx"})
        ch.basic_publish("", "exp", b"short", pika.BasicProperties(expiration="100"))
        ch.basic_publish("", "exp", b"long", pika.BasicProperties(expiration="60000"))
        time.sleep(0.3)  # not synchronisation: waits out the 100 ms expiration
        [m] = harness.amqp_get_n(ch, "exp", 1)
        check(m[2] == b"long", f"expired message skipped: {m[2]!r}")
        dead = get_exactly(ch, "dead-exp", 1)
        check([bd for _, bd in dead] == [b"short"], "per-message expiration dead-lettered")
        check(dead[0][0].expiration is None and
              dead[0][0].headers["x-death"][0]["original-expiration"] == "100",
              f"expiration removed on dead-lettering: {dead[0][0]}")

        # x-max-length drop-head: the oldest go, dead-lettered with reason maxlen.
        ch.queue_declare("ml", arguments={"x-max-length": 3, "x-dead-letter-exchange": "dlx"})
        for i in range(5):
            ch.basic_publish("", "ml", b"m%d" % i)
        check([bd for _, bd in get_exactly(ch, "ml", 3)] == [b"m2", b"m3", b"m4"],
              "drop-head keeps newest")
        dead = get_exactly(ch, "dead-ml", 2)
        check([bd for _, bd in dead] == [b"m0", b"m1"] and
              dead[0][0].headers["x-death"][0]["reason"] == "maxlen", "maxlen dead-lettered")

        # x-overflow reject-publish: confirms turn into nacks when full.
        cch = c.channel()
        cch.confirm_delivery()
        cch.queue_declare("rp", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        cch.basic_publish("", "rp", b"1")
        cch.basic_publish("", "rp", b"2")
        try:
            cch.basic_publish("", "rp", b"3")
            raise AssertionError("publish to a full reject-publish queue was confirmed")
        except pika.exceptions.NackError:
            pass
        check(cch.queue_declare("rp", passive=True).method.message_count == 2, "rp keeps 2")

        # basic.reject requeue=false dead-letters, with x-dead-letter-routing-key.
        ch.queue_declare("rej", arguments={"x-dead-letter-exchange": "dlx",
                                           "x-dead-letter-routing-key": "custom-key"})
        ch.basic_publish("", "rej", b"bad", pika.BasicProperties(headers={"keep": "me"}))
        [m] = harness.amqp_get_n(ch, "rej", 1, auto_ack=False)
        ch.basic_reject(m[0].delivery_tag, requeue=False)
        check(wait_count(ch, "dead-rej", 1), "rejected message dead-lettered")
        p, body = get_exactly(ch, "dead-rej", 1)[0]
        check(body == b"bad" and p.headers["keep"] == "me" and
              p.headers["x-death"][0]["reason"] == "rejected", f"rejected: {p.headers}")
        # A requeued nack is not dead-lettered.
        ch.basic_publish("", "rej", b"again")
        [m] = harness.amqp_get_n(ch, "rej", 1, auto_ack=False)
        ch.basic_nack(m[0].delivery_tag, requeue=True)
        # A dead-lettered message would be counted as soon as the nack is handled, and the
        # frames of one channel are handled in order.
        check(ch.queue_declare("dead-rej", passive=True).method.message_count == 0,
              "requeue does not dead-letter")
        c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
