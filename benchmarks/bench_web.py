"""
Web service benchmark (DESIGN.md, "Reactor budget" and "Operator surface"):
what a scrape of C{/metrics}, a C{/status.json} and a
C{/cluster/healthcheck} cost a master with many agents, and what the
reactor lag probe itself costs.

A real master runs in this process on the real reactor, its agent
database holding C{--agents} agents (a quarter of them active on each of
four worker names), its web service on a loopback port. Each round asks
over HTTP, with the agent counts made fresh for every C{/metrics}.
Printed: median and spread of each answer's latency, the master's reactor
lag (max, p99) over the rounds (and over an idle stretch just before, the
machine's own noise), and, as the baseline measured in the same run, a plain C{SELECT node_name, connection_status, COUNT(*) ... GROUP BY}
on a copy of the same database (the ceiling of any agent count).  Then
the CPU the lag probe costs: process time over an idle stretch with the
probe running against the same stretch without it.

Usage (from the repository root): PYTHONPATH=. python benchmarks/bench_web.py
[--agents 100000] [--rounds 5] [--idle 5] [--list-limit BYTES]
"""

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_agents import createCluster, markReports  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from wazuhcluster.clusteritems import loadClusterItems  # noqa: E402
from wazuhcluster.lag import ReactorLagProbe, percentile  # noqa: E402
from wazuhcluster.master.server import MasterService  # noqa: E402
from wazuhcluster.metrics import LIST_LIMIT_BYTES, storeAgents  # noqa: E402
from wazuhcluster.ossecconf import readClusterConfig  # noqa: E402
from wazuhcluster.tls import loadNodeIdentity  # noqa: E402
from wazuhcluster.web.service import WebService  # noqa: E402

WORKER_NAMES = [f"worker{n}" for n in range(1, 5)]


def groupByBaseline(path, scratch):
    """
    Seconds of a plain GROUP BY count on a copy of the master's database.
    """
    copy = os.path.join(scratch, "copy.db")
    shutil.copy(path, copy)
    connection = sqlite3.connect(copy)
    started = time.perf_counter()
    rows = connection.execute(
        "SELECT node_name, connection_status, COUNT(*) FROM agent WHERE id > 0 "
        "GROUP BY node_name, connection_status").fetchall()
    elapsed = time.perf_counter() - started
    connection.close()
    assert sum(row[2] for row in rows) > 0
    return elapsed


def summary(values):
    return (f"median {statistics.median(values) * 1000:.1f} ms "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


@defer.inlineCallbacks
def fetchOnce(agent, url):
    from twisted.web.client import readBody

    started = time.perf_counter()
    response = yield agent.request(b"GET", url.encode("ascii"))
    body = yield readBody(response)
    if response.code != 200:
        raise RuntimeError(f"{url}: {response.code} {body[:200]!r}")
    return time.perf_counter() - started, len(body)


@defer.inlineCallbacks
def run(reactor, options):
    from twisted.web.client import Agent, HTTPConnectionPool

    base = tempfile.mkdtemp(prefix="wzbw-", dir="/tmp")
    try:
        homes = createCluster(base, 0, options.agents)
        home = homes[0][0]
        for index, name in enumerate(WORKER_NAMES):
            markReports(home.globalDb.path, name, index, len(WORKER_NAMES))
        baseline = [groupByBaseline(home.globalDb.path, base) for _ in range(options.rounds)]
        config = readClusterConfig(home)
        master = MasterService(home, config, loadClusterItems(home),
                               loadNodeIdentity(home.sslDir), reactor=reactor)
        web = WebService(master, "127.0.0.1", 0)
        web.setServiceParent(master)
        master.startService()
        yield task.deferLater(reactor, 2, lambda: None)
        agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        timings = {"metrics": [], "status.json": [], "cluster/healthcheck": []}
        sizes = {}
        counts = web.metrics.agentCounts
        counts.listAgents = storeAgents(master, listLimit=options.list_limit)
        idleStarted = reactor.seconds()
        yield task.deferLater(reactor, options.idle, lambda: None)
        idleLate = [lateness for when, lateness in master.lag.samples() if when >= idleStarted]
        rssBefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        roundsStarted = reactor.seconds()
        for _ in range(options.rounds):
            counts.updated = None  # a fresh count for every scrape
            for path in timings:
                elapsed, size = yield fetchOnce(agent, web.url + path)
                timings[path].append(elapsed)
                sizes[path] = size
            yield task.deferLater(reactor, 0.2, lambda: None)
        late = [lateness for when, lateness in master.lag.samples() if when >= roundsStarted]
        lagMax, lagP99 = max(late), percentile(late, 0.99)
        rssAfter = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        complete = counts.latest.complete
        yield master.stopService()

        print(f"{options.agents} agents, {options.rounds} rounds, client.keys "
              f"{home.clientKeys.getsize()} bytes, list limit {options.list_limit} bytes: "
              + ("every status counted" if complete else "only active agents counted"))
        print(f"baseline: plain SQLite GROUP BY count: {summary(baseline)}")
        for path, values in timings.items():
            ratio = statistics.median(values) / statistics.median(baseline)
            print(f"/{path} ({sizes[path]} bytes): {summary(values)}; "
                  f"{ratio:.1f}x the baseline")
        print(f"master reactor lag over the rounds: max {lagMax * 1000:.1f} ms, "
              f"p99 {lagP99 * 1000:.1f} ms (budget: max < 50 ms, p99 < 10 ms); the same "
              f"master idle for {options.idle:g} s just before: max {max(idleLate) * 1000:.1f} "
              f"ms, p99 {percentile(idleLate, 0.99) * 1000:.1f} ms")

        print(f"peak RSS {rssBefore / 1024:.0f} MiB before the rounds, "
              f"{rssAfter / 1024:.0f} MiB after")
        idle = {}
        for withProbe in (False, True, False, True):
            probe = ReactorLagProbe(reactor)
            if withProbe:
                probe.startService()
            started = time.process_time()
            yield task.deferLater(reactor, options.idle, lambda: None)
            idle.setdefault(withProbe, []).append(
                (time.process_time() - started) / options.idle)
            if withProbe:
                probe.stopService()
        cost = statistics.median(idle[True]) - statistics.median(idle[False])
        print(f"idle CPU without the probe {statistics.median(idle[False]) * 100:.2f}% of one "
              f"core, with it {statistics.median(idle[True]) * 100:.2f}%: the probe costs "
              f"{cost * 100:.2f}% of one core")
    finally:
        shutil.rmtree(base, True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--list-limit", type=int, default=LIST_LIMIT_BYTES,
                        help="list every agent to count them by status while client.keys is at "
                             "most this many bytes (give a big value to measure listing)")
    options = parser.parse_args(argv)
    task.react(run, (options,))


if __name__ == "__main__":
    main()
