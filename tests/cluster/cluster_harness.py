"""Shared by the cluster tests: a cluster started and faulted with tools/cluster, Metadata as
one broker answers it, bounded waits, and the test runner (exit 77: cannot run here)."""
import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Cluster:
    def __init__(self, tool, sluice, root):
        self.tool, self.dir = tool, os.path.join(root, "cluster")
        self.env = dict(os.environ, SLUICE_BIN=sluice)

    def run(self, *args, timeout=90):
        r = subprocess.run([self.tool, args[0], "--dir", self.dir, *args[1:]], env=self.env, timeout=timeout,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"tools/cluster {' '.join(args)}: exit {r.returncode}\n"
                                 f"{r.stdout}{r.stderr}")
        return r.stdout

    def up(self, n, *broker_flags):
        """Starts ZooKeeper and n brokers; returns their Kafka addresses, broker 1 first."""
        out = self.run("up", str(n), "--", *broker_flags)
        line = [l for l in out.splitlines() if l.startswith("BOOTSTRAP=")]
        check(len(line) == 1, f"one BOOTSTRAP line: {out!r}")
        addrs = line[0][len("BOOTSTRAP="):].split(",")
        check(len(addrs) == n, f"{n} brokers: {addrs}")
        return addrs

    def down(self):
        subprocess.run([self.tool, "down", "--dir", self.dir], env=self.env, timeout=60)

    @contextlib.contextmanager
    def running(self, broker_ids=(1, 2, 3)):
        """Around a test's body: on failure the brokers' log tails are printed; the cluster
        goes down in any case."""
        try:
            yield
        except Exception:
            for i in broker_ids:
                print(f"--- broker {i} log tail ---\n{self.tail(i)}")
            raise
        finally:
            self.down()

    def tail(self, broker_id, lines=30):
        path = os.path.join(self.dir, f"b{broker_id}.log")
        try:
            with open(path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def metadata(addr):
    """(brokers {id: "host:port"}, controller id, cluster id) as one broker answers."""
    admin = AdminClient({"bootstrap.servers": addr, "broker.address.family": "v4",
                         "socket.timeout.ms": 2000})
    md = admin.list_topics(timeout=3)
    brokers = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
    return brokers, md.controller_id, md.cluster_id


def layout(addr, topic):
    """{partition: (leader, replicas, error code)} of `topic` as the broker at addr answers
    Metadata, or None if it does not know the topic."""
    md = AdminClient({"bootstrap.servers": addr, "broker.address.family": "v4"}).list_topics(
        timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return {p: (pm.leader, list(pm.replicas), pm.error.code() if pm.error else 0)
            for p, pm in t.partitions.items()}


def produce(bootstrap, topic, n, tag, partitions=None):
    """Acknowledged (partition, offset) -> value of n idempotent acks=all records (values
    "<tag>-<i>"), spread over `partitions` in turn, or by key when None."""
    acked, errors = {}, []
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "enable.idempotence": True, "acks": "all", "message.timeout.ms": 20000})

    def done(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            errors.append(str(err))
    for i in range(n):
        kw = {} if partitions is None else {"partition": partitions[i % len(partitions)]}
        p.produce(topic, value=f"{tag}-{i}".encode(), key=str(i).encode(), on_delivery=done, **kw)
        p.poll(0)
    check(p.flush(30) == 0, "every record answered")
    check(not errors, f"delivery errors: {errors[:3]}")
    return acked


def read_to_end(bootstrap, topic, partitions, timeout=40):
    """(partition, offset) -> value of everything in the topic, read by an assigned consumer
    (no group) from offset 0 to every partition's end."""
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "group.id": "reader", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, at_end = {}, set()
    deadline = time.time() + timeout
    try:
        while len(at_end) < partitions and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                check(m.error().code() == KafkaError._PARTITION_EOF, f"consumer: {m.error()}")
                at_end.add(m.partition())
                continue
            at_end.discard(m.partition())
            got[(m.partition(), m.offset())] = m.value()
    finally:
        c.close()
    check(len(at_end) == partitions, f"every partition read to its end: {sorted(at_end)}")
    return got


def wait_for(what, timeout, cond, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # a broker being killed or started: try again
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")



def run(test):
    """Parses --sluice and --cluster-tool, runs test(args, root) in a scratch directory."""
    p = argparse.ArgumentParser()
    p.add_argument("--sluice", required=True)
    p.add_argument("--cluster-tool", required=True)
    args = p.parse_args()
    if not os.path.exists("/usr/share/java/zookeeper.jar"):
        print("SKIP: ZooKeeper is not installed (tools/lib/deps.sh installs it)")
        sys.exit(77)
    root = tempfile.mkdtemp(prefix="sluice-cluster-")
    started = time.time()
    try:
        test(args, root)
    except Exception:
        import traceback
        traceback.print_exc()
        print(f"FAILED after {time.time() - started:.1f}s")
        sys.exit(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"PASSED in {time.time() - started:.1f}s")
