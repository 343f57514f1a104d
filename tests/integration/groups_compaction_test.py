"""The offsets topic is compacted: 100k+ commits of the same 6 keys (a group committing 6
partitions over and over, as a consumer does) leave its partition small, and the latest
commits come back after a kill -9 and restart (replayed from the compacted log). Small
offsets-topic segments (--offsets-topic-segment-bytes) let the cleaner work during the test."""
# ctest-timeout: 240
import glob
import os
import time

from harness import Broker, check, run

SEGMENT = 64 * 1024
COMMITS = 17000  # x 6 partitions = 102,000 offset records of 6 keys
BOUND = 8 * SEGMENT


def java_hash(s):
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h


def log_bytes(data_dir, partition):
    total = 0
    for f in glob.glob(os.path.join(data_dir, f"__consumer_offsets-{partition}", "*.log")):
        try:
            total += os.path.getsize(f)
        except FileNotFoundError:
            pass  # the cleaner swapped or deleted it since the listing
    return total


def test(args):
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    partitions = 3
    b = Broker(args.sluice, extra=["--offsets-topic-partitions", str(partitions),
                                   "--offsets-topic-segment-bytes", str(SEGMENT)]).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("ct", 6, 1)])["ct"].result(timeout=20)
        group = "compact-g"
        part = (java_hash(group) & 0x7FFFFFFF) % partitions
        done = [0, 0]  # callbacks, errors

        def on_commit(err, parts):
            done[0] += 1
            if err is not None or any(p.error for p in parts):
                done[1] += 1

        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "on_commit": on_commit})
        peak = 0
        started = time.time()
        for i in range(COMMITS):
            c.commit(offsets=[TopicPartition("ct", p, i + 1) for p in range(6)],
                     asynchronous=True)
            # At most 100 in flight: well under the broker's per-connection pipelining cap.
            while i + 1 - done[0] >= 100:
                c.poll(0.01)
            if i % 1000 == 0:
                peak = max(peak, log_bytes(b.data_dir, part))
        while done[0] < COMMITS and time.time() - started < 120:
            c.poll(0.05)
        check(done == [COMMITS, 0], f"commit callbacks {done}")
        # Uncompacted, the partition would reach about 6.3 MB; the cleaner keeps up meanwhile.
        check(peak <= 3 * 1024 * 1024, f"offsets partition reached {peak} bytes while committing")
        raw = log_bytes(b.data_dir, part)
        print(f"{COMMITS} commits in {time.time() - started:.1f}s, partition {part}: "
              f"{raw} bytes at the end, peak sampled {peak}")
        expected = {p: COMMITS for p in range(6)}
        got = {tp.partition: tp.offset
               for tp in c.committed([TopicPartition("ct", p) for p in range(6)], timeout=10)}
        check(got == expected, f"committed {got}")
        c.close()

        # The cleaner keeps the latest record per key: the partition shrinks to a few segments.
        deadline = time.time() + 60
        while time.time() < deadline and log_bytes(b.data_dir, part) > BOUND:
            time.sleep(0.5)
        size = log_bytes(b.data_dir, part)
        check(size <= BOUND, f"offsets partition holds {size} bytes after 102k records of 6 keys "
                             f"(bound {BOUND}): not compacted")

        # Replaying the compacted log gives the latest commits.
        b.kill9()
        b.start()
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
        got = {tp.partition: tp.offset
               for tp in c.committed([TopicPartition("ct", p) for p in range(6)], timeout=10)}
        c.close()
        check(got == expected, f"committed after kill -9 and restart {got}")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
