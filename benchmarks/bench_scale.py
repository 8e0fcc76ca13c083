"""
Scale benchmark (DESIGN.md "Targets"; issue "One-file changes cost one
file"): 50 000 synced files, 100 000 agents, 50 workers, one file edited on
the master.

The master runs as a real C{twistd -n wazuh-master} process with the shipped
default intervals. Its synced tree holds C{--files} files of about
C{--file-bytes} bytes in 100 groups (C{etc/shared/gNN/}), a few rules, and a
client.keys of C{--agents} agents, each assigned to one group in the
master's agent database. C{--workers} workers run as ONE separate process
hosting every C{WorkerService} (real TLS connections over loopback, each
from its own loopback source address). Before anything starts, every
worker's home receives a copy of the master's synced tree and of its agent
database, as if a first full sync had happened: what is measured is the
steady state of a big cluster, not its first sync (C{bench_full_sync.py}
measures that).

Every interval is the shipped default but one: the workers'
C{worker.sync_integrity} (C{--worker-sync-integrity}, 600 s instead of
9 s).  Each worker rescans its whole tree once per that period as a safety
net (0.28 s of CPU for 50 000 files, C{bench_local_integrity.py}): on its
own machine 3% of a core, but the 50 workers here share one process, that
is one core, and 50 such scans every 9 s would need 14 s of CPU every 9 s.
Propagation does not depend on that period: the master announces every
change and the worker's round starts from it.

Sequence: master up and its first local integrity done; the workers'
process starts; wait until C{control -i --json} shows every worker connected
and in integrity sync; settle; an idle window (the baseline of the same
run: keep-alives and idle integrity checks, per worker and per second, and
the master's idle CPU); then C{--changes} one-file edits on the master, one
at a time, each a plain in-place write of a file in C{etc/shared/gNN/} (as an
editor or a script would do), the next one at least a worker's shortest
round interval (0.5 s) after the previous had reached every worker. For each edit: the time from just before the
write until each worker's copy was replaced (its inode changed: the worker
places files by rename; the bytes are compared at the end), polled every
5 ms from this process; the TCP payload each worker connection carried
(C{ss} counters of the master's sockets, both directions, TLS included) from
before the write until one second after the last worker had it, minus the
idle rate of the same socket over the same time; the master's CPU seconds
over the same interval minus its idle rate.

Printed beside the targets: propagation p50 / p99 / max over every
(worker, edit) pair (targets p50 < 200 ms, p99 < 500 ms); bytes per worker
per edit, median and spread (target < 8 KiB); master CPU per edit; master
RSS and peak RSS at the end (target < 250 MB); a floor measured in the same
run: the same file written durably (temporary file, fsync, rename, fsync of
the directory) into C{--workers} directories one after the other by this
process, which is the disk work the workers' applies cannot avoid.

Usage (from the repository root):
python benchmarks/bench_scale.py [--files 50000] [--agents 100000]
[--workers 50] [--changes 30] [--window 20] [--keep]

(C{--worker-host BASE PORT N} is the internal mode of the workers' process.)
"""

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Cluster, compareTrees, percentile  # noqa: E402
from hosting import (  # noqa: E402
    addWorkerHostOption,
    benchmarkMain,
    cpuSeconds,
    memoryKiB,
    socketCounters,
    startWorkerHost,
    waitInSync,
    workerName,
)

from wazuhcluster.agentdb import AgentDatabase  # noqa: E402
from wazuhcluster.clientkeys import ClientKey, formatAgentId, writeClientKeys  # noqa: E402
from wazuhcluster.home import NodeHome  # noqa: E402
from wazuhcluster.worker.integrity_session import MIN_ROUND_INTERVAL  # noqa: E402

