"""Consumer groups with kafkajs 2 against sluice: 3 consumers of one group over 6 partitions
get 2 each in one generation; one disconnects (LeaveGroup) and the other two take over its
partitions; every record is consumed at least once with no gap; admin describeGroups and
fetchOffsets show members and committed offsets; lag (log end - committed) is right; a new
consumer of the group resumes right after the last commit. kafkajs is installed from npm
into the build tree's cache on first use (harness.npm_modules)."""
# ctest-timeout: 180
import json
import os
import subprocess

from harness import Broker, check, run
from harness import npm_modules

SCRIPT = r"""
const { Kafka, logLevel } = require('kafkajs');
const broker = process.env.SLUICE_BOOTSTRAP;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (cond()) return; await sleep(50); }
  throw new Error('timed out waiting for ' + what);
}
// Whether the group's committed offsets are the log ends of every partition.
async function committedAtEnds(admin) {
  const ends = await admin.fetchTopicOffsets('jg');
  const [committed] = await admin.fetchOffsets({ groupId: 'jg-g', topics: ['jg'] });
  const at = {};
  for (const x of committed.partitions) at[x.partition] = x.offset;
  return ends.every((e) => at[e.partition] === e.offset);
}
async function waitForAsync(cond, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await cond()) return; await sleep(50); }
  throw new Error('timed out waiting for ' + what);
}
(async () => {
  const kafka = new Kafka({ clientId: 'js-groups', brokers: [broker], logLevel: logLevel.NOTHING,
                            retry: { retries: 8, initialRetryTime: 100 } });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: 'jg', numPartitions: 6 }], waitForLeaders: true });
  const producer = kafka.producer();
  await producer.connect();
  const produce = async (from, n) => {
    const messages = [];
    for (let i = from; i < from + n; i++) messages.push({ key: 'k' + i, value: 'v' + i });
    await producer.send({ topic: 'jg', messages, acks: -1 });
  };
  const seen = [];
  const joins = [];
  const assignment = {};
  const start = async (name) => {
    const c = kafka.consumer({ groupId: 'jg-g', sessionTimeout: 6000, rebalanceTimeout: 10000,
                               heartbeatInterval: 300 });
    c.on(c.events.GROUP_JOIN, (e) => {
      assignment[name] = (e.payload.memberAssignment['jg'] || []).slice().sort();
      joins.push({ name, parts: assignment[name], leader: e.payload.isLeader });
    });
    await c.connect();
    await c.subscribe({ topic: 'jg', fromBeginning: true });
    await c.run({ eachMessage: async ({ partition, message }) => {
      seen.push({ name, p: partition, o: Number(message.offset), v: message.value.toString() });
    } });
    return c;
  };
  await produce(0, 300);
  const cs = await Promise.all(['a', 'b', 'c'].map(start));
  await waitFor(() => ['a', 'b', 'c'].every((n) => (assignment[n] || []).length === 2), 30000,
                '2 partitions each');
  const firstJoins = joins.length;
  await waitFor(() => seen.length >= 300, 30000, '300 records');
  const described = await admin.describeGroups(['jg-g']);
  // One member leaves: the other two get 3 partitions each.
  await cs[2].disconnect();
  await waitFor(() => ['a', 'b'].every((n) => (assignment[n] || []).length === 3), 30000,
                'reassignment after leave');
  await produce(300, 150);
  await waitFor(() => seen.length >= 450, 30000, '450 records');
  // kafkajs commits after each batch it resolved.
  await waitForAsync(() => committedAtEnds(admin), 10000, 'commits at the log ends');
  await cs[0].disconnect();
  await cs[1].disconnect();
  const ends1 = await admin.fetchTopicOffsets('jg');
  const committed1 = await admin.fetchOffsets({ groupId: 'jg-g', topics: ['jg'] });
  await produce(450, 30);
  const ends2 = await admin.fetchTopicOffsets('jg');
  const committed2 = await admin.fetchOffsets({ groupId: 'jg-g', topics: ['jg'] });
  const before = seen.length;
  const d = await start('d');
  await waitFor(() => seen.length >= before + 30, 30000, 'resumed records');
  await sleep(500);  // not synchronisation: a window for records that must not come
  await d.disconnect();
  await producer.disconnect();
  await admin.disconnect();
  console.log(JSON.stringify({ seen, joins, firstJoins, described, ends1, committed1, ends2,
                               committed2, before }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test(args):
    modules = npm_modules(args.work, ["kafkajs@2"])
    b = Broker(args.sluice, extra=["--group-initial-rebalance-delay-ms", "1500",
                                   "--offsets-topic-partitions", "5"]).start()
    try:
        env = dict(os.environ, NODE_PATH=modules, SLUICE_BOOTSTRAP=b.bootstrap)
        r = subprocess.run(["node", "-e", SCRIPT], env=env, capture_output=True, timeout=150)
        if r.returncode != 0:
            raise AssertionError("kafkajs failed: " + r.stderr.decode(errors="replace"))
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        # Started together: one generation, 2 partitions each.
        check(out["firstJoins"] == 3, f"joins before the first records: {out['joins']}")
        first = out["joins"][:3]
        check(sorted(p for j in first for p in j["parts"]) == list(range(6)), f"joins {first}")
        check(sum(1 for j in first if j["leader"]) == 1, "one leader")
        [g] = out["described"]["groups"]
        check(g["state"] == "Stable" and len(g["members"]) == 3, f"describeGroups {g}")
        check(g["protocolType"] == "consumer", f"protocol type {g}")
        # Every record before the restart consumed at least once, no gap.
        ends1 = {int(e["partition"]): int(e["offset"]) for e in out["ends1"]}
        check(sum(ends1.values()) == 450, f"ends {ends1}")
        seen = {(s["p"], s["o"]) for s in out["seen"][:out["before"]]}
        for p, e in ends1.items():
            missing = set(range(e)) - {o for (q, o) in seen if q == p}
            check(not missing, f"partition {p} gap {sorted(missing)[:10]}")
        com1 = {int(x["partition"]): int(x["offset"]) for x in out["committed1"][0]["partitions"]}
        check(com1 == ends1, f"committed {com1} vs ends {ends1}")
        ends2 = {int(e["partition"]): int(e["offset"]) for e in out["ends2"]}
        com2 = {int(x["partition"]): int(x["offset"]) for x in out["committed2"][0]["partitions"]}
        lag = {p: ends2[p] - com2[p] for p in range(6)}
        check(sum(lag.values()) == 30 and lag == {p: ends2[p] - ends1[p] for p in range(6)},
              f"lag {lag}")
        resumed = {(s["p"], s["o"]) for s in out["seen"][out["before"]:]}
        check(resumed == {(p, o) for p in range(6) for o in range(ends1[p], ends2[p])},
              f"resumed {sorted(resumed)[:5]}")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
