#!/usr/bin/python3
"""Throwaway TCP proxy that records what a real AMQP server (RabbitMQ) sends to a client.

  /usr/bin/python3 record_proxy.py --upstream-port 30922 --out rabbitmq_server_session.bin &
  (prints "PORT <n>"; serves one connection, then writes the server's byte stream)
"""
import argparse
import select
import socket


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(60)
    print("PORT %d" % listener.getsockname()[1], flush=True)
    client, _ = listener.accept()
    server = socket.create_connection(("127.0.0.1", args.upstream_port))
    recorded = b""
    open_ends = {client, server}
    while open_ends == {client, server}:
        ready, _, _ = select.select([client, server], [], [], 30)
        if not ready:
            break
        for s in ready:
            data = s.recv(65536)
            if not data:
                open_ends.discard(s)
                continue
            if s is server:
                recorded += data
                client.sendall(data)
            else:
                server.sendall(data)
    with open(args.out, "wb") as f:
        f.write(recorded)
    client.close()
    server.close()


if __name__ == "__main__":
    main()
