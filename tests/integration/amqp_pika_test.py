"""AMQP 0-9-1 end to end with pika (unmodified): exchange types, default exchange, confirms,
mandatory returns, ack/nack/reject, redelivery, prefetch, get, purge/delete, exclusive /
auto-delete / server-named queues, competing consumers vs fanout, properties, RPC, 1 MiB
body, 10k ordering, error codes, tx, restart persistence."""
# ctest-timeout: 180
import decimal
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker  # noqa: E402


AmqpBroker = harness.AmqpBroker


def connect(b, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, blocked_connection_timeout=10, socket_timeout=10, **kw))


def drain(ch, queue, n, timeout=10, ack=True):
    """Consumes n messages with basic.consume; returns [(method, props, body)]."""
    got = []
    deadline = time.time() + timeout
    for method, props, body in ch.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            got.append((method, props, body))
            if ack:
                ch.basic_ack(method.delivery_tag)
        if len(got) >= n or time.time() > deadline:
            break
    ch.cancel()
    return got


def pump(c, seconds):
    """Processes events for the whole period (process_data_events returns at the first)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        c.process_data_events(time_limit=max(0.0, min(0.1, deadline - time.time())))


def expect_channel_error(fn, code):
    try:
        fn()
    except ChannelClosedByBroker as e:
        check(e.reply_code == code, f"expected {code}, got {e.reply_code} {e.reply_text}")
        return e
    raise AssertionError(f"expected channel error {code}")


def test_handshake(b):
    # A wrong protocol header is answered with ours, then the socket closes.
    with socket.create_connection(("127.0.0.1", b.amqp_port), timeout=5) as s:
        s.sendall(b"AMQP\x01\x01\x00\x0a")
        data = b""
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        check(data == b"AMQP\x00\x00\x09\x01", f"protocol header answer {data!r}")
    try:
        connect(b, credentials=pika.PlainCredentials("guest", "wrong"))
        raise AssertionError("bad password accepted")
    except pika.exceptions.ProbableAuthenticationError:
        pass
    except pika.exceptions.AuthenticationError:
        pass
    c = connect(b)
    props = c._impl.server_properties
    caps = props["capabilities"]
    for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify",
                "exchange_exchange_bindings", "per_consumer_qos",
                "authentication_failure_close"):
        check(caps.get(cap) is True, f"capability {cap}")
    c.close()


def test_exchange_types(c):
    ch = c.channel()
    # Confirmed publishes are readable (routed and written) when basic_publish returns.
    ch.confirm_delivery()
    for q in ("d1", "d2", "t1", "t2", "t3", "h1", "h2", "e1"):
        ch.queue_declare(q)
    ch.exchange_declare("x.direct", "direct")
    ch.queue_bind("d1", "x.direct", "red")
    ch.queue_bind("d2", "x.direct", "blue")
    ch.basic_publish("x.direct", "red", b"r")
    ch.basic_publish("x.direct", "blue", b"b")
    ch.basic_publish("x.direct", "green", b"g")
    ch.exchange_declare("x.topic", "topic")
    ch.queue_bind("t1", "x.topic", "a.*.c")
    ch.queue_bind("t2", "x.topic", "a.#")
    ch.queue_bind("t3", "x.topic", "#.z")
    for k in ("a.b.c", "a", "a.b.b.c", "x.z", "z", "a.z"):
        ch.basic_publish("x.topic", k, k.encode())
    ch.exchange_declare("x.headers", "headers")
    ch.queue_bind("h1", "x.headers", arguments={"x-match": "all", "k1": "v1", "k2": 2})
    ch.queue_bind("h2", "x.headers", arguments={"x-match": "any", "k1": "v1", "k2": 2})
    for i, h in enumerate(({"k1": "v1", "k2": 2}, {"k1": "v1"}, {"k2": 3}, {})):
        ch.basic_publish("x.headers", "", str(i).encode(), pika.BasicProperties(headers=h))
    # exchange-to-exchange binding
    ch.exchange_declare("x.src", "fanout")
    ch.exchange_bind("x.direct", "x.src")  # destination, source
    ch.queue_bind("e1", "x.src")
    ch.basic_publish("x.src", "red", b"via-e2e")

    def bodies(q):
        out = []
        while True:
            m, _, body = ch.basic_get(q, auto_ack=True)
            if m is None:
                return out
            out.append(body)
    check(bodies("d1") == [b"r", b"via-e2e"], "direct d1")
    check(bodies("d2") == [b"b"], "direct d2")
    check(bodies("t1") == [b"a.b.c"], "topic *")
    check(bodies("t2") == [b"a.b.c", b"a", b"a.b.b.c", b"a.z"], "topic a.#")
    check(bodies("t3") == [b"x.z", b"z", b"a.z"], "topic #.z")
    check(bodies("h1") == [b"0"], "headers all")
    check(bodies("h2") == [b"0", b"1"], "headers any")
    check(bodies("e1") == [b"via-e2e"], "fanout source")
    # Redeclare with another type: 406; passive declare of a missing exchange: 404.
    expect_channel_error(lambda: c.channel().exchange_declare("x.direct", "fanout"), 406)
    expect_channel_error(lambda: c.channel().exchange_declare("nope", passive=True), 404)
    expect_channel_error(lambda: c.channel().exchange_declare("amq.mine", "direct"), 403)
    ch2 = c.channel()
    ch2.exchange_delete("x.topic")
    expect_channel_error(lambda: ch2.exchange_declare("x.topic", passive=True), 404)
    ch.close()


def test_confirms_and_return(c):
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("conf", durable=True)
    for i in range(200):
        ch.basic_publish("", "conf", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    try:
        ch.basic_publish("", "no-such-queue", b"lost", mandatory=True)
        raise AssertionError("unroutable mandatory message was confirmed")
    except pika.exceptions.UnroutableError as e:
        check(e.messages[0].method.reply_code == 312, "NO_ROUTE")
    # Non-mandatory unroutable: confirmed, dropped.
    ch.basic_publish("", "no-such-queue", b"dropped")
    check(ch.queue_declare("conf", durable=True).method.message_count == 200, "200 ready")
    ch.queue_delete("conf")
    ch.close()


def test_ack_nack_reject(c):
    ch = c.channel()
    ch.queue_declare("acks")
    ch.confirm_delivery()  # confirmed: readable by the basic.get below
    for i in range(6):
        ch.basic_publish("", "acks", b"%d" % i)
    ms = [ch.basic_get("acks") for _ in range(6)]
    check([m[2] for m in ms] == [b"0", b"1", b"2", b"3", b"4", b"5"], "get order")
    ch.basic_ack(ms[1][0].delivery_tag, multiple=True)       # 0, 1
    ch.basic_reject(ms[2][0].delivery_tag, requeue=False)    # 2 dropped
    ch.basic_reject(ms[3][0].delivery_tag, requeue=True)     # 3 back
    ch.basic_nack(ms[5][0].delivery_tag, multiple=True, requeue=True)  # 4, 5 back
    # Requeued in channel order: the next basic.get sees them.
    again = [ch.basic_get("acks") for _ in range(3)]
    check([m[2] for m in again] == [b"3", b"4", b"5"], f"requeued {[m[2] for m in again]}")
    check(all(m[0].redelivered for m in again), "redelivered flag on requeue")
    ch.basic_nack(again[2][0].delivery_tag, multiple=True, requeue=False)
    check(ch.basic_get("acks")[0] is None, "queue empty after nack without requeue")
    # Unknown delivery tag: 406 PRECONDITION_FAILED, the channel closes.
    expect_channel_error(lambda: (ch.basic_ack(9999), ch.basic_get("acks")), 406)


def test_redelivery_on_channel_close(c):
    ch = c.channel()
    ch.queue_declare("redeliver")
    for i in range(5):
        ch.basic_publish("", "redeliver", b"%d" % i)
    ch2 = c.channel()
    got = drain(ch2, "redeliver", 5, ack=False)
    check(len(got) == 5 and not any(m.redelivered for m, _, _ in got), "first delivery")
    ch2.close()  # unacked return to the queue
    got = drain(ch, "redeliver", 5)
    check([b for _, _, b in got] == [b"0", b"1", b"2", b"3", b"4"], "redelivered in order")
    check(all(m.redelivered for m, _, _ in got), "redelivered=true after channel close")
    ch.close()


def test_prefetch(c):
    ch = c.channel()
    ch.queue_declare("pf")
    for i in range(10):
        ch.basic_publish("", "pf", b"%d" % i)
    ch.basic_qos(prefetch_count=3)
    got = []
    ch.basic_consume("pf", lambda c_, m, p, b: got.append(m))
    pump(c, 0.5)
    check(len(got) == 3, f"prefetch 3 delivered {len(got)}")
    ch.basic_ack(got[-1].delivery_tag, multiple=True)
    pump(c, 0.5)
    check(len(got) == 6, f"after ack: {len(got)}")
    ch.close()
    # Global (channel-wide) prefetch shared by two consumers.
    ch = c.channel()
    ch.queue_declare("pfg1")
    ch.queue_declare("pfg2")
    for i in range(5):
        ch.basic_publish("", "pfg1", b"a")
        ch.basic_publish("", "pfg2", b"b")
    ch.basic_qos(prefetch_count=4, global_qos=True)
    got = []
    ch.basic_consume("pfg1", lambda c_, m, p, b: got.append(m))
    ch.basic_consume("pfg2", lambda c_, m, p, b: got.append(m))
    pump(c, 0.5)
    check(len(got) == 4, f"global prefetch 4 delivered {len(got)}")
    ch.close()


def test_get_purge_delete(c):
    ch = c.channel()
    ch.queue_declare("pq")
    check(ch.basic_get("pq")[0] is None, "get-empty")
    for i in range(7):
        ch.basic_publish("", "pq", b"x")
    [m] = harness.amqp_get_n(ch, "pq", 1, auto_ack=False)
    check(m[0].message_count == 6, f"get-ok message_count {m[0].message_count}")
    check(ch.queue_purge("pq").method.message_count == 6, "purge count")
    # Counted from the moment it is handled (before it is written), and the frames of one
    # connection are handled in order: queue.delete below sees it.
    ch.basic_publish("", "pq", b"y")
    expect_channel_error(lambda: c.channel().queue_delete("pq", if_empty=True), 406)
    chc = c.channel()
    chc.basic_consume("pq", lambda *a: None)
    expect_channel_error(lambda: c.channel().queue_delete("pq", if_unused=True), 406)
    chc.close()
    ch.basic_ack(m[0].delivery_tag)
    check(ch.queue_delete("pq").method.message_count == 1, "delete-ok count")
    expect_channel_error(lambda: c.channel().queue_declare("pq", passive=True), 404)
    ch.close()


def test_queue_kinds(b, c):
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    check(q.startswith("amq.gen-") and len(q) == 30, f"server-named {q}")
    other = connect(b)
    expect_channel_error(lambda: other.channel().queue_declare(q, passive=True), 405)
    expect_channel_error(lambda: other.channel().basic_consume(q, lambda *a: None), 405)
    # Redeclare with other flags: 406.
    ch.queue_declare("flags", durable=False)
    expect_channel_error(lambda: other.channel().queue_declare("flags", durable=True), 406)
    expect_channel_error(lambda: other.channel().queue_declare("amq.reserved"), 403)
    # Redeclare with other arguments RabbitMQ compares: 406; the same values, with a
    # difference only in an argument RabbitMQ does not compare, are fine.
    och = other.channel()
    och.queue_declare("args", arguments={"x-message-ttl": 60000, "x-custom": "a"})
    och.queue_declare("args", arguments={"x-message-ttl": 60000, "x-custom": "b"})
    expect_channel_error(
        lambda: other.channel().queue_declare("args", arguments={"x-message-ttl": 1000}), 406)
    expect_channel_error(lambda: other.channel().queue_declare("args"), 406)
    expect_channel_error(lambda: other.channel().queue_declare(
        "args", arguments={"x-message-ttl": 60000, "x-max-length": 5}), 406)
    och.queue_delete("args")
    # Auto-delete: goes with its last consumer.
    och = other.channel()
    och.queue_declare("ad", auto_delete=True)
    tag = och.basic_consume("ad", lambda *a: None)
    och.basic_cancel(tag)
    expect_channel_error(lambda: other.channel().queue_declare("ad", passive=True), 404)
    # Exclusive queue goes with its connection.
    ch.close()
    c2 = connect(b)
    q2 = c2.channel().queue_declare("", exclusive=True).method.queue
    c2.close()

    def passive_declare_code(q):
        try:
            other.channel().queue_declare(q, passive=True)
            return 200
        except ChannelClosedByBroker as e:
            return e.reply_code
    def answer_once_unlocked():
        code = passive_declare_code(q2)
        return None if code == 405 else code  # 405 RESOURCE_LOCKED: not deleted yet
    code = harness.wait_until(answer_once_unlocked, 10, "exclusive queue deleted")
    check(code == 404, f"exclusive queue after its connection closed: {code}")
    other.close()


def test_competing_vs_fanout(c):
    ch = c.channel()
    ch.queue_declare("work")
    ch.exchange_declare("fan", "fanout")
    for q in ("f1", "f2", "f3"):
        ch.queue_declare(q)
        ch.queue_bind(q, "fan")
    for i in range(30):
        ch.basic_publish("", "work", b"%d" % i)
        ch.basic_publish("fan", "", b"%d" % i)
    a, bb = c.channel(), c.channel()
    a.basic_qos(prefetch_count=1)
    bb.basic_qos(prefetch_count=1)
    seen = {"a": [], "b": []}

    def mk(name, chan):
        def cb(c_, m, p, body):
            seen[name].append(body)
            chan.basic_ack(m.delivery_tag)
        return cb
    a.basic_consume("work", mk("a", a))
    bb.basic_consume("work", mk("b", bb))
    deadline = time.time() + 10
    while len(seen["a"]) + len(seen["b"]) < 30 and time.time() < deadline:
        c.process_data_events(time_limit=0.1)
    total = sorted(seen["a"] + seen["b"], key=int)
    check(total == [b"%d" % i for i in range(30)], "competing consumers: each message once")
    check(seen["a"] and seen["b"], "both competing consumers got work")
    for q in ("f1", "f2", "f3"):
        check(ch.queue_declare(q, passive=True).method.message_count == 30, f"fanout {q}")
    a.close()
    bb.close()
    ch.close()


def test_properties_rpc_big(c):
    ch = c.channel()
    ch.queue_declare("props")
    ch.confirm_delivery()  # confirmed: readable by the basic.gets below
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"s": "str", "i": 42, "l": 2 ** 40, "b": True, "d": decimal.Decimal("1.5"), "n": None,
                 "nested": {"a": [1, "two"]}},
        delivery_mode=2, priority=5, correlation_id="cid", reply_to="rq", expiration="60000",
        message_id="mid", timestamp=1700000000, type="t", user_id="guest", app_id="app",
        cluster_id="cl")
    ch.basic_publish("", "props", b"{}", props)
    m, p, body = ch.basic_get("props", auto_ack=True)
    for f in ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
              "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
              "user_id", "app_id", "cluster_id"):
        check(getattr(p, f) == getattr(props, f), f"property {f}: {getattr(p, f)!r}")
    # RPC: the server answers on the client's exclusive reply queue with the correlation id.
    server = c.channel()
    server.queue_declare("rpc")

    def on_request(chan, method, p, body):
        chan.basic_publish("", p.reply_to, body.upper(),
                           pika.BasicProperties(correlation_id=p.correlation_id))
        chan.basic_ack(method.delivery_tag)
    server.basic_consume("rpc", on_request)
    client = c.channel()
    reply_q = client.queue_declare("", exclusive=True).method.queue
    answers = []
    client.basic_consume(reply_q, lambda ch_, m, p, b: answers.append((p.correlation_id, b)),
                         auto_ack=True)
    client.basic_publish("", "rpc", b"ping", pika.BasicProperties(reply_to=reply_q,
                                                                 correlation_id="42"))
    deadline = time.time() + 5
    while not answers and time.time() < deadline:
        c.process_data_events(time_limit=0.1)
    check(answers == [("42", b"PING")], f"rpc answer {answers}")
    # 1 MiB body (several frames at frame_max 131072).
    big = os.urandom(1 << 20)
    ch.basic_publish("", "props", big)
    m, p, body = ch.basic_get("props", auto_ack=True)
    check(body == big, "1 MiB body round trip")
    ch.close()
    server.close()
    client.close()


def test_ordering_10k(c):
    ch = c.channel()
    ch.queue_declare("order10k")
    ch.confirm_delivery()
    n = 10000
    for i in range(n):
        ch.basic_publish("", "order10k", str(i).encode())
    ch2 = c.channel()
    ch2.basic_qos(prefetch_count=500)
    got = drain(ch2, "order10k", n, timeout=60)
    check([int(b) for _, _, b in got] == list(range(n)), "10k messages in order")
    ch.close()


def test_tx(c):
    ch = c.channel()
    ch.queue_declare("txq")
    ch.tx_select()
    ch.basic_publish("", "txq", b"rolled-back")
    ch.tx_rollback()
    ch.basic_publish("", "txq", b"committed")
    check(c.channel().queue_declare("txq", passive=True).method.message_count == 0,
          "uncommitted publish invisible")
    ch.tx_commit()
    [m] = harness.amqp_get_n(ch, "txq", 1, auto_ack=False)
    check(m[2] == b"committed", "committed publish visible")
    ch.basic_ack(m[0].delivery_tag)
    ch.tx_rollback()  # the ack is discarded: the message is still unacked
    ch.close()        # ...and comes back
    ch = c.channel()
    m = ch.basic_get("txq", auto_ack=True)
    check(m[2] == b"committed" and m[0].redelivered, "rolled-back ack")
    ch.close()


def test_errors(b, c):
    ch = c.channel()
    ch.basic_publish("missing-x", "k", b"x")
    try:
        ch.queue_declare("after-error")
        raise AssertionError("publish to a missing exchange did not close the channel")
    except ChannelClosedByBroker as e:
        check(e.reply_code == 404 and "missing-x" in e.reply_text, f"{e.reply_code} {e.reply_text}")
    expect_channel_error(lambda: c.channel().queue_bind("nope", "amq.direct"), 404)
    # Consumer tag reuse is a connection error (530 NOT_ALLOWED).
    c2 = connect(b)
    ch2 = c2.channel()
    ch2.queue_declare("tags")
    ch2.basic_consume("tags", lambda *a: None, consumer_tag="dup")
    try:
        ch2.basic_consume("tags", lambda *a: None, consumer_tag="dup")
        c2.process_data_events(time_limit=0.5)
        raise AssertionError("consumer tag reuse accepted")
    except ConnectionClosedByBroker as e:
        check(e.reply_code == 530, f"consumer tag reuse: {e.reply_code} {e.reply_text}")
    except pika.exceptions.DuplicateConsumerTag:
        pass  # pika checks its own tags first
    if c2.is_open:
        c2.close()
    # prefetch_size is not implemented (RabbitMQ: 540, a connection error).
    c3 = connect(b)
    try:
        c3.channel().basic_qos(prefetch_size=10)
        raise AssertionError("prefetch_size accepted")
    except ConnectionClosedByBroker as e:
        check(e.reply_code == 540, f"prefetch_size: {e.reply_code}")


def test_disk_follows_depth(b, c):
    """Segments wholly below the acked watermark are deleted (64 MiB queue segments)."""
    import glob
    ch = c.channel()
    ch.queue_declare("big", durable=True)
    body = os.urandom(1 << 20)
    for _ in range(140):
        ch.basic_publish("", "big", body, pika.BasicProperties(delivery_mode=2))

    def queue_logs_with_3_segments():
        return [d for d in glob.glob(os.path.join(b.data_dir, "amqp~q~*-0"))
                if len([f for f in os.listdir(d) if f.endswith(".log")]) >= 3]
    dirs = harness.wait_until(queue_logs_with_3_segments, 30, "140 MiB in 3 queue segments")
    check(len(dirs) == 1, f"one queue log with 3 segments: {dirs}")
    got = drain(ch, "big", 140, timeout=30)
    check(len(got) == 140, f"drained {len(got)}")
    deadline = time.time() + 5
    while time.time() < deadline:
        segs = [f for f in os.listdir(dirs[0]) if f.endswith(".log")]
        if len(segs) == 1:
            break
        time.sleep(0.1)
    check(len(segs) == 1, f"acked segments deleted: {segs}")
    ch.queue_delete("big")
    ch.close()


def test_restart(b):
    c = connect(b)
    ch = c.channel()
    ch.exchange_declare("dx", "topic", durable=True)
    ch.queue_declare("dq", durable=True)
    ch.queue_bind("dq", "dx", "k.#")
    ch.queue_declare("transient-q")
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("dx", "k.%d" % i, b"%d" % i, pika.BasicProperties(delivery_mode=2))
    ms = [ch.basic_get("dq") for _ in range(4)]
    ch.basic_ack(ms[0][0].delivery_tag)
    ch.basic_ack(ms[2][0].delivery_tag)   # out of order; 1 and 3 stay unacked
    c.close()                              # 1 and 3 are requeued
    check(b.stop() == 0, "clean stop")
    b.start()
    c = connect(b)
    ch = c.channel()
    ch.exchange_declare("dx", passive=True)
    check(ch.queue_declare("dq", passive=True).method.message_count == 8, "8 left after restart")
    expect_channel_error(lambda: c.channel().queue_declare("transient-q", passive=True), 404)
    ch.basic_publish("dx", "k.new", b"new")   # the binding survived
    got = drain(ch, "dq", 9)
    bodies = [x[2] for x in got]
    check(bodies == [b"1", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b"new"], f"{bodies}")
    check([x[0].redelivered for x in got][:2] == [True, True], "unacked redelivered=true")
    check(not got[2][0].redelivered, "never-delivered redelivered=false")
    c.close()


def main(args):
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        test_handshake(b)
        c = connect(b)
        for t in (test_exchange_types, test_confirms_and_return, test_ack_nack_reject,
                  test_redelivery_on_channel_close, test_prefetch, test_get_purge_delete,
                  test_competing_vs_fanout, test_properties_rpc_big, test_tx):
            started = time.time()
            t(c)
            print(f"{t.__name__}: ok ({time.time() - started:.2f}s)")
        test_queue_kinds(b, c)
        print("test_queue_kinds: ok")
        test_errors(b, c)
        print("test_errors: ok")
        test_disk_follows_depth(b, c)
        print("test_disk_follows_depth: ok")
        started = time.time()
        test_ordering_10k(c)
        print(f"test_ordering_10k: ok ({time.time() - started:.2f}s)")
        c.close()
        test_restart(b)
        print("test_restart: ok")
        # Stopping with clients still connected (an exclusive queue, an unacked delivery).
        idle = connect(b)
        ich = idle.channel()
        ich.queue_declare("", exclusive=True)
        ich.basic_get("dq")
        check(b.stop() == 0, "clean stop with open connections")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
