"""kill -9 of the broker during acks=all production to a flush.messages=1 topic; after a
restart every acknowledged record is consumed back at its acknowledged offset."""
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, check, produce_acked_until_kill9, run


def test(args):
    b = Broker(args.sluice).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("durable", num_partitions=2,
                                      config={"flush.messages": "1"})])["durable"].result(10)
        acked = produce_acked_until_kill9(
            b, "durable", 2, {"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        b.start()
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused",
                      "broker.address.family": "v4", "enable.partition.eof": True,
                      "enable.auto.commit": False})
        c.assign([TopicPartition("durable", p, 0) for p in range(2)])
        got, eof, deadline = {}, set(), time.time() + 20
        while len(eof) < 2 and time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                raise AssertionError(str(m.error()))
            got[(m.partition(), m.offset())] = m.value()
        c.close()
        missing = [k for k, v in acked.items() if got.get(k) != v]
        check(not missing, f"{len(missing)} of {len(acked)} acknowledged records lost: {missing[:5]}")
        print(f"  {len(acked)} acknowledged, {len(got)} recovered")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
