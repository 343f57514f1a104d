"""Well-behaved clients that run beside a hostile one and record what they saw: a
confluent-kafka producer (acks=all), a confluent-kafka consumer reading what it produces, and
(when the broker has AMQP) a pika publisher with confirms. Each records errors and its worst
stall: the longest produce->ack, produce->consume or publish->confirm time, and the longest
gap between two successes, over the window between mark() and stop()."""
import threading
import time

import pika
from confluent_kafka import Consumer, Producer, TopicPartition


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
                ch.basic_publish("", "bystander", b"x" * 100,
                                 pika.BasicProperties(delivery_mode=2), mandatory=True)
                now = time.time()
                self._ok("amqp publisher", now - sent, now)
                # Keep the queue short: read back what was published.
                while ch.basic_get("bystander", auto_ack=True)[0] is not None:
                    pass
                time.sleep(self.interval)
            conn.close()
        except Exception as e:  # noqa: BLE001 - any failure is what the test reports
            self._error("amqp publisher", repr(e))

    def start(self, warmup=3.0):
        targets = [self._producer, self._consumer]
        if self.amqp_port:
            targets.append(self._amqp)
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
