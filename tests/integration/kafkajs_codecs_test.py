"""kafkajs 2 producer features against sluice, read back with kcat: every compression codec
(gzip built in; snappy, lz4 and zstd through the codec packages kafkajs documents, all pure
JavaScript), a 1 MiB record on a topic whose max.message.bytes allows it, MESSAGE_TOO_LARGE on
one whose limit does not, and the idempotent producer. The npm packages are installed into the
build tree's cache on first use."""
import json
import os
import subprocess

from harness import Broker, check, npm_modules, run

PACKAGES = ["kafkajs@2", "kafkajs-snappy@1", "kafkajs-lz4@1", "zstd-codec@0.1"]

SCRIPT = r"""
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');
const LZ4Codec = require('kafkajs-lz4');
const { ZstdCodec } = require('zstd-codec');
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec;
const zstd = new Promise((resolve) => ZstdCodec.run((z) => resolve(new z.Simple())));
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress(encoder) { return Buffer.from((await zstd).compress(encoder.buffer)); },
  async decompress(buffer) { return Buffer.from((await zstd).decompress(buffer)); },
});

(async () => {
  const kafka = new Kafka({ clientId: 'codecs', brokers: [process.env.SLUICE_BOOTSTRAP],
                            logLevel: logLevel.NOTHING, retry: { retries: 2 } });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [
    { topic: 'big', numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: String(3 << 20) }] },
    { topic: 'small', numPartitions: 1 },
  ] });
  const out = {};
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  for (const [name, type] of [['gzip', CompressionTypes.GZIP], ['snappy', CompressionTypes.Snappy],
                              ['lz4', CompressionTypes.LZ4], ['zstd', CompressionTypes.ZSTD]]) {
    const messages = [];
    for (let i = 0; i < 200; i++) {
      messages.push({ key: 'k' + (i % 5), value: name + '-' + i + '-' + 'x'.repeat(i % 40),
                      headers: { codec: name } });
    }
    out[name] = await producer.send({ topic: 'z-' + name, compression: type, acks: -1, messages });
  }
  const big = Buffer.alloc(1 << 20, 'b');
  out.big = await producer.send({ topic: 'big', acks: -1, messages: [{ value: big }] });
  try {
    await producer.send({ topic: 'small', acks: -1,
                          messages: [{ value: Buffer.alloc(3 << 19, 's') }] });
    out.tooLarge = 'accepted';
  } catch (e) {
    out.tooLarge = e.type || (e.originalError && e.originalError.type) || String(e);
  }
  await producer.disconnect();

  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await idem.connect();
  for (let round = 0; round < 10; round++) {
    const messages = [];
    for (let i = 0; i < 100; i++) messages.push({ value: 'i' + (round * 100 + i) });
    await idem.send({ topic: 'idem', acks: -1, messages });
  }
  await idem.disconnect();
  await admin.disconnect();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def kcat_records(b, topic):
    cmd = ["/usr/bin/kcat", "-b", b.bootstrap, "-X", "broker.address.family=v4", "-C", "-t",
           topic, "-e", "-q", "-J", "-o", "beginning", "-X", "fetch.max.bytes=8388608"]
    out = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout.decode()
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test(args):
    modules = npm_modules(args.work, PACKAGES)
    b = Broker(args.sluice, ["--num-partitions", "1"]).start()
    try:
        env = dict(os.environ, NODE_PATH=modules, SLUICE_BOOTSTRAP=b.bootstrap)
        r = subprocess.run(["node", "-e", SCRIPT], env=env, capture_output=True, timeout=90)
        if r.returncode != 0:
            raise AssertionError("kafkajs failed: " + r.stderr.decode(errors="replace"))
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        for codec in ["gzip", "snappy", "lz4", "zstd"]:
            check(all(p["errorCode"] == 0 for p in out[codec]), f"{codec} produce {out[codec]}")
            got = kcat_records(b, f"z-{codec}")
            want = [f"{codec}-{i}-" + "x" * (i % 40) for i in range(200)]
            check([m["payload"] for m in got] == want, f"{codec}: kcat read {len(got)} records")
            check(all(m["key"] == f"k{i % 5}" and m["headers"] == ["codec", codec]
                      for i, m in enumerate(got)), f"{codec}: keys and headers")
        check(out["big"][0]["errorCode"] == 0, f"1 MiB record: {out['big']}")
        big = kcat_records(b, "big")
        check(len(big) == 1 and big[0]["payload"] == "b" * (1 << 20), "1 MiB record read back")
        check(out["tooLarge"] == "MESSAGE_TOO_LARGE", f"1.5 MiB record: {out['tooLarge']}")
        check(kcat_records(b, "small") == [], "nothing stored from the refused record")
        idem = kcat_records(b, "idem")
        check([m["payload"] for m in idem] == [f"i{i}" for i in range(1000)],
              f"idempotent producer: {len(idem)} records")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
