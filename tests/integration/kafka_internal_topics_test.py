"""__consumer_offsets belongs to the broker: DeleteTopics, CreatePartitions and
IncrementalAlterConfigs of it are refused with Kafka's INVALID_TOPIC_EXCEPTION (17) (raw
protocol, confluent-kafka's and kafka-python's admin clients), Metadata marks it internal, and
AMQP cannot declare it as a stream queue (403 ACCESS_REFUSED) nor delete it, and a consumer
group beside keeps working: its committed offsets survive a clean restart and a kill -9, so it
resumes where it committed instead of re-consuming everything."""
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

import pika
from pika.exceptions import ChannelClosedByBroker

from harness import AmqpBroker, check, run
from kafka_raw import (Conn, create_partitions_v1, delete_topics_v3, incremental_alter_configs_v0,
                       metadata_v1, parse_create_partitions_v1, parse_delete_topics_v3,
                       parse_incremental_alter_configs_v0, parse_metadata_v1)

OFFSETS = "__consumer_offsets"
INVALID_TOPIC_EXCEPTION = 17
TOPIC, GROUP = "work", "keeps-working"


def produce(b, first, count):
    p = Producer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4", "acks": "all"})
    for i in range(first, first + count):
        p.produce(TOPIC, value=f"v{i}".encode(), partition=i % 2)
    check(p.flush(20) == 0, "produced")


def consume_and_commit(b, count, timeout=30):
    """`count` records read by a member of GROUP (committed synchronously), in a fresh consumer."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4",
                  "group.id": GROUP, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([TOPIC])
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        check(not m.error(), f"consumer error {m.error()}")
        got.append(m.value().decode())
        c.commit(message=m, asynchronous=False)
    # Nothing more than asked for is waiting.
    extra = c.poll(1.0)
    check(extra is None or extra.error(), f"more records than produced: {extra and extra.value()}")
    committed = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)], timeout=10)}
    c.close()
    check(len(got) == count, f"consumed {len(got)} of {count}")
    return sorted(got, key=lambda v: int(v[1:])), committed


def refused_by_raw_protocol(b):
    c = Conn(b.port)
    deleted = parse_delete_topics_v3(c.call(*delete_topics_v3([OFFSETS])))
    check(deleted == {OFFSETS: INVALID_TOPIC_EXCEPTION}, f"DeleteTopics answered {deleted}")
    grown = parse_create_partitions_v1(c.call(*create_partitions_v1(OFFSETS, 60)))
    check(grown[OFFSETS][0] == INVALID_TOPIC_EXCEPTION, f"CreatePartitions answered {grown}")
    check("internal" in (grown[OFFSETS][1] or ""), f"message {grown}")
    for validate_only in (True, False):
        altered = parse_incremental_alter_configs_v0(c.call(*incremental_alter_configs_v0(
            OFFSETS, [("cleanup.policy", "delete"), ("retention.ms", "1")], validate_only)))
        check(altered[OFFSETS][0] == INVALID_TOPIC_EXCEPTION,
              f"IncrementalAlterConfigs answered {altered}")
    meta = parse_metadata_v1(c.call(*metadata_v1()))
    check(meta[OFFSETS] == (0, True, 50), f"Metadata of {OFFSETS}: {meta.get(OFFSETS)}")
    check(meta[TOPIC][1] is False, "an ordinary topic is not internal")
    c.close()


def refused_by_admin_clients(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
    for what, futures in (("delete_topics", admin.delete_topics([OFFSETS], operation_timeout=5)),
                          ("create_partitions",
                           admin.create_partitions([NewPartitions(OFFSETS, 64)]))):
        try:
            futures[OFFSETS].result(timeout=20)
            raise AssertionError(f"confluent-kafka {what} of {OFFSETS} succeeded")
        except KafkaException as e:
            check(e.args[0].code() == INVALID_TOPIC_EXCEPTION, f"{what}: {e}")
    from kafka.admin import KafkaAdminClient
    from kafka.errors import InvalidTopicError
    ka = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=10000)
    try:
        ka.delete_topics([OFFSETS], timeout_ms=5000)
        raise AssertionError(f"kafka-python delete_topics of {OFFSETS} succeeded")
    except InvalidTopicError:
        pass
    finally:
        ka.close()


def refused_by_amqp(b):
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    try:
        ch = conn.channel()
        try:
            ch.queue_declare(OFFSETS, durable=True, arguments={"x-queue-type": "stream"})
            raise AssertionError(f"AMQP declared a stream queue {OFFSETS}")
        except ChannelClosedByBroker as e:
            check(e.reply_code == 403, f"stream declare answered {e.reply_code} {e.reply_text}")
        # No such queue: delete-ok (RabbitMQ's idempotent delete), and nothing of the topic goes.
        ch = conn.channel()
        ch.queue_delete(OFFSETS)
    finally:
        conn.close()
    c = Conn(b.port)
    meta = parse_metadata_v1(c.call(*metadata_v1([OFFSETS])))
    check(meta[OFFSETS] == (0, True, 50), f"after the AMQP attempts: {meta}")
    c.close()


def test(args):
    b = AmqpBroker(args.sluice, ["--num-partitions", "2", "--group-initial-rebalance-delay-ms",
                             "0"]).start()
    try:
        produce(b, 0, 20)
        got, committed = consume_and_commit(b, 20)
        check(got == [f"v{i}" for i in range(20)], f"first pass {got}")
        check(committed == {0: 10, 1: 10}, f"committed {committed}")

        refused_by_raw_protocol(b)
        refused_by_admin_clients(b)
        refused_by_amqp(b)

        # The group keeps working after the attempts...
        produce(b, 20, 10)
        got, committed = consume_and_commit(b, 10)
        check(got == [f"v{i}" for i in range(20, 30)], f"after the refusals {got}")
        check(committed == {0: 15, 1: 15}, f"committed {committed}")

        # ...and its offsets survive a clean restart and a kill -9: it resumes, no re-reading.
        check(b.stop() == 0, "clean shutdown")
        b.start()
        produce(b, 30, 4)
        got, committed = consume_and_commit(b, 4)
        check(got == [f"v{i}" for i in range(30, 34)], f"after a restart {got}")
        time.sleep(0.5)
        b.kill9()
        b.start()
        c = Conn(b.port)
        meta = parse_metadata_v1(c.call(*metadata_v1([OFFSETS])))
        check(meta[OFFSETS] == (0, True, 50), f"after kill -9: {meta}")
        c.close()
        produce(b, 34, 2)
        got, committed = consume_and_commit(b, 2)
        check(got == ["v34", "v35"], f"after kill -9 {got}")
        check(committed == {0: 18, 1: 18}, f"committed {committed}")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
