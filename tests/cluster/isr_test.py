"""The leader keeps the ISR by replica.lag.time.max.ms: a follower stopped (SIGSTOP) for longer
than that, but well within the ZooKeeper session timeout (so the controller still counts it
live), leaves the ISR by the leader's own write; acks=all writes go on meanwhile with the
other two replicas (min.insync.replicas=2); once running again the follower catches up and
rejoins the ISR, and every acknowledged record is read back."""
import os
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from cluster_harness import Cluster, check, read_to_end, run, wait_for  # noqa: E402

TOPIC = "lagging"


def state(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"}).list_topics(
        timeout=5)
    p = md.topics[TOPIC].partitions[0]
    return p.leader, sorted(p.isrs), list(p.replicas)


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    addrs = c.up(3, "--zookeeper-session-timeout-ms", "10000")
    bootstrap = ",".join(addrs)
    with c.running():
        admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic(TOPIC, 1, 3, config={
            "min.insync.replicas": "2", "replica.lag.time.max.ms": "1500"})])[TOPIC].result(15)
        wait_for("a leader and a whole ISR", 20, lambda: len(state(bootstrap)[1]) == 3)
        leader, _, replicas = state(bootstrap)
        follower = next(r for r in replicas if r != leader)
        acked, errors = {}, []
        # Through the leader only, and with its producer id before the follower stops: a
        # stopped broker accepts connections and answers nothing, so a client that asks it
        # anything waits for its socket timeout (a client effect, Kafka's too).
        at_leader = addrs[leader - 1]
        p = Producer({"bootstrap.servers": at_leader, "broker.address.family": "v4",
                      "acks": "all", "enable.idempotence": True, "linger.ms": 2})

        def done(err, msg):
            if err is None:
                acked[msg.offset()] = msg.value()
            else:
                errors.append(str(err))
        p.produce(TOPIC, value=b"first", on_delivery=done)
        check(p.flush(10) == 0, "the first record answered")
        c.run("stop", str(follower))
        stopped = time.time()
        i = 0
        shrunk = None
        while time.time() - stopped < 5:
            p.produce(TOPIC, value=f"v-{i}".encode(), on_delivery=done)
            i += 1
            p.poll(0.005)
            if shrunk is None and follower not in state(at_leader)[1]:
                shrunk = time.time() - stopped
        left = p.flush(20)
        check(left == 0, f"every record answered: {left} of {i} left, {len(acked)} acked")
        check(not errors, f"delivery errors: {errors[:3]}")
        check(shrunk is not None, f"follower {follower} left the ISR while stopped")
        check(state(at_leader)[0] == leader, "the leader stayed")
        during = len(acked)
        check(during > 50, f"acks=all went on with two in-sync replicas: {during}")
        # The follower was out for 3.5 s of those 5: acknowledged without it.
        c.run("cont", str(follower))
        wait_for(f"follower {follower} back in the ISR", 20,
                 lambda: follower in state(bootstrap)[1])
        got = read_to_end(bootstrap, TOPIC, 1)
        lost = [o for o, v in acked.items() if got.get((0, o)) != v]
        check(not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}")
        print(f"follower {follower} stopped: out of the ISR after {shrunk:.1f}s (lag max 1.5 s), "
              f"{during} acks=all records acknowledged meanwhile; back in the ISR once running; "
              "all read back")


if __name__ == "__main__":
    run(test)
