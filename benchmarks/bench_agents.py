"""
Agent sync benchmark (DESIGN.md, "Targets": the master stores at least
100 000 agent updates per second, against the ceiling of a plain batched
SQLite UPDATE of the same rows in the same run).

A real master runs in this process and 4 real workers run as C{twistd
wazuh-worker} processes (or, with C{--in-process}, in this process too),
over mutual TLS on loopback, agent databases through adbapi. Two
measurements:

 - agent info: 100 000 agents, a quarter reporting to each worker, all
   marked for sync on the workers before they start. Measured on the master
   from the start of the first worker's Agent-info round to the end of the
   last one: agent updates stored per second (reading on the workers,
   chunking, TLS, validation, storing with labels and the default group
   assignment included). Baseline, in the same run: a plain batched SQLite
   C{UPDATE} of the same columns for the same 100 000 rows (one
   C{executemany} per chunk-sized batch, one transaction each) on a copy of
   the master's database.
 - agent groups: 10 000 agents moved to another group on the master in one
   transaction; the time until every worker holds the same assignments
   (global hash equal to the master's), counted from the Local agent-groups
   refresh being triggered (what C{refresh_agent_groups} does; without it
   the periodic refresh adds up to C{master.sync_agent_groups}).

Usage (from the repository root, installed or with PYTHONPATH=.):
python benchmarks/bench_agents.py [--agents 100000] [--workers 4]
[--group-change 10000] [--in-process] [--dir DIR]
"""

import argparse
import json
import os
import shutil
import statistics
import sqlite3
import sys
import tempfile
import time

from twisted.internet import defer, task, threads
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import globalLogPublisher

from wazuhcluster import agentdb, grouphash
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.clientkeys import ClientKey, formatAgentId, writeClientKeys
from wazuhcluster.commands import MAX_CHUNK
from wazuhcluster.demo import buildDemo, freePort
from wazuhcluster.gilswitch import shortenSwitchInterval
from wazuhcluster.nodeinit import initNode

TARGET_PER_SECOND = 100000

INTERVALS = {
    "worker": {"sync_agent_info": 1, "sync_integrity": 3600, "keep_alive": 60},
    "master": {"sync_agent_groups": 3600, "agent_group_start_delay": 1,
               "recalculate_integrity": 3600},
}


def createCluster(base, workers, agents):
    """
    Homes of a master and C{workers} workers sharing a client.keys of
    C{agents} agents, already in every node's database.
    """
    port = freePort()
    ca = os.path.join(base, "ca")
    homes = [(initNode(os.path.join(base, "master"), "master", "master", ca,
                       masterHost="127.0.0.1", port=port, bindAddr="127.0.0.1"), "master")]
    for index in range(1, workers + 1):
        homes.append((initNode(os.path.join(base, f"worker{index}"), "worker",
                               f"worker{index}", ca, masterHost="127.0.0.1", port=port),
                      "worker"))
    entries = [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
               for n in range(1, agents + 1)]
    for home, _ in homes:
        home.clusterJsonOverrides.setContent(json.dumps({"intervals": INTERVALS}).encode())
        writeClientKeys(home.clientKeys, entries)
        db = AgentDatabase.openBlocking(home.globalDb, managerName="bench")
        db.reconcileClientKeys(entries)
        db.close()
    return homes


def markReports(path, nodeName, index, workers):
    """
    Record, as C{agent report} would, that every C{workers}-th agent
    (starting at C{index}) reports to C{nodeName}: active, OS fields,
    version, two labels, marked for sync.
    """
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("BEGIN IMMEDIATE")
    now = int(time.time())
    connection.execute(
        "UPDATE agent SET connection_status = 'active', last_keepalive = ?, "
        "os_name = 'Ubuntu', os_version = '24.04.1 LTS', os_major = '24', os_minor = '04', "
        "os_codename = 'noble', os_platform = 'ubuntu', os_arch = 'x86_64', "
        "os_uname = 'Linux agent 6.8.0-45-generic #45-Ubuntu SMP x86_64', "
        "version = 'Wazuh v4.14.7', config_sum = 'ab12cd34', merged_sum = 'ef56ab78', "
        "manager_host = ?, node_name = ?, sync_status = 'syncreq', "
        "sync_version = sync_version + 1 WHERE id > 0 AND id % ? = ?",
        (now, nodeName, nodeName, workers, index % workers))
    connection.execute(
        "INSERT OR REPLACE INTO labels (id, key, value) SELECT id, 'env', 'prod' FROM agent "
        "WHERE id > 0 AND id % ? = ?", (workers, index % workers))
    connection.execute(
        "INSERT OR REPLACE INTO labels (id, key, value) SELECT id, 'team', 'blue' FROM agent "
        "WHERE id > 0 AND id % ? = ?", (workers, index % workers))
    connection.execute("COMMIT")
    connection.close()


