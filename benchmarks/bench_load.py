"""
Load benchmark: many workers against one master for minutes of continuous
file changes and agent updates (issue "Reliability", item 3).

The master runs as a real C{twistd -n wazuh-master} process. C{--workers}
workers (50 by default) run as ONE separate process hosting every
C{WorkerService} (as C{wazuh-cluster demo} does), each with its own home
made from the same CA and its own loopback source address (127.0.1.x, as
distinct machines: the master allows 10 connections per address), all over
real mutual TLS. Every node shares a client.keys of C{--agents-per-worker}
agents per worker; each worker's agents report only to it.

Intervals: the shipped defaults, but for the keep-alive (C{--keep-alive}
seconds; the master checks every C{keep_alive / 2} and drops a worker
silent for C{2 x keep_alive}, Wazuh's ratio; a request times out after
C{2 x keep_alive}) and agent info (C{worker.sync_agent_info} 2 s).

Phases:
  1. baseline: once every worker is connected and in sync, C{--baseline}
     file changes on the master, one at a time, with nothing else going on:
     propagation to all workers (the reference for the ratios below), and
     the master's RSS.
  2. load, for C{--duration} seconds: every C{--change-every} seconds one
     change on the master (a new file, an edit of an earlier one, or the
     removal of an older one, in turn, under etc/rules, etc/lists and
     etc/shared/default), without waiting for the previous one to arrive;
     every second each worker records C{--updates} agent updates (status,
     version, OS), which its agent-info sync sends to the master.
  3. drain: the updates stop; wait until every worker's files are
     identical to the master's and the master holds every worker's last
     update of each of its agents.

Printed: a line every C{--sample-every} seconds (master RSS, the oldest
keep-alive the master holds, changes and their propagation so far); then
the RSS curve, its growth (median of the last third over the first third,
and the slope), propagation p50/p99/max per change (until the last worker
has it) and per worker, under load and in the baseline, with the ratio;
keep-alive problems (the master's "No keep alives" drops, the workers'
failed keep-alives, reconnections: all must be 0); agent updates sent and
stored; and whether every worker ended identical. The run fails (status 1) on any
keep-alive problem, any difference left, or an RSS growth over
C{--rss-growth} percent.

Usage (from the repository root):
python benchmarks/bench_load.py [--workers 50] [--duration 180]
[--change-every 2] [--agents-per-worker 20] [--updates 2] [--keep-alive 5]
[--sample-every 10] [--baseline 10] [--rss-growth 10] [--keep]

(C{--worker-host ...} is the internal mode of the workers' process.)
"""

import argparse
import datetime
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_idle import controlHealth, sourceAddress  # noqa: E402
from common import Cluster, compareTrees, environment, percentile  # noqa: E402

from wazuhcluster.agentdb import AgentDatabase  # noqa: E402
from wazuhcluster.clientkeys import ClientKey, formatAgentId, writeClientKeys  # noqa: E402
from wazuhcluster.nodeinit import initNode  # noqa: E402

POLL = 0.02


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--duration", type=float, default=180.0,
                        help="seconds of load (file changes and agent updates)")
    parser.add_argument("--change-every", type=float, default=2.0,
                        help="seconds between two file changes on the master")
    parser.add_argument("--agents-per-worker", type=int, default=20)
    parser.add_argument("--updates", type=int, default=2,
                        help="agent updates per worker per second")
    parser.add_argument("--keep-alive", type=float, default=5.0,
                        help="worker.keep_alive (the master's limit is twice it)")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--baseline", type=int, default=10,
                        help="file changes of the baseline (one at a time, no load)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a change may take to reach every worker")
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--rss-growth", type=float, default=10.0,
                        help="percent the master's RSS may grow from the first to the last "
                             "third of the load")
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    parser.add_argument("--worker-host", nargs=6, help=argparse.SUPPRESS,
                        metavar=("BASE", "PORT", "N", "AGENTS", "UPDATES", "SECONDS"))
    return parser.parse_args(argv)


def workerName(index):
    return f"w{index:03d}"


def agentsOf(index, perWorker):
    """
    The agent numbers reporting to worker C{index} (from 1).
    """
    return range((index - 1) * perWorker + 1, index * perWorker + 1)


# -- the workers' process ------------------------------------------------------


