"""kafkajs 2 against sluice: admin creates a topic with partitions, a keyed producer with
headers (gzip too), offsets listed by time and at the ends, topic deletion. Records are read
back by a kafkajs consumer group and by kcat. Group rebalancing is tested in
groups_kafkajs_test.py. kafkajs is installed from npm into the build tree's cache on first use."""
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
  const topics = await admin.listTopics();
  await admin.deleteTopics({ topics: ['scratch'] }).catch(() => {});
  console.log(JSON.stringify({ created, partitions: meta.topics[0].partitions.length, res, gz,
                               ends, byTime, topics, consumed }));
  await admin.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test(args):
    modules = npm_modules(args.work, ["kafkajs@2"])
    b = Broker(args.sluice).start()
    try:
        env = dict(os.environ, NODE_PATH=modules, SLUICE_BOOTSTRAP=b.bootstrap)
        r = subprocess.run(["node", "-e", SCRIPT], env=env,
                           capture_output=True, timeout=60)
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
        # Read back with kcat: keys, values, headers, per-partition order.
        cmd = ["/usr/bin/kcat", "-b", b.bootstrap, "-C", "-t", "js", "-e", "-q", "-J",
               "-o", "beginning"]
        got = [json.loads(l) for l in subprocess.run(cmd, capture_output=True, timeout=30,
                                                     check=True).stdout.decode().splitlines() if l]
        check(len(got) == 91, f"kcat read {len(got)}")
        plain = [m for m in got if m["key"] != "g"]
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