def baseline(masterDb, scratch, agents, chunkRows):
    """
    A plain batched SQLite UPDATE of the agent-info columns for C{agents}
    rows, C{chunkRows} rows per transaction, on a copy of the master's
    database (same pragmas as the daemon's).

    @return: rows per second.
    """
    copy = os.path.join(scratch, "baseline.db")
    source = sqlite3.connect(masterDb)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    connection = sqlite3.connect(copy, isolation_level=None)
    agentdb._configureConnection(connection)
    now = int(time.time())
    values = ("Ubuntu", "24.04.1 LTS", "24", "04", "noble", "", "ubuntu",
              "Linux agent 6.8.0-45-generic #45-Ubuntu SMP x86_64", "x86_64",
              "Wazuh v4.14.7", "ab12cd34", "ef56ab78", "worker1", now, "active", 0, 0)
    rows = [(*values, "worker1", n) for n in range(1, agents + 1)]
    started = time.perf_counter()
    for start in range(0, len(rows), chunkRows):
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(agentdb._APPLY_SQL, rows[start:start + chunkRows])
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return agents / elapsed


class InfoRounds:
    """
    Watches the master's Agent-info rounds (their log events).
    """

    def __init__(self, workers):
        self.workers = workers
        self.first = None
        self.finished = {}
        self.chunks = 0
        self.done = defer.Deferred()

    def __call__(self, event):
        if event.get("cluster_node") != "master" or \
                event.get("cluster_subtag") != "Agent-info sync":
            return
        text = event.get("log_format", "")
        if text == "Starting." and self.first is None:
            self.first = time.perf_counter()
        elif text.startswith("Finished in") and event.get("chunks"):
            self.finished[event["cluster_tag"]] = time.perf_counter()
            self.chunks += event["chunks"]
            if len(self.finished) == self.workers and not self.done.called:
                self.done.callback(None)