def hostWorkers(base, port, count, perWorker, updates, seconds):
    """
    Run C{count} workers in this process until killed; for the first
    C{seconds} seconds, each records C{updates} updates of its agents every
    second.
    """
    from twisted.application.service import MultiService
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.task import LoopingCall

    from wazuhcluster.demo import nodeBranch
    from wazuhcluster.home import NodeHome
    from wazuhcluster.worker.client import WorkerService

    root = MultiService()
    workers = []
    for index in range(1, count + 1):
        home = NodeHome.fromPath(os.path.join(base, workerName(index)))

        def endpointFor(config, index=index):
            return TCP4ClientEndpoint(reactor, config.masterHost, port, timeout=30,
                                      bindAddress=(sourceAddress(index), 0))

        branch = nodeBranch(home, WorkerService, reactor, endpointFor)
        branch.setServiceParent(root)
        workers.append((index, next(s for s in branch if isinstance(s, WorkerService))))
    counter = [0]
    failures = [0]
    started = [None]
    rng = random.Random(1)

    def report():
        if started[0] is None:
            started[0] = time.monotonic()
        if time.monotonic() - started[0] > seconds:
            loop.stop()
            print(f"updates stopped after {counter[0]} ({failures[0]} failed)", flush=True)
            return
        for index, worker in workers:
            if worker.connection is None:
                continue
            for number in rng.sample(list(agentsOf(index, perWorker)), updates):
                counter[0] += 1
                d = worker.agentStore.get()
                d.addCallback(lambda store, number=number, n=counter[0], w=worker:
                              store.reportAgent(
                                  formatAgentId(number),
                                  status=rng.choice(["active", "active", "disconnected"]),
                                  os={"os_name": "Ubuntu", "os_version": f"24.04.{n % 7}"},
                                  version=f"Wazuh v4.14.{n}", nodeName=w.config.node_name))
                d.addErrback(lambda f: failures.__setitem__(0, failures[0] + 1))

    loop = LoopingCall(report)
    root.startService()
    reactor.addSystemEventTrigger("before", "shutdown", root.stopService)
    print(f"hosting {count} workers", flush=True)
    signal.signal(signal.SIGUSR1, lambda *a: reactor.callFromThread(
        lambda: loop.running or loop.start(1.0)))
    reactor.run()


# -- the cluster ---------------------------------------------------------------


def createHomes(cluster, workers, perWorker, keepAlive):
    """
    The master's and the workers' homes, every one with the same client.keys
    (its agents already in each node's database) and the benchmark's
    intervals.
    """
    intervals = {
        "worker": {"keep_alive": keepAlive, "sync_agent_info": 2, "connection_retry": 5},
        "master": {"check_worker_lastkeepalive": keepAlive / 2,
                   "max_allowed_time_without_keepalive": 2 * keepAlive},
        "communication": {"timeout_cluster_request": 2 * keepAlive},
    }
    entries = [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
               for n in range(1, workers * perWorker + 1)]
    homes = [initNode(os.path.join(cluster.base, "master"), "master", "master", cluster.ca,
                      masterHost="127.0.0.1", port=cluster.port, bindAddr="127.0.0.1")]
    for index in range(1, workers + 1):
        homes.append(initNode(os.path.join(cluster.base, workerName(index)), "worker",
                              workerName(index), cluster.ca, masterHost="127.0.0.1",
                              port=cluster.port))
    for home in homes:
        home.clusterJsonOverrides.setContent(json.dumps({"intervals": intervals}).encode())
        writeClientKeys(home.clientKeys, entries)
        db = AgentDatabase.openBlocking(home.globalDb, managerName="bench")
        db.reconcileClientKeys(entries)
        db.close()
    for relpath in ("etc/rules/local_rules.xml", "etc/lists/audit-keys",
                    "etc/shared/default/agent.conf"):
        path = homes[0].root.preauthChild(relpath)
        path.parent().makedirs(ignoreExistingDirectory=True)
        path.setContent(b"seed\n")
    return homes


def rssBytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def oldestKeepAlive(masterHome):
    """
    How old the oldest keep-alive the master holds is, in seconds (from
    C{control -i --json}), and how many workers it lists.
    """
    health = controlHealth(masterHome)
    now = datetime.datetime.now(datetime.timezone.utc)
    ages = []
    for node in health.get("nodes", {}).values():
        last = node.get("status", {}).get("last_keep_alive")
        if last and last != "n/a":
            moment = datetime.datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            ages.append((now - moment).total_seconds())
    return (max(ages) if ages else float("nan")), health.get("n_connected_nodes", 0)


