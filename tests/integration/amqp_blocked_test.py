"""Connection.Blocked / Unblocked on the disk alarm, through pika: below
--disk-free-limit-bytes free in the data dir, a publishing connection that announced the
connection.blocked capability gets Connection.Blocked("low on disk") and its publishes are
not read until the alarm clears (Connection.Unblocked); consumers go on. The limit is moved
at run time with <data-dir>/disk-free-limit-bytes (checked every 100 ms): a limit far above
any disk's free space raises the alarm, removing the file restores the flag's limit."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402

HUGE = str(10**18)  # bytes: more than any disk has free


class AmqpBroker(harness.AmqpBroker):
    def __init__(self, binary, limit):
        super().__init__(binary, ["--disk-free-limit-bytes", limit])

    def set_limit(self, value):
        path = os.path.join(self.data_dir, "disk-free-limit-bytes")
        if value is None:
            os.unlink(path)
            return
        with open(path + ".tmp", "w") as f:
            f.write(value)
        os.rename(path + ".tmp", path)


class Client:
    def __init__(self, b):
        self.events = []
        self.conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", b.amqp_port, socket_timeout=10, blocked_connection_timeout=None))
        self.conn.add_on_connection_blocked_callback(
            lambda c, m: self.events.append(("blocked", m.method.reason)))
        self.conn.add_on_connection_unblocked_callback(
            lambda c, m: self.events.append(("unblocked",)))

    def wait_event(self, n, timeout=10):
        deadline = time.time() + timeout
        while len(self.events) < n:
            if time.time() > deadline:
                raise AssertionError(f"events so far {self.events}, wanted {n}")
            self.conn.process_data_events(time_limit=0.05)
        return self.events[n - 1]


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def stays_empty(ch, q, seconds):
    """The queue gets nothing for `seconds` (a blocked publisher's message must not arrive;
    unblocked, it would within milliseconds)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if count(ch, q) != 0:
            return False
        time.sleep(0.05)
    return True


def wait_count(ch, q, n, timeout=10):
    deadline = time.time() + timeout
    while count(ch, q) != n:
        if time.time() > deadline:
            raise AssertionError(f"{q}: {count(ch, q)} messages, wanted {n}")
        time.sleep(0.02)


def main(args):
    # Runs with the default-sized limit (1 byte here: never low), then the alarm is raised
    # and cleared at run time.
    b = AmqpBroker(args.sluice, "1")
    try:
        b.start()
        pub, watcher = Client(b), Client(b)
        pch = pub.conn.channel()
        pch.queue_declare("q")
        pch.basic_publish("", "q", b"before")
        wch = watcher.conn.channel()
        harness.amqp_get_exactly(wch, "q", 1)

        b.set_limit(HUGE)
        check(pub.wait_event(1) == ("blocked", "low on disk"), f"blocked: {pub.events}")
        # The watcher never published: not blocked, it keeps working (a round trip after the
        # publisher's notification would come after its own).
        check(count(wch, "q") == 0 and watcher.events == [], f"consumer-only: {watcher.events}")
        pch.basic_publish("", "q", b"while blocked")
        check(stays_empty(wch, "q", 1.0), "a blocked publisher's message was read")
        # The first publish of a connection that had not published yet blocks it too.
        wch.basic_publish("", "q", b"watcher publishes")
        check(watcher.wait_event(1) == ("blocked", "low on disk"), f"{watcher.events}")
        other = Client(b)
        och = other.conn.channel()
        check(stays_empty(och, "q", 0.5), "second publisher's message was read")

        b.set_limit(None)  # back to the flag's limit: the alarm clears
        check(pub.wait_event(2) == ("unblocked",), f"unblocked: {pub.events}")
        check(watcher.wait_event(2) == ("unblocked",), f"unblocked: {watcher.events}")
        wait_count(och, "q", 2)
        got = sorted(m[2] for m in harness.amqp_get_exactly(och, "q", 2))
        check(got == [b"watcher publishes", b"while blocked"], f"held publishes arrive: {got}")
        # Publishing works normally again, with confirms.
        pch.confirm_delivery()
        pch.basic_publish("", "q", b"after")
        check(count(och, "q") == 1, "published after unblocking")
        check(other.events == [], f"a connection that never published: {other.events}")
        for c in (pub, watcher, other):
            c.conn.close()
        check(b.stop() == 0, "clean stop")

        # Started with a limit above the free space: blocked from the first publish on.
        b2 = AmqpBroker(args.sluice, HUGE)
        try:
            b2.start()
            c = Client(b2)
            ch = c.conn.channel()
            ch.queue_declare("q2")
            ch.basic_publish("", "q2", b"held")
            check(c.wait_event(1) == ("blocked", "low on disk"), f"{c.events}")
            reader = Client(b2)
            rch = reader.conn.channel()
            check(stays_empty(rch, "q2", 0.5), "held while blocked")
            b2.set_limit("0")  # 0 disables the alarm
            check(c.wait_event(2) == ("unblocked",), f"{c.events}")
            wait_count(rch, "q2", 1)
            c.conn.close()
            reader.conn.close()
            check(b2.stop() == 0, "clean stop")
        finally:
            b2.cleanup()
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
