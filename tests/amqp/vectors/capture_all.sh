#!/bin/bash
# Regenerates the golden client captures in this folder (see README.md). Needs pika
# (/usr/bin/python3), amqp-tools and amqplib installed in $AMQPLIB_DIR (npm install amqplib).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
AMQPLIB_DIR="${AMQPLIB_DIR:-/tmp/amqpnode}"

capture() {  # capture OUT FRAME_MAX CLIENT-COMMAND... (PORT substituted)
  local out=$1 frame_max=$2; shift 2
  local fifo; fifo=$(mktemp -u); mkfifo "$fifo"
  /usr/bin/python3 "$HERE/capture_server.py" --out "$HERE/$out" --frame-max "$frame_max" >"$fifo" &
  local server=$!
  local port; read -r _ port <"$fifo"; rm -f "$fifo"
  "${@//PORT/$port}"
  wait "$server"
}

capture pika_session.bin 131072 /usr/bin/python3 "$HERE/clients/pika_client.py" PORT
capture pika_split_body.bin 4096 /usr/bin/python3 "$HERE/clients/pika_client.py" PORT 10000
capture amqplib_session.bin 131072 env NODE_PATH="$AMQPLIB_DIR/node_modules" node "$HERE/clients/amqplib_client.js" PORT
capture amqp_publish_session.bin 131072 amqp-publish --url amqp://guest:guest@127.0.0.1:PORT \
  -e amq.direct -r route.key -p -C text/plain -H "x-tool: amqp-publish" -b "hello from rabbitmq-c"

# Server side, optional: what a real RabbitMQ (listening on $RABBITMQ_PORT, never 5672 here)
# sends to pika.
if [ -n "${RABBITMQ_PORT:-}" ]; then
  fifo=$(mktemp -u); mkfifo "$fifo"
  /usr/bin/python3 "$HERE/record_proxy.py" --upstream-port "$RABBITMQ_PORT" \
    --out "$HERE/rabbitmq_server_session.bin" >"$fifo" &
  proxy=$!
  read -r _ port <"$fifo"; rm -f "$fifo"
  /usr/bin/python3 "$HERE/clients/pika_consumer.py" "$port"
  wait "$proxy"
fi
