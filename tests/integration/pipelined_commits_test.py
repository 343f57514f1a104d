"""A client that pipelines thousands of requests on one connection (asynchronous offset commits
from confluent-kafka) pushes the connection past its outstanding-request limit, so the broker
pauses and resumes receiving many times. Every commit must be answered, in order, and the last
one must win. This once lost or replayed request bytes: a recv started on resume landed where
the handler had just consumed the buffer empty (see net/reactor/buffer.h, pending writes)."""
# ctest-timeout: 300
import os
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Broker, check, run

ROUNDS = [300, 5000]  # one pause; many pauses


def test(args):
    b = Broker(args.sluice, ["--group-initial-rebalance-delay-ms", "0"]).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("ct", 6, 1)])["ct"].result(20)
        for r, commits in enumerate(ROUNDS):
            done, errors = [0], []

            def on_commit(err, parts):
                done[0] += 1
                if err is not None:
                    errors.append(str(err))
                for tp in parts or []:
                    if tp.error is not None:
                        errors.append(f"{tp.partition}: {tp.error}")

            group = f"pipelined-{r}"
            c = Consumer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                          "group.id": group, "enable.auto.commit": False,
                          "on_commit": on_commit})
            # Commits made before the group coordinator is known wait inside librdkafka and
            # may leave in another order; find the coordinator first (an OffsetFetch).
            c.committed([TopicPartition("ct", p) for p in range(6)], timeout=20)
            t0 = time.time()
            for i in range(commits):
                c.commit(offsets=[TopicPartition("ct", p, i) for p in range(6)],
                         asynchronous=True)
                if i % 500 == 0:
                    c.poll(0)
            while done[0] < commits and time.time() - t0 < 90:
                c.poll(0.1)
            check(done[0] == commits, f"{group}: {done[0]} of {commits} commits answered")
            check(not errors, f"{group}: commit errors: {errors[:3]}")
            committed = c.committed([TopicPartition("ct", p) for p in range(6)], timeout=20)
            check([tp.offset for tp in committed] == [commits - 1] * 6,
                  f"{group}: committed {committed}")
            c.close()
            print(f"{group}: {commits} pipelined commits answered in {time.time() - t0:.1f}s")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
