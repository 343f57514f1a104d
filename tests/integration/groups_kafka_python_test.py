"""Consumer groups with kafka-python (its own group protocol code, older API versions than
librdkafka) against sluice: 3 members over 6 partitions get 2 each; a member killed with
kill -9 has its partitions reassigned after the session timeout and every record is consumed
at least once with no gap; the admin client lists and describes the group (members, hosts,
assignments) and its committed offsets; lag per partition (log end - committed) is right;
restarted members resume after the last commit; `kcat -L` lists the offsets topic; the group
is deleted (DeleteGroups) once empty. Each member is its own process."""
# ctest-timeout: 240
import json
import os
import signal
import subprocess
import threading
import time

from harness import Broker, check, run

PY = "/usr/bin/python3"  # Debian's python: python3-kafka

MEMBER = r"""
import json, sys, threading
from kafka import KafkaConsumer, ConsumerRebalanceListener, TopicPartition, OffsetAndMetadata
from kafka.errors import CommitFailedError
bootstrap, group, topic = sys.argv[1:4]
def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
class L(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        out(ev="revoke", parts=sorted(p.partition for p in revoked))
    def on_partitions_assigned(self, assigned):
        out(ev="assign", parts=sorted(p.partition for p in assigned))
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                  enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=300,
                  client_id="kp-member")
c.subscribe([topic], listener=L())
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not stop.is_set():
    for tp, msgs in c.poll(timeout_ms=100).items():
        for m in msgs:
            try:
                c.commit({tp: OffsetAndMetadata(m.offset + 1, "")})
                committed = True
            except CommitFailedError:  # a rebalance: the record comes again (at least once)
                committed = False
            out(ev="msg", p=m.partition, o=m.offset, v=m.value.decode(), committed=committed)
c.close()
out(ev="closed")
"""


class Member:
    def __init__(self, bootstrap, group, topic):
        self.events = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen([PY, "-c", MEMBER, bootstrap, group, topic],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def msgs(self):
        with self.lock:
            return [e for e in self.events if e["ev"] == "msg"]

    def assignment(self):
        with self.lock:
            last = [e for e in self.events if e["ev"] in ("assign", "revoke")]
        return last[-1]["parts"] if last and last[-1]["ev"] == "assign" else []

    def close(self):
        self.proc.stdin.write(b"close\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=20)

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def consumed(members):
    return {(e["p"], e["o"]) for m in members for e in m.msgs()}


def test(args):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    b = Broker(args.sluice, extra=["--group-initial-rebalance-delay-ms", "1000",
                                   "--offsets-topic-partitions", "7"]).start()
    everyone = []
    try:
        bs = b.bootstrap
        admin = KafkaAdminClient(bootstrap_servers=bs)
        admin.create_topics([NewTopic("kp", 6, 1)])
        producer = KafkaProducer(bootstrap_servers=bs, acks="all")

        def produce(start, count):
            for i in range(start, start + count):
                producer.send("kp", key=str(i).encode(), value=f"v{i}".encode())
            producer.flush(30)

        def ends():
            c = KafkaConsumer(bootstrap_servers=bs)
            try:
                return {tp.partition: o for tp, o in
                        c.end_offsets([TopicPartition("kp", p) for p in range(6)]).items()}
            finally:
                c.close()

        def committed():
            return {tp.partition: om.offset
                    for tp, om in admin.list_consumer_group_offsets("kp-g").items()
                    if tp.topic == "kp"}

        produce(0, 300)
        members = [Member(bs, "kp-g", "kp") for _ in range(3)]
        everyone += members
        wait_for(lambda: all(len(m.assignment()) == 2 for m in members), 40, "2 partitions each")
        check(sorted(p for m in members for p in m.assignment()) == list(range(6)),
              "6 partitions covered")
        wait_for(lambda: len(consumed(everyone)) >= 300, 30, "300 records")

        # The admin client sees the group, its members, hosts and assignments.
        check(("kp-g", "consumer") in admin.list_consumer_groups(), "list_consumer_groups")
        [desc] = admin.describe_consumer_groups(["kp-g"])
        check(desc.state == "Stable" and desc.protocol_type == "consumer", f"describe {desc}")
        check(desc.protocol in ("range", "roundrobin"), f"protocol {desc.protocol}")
        check(len(desc.members) == 3, f"members {desc.members}")
        check(all(m.client_id == "kp-member" and m.client_host == "/127.0.0.1"
                  for m in desc.members), f"member info {desc.members}")
        parts = sorted(p for m in desc.members for _, ps in m.member_assignment.assignment
                       for p in ps)
        check(parts == list(range(6)), f"described assignments {parts}")

        # kill -9: the other two take over after the session timeout.
        members[2].kill9()
        wait_for(lambda: sorted(len(m.assignment()) for m in members[:2]) == [3, 3], 30,
                 "reassignment after kill -9")
        produce(300, 150)
        wait_for(lambda: len(consumed(everyone)) >= 450, 30, "450 records")
        end = ends()
        check(sum(end.values()) == 450, f"ends {end}")
        seen = consumed(everyone)
        for p, e in end.items():
            missing = set(range(e)) - {o for (q, o) in seen if q == p}
            check(not missing, f"partition {p} gap: {sorted(missing)[:10]}")
        for m in members[:2]:
            m.close()

        # Committed = log end; then lag per partition = what is produced while nobody reads.
        check(committed() == end, f"committed {committed()} vs ends {end}")
        produce(450, 30)
        end2 = ends()
        com = committed()
        lag = {p: end2[p] - com[p] for p in range(6)}
        check(lag == {p: end2[p] - end[p] for p in range(6)} and sum(lag.values()) == 30,
              f"lag {lag}")
        check(admin.describe_consumer_groups(["kp-g"])[0].state == "Empty", "empty group")

        # Restarted members resume right after the last commit.
        fresh = [Member(bs, "kp-g", "kp") for _ in range(2)]
        everyone += fresh
        wait_for(lambda: len(consumed(fresh)) >= 30, 40, "resumed records")
        time.sleep(0.5)  # not synchronisation: a window for records that must not come
        got = consumed(fresh)
        check(got == {(p, o) for p in range(6) for o in range(end[p], end2[p])},
              f"resumed records {sorted(got)[:5]}")
        for m in fresh:
            m.close()

        # kcat lists the offsets topic (created at start with the configured partition count).
        meta = subprocess.run(["/usr/bin/kcat", "-b", bs, "-L", "-J"], capture_output=True,
                              timeout=30, check=True).stdout
        topics = {t["topic"]: len(t["partitions"]) for t in json.loads(meta)["topics"]}
        check(topics.get("__consumer_offsets") == 7, f"kcat -L topics {topics}")

        # An empty group can be deleted; its offsets go with it.
        result = dict(admin.delete_consumer_groups(["kp-g", "no-such-group"]))
        check(result["kp-g"].__name__ == "NoError", f"delete {result}")
        check(result["no-such-group"].__name__ == "GroupIdNotFoundError", f"delete {result}")
        check(("kp-g", "consumer") not in admin.list_consumer_groups(), "deleted group listed")
        check(committed() == {} or all(o == -1 for o in committed().values()),
              f"offsets after delete {committed()}")
        producer.close()
        admin.close()
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        for m in everyone:
            m.kill9()
        b.cleanup()


if __name__ == "__main__":
    run(test)
