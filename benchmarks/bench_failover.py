"""
Failover benchmark (DESIGN.md, "Targets": after the active master is
killed, a standby serves every worker within 15 s).

Two master candidates (127.0.0.1 and 127.0.0.2, one port) on one PostgreSQL
database and N workers listing both, as real C{twistd -n} processes, with
the shipped intervals (nothing overridden: the target is stated for the
defaults).  Each round kills the active master with SIGKILL and measures,
from just before the kill:

  - until the standby took the lock ("This master is now the active
    master" in its cluster.log);
  - until every worker is served by it (each worker's "Successfully
    connected to master." and the new master's "Worker W connected").

The killed master is then started again (it comes back as a standby and
syncs from the new active master) and the next round kills the other one.

Baseline, measured in the same run: one master on SQLite (no standby)
killed with SIGKILL and started again at once (what a supervisor such as
systemd does), until every worker is served again.

Printed: each round, then median and spread (min-max) of both, the ratio
of the failover median to the baseline median, and the target.

PostgreSQL: the server of C{WAZUHCLUSTER_TEST_PG_DSN}, else one started for
the run by C{tests/pg.py} (initdb + pg_ctl, removed at exit).

Usage (from the repository root):
python benchmarks/bench_failover.py [--rounds 5] [--workers 3] [--keep]
"""

import argparse
import io
import os
import signal
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import Cluster, Node  # noqa: E402

from tests.pg import passwordDatabase  # noqa: E402
from wazuhcluster.cli import run as runCli  # noqa: E402

TARGET = 15.0
HOSTS = {"master1": "127.0.0.1", "master2": "127.0.0.2"}
CONNECTED = "Successfully connected to master."
PROMOTED = "This master is now the active master"


def freeSharedPort():
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for host in HOSTS.values():
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


def init(cluster, name, *options):
    out, err = io.StringIO(), io.StringIO()
    argv = ["init", "--home", os.path.join(cluster.base, name), "--name", name,
            "--ca", cluster.ca, "--port", str(cluster.port), *options]
    if runCli(argv, out, err) != 0:
        raise RuntimeError(f"wazuh-cluster init {name} failed: {err.getvalue()}")


def standbyCluster(workers, keep):
    """
    Two master candidates on PostgreSQL and C{workers} workers, initialised.
    """
    cluster = Cluster(prefix="wzfo-", keep=keep)
    cluster.port = freeSharedPort()
    dsn, password = passwordDatabase(None)
    passwordFile = os.path.join(cluster.base, "pgpass")
    with open(passwordFile, "w") as f:
        f.write(password + "\n")
    os.chmod(passwordFile, 0o600)
    nodes = ",".join(HOSTS.values())
    for name, host in HOSTS.items():
        init(cluster, name, "--type", "master", "--master-host", host, "--bind", host,
             "--nodes", nodes, "--database", dsn, "--password-file", passwordFile)
        cluster.nodes[name] = Node(cluster, name, "master")
    for index in range(1, workers + 1):
        name = f"worker{index}"
        init(cluster, name, "--type", "worker", "--nodes", nodes)
        cluster.nodes[name] = Node(cluster, name, "worker")
    return cluster


def singleCluster(workers, keep):
    """
    One master on SQLite and C{workers} workers, initialised.
    """
    cluster = Cluster(prefix="wzfb-", keep=keep)
    cluster.init("master", "master")
    for index in range(1, workers + 1):
        cluster.init(f"worker{index}", "worker")
    return cluster


def workersOf(cluster):
    return [node for name, node in sorted(cluster.nodes.items()) if node.type == "worker"]


def served(master, workers, before, timeout):
    """
    Wait until every worker logged one more connection than in C{before}
    and C{master} logged each of them connected after C{before}.

    @return: the monotonic time the last one was seen.
    """
    last = 0.0
    for worker in workers:
        seen = worker.waitForLog(CONNECTED, timeout, count=before[worker.name] + 1)
        needle = f"Worker {worker.name} connected from"
        seenOnMaster = master.waitForLog(needle, timeout,
                                         count=before[("master", worker.name)] + 1)
        last = max(last, seen, seenOnMaster)
    return last


def counts(master, workers):
    result = {}
    for worker in workers:
        result[worker.name] = worker.logText().count(CONNECTED)
        result[("master", worker.name)] = master.logText().count(
            f"Worker {worker.name} connected from")
    return result


def failoverRounds(rounds, workerCount, keep):
    results = []
    with standbyCluster(workerCount, keep) as cluster:
        masters = [cluster.nodes["master1"], cluster.nodes["master2"]]
        workers = workersOf(cluster)
        masters[0].start()
        masters[0].waitForLog("Serving workers as the active master.", 60)
        masters[1].start()
        masters[1].waitForLog(CONNECTED, 60)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.waitForLog(CONNECTED, 60)
        active, standby = masters
        for number in range(1, rounds + 1):
            # The standby is linked and in sync before the kill.
            standby.waitForLog("[Integrity check] Finished", 60)
            before = counts(standby, workers)
            promotions = standby.logText().count(PROMOTED)
            killed = time.monotonic()
            os.kill(active.pid, signal.SIGKILL)
            active.process.wait()
            locked = standby.waitForLog(PROMOTED, 60, count=promotions + 1)
            everyone = served(standby, workers, before, 60)
            results.append((locked - killed, everyone - killed))
            print(f"  round {number}: lock taken after {locked - killed:6.2f} s, every "
                  f"worker served after {everyone - killed:6.2f} s", flush=True)
            links = active.logText().count(CONNECTED)
            active.stop()
            active.start()
            active.waitForLog(CONNECTED, 60, count=links + 1)
            active, standby = standby, active
    return results


def baselineRounds(rounds, workerCount, keep):
    results = []
    with singleCluster(workerCount, keep) as cluster:
        master = cluster.master()
        workers = workersOf(cluster)
        master.start()
        master.waitForLog("Serving on", 60)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.waitForLog(CONNECTED, 60)
        for number in range(1, rounds + 1):
            before = counts(master, workers)
            killed = time.monotonic()
            os.kill(master.pid, signal.SIGKILL)
            master.process.wait()
            master.stop()
            master.start()
            everyone = served(master, workers, before, 60)
            results.append(everyone - killed)
            print(f"  round {number}: every worker served after {everyone - killed:6.2f} s",
                  flush=True)
    return results


def spread(values):
    return (f"median {statistics.median(values):5.2f} s, spread "
            f"{min(values):5.2f}-{max(values):5.2f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    args = parser.parse_args(argv)
    print(f"Failover: 2 master candidates on PostgreSQL, {args.workers} workers, shipped "
          "intervals, SIGKILL of the active master", flush=True)
    failover = failoverRounds(args.rounds, args.workers, args.keep)
    print(f"Baseline: 1 master on SQLite killed with SIGKILL and started again at once, "
          f"{args.workers} workers", flush=True)
    baseline = baselineRounds(args.rounds, args.workers, args.keep)
    locked = [lock for lock, _ in failover]
    everyone = [served for _, served in failover]
    print()
    print(f"standby takes the lock:        {spread(locked)}")
    print(f"every worker served (failover): {spread(everyone)}")
    print(f"every worker served (baseline): {spread(baseline)}")
    ratio = statistics.median(everyone) / statistics.median(baseline)
    verdict = "met" if max(everyone) < TARGET else "MISSED"
    print(f"failover / baseline (medians): {ratio:.2f}x; target: every worker served "
          f"within {TARGET:g} s in every round: {verdict} (worst {max(everyone):.2f} s)")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
