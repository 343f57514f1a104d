"""A short run of tools/soak: both protocols at once (Kafka idempotent producer with acks=all
to a flush.messages=1 topic and a consumer group committing; AMQP publisher confirms on durable
queues with persistent messages and a manual-ack consumer) through 5 kill -9 cycles at random
moments: nothing acknowledged lost, nothing duplicated beyond what a crash legitimately
re-delivers, nothing out of order, a clean stop and a consistent data dir at the end. The seed
is printed: `tools/soak --seed N` repeats the run's kill moments. Then the soak is checked to
see loss: one cycle with --inject-loss (4 KiB cut off the logs between kill and restart) must
fail with lost messages on both protocols."""
# ctest-timeout: 300
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CYCLES = 5


def main(args):
    seed = random.randrange(1000000)
    work = tempfile.mkdtemp(prefix="sluice-it-soak-")
    report = os.path.join(work, "report.json")
    data = os.path.join(work, "data")
    cmd = [os.path.join(ROOT, "tools", "soak"), "--cycles", str(CYCLES), "--seed", str(seed),
           "--sluice", args.sluice, "--data-dir", data, "--duration", "2.5",
           "--report", report, "--kafka-rate", "1000", "--amqp-rate", "400"]
    print(" ".join(cmd), flush=True)
    r = subprocess.run(cmd, timeout=280)
    check(os.path.exists(report), "the soak wrote its report")
    with open(report) as f:
        rep = json.load(f)
    check(r.returncode == 0, f"tools/soak exited {r.returncode}: {rep.get('problems')} "
                             f"(seed {seed}, data in {data})")
    check(rep["cycles"] == CYCLES, f"{rep['cycles']} cycles")
    # It did real work on both sides, across the crashes.
    check(rep["kafka"]["acked"] > 500, f"kafka acked {rep['kafka']['acked']}")
    check(rep["kafka"]["group_receipts"] >= rep["kafka"]["acked"], "the group received it all")
    check(rep["amqp"]["acked"] > 200, f"amqp confirmed {rep['amqp']['acked']}")
    check(rep["final_checks"]["sluice_log_verify_exit"] in (0, None), "sluice-log verify")
    shutil.rmtree(work, ignore_errors=True)

    # The soak sees a loss when there is one.
    work = tempfile.mkdtemp(prefix="sluice-it-soak-")
    report = os.path.join(work, "report.json")
    cmd = [os.path.join(ROOT, "tools", "soak"), "--cycles", "1", "--seed", str(seed),
           "--sluice", args.sluice, "--data-dir", os.path.join(work, "data"), "--duration", "1",
           "--report", report, "--kafka-rate", "1000", "--amqp-rate", "400", "--inject-loss"]
    print(" ".join(cmd), flush=True)
    r = subprocess.run(cmd, timeout=150)
    with open(report) as f:
        rep = json.load(f)
    check(r.returncode == 1, f"--inject-loss: tools/soak exited {r.returncode}")
    check(rep["kafka"]["lost"] > 0 and rep["amqp"]["lost"] > 0,
          f"--inject-loss: lost kafka {rep['kafka']['lost']}, amqp {rep['amqp']['lost']}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