@defer.inlineCallbacks
def run(reactor, options):
    base = options.dir or tempfile.mkdtemp(prefix="wzc-bench-")
    service, processes = None, []
    try:
        print(f"Creating a master and {options.workers} workers with {options.agents} "
              f"agents in {base} ...")
        homes = createCluster(base, options.workers, options.agents)
        # What twistd does for a node (the master runs in this process).
        shortenSwitchInterval()
        service = buildDemo(homes if options.in_process else homes[:1], reactor)
        service.startService()
        master = service.getServiceNamed("master").services[-1]
        workerHomes = [home for home, _ in homes[1:]]
        if not options.in_process:
            processes = [startWorker(reactor, home) for home in workerHomes]
        while len(master.workers) < options.workers:
            yield task.deferLater(reactor, 0.1, lambda: None)
        # The first report of every agent (with its first-time default
        # group assignment), then every agent reporting again (what
        # keep-alives do): steady-state rounds, each beside a baseline run.
        first = yield measureRounds(reactor, workerHomes, master, options, processes)
        report("first report", first)
        rates, ratios = [], []
        for _ in range(options.rounds):
            again = yield measureRounds(reactor, workerHomes, master, options, processes)
            chunkRows = max(1, options.agents // max(again[2], 1))
            plain = yield threads.deferToThread(
                baseline, homes[0][0].globalDb.path, base, options.agents, chunkRows)
            report("report again", again, plain, chunkRows)
            rates.append(again[0] / again[1])
            ratios.append(rates[-1] / plain)
        print(f"Agent info, report again over {len(rates)} rounds: median "
              f"{statistics.median(rates):,.0f} updates/s (spread {min(rates):,.0f}-"
              f"{max(rates):,.0f}), median {statistics.median(ratios):.2f} of the baseline; "
              f"target >= {TARGET_PER_SECOND:,}/s "
              f"{'met' if statistics.median(rates) >= TARGET_PER_SECOND else 'NOT met'}")

        # Everyone has the initial table (the default group of the agents
        # seen active) before the group change is measured.
        yield master.groups.refresh()
        yield waitForHashes(reactor, master, workerHomes)
        numbers = list(range(1, min(options.group_change, options.agents) + 1))

        yield master.agentStore.store.setGroupsOfAgents(numbers, ("bench", "default"))
        started = time.perf_counter()
        yield master.groups.refresh()
        yield waitForHashes(reactor, master, workerHomes)
        elapsed = time.perf_counter() - started
        groups = yield threads.deferToThread(groupsOf, workerHomes[-1], numbers[-1])
        assert groups == "bench,default", groups
        print(f"Agent groups: a change of {len(numbers)} agents reached all "
              f"{len(workerHomes)} workers in {elapsed:.3f}s after the refresh was triggered")
    finally:
        for process in processes:
            if process.transport.pid is not None:
                process.transport.signalProcess("TERM")
        yield defer.gatherResults([process.ended for process in processes])
        if service is not None:
            yield service.stopService()
        if not options.dir:
            shutil.rmtree(base, ignore_errors=True)


class _Worker(ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.ended.callback(None)


def startWorker(reactor, home):
    """
    Run C{twistd -n wazuh-worker} for C{home}.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = _Worker()
    process.transport = reactor.spawnProcess(
        process, sys.executable,
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "wazuh-worker", "--home", home.root.path],
        env=env, path=home.root.path, childFDs={0: "w", 1: "r", 2: "r"})
    return process


def globalHash(home):
    """
    A worker's global group hash, read from its database (in a thread).
    """
    connection = sqlite3.connect(home.globalDb.path, timeout=10)
    try:
        rows = connection.execute(
            "SELECT id, group_hash FROM agent WHERE id > 0 AND group_hash IS NOT NULL "
            "ORDER BY id").fetchall()
    finally:
        connection.close()
    return grouphash.globalHash(rows)


def groupsOf(home, number):
    connection = sqlite3.connect(home.globalDb.path, timeout=10)
    try:
        return connection.execute('SELECT "group" FROM agent WHERE id = ?',
                                  (number,)).fetchone()[0]
    finally:
        connection.close()


def processSeconds(pid):
    """
    The CPU seconds (user + system) process C{pid} has used so far.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(label, measured, plain=None, chunkRows=None):
    stored, elapsed, chunks, masterCpu, workersCpu = measured
    rate = stored / elapsed
    line = (f"Agent info ({label}): {stored} agent updates stored on the master in "
            f"{elapsed:.3f}s ({chunks} chunks of <= {MAX_CHUNK} bytes): {rate:,.0f} updates/s; "
            f"CPU: master {masterCpu:.2f}s ({masterCpu / stored * 1e6:.1f} us/agent)")
    if workersCpu is not None:
        line += f", workers {workersCpu:.2f}s ({workersCpu / stored * 1e6:.1f} us/agent)"
    if plain is not None:
        line += (f"; baseline (plain batched SQLite UPDATE, {chunkRows} rows per "
                 f"transaction) {plain:,.0f} rows/s: {rate / plain:.2f} of it")
    print(line)


@defer.inlineCallbacks
def measureRounds(reactor, workerHomes, master, options, processes=()):
    """
    Mark every worker's agents as reported, at once, and wait for one
    Agent-info round of every worker.

    @return: C{(agents stored, seconds, chunks, master CPU seconds, workers'
        CPU seconds or None)}.
    """
    rounds = InfoRounds(options.workers)
    globalLogPublisher.addObserver(rounds)
    yield defer.gatherResults([
        threads.deferToThread(markReports, home.globalDb.path, f"worker{index}", index,
                              options.workers)
        for index, home in enumerate(workerHomes, 1)])
    cpu = time.process_time()
    pids = [process.transport.pid for process in processes]
    workersCpu = sum(processSeconds(pid) for pid in pids)
    yield rounds.done
    cpu = time.process_time() - cpu
    if pids:
        workersCpu = sum(processSeconds(pid) for pid in pids) - workersCpu
    else:
        workersCpu = None
    globalLogPublisher.removeObserver(rounds)
    elapsed = max(rounds.finished.values()) - rounds.first
    stored = 0
    for index in range(1, options.workers + 1):
        stored += yield master.agentStore.store.countActiveAgents(f"worker{index}")
    return stored, elapsed, rounds.chunks, cpu, workersCpu


@defer.inlineCallbacks
def waitForHashes(reactor, master, homes, timeout=300):
    """
    Wait until every worker's global group hash equals the master's cache.
    """
    deadline = time.perf_counter() + timeout
    while True:
        expected = master.groups.cache.hash
        hashes = []
        for home in homes:
            hashes.append((yield threads.deferToThread(globalHash, home)))
        if all(h == expected for h in hashes):
            return
        if time.perf_counter() > deadline:
            raise RuntimeError("the workers did not catch up")
        yield task.deferLater(reactor, 0.01, lambda: None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--group-change", type=int, default=10000)
    parser.add_argument("--in-process", action="store_true",
                        help="run the workers in this process too")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--rounds", type=int, default=3,
                        help="steady-state rounds measured (default 3)")
    options = parser.parse_args(argv)
    task.react(run, [options])


if __name__ == "__main__":
    sys.exit(main())
