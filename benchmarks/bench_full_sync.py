"""
Full sync benchmark (DESIGN.md, "Targets").

A master (real C{twistd -n wazuh-master} process, default intervals) holds
20 000 synced files / 500 MB by default: small files of 1-8 KiB spread over
group directories C{etc/shared/group<N>/} and C{var/multigroups/<hash>/merged.mg},
plus ~100 large files in C{etc/lists/} making up the rest. Each round starts
a fresh worker (a new home made with C{wazuh-cluster init}) and measures

 - from spawning the worker process until its cluster.log says
   C{[Integrity sync] Finished} (the files are renamed into place before
   that line is written), and
 - the same from the moment the worker logged C{Successfully connected to
   master.} (process start-up, imports, TLS and hello excluded),

then checks that the worker's synced tree equals the master's (walk, size,
MD5). Same round, same tree, the baselines:

 - C{rsync -a rsync://127.0.0.1:PORT/master/ DEST/} against an
   C{rsync --daemon} serving the master's home (node-private files excluded):
   a transfer through a loopback socket, as the cluster's is;
 - C{rsync -a SRC/ DEST/} locally (for reference: no socket).

Before every timed transfer, dirty pages are written back (C{sync}) and the
page cache is dropped when this process may write /proc/sys/vm/drop_caches
(root), so each transfer reads the master's files from disk; otherwise (or
with --warm) every transfer runs warm, and the script says so.
rsync does not flush what it writes; the worker flushes the staged files
(syncfs) before renaming them into place: one more line times
C{rsync --fsync} over loopback, for context.

Usage (from the repository root):
python benchmarks/bench_full_sync.py [--files 20000] [--mb 500]
[--large 100] [--rounds 3] [--warm] [--dir /tmp] [--keep]
[--profile DIR [--profile-format raw|speedscope|flamegraph]]
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    Cluster,
    compareTrees,
    dropCaches,
    ensureCommand,
    filesystemOf,
    freePort,
    syncedFiles,
)

from wazuhcluster.integrity import RACY_WINDOW_NS  # noqa: E402

#: DESIGN.md "Targets" (issue 8): a durable full sync at most as long as
#: rsync -a over loopback.
TARGET_RATIO = 1.0
#: Node-private paths of a home, never synced (left out of the rsync runs).
PRIVATE = ("/queue/", "/logs/", "/etc/sslcluster/", "/etc/ossec.conf", "/etc/cluster.json",
           "/var/run/")


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000, help="synced files in all")
    parser.add_argument("--mb", type=float, default=500.0, help="MiB in all")
    parser.add_argument("--large", type=int, default=100, help="large files in etc/lists/")
    parser.add_argument("--groups", type=int, default=200, help="etc/shared/ group directories")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", action="store_true",
                        help="do not drop the page cache before each transfer")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--dir", default="/tmp",
                        help="where the homes live (e.g. /dev/shm to take the disk out)")
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile-format", dest="profileFormat", default="raw",
                        choices=("raw", "speedscope", "flamegraph"))
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="py-spy record the master and the worker during each of our "
                             "syncs into DIR (collapsed stacks; slows both sides a little)")
    return parser.parse_args(argv)


def populate(home, files, totalBytes, large, groups, seed):
    """
    Write the synced tree of the master.

    @return: C{(files written, bytes written)}.
    """
    rng = random.Random(seed)
    pool = os.urandom(16 << 20)
    small = max(0, files - large)
    written = 0

    def put(relpath, size):
        nonlocal written
        path = os.path.join(home, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        offset = rng.randrange(0, len(pool) - min(size, len(pool) - 1))
        with open(path, "wb") as f:
            # A unique first line: no two files share their MD5.
            head = f"{relpath} {rng.random()}\n".encode()
            f.write(head)
            remaining = size - len(head)
            while remaining > 0:
                block = pool[offset: offset + remaining]
                f.write(block)
                remaining -= len(block)
                offset = 0
        written += max(size, len(head))

    multigroups = small * 3 // 10
    for index in range(small):
        size = rng.randint(1024, 8192)
        if index < multigroups:
            put(f"var/multigroups/{index:08x}/merged.mg", size)
        else:
            put(f"etc/shared/group{index % groups}/file{index}.conf", size)
    if large:
        each = max(8192, (totalBytes - written) // large)
        for index in range(large):
            put(f"etc/lists/list{index:03d}.cdb", each)
    return small + large, written


class RsyncDaemon:
    """
    C{rsync --daemon --no-detach} serving a home on a loopback port.
    """

    def __init__(self, base, root):
        self.port = freePort()
        self.config = os.path.join(base, "rsyncd.conf")
        with open(self.config, "w") as f:
            f.write(f"pid file = {os.path.join(base, 'rsyncd.pid')}\n"
                    f"log file = {os.path.join(base, 'rsyncd.log')}\n"
                    "use chroot = no\n"
                    "[master]\n"
                    f"path = {root}\n"
                    "read only = yes\n"
                    "uid = root\ngid = root\n"
                    f"exclude = {' '.join(PRIVATE)}\n")
        self.process = subprocess.Popen(
            ["rsync", "--daemon", "--no-detach", "--address=127.0.0.1",
             f"--port={self.port}", f"--config={self.config}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while subprocess.run(["rsync", f"rsync://127.0.0.1:{self.port}/"],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("rsync --daemon did not start")
            time.sleep(0.05)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def timed(argv):
    started = time.monotonic()
    subprocess.run(argv, check=True)
    return time.monotonic() - started


def prepareTransfer(options):
    """
    Before each timed transfer: write back dirty pages, and drop the page
    cache (unless --warm).
    """
    if options.warm:
        # Still write back what earlier transfers left dirty, so that no
        # transfer pays for the previous one's writes.
        os.sync()
        return False
    return dropCaches()


def finishedIn(text, tag):
    match = re.search(re.escape(tag) + r" Finished in ([0-9.]+)s", text)
    return float(match.group(1)) if match else float("nan")


def startProfilers(options, nodes, label):
    """
    C{py-spy record} each node's process (by its id) into C{--profile}.
    """
    if not options.profile:
        return []
    os.makedirs(options.profile, exist_ok=True)
    profilers = []
    for node in nodes:
        ext = {"raw": "txt", "speedscope": "json", "flamegraph": "svg"}[options.profileFormat]
        out = os.path.join(options.profile, f"{label}-{node.name}.{ext}")
        profilers.append(subprocess.Popen(
            ["py-spy", "record", "--pid", str(node.pid), "--rate", "200", "--format", options.profileFormat,
             "--threads", "--idle", "--output", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return profilers


def stopProfilers(profilers):
    import signal

    for profiler in profilers:
        if profiler.poll() is None:
            profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait()


def ours(cluster, master, name, options):
    """
    Sync a fresh worker; return its figures and remove its home.
    """
    worker = cluster.init(name, "worker")
    profilers = []
    try:
        cold = prepareTransfer(options)
        spawned = worker.start()
        profilers = startProfilers(options, [master, worker], name)
        connected = worker.waitForLog("Successfully connected to master.", 60, step=0.005)
        done = worker.waitForLog("[Integrity sync] Finished", options.timeout, step=0.005)
        stopProfilers(profilers)
        # The worker logs its line just before answering the master's
        # TransferDone: let the master hear the answer before the kill.
        master.waitForLog(f"[Worker {name}] [Integrity sync] Finished", 30, step=0.005)
        worker.stop()
        text = worker.logText()
        masterText = "\n".join(l for l in master.logText().splitlines()
                               if f"[Worker {name}]" in l)
        problems = compareTrees(master.home, worker.home)
        if problems:
            raise RuntimeError(f"{name} differs from the master ({len(problems)}): "
                               f"{problems[:5]}")
        return {
            "fromSpawn": done - spawned,
            "fromConnect": done - connected,
            "startup": connected - spawned,
            "check": finishedIn(text, "[Integrity check]"),
            "sync": finishedIn(text, "[Integrity sync]"),
            "masterSync": finishedIn(masterText, "[Integrity sync]"),
            "cold": cold,
        }
    finally:
        stopProfilers(profilers)
        worker.stop()
        shutil.rmtree(worker.home, ignore_errors=True)
        del cluster.nodes[name]


def rsyncRun(cluster, master, argv, label, options):
    destination = os.path.join(cluster.base, "rsync-dest")
    shutil.rmtree(destination, ignore_errors=True)
    os.makedirs(destination)
    try:
        cold = prepareTransfer(options)
        elapsed = timed(argv + [destination + "/"])
        problems = compareTrees(master.home, destination)
        if problems:
            raise RuntimeError(f"{label} differs from the master: {problems[:5]}")
        return elapsed, cold
    finally:
        shutil.rmtree(destination, ignore_errors=True)


def run(options):
    ensureCommand("rsync", "rsync")
    with Cluster(prefix="wzb-f-", keep=options.keep, directory=options.dir) as cluster:
        master = cluster.init("master", "master")
        started = time.monotonic()
        count, size = populate(master.home, options.files, int(options.mb * (1 << 20)),
                               options.large, options.groups, options.seed)
        # Files written less than RACY_WINDOW_NS before a scan are hashed
        # again by the next one: let the tree age past it, so the master's
        # periodic rescans stay stat-only as they would on a settled tree.
        time.sleep(RACY_WINDOW_NS / 1e9 + 0.5)
        synced = syncedFiles(master.home)
        totalBytes = sum(os.path.getsize(p) for p in synced.values())
        print(f"master tree: {len(synced)} synced files, {totalBytes / (1 << 20):.1f} MiB "
              f"(written in {time.monotonic() - started:.1f}s); base {cluster.base}", flush=True)
        master.start()
        master.waitForLog("[Local integrity] Finished", 300)
        print(f"master up (pid {master.pid}); first local integrity scan: "
              f"{finishedIn(master.logText(), '[Local integrity]'):.3f}s", flush=True)

        daemon = RsyncDaemon(cluster.base, master.home)
        cluster.cleanups.append(daemon.stop)
        remote = ["rsync", "-a", f"rsync://127.0.0.1:{daemon.port}/master/"]
        local = ["rsync", "-a"] + [f"--exclude={p}" for p in PRIVATE] + [master.home + "/"]
        remoteFsync = ["rsync", "-a", "--fsync", f"rsync://127.0.0.1:{daemon.port}/master/"]

        results = []
        for round in range(1, options.rounds + 1):
            figures = ours(cluster, master, f"w{round}", options)
            figures["rsync"], rsyncCold = rsyncRun(cluster, master, remote, "rsync daemon",
                                                   options)
            figures["rsyncLocal"], _ = rsyncRun(cluster, master, local, "rsync local", options)
            figures["rsyncFsync"], _ = rsyncRun(cluster, master, remoteFsync, "rsync --fsync",
                                                options)
            results.append(figures)
            print(f"round {round} ({'page cache dropped' if figures['cold'] else 'warm'}, "
                  f"{filesystemOf(options.dir)}): "
                  f"ours {figures['fromSpawn']:.2f}s from spawn, "
                  f"{figures['fromConnect']:.2f}s from connected "
                  f"(start-up {figures['startup']:.2f}s; worker log: check "
                  f"{figures['check']:.3f}s, sync {figures['sync']:.3f}s); "
                  f"rsync loopback {figures['rsync']:.2f}s, local {figures['rsyncLocal']:.2f}s, "
                  f"loopback --fsync {figures['rsyncFsync']:.2f}s", flush=True)
        if not master.alive():
            raise RuntimeError(f"the master died:\n{master.output()}")
        errors = master.logText().count("ERROR")
        if errors:
            print("master ERROR lines:\n" + "\n".join(
                l for l in master.logText().splitlines() if "ERROR" in l), flush=True)

    fstype = filesystemOf(options.dir)
    cache = f"{fstype}: in memory, the page cache is moot" if fstype == "tmpfs" else \
        "page cache dropped before each transfer" if all(
        r["cold"] for r in results) else "warm page cache (could not drop it)" if not \
        options.warm else "warm page cache (--warm)"
    print()
    print(f"Full sync of {len(synced)} files / {totalBytes / (1 << 20):.0f} MiB to a fresh "
          f"worker, {len(results)} rounds, homes under {options.dir} ({fstype}), {cache}; "
          f"master ERROR lines: {errors}")
    header = f"  {'':<44}" + "".join(f"{'round ' + str(i + 1):>10}" for i in range(len(results)))
    print(header + f"{'best':>10}")

    def line(label, key):
        values = [r[key] for r in results]
        print(f"  {label:<44}" + "".join(f"{v:>9.2f}s" for v in values) + f"{min(values):>9.2f}s")

    line("ours, spawn -> identical", "fromSpawn")
    line("ours, connected -> identical", "fromConnect")
    line("  worker [Integrity check] (scan+manifest)", "check")
    line("  worker [Integrity sync] (stream+apply)", "sync")
    line("  master [Integrity sync] (StartTransfer->ack)", "masterSync")
    line("rsync -a over loopback (rsync daemon)", "rsync")
    line("rsync -a local (reference)", "rsyncLocal")
    line("rsync -a --fsync over loopback (context)", "rsyncFsync")
    verdicts = []
    for key, label in (("fromSpawn", "spawn"), ("fromConnect", "connected")):
        ratios = [r[key] / r["rsync"] for r in results]
        best = min(r[key] for r in results) / min(r["rsync"] for r in results)
        median = statistics.median(ratios)
        verdicts.append(median)
        print(f"  ratio ours ({label}) / rsync over loopback, per round: "
              + ", ".join(f"{x:.2f}x" for x in ratios)
              + f"; median {median:.2f}x, best/best {best:.2f}x (target <= {TARGET_RATIO}x: "
              + ("met" if median <= TARGET_RATIO else "MISSED") + " on the median)")
    return 0 if verdicts[0] <= TARGET_RATIO else 1


def main(argv=None):
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    sys.exit(run(options))


if __name__ == "__main__":
    main()
