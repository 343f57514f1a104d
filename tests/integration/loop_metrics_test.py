"""Loop timing on /metrics: per shard, the histograms of iteration time
(sluice_loop_iteration_seconds) and ready wait (sluice_loop_ready_wait_seconds) are well formed
and grow, with sluice_loop_iteration_max_seconds beside them; and a stall of a shard's loop
shows up in them and as a warning in the log (--slow-loop-iteration-ms), consistent with the
delay a bystander client saw meanwhile.

The stall: a DeleteTopics of a topic of many partitions, whose logs each shard deletes in one
loop iteration today (a CreateTopics did the same until its logs were created a few per
iteration; issue 13). If that ever stops stalling the loop, the premise check below fails and
says so: stall the loop another way."""
# ctest-timeout: 240
import os
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kafka_raw as kr  # noqa: E402
from harness import check  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SHARDS = ("0", "1")
WARN_MS = 50
WARNING = re.compile(r"WARN shard (\d+): one event-loop iteration was busy for ([0-9.]+)(us|ms|s) "
                     rf"\(--slow-loop-iteration-ms {WARN_MS}\)")


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        return r.read().decode()


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def histogram(m, family, shard):
    """[(le, cumulative count)] in output order, _count and _sum of one shard."""
    prefix = f'{family}_bucket{{shard="{shard}",le="'
    buckets = [(k[len(prefix):-2], v) for k, v in m.items() if k.startswith(prefix)]
    return (buckets, m.get(f'{family}_count{{shard="{shard}"}}'),
            m.get(f'{family}_sum{{shard="{shard}"}}'))


def check_well_formed(text, m):
    for family in ("sluice_loop_iteration_seconds", "sluice_loop_ready_wait_seconds"):
        check(text.count(f"# TYPE {family} histogram\n") == 1, f"one TYPE line for {family}")
        for shard in SHARDS:
            buckets, count, total = histogram(m, family, shard)
            what = f"{family} of shard {shard}"
            check(len(buckets) == 20 and buckets[-1][0] == "+Inf", f"{what}: 20 buckets: {buckets}")
            les = [float(le) for le, _ in buckets[:-1]]
            check(les == sorted(les) and les[0] == 1e-05 and les[-1] == 10, f"{what}: le order")
            counts = [c for _, c in buckets]
            check(counts == sorted(counts), f"{what}: cumulative counts {counts}")
            check(count == counts[-1], f"{what}: _count {count} is the +Inf bucket {counts[-1]}")
            check(total is not None and total >= 0, f"{what}: _sum {total}")
    check(text.count("# TYPE sluice_loop_iteration_max_seconds gauge\n") == 1, "max gauge TYPE")
    for shard in SHARDS:
        top = m.get(f'sluice_loop_iteration_max_seconds{{shard="{shard}"}}')
        _, _, total = histogram(m, "sluice_loop_iteration_seconds", shard)
        check(top is not None and 0 < top <= total, f"max of shard {shard}: {top}, sum {total}")


def max_of(m, shard):
    return m[f'sluice_loop_iteration_max_seconds{{shard="{shard}"}}']


def above(m, family, shard, le):
    """Samples of a shard's histogram above the bucket bound `le`."""
    buckets, count, _ = histogram(m, family, shard)
    return count - dict(buckets)[le]


LES = ["1e-05", "2e-05", "5e-05", "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005",
       "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"]


class Bystander:
    """A client sending small Metadata requests one after another (handled by shard 0,
    forwarded there if its connection is on shard 1), timing each."""

    def __init__(self, port):
        self.conn = kr.Conn(port, client_id="bystander")
        self.stop = threading.Event()
        self.latencies = []
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop.is_set():
                start = time.monotonic()
                self.conn.call(*kr.metadata_v1([]))
                self.latencies.append(time.monotonic() - start)
                time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 (reported by finish)
            self.error = e

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=60)
        self.conn.close()
        check(self.error is None, f"bystander failed: {self.error!r}")
        return max(self.latencies)


