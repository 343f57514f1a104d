"""kafkajs 2 against sluice: admin creates a topic with partitions, a keyed producer with
headers (gzip too), offsets listed by time and at the ends, consumers that seek to an offset and
to a timestamp's offsets, topic deletion. Records are read back by a kafkajs consumer group and
by kcat. Group rebalancing is tested in
groups_kafkajs_test.py. kafkajs is installed from npm into the build tree's cache on first use."""
# ctest-timeout: 240
import json
import os
import subprocess
import time

from harness import Broker, check, npm_modules, run

SCRIPT = r"""
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');
const broker = process.env.SLUICE_BOOTSTRAP;
(async () => {
  const kafka = new Kafka({ clientId: 'it', brokers: [broker], logLevel: logLevel.ERROR,
                            retry: { retries: 3 } });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic: 'js', numPartitions: 3 }],
                                             waitForLeaders: true });
  const meta = await admin.fetchTopicMetadata({ topics: ['js'] });
  const producer = kafka.producer();
  await producer.connect();
  const t0 = Date.now();
  const msgs = [];
  for (let i = 0; i < 90; i++) msgs.push({ key: 'k' + (i % 6), value: 'v' + i,
                                           headers: { idx: String(i) } });
  const res = await producer.send({ topic: 'js', messages: msgs, acks: -1 });
  const gz = await producer.send({ topic: 'js', compression: CompressionTypes.GZIP, acks: -1,
                                   messages: [{ key: 'g', value: 'gzipped', partition: 0 }] });
  const ends = await admin.fetchTopicOffsets('js');
  const byTime = await admin.fetchTopicOffsetsByTimestamp('js', t0 - 60000);
  await producer.disconnect();
  // Read everything back through a consumer group.
  const consumed = [];
  const consumer = kafka.consumer({ groupId: 'js-reader', sessionTimeout: 6000 });
  await consumer.connect();
  await consumer.subscribe({ topic: 'js', fromBeginning: true });
  await consumer.run({ eachMessage: async ({ partition, message }) => {
    consumed.push({ partition, offset: Number(message.offset), key: message.key.toString(),
                    value: message.value.toString(),
                    idx: message.headers.idx ? message.headers.idx.toString() : null });
  } });
  const deadline = Date.now() + 30000;
  while (consumed.length < 91 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await consumer.disconnect();
  // A second round after a pause in time: offsets by that timestamp point at its first record.
  await new Promise((r) => setTimeout(r, 20));
  const t1 = Date.now();
  await new Promise((r) => setTimeout(r, 5));
  const late = [];
  for (let i = 0; i < 30; i++) late.push({ key: 'late' + (i % 5), value: 'w' + i });
  await producer.connect();
  await producer.send({ topic: 'js', messages: late, acks: -1 });
  await producer.disconnect();
  const byT1 = await admin.fetchTopicOffsetsByTimestamp('js', t1);
  // Consumers that seek: to the timestamp's offsets, and to offset 5 of every partition.
  async function readFrom(groupId, starts, want) {
    const got = [];
    const c = kafka.consumer({ groupId, sessionTimeout: 6000 });
    await c.connect();
    await c.subscribe({ topic: 'js', fromBeginning: false });
    await c.run({ eachMessage: async ({ partition, message }) => {
      got.push({ partition, offset: Number(message.offset), value: message.value.toString() });
    } });
    for (const s of starts) c.seek({ topic: 'js', partition: s.partition, offset: String(s.offset) });
    const until = Date.now() + 30000;
    while (got.length < want && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300));  // anything extra would show up here
    await c.disconnect();
    return got;
  }
  const fromTime = await readFrom('js-time', byT1, 30);
  const ends2 = await admin.fetchTopicOffsets('js');
  const fromOffset = await readFrom('js-offset', [0, 1, 2].map((p) => ({ partition: p, offset: 5 })),
                                    121 - 15);
  // Topic deletion: a scratch topic is created, listed, deleted and gone.
  await admin.createTopics({ topics: [{ topic: 'scratch', numPartitions: 2 }], waitForLeaders: true });
  const listedBefore = await admin.listTopics();
  await admin.deleteTopics({ topics: ['scratch'] });
  const topics = await admin.listTopics();
  console.log(JSON.stringify({ created, partitions: meta.topics[0].partitions.length, res, gz,
                               ends, byTime, topics, consumed, byT1, fromTime, ends2, fromOffset,
                               listedBefore }));
  await admin.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test(args):
    modules = npm_modules(args.work, ["kafkajs@2"])
    b = Broker(args.sluice).start()
    try:
        env = dict(os.environ, NODE_PATH=modules, SLUICE_BOOTSTRAP=b.bootstrap)
        r = subprocess.run(["node", "-e", SCRIPT], env=env,
                           capture_output=True, timeout=150)
        if r.returncode != 0:
            raise AssertionError("kafkajs failed: " + r.stderr.decode(errors="replace"))
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        check(out["created"] is True, f"created {out['created']}")
        check(out["partitions"] == 3, "3 partitions")
        check(sum(int(e["high"]) for e in out["ends"]) == 91, f"ends {out['ends']}")
        check(all(int(o["offset"]) == 0 for o in out["byTime"]), f"by time {out['byTime']}")
        check(all(p["errorCode"] == 0 for p in out["res"]), f"produce {out['res']}")
        # The kafkajs group consumer read every record once, headers and order intact.
        cons = out["consumed"]
        check(len(cons) == 91, f"kafkajs consumer read {len(cons)}")
        check(len({(m["partition"], m["offset"]) for m in cons}) == 91, "no duplicates")
        for m in cons:
            if m["key"] != "g":
                check(m["idx"] == m["value"][1:], f"consumed headers {m}")
        for part in range(3):
            offs = [m["offset"] for m in cons if m["partition"] == part]
            check(offs == sorted(offs), f"partition {part} consumed in order")
        check(any(m["value"] == "gzipped" for m in cons), "gzip batch consumed")
        # Seek to the offsets a timestamp maps to: exactly the second round, in order.
        ends = {int(e["partition"]): int(e["high"]) for e in out["ends"]}
        ends2 = {int(e["partition"]): int(e["high"]) for e in out["ends2"]}
        t1 = {int(o["partition"]): int(o["offset"]) for o in out["byT1"]}
        check(t1 == ends, f"offsets by the second round's timestamp {t1} != first ends {ends}")
        ft = out["fromTime"]
        check(sorted(m["value"] for m in ft) == sorted(f"w{i}" for i in range(30)),
              f"seek by timestamp read {[m['value'] for m in ft]}")
        # Seek to offset 5 of each partition: every record from there, none before, in order.
        fo = out["fromOffset"]
        check(len(fo) == sum(ends2.values()) - 15, f"seek to offset 5 read {len(fo)}")
        for part in range(3):
            offs = [m["offset"] for m in fo if m["partition"] == part]
            check(offs == list(range(5, ends2[part])), f"partition {part} from offset 5: {offs}")
        check("scratch" in out["listedBefore"] and "scratch" not in out["topics"],
              f"topic deletion: before {out['listedBefore']}, after {out['topics']}")
        # Read back with kcat: keys, values, headers, per-partition order.
        cmd = ["/usr/bin/kcat", "-b", b.bootstrap, "-C", "-t", "js", "-e", "-q", "-J",
               "-o", "beginning"]
        got = [json.loads(l) for l in subprocess.run(cmd, capture_output=True, timeout=30,
                                                     check=True).stdout.decode().splitlines() if l]
        check(len(got) == 121, f"kcat read {len(got)}")
        plain = [m for m in got if m["key"] not in ("g",) and not m["key"].startswith("late")]
        for m in plain:
            check(m["headers"] == ["idx", m["payload"][1:]], f"headers {m}")
        for part in range(3):
            vals = [int(m["payload"][1:]) for m in sorted(plain, key=lambda m: m["offset"])
                    if m["partition"] == part]
            check(vals == sorted(vals), f"partition {part} order")
        check(any(m["payload"] == "gzipped" for m in got), "gzip batch")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
