#!/usr/bin/env python3
"""Records the request frames real Kafka clients send, for test vectors and fuzz seeds.

Usage: capture_requests.py --out DIR --label NAME [--seconds N] [--responses]

Listens on 127.0.0.1 (a free port, printed on stdout as "PORT <n>"), answers just enough for a
client to get from connecting to producing and joining a group (ApiVersions, Metadata,
Produce, FindCoordinator, InitProducerId; anything else gets no answer), and writes the first
frame of each api/version it sees to DIR/<label>_<api>_v<version>.bin (size prefix included),
and with --responses its answer, which the client accepted, to ..._response.bin.
Stops after --seconds. The broker it pretends to be is node 0 at the listening address with one
topic, "sluice-test", of one partition. Python 3 standard library only.

Example: capture_requests.py --out /tmp/cap --label kcat &
         kcat -b 127.0.0.1:$PORT -t sluice-test -P <<< hello
"""

import argparse
import os
import socket
import struct
import threading
import time

TOPIC = 'sluice-test'
GROUP = 'sluice-group'
API_NAMES = {0: 'produce', 1: 'fetch', 2: 'list_offsets', 3: 'metadata', 8: 'offset_commit',
             9: 'offset_fetch', 10: 'find_coordinator', 11: 'join_group', 12: 'heartbeat',
             13: 'leave_group', 14: 'sync_group', 15: 'describe_groups', 16: 'list_groups',
             17: 'sasl_handshake', 18: 'api_versions', 19: 'create_topics',
             20: 'delete_topics', 22: 'init_producer_id', 32: 'describe_configs',
             36: 'sasl_authenticate', 37: 'create_partitions', 42: 'delete_groups',
             44: 'incremental_alter_configs', 47: 'offset_delete', 60: 'describe_cluster'}
# api key -> (min, max, first flexible version): what Sluice supports.
SUPPORTED = {0: (3, 9, 9), 1: (4, 12, 12), 2: (1, 7, 6), 3: (0, 12, 9), 8: (0, 8, 8),
             9: (0, 8, 6), 10: (0, 4, 3), 11: (0, 9, 6), 12: (0, 4, 4), 13: (0, 5, 4),
             14: (0, 5, 4), 15: (0, 5, 5), 16: (0, 4, 3), 17: (0, 1, 99), 18: (0, 3, 3),
             19: (0, 7, 5), 20: (0, 6, 4), 22: (0, 4, 2), 32: (0, 4, 4), 36: (0, 2, 2),
             37: (0, 3, 2), 42: (0, 2, 2), 44: (0, 1, 1), 47: (0, 0, 99), 60: (0, 0, 0)}


class Out:
    """Big-endian writer with classic or compact (flexible) length prefixes."""

    def __init__(self, flexible):
        self.flex = flexible
        self.b = bytearray()

    def i8(self, v): self.b += struct.pack('>b', v)
    def i16(self, v): self.b += struct.pack('>h', v)
    def i32(self, v): self.b += struct.pack('>i', v)
    def i64(self, v): self.b += struct.pack('>q', v)

    def uvarint(self, v):
        while v >= 0x80:
            self.b.append((v & 0x7f) | 0x80)
            v >>= 7
        self.b.append(v)

    def string(self, s):
        if s is None:
            self.uvarint(0) if self.flex else self.i16(-1)
            return
        data = s.encode()
        self.uvarint(len(data) + 1) if self.flex else self.i16(len(data))
        self.b += data

    def array(self, items, write_item):
        self.uvarint(len(items) + 1) if self.flex else self.i32(len(items))
        for item in items:
            write_item(item)

    def tags(self):
        if self.flex:
            self.uvarint(0)


def api_versions(v):
    if v > SUPPORTED[18][1]:  # KIP-511: answer v0 with UNSUPPORTED_VERSION and our versions
        v = 0
        error = 35
    else:
        error = 0
    o = Out(v >= 3)
    o.i16(error)

    def api(item):
        key, (lo, hi, _) = item
        o.i16(key)
        o.i16(lo)
        o.i16(hi)
        o.tags()
    o.array(sorted(SUPPORTED.items()), api)
    if v >= 1:
        o.i32(0)
    o.tags()
    return o


