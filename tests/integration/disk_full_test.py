"""Disk full (issue 12, finding 5): the broker's data dir on a 64 MiB tmpfs in a private mount
namespace, grown later with `mount -o remount,size=...` to model space being freed.

- Filled by a confluent_kafka producer (acks=all, no client retries, so every answer is seen)
  on a 2-partition topic (one partition per shard) and a pika publisher in confirm mode on a
  durable queue: once the disk is full, Kafka answers KAFKA_STORAGE_ERROR (56, retriable),
  never MESSAGE_TOO_LARGE (10); AMQP publishes are nacked (the disk alarm is off here so that
  the publisher reaches the full disk; amqp_blocked_test covers the alarm); the broker stays
  up and /metrics counts the logs out of space.
- Once there is room, the same partitions and the same queue take messages again without a
  restart; every acknowledged Kafka record is readable at its offset, offsets are gap-free.
- Filled up again, SIGTERM still exits 0; after growing the disk, a restart finds everything
  acknowledged (both protocols) and stops cleanly again.

The topic uses 1 MiB segments, so segments also roll on the full disk. Index files are mapped
10 MiB sparse files, which belongs to the index-mapping issue and is worked around here: a
write fault on a new index page of a full tmpfs is SIGBUS (with 1 MiB segments, and AMQP
messages of 256 KiB, one index entry each, no index grows past its first page), and opening an
unsealed index reads it whole,
which on tmpfs allocates all of it (one __consumer_offsets partition, and the restart gets a
disk with room for the indexes of every log).

Skips (exit 77, loudly) only when a private mount namespace with a tmpfs cannot be set up
(`unshare -m` and `mount` need root or CAP_SYS_ADMIN)."""
# ctest-timeout: 300
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

IN_NAMESPACE = "SLUICE_DISK_FULL_TEST_IN_NAMESPACE"
TOPIC = "fill"
PARTITIONS = (0, 1)
QUEUE = "durable-fill"
STORAGE_ERROR = 56  # KAFKA_STORAGE_ERROR
AMQP_BODY_BYTES = 256 << 10
SKIP = 77


def enter_private_mount_namespace():
    """Re-runs this test inside `unshare -m` (mounts made there vanish with it). Exits 77 when
    that or a tmpfs mount there is impossible."""
    if os.environ.get(IN_NAMESPACE) == "1":
        return
    probe = tempfile.mkdtemp(prefix="sluice-disk-full-probe-")
    try:
        r = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs -o size=1m tmpfs {probe} && umount {probe}"],
            capture_output=True, timeout=30)
        why = None if r.returncode == 0 else r.stderr.decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    finally:
        os.rmdir(probe)
    if why is not None:
        print("=" * 78)
        print("SKIPPED: disk_full_test needs a private mount namespace with a tmpfs "
              f"(unshare -m, mount; root or CAP_SYS_ADMIN): {why}")
        print("=" * 78)
        sys.exit(SKIP)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(__file__)] + sys.argv[1:],
                       env=dict(os.environ, **{IN_NAMESPACE: "1"}))
    sys.exit(r.returncode)


def mount_tmpfs(path, size):
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=True)


def resize_tmpfs(path, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", path], check=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def metric_sum(http_port, family):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(family + "{"))


class Clients:
    """A Kafka producer and an AMQP confirm-mode publisher, and what each got acknowledged."""

    def __init__(self, b):
        import pika
        from confluent_kafka import Producer
        self.pika = pika
        self.producer = Producer({
            "bootstrap.servers": b.bootstrap, "broker.address.family": "v4", "acks": "all",
            "retries": 0, "linger.ms": 5, "message.timeout.ms": 30000})
        self.conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", b.amqp_port, socket_timeout=10, blocked_connection_timeout=30))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()
        self.ch.queue_declare(QUEUE, durable=True)
        self.kafka_acked = {}  # (partition, offset) -> value
        self.kafka_errors = {}  # error code -> count
        self.kafka_errors_by_partition = {p: 0 for p in PARTITIONS}
        self.amqp_acked = []
        self.amqp_nacks = 0
        self.seq = 0

    def _report(self, err, msg):
        if err is None:
            self.kafka_acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            self.kafka_errors[err.code()] = self.kafka_errors.get(err.code(), 0) + 1
            self.kafka_errors_by_partition[msg.partition()] += 1

    def produce(self, partition, size):
        self.seq += 1
        value = f"k{self.seq}-".encode().ljust(size, b"x")
        self.producer.produce(TOPIC, value=value, partition=partition, on_delivery=self._report)

    def publish(self):
        """True when confirmed, False when nacked."""
        self.seq += 1
        body = f"a{self.seq}-".encode().ljust(AMQP_BODY_BYTES, b"y")
        try:
            self.ch.basic_publish("", QUEUE, body, self.pika.BasicProperties(delivery_mode=2))
        except self.pika.exceptions.NackError:
            self.amqp_nacks += 1
            return False
        self.amqp_acked.append(body)
        return True

    def fill(self, timeout=120):
        """Writes until both partitions got storage errors and the queue nacks, or times out."""
        errors_before = dict(self.kafka_errors_by_partition)
        nacks_before = self.amqp_nacks
        deadline = time.time() + timeout
        i = 0
        while time.time() < deadline:
            for _ in range(64):
                try:
                    self.produce(PARTITIONS[i % len(PARTITIONS)], 8000)
                    i += 1
                except BufferError:
                    break
            self.producer.poll(0.005)
            self.publish()
            if (all(self.kafka_errors_by_partition[p] > errors_before[p] + 20 for p in PARTITIONS)
                    and self.amqp_nacks > nacks_before + 3):
                break
        check(self.producer.flush(60) == 0, "every produce answered")
        check(all(self.kafka_errors_by_partition[p] > errors_before[p] for p in PARTITIONS),
              f"each partition refused writes on the full disk: {self.kafka_errors_by_partition}")
        check(self.amqp_nacks > nacks_before, "the durable queue nacked on the full disk")

    def accepted_again(self, timeout=30):
        """Each partition and the queue take a message again (polled: the logs retry on their own,
        backing off to once a second)."""
        deadline = time.time() + timeout
        for p in PARTITIONS:
            while True:
                before = len(self.kafka_acked)
                self.produce(p, 100)
                self.producer.flush(10)
                if len(self.kafka_acked) > before:
                    break
                check(time.time() < deadline, f"partition {p} still refuses writes")
                time.sleep(0.2)
        while not self.publish():
            check(time.time() < deadline, "queue still nacks")
            time.sleep(0.2)

    def close(self):
        self.producer.flush(10)
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 (the broker may be gone)
            pass


def check_kafka(b, clients):
    """Every acknowledged record at its offset with its value; offsets gap-free from 0."""
    got = harness.consume_from_start(b, TOPIC, list(PARTITIONS), timeout=60)
    for p in PARTITIONS:
        offsets = [o for o, _ in got[p]]
        check(offsets == list(range(len(offsets))),
              f"partition {p}: offsets not gap-free from 0 ({len(offsets)} records)")
    values = {(p, o): v for p in PARTITIONS for o, v in got[p]}
    lost = [k for k, v in clients.kafka_acked.items() if values.get(k) != v]
    check(not lost, f"{len(lost)} acknowledged records missing or changed, e.g. {lost[:5]}")
    return sum(len(got[p]) for p in PARTITIONS)


def drain_queue(b):
    import pika
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port,
                                                             socket_timeout=10))
    ch = conn.channel()
    got = []
    deadline = time.time() + 60
    while time.time() < deadline:
        method, _, body = ch.basic_get(QUEUE, auto_ack=True)
        if method is None:
            break
        got.append(body)
    conn.close()
    return got


