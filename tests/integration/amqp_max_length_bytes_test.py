"""x-max-length-bytes with RabbitMQ's semantics, through pika: body bytes of ready messages
are counted; drop-head drops (dead-letters, reason maxlen) the oldest, a message alone over
the limit is dropped itself; reject-publish nacks; unacked messages do not count; the count
survives a restart; invalid values are refused with 406."""
# ctest-timeout: 120
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker, NackError  # noqa: E402


AmqpBroker = harness.AmqpBroker


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, socket_timeout=10, blocked_connection_timeout=10))


def get_all(ch, q):
    out = []
    while True:
        m, p, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return out
        out.append((p, body))


def publish_ok(ch, q, body, **props):
    """Publishes on a confirm channel; True if acked, False if nacked."""
    try:
        ch.basic_publish("", q, body, pika.BasicProperties(**props))
        return True
    except NackError:
        return False


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        c = connect(b)
        ch = c.channel()
        ch.confirm_delivery()  # every publish answered: the queue state is settled after it

        # Validation: a non-negative integer.
        for value, text in ((-1, "{value_negative,-1}"), ("ten", "{unacceptable_type,longstr}")):
            try:
                c.channel().queue_declare("bad", arguments={"x-max-length-bytes": value})
                raise AssertionError(f"x-max-length-bytes={value!r} accepted")
            except ChannelClosedByBroker as e:
                check(e.reply_code == 406 and "invalid arg 'x-max-length-bytes' for queue 'bad'"
                      in e.reply_text and text in e.reply_text, f"{value!r}: {e}")

        # drop-head (default): the oldest go to the dead-letter exchange with reason maxlen.
        ch.exchange_declare("dlx", "fanout")
        ch.queue_declare("dead")
        ch.queue_bind("dead", "dlx")
        ch.queue_declare("mlb", arguments={"x-max-length-bytes": 10,
                                           "x-dead-letter-exchange": "dlx"})
        for body in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
            check(publish_ok(ch, "mlb", body), "drop-head publishes are confirmed")
        check(ch.queue_declare("mlb", passive=True).method.message_count == 2, "2 fit in 10 B")
        # A message alone over the limit empties the queue and is dropped itself.
        check(publish_ok(ch, "mlb", b"x" * 11), "an oversized message is confirmed (dropped)")
        check(get_all(ch, "mlb") == [], "oversized message dropped with the rest")
        # Dead-lettered by the broker: counted at once, readable once written.
        dead = [(p, bd) for _, p, bd in harness.amqp_get_exactly(ch, "dead", 5)]
        check([bd for _, bd in dead] == [b"aaaa", b"bbbb", b"cccc", b"dddd", b"x" * 11],
              f"dead-lettered in order: {[bd for _, bd in dead]}")
        check(all(p.headers["x-death"][0]["reason"] == "maxlen" for p, _ in dead), "maxlen")

        # Only ready messages count: unacked ones do not; requeued ones count again.
        ch.queue_declare("mlb2", arguments={"x-max-length-bytes": 10})
        publish_ok(ch, "mlb2", b"11111111")
        held = ch.basic_get("mlb2", auto_ack=False)[0]
        publish_ok(ch, "mlb2", b"22222222")
        check(ch.queue_declare("mlb2", passive=True).method.message_count == 1,
              "an unacked message does not count")
        ch.basic_nack(held.delivery_tag, requeue=True)
        publish_ok(ch, "mlb2", b"3")  # 8 + 8 + 1 > 10: the head (the requeued one) goes
        check([bd for _, bd in get_all(ch, "mlb2")] == [b"22222222", b"3"], "requeue counted")

        # reject-publish: a message that would go over the limit is nacked.
        ch.queue_declare("rpb", arguments={"x-max-length-bytes": 10,
                                           "x-overflow": "reject-publish"})
        check(publish_ok(ch, "rpb", b"666666"), "6 B")
        check(publish_ok(ch, "rpb", b"4444"), "10 B: at the limit")
        check(not publish_ok(ch, "rpb", b"1"), "over the limit: nacked")
        m = ch.basic_get("rpb", auto_ack=False)[0]
        check(publish_ok(ch, "rpb", b"1"), "an unacked message does not count")
        ch.basic_ack(m.delivery_tag)
        check(publish_ok(ch, "rpb", b"55555"), "4 + 1 + 5 = 10 B")
        check([bd for _, bd in get_all(ch, "rpb")] == [b"4444", b"1", b"55555"], "rpb contents")
        check(not publish_ok(ch, "rpb", b"x" * 11), "alone over the limit: nacked")

        # The byte count survives a restart (rebuilt from the log).
        ch.queue_declare("dmlb", durable=True, arguments={"x-max-length-bytes": 10,
                                                          "x-overflow": "reject-publish"})
        check(publish_ok(ch, "dmlb", b"666666", delivery_mode=2), "durable 6 B")
        c.close()
        check(b.stop() == 0, "clean stop")
        b.start()
        c = connect(b)
        ch = c.channel()
        ch.confirm_delivery()
        check(not publish_ok(ch, "dmlb", b"666666", delivery_mode=2),
              "after restart the stored bytes still count")
        check(publish_ok(ch, "dmlb", b"4444", delivery_mode=2), "fits after restart")
        check([bd for _, bd in get_all(ch, "dmlb")] == [b"666666", b"4444"], "dmlb contents")
        c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