def waitConnected(master, count, timeout, host):
    deadline = time.monotonic() + timeout
    while True:
        if host.poll() is not None:
            raise RuntimeError(f"the workers' process exited ({host.returncode})")
        try:
            health = controlHealth(master.home)
            nodes = [n for n in health.get("nodes", {}).values()
                     if n.get("info", {}).get("type") == "worker"]
            synced = sum(1 for n in nodes if n.get("status", {}).get("integrity_in_sync"))
            if len(nodes) >= count and synced >= count:
                return
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not connected and in sync within {timeout}s")
        time.sleep(2.0)


# -- changes ---------------------------------------------------------------------


class Change:
    """
    One change on the master, and when each worker had it.
    """

    def __init__(self, relpath, content, workerHomes):
        self.relpath = relpath
        self.content = content  # None: the file is removed
        self.targets = {name: os.path.join(home, relpath) for name, home in workerHomes}
        self.arrived = {}
        self.started = None

    @property
    def done(self):
        return len(self.arrived) == len(self.targets)

    def poll(self, now):
        for name, path in self.targets.items():
            if name in self.arrived:
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = None
            except OSError:
                continue
            if data == self.content:
                self.arrived[name] = now

    def latency(self):
        return max(self.arrived.values()) - self.started

    def latencies(self):
        return [moment - self.started for moment in self.arrived.values()]


class ChangeMaker:
    """
    Creates, edits and removes files on the master, in turn.
    """

    DIRS = ("etc/rules", "etc/lists", "etc/shared/default")

    def __init__(self, masterHome, workerHomes):
        self.master = masterHome
        self.workerHomes = workerHomes
        self.count = 0
        self.live = []

    def _path(self, number):
        directory = self.DIRS[number % len(self.DIRS)]
        suffix = ".xml" if directory == "etc/rules" else ""
        return f"{directory}/load_{number:05d}{suffix}"

    def next(self, busy):
        """
        Make the next change (never on a path with a change in flight,
        C{busy}); return it.
        """
        self.count += 1
        kind = self.count % 3
        candidates = [p for p in self.live if p not in busy]
        if kind == 1 and len(candidates) > 3:
            relpath = candidates[-3]
            content = f"edit {self.count} {time.time_ns()}\n".encode() * 20
        elif kind == 2 and len(candidates) > 10:
            relpath = candidates[0]
            self.live.remove(relpath)
            content = None
        else:
            relpath = self._path(self.count)
            self.live.append(relpath)
            content = f"new {self.count} {time.time_ns()}\n".encode() * 20
        change = Change(relpath, content, self.workerHomes)
        path = os.path.join(self.master, relpath)
        change.started = time.monotonic()
        if content is None:
            os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(content)
        return change


def pollUntil(changes, until, timeout):
    """
    Poll C{changes} until time C{until} (monotonic), or, with C{until}
    L{None}, until all are done; a change older than C{timeout} fails the
    run.
    """
    while True:
        now = time.monotonic()
        pending = [c for c in changes if not c.done]
        for change in pending:
            change.poll(now)
            if not change.done and now - change.started > timeout:
                raise RuntimeError(f"{change.relpath} did not reach every worker within "
                                   f"{timeout}s ({len(change.arrived)} of "
                                   f"{len(change.targets)})")
        if until is None and all(c.done for c in changes):
            return
        if until is not None and now >= until:
            return
        time.sleep(POLL)


# -- agent updates -------------------------------------------------------------


def agentRows(dbPath, numbers=None):
    """
    C{{agent number: (version, status, os_version)}} of an agent database,
    read-only.
    """
    connection = sqlite3.connect(f"file:{dbPath}?mode=ro", uri=True, timeout=30)
    try:
        rows = connection.execute(
            "SELECT id, version, connection_status, os_version FROM agent WHERE id > 0")
        found = {row[0]: tuple(row[1:]) for row in rows}
    finally:
        connection.close()
    if numbers is not None:
        found = {n: found.get(n) for n in numbers}
    return found


def agentsConverged(cluster, count, perWorker):
    """
    Whether the master holds each worker's rows of its own agents.

    @return: C{(agents that differ, agents updated at least once)}
    """
    master = agentRows(os.path.join(cluster.base, "master", "queue/db/global.db"))
    differ = updated = 0
    for index in range(1, count + 1):
        numbers = agentsOf(index, perWorker)
        mine = agentRows(os.path.join(cluster.base, workerName(index), "queue/db/global.db"),
                         numbers)
        for number in numbers:
            if mine[number] and mine[number][0]:
                updated += 1
            if mine[number] != master.get(number):
                differ += 1
    return differ, updated


# -- reporting -------------------------------------------------------------------


