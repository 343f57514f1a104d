"""Consumer-group limits with the broker's defaults, over the raw protocol, while a
well-behaved idempotent producer and group consumer (confluent-kafka) run beside:
- group.max.size (1000): the 1001st member of a group gets GROUP_MAX_SIZE_REACHED (81) at once;
- group.max.member.metadata.bytes (1 MiB): a JoinGroup with 2 MiB of metadata gets
  MESSAGE_TOO_LARGE (10) at once and leaves nothing behind;
- group.max.metadata.bytes (4 MiB): 300 members of 256 KiB each (once +157 MB of RSS) stop at
  15 members, the others get 81, and the broker's RSS grows by less than 40 MB.
The bystanders see no error and no stall longer than 1 s."""
import os
import time

from harness import Broker, check, run
from kafka_raw import (Bystander, Conn, describe_groups_v0, join_group_v3, parse_describe_groups_v0,
                       parse_join_group_v3, rss_kb)

GROUP_MAX_SIZE_REACHED = 81
MESSAGE_TOO_LARGE = 10
RSS_GROWTH_BOUND_KB = 40 * 1024


def members_of(port, group):
    c = Conn(port)
    try:
        return parse_describe_groups_v0(c.call(*describe_groups_v0([group])))[group][2]
    finally:
        c.close()


def wait_members(port, group, count, timeout=20):
    deadline = time.time() + timeout
    n = -1
    while time.time() < deadline:
        n = members_of(port, group)
        if n >= count:
            return n
        time.sleep(0.05)
    raise AssertionError(f"{group}: {n} members, expected {count}")


def group_max_size(b):
    # 1000 members joined (JoinGroup v3: no member-id round trip), pipelined on 4 connections.
    crowd = [Conn(b.port, f"crowd-{i}") for i in range(4)]
    for i in range(1000):
        crowd[i % 4].send(*join_group_v3("crowd"))
    wait_members(b.port, "crowd", 1000)
    started = time.time()
    c = Conn(b.port, "one-too-many")
    err, _, member, _ = parse_join_group_v3(c.call(*join_group_v3("crowd")))
    took = time.time() - started
    print(f"  1001st member: error {err} after {took:.3f}s")
    check(err == GROUP_MAX_SIZE_REACHED, f"the 1001st member got {err}")
    check(member == "", f"member id {member!r}")
    check(took < 1.0, "refused at once")
    check(members_of(b.port, "crowd") == 1000, "the group kept its 1000 members")
    c.close()
    for x in crowd:
        x.close()


def oversized_member_metadata(b):
    c = Conn(b.port, "big")
    started = time.time()
    err, _, _, _ = parse_join_group_v3(
        c.call(*join_group_v3("big", protocols=[("range", b"\x01" * (2 << 20))])))
    print(f"  2 MiB of member metadata: error {err} after {time.time() - started:.3f}s")
    check(err == MESSAGE_TOO_LARGE, f"2 MiB of metadata got {err}")
    c.close()
    check(members_of(b.port, "big") == 0, "nothing left of the refused member")


def metadata_flood(b):
    conns = [Conn(b.port, f"hog-{i}", timeout=60) for i in range(10)]
    before = rss_kb(b.proc.pid)
    metadata = b"\x02" * (256 << 10)
    for i in range(300):
        conns[i % 10].send(*join_group_v3("hog", protocols=[("range", metadata)]))
    # Answers come in order per connection: the accepted members' after the rebalance.
    errors = {}
    for x in conns:
        while x.sent:
            err, _, _, _ = parse_join_group_v3(x.receive())
            errors[err] = errors.get(err, 0) + 1
    time.sleep(1.0)
    after = rss_kb(b.proc.pid)
    print(f"  300 x 256 KiB members: answers {errors}, RSS {before // 1024} -> "
          f"{after // 1024} MB (+{(after - before) // 1024} MB)")
    check(errors == {0: 15, GROUP_MAX_SIZE_REACHED: 285}, f"answers {errors}")
    check(after - before < RSS_GROWTH_BOUND_KB, f"RSS grew by {(after - before) // 1024} MB")
    for x in conns:
        x.close()


def test(args):
    # ASan keeps freed memory in quarantine (256 MB by default), which RSS would count: keep it
    # small so RSS shows what the broker holds.
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
    b = Broker(args.sluice, ["--num-partitions", "1"]).start()
    try:
        bystander = Bystander(b.bootstrap, "bystander", "bystander-group").start()
        group_max_size(b)
        oversized_member_metadata(b)
        metadata_flood(b)
        time.sleep(1.0)
        bystander.stop().check_unharmed()
        check(b.stop() == 0, "clean shutdown")
    except Exception:
        print(b.tail())
        raise
    finally:
        b.cleanup()


if __name__ == "__main__":
    run(test)
