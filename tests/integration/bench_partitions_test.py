"""bench/partitions/run (issue 13: what many partitions and queues cost) at a tiny scale
against the real sluice binary: every phase completes (create, write, AMQP declare and publish,
idle, busy partition, clean and kill -9 restarts with every partition and queue read back), the
report is well formed and the markdown written. Then the failure path: a "broker" that exits at
once makes the script exit 1 with a report saying so. No timing assertions: the numbers are
measured by the script on a quiet machine, not here."""
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
RUN = os.path.join(ROOT, "bench", "partitions", "run")

PHASES = ("startup", "bystander_baseline", "kafka_create", "kafka_write", "amqp_declare",
          "amqp_publish", "idle", "busy_partition", "restart_clean", "kafka_write_before_kill9",
          "restart_kill9", "stop")


def bench(sluice, work, *extra, timeout=200):
    report = os.path.join(work, "report.json")
    cmd = [sys.executable, RUN, "--sluice", sluice, "--work", os.path.join(work, "w"),
           "--report", report, "--markdown", os.path.join(work, "report.md"),
           "--timeout", "60", "--stop-timeout", "30"] + list(extra)
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    with open(report) as f:
        return r.returncode, json.load(f), out


def test(args):
    with tempfile.TemporaryDirectory(prefix="sluice-bench-partitions-") as work:
        code, r, out = bench(args.sluice, work, "--partitions", "6", "--topics", "3",
                             "--queues", "3", "--baseline-seconds", "0.5", "--idle-seconds",
                             "0.5", "--busy-seconds", "1", "--busy-rate", "100")
        check(code == 0, f"exit {code}:\n{out[-4000:]}")
        check(r["completed"] is True and r["errors"] == [], f"errors {r['errors']}")
        for name in PHASES:
            check(name in r["phases"] and "failed" not in r["phases"][name], f"phase {name}")
            check(r["phases"][name]["wall_s"] >= 0, f"{name}: wall time")
        ph = r["phases"]
        check(ph["kafka_create"]["topics"] == 3 and ph["kafka_create"]["partitions"] == 6,
              "created 6 partitions in 3 topics")
        check(ph["kafka_write"]["records"] == 6 and ph["kafka_write"]["delivery_errors"] == 0,
              "one record per partition")
        check(ph["busy_partition"]["records"] == 100, "busy partition records")
        check(ph["busy_partition"]["latency_max_ms"] >= ph["busy_partition"]["latency_p50_ms"],
              "busy partition percentiles ordered")
        for name in ("restart_clean", "restart_kill9"):
            rs = ph[name]
            check(rs["kafka_partitions_wrong"] == 0 and rs["amqp_queues_wrong"] == 0,
                  f"{name}: everything read back")
            check(rs["kafka_metadata_s"] <= rs["kafka_serve_last_s"] <= rs["kafka_serve_all_s"],
                  f"{name}: served after Metadata")
            check(rs["after_serve"]["fds"] > 0 and rs["after_serve"]["rss_kib"] > 0,
                  f"{name}: sampled")
        check(ph["restart_clean"]["exit_code"] == 0 and ph["stop"]["exit_code"] == 0,
              "clean shutdowns")
        check(ph["idle"]["cpu_pct_of_core"] >= 0, "idle CPU")
        by = r["bystander"]
        check(by["kafka_create"]["errors"] == 0 and by["sent"] > 0, "bystander ran")
        check(r["per_unit"]["partition"]["file_fds"] is not None, "per-partition costs")
        check(r["disk"]["after_amqp"]["logs"] >= 6 + 3, "logs on disk")
        with open(os.path.join(work, "report.md")) as f:
            check("| phase |" in f.read(), "markdown table")
        check(not os.listdir(os.path.join(work, "w", "data")) if os.path.exists(
            os.path.join(work, "w", "data")) else True, "data removed")

        code, r, out = bench("/bin/false", work, "--partitions", "2", timeout=60)
        check(code == 1, f"a broker that exits: exit {code}")
        check(r["completed"] is False and any("died" in e for e in r["errors"]),
              f"reported: {r['errors']}")
        print("tiny run:", json.dumps({k: ph[k].get("wall_s") for k in PHASES}))


if __name__ == "__main__":
    harness.run(test)
