"""x-expires (queue TTL) with RabbitMQ's semantics, through pika: an unused queue (no
consumers, no basic.get, not redeclared) is deleted after x-expires ms, durable ones too; a
consumer or basic.get keeps it; after a restart the lease starts again at boot; bad values
are refused with 406 and RabbitMQ's text."""
# ctest-timeout: 120
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker  # noqa: E402


class AmqpBroker(harness.AmqpBroker):
    def log_size(self):
        return os.path.getsize(self.log_path)

    def wait_log(self, text, since, timeout=10):
        """Waits until the broker's log (after byte `since`) has `text`; returns when."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                if text.encode() in f.read():
                    return time.time()
            time.sleep(0.02)
        raise AssertionError(f"log never showed {text!r}: {self.tail()}")


def connect(b):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, socket_timeout=10, blocked_connection_timeout=10))


def exists(c, name):
    ch = c.channel()
    try:
        ch.queue_declare(name, passive=True)
        ch.close()
        return True
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404, f"passive declare of {name}: {e}")
        return False


def expect_406(c, name, value, text):
    try:
        c.channel().queue_declare(name, arguments={"x-expires": value})
    except ChannelClosedByBroker as e:
        check(e.reply_code == 406 and text in e.reply_text, f"x-expires={value!r}: {e}")
        return
    raise AssertionError(f"x-expires={value!r} accepted")


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        c = connect(b)

        # Validation, as RabbitMQ: a positive integer.
        expect_406(c, "bad", 0, "invalid arg 'x-expires' for queue 'bad' in vhost '/': "
                                "{value_zero,0}")
        expect_406(c, "bad", -5, "{value_negative,-5}")
        expect_406(c, "bad", "soon", "{unacceptable_type,longstr}")
        check(not exists(c, "bad"), "refused queue not created")

        # An unused queue goes; one with a consumer stays until the consumer leaves; one read
        # with basic.get now and then stays.
        ch = c.channel()
        since = b.log_size()
        t0 = time.time()
        ch.queue_declare("idle", arguments={"x-expires": 500})
        ch.queue_declare("consumed", arguments={"x-expires": 500})
        ch.queue_declare("polled", arguments={"x-expires": 500})
        ch.queue_declare("durable-idle", durable=True, arguments={"x-expires": 500})
        ch.basic_publish("", "idle", b"messages do not keep a queue alive")
        tag = ch.basic_consume("consumed", lambda *a: None, auto_ack=True)
        polled_until = time.time() + 1.5
        while time.time() < polled_until:
            ch.basic_get("polled", auto_ack=True)
            c.process_data_events(time_limit=0.1)
        gone_at = b.wait_log("queue 'idle' expired", since)
        b.wait_log("queue 'durable-idle' expired", since)
        check(gone_at - t0 >= 0.45, f"expired after {gone_at - t0:.2f}s, x-expires is 0.5s")
        check(not exists(c, "idle"), "idle queue deleted")
        check(not exists(c, "durable-idle"), "durable idle queue deleted")
        check(exists(c, "consumed"), "a queue with a consumer does not expire")
        check(exists(c, "polled"), "basic.get keeps the queue")
        since = b.log_size()
        ch.basic_cancel(tag)
        cancelled = time.time()
        gone_at = b.wait_log("queue 'consumed' expired", since)
        check(gone_at - cancelled >= 0.45, "lease starts when the last consumer leaves")
        check(not exists(c, "consumed"), "deleted after the consumer left")
        # Deleted means gone: declaring again gives a fresh, empty queue.
        ch.queue_declare("idle")
        check(ch.queue_declare("idle", passive=True).method.message_count == 0, "fresh queue")
        c.close()

        # Durable queues keep x-expires across a restart; the lease starts again at boot.
        c = connect(b)
        ch = c.channel()
        ch.queue_declare("d-exp", durable=True, arguments={"x-expires": 1500})
        ch.queue_declare("d-keep", durable=True)
        ch.basic_publish("", "d-exp", b"p", pika.BasicProperties(delivery_mode=2))
        c.close()
        check(b.stop() == 0, "clean stop")
        since = b.log_size()
        b.start()
        booted = time.time()
        gone_at = b.wait_log("queue 'd-exp' expired", since)
        check(gone_at - booted >= 1.2, f"expired {gone_at - booted:.2f}s after boot, lease 1.5s")
        c = connect(b)
        check(not exists(c, "d-exp"), "durable queue expired after restart")
        check(exists(c, "d-keep"), "other durable queue kept")
        c.close()
        check(b.stop() == 0, "clean stop")
        b.start()
        c = connect(b)
        check(not exists(c, "d-exp"), "expired durable queue stays deleted")
        c.close()
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
