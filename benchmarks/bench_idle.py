"""
Idle cluster benchmark (DESIGN.md, "Targets": "Idle cluster: under 1 KiB on
the wire per worker per sync period; 100 idle workers cost the master under
5% of one core").

A master runs as a real C{twistd -n wazuh-master} process with the shipped
default intervals and a small realistic synced tree: a few rules, decoders
and lists, groups C{web} and C{db}, and a client.keys of C{--agents} agents
registered with C{wazuh-cluster agent add}. C{--workers} workers (100 by
default) run as ONE separate process that hosts every C{WorkerService} node
(as C{wazuh-cluster demo} does), each with its own home made by C{initNode}
from the same CA directory. Each worker dials the master from its own
loopback source address (127.0.1.1, 127.0.1.2, ...), as distinct worker
machines would: the master's shipped C{max_connections_per_address} (10)
would otherwise refuse all but ten of them. Nothing else is overridden.

Sequence: master up and its first local integrity done; a baseline window of
C{--window} seconds with no worker connected (master CPU only); the workers'
process starts; wait until C{wazuh-cluster control -i --json} on the master
shows every worker connected with C{integrity_in_sync} true; agents report to
workers (C{agent report}: agent i to worker i modulo N, so the first workers
each hold agents whose rows were synced once and then stay unchanged), and
wait until the master's agent list shows each on its worker; settle for
C{--settle} seconds (one sync period); then the measured window.

Measured over the window:
  - master CPU: utime+stime of the master process (all its threads) from
    /proc/PID/stat, delta / window, as % of one core;
  - bytes between the workers and the master: the kernel's per-socket TCP
    counters (C{ss -tinH state established '( sport = :PORT )'}: the
    master-side end of every worker connection; C{bytes_sent} +
    C{bytes_received} are TCP payload bytes, i.e. TLS records carrying AMP,
    both directions), read at the start and at the end of the window; only
    connections present at both reads are counted (reconnections are
    reported). On-the-wire bytes add the IP+TCP headers of every segment,
    including pure ACKs (C{segs_out} + C{segs_in}, 52 bytes each: 20 IP +
    32 TCP with timestamps). Figures are per worker per 9 s
    (C{worker.sync_integrity}) and per 10 s (C{sync_agent_info},
    C{master.sync_agent_groups}) period.
  - for information: the workers' process CPU.

Usage (from the repository root):
python benchmarks/bench_idle.py [--workers 100] [--window 60] [--agents 50]
[--settle 10] [--profile] [--keep]

(C{--worker-host BASE PORT N} is the internal mode of the workers' process.)
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Cluster, compareTrees, environment  # noqa: E402
from hosting import (  # noqa: E402
    addWorkerHostOption,
    benchmarkMain,
    cli,
    controlHealth,
    cpuSeconds,
    socketCounters,
    waitInSync,
    workerName,
)

from wazuhcluster.demo import SAMPLE_FILES  # noqa: E402

TARGET_BYTES = 1024
TARGET_CPU = 5.0
SYNC_INTEGRITY = 9.0
SYNC_PERIOD_10 = 10.0
HEADER_BYTES = 52  # IPv4 20 + TCP 20 + timestamps option 12

RULES = {
    "etc/rules/local_rules.xml": SAMPLE_FILES["etc/rules/local_rules.xml"],
    "etc/rules/web_rules.xml": "".join(
        f'<group name="web,accesslog,">\n  <rule id="{100100 + i}" level="{3 + i % 7}">\n'
        f"    <if_sid>31100</if_sid>\n    <url>/admin{i}</url>\n"
        f"    <description>Access to admin page {i}</description>\n  </rule>\n</group>\n"
        for i in range(20)),
    "etc/rules/firewall_rules.xml": "".join(
        f'<group name="firewall,">\n  <rule id="{100200 + i}" level="4">\n'
        f"    <if_sid>4100</if_sid>\n    <dstport>{1000 + i}</dstport>\n"
        f"    <description>Firewall drop to port {1000 + i}</description>\n  </rule>\n</group>\n"
        for i in range(10)),
    "etc/decoders/local_decoder.xml": (
        '<decoder name="local_decoder_example">\n'
        "  <program_name>local_decoder_example</program_name>\n"
        "</decoder>\n"),
    "etc/lists/audit-keys": "audit-wazuh-w:write\naudit-wazuh-r:read\naudit-wazuh-a:attribute\n",
    "etc/lists/blocked-ips": "".join(f"10.0.{i // 256}.{i % 256}:\n" for i in range(200)),
    "etc/shared/default/agent.conf": (
        "<agent_config>\n  <localfile>\n    <location>/var/log/syslog</location>\n"
        "    <log_format>syslog</log_format>\n  </localfile>\n</agent_config>\n"),
    "etc/shared/web/agent.conf": (
        "<agent_config>\n  <localfile>\n    <location>/var/log/nginx/access.log</location>\n"
        "    <log_format>syslog</log_format>\n  </localfile>\n</agent_config>\n"),
    "etc/shared/web/sca_web_servers.yml": (
        'policy:\n  id: "web_servers"\n  file: "sca_web_servers.yml"\n'
        '  name: "Web server hardening"\n'),
    "etc/shared/db/agent.conf": "<agent_config>\n</agent_config>\n",
}


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds measured (idle window, and the 0-worker baseline)")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait once everything is in sync")
    parser.add_argument("--startup-timeout", type=float, default=240.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="after the window, py-spy record the master for another window")
    parser.add_argument("--keep", action="store_true", help="keep the homes")
    addWorkerHostOption(parser)
    return parser.parse_args(argv)


# -- the workers' process ------------------------------------------------------


# -- measurements --------------------------------------------------------------


def buildMasterTree(master, agents):
    for relpath, text in RULES.items():
        path = master.path(relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o660)
    ids = []
    groups = ["web", "db", None, "default"]
    for index in range(agents):
        argv = ["agent", "add", "--home", master.home, "--name", f"agent-{index:03d}",
                "--ip", f"10.1.{index // 250}.{1 + index % 250}"]
        group = groups[index % len(groups)]
        if group:
            argv += ["--group", group]
        ids.append(cli(argv).strip().splitlines()[-1].strip())
    return ids


def reportAgents(cluster, ids, count):
    """
    Agent i reports to worker i modulo C{count}; the workers must hold
    client.keys already (they are in sync).

    @return: C{{agent id: worker name}}
    """
    where = {}
    for index, agentId in enumerate(ids):
        name = workerName(index % count + 1)
        cli(["agent", "report", "--home", os.path.join(cluster.base, name), "--id", agentId,
             "--status", "active", "--os-name", "Ubuntu", "--os-version", "22.04",
             "--version", "Wazuh v4.9.0", "--label", f"rack=r{index % 7}"])
        where[agentId] = name
    return where


def waitAgentsOnMaster(masterHome, where, timeout):
    started = time.monotonic()
    deadline = started + timeout
    while True:
        listing = json.loads(cli(["agent", "list", "--home", masterHome, "--json"]))
        nodes = {agent["id"]: agent.get("node_name") for agent in listing["agents"]}
        missing = [agentId for agentId, name in where.items() if nodes.get(agentId) != name]
        if not missing:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)


def measureWindow(pid, port, window, hostPid=None):
    """
    Master CPU (and optionally the workers' process CPU) and the TCP
    counters of the master's sockets over C{window} seconds.
    """
    startSockets = socketCounters(port)
    startCpu = cpuSeconds(pid)
    startHost = cpuSeconds(hostPid) if hostPid else None
    started = time.monotonic()
    time.sleep(window)
    endCpu = cpuSeconds(pid)
    endHost = cpuSeconds(hostPid) if hostPid else None
    elapsed = time.monotonic() - started
    endSockets = socketCounters(port)
    both = set(startSockets) & set(endSockets)
    deltas = {}
    for key in both:
        a, b = startSockets[key], endSockets[key]
        deltas[key] = {name: b.get(name, 0) - a.get(name, 0) for name in b}
    return {
        "elapsed": elapsed,
        "cpu": endCpu - startCpu,
        "hostCpu": (endHost - startHost) if hostPid else None,
        "sockets": deltas,
        "opened": len(set(endSockets) - set(startSockets)),
        "closed": len(set(startSockets) - set(endSockets)),
    }


_LOGLINE = re.compile(r"^\S+ \S+ (\w+): \[([^\]]+)\] \[([^\]]+)\] (.*)$")


def logActivity(text):
    """
    Master log lines by (node kind, "LEVEL [Tag] first words"), worker names
    folded together.
    """
    counts = {}
    for line in text.splitlines():
        match = _LOGLINE.match(line)
        if match is None:
            key = ("?", line[:60])
        else:
            level, who, tag, message = match.groups()
            words = re.sub(r"\d+(\.\d+)?", "N", " ".join(message.split()[:4]))
            key = (who.split()[0], f"{level} [{tag}] {words}")
        counts[key] = counts.get(key, 0) + 1
    return counts


def pct(seconds, elapsed):
    return 100.0 * seconds / elapsed


def profileMaster(pid, seconds, base):
    """
    py-spy record the master (idle, workers connected) for C{seconds}.
    """
    out = os.path.join(base, "master-idle.txt")
    result = subprocess.run(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--format", "raw", "--rate", "200", "--output", out, "--threads", "--idle"],
        capture_output=True, text=True)
    if result.returncode != 0:
        return f"py-spy failed: {result.stderr[-2000:]}"
    stacks = []
    with open(out) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            stacks.append((int(count), stack))
    total = sum(c for c, _ in stacks)
    # Leaf-function totals and busy (non-idle) stacks.
    leaves, busy = {}, []
    idleMarks = ("epoll", "select (", "poll (", "wait (threading", "_wait_for_tstate_lock",
                 "get (queue", "acquire")
    for count, stack in stacks:
        frames = stack.split(";")
        leaf = frames[-1]
        if any(mark in leaf for mark in idleMarks):
            continue
        busy.append((count, stack))
        leaves[leaf] = leaves.get(leaf, 0) + count
    lines = [f"py-spy: {total} samples at 200 Hz over {seconds:.0f}s (all threads, idle "
             f"included); busy samples {sum(c for c, _ in busy)}; raw stacks in {out}"]
    for leaf, count in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"  {count:6d}  {leaf}")
    # Inclusive counts of our own functions in busy stacks.
    inclusive = {}
    for count, stack in busy:
        seen = set()
        for frame in stack.split(";"):
            if "wazuhcluster" in frame and frame not in seen:
                seen.add(frame)
                inclusive[frame] = inclusive.get(frame, 0) + count
    lines.append("  inclusive, wazuhcluster frames in busy stacks:")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"  {count:6d}  {frame}")
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------


def run(options):
    started = time.monotonic()
    hostProcess = None
    with Cluster(prefix="wzi-", keep=options.keep) as cluster:
        def stopHost():
            if hostProcess is not None and hostProcess.poll() is None:
                os.kill(hostProcess.pid, signal.SIGKILL)
                hostProcess.wait(10)
        cluster.cleanups.append(stopHost)

        master = cluster.init("master", "master")
        ids = buildMasterTree(master, options.agents)
        t0 = time.monotonic()
        for index in range(1, options.workers + 1):
            cluster.init(workerName(index), "worker")
        initTime = time.monotonic() - t0
        master.start()
        master.waitForLog("[Local integrity] Finished", 60)
        print(f"master pid {master.pid} on port {cluster.port}; {len(ids)} agents; "
              f"{options.workers} worker homes made in {initTime:.1f}s; base {cluster.base}",
              flush=True)

        baseline = None
        if not options.no_baseline:
            time.sleep(2.0)
            baseline = measureWindow(master.pid, cluster.port, options.window)
            share = pct(baseline['cpu'], baseline['elapsed'])
            print(f"baseline (0 workers): master CPU {share:.2f}%"
                  f" of one core over {baseline['elapsed']:.1f}s", flush=True)

        hostLog = open(os.path.join(cluster.base, "workers.out"), "ab")
        cluster.cleanups.append(hostLog.close)
        t0 = time.monotonic()
        hostProcess = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker-host", cluster.base,
             str(cluster.port), str(options.workers)],
            stdout=hostLog, stderr=subprocess.STDOUT, env=environment(),
            cwd=cluster.base, start_new_session=True)
        syncWait = waitInSync(master, options.workers, options.startup_timeout, hostProcess)
        print(f"{options.workers} workers connected and in integrity sync "
              f"{syncWait:.1f}s after their process started (pid {hostProcess.pid})", flush=True)

        where = reportAgents(cluster, ids, options.workers)
        agentsWait = waitAgentsOnMaster(master.home, where, 60)
        if agentsWait is None:
            print("warning: the master does not show every reported agent on its worker "
                  "after 60s", flush=True)
        else:
            print(f"{len(where)} agents reported to workers, on the master after "
                  f"{agentsWait:.1f}s", flush=True)
        # The first full agent-groups send to each worker (after the master's
        # agent-groups start delay) is part of connecting, not of idling.
        master.waitForLog("[Agent-groups send full] Finished", options.startup_timeout,
                          step=1.0, count=options.workers)
        time.sleep(options.settle)
        setupTime = time.monotonic() - t0

        logStart = len(master.logText())
        idle = measureWindow(master.pid, cluster.port, options.window, hostProcess.pid)
        activity = logActivity(master.logText()[logStart:])

        profile = None
        if options.profile:
            profile = profileMaster(master.pid, options.window, cluster.base)

        if not master.alive() or hostProcess.poll() is not None:
            raise RuntimeError("a process died during the window")
        different = [name for name in (workerName(i) for i in range(1, options.workers + 1))
                     if compareTrees(master.home, os.path.join(cluster.base, name))]
        masterLog = master.logText()
        errors = masterLog.count("ERROR")
        warnings = masterLog.count("WARNING")
        finalHealth = controlHealth(master.home)
        connected = sum(1 for n in finalHealth["nodes"].values()
                        if n.get("info", {}).get("type") == "worker")
        inSync = sum(1 for n in finalHealth["nodes"].values()
                     if n.get("status", {}).get("integrity_in_sync"))
        stopHost()  # before the master, so that no worker logs a lost connection

    total = time.monotonic() - started
    elapsed = idle["elapsed"]
    sockets = idle["sockets"]
    n = len(sockets)
    payload = sum(s.get("bytes_sent", 0) + s.get("bytes_received", 0) for s in sockets.values())
    sent = sum(s.get("bytes_sent", 0) for s in sockets.values())
    received = sum(s.get("bytes_received", 0) for s in sockets.values())
    segments = sum(s.get("segs_out", 0) + s.get("segs_in", 0) for s in sockets.values())
    wire = payload + segments * HEADER_BYTES
    perWorkerSecond = payload / n / elapsed if n else float("nan")
    wirePerWorkerSecond = wire / n / elapsed if n else float("nan")
    perSocket = sorted((s.get("bytes_sent", 0) + s.get("bytes_received", 0))
                       for s in sockets.values()) or [0]
    cpu = pct(idle["cpu"], elapsed)

    print()
    print(f"Idle cluster: 1 master (twistd, shipped intervals) + {options.workers} workers "
          f"(one process), {options.agents} agents, window {elapsed:.1f}s")
    print(f"  setup: homes {initTime:.1f}s; workers' start to all in sync {syncWait:.1f}s; "
          f"start to window {setupTime:.1f}s; whole run {total:.0f}s")
    print(f"  connections counted: {n} (opened during window {idle['opened']}, "
          f"closed {idle['closed']}); at the end {connected} connected, {inSync} in sync; "
          f"master log ERROR {errors}, WARNING {warnings}")
    print(f"  TCP payload, both directions: {payload} B total (master sent {sent}, "
          f"received {received}); {segments} segments")
    dataSegments = sum(s.get("data_segs_out", 0) + s.get("data_segs_in", 0)
                       for s in sockets.values())
    checks = sum(count for (who, what), count in activity.items()
                 if who == "Worker" and "[Integrity check] Finished" in what)
    if checks:
        print(f"  per idle integrity check logged ({checks}, {checks / max(n, 1):.2f}/worker; "
              f"keep-alives and anything unlogged included): {payload / checks:.0f} B payload, "
              f"{wire / checks:.0f} B on the wire, {segments / checks:.1f} segments of which "
              f"{dataSegments / checks:.1f} carry data")
    print(f"  per worker: {perWorkerSecond:.1f} B/s payload, {wirePerWorkerSecond:.1f} B/s on "
          f"the wire (with IP+TCP headers); per-connection total min/median/max "
          f"{perSocket[0]}/{perSocket[len(perSocket) // 2]}/{perSocket[-1]} B")
    for period in (SYNC_INTEGRITY, SYNC_PERIOD_10):
        p, w = perWorkerSecond * period, wirePerWorkerSecond * period
        print(f"  per worker per {period:.0f} s period: {p:.0f} B payload, {w:.0f} B on the wire; "
              f"target < {TARGET_BYTES} B: {'met' if w < TARGET_BYTES else 'MISSED'}")
    print(f"  master CPU: {cpu:.2f}% of one core ({idle['cpu']:.2f}s CPU in {elapsed:.1f}s); "
          f"target < {TARGET_CPU:.0f}%: {'met' if cpu < TARGET_CPU else 'MISSED'}")
    if baseline is not None:
        b = pct(baseline["cpu"], baseline["elapsed"])
        print(f"  baseline, same master with 0 workers: {b:.2f}% of one core "
              f"({baseline['cpu']:.2f}s CPU in {baseline['elapsed']:.1f}s); "
              f"workers add {cpu - b:.2f} points ({(cpu - b) / max(n, 1) * 1000:.1f} "
              f"milli-% per worker)")
    print(f"  workers' process (for information): {pct(idle['hostCpu'], elapsed):.1f}% of one core "
          f"for {options.workers} workers")
    print(f"  synced trees identical to the master's (walk, size, MD5): "
          f"{options.workers - len(different)}/{options.workers}"
          + (f" (differ: {', '.join(different[:5])})" if different else ""))
    print("  master cluster.log lines during the window (per worker where tagged by worker):")
    for (who, what), count in sorted(activity.items(), key=lambda kv: -kv[1]):
        share = f"{count / options.workers:.2f}/worker" if who == "Worker" else ""
        print(f"    {count:6d} {share:>13}  [{who}] {what}")
    if profile:
        print(profile)
    ok = wirePerWorkerSecond * SYNC_INTEGRITY < TARGET_BYTES and cpu < TARGET_CPU
    return 0 if ok else 1


def main(argv=None):
    benchmarkMain(parseArguments(sys.argv[1:] if argv is None else argv), run)


if __name__ == "__main__":
    main()
