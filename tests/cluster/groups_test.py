"""Consumer groups in a cluster: a group is coordinated by the leader of its __consumer_offsets
partition (created in ZooKeeper on first use, spread over the brokers like any topic), every
broker names the same coordinator, and the others answer NOT_COORDINATOR. Commits are
replicated with the offsets partition (three replicas): when the coordinator is killed a
follower takes over with them, and the group resumes from its commits: nothing read twice,
nothing skipped."""
import time

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from cluster_harness import Cluster, check, layout, produce, run, wait_for

PARTITIONS = 6


def leaders(addr, topic):
    lo = layout(addr, topic)
    return None if lo is None else {p: leader for p, (leader, _, _) in lo.items()}


def consume_group(bootstrap, want, timeout=40):
    """Reads with group gx until `want` records arrived (and a little more, to catch extra
    ones), then commits."""
    c = Consumer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "group.id": "gx", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["ev"])
    got = {}
    deadline = time.time() + timeout
    quiet_until = None
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got[(m.partition(), m.offset())] = m.value()
            elif m is not None and m.error().code() != KafkaError._PARTITION_EOF:
                print(f"  consumer: {m.error()}")
            if len(got) >= want:
                quiet_until = quiet_until or time.time() + 2
                if time.time() > quiet_until:
                    break
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def coordinator_of(addrs, group):
    admin = KafkaAdminClient(bootstrap_servers=addrs)
    try:
        return admin._find_coordinator_ids([group])[group]
    finally:
        admin.close()


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    addrs = c.up(3, "--zookeeper-session-timeout-ms", "2000")
    bootstrap = ",".join(addrs)
    by_id = {i + 1: a for i, a in enumerate(addrs)}
    with c.running():
        admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("ev", num_partitions=PARTITIONS, replication_factor=3,
                                      config={"flush.messages": "1",
                                              "min.insync.replicas": "2"})])["ev"].result(15)
        wait_for("ev led on every broker", 10,
                 lambda: all(leaders(a, "ev") and min(leaders(a, "ev").values()) >= 0
                             for a in addrs))
        first = produce(bootstrap, "ev", 300, "a", list(range(PARTITIONS)))
        got = consume_group(bootstrap, len(first))
        check(got == first, f"first read: {len(got)} of {len(first)}")

        # Every broker names the same coordinator: the leader of the group's offsets partition.
        coordinator = wait_for("a coordinator for gx", 10, lambda: coordinator_of(addrs, "gx"))
        for a in addrs:
            check(coordinator_of([a], "gx") == coordinator, f"{a} names broker {coordinator}")
        offsets_leaders = leaders(addrs[0], "__consumer_offsets")
        check(offsets_leaders and sorted(set(offsets_leaders.values())) == [1, 2, 3],
              f"__consumer_offsets spread over the brokers: {offsets_leaders}")
        offsets_layout = layout(addrs[0], "__consumer_offsets")
        check(all(len(r) == 3 for _, r, _ in offsets_layout.values()),
              "__consumer_offsets has three replicas")
        print(f"  group gx: coordinator broker {coordinator}; {len(first)} records read, committed")

        # The coordinator dies: a follower of its offsets partition takes over with the group's
        # commits (replicated before they were acknowledged), and the group resumes from them.
        c.run("kill", str(coordinator))
        survivors = [a for i, a in by_id.items() if i != coordinator]
        successor = wait_for("another coordinator for gx", 20,
                             lambda: (lambda n: n if n not in (None, coordinator) else None)(
                                 coordinator_of(survivors, "gx")))
        wait_for("ev led by the survivors", 20,
                 lambda: all(l not in (-1, coordinator)
                             for l in leaders(survivors[0], "ev").values()))
        second = produce(",".join(survivors), "ev", 100, "b", list(range(PARTITIONS)))
        got = consume_group(",".join(survivors), len(second))
        check(got == second, f"after the coordinator's death: {len(got)} read, "
                             f"{len(set(got) & set(first))} of them read before, "
                             f"{len(set(second) - set(got))} new ones missing")
        print(f"  coordinator {coordinator} killed: broker {successor} coordinates gx, which read "
              f"exactly the {len(second)} new records")
        c.run("start", str(coordinator))
        third = produce(bootstrap, "ev", 60, "c", list(range(PARTITIONS)))
        got = consume_group(bootstrap, len(third))
        check(got == third, f"with broker {coordinator} back: {len(got)} of {len(third)}")
        print(f"  broker {coordinator} back: the group read exactly the {len(third)} new records")


if __name__ == "__main__":
    run(test)
