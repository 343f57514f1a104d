#!/usr/bin/python3
"""pika (Debian python3-pika) publishes one message with every basic property set."""
import sys
import pika

port = int(sys.argv[1])
body_size = int(sys.argv[2]) if len(sys.argv) > 2 else 0
params = pika.ConnectionParameters(host="127.0.0.1", port=port, virtual_host="/",
                                   credentials=pika.PlainCredentials("guest", "guest"))
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.confirm_delivery()
ch.exchange_declare("sluice.x", exchange_type="topic", durable=True)
ch.queue_declare("sluice.q", durable=True,
                 arguments={"x-max-length": 10, "x-queue-type": "classic"})
ch.queue_bind("sluice.q", "sluice.x", routing_key="a.#")
props = pika.BasicProperties(
    content_type="text/plain", content_encoding="utf-8",
    headers={"h-str": "v", "h-int": 7, "h-bool": True, "h-list": [1, "two"],
             "h-nested": {"k": "v"}},
    delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="reply.q",
    expiration="60000", message_id="msg-1", timestamp=1700000000, type="greeting",
    user_id="guest", app_id="capture")
body = b"hello from pika" if body_size == 0 else bytes(i % 251 for i in range(body_size))
ch.basic_publish("sluice.x", "a.b", body, properties=props, mandatory=True)
conn.close()
