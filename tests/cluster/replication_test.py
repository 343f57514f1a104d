"""Replicated partitions on three brokers (replication factor 3, min.insync.replicas=2):
1. kcat, confluent-kafka-python, kafka-python and kafkajs each write through one broker's
   address and read everything back through another's; every broker's log holds every record.
2. kill -9 of a partition leader under idempotent acks=all production: a follower takes over,
   the producer goes on, and once the killed broker is back (it catches up and rejoins the ISR)
   every acknowledged record is read back at its offset, no offset holds another record and
   no record is there twice.
3. With two of the three brokers down the ISR is below min.insync.replicas: acks=all writes are
   refused with NOT_ENOUGH_REPLICAS (19) and nothing is appended; acks=1 still works; with a
   broker back the ISR grows and acks=all works again."""
# ctest-timeout: 240
import json
import os
import subprocess
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from cluster_harness import Cluster, check, read_to_end, run, wait_for  # noqa: E402
from harness import npm_modules  # noqa: E402
from kafka_raw import Conn, batch, parse_produce_v3, produce_v3  # noqa: E402

TOPIC = "replicated"
PARTITIONS = 3


def partitions(bootstrap, topic):
    """{partition: (leader, replicas, isrs)} as Metadata answers."""
    md = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"}).list_topics(
        topic, timeout=5)
    t = md.topics[topic]
    return {p: (pm.leader, list(pm.replicas), sorted(pm.isrs)) for p, pm in t.partitions.items()}


def read_all(bootstrap, topic):
    return read_to_end(bootstrap, topic, PARTITIONS)


def clients(addrs, root):
    """Done-when 1: four clients, each writing through one broker and reading through another."""
    values = set()
    # kcat through broker 1.
    kc = [f"kcat-{i}" for i in range(20)]
    r = subprocess.run(["kcat", "-b", addrs[0], "-P", "-t", TOPIC, "-X", "acks=all"],
                       input="\n".join(kc) + "\n", capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"kcat produce: {r.stderr}")
    values.update(kc)
    # confluent-kafka-python through broker 2.
    p = Producer({"bootstrap.servers": addrs[1], "broker.address.family": "v4", "acks": "all",
                  "enable.idempotence": True})
    ck = [f"confluent-{i}" for i in range(20)]
    for v in ck:
        p.produce(TOPIC, value=v.encode())
    check(p.flush(20) == 0, "confluent producer flushed")
    values.update(ck)
    # kafka-python through broker 3.
    kp = [f"kafka-python-{i}" for i in range(20)]
    script = (
        "import sys\nfrom kafka import KafkaProducer\n"
        f"p = KafkaProducer(bootstrap_servers='{addrs[2]}', acks='all')\n"
        f"for v in {kp!r}:\n    p.send('{TOPIC}', v.encode()).get(timeout=20)\n"
        "p.close()\n")
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, f"kafka-python produce: {r.stderr[-2000:]}")
    values.update(kp)
    # kafkajs through broker 1, reading back through broker 2.
    modules = npm_modules(None, ["kafkajs@2"])
    js = r"""
const { Kafka, logLevel } = require('kafkajs');
(async () => {
  const w = new Kafka({ clientId: 'w', brokers: [process.env.W], logLevel: logLevel.ERROR });
  const producer = w.producer();
  await producer.connect();
  const msgs = [];
  for (let i = 0; i < 20; i++) msgs.push({ value: 'kafkajs-' + i });
  await producer.send({ topic: process.env.T, messages: msgs, acks: -1 });
  await producer.disconnect();
  const r = new Kafka({ clientId: 'r', brokers: [process.env.R], logLevel: logLevel.ERROR });
  const consumer = r.consumer({ groupId: 'js-' + Date.now(), sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic: process.env.T, fromBeginning: true });
  const seen = [];
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); } });
  const deadline = Date.now() + 30000;
  while (seen.length < Number(process.env.N) && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 50));
  }
  await consumer.disconnect();
  console.log(JSON.stringify(seen));
})().catch((e) => { console.error(e); process.exit(1); });
"""
    values.update(f"kafkajs-{i}" for i in range(20))
    r = subprocess.run(["node", "-e", js], capture_output=True, text=True, timeout=90,
                       env=dict(os.environ, NODE_PATH=modules, W=addrs[0], R=addrs[1], T=TOPIC,
                                N=str(len(values))))
    check(r.returncode == 0, f"kafkajs: {r.stderr[-2000:]}")
    seen_js = set(json.loads(r.stdout.strip().splitlines()[-1]))
    check(seen_js == values, f"kafkajs read everything: missing {sorted(values - seen_js)[:5]}")
    # kcat reads through broker 3, kafka-python through broker 1, confluent through broker 2.
    r = subprocess.run(["kcat", "-b", addrs[2], "-C", "-t", TOPIC, "-e", "-q", "-o", "beginning"],
                       capture_output=True, text=True, timeout=30)
    check(set(r.stdout.split()) == values, f"kcat read everything: {r.stdout[:200]} {r.stderr}")
    script = (
        "import json\nfrom kafka import KafkaConsumer\n"
        f"c = KafkaConsumer('{TOPIC}', bootstrap_servers='{addrs[0]}', auto_offset_reset='earliest',"
        " consumer_timeout_ms=5000, group_id=None)\n"
        "print(json.dumps([m.value.decode() for m in c]))\n")
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, f"kafka-python consume: {r.stderr[-2000:]}")
    check(set(json.loads(r.stdout.strip().splitlines()[-1])) == values, "kafka-python read all")
    got = read_all(addrs[1], TOPIC)
    check(set(v.decode() for v in got.values()) == values, "confluent read everything")
    print(f"clients: {len(values)} records written and read by kcat, confluent-kafka-python, "
          "kafka-python and kafkajs")