def summary(label, values, reference=None):
    if not values:
        return f"  {label:<34} (none)"
    line = (f"  {label:<34} n={len(values):<5} p50={percentile(values, .5):.3f}s "
            f"p99={percentile(values, .99):.3f}s max={max(values):.3f}s")
    if reference:
        line += (f"  ({percentile(values, .5) / percentile(reference, .5):.2f}x / "
                 f"{percentile(values, .99) / percentile(reference, .99):.2f}x the baseline)")
    return line


def slope(samples):
    """
    Least-squares slope of C{(t, value)} samples, per minute.
    """
    if len(samples) < 2:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = statistics.mean(ts), statistics.mean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


def logCounts(cluster, count):
    master = cluster.nodes["master"].logText()
    drops = master.count("No keep alives have been received")
    failed = reconnects = errors = 0
    for index in range(1, count + 1):
        path = os.path.join(cluster.base, workerName(index), "logs", "cluster.log")
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        failed += text.count("Error sending keep alive")
        reconnects += max(0, text.count("Successfully connected to master.") - 1)
        errors += sum(1 for line in text.splitlines() if " ERROR: " in line)
    masterErrors = sum(1 for line in master.splitlines() if " ERROR: " in line)
    bad = sum(master.count(word) for word in ("Traceback", "Unhandled", "CRITICAL"))
    return drops, failed, reconnects, errors, masterErrors, bad


