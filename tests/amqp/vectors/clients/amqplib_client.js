// amqplib (npm) publishes one message on a confirm channel.
const amqp = require('amqplib');
const port = process.argv[2];
(async () => {
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}/`);
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange('sluice.x', 'direct', {durable: false, autoDelete: true});
  await ch.assertQueue('sluice.q', {exclusive: true, arguments: {'x-message-ttl': 60000}});
  await ch.bindQueue('sluice.q', 'sluice.x', 'rk');
  ch.publish('sluice.x', 'rk', Buffer.from('hello from amqplib'),
             {contentType: 'application/json', headers: {'x-n': 1.5, 'x-s': 'str'},
              persistent: true, messageId: 'm-2'});
  await ch.waitForConfirms();
  await ch.close();
  await conn.close();
})().catch((e) => { console.error(e); process.exit(1); });
