"""
Agent-info ingest benchmark: L{AgentDatabase.applyAgentInfo} on SQLite and
on PostgreSQL (DESIGN.md, "Targets": the master stores at least 100 000
agent-info updates per second; a plain batched UPDATE of the same rows,
measured in the same run, is the ceiling).

A database of C{--agents} agents (100 000) is filled once per backend. The
rows are what workers send: every agent active with OS fields, version,
sums, two labels, encoded into the wire chunks of at most
chunks of C{--chunk-rows} rows (350: what one 60 kB wire chunk holds; 0
packs them as today's wire format does, fewer rows a chunk) and decoded
again by the master's own code (L{agentsync.decodeAgentInfo}), so one call
of C{applyAgentInfo} stores one received chunk, one transaction each, through the
adbapi thread pool with the real reactor, as the master does.

 - first report: the agents' first rows (labels inserted, the default group
   assigned to every agent, with its version): once;
 - report again: the same agents reporting again (a new keep-alive time),
   C{--rounds} times;
 - baseline: a plain batched C{UPDATE} of the same columns for the same
   rows (C{executemany}, one transaction per chunk, on its own connection
   with the daemon's settings, no thread hop), on the same database, once
   before each round.

For each, the median and the spread (min-max) of rows per second over the
rounds, and the ratio of the medians.  PostgreSQL comes from
C{WAZUHCLUSTER_TEST_PG_DSN} or from a server started for the run
(L{tests.pg}; fsync off, as for the tests: the ratio, both measured on
that server, is the figure to read).

Usage (from the repository root, installed or with PYTHONPATH=.):
python benchmarks/bench_agentdb.py [--agents 100000] [--rounds 5]
[--backend sqlite|postgresql|both] [--profile]
"""

import argparse
import cProfile
import os
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from twisted.python.filepath import FilePath  # noqa: E402

from wazuhcluster.agentdb import AGENT_INFO_FIELDS, AgentDatabase  # noqa: E402
from wazuhcluster.agentdb.dialect import POSTGRESQL, SQLITE  # noqa: E402
from wazuhcluster.agentsync import decodeAgentInfo, encodeItem, packChunks  # noqa: E402
from wazuhcluster.clientkeys import ClientKey, formatAgentId  # noqa: E402
from wazuhcluster.commands import MAX_CHUNK  # noqa: E402

TARGET_PER_SECOND = 100000

#: The plain statement of the baseline: the same columns, nothing else.
BASELINE_SQL = (
    "UPDATE agent SET " + ", ".join(f"{name} = ?" for name in AGENT_INFO_FIELDS)
    + ", node_name = ? WHERE id = ?"
)


def workerRow(number, keepalive):
    """
    One agent-info row as a worker sends it.
    """
    return {
        "id": formatAgentId(number),
        "os_name": "Ubuntu", "os_version": "24.04.1 LTS", "os_major": "24",
        "os_minor": "04", "os_codename": "noble", "os_build": "",
        "os_platform": "ubuntu",
        "os_uname": "Linux agent 6.8.0-45-generic #45-Ubuntu SMP x86_64",
        "os_arch": "x86_64", "version": "Wazuh v4.14.7", "config_sum": "ab12cd34",
        "merged_sum": "ef56ab78", "manager_host": f"agent{number}",
        "last_keepalive": keepalive, "connection_status": "active",
        "disconnection_time": 0, "status_code": 0,
        "labels": {"env": "prod", "team": "blue"},
    }


def receivedChunks(agents, keepalive, chunkRows):
    """
    The chunks a master receives for every agent, C{chunkRows} rows each
    (L{wireRowsPerChunk} without), encoded as the worker does and decoded by
    the master's code.

    @return: a list of lists of L{AgentInfo}.
    """
    rows = [workerRow(n, keepalive) for n in range(1, agents + 1)]
    if not chunkRows:
        return [decodeAgentInfo(data)
                for _, data in packChunks((row, encodeItem(row)) for row in rows)]
    return [decodeAgentInfo(b"[" + b",".join(encodeItem(row) for row in rows[i:i + chunkRows])
                            + b"]")
            for i in range(0, len(rows), chunkRows)]


def wireRowsPerChunk():
    """
    How many of these rows one wire chunk of today's format holds.
    """
    rows = [workerRow(n, 1700000000) for n in range(1, 2001)]
    return len(packChunks((row, encodeItem(row)) for row in rows)[0][0])