def kill_leader(c, addrs, bootstrap, by_id):
    """Done-when 2, first scenario: kill -9 of a leader under idempotent acks=all writes."""
    acked, errors = {}, []
    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                  "enable.idempotence": True, "acks": "all", "message.timeout.ms": 30000,
                  "linger.ms": 2})

    def done(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            errors.append(str(err))
    layout = partitions(bootstrap, TOPIC)
    victim = layout[0][0]
    i, killed_at, t0 = 0, None, time.time()
    while time.time() - t0 < 8:
        p.produce(TOPIC, value=f"kill-{i}".encode(), partition=i % PARTITIONS, on_delivery=done)
        i += 1
        p.poll(0)
        if i % 200 == 0:
            time.sleep(0.005)
        if killed_at is None and time.time() - t0 > 2:
            c.run("kill", str(victim))
            killed_at = len(acked)
    check(p.flush(40) == 0, "every record answered")
    check(not errors, f"delivery errors: {errors[:3]}")
    after = len(acked) - killed_at
    check(after > 100, f"writes went on after the kill: {after}")
    new_leader = wait_for("a new leader for partition 0", 20,
                          lambda: (lambda l: l if l not in (-1, victim) else None)(
                              partitions(bootstrap, TOPIC)[0][0]))
    c.run("start", str(victim))
    wait_for(f"broker {victim} back in every ISR", 40,
             lambda: (lambda l: len(l) == PARTITIONS and all(len(v[2]) == 3 for v in l.values()))(
                 partitions(bootstrap, TOPIC)))
    got = read_all(bootstrap, TOPIC)
    lost = [k for k, v in acked.items() if got.get(k) != v]
    mine = [v for v in got.values() if v.startswith(b"kill-")]
    dups = len(mine) - len(set(mine))
    check(not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {lost[:5]}")
    check(dups == 0, f"{dups} records twice")
    print(f"kill -9 of leader {victim} (partition 0 now led by {new_leader}): {len(acked)} "
          f"acknowledged ({after} after the kill), 0 lost, 0 changed, 0 duplicates")
    return victim


def below_min_insync(c, addrs, bootstrap, by_id):
    """Done-when 2: ISR below min.insync.replicas refuses acks=all and loses nothing."""
    layout = partitions(bootstrap, TOPIC)
    leader = layout[1][0]
    others = [b for b in (1, 2, 3) if b != leader]
    for b in others:
        c.run("kill", str(b))
    wait_for("the ISR of partition 1 down to its leader", 30,
             lambda: partitions(by_id[leader], TOPIC)[1][2] == [leader])
    port = int(by_id[leader].split(":")[1])
    conn = Conn(port)
    before = read_all(by_id[leader], TOPIC)
    err, _ = parse_produce_v3(conn.call(*produce_v3(TOPIC, 1, batch(-1, -1, -1, [b"refused"]))))
    check(err == 19, f"acks=all below min.insync.replicas: NOT_ENOUGH_REPLICAS, got {err}")
    err, off = parse_produce_v3(conn.call(*produce_v3(TOPIC, 1, batch(-1, -1, -1, [b"one"]), acks=1)))
    check(err == 0, f"acks=1 still written: {err}")
    conn.close()
    after = read_all(by_id[leader], TOPIC)
    check(b"refused" not in after.values(), "the refused record was not appended")
    check(all(after.get(k) == v for k, v in before.items()), "nothing lost")
    c.run("start", str(others[0]))
    wait_for("the ISR of partition 1 back at two", 40,
             lambda: len(partitions(by_id[leader], TOPIC)[1][2]) >= 2)
    conn = Conn(port)
    err, _ = parse_produce_v3(conn.call(*produce_v3(TOPIC, 1, batch(-1, -1, -1, [b"again"]))))
    conn.close()
    check(err == 0, f"acks=all with the ISR at min.insync.replicas: {err}")
    c.run("start", str(others[1]))
    print(f"ISR of partition 1 at its leader {leader} alone: acks=all refused (19), acks=1 "
          "written; with a follower back acks=all works")


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    addrs = c.up(3, "--zookeeper-session-timeout-ms", "2000")
    bootstrap = ",".join(addrs)
    by_id = {i + 1: a for i, a in enumerate(addrs)}
    with c.running():
        admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
        fs = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=3,
                                           config={"min.insync.replicas": "2",
                                                   "replica.lag.time.max.ms": "3000"})])
        fs[TOPIC].result(15)
        wait_for("leaders and full ISRs", 20,
                 lambda: (lambda l: len(l) == PARTITIONS and all(
                     v[0] >= 0 and len(v[2]) == 3 for v in l.values()))(
                         partitions(bootstrap, TOPIC)))
        layout = partitions(bootstrap, TOPIC)
        check(all(len(set(v[1])) == 3 for v in layout.values()), f"three replicas: {layout}")
        check(len({v[0] for v in layout.values()}) == 3, f"leaders spread: {layout}")
        clients(addrs, root)
        kill_leader(c, addrs, bootstrap, by_id)
        below_min_insync(c, addrs, bootstrap, by_id)


if __name__ == "__main__":
    run(test)
