"""A three-broker cluster on ZooKeeper (tools/cluster): every broker answers Metadata with the
same live brokers (by their advertised addresses), cluster id and controller; the loss of the
controller (kill -9, or SIGSTOP past the session timeout) elects another within the session
timeout plus a margin; a killed broker started again registers once its old session expired;
a stopped one that comes back starts a new session and registers again."""
import subprocess
import time

from cluster_harness import Cluster, check, metadata, run, wait_for

SESSION_MS = 2000


def test(args, root):
    c = Cluster(args.cluster_tool, args.sluice, root)
    out = c.run("up", "3", "--", "--zookeeper-session-timeout-ms", str(SESSION_MS))
    line = [l for l in out.splitlines() if l.startswith("BOOTSTRAP=")]
    check(len(line) == 1, f"one BOOTSTRAP line: {out!r}")
    addrs = line[0][len("BOOTSTRAP="):].split(",")
    check(len(addrs) == 3, f"three brokers: {addrs}")
    by_id = {i + 1: a for i, a in enumerate(addrs)}
    try:
        # Every broker tells the same story, with the addresses tools/cluster gave them.
        def agreed(ids):
            views = [metadata(by_id[i]) for i in ids]
            want = {i: by_id[i] for i in ids}
            if any(v[0] != want for v in views):
                return None
            if len({v[1] for v in views}) != 1 or views[0][1] not in ids:
                return None
            if len({v[2] for v in views}) != 1 or not views[0][2]:
                return None
            return views[0]
        _, controller, cluster_id = wait_for("3 brokers agreeing", 15, lambda: agreed([1, 2, 3]))
        print(f"  3 brokers, controller {controller}, cluster id {cluster_id}")
        status = c.run("status")
        check(f"controller broker={controller}" in status, f"status names the controller:\n{status}")

        # kill -9 of the controller: another is elected once its session expires.
        c.run("kill", str(controller))
        killed_at = time.time()
        rest = [i for i in (1, 2, 3) if i != controller]
        _, new_controller, cid = wait_for("a new controller", SESSION_MS / 1000 + 8,
                                          lambda: agreed(rest))
        took = time.time() - killed_at
        check(new_controller != controller, "the controller changed")
        check(cid == cluster_id, "same cluster id")
        print(f"  kill -9 of broker {controller}: broker {new_controller} is controller after "
              f"{took:.1f}s")

        # Started again: it registers once the old session is gone, and follows the controller.
        c.run("start", str(controller))
        wait_for(f"broker {controller} registered again", SESSION_MS / 1000 + 15,
                 lambda: agreed([1, 2, 3]) and agreed([1, 2, 3])[1] == new_controller)
        print(f"  broker {controller} is back")

        # SIGSTOP of the controller past the session timeout: it loses the role; after SIGCONT
        # it opens a new session and registers again.
        stopped = new_controller
        c.run("stop", str(stopped))
        others = [i for i in (1, 2, 3) if i != stopped]
        _, third, _ = wait_for("a controller elected around the stopped one",
                               SESSION_MS / 1000 + 8, lambda: agreed(others))
        check(third != stopped, "the stopped broker is no longer the controller")
        c.run("cont", str(stopped))
        wait_for(f"broker {stopped} registered again after SIGCONT", 15,
                 lambda: agreed([1, 2, 3]) and agreed([1, 2, 3])[1] == third)
        check("session expired" in c.tail(stopped, 200),
              f"broker {stopped} says its session expired:\n{c.tail(stopped)}")
        print(f"  SIGSTOP of broker {stopped}: broker {third} took over; {stopped} rejoined")
    except Exception:
        for i in (1, 2, 3):
            print(f"--- broker {i} log tail ---\n{c.tail(i)}")
        raise
    finally:
        subprocess.run([args.cluster_tool, "down", "--dir", c.dir], env=c.env, timeout=60)
    # A clean stop leaves nothing registered (checked by the next run's up, which waits for
    # fresh registrations) and every broker said so.
    for i in (1, 2, 3):
        check("stopped cleanly" in c.tail(i, 5), f"broker {i} stopped cleanly:\n{c.tail(i)}")


if __name__ == "__main__":
    run(test)
