#!/usr/bin/python3
"""pika against a real RabbitMQ: confirmed publish, consume (deliver), get-ok, get-empty."""
import sys
import pika

port = int(sys.argv[1])
conn = pika.BlockingConnection(pika.ConnectionParameters(
    host="127.0.0.1", port=port, credentials=pika.PlainCredentials("guest", "guest")))
ch = conn.channel()
ch.confirm_delivery()
ch.exchange_declare("sluice.x", exchange_type="direct", auto_delete=True)
ch.queue_declare("sluice.q", exclusive=True)
ch.queue_bind("sluice.q", "sluice.x", routing_key="rk")
props = pika.BasicProperties(content_type="text/plain", headers={"n": 1}, message_id="m1")
ch.basic_publish("sluice.x", "rk", b"first", properties=props)
ch.basic_publish("sluice.x", "rk", b"second", properties=props)
for method, properties, body in ch.consume("sluice.q", inactivity_timeout=5):
    ch.basic_ack(method.delivery_tag)
    break
ch.cancel()
method, properties, body = ch.basic_get("sluice.q", auto_ack=True)
method, properties, body = ch.basic_get("sluice.q", auto_ack=True)
assert method is None
conn.close()
