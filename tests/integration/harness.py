"""Starts the real `sluice` binary for integration tests: free port, temp data dir, bounded
waits, killed by PID on exit (also on failure)."""
import argparse
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def npm_modules(work, packages):
    """npm-installs whichever of `packages` ("name@range") are missing into one prefix under
    `work` (the build tree's cache) and returns its node_modules. Tests run in parallel: the
    install is serialised with a lock file."""
    prefix = os.path.join(work or "/tmp/sluice-it-npm", "npm")
    modules = os.path.join(prefix, "node_modules")
    os.makedirs(prefix, exist_ok=True)
    with open(os.path.join(prefix, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [p for p in packages
                   if not os.path.isdir(os.path.join(modules, p.rsplit("@", 1)[0]))]
        if missing:
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", prefix]
                               + missing, timeout=180, capture_output=True)
            if r.returncode != 0:
                raise AssertionError("npm install failed: " + r.stderr.decode(errors="replace"))
    return modules


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_exactly(sock, n):
    """n bytes from a blocking socket; AssertionError if the peer closes first."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(sock):
    """One size-prefixed Kafka response frame (without its 4-byte size)."""
    (size,) = struct.unpack(">i", recv_exactly(sock, 4))
    return recv_exactly(sock, size)


class Broker:
    def __init__(self, binary, extra=(), data_dir=None):
        self.binary = binary
        self.extra = list(extra)
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sluice-it-")
        self.port = free_port()
        self.proc = None
        # Runs the binary through this command (e.g. prlimit), which must exec it (same PID).
        self.prefix = []
        self.log_path = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + ".log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def wait_port_free(self, timeout=15):
        """After kill -9 the kernel may keep the old listening socket (held by io_uring
        teardown) for a moment: connecting then reaches a dead broker."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", self.port))
                    return
                except OSError:
                    time.sleep(0.05)
        raise RuntimeError(f"port {self.port} still in use")

    def start(self, timeout=20):
        self.wait_port_free()
        start_at = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.prefix + [self.binary, "--data-dir", self.data_dir, "--kafka-port", str(self.port),
             "--amqp-port", "0", "--http-port", "0", "--listen-host", "127.0.0.1"] + self.extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                ready = b"sluice ready" in f.read()
            if ready:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("sluice did not start listening: " + self.tail())

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return ""

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise RuntimeError("sluice did not stop on SIGTERM")
        code = self.proc.returncode if self.proc else 0
        self.proc = None
        return code

    def cleanup(self):
        self.kill9()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            try:
                os.unlink(self.log_path)
            except OSError:
                pass


class AmqpBroker(Broker):
    """A broker with its AMQP listener on a free port as well (amqp_port)."""

    def __init__(self, binary, extra=(), data_dir=None):
        self.amqp_port = free_port()
        super().__init__(binary, ["--amqp-port", str(self.amqp_port)] + list(extra),
                         data_dir=data_dir)


def produce_acked_until_kill9(b, topic, partitions, producer_conf):
    """Produces to `topic` (round robin over `partitions`) with acks=all from a thread, kills
    the broker with -9 once 1000 records were acknowledged (about 2 s here; the producer gives
    up after 20 s), and returns {(partition, offset): value} of every record acknowledged.
    Checks that more than 50 were acknowledged before the kill."""
    import threading
    from confluent_kafka import Producer
    acked = {}
    stop = threading.Event()

    def produce_loop():
        p = Producer(dict(producer_conf, **{"acks": "all", "linger.ms": 2,
                                            "message.timeout.ms": 3000, "retries": 0}))

        def report(err, msg):
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()

        i = 0
        deadline = time.time() + 20
        while not stop.is_set() and time.time() < deadline:
            try:
                p.produce(topic, value=f"d{i}".encode(), partition=i % partitions,
                          on_delivery=report)
            except BufferError:
                pass
            p.poll(0.001)
            i += 1
        p.flush(5)

    t = threading.Thread(target=produce_loop)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 1000 or not t.is_alive(), 25, "1000 acknowledged")
    finally:
        b.kill9()
    count_at_kill = len(acked)
    stop.set()
    t.join(30)
    check(count_at_kill > 50, f"only {count_at_kill} acknowledged before the kill")
    return acked


def consume_from_start(b, topic, partitions, require_eof=True, timeout=30):
    """Every record of the partitions from offset 0, read with confluent-kafka (assigned, no
    group commits): {partition: [(offset, value)]}. With `require_eof`, checks that the end of
    every partition was reached."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                  "group.id": "reader", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = {p: [] for p in partitions}
    eof, deadline = set(), time.time() + timeout
    while len(eof) < len(partitions) and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError(str(m.error()))
        got[m.partition()].append((m.offset(), m.value()))
    c.close()
    if require_eof:
        check(len(eof) == len(partitions), f"end of partitions reached: {sorted(eof)}")
    return got


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--sluice", required=True)
    p.add_argument("--work", default=None, help="cache dir (npm)")
    return p.parse_args()


def run(test):
    """Runs test(args) and reports; the broker started by the test is cleaned up by it."""
    args = parse_args()
    started = time.time()
    try:
        test(args)
    except Exception:
        import traceback
        traceback.print_exc()
        print(f"FAILED after {time.time() - started:.1f}s")
        sys.exit(1)
    print(f"PASSED in {time.time() - started:.1f}s")


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it is true (returns its value); AssertionError naming `what` after
    `timeout` seconds. The bounded wait for a condition that tests use instead of a sleep."""
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def amqp_get_n(ch, queue, n, timeout=10, auto_ack=True):
    """n messages of `queue` by basic.get (pika channel): [(method, properties, body)].
    A message published without confirms (or dead-lettered, or committed in a transaction)
    is counted by queue.declare at once but readable only once the broker wrote it, so an
    empty answer is retried until `timeout`."""
    got = []
    deadline = time.time() + timeout
    while len(got) < n:
        m = ch.basic_get(queue, auto_ack=auto_ack)
        if m[0] is not None:
            got.append(m)
            continue
        if time.time() > deadline:
            raise AssertionError(f"{queue}: {len(got)} of {n} messages readable after {timeout}s")
        ch.connection.process_data_events(time_limit=0.01)
    return got


def amqp_get_exactly(ch, queue, n, timeout=10):
    """amqp_get_n (auto-ack), then checks the queue holds nothing more: queue.declare counts a
    message from the moment it is routed, so an extra one is seen even if not yet written."""
    got = amqp_get_n(ch, queue, n, timeout=timeout)
    left = ch.queue_declare(queue, passive=True).method.message_count
    check(left == 0, f"{queue}: {left} more messages than the {n} expected")
    return got