def baselineParams(chunks):
    return [[(*row.values, "worker1", row.number) for row in chunk] for chunk in chunks]


class SQLiteBackend:
    name = "SQLite"

    def __init__(self, base):
        self.path = FilePath(base).child("global.db")

    def open(self, reactor):
        return AgentDatabase.open(self.path, reactor=reactor, managerName="bench")

    def baseline(self, params):
        connection = sqlite3.connect(self.path.path)
        SQLITE.configure(connection)
        started = time.perf_counter()
        for chunk in params:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(BASELINE_SQL, chunk)
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed

    def close(self):
        pass


class PostgresBackend:
    name = "PostgreSQL"

    def __init__(self, base):
        from tests.pg import freshDatabase

        self.dsn = freshDatabase()

    def open(self, reactor):
        return AgentDatabase.openPostgres(self.dsn, reactor=reactor, managerName="bench")

    def baseline(self, params):
        import psycopg

        connection = psycopg.connect(self.dsn, autocommit=True)
        sql = POSTGRESQL.sql(BASELINE_SQL)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for chunk in params:
                cursor.execute("BEGIN")
                cursor.executemany(sql, chunk)
                cursor.execute("COMMIT")
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed

    def close(self):
        from tests.pg import _SERVER

        _SERVER.close()


def spread(values):
    return f"median {statistics.median(values):,.0f}/s (min {min(values):,.0f}, max {max(values):,.0f})"


@defer.inlineCallbacks
def applyAll(db, chunks):
    """
    Store every chunk as the master does, one call each.

    @return: seconds.
    """
    started = time.perf_counter()
    for chunk in chunks:
        updated, unknown = yield db.applyAgentInfo("worker1", chunk)
        assert unknown == 0 and updated == len(chunk)
    return time.perf_counter() - started


@defer.inlineCallbacks
def measure(reactor, backend, options):
    agents = options.agents
    print(f"{backend.name}: {agents} agents ...", flush=True)
    db = yield backend.open(reactor)
    entries = [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
               for n in range(1, agents + 1)]
    yield db.reconcileClientKeys(entries)
    now = int(time.time())
    first = receivedChunks(agents, now, options.chunk_rows)
    sizes = [len(c) for c in first]
    print(f"  {len(first)} chunks of {min(sizes)}-{max(sizes)} rows "
          f"(one {MAX_CHUNK}-byte wire chunk of today's format holds "
          f"{wireRowsPerChunk()} of these rows)", flush=True)
    firstSeconds = yield applyAll(db, first)
    groups, version = yield db.groupChangesSince(0)
    assert len(groups) == agents and version == len(first), (len(groups), version)
    applied, plain = [], []
    profiler = cProfile.Profile() if options.profile else None
    for index in range(options.rounds):
        again = receivedChunks(agents, now + 2 * index + 1, options.chunk_rows)
        base = baselineParams(receivedChunks(agents, now + 2 * index + 2,
                                             options.chunk_rows))
        plain.append(agents / backend.baseline(base))
        if profiler:
            profiler.enable()
        applied.append(agents / (yield applyAll(db, again)))
        if profiler:
            profiler.disable()
    yield db.close()
    ratio = statistics.median(applied) / statistics.median(plain)
    print(f"  applyAgentInfo, first report (labels, default group): "
          f"{agents / firstSeconds:,.0f}/s")
    print(f"  applyAgentInfo, report again: {spread(applied)}")
    print(f"  plain batched UPDATE, same rows: {spread(plain)}")
    print(f"  ratio: {ratio:.2f} of the plain UPDATE; target >= {TARGET_PER_SECOND:,}/s "
          f"{'met' if statistics.median(applied) >= TARGET_PER_SECOND else 'NOT met'}",
          flush=True)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


@defer.inlineCallbacks
def run(reactor, options):
    base = tempfile.mkdtemp(prefix="wzc-bench-agentdb-")
    kinds = {"sqlite": [SQLiteBackend], "postgresql": [PostgresBackend],
             "both": [SQLiteBackend, PostgresBackend]}[options.backend]
    try:
        for kind in kinds:
            backend = kind(base)
            try:
                yield measure(reactor, backend, options)
            finally:
                backend.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=350,
                        help="rows per chunk (0: as many as one wire chunk of today's "
                             "format holds)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--profile", action="store_true",
                        help="profile the report-again rounds (reactor thread only)")
    options = parser.parse_args(argv)
    task.react(run, [options])


if __name__ == "__main__":
    sys.exit(main())
