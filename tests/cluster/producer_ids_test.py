"""Producer ids in a cluster come from blocks claimed in ZooKeeper (/latest_producer_id_block):
InitProducerId answered by different brokers never hands out the same id, also after a
broker is killed and started again (it claims a new block rather than reuse its old one)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from cluster_harness import Cluster, check, run  # noqa: E402
from kafka_raw import Conn, init_producer_id_v0, parse_init_producer_id_v0  # noqa: E402

BLOCK = 1000


def init_producer_ids(addr, n):
    host, port = addr.rsplit(":", 1)
    c = Conn(int(port), client_id="pids")
    try:
        out = []
        for _ in range(n):
            err, pid, epoch = parse_init_producer_id_v0(c.call(*init_producer_id_v0()))
            check(err == 0 and epoch == 0, f"InitProducerId from {addr}: error {err}")
            out.append(pid)
        return out
    finally:
        c.close()


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    addrs = c.up(3, "--zookeeper-session-timeout-ms", "2000")
    by_id = {i + 1: a for i, a in enumerate(addrs)}
    with c.running():
        seen = {}
        for broker, addr in by_id.items():
            ids = init_producer_ids(addr, 5)
            check(ids == list(range(ids[0], ids[0] + 5)), f"broker {broker}: consecutive {ids}")
            check(ids[0] % BLOCK == 0, f"broker {broker} starts a block: {ids}")
            for pid in ids:
                check(pid not in seen, f"id {pid} from broker {broker} also from {seen.get(pid)}")
                seen[pid] = broker
        # More than a block from one broker: it claims the next free block, after the others'.
        many = init_producer_ids(by_id[2], BLOCK)
        check(len(set(many)) == BLOCK and not set(many) & set(seen),
              "a second block shares no id with the others")
        for pid in many:
            seen[pid] = 2
        # A broker killed and started again claims a new block.
        c.run("kill", "1")
        c.run("start", "1")
        again = init_producer_ids(by_id[1], 3)
        check(not set(again) & set(seen), f"after a restart: fresh ids {again}")
        check(again[0] > max(seen), f"a new block above every earlier one: {again}")
        print(f"  {len(seen) + len(again)} producer ids from 3 brokers, all distinct; "
              f"blocks start at {sorted({p - p % BLOCK for p in list(seen) + again})}")


if __name__ == "__main__":
    run(test)
