"""A leader stopped (SIGSTOP) for longer than the ZooKeeper session timeout is replaced while
idempotent acks=all producers go on through the others. An acks=all produce sent to it while
it is stopped is not acknowledged after it runs again (it was replaced: its followers fetch
from the new leader), and its record is not in the log once the old leader has followed and
cut its divergent tail. Afterwards every acknowledged record is read back at its offset, no
offset holds another record, nothing is there twice, and the old leader is back in the ISR."""
# ctest-timeout: 240
import os
import sys
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from cluster_harness import Cluster, check, read_to_end, run, wait_for  # noqa: E402
from kafka_raw import Conn, batch, parse_produce_v3, produce_v3  # noqa: E402

TOPIC = "failover"
PARTITIONS = 3
SESSION_MS = 2000


def partitions(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"}).list_topics(
        TOPIC, timeout=5)
    t = md.topics[TOPIC]
    return {p: (pm.leader, sorted(pm.isrs)) for p, pm in t.partitions.items()}


def whole(bootstrap):
    lo = partitions(bootstrap)
    return len(lo) == PARTITIONS and all(l >= 0 and len(i) == 3 for l, i in lo.values())


class Load(threading.Thread):
    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.acked, self.errors, self.stop = {}, [], threading.Event()
        self.p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                           "enable.idempotence": True, "acks": "all", "linger.ms": 2,
                           "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 1000})

    def done(self, err, msg):
        if err is None:
            self.acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            self.errors.append(str(err))

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.p.produce(TOPIC, value=f"load-{i}".encode(), partition=i % PARTITIONS,
                               on_delivery=self.done)
                i += 1
            except BufferError:
                pass
            self.p.poll(0.001)
        self.p.flush(90)


def read_all(bootstrap):
    return read_to_end(bootstrap, TOPIC, PARTITIONS, timeout=60)


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    addrs = c.up(3, "--zookeeper-session-timeout-ms", str(SESSION_MS))
    bootstrap = ",".join(addrs)
    by_id = {i + 1: a for i, a in enumerate(addrs)}
    with c.running():
        admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={
            "min.insync.replicas": "2", "replica.lag.time.max.ms": "3000"})])[TOPIC].result(15)
        wait_for("leaders with whole ISRs", 20, lambda: whole(bootstrap))
        load = Load(bootstrap)
        load.start()
        time.sleep(1.5)
        victim = partitions(bootstrap)[0][0]
        others = [a for i, a in by_id.items() if i != victim]
        # A raw acks=all produce waits in the victim's socket while it is stopped.
        zombie = Conn(int(by_id[victim].split(":")[1]))
        c.run("stop", str(victim))
        stopped_at = time.time()
        zombie.send(*produce_v3(TOPIC, 0, batch(-1, -1, -1, [b"zombie"])))
        new_leader = wait_for("a new leader of partition 0", 15,
                              lambda: (lambda l: l if l not in (-1, victim) else None)(
                                  partitions(",".join(others))[0][0]))
        acked_before = len(load.acked)
        time.sleep(1.5)  # the load goes on through the new leader
        c.run("cont", str(victim))
        print(f"leader {victim} stopped {time.time() - stopped_at:.1f}s; partition 0 led by "
              f"{new_leader}; {len(load.acked) - acked_before} acknowledged meanwhile")
        err, _ = parse_produce_v3(zombie.receive())
        zombie.close()
        check(err != 0, "the replaced leader did not acknowledge the acks=all produce")
        print(f"  the produce sent to the stopped leader was answered with error {err}")
        wait_for(f"broker {victim} back in every ISR", 60, lambda: whole(bootstrap))
        time.sleep(1)
        load.stop.set()
        load.join(120)
        check(not load.errors, f"delivery errors: {load.errors[:3]}")
        got = read_all(bootstrap)
        lost = [k for k, v in load.acked.items() if got.get(k) != v]
        values = list(got.values())
        check(not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {lost[:5]}")
        check(len(values) == len(set(values)), "no record twice")
        check(b"zombie" not in values, "the record the replaced leader took is not in the log")
        print(f"  {len(load.acked)} acknowledged, all read back; nothing twice; "
              f"broker {victim} back in every ISR")


if __name__ == "__main__":
    run(test)
