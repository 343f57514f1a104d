"""Well-behaved clients that run beside a hostile one and record what they saw: a
confluent-kafka producer (acks=all), a confluent-kafka consumer reading what it produces, and
(when the broker has AMQP) a pika publisher with confirms (persistent messages on a durable
queue) and a pika consumer with manual acks of that queue. Each records errors and its worst
stall: the longest produce->ack, produce->consume, publish->confirm or publish->deliver time,
and the longest gap between two successes, over the window between mark() and stop()."""
import threading
import time

import pika
from confluent_kafka import Consumer, Producer, TopicPartition

from harness import check


class Bystanders:
    def __init__(self, broker, topic="bystander", amqp_port=None, interval=0.01):
        self.b = broker
        self.topic = topic
        self.amqp_port = amqp_port
        self.interval = interval
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.errors = []
        self.window_start = None
        # name -> [worst latency, last success time, worst gap, successes in the window]
        self.stats = {}
        self.threads = []

    def _ok(self, name, latency, now):
        with self.lock:
            st = self.stats.setdefault(name, [0.0, None, 0.0, 0])
            if self.window_start is None or now < self.window_start:
                st[1] = now
                return
            st[0] = max(st[0], latency)
            last = st[1] if st[1] is not None and st[1] >= self.window_start else self.window_start
            st[2] = max(st[2], now - last)
            st[1] = now
            st[3] += 1

    def _error(self, name, what):
        with self.lock:
            self.errors.append(f"{name}: {what}")

    def _producer(self):
        p = Producer({"bootstrap.servers": self.b.bootstrap, "broker.address.family": "v4",
                      "acks": "all", "linger.ms": 1, "message.timeout.ms": 30000})
        i = 0
        while not self.stop_event.is_set():
            sent = time.time()

            def report(err, msg, sent=sent):
                now = time.time()
                if err is not None:
                    self._error("producer", err)
                else:
                    self._ok("producer", now - sent, now)
            try:
                p.produce(self.topic, value=repr(sent).encode(), partition=0, on_delivery=report)
            except BufferError as e:
                self._error("producer", e)
            p.poll(self.interval)
            i += 1
        if p.flush(30) != 0:
            self._error("producer", "not flushed")

    def _consumer(self):
        c = Consumer({"bootstrap.servers": self.b.bootstrap, "broker.address.family": "v4",
                      "group.id": "bystanders", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(self.topic, 0, 0)])
        while not self.stop_event.is_set():
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                self._error("consumer", m.error())
                continue
            now = time.time()
            self._ok("consumer", now - float(m.value().decode()), now)
        c.close()

    def _amqp(self):
        try:
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=self.amqp_port, heartbeat=0,
                blocked_connection_timeout=30))
            ch = conn.channel()
            ch.queue_declare("bystander", durable=True)
            ch.confirm_delivery()
            while not self.stop_event.is_set():
                sent = time.time()
                ch.basic_publish("", "bystander", repr(sent).encode(),
                                 pika.BasicProperties(delivery_mode=2), mandatory=True)
                now = time.time()
                self._ok("amqp publisher", now - sent, now)
                time.sleep(self.interval)
            conn.close()
        except Exception as e:  # noqa: BLE001 - any failure is what the test reports
            self._error("amqp publisher", repr(e))

    def _amqp_consumer(self):
        try:
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=self.amqp_port, heartbeat=0))
            ch = conn.channel()
            ch.queue_declare("bystander", durable=True)
            ch.basic_qos(prefetch_count=50)
            for method, _, body in ch.consume("bystander", inactivity_timeout=0.1):
                if self.stop_event.is_set():
                    break
                if method is None:
                    continue
                now = time.time()
                self._ok("amqp consumer", now - float(body.decode()), now)
                ch.basic_ack(method.delivery_tag)
            ch.cancel()
            conn.close()
        except Exception as e:  # noqa: BLE001 - any failure is what the test reports
            self._error("amqp consumer", repr(e))

    def start(self, warmup=3.0):
        targets = [self._producer, self._consumer]
        if self.amqp_port:
            targets += [self._amqp, self._amqp_consumer]
        for t in targets:
            th = threading.Thread(target=t, daemon=True)
            th.start()
            self.threads.append(th)
        time.sleep(warmup)
        self.mark()
        return self

    def mark(self):
        """Starts the measured window."""
        with self.lock:
            self.window_start = time.time()
            for st in self.stats.values():
                st[0], st[2], st[3] = 0.0, 0.0, 0

    def worst(self):
        """{name: (worst latency, worst gap, successes)} so far in the window."""
        now = time.time()
        with self.lock:
            out = {}
            for name, st in self.stats.items():
                gap = st[2]
                if st[1] is not None and self.window_start is not None:
                    gap = max(gap, now - max(st[1], self.window_start))
                out[name] = (st[0], gap, st[3])
            return out

    def stop(self):
        result = self.worst()
        self.stop_event.set()
        for th in self.threads:
            th.join(40)
        return result

    def check(self, what, limit=1.0):
        """Every bystander made progress during `what`, without an error and without a stall
        (latency or gap between successes) of `limit` seconds or more."""
        worst = self.worst()
        print(f"  bystanders during {what}: " + ", ".join(
            f"{n}: worst latency {lat:.2f}s, worst gap {gap:.2f}s, {ok} ok"
            for n, (lat, gap, ok) in sorted(worst.items())))
        check(not self.errors, f"bystander errors during {what}: {self.errors[:5]}")
        expected = 4 if self.amqp_port else 2
        check(len(worst) == expected, f"every bystander made progress: {sorted(worst)}")
        for name, (lat, gap, ok) in worst.items():
            check(ok > 0 and lat < limit and gap < limit,
                  f"{name} during {what}: latency {lat:.2f}s, gap {gap:.2f}s, {ok} ok")
