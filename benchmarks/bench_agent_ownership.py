"""
What the agent ownership rule (L{wazuhcluster.agentdb.ownership}) costs the
master's agent-info storing.

On one SQLite agent database of 100 000 agents, stored by one worker, the
same chunks of agent-info rows (4 096 rows, as a worker sends them) are
stored, several rounds each, by:

  - baseline: a plain batched C{UPDATE} of the same columns
    (C{agentdb._APPLY_SQL}, one C{executemany} and one transaction per
    chunk) on a copy of the database;
  - C{applyAgentInfo} without a rule (what the master did before);
  - C{applyAgentInfo} with the rule the master builds for each chunk
    (L{AgentOwnership.rule}).

Prints rows per second (median and spread over the rounds) and the ratio of
each to the baseline measured in the same run.

Usage (from the repository root): PYTHONPATH=. python benchmarks/bench_agent_ownership.py
[--agents 100000] [--rounds 5]
"""

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from wazuhcluster import agentdb
from wazuhcluster.agentdb import AGENT_INFO_FIELDS, AgentDatabase
from wazuhcluster.agentdb.ownership import AgentOwnership
from wazuhcluster.agentsync import decodeAgentInfo, encodeItem, packChunks
from wazuhcluster.clientkeys import ClientKey, formatAgentId

CHUNK_ROWS = 4096


def rowsFor(agents, round_):
    rows = []
    for n in range(1, agents + 1):
        row = {name: None for name in AGENT_INFO_FIELDS}
        row.update(id=formatAgentId(n), connection_status="active", os_name="Ubuntu",
                   os_version="24.04", version="Wazuh v4.14.7", last_keepalive=1000 + round_,
                   labels={"env": "prod"})
        rows.append(row)
    return rows


def chunksOf(rows):
    """
    The rows as the master receives them: decoded chunks of AgentInfo.
    """
    decoded = []
    for start in range(0, len(rows), CHUNK_ROWS):
        for _, data in packChunks([(r, encodeItem(r)) for r in rows[start:start + CHUNK_ROWS]]):
            decoded.append(decodeAgentInfo(data))
    return decoded


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    base = FilePath(tempfile.mkdtemp(prefix="wzc-own-"))
    try:
        path = base.child("global.db")
        db = AgentDatabase.openBlocking(path, managerName="master")
        fired(db.reconcileClientKeys([ClientKey(formatAgentId(n), f"a{n}", "any", "0" * 64)
                                      for n in range(1, options.agents + 1)]))
        clock = Clock()
        ownership = AgentOwnership(clock, "master", 60)
        ownership.connected("worker1")
        ownership.connected("worker2")
        fired(db.applyAgentInfo("worker1", rowsFor(options.agents, 0)))
        results = {"baseline": [], "without rule": [], "with rule": []}
        for round_ in range(1, options.rounds + 1):
            chunks = chunksOf(rowsFor(options.agents, round_))
            copy = base.child("copy.db")
            shutil.copy(path.path, copy.path)
            connection = sqlite3.connect(copy.path, isolation_level=None)

            def baseline():
                for chunk in chunks:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(agentdb._APPLY_SQL, [
                        (*row.values, "worker1", row.number) for row in chunk])
                    connection.execute("COMMIT")

            results["baseline"].append(timed(baseline))
            connection.close()
            def withoutRule():
                for chunk in chunks:
                    fired(db.applyAgentInfo("worker1", chunk))

            def withRule():
                for chunk in chunks:
                    rule = ownership.rule("worker1", {row.number for row in chunk})
                    outcome = fired(db.applyAgentInfo("worker1", chunk, ownership=rule))
                    ownership.reported("worker1", outcome.stored)

            # Alternate the order: the second run of a round finds the rows
            # already as they are written.
            pair = [("without rule", withoutRule), ("with rule", withRule)]
            for name, function in (pair if round_ % 2 else pair[::-1]):
                results[name].append(timed(function))
        db.close()
        baseline = statistics.median(results["baseline"])
        print(f"{options.agents} agents, {options.rounds} rounds, chunks of {CHUNK_ROWS} rows")
        for name, times in results.items():
            rates = [options.agents / t for t in times]
            print(f"  {name:13} median {statistics.median(rates):9.0f} rows/s  "
                  f"spread {min(rates):9.0f}-{max(rates):9.0f}  "
                  f"ratio to baseline {baseline / statistics.median(times):.2f}x")
    finally:
        shutil.rmtree(base.path, ignore_errors=True)


def fired(d):
    """
    The result of a Deferred of the blocking database (it has fired).
    """
    result = []
    d.addBoth(result.append)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]


if __name__ == "__main__":
    main()