def metadata(v, port):
    o = Out(v >= 9)
    if v >= 3:
        o.i32(0)

    def broker(_):
        o.i32(0)
        o.string('127.0.0.1')
        o.i32(port)
        if v >= 1:
            o.string(None)
        o.tags()
    o.array([0], broker)
    if v >= 2:
        o.string('sluice-capture')
    if v >= 1:
        o.i32(0)

    def partition(_):
        o.i16(0)
        o.i32(0)
        o.i32(0)
        if v >= 7:
            o.i32(0)
        o.array([0], o.i32)
        o.array([0], o.i32)
        if v >= 5:
            o.array([], o.i32)
        o.tags()

    def topic(_):
        o.i16(0)
        o.string(TOPIC)
        if v >= 10:
            o.b += bytes(range(1, 17))
        if v >= 1:
            o.i8(0)
        o.array([0], partition)
        if v >= 8:
            o.i32(-2147483648)
        o.tags()
    o.array([0], topic)
    if 8 <= v <= 10:
        o.i32(-2147483648)
    o.tags()
    return o


def produce(v):
    o = Out(v >= 9)

    def partition(_):
        o.i32(0)
        o.i16(0)
        o.i64(0)
        if v >= 2:
            o.i64(-1)
        if v >= 5:
            o.i64(0)
        if v >= 8:
            o.array([], None)
            o.string(None)
        o.tags()

    def topic(_):
        o.string(TOPIC)
        o.array([0], partition)
        o.tags()
    o.array([0], topic)
    if v >= 1:
        o.i32(0)
    o.tags()
    return o


def find_coordinator(v, port):
    o = Out(v >= 3)
    if v >= 1:
        o.i32(0)
    if v >= 4:
        def coordinator(_):
            o.string(GROUP)
            o.i32(0)
            o.string('127.0.0.1')
            o.i32(port)
            o.i16(0)
            o.string(None)
            o.tags()
        o.array([0], coordinator)
    else:
        o.i16(0)
        if v >= 1:
            o.string(None)
        o.i32(0)
        o.string('127.0.0.1')
        o.i32(port)
    o.tags()
    return o


def init_producer_id(v):
    o = Out(v >= 2)
    o.i32(0)
    o.i16(0)
    o.i64(1000)
    o.i16(0)
    o.tags()
    return o


def answer(key, version, port):
    if key == 18:
        return api_versions(version), 0
    flexible = version >= SUPPORTED.get(key, (0, 0, 99))[2]
    header = 1 if flexible else 0
    if key == 3:
        return metadata(version, port), header
    if key == 0:
        return produce(version), header
    if key == 10:
        return find_coordinator(version, port), header
    if key == 22:
        return init_producer_id(version), header
    return None, 0


def serve(conn, port, args, seen, lock):
    buf = b''
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                (size,) = struct.unpack('>i', buf[:4])
                if len(buf) < 4 + size:
                    break
                frame, buf = buf[:4 + size], buf[4 + size:]
                key, version, corr = struct.unpack('>hhi', frame[4:12])
                name = f'{args.label}_{API_NAMES.get(key, f"api{key}")}_v{version}.bin'
                with lock:
                    if name not in seen:
                        seen.add(name)
                        with open(os.path.join(args.out, name), 'wb') as f:
                            f.write(frame)
                        print('captured', name, flush=True)
                body, header_version = answer(key, version, port)
                if body is None:
                    continue
                head = struct.pack('>i', corr) + (b'\0' if header_version == 1 else b'')
                payload = head + bytes(body.b)
                response = struct.pack('>i', len(payload)) + payload
                if args.responses:
                    rname = name.replace('.bin', '_response.bin')
                    with lock:
                        if rname not in seen:
                            seen.add(rname)
                            with open(os.path.join(args.out, rname), 'wb') as f:
                                f.write(response)
                conn.sendall(response)


def main():
    ap = argparse.ArgumentParser(description='Capture Kafka client requests.')
    ap.add_argument('--out', required=True)
    ap.add_argument('--label', required=True)
    ap.add_argument('--seconds', type=float, default=15)
    ap.add_argument('--responses', action='store_true',
                    help='also save the first answer to each api/version (<name>_response.bin)')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', 0))
    srv.listen()
    port = srv.getsockname()[1]
    print('PORT', port, flush=True)
    seen, lock = set(), threading.Lock()
    deadline = time.monotonic() + args.seconds
    srv.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn, port, args, seen, lock), daemon=True).start()
    srv.close()


if __name__ == '__main__':
    main()
