"""kcat against sluice: keyed records with headers into a 3-partition topic, consumed from the
beginning, from an offset and from a timestamp; every compression codec round-trips; a 1 MiB
record where max.message.bytes allows it, MESSAGE_TOO_LARGE where not; an idempotent producer.
(kcat has no admin requests: the topic with a larger max.message.bytes is created with
confluent-kafka's AdminClient.)"""
import json
import subprocess
import time

from harness import Broker, check, run

KCAT = "/usr/bin/kcat"


def kcat_run(broker, *args, input_data=None, timeout=30):
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "broker.address.family=v4"] + list(args)
    return subprocess.run(cmd, input=input_data, capture_output=True, timeout=timeout)


def kcat(broker, *args, input_data=None, timeout=30):
    r = kcat_run(broker, *args, input_data=input_data, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"kcat {args} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def large_records(b):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": b.bootstrap, "broker.address.family": "v4"})
    fs = admin.create_topics([NewTopic("big", 1, 1, config={"max.message.bytes": str(3 << 20)})])
    fs["big"].result(timeout=20)
    big = (b"0123456789abcdef" * (1 << 16))  # 1 MiB
    # One line = one record (the payload has no newline). librdkafka's own limit is raised too.
    kcat(b, "-P", "-t", "big", "-p", "0", "-X", "message.max.bytes=4194304", input_data=big + b"\n")
    got = kcat(b, "-C", "-t", "big", "-o", "beginning", "-e", "-q", "-X", "fetch.max.bytes=8388608")
    check(got.encode() == big + b"\n", f"1 MiB record came back with {len(got)} bytes")
    # The default max.message.bytes (1 MiB + batch overhead) refuses a 1.5 MiB record.
    huge = b"y" * (3 << 19)
    r = kcat_run(b, "-P", "-t", "keyed", "-p", "0", "-X", "message.max.bytes=4194304",
                 input_data=huge + b"\n")
    err = r.stderr.decode(errors="replace")
    check("too large" in err.lower(), f"1.5 MiB record not refused as too large: rc {r.returncode} {err}")


def idempotent(b):
    lines = "".join(f"i{i}\n" for i in range(1000))
    kcat(b, "-P", "-t", "idem", "-p", "0", "-X", "enable.idempotence=true", input_data=lines.encode())
    got = consume(b, "idem", "-o", "beginning")
    check([m["payload"] for m in got] == [f"i{i}" for i in range(1000)],
          f"idempotent producer: {len(got)} records")


def consume(broker, topic, *args):
    out = kcat(broker, "-C", "-t", topic, "-e", "-q", "-J", *args)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test(args):
    b = Broker(args.sluice, ["--num-partitions", "3"]).start()
    try:
        # Keyed records with headers; kcat partitions by key (consistent_random).
        lines = "".join(f"k{i % 7}:v{i}\n" for i in range(300))
        t0 = int(time.time() * 1000)
        kcat(b, "-P", "-t", "keyed", "-K:", "-H", "h1=x", "-H", "h2=y", input_data=lines.encode())
        msgs = consume(b, "keyed", "-o", "beginning")
        check(len(msgs) == 300, f"expected 300 records, got {len(msgs)}")
        parts = {m["partition"] for m in msgs}
        check(len(parts) > 1, f"keys spread over partitions: {parts}")
        for m in msgs:
            check(m["headers"] == ["h1", "x", "h2", "y"], f"headers {m['headers']}")
        # Per key: one partition, values in produce order.
        by_key = {}
        for m in msgs:
            by_key.setdefault(m["key"], []).append((m["partition"], m["offset"], int(m["payload"][1:])))
        for key, recs in by_key.items():
            check(len({p for p, _, _ in recs}) == 1, f"key {key} in several partitions")
            recs.sort(key=lambda r: r[1])
            vals = [v for _, _, v in recs]
            check(vals == sorted(vals), f"key {key} out of order")
            check(all(int(key[1:]) == v % 7 for v in vals), f"key {key} has wrong values")
        # From an offset, per partition.
        p0 = sorted([m for m in msgs if m["partition"] == 0], key=lambda m: m["offset"])
        from5 = consume(b, "keyed", "-p", "0", "-o", "5")
        check([m["payload"] for m in from5] == [m["payload"] for m in p0[5:]], "consume from offset 5")
        # From a timestamp: later records only.
        time.sleep(0.05)  # not synchronisation: the clock moves past the earlier records' timestamps
        t1 = int(time.time() * 1000)
        kcat(b, "-P", "-t", "keyed", "-p", "1", input_data=b"late1\nlate2\n")
        late = consume(b, "keyed", "-p", "1", "-o", f"s@{t1}")
        check([m["payload"] for m in late] == ["late1", "late2"], f"from timestamp: {late}")
        early = consume(b, "keyed", "-p", "1", "-o", f"s@{t0 - 1000}")
        check(len(early) == len([m for m in msgs if m["partition"] == 1]) + 2, "from old timestamp")
        # Every compression codec round-trips.
        for codec in ["gzip", "snappy", "lz4", "zstd"]:
            topic = f"z-{codec}"
            payload = "".join(f"{codec}-{i}-" + "x" * (i % 50) + "\n" for i in range(500))
            kcat(b, "-P", "-t", topic, "-p", "0", "-z", codec, input_data=payload.encode())
            got = consume(b, topic, "-o", "beginning")
            check([m["payload"] + "\n" for m in got] == payload.splitlines(keepends=True),
                  f"{codec}: got {len(got)} records")
        large_records(b)
        idempotent(b)
        # Metadata lists what we made.
        meta = json.loads(kcat(b, "-L", "-J"))
        names = {t["topic"] for t in meta["topics"]}
        check({"keyed", "z-gzip", "z-zstd"} <= names, f"metadata topics {names}")
        check(b.stop() == 0, "clean shutdown")
        # Restart: everything still there.
        b.start()
        check(len(consume(b, "keyed", "-o", "beginning")) == 302, "records survive a restart")
        check(b.stop() == 0, "clean shutdown after restart")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