def test(args):
    work = tempfile.mkdtemp(prefix="sluice-disk-full-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    mount_tmpfs(mnt, "64m")
    http_port = harness.free_port()
    b = harness.AmqpBroker(args.sluice, ["--disk-free-limit-bytes", "0", "--http-port",
                                         str(http_port), "--offsets-topic-partitions", "1"],
                           data_dir=os.path.join(mnt, "data"))
    b.log_path = os.path.join(work, "broker.log")  # not on the disk being filled
    clients = None
    try:
        b.start()
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        for f in admin.create_topics([NewTopic(TOPIC, num_partitions=len(PARTITIONS),
                                               replication_factor=1,
                                               config={"segment.bytes": "1048576"})]).values():
            f.result(timeout=20)
        clients = Clients(b)

        # 1. Full: retriable errors, no crash.
        clients.fill()
        print(f"full: kafka acked {len(clients.kafka_acked)}, errors {clients.kafka_errors}; "
              f"amqp acked {len(clients.amqp_acked)}, nacked {clients.amqp_nacks}; "
              f"{free_bytes(mnt)} bytes free")
        check(set(clients.kafka_errors) == {STORAGE_ERROR},
              f"Kafka errors on a full disk must all be KAFKA_STORAGE_ERROR (56): "
              f"{clients.kafka_errors}")
        check(b.proc.poll() is None, "broker still running")
        check(metric_sum(http_port, "sluice_logs_out_of_space") >= 1,
              "/metrics counts the logs out of space")
        check(metric_sum(http_port, "sluice_logs_fenced") == 0, "no log fenced")

        # 2. Room again: the same partitions and queue accept, without a restart.
        resize_tmpfs(mnt, "100m")
        clients.accepted_again()
        deadline = time.time() + 10
        while metric_sum(http_port, "sluice_logs_out_of_space") != 0:
            check(time.time() < deadline, "logs still out of space after writes succeeded")
            time.sleep(0.1)
        records = check_kafka(b, clients)
        print(f"resumed: {records} records readable, all {len(clients.kafka_acked)} acked among "
              "them, offsets gap-free")

        # 3. Full again, then SIGTERM: exit 0.
        clients.fill()
        clients.close()
        code = b.stop()
        check(code == 0, f"SIGTERM on a full disk exited with {code}: {b.tail()}")
        print(f"full again: SIGTERM exited 0 with {free_bytes(mnt)} bytes free")

        # 4. Room again, restart: everything acknowledged is there.
        resize_tmpfs(mnt, "256m")
        b.start()
        records = check_kafka(b, clients)
        queued = drain_queue(b)
        missing = set(clients.amqp_acked) - set(queued)
        check(not missing, f"{len(missing)} confirmed AMQP messages lost after the restart")
        print(f"after restart: {records} Kafka records, {len(queued)} queued messages "
              f"({len(clients.amqp_acked)} confirmed, {clients.amqp_nacks} nacked)")
        code = b.stop()
        check(code == 0, f"stop after the restart exited with {code}: {b.tail()}")
    except Exception:
        print(b.tail())
        raise
    finally:
        if clients is not None and b.proc is not None:
            clients.close()
        b.cleanup()
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)
        if os.environ.get("SLUICE_KEEP_LOG"):
            print(f"broker log kept in {b.log_path}")
        else:
            os.unlink(b.log_path)
            os.rmdir(work)


if __name__ == "__main__":
    enter_private_mount_namespace()
    harness.run(test)
