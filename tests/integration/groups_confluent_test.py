"""Consumer groups with confluent-kafka-python (librdkafka) against sluice: 3 members of one
group over 6 partitions get 2 each in one generation; a member that leaves and one killed
with kill -9 (session timeout) have their partitions reassigned, every record is consumed at
least once with no gap; committed offsets survive stopping every consumer (a new generation
resumes right after them) and give the right lag; a static member (group.instance.id)
restarted within its session timeout gets its partitions back without a rebalance;
cooperative-sticky members rebalance (incrementally) when a member joins a stable group; broker
kill -9 and restart keeps committed offsets and the static group's members and assignments.
Each member is its own process (so it can be killed)."""
# ctest-timeout: 300
import json
import os
import signal
import subprocess
import sys
import threading
import time

from harness import Broker, check, run

PY = "/usr/bin/python3"  # Debian's python: python3-confluent-kafka, python3-kafka

MEMBER = r"""
import json, sys, threading
from confluent_kafka import Consumer, KafkaException
bootstrap, group, topic, instance = sys.argv[1:5]
conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": int(sys.argv[5]),
        "heartbeat.interval.ms": 300, "partition.assignment.strategy": sys.argv[6]}
if instance != "-":
    conf["group.instance.id"] = instance
c = Consumer(conf)
def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
c.subscribe([topic], on_assign=lambda c, ps: out(ev="assign", parts=sorted(p.partition for p in ps)),
            on_revoke=lambda c, ps: out(ev="revoke", parts=sorted(p.partition for p in ps)))
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not stop.is_set():
    m = c.poll(0.1)
    if m is None:
        continue
    if m.error():
        out(ev="error", err=str(m.error()))
        continue
    try:
        c.commit(message=m, asynchronous=False)  # committed before it is reported
        committed = True
    except KafkaException:  # e.g. REBALANCE_IN_PROGRESS: the record comes again (at least once)
        committed = False
    out(ev="msg", p=m.partition(), o=m.offset(), v=m.value().decode(), committed=committed)
c.close()
out(ev="closed")
"""


class Member:
    def __init__(self, bootstrap, group, topic, instance="-", session_ms=6000, strategy="range"):
        self.events = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [PY, "-c", MEMBER, bootstrap, group, topic, instance, str(session_ms), strategy],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if e["ev"] == kind]

    def assignment(self):
        # librdkafka's eager protocol: revoke everything, then assign; the latest event counts.
        with self.lock:
            last = [e for e in self.events if e["ev"] in ("assign", "revoke")]
        return last[-1]["parts"] if last and last[-1]["ev"] == "assign" else []

    def owned(self):
        """Partitions held under the incremental (cooperative) protocol: assign and revoke
        events add and remove partitions."""
        held = set()
        with self.lock:
            for e in self.events:
                if e["ev"] == "assign":
                    held |= set(e["parts"])
                elif e["ev"] == "revoke":
                    held -= set(e["parts"])
        return sorted(held)

    def close(self, timeout=20):
        self.proc.stdin.write(b"close\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=timeout)

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_for(cond, timeout, what, state=lambda: ""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} {state()}")


def produce(bootstrap, topic, start, count):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    check(p.flush(30) == 0, "producer flushed")


def ends(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(6)}
    finally:
        c.close()


def committed(bootstrap, group, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset
                for tp in c.committed([TopicPartition(topic, p) for p in range(6)], timeout=10)}
    finally:
        c.close()


def consumed(members):
    seen = set()
    for m in members:
        for e in m.of("msg"):
            seen.add((e["p"], e["o"]))
    return seen


def check_no_gap(seen, end):
    for p, e in end.items():
        offs = {o for (q, o) in seen if q == p}
        missing = set(range(e)) - offs
        check(not missing, f"partition {p}: offsets never consumed: {sorted(missing)[:10]}")


def create_topic(bootstrap, name):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, 6, 1)])[name].result(timeout=20)


def dynamic_group(b):
    bs = b.bootstrap
    create_topic(bs, "dyn")
    produce(bs, "dyn", 0, 600)
    members = [Member(bs, "dyn-g", "dyn") for _ in range(3)]
    everyone = list(members)
    try:
        wait_for(lambda: all(len(m.assignment()) == 2 for m in members), 40, "2 partitions each")
        parts = sorted(p for m in members for p in m.assignment())
        check(parts == list(range(6)), f"partitions {parts}")
        # Started together, they land in one generation (group.initial.rebalance.delay.ms).
        check(all(len(m.of("assign")) == 1 for m in members),
              f"assignments {[m.of('assign') for m in members]}")
        wait_for(lambda: len(consumed(everyone)) >= 600, 30, "600 records")

        # A member leaves (LeaveGroup): the other two take over 3 partitions each.
        members[2].close()
        wait_for(lambda: sorted(len(m.assignment()) for m in members[:2]) == [3, 3], 30,
                 "reassignment after leave")
        produce(bs, "dyn", 600, 300)
        wait_for(lambda: len(consumed(everyone)) >= 900, 30, "900 records")

        # A member is killed: after its session timeout (6 s) the survivor gets all six.
        killed_at = time.time()
        members[1].kill9()
        wait_for(lambda: len(members[0].assignment()) == 6, 30, "reassignment after kill -9")
        check(time.time() - killed_at >= 4, "reassigned only after the session timeout")
        produce(bs, "dyn", 900, 300)
        wait_for(lambda: len(consumed(everyone)) >= 1200, 30, "1200 records")
        end = ends(bs, "dyn")
        check(sum(end.values()) == 1200, f"ends {end}")
        check_no_gap(consumed(everyone), end)
        values = {e["v"] for m in everyone for e in m.of("msg")}
        check(values == {f"v{i}" for i in range(1200)}, "every record value consumed")
        members[0].close()

        # Everyone stopped: the commits are the log ends; new records make lag.
        check(committed(bs, "dyn-g", "dyn") == end, "committed = log end")
        produce(bs, "dyn", 1200, 60)
        end2 = ends(bs, "dyn")
        com = committed(bs, "dyn-g", "dyn")
        lag = {p: end2[p] - com[p] for p in range(6)}
        check(sum(lag.values()) == 60 and lag == {p: end2[p] - end[p] for p in range(6)},
              f"lag {lag}")

        # A new generation resumes right after the last commit.
        fresh = [Member(bs, "dyn-g", "dyn") for _ in range(3)]
        everyone += fresh
        wait_for(lambda: len(consumed(fresh)) >= 60, 40, "resumed records")
        time.sleep(0.5)  # not synchronisation: a window for records that must not come
        got = consumed(fresh)
        check(len(got) == 60, f"resumed with {len(got)} records, expected only the 60 new ones")
        for p in range(6):
            offs = sorted(o for (q, o) in got if q == p)
            check(offs == list(range(end[p], end2[p])), f"partition {p} resumed at {offs[:3]}")
        for m in fresh:
            m.close()
    finally:
        for m in everyone:
            m.kill9()