TARGET_P50 = 0.200
TARGET_P99 = 0.500
TARGET_BYTES = 8 * 1024
TARGET_RSS_MB = 250
GROUPS = 100
POLL = 0.005
SETTLE_AFTER = 1.0


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50000)
    parser.add_argument("--file-bytes", type=int, default=400)
    parser.add_argument("--agents", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--worker-sync-integrity", type=float, default=600.0,
                        help="the workers' worker.sync_integrity (see the docstring)")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of the idle baseline window")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds one edit may take to reach every worker")
    parser.add_argument("--startup-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    addWorkerHostOption(parser)
    return parser.parse_args(argv)


def groupFile(index):
    return f"etc/shared/g{index % GROUPS:02d}/f{index:06d}.conf"


def content(index, fileBytes, salt=""):
    line = f"<agent_config><!-- file {index} {salt} --></agent_config>\n"
    return (line * (fileBytes // len(line) + 1))[:fileBytes].encode()


def buildMaster(master, options):
    """
    The master's synced tree and agents; returns the agent database path.
    """
    for index in range(options.files):
        path = master.path(groupFile(index))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content(index, options.file_bytes))
        os.chmod(path, 0o660)
    for name in ("local_rules.xml", "web_rules.xml"):
        with open(master.path(f"etc/rules/{name}"), "w") as f:
            f.write(f"<group name='{name}'>\n</group>\n")
    home = NodeHome.fromPath(master.home)
    entries = [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
               for n in range(1, options.agents + 1)]
    writeClientKeys(home.clientKeys, entries)
    db = AgentDatabase.openBlocking(home.globalDb, managerName="master")
    try:
        db.reconcileClientKeys(entries)
        for group in range(GROUPS):
            ids = [formatAgentId(n) for n in range(1, options.agents + 1) if n % GROUPS == group]
            if ids:
                db.setGroupsOfAgents(ids, [f"g{group:02d}"])
    finally:
        db.close()
    return home.globalDb.path


def seedWorker(master, workerHome, masterDb):
    """
    Give a worker the master's synced tree and a copy of its agent database,
    as a first full sync would have.
    """
    for item in ("etc/shared", "etc/rules", "etc/decoders", "etc/lists"):
        source = master.path(item)
        if os.path.isdir(source):
            target = os.path.join(workerHome, item)
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["cp", "-a", source, target], check=True)
    shutil.copy2(master.path("etc/client.keys"), os.path.join(workerHome, "etc/client.keys"))
    target = os.path.join(workerHome, "queue/db/global.db")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(target + suffix):
            os.unlink(target + suffix)
    source = sqlite3.connect(masterDb)
    copy = sqlite3.connect(target)
    source.backup(copy)
    copy.close()
    source.close()
    os.chmod(target, 0o660)


def durableFloor(data, count):
    """
    The same bytes written durably into C{count} directories in turn
    (temporary file, fsync, rename, directory fsync): seconds.
    """
    base = tempfile.mkdtemp(prefix="wzs-floor-", dir="/tmp")
    try:
        dirs = [os.path.join(base, str(i)) for i in range(count)]
        for d in dirs:
            os.makedirs(d)
        started = time.perf_counter()
        for d in dirs:
            tmp = os.path.join(d, ".f.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(d, "f.conf"))
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(base, ignore_errors=True)


def inode(path):
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def oneEdit(master, workerHomes, index, options, port):
    """
    Edit one file on the master; wait until every worker replaced it.

    @return: C{(latencies, sockets before, sockets after, cpu before, cpu
        after, elapsed)}.
    """
    relpath = groupFile(index)
    targets = [os.path.join(home, relpath) for home in workerHomes]
    before = {path: inode(path) for path in targets}
    sockets0 = socketCounters(port)
    cpu0 = cpuSeconds(master.pid)
    started = time.monotonic()
    with open(master.path(relpath), "r+b") as f:
        f.truncate(0)
        f.write(content(index, options.file_bytes, salt=f"edit {started}"))
    waiting = dict(before)
    latencies = {}
    deadline = started + options.timeout
    while waiting and time.monotonic() < deadline:
        for path in list(waiting):
            if inode(path) != waiting[path]:
                latencies[path] = time.monotonic() - started
                del waiting[path]
        time.sleep(POLL)
    time.sleep(SETTLE_AFTER)
    sockets1 = socketCounters(port)
    cpu1 = cpuSeconds(master.pid)
    return latencies, waiting, sockets0, sockets1, cpu0, cpu1, time.monotonic() - started


def payload(counters):
    return counters.get("bytes_sent", 0) + counters.get("bytes_received", 0)


def spread(values, unit, scale=1.0, digits=0):
    if not values:
        return "no samples"
    ordered = sorted(v * scale for v in values)
    return (f"median {statistics.median(ordered):.{digits}f} {unit}, min {ordered[0]:.{digits}f}, "
            f"max {ordered[-1]:.{digits}f} ({len(ordered)} samples)")


def verdict(ok):
    return "met" if ok else "MISSED"


def run(options):
    hostProcess = None
    with Cluster(prefix="wzs-", keep=options.keep) as cluster:
        def stopHost():
            if hostProcess is not None and hostProcess.poll() is None:
                os.kill(hostProcess.pid, signal.SIGKILL)
                hostProcess.wait(10)
        cluster.cleanups.append(stopHost)

        t0 = time.monotonic()
        master = cluster.init("master", "master")
        masterDb = buildMaster(master, options)
        workerHomes = []
        for index in range(1, options.workers + 1):
            node = cluster.init(workerName(index), "worker")
            seedWorker(master, node.home, masterDb)
            with open(node.path("etc/cluster.json"), "w") as f:
                json.dump({"intervals": {"worker": {
                    "sync_integrity": options.worker_sync_integrity}}}, f)
            workerHomes.append(node.home)
        print(f"homes made in {time.monotonic() - t0:.0f}s: {options.files} files, "
              f"{options.agents} agents, {options.workers} workers; base {cluster.base}",
              flush=True)

        master.start()
        master.waitForLog("[Local integrity] Finished", 300, step=0.5)
        t0 = time.monotonic()
        hostProcess = startWorkerHost(__file__, cluster.base, cluster.port, options.workers,
                                      os.path.join(cluster.base, "workers.out"))
        waited = waitInSync(master, options.workers, options.startup_timeout, hostProcess)
        print(f"{options.workers} workers connected and in integrity sync {waited:.0f}s after "
              f"their process started", flush=True)
        time.sleep(options.settle)

        idle0, idleCpu0, idleT0 = socketCounters(cluster.port), cpuSeconds(master.pid), \
            time.monotonic()
        time.sleep(options.window)
        idle1, idleCpu1 = socketCounters(cluster.port), cpuSeconds(master.pid)
        idleElapsed = time.monotonic() - idleT0
        idleRate = {key: (payload(idle1[key]) - payload(idle0[key])) / idleElapsed
                    for key in set(idle0) & set(idle1)}
        idleCpuRate = (idleCpu1 - idleCpu0) / idleElapsed
        print(f"idle window {idleElapsed:.0f}s: {statistics.median(idleRate.values()):.1f} B/s "
              f"per worker, master CPU {100 * idleCpuRate:.2f}% of one core", flush=True)

        rng = random.Random(7)
        latencies, perWorkerBytes, cpus, lost = [], [], [], 0
        for change in range(options.changes):
            index = rng.randrange(options.files)
            got, missing, s0, s1, c0, c1, elapsed = oneEdit(
                master, workerHomes, index, options, cluster.port)
            latencies += got.values()
            lost += len(missing)
            for key in set(s0) & set(s1):
                extra = idleRate.get(key, 0.0) * elapsed
                perWorkerBytes.append(payload(s1[key]) - payload(s0[key]) - extra)
            cpus.append(max(0.0, (c1 - c0) - idleCpuRate * elapsed))
            slowest = max(got.values()) if got else float("nan")
            print(f"  edit {change + 1}: {len(got)}/{len(workerHomes)} workers, slowest "
                  f"{slowest * 1000:.0f} ms", flush=True)
            # The next edit comes after a worker's shortest round interval:
            # each is a single edit, not churn (which the workers' rounds
            # absorb on purpose, tests/test_endtoend_sessions.py).
            time.sleep(MIN_ROUND_INTERVAL + rng.uniform(0.0, 0.5))

        rss, peak = memoryKiB(master.pid)
        floor = durableFloor(content(0, options.file_bytes), options.workers)
        different = [home for home in workerHomes if compareTrees(master.home, home)]
        stopHost()
        # Printed before the homes (millions of files) are removed.
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        bytesMedian = statistics.median(perWorkerBytes) if perWorkerBytes else float("nan")
        bytesP99 = percentile(perWorkerBytes, 0.99)
        print()
        print(f"Scale: 1 master (twistd, shipped intervals), {options.workers} workers (one "
              f"process, real TLS over loopback, worker.sync_integrity "
              f"{options.worker_sync_integrity:g} s), {options.files} synced files, "
              f"{options.agents} agents, {options.changes} one-file edits")
        print(f"  propagation to each worker (all (worker, edit) pairs): p50 {p50 * 1000:.0f} ms "
              f"(target < {TARGET_P50 * 1000:.0f} ms: {verdict(p50 < TARGET_P50)}), p99 "
              f"{p99 * 1000:.0f} ms (target < {TARGET_P99 * 1000:.0f} ms: "
              f"{verdict(p99 < TARGET_P99)}), max {max(latencies, default=0) * 1000:.0f} ms; "
              f"not arrived within {options.timeout:.0f}s: {lost}")
        print(f"  floor, same run: the file written durably into {options.workers} directories in "
              f"turn by one process: {floor * 1000:.0f} ms ({floor / options.workers * 1000:.2f} ms "
              f"each); p50 / floor = {p50 / floor:.2f}x")
        print(f"  TCP payload per worker per edit (both directions, TLS included, idle rate "
              f"subtracted): median {bytesMedian:.0f} B, p99 {bytesP99:.0f} B (target < "
              f"{TARGET_BYTES} B: {verdict(bytesP99 < TARGET_BYTES)}); "
              f"{spread(perWorkerBytes, 'B')}")
        print(f"  master CPU per edit (idle rate subtracted): "
              f"{spread(cpus, 'ms', scale=1000)}")
        print(f"  master RSS at the end {rss / 1024:.0f} MB, peak {peak / 1024:.0f} MB (target < "
              f"{TARGET_RSS_MB} MB: {verdict(peak / 1024 < TARGET_RSS_MB)})")
        print(f"  workers identical to the master at the end: "
              f"{options.workers - len(different)}/{options.workers}")
        ok = (p50 < TARGET_P50 and p99 < TARGET_P99 and bytesP99 < TARGET_BYTES
              and peak / 1024 < TARGET_RSS_MB and not different and not lost)
        return 0 if ok else 1


def main(argv=None):
    benchmarkMain(parseArguments(sys.argv[1:] if argv is None else argv), run)


if __name__ == "__main__":
    main()
