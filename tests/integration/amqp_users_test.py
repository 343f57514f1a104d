"""AMQP users from --amqp-users FILE: a configured user logs in (PLAIN, from pika and from
rabbitmq-c's amqp-get); a wrong password, an unknown user and a user disabled in the file
(guest) are refused with ACCESS_REFUSED; a malformed file stops the broker at start-up with a
message naming the line."""
# ctest-timeout: 60
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check  # noqa: E402

import pika  # noqa: E402


def login(b, user, password):
    params = pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, credentials=pika.PlainCredentials(user, password),
        socket_timeout=5, connection_attempts=1)
    try:
        c = pika.BlockingConnection(params)
    except pika.exceptions.ProbableAuthenticationError:
        return "refused"
    except pika.exceptions.AMQPConnectionError as e:
        return f"error {e!r}"
    ch = c.channel()
    ch.queue_declare("users-q")
    ch.basic_publish("", "users-q", f"from {user}".encode())
    c.close()
    return "ok"


def main(args):
    work = tempfile.mkdtemp(prefix="sluice-users-")
    users = os.path.join(work, "users")
    with open(users, "w") as f:
        f.write("# test users\n\nalice:s3cret:with:colons\nguest:\nbob:hunter2\n")
    b = harness.AmqpBroker(args.sluice, ["--amqp-users", users])
    try:
        b.start()
        check(login(b, "alice", "s3cret:with:colons") == "ok", "alice logs in")
        check(login(b, "bob", "hunter2") == "ok", "bob logs in")
        check(login(b, "alice", "wrong") == "refused", "wrong password refused")
        check(login(b, "carol", "hunter2") == "refused", "unknown user refused")
        check(login(b, "guest", "guest") == "refused", "guest disabled by the file")
        check(login(b, "guest", "") == "refused", "empty password never matches")
        # The same user from another client library (rabbitmq-c).
        url = f"amqp://bob:hunter2@127.0.0.1:{b.amqp_port}"
        r = subprocess.run(["amqp-get", "--url", url, "-q", "users-q"], capture_output=True,
                           timeout=10)
        check(r.returncode == 0 and r.stdout.startswith(b"from "), f"amqp-get as bob: {r}")
        r = subprocess.run(["amqp-get", "--url", url.replace("hunter2", "nope"), "-q",
                            "users-q"], capture_output=True, timeout=10)
        check(r.returncode != 0, "amqp-get with a wrong password fails")
        check(b.stop() == 0, "clean stop")
    finally:
        b.cleanup()
    # A malformed line: the broker does not start, and says where.
    with open(users, "w") as f:
        f.write("alice:x\nno-colon-here\n")
    r = subprocess.run([args.sluice, "--amqp-users", users, "--data-dir",
                        os.path.join(work, "d")], capture_output=True, timeout=10)
    check(r.returncode == 2 and b"users:2" in r.stderr, f"malformed file refused: {r}")


if __name__ == "__main__":
    harness.run(main)
