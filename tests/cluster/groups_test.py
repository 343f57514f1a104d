"""Consumer groups in a cluster: a group is coordinated by the leader of its __consumer_offsets
partition (created in ZooKeeper on first use, spread over the brokers like any topic), every
broker names the same coordinator, and the others answer NOT_COORDINATOR. Its commits live
with that broker: when the coordinator is killed the group waits (COORDINATOR_NOT_AVAILABLE),
and once it is back the group resumes from its commits: nothing read twice, nothing skipped."""
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
        admin.create_topics([NewTopic("ev", num_partitions=PARTITIONS, replication_factor=1,
                                      config={"flush.messages": "1"})])["ev"].result(15)
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
        print(f"  group gx: coordinator broker {coordinator}; {len(first)} records read, committed")

        # The coordinator dies: the group waits; records go on to partitions still led.
        c.run("kill", str(coordinator))
        ev = leaders(by_id[next(i for i in (1, 2, 3) if i != coordinator)], "ev")
        live = [p for p, l in ev.items() if l != coordinator]
        survivors = ",".join(a for i, a in by_id.items() if i != coordinator)
        wait_for("the coordinator's partitions offline", 10,
                 lambda: all(l != coordinator for l in
                             leaders(survivors.split(",")[0], "ev").values()))
        second = produce(survivors, "ev", 100, "b", live)
        c.run("start", str(coordinator))
        wait_for(f"broker {coordinator} back", 20,
                 lambda: coordinator_of(addrs, "gx") == coordinator and
                 all(l >= 0 for l in leaders(addrs[0], "ev").values()))
        # The group resumes from its commits: exactly the new records.
        got = consume_group(bootstrap, len(second))
        check(got == second, f"after the coordinator's return: {len(got)} read, "
                             f"{len(set(got) & set(first))} of them read before, "
                             f"{len(set(second) - set(got))} new ones missing")
        print(f"  coordinator killed and back: the group read exactly the {len(second)} new "
              f"records")


if __name__ == "__main__":
    run(test)
