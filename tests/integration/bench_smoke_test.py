"""sluice-bench against the real sluice binary: a few seconds of Kafka traffic (acks=1, two
partitions, replay from offset 0 by a client and by bare fetches) and of AMQP traffic
(durable queue with confirms; a stream queue with replay from x-stream-offset=first). Checks
that every message flowed and was read back, and that the results are well formed. No timing
assertions: performance is measured by bench/compare, not here."""
# ctest-timeout: 240
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKLOAD = """name: {name}
topics: 1
partitionsPerTopic: {partitions}
messageSize: {size}
keyDistributor: NO_KEY
producersPerTopic: 1
subscriptionsPerTopic: 1
consumerPerSubscription: 1
producerRate: {rate}
warmupDurationSeconds: 0
testDurationSeconds: 3
replayFromStart: {replay}
"""


def read_kv(path):
    kv = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            kv[k] = v
    return kv


def run_bench(bench, driver, broker, pid, work, name, driver_config, **w):
    wl = os.path.join(work, name + ".yaml")
    with open(wl, "w") as f:
        f.write(WORKLOAD.format(name=name, **w))
    out = os.path.join(work, name)
    cmd = [bench, "--driver", driver, "--broker", broker, "--workload", wl,
           "--driver-config", os.path.join(ROOT, "bench", "workloads", "drivers", driver_config),
           "--out", out, "--broker-pid", str(pid)]
    r = subprocess.run(cmd, capture_output=True, timeout=150)
    text = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    check(r.returncode == 0, f"{name}: sluice-bench exited {r.returncode}:\n{text[-3000:]}")
    kv = read_kv(os.path.join(out, "summary.kv"))
    with open(os.path.join(out, "result.json")) as f:
        json.load(f)  # well-formed
    for plot in ("throughput.svg", "latency.svg"):
        check(os.path.getsize(os.path.join(out, plot)) > 0, f"{name}: {plot} written")
    print(f"{name}: published {kv['published']}, consumed {kv['consumed']}, "
          f"replay {kv.get('replay_messages', '-')}, wire {kv.get('replay_wire_messages', '-')}")
    check(kv["error"] == "", f"{name}: run error {kv['error']}")
    check(int(kv["failed"]) == 0, f"{name}: {kv['failed']} failed sends")
    published = int(kv["published"])
    check(published > 0, f"{name}: nothing published")
    # The measured window ends with records in flight: the run's totals (tail included) show
    # whether everything acknowledged was consumed.
    check(int(kv["consumed_total"]) >= int(kv["published_total"]) >= published,
          f"{name}: consumed {kv['consumed_total']} of {kv['published_total']} acknowledged")
    check(kv["broker_sampled"] == "1", f"{name}: broker CPU/RSS not sampled")
    return kv


def test(args):
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.sluice)))
    bench = os.path.join(build, "bench", "harness", "sluice-bench")
    check(os.access(bench, os.X_OK), f"no sluice-bench binary at {bench}")
    amqp_port = harness.free_port()
    b = harness.Broker(args.sluice, ["--amqp-port", str(amqp_port)]).start()
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-bench-smoke-") as work:
            kv = run_bench(bench, "kafka", b.bootstrap, b.proc.pid, work, "smoke-kafka",
                           "kafka-acks1.yaml", partitions=2, size=1024, rate=5000,
                           replay="true")
            total = int(kv["published"])
            # Everything acknowledged is replayed from offset 0, by the client and by bare
            # fetches (which must see the same offsets, nothing missing).
            check(kv["replay_error"] == "", f"replay error {kv['replay_error']}")
            check(int(kv["replay_messages"]) >= total, f"replay read {kv['replay_messages']}")
            check(kv["replay_wire_error"] == "", f"wire replay error {kv['replay_wire_error']}")
            check(int(kv["replay_wire_messages"]) >= total,
                  f"wire replay read {kv['replay_wire_messages']} of {total}")
            check(int(kv["replay_wire_bytes"]) >= total * 1024,
                  f"wire replay bytes {kv['replay_wire_bytes']}")
            amqp = f"127.0.0.1:{amqp_port}"
            run_bench(bench, "amqp", amqp, b.proc.pid, work, "smoke-amqp", "amqp-confirms.yaml",
                      partitions=1, size=256, rate=2000, replay="false")
            kv = run_bench(bench, "amqp", amqp, b.proc.pid, work, "smoke-stream",
                           "amqp-stream.yaml", partitions=1, size=256, rate=2000, replay="true")
            check(int(kv["replay_messages"]) >= int(kv["published"]),
                  f"stream replay read {kv['replay_messages']} of {kv['published']}")
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    harness.run(test)
