#!/usr/bin/python3
"""Throwaway AMQP 0-9-1 capture server: records every byte one real client sends.

It speaks just enough of the protocol (hand-made frames, independent of Sluice's codec) to
lead a client through connection setup, a channel, declarations, a confirmed publish and
the close handshake, then writes the client's byte stream (protocol header included) to
--out. Used once to make the golden vectors in this folder; see README.md.

  /usr/bin/python3 capture_server.py --out pika_session.bin [--frame-max 131072] &
  (prints "PORT <n>" on stdout when listening on 127.0.0.1)
"""

import argparse
import socket
import struct
import sys


def shortstr(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def longstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def table(items):
    body = b""
    for name, (tag, value) in items:
        body += shortstr(name) + tag
        if tag == b"t":
            body += struct.pack(">B", 1 if value else 0)
        elif tag == b"S":
            body += longstr(value)
        elif tag == b"F":
            body += table(value)
        else:
            raise ValueError(tag)
    return struct.pack(">I", len(body)) + body


def frame(ftype, channel, payload):
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + b"\xce"


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def connection_start():
    caps = [(n, (b"t", True)) for n in (
        "publisher_confirms", "exchange_exchange_bindings", "basic.nack",
        "consumer_cancel_notify", "connection.blocked", "authentication_failure_close",
        "per_consumer_qos", "direct_reply_to")]
    props = table([
        ("product", (b"S", "Sluice capture server")),
        ("version", (b"S", "0")),
        ("capabilities", (b"F", caps)),
    ])
    return method(0, 10, 10, struct.pack(">BB", 0, 9) + props + longstr("PLAIN AMQPLAIN") +
                  longstr("en_US"))


class Session:
    def __init__(self, sock, frame_max):
        self.sock = sock
        self.frame_max = frame_max
        self.recorded = b""
        self.buf = b""
        self.confirm = {}      # channel -> next delivery tag, once confirm.select was seen
        self.pending_publish = {}  # channel -> bytes of body still expected (None = header)

    def recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.recorded += data
        self.buf += data

    def send(self, data):
        self.sock.sendall(data)

    def run(self):
        while len(self.buf) < 8:
            self.recv()
        header, self.buf = self.buf[:8], self.buf[8:]
        if header != b"AMQP\x00\x00\x09\x01":
            self.send(b"AMQP\x00\x00\x09\x01")
            return
        self.send(connection_start())
        while True:
            while len(self.buf) < 7:
                self.recv()
            ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
            while len(self.buf) < 8 + size:
                self.recv()
            payload = self.buf[7:7 + size]
            assert self.buf[7 + size] == 0xCE, "bad frame end"
            self.buf = self.buf[8 + size:]
            if ftype == 1:
                if self.on_method(channel, payload):
                    return
            elif ftype == 2:
                body_size = struct.unpack(">Q", payload[4:12])[0]
                self.pending_publish[channel] = body_size
                if body_size == 0:
                    self.published(channel)
            elif ftype == 3:
                self.pending_publish[channel] -= len(payload)
                if self.pending_publish[channel] == 0:
                    self.published(channel)

    def published(self, channel):
        del self.pending_publish[channel]
        if channel in self.confirm:
            tag = self.confirm[channel]
            self.confirm[channel] += 1
            self.send(method(channel, 60, 80, struct.pack(">QB", tag, 0)))

    def on_method(self, ch, payload):
        class_id, method_id = struct.unpack(">HH", payload[:4])
        args = payload[4:]
        key = (class_id, method_id)
        if key == (10, 11):
            self.send(method(0, 10, 30, struct.pack(">HIH", 2047, self.frame_max, 60)))
        elif key == (10, 40):
            self.send(method(0, 10, 41, shortstr("")))
        elif key == (10, 50):
            self.send(method(0, 10, 51))
            return True
        elif key == (20, 10):
            self.send(method(ch, 20, 11, longstr("")))
        elif key == (20, 40):
            self.send(method(ch, 20, 41))
        elif key == (85, 10):
            self.confirm[ch] = 1
            if not (args[0] & 1):
                self.send(method(ch, 85, 11))
        elif key == (40, 10):
            # reserved short, exchange, type, bits: answer unless no-wait (bit 4)
            n = args[2]
            t = args[3 + n]
            bits = args[4 + n + t]
            if not bits & 0x10:
                self.send(method(ch, 40, 11))
        elif key == (50, 10):
            n = args[2]
            name = args[3:3 + n].decode() or "amq.gen-capture"
            bits = args[3 + n]
            if not bits & 0x10:
                self.send(method(ch, 50, 11, shortstr(name) + struct.pack(">II", 0, 0)))
        elif key == (50, 20):
            self.send(method(ch, 50, 21))
        elif key == (60, 10):
            self.send(method(ch, 60, 11))
        elif key == (60, 20):
            self.send(method(ch, 60, 21, shortstr("ctag-capture")))
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--frame-max", type=int, default=131072)
    args = parser.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(60)
    print("PORT %d" % listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    sock.settimeout(30)
    session = Session(sock, args.frame_max)
    try:
        session.run()
    except EOFError:
        pass
    finally:
        with open(args.out, "wb") as f:
            f.write(session.recorded)
        sock.close()
    print("captured %d bytes" % len(session.recorded), file=sys.stderr)


if __name__ == "__main__":
    main()
