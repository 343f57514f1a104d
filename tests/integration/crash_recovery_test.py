"""kill -9 of the broker during acks=all production to a flush.messages=1 topic; after a
restart every acknowledged record is consumed back at its acknowledged offset."""
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, check, consume_from_start, produce_acked_until_kill9, run


def test(args):
    b = Broker(args.sluice).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        admin.create_topics([NewTopic("durable", num_partitions=2,
                                      config={"flush.messages": "1"})])["durable"].result(10)
        acked = produce_acked_until_kill9(
            b, "durable", 2, {"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
        b.start()
        got = {(p, o): v
               for p, records in consume_from_start(b, "durable", range(2), require_eof=False,
                                                    timeout=20).items()
               for o, v in records}
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