def main(args):
    http_port = harness.free_port()
    b = harness.Broker(args.sluice, ["--http-port", str(http_port), "--shards", "2",
                                     "--offsets-topic-partitions", "1",
                                     "--slow-loop-iteration-ms", str(WARN_MS)])
    try:
        b.start()
        text = scrape(http_port)
        first = samples(text)
        check_well_formed(text, first)

        # The loops run (at least the 100 ms tick): every shard's iterations are counted.
        def grown():
            m = samples(scrape(http_port))
            return all(histogram(m, "sluice_loop_iteration_seconds", s)[1] >
                       histogram(first, "sluice_loop_iteration_seconds", s)[1] + 2
                       for s in SHARDS)
        harness.wait_until(grown, 20, "iteration counts of both shards to grow")

        # A warning logged at start-up would hold back the next one for 10 s (one per 10 s per
        # shard): let that window pass.
        startup = WARNING.findall(b.tail())
        if startup:
            time.sleep(10.5)
        log_at = os.path.getsize(b.log_path)

        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        latency = 0
        for attempt, partitions in enumerate((200, 800, 3200)):
            # A smaller attempt's stall may have been warned about already: its warning would
            # hold back this one's (one per 10 s per shard) and be the only one found below.
            with open(b.log_path) as f:
                f.seek(log_at)
                if WARNING.findall(f.read()):
                    time.sleep(10.5)
                    log_at = os.path.getsize(b.log_path)
            topic = f"wide{attempt}"
            admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(120)
            harness.wait_until(
                lambda: sum(d.startswith(f"{topic}-") for d in os.listdir(b.data_dir)) ==
                partitions, 120, f"the {partitions} logs of {topic} to be created")
            bystander = Bystander(b.port)
            harness.wait_until(lambda: len(bystander.latencies) >= 5, 30, "bystander started")
            before = samples(scrape(http_port))
            start = time.monotonic()
            admin.delete_topics([topic])[topic].result(120)
            took = time.monotonic() - start
            time.sleep(0.3)
            latency = bystander.finish()
            after_text = scrape(http_port)
            after = samples(after_text)
            maxima = ", ".join(f"shard {s} {max_of(after, s):.3f} s" for s in SHARDS)
            print(f"DeleteTopics of {partitions} partitions: {took:.3f} s; bystander's longest "
                  f"wait {latency:.3f} s; iteration max {maxima}")
            if latency >= 0.2:
                break
        check(latency >= 0.2,
              "premise gone: DeleteTopics of 3200 partitions no longer held a bystander for "
              f"200 ms (longest wait {latency:.3f} s); stall a loop another way in this test")
        check_well_formed(after_text, after)

        # The bystander waited `latency` for at most a few loop iterations (its shard's, shard
        # 0's, its shard's again): one of them was busy for at least an eighth of it, and
        # something ready waited at least that long. Bound: the largest bucket bound below.
        bound = max((le for le in LES if float(le) <= latency / 8), key=float)
        longer = {s: above(after, "sluice_loop_iteration_seconds", s, bound) -
                  above(before, "sluice_loop_iteration_seconds", s, bound) for s in SHARDS}
        check(any(n >= 1 for n in longer.values()),
              f"an iteration above {bound} s recorded during the stall: {longer}")
        for s in SHARDS:
            if longer[s] >= 1:
                top = max_of(after, s)
                check(top > float(bound), f"shard {s}: max {top} above {bound}")
        waited = {s: above(after, "sluice_loop_ready_wait_seconds", s, bound) -
                  above(before, "sluice_loop_ready_wait_seconds", s, bound) for s in SHARDS}
        check(any(n >= 1 for n in waited.values()),
              f"a ready wait above {bound} s recorded during the stall: {waited}")
        for s in SHARDS:
            _, count, _ = histogram(after, "sluice_loop_ready_wait_seconds", s)
            _, count_before, _ = histogram(before, "sluice_loop_ready_wait_seconds", s)
            check(count >= count_before, f"shard {s}: ready-wait count never shrinks")

        # The slow iteration is logged (it is above --slow-loop-iteration-ms), with its length.
        def warned():
            with open(b.log_path) as f:
                f.seek(log_at)
                return WARNING.findall(f.read())
        found = harness.wait_until(warned, 10, "a slow-iteration warning in the log")
        unit = {"us": 1e-6, "ms": 1e-3, "s": 1}
        longest = max(float(v) * unit[u] for _, v, u in found)
        check(longest > float(bound), f"the warning names the stall's length: {found}")
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(main)