def run(options):
    count = options.workers
    with Cluster(prefix="wzb-l-", keep=options.keep) as cluster:
        started = time.monotonic()
        createHomes(cluster, count, options.agents_per_worker, options.keep_alive)
        from common import Node

        master = cluster.nodes["master"] = Node(cluster, "master", "master")
        for index in range(1, count + 1):
            cluster.nodes[workerName(index)] = Node(cluster, workerName(index), "worker")
        print(f"{count} workers, {count * options.agents_per_worker} agents; homes made in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        master.start()
        master.waitForLog("[Local integrity] Finished", timeout=60)
        hostOutput = open(os.path.join(cluster.base, "workers.out"), "ab")
        host = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker-host", cluster.base,
             str(cluster.port), str(count), str(options.agents_per_worker),
             str(options.updates), str(options.duration)],
            stdout=hostOutput, stderr=subprocess.STDOUT, env=environment(), cwd=cluster.base,
            start_new_session=True)

        def stopHost():
            if host.poll() is None:
                os.kill(host.pid, signal.SIGKILL)
                host.wait()
            hostOutput.close()

        cluster.cleanups.append(stopHost)
        waitConnected(master, count, options.startup_timeout, host)
        print(f"all {count} workers connected and in sync after "
              f"{time.monotonic() - started:.1f}s", flush=True)

        workerHomes = [(workerName(i), os.path.join(cluster.base, workerName(i)))
                       for i in range(1, count + 1)]
        maker = ChangeMaker(master.home, workerHomes)
        baseline = []
        for _ in range(options.baseline):
            change = maker.next(set())
            pollUntil([change], None, options.timeout)
            baseline.append(change)
            time.sleep(0.5)
        baselineRss = rssBytes(master.pid)
        print(f"baseline: {len(baseline)} changes, p50 "
              f"{percentile([c.latency() for c in baseline], .5):.3f}s; master RSS "
              f"{baselineRss / 2**20:.1f} MB", flush=True)

        os.kill(host.pid, signal.SIGUSR1)
        loadStart = time.monotonic()
        changes = []
        samples = [(0.0, baselineRss)]
        keepAliveAges = []
        nextChange = loadStart
        nextSample = loadStart + options.sample_every
        print(f"{'t':>6} {'master RSS':>11} {'workers RSS':>12} {'oldest keep-alive':>18} "
              f"{'changes':>8} {'p50':>7} {'p99':>7}", flush=True)
        while True:
            now = time.monotonic()
            if now - loadStart >= options.duration:
                break
            if now >= nextChange:
                busy = {c.relpath for c in changes if not c.done}
                changes.append(maker.next(busy))
                nextChange += options.change_every
            if now >= nextSample:
                nextSample += options.sample_every
                rss = rssBytes(master.pid)
                samples.append((now - loadStart, rss))
                age, connected = oldestKeepAlive(master.home)
                keepAliveAges.append(age)
                done = [c.latency() for c in changes if c.done]
                print(f"{now - loadStart:5.0f}s {rss / 2**20:9.1f}MB "
                      f"{rssBytes(host.pid) / 2**20:10.1f}MB {age:16.1f}s "
                      f"{len(done):>8} {percentile(done, .5):6.3f}s {percentile(done, .99):6.3f}s"
                      + ("" if connected == count else f"  ({connected} connected)"),
                      flush=True)
                if host.poll() is not None or not master.alive():
                    raise RuntimeError("a process exited during the load")
            pollUntil(changes, min(nextChange, nextSample), options.timeout)
        pollUntil(changes, None, options.timeout)
        loadEnd = time.monotonic()

        drained = time.monotonic()
        deadline = drained + 120
        while True:
            differ, updated = agentsConverged(cluster, count, options.agents_per_worker)
            trees = [name for name, home in workerHomes if compareTrees(master.home, home)]
            if not differ and not trees:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(2.0)
        drainTime = time.monotonic() - drained
        samples.append((time.monotonic() - loadStart, rssBytes(master.pid)))
        drops, failed, reconnects, errors, masterErrors, bad = logCounts(cluster, count)
        with open(os.path.join(cluster.base, "workers.out"), "rb") as f:
            hostLines = f.read().decode("utf-8", "replace")

        print()
        print(f"Load: {count} workers, {loadEnd - loadStart:.0f}s, "
              f"{len(changes)} file changes (one every {options.change_every:g}s), "
              f"{options.updates} agent updates per worker per second")
        print("Master RSS (MB) over time:")
        for t, rss in samples:
            print(f"  {t:6.0f}s {rss / 2**20:7.1f} " + "#" * int(rss / 2**20 / 2))
        loadSamples = samples[1:-1] or samples[-1:]
        load = [rss for t, rss in loadSamples]
        third = max(1, len(load) // 3)
        first, last = statistics.median(load[:third]), statistics.median(load[-third:])
        print(f"  baseline {baselineRss / 2**20:.1f} MB; first third {first / 2**20:.1f} MB, "
              f"last third {last / 2**20:.1f} MB: {100 * (last / first - 1):+.1f}%; "
              f"slope after the first third {slope(loadSamples[third:]) / 2**20:+.2f} MB/min; "
              f"peak {max(r for _, r in samples) / 2**20:.1f} MB")
        print("Propagation of a change to every worker:")
        base = [c.latency() for c in baseline]
        under = [c.latency() for c in changes]
        print(summary("baseline (one at a time, no load)", base))
        print(summary("under load, last worker", under, base))
        print(summary("under load, each worker", [t for c in changes for t in c.latencies()],
                      [t for c in baseline for t in c.latencies()]))
        for kind, test in (("  new files", lambda c: c.content and b"new" in c.content[:3]),
                           ("  edits", lambda c: c.content and b"edit" in c.content[:4]),
                           ("  removals", lambda c: c.content is None)):
            print(summary(kind, [c.latency() for c in changes if test(c)]))
        print("Keep-alive:")
        ages = [a for a in keepAliveAges if a == a]
        print(f"  oldest keep-alive held by the master: max {max(ages or [float('nan')]):.1f}s "
              f"(limit {2 * options.keep_alive:g}s, period {options.keep_alive:g}s)")
        print(f"  workers dropped by the master: {drops}; failed keep-alives: {failed}; "
              f"reconnections: {reconnects}")
        updates = [line for line in hostLines.splitlines() if line.startswith("updates stopped")]
        print("Agent updates:")
        print(f"  {updates[-1] if updates else 'the workers process did not report'}; "
              f"agents updated {updated} of {count * options.agents_per_worker}; "
              f"master differs from the reporting worker for {differ} agents after "
              f"{drainTime:.1f}s of drain")
        print("End state:")
        print(f"  workers identical to the master: {count - len(trees)} of {count}; "
              f"ERROR lines: master {masterErrors}, workers {errors}; tracebacks/unhandled: {bad}")
        growth = last / first - 1
        flat = growth * 100 <= options.rss_growth
        print(f"  master RSS {'flat' if flat else 'GROWING'}: {100 * growth:+.1f}% from the "
              f"first to the last third of the load (limit {options.rss_growth:g}%)")
        ok = flat and not (drops or failed or reconnects or trees or differ or bad)
        print("RESULT: " + ("ok" if ok else "PROBLEMS (see above)"))
        return 0 if ok else 1


def main(argv=None):
    options = parseArguments(argv if argv is not None else sys.argv[1:])
    if options.worker_host:
        base, port, count, perWorker, updates, seconds = options.worker_host
        hostWorkers(base, int(port), int(count), int(perWorker), int(updates), float(seconds))
        return 0
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
