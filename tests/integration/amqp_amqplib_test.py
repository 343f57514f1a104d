"""AMQP with amqplib (npm, unmodified; the Node.js client most RabbitMQ users run): confirm
channel, topic exchange, prefetch, ack/nack, mandatory return, consumer cancel on queue
delete, properties. amqplib is installed from npm into the build tree's cache on first use."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, npm_modules  # noqa: E402

SCRIPT = r"""
const amqp = require('amqplib');
(async () => {
  const url = `amqp://guest:guest@127.0.0.1:${process.env.SLUICE_AMQP_PORT}`;
  const conn = await amqp.connect(url);
  const out = {};
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange('js-topic', 'topic', { durable: true });
  const q = await ch.assertQueue('', { exclusive: true });
  out.serverNamed = q.queue;
  await ch.bindQueue(q.queue, 'js-topic', 'orders.*');
  for (let i = 0; i < 50; i++) {
    ch.publish('js-topic', i % 2 ? 'orders.eu' : 'other.eu', Buffer.from(String(i)),
               { persistent: true, headers: { i }, messageId: 'm' + i, contentType: 'text/plain' });
  }
  await ch.waitForConfirms();
  // Mandatory + unroutable: basic.return arrives before the confirm.
  const events = [];
  ch.on('return', (m) => events.push('return:' + m.fields.replyCode));
  await new Promise((resolve, reject) => ch.publish('js-topic', 'nowhere', Buffer.from('x'),
      { mandatory: true }, (err) => { events.push(err ? 'nack' : 'ack'); err ? reject(err) : resolve(); }));
  out.events = events;
  // Prefetch 5; nack with requeue the first delivery, ack the rest.
  const cch = await conn.createChannel();
  await cch.prefetch(5);
  const got = [];
  let nacked = false;
  await new Promise(async (resolve) => {
    await cch.consume(q.queue, (m) => {
      if (!nacked) { nacked = true; cch.nack(m, false, true); return; }
      got.push({ body: m.content.toString(), redelivered: m.fields.redelivered,
                 i: m.properties.headers.i, id: m.properties.messageId,
                 ct: m.properties.contentType });
      cch.ack(m);
      if (got.length === 25) resolve();
    });
  });
  out.got = got;
  // Server-side cancel when the queue is deleted (consumer_cancel_notify).
  const dq = await cch.assertQueue('js-doomed');
  let cancelled = false;
  await cch.consume(dq.queue, (m) => { if (m === null) cancelled = true; });
  await ch.deleteQueue('js-doomed');
  await new Promise((r) => setTimeout(r, 300));
  out.cancelled = cancelled;
  // A channel error: 404 for a passive declare of a missing queue; the connection lives on.
  const ech = await conn.createChannel();
  ech.on('error', () => {});
  try { await ech.checkQueue('js-missing'); out.missing = 'no error'; }
  catch (e) { out.missing = e.code; }
  const after = await conn.createChannel();
  out.after = (await after.checkExchange('js-topic')) !== undefined;
  await conn.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


AmqpBroker = harness.AmqpBroker


def test(args):
    modules = npm_modules(args.work, ["amqplib@0.10"])
    b = AmqpBroker(args.sluice)
    try:
        b.start()
        env = dict(os.environ, NODE_PATH=modules, SLUICE_AMQP_PORT=str(b.amqp_port))
        r = subprocess.run(["node", "-e", SCRIPT], env=env, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("amqplib failed: " + r.stderr.decode(errors="replace"))
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        check(out["serverNamed"].startswith("amq.gen-"), f"server-named {out['serverNamed']}")
        check(out["events"] == ["return:312", "ack"], f"return before confirm: {out['events']}")
        got = out["got"]
        # With prefetch 5, 3..9 are already out when the requeued 1 comes back.
        check([g["i"] for g in got] == [3, 5, 7, 9, 1] + list(range(11, 50, 2)),
              f"topic routing/order {[g['i'] for g in got]}")
        check([g["i"] for g in got if g["redelivered"]] == [1], "nack requeue redelivers 1")
        check(all(g["body"] == str(g["i"]) and g["id"] == f"m{g['i']}" and
                  g["ct"] == "text/plain" for g in got), "properties")
        check(out["cancelled"] is True, "server-side consumer cancel")
        check(out["missing"] == 404, f"checkQueue of a missing queue: {out['missing']}")
        check(out["after"] is True, "connection usable after a channel error")
        check(b.stop() == 0, "clean stop")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(test)