def static_group(b):
    bs = b.bootstrap
    create_topic(bs, "st")
    produce(bs, "st", 0, 120)
    session = 15000
    members = {i: Member(bs, "st-g", "st", f"inst-{i}", session) for i in range(3)}
    everyone = list(members.values())
    try:
        wait_for(lambda: all(len(m.assignment()) == 2 for m in members.values()), 40,
                 "static members assigned")
        wait_for(lambda: len(consumed(everyone)) >= 120, 30, "120 records")
        before = {i: m.assignment() for i, m in members.items()}
        assigns = {i: len(members[i].of("assign")) for i in (0, 2)}

        # Restart instance 1 within its session timeout: same partitions, no rebalance.
        members[1].kill9()
        members[1] = Member(bs, "st-g", "st", "inst-1", session)
        everyone.append(members[1])
        wait_for(lambda: members[1].assignment() != [], 20, "restarted static member assigned")
        check(members[1].assignment() == before[1],
              f"restarted member got {members[1].assignment()}, had {before[1]}")
        time.sleep(2)  # not synchronisation: a window for a rebalance that must not happen
        for i in (0, 2):
            check(len(members[i].of("assign")) == assigns[i] and not members[i].of("revoke"),
                  f"member {i} was rebalanced: {members[i].events[-3:]}")
        produce(bs, "st", 120, 60)
        wait_for(lambda: len(consumed(everyone)) >= 180, 30, "180 records")
        com = committed(bs, "st-g", "st")
        check(sum(com.values()) == 180, f"committed {com}")

        # Broker kill -9 and restart: offsets and the group's members/assignments come back.
        b.kill9()
        b.start()
        check(committed(bs, "st-g", "st") == com, "committed offsets after kill -9")
        from kafka.admin import KafkaAdminClient
        from kafka.coordinator.protocol import ConsumerProtocolMemberAssignment
        admin = KafkaAdminClient(bootstrap_servers=bs)
        try:
            [desc] = admin.describe_consumer_groups(["st-g"])
            check(desc.state == "Stable", f"state after restart {desc.state}")
            check(len(desc.members) == 3, f"members after restart {desc.members}")
            parts = sorted(p for m in desc.members
                           for _, ps in m.member_assignment.assignment for p in ps)
            check(parts == list(range(6)), f"assignments after restart {parts}")
        finally:
            admin.close()
        # The members carry on with the same generation and consume what comes next.
        produce(bs, "st", 180, 60)
        wait_for(lambda: len(consumed(everyone)) >= 240, 40, "240 records after restart")
        check_no_gap(consumed(everyone), ends(bs, "st"))
        for m in members.values():
            m.close()
    finally:
        for m in everyone:
            m.kill9()


def cooperative_group(b):
    """cooperative-sticky (KIP-429) over the classic protocol: a third member joining a
    stable group gets its share through the incremental (multi-round) rebalance."""
    bs = b.bootstrap
    create_topic(bs, "coop")
    produce(bs, "coop", 0, 300)
    members = [Member(bs, "coop-g", "coop", strategy="cooperative-sticky") for _ in range(2)]
    try:
        wait_for(lambda: all(len(m.owned()) == 3 for m in members), 30, "3 partitions each")
        members.append(Member(bs, "coop-g", "coop", strategy="cooperative-sticky"))
        wait_for(lambda: sorted(len(m.owned()) for m in members) == [2, 2, 2], 40,
                 "2 partitions each after the third joined",
                 lambda: [[e for e in m.events if e["ev"] != "msg"] for m in members])
        check(sorted(p for m in members for p in m.owned()) == list(range(6)), "6 owned")
        # (Which partitions move is the client's assignor's business; a member rejoining while
        # a sync is pending restarts the rebalance, as in Kafka, and librdkafka then revokes.)
        produce(bs, "coop", 300, 300)
        wait_for(lambda: len(consumed(members)) >= 600, 30, "600 records")
        check_no_gap(consumed(members), ends(bs, "coop"))
        for m in members:
            m.close()
    finally:
        for m in members:
            m.kill9()


def test(args):
    b = Broker(args.sluice, extra=["--group-initial-rebalance-delay-ms", "1500",
                                   "--offsets-topic-partitions", "10"]).start()
    try:
        dynamic_group(b)
        cooperative_group(b)
        static_group(b)
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
