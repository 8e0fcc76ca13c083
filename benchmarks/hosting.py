"""
Pieces the benchmarks with many workers share: C{--workers} worker nodes
hosted in ONE process (real C{WorkerService}s with real TLS connections over
loopback, each dialing from its own loopback source address as distinct
machines would), and what is measured from outside a process: CPU seconds
and memory from /proc, the kernel's TCP counters of the master's sockets
(C{ss}), C{control -i --json} on the master.
"""

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

from common import environment

from wazuhcluster.cli import run as runCli

CLI = "from wazuhcluster.cli import main; main()"


def workerName(index):
    return f"w{index:03d}"


def sourceAddress(index):
    """
    The loopback address worker C{index} (from 1) dials from.
    """
    index -= 1
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


def hostWorkers(base, port, count):
    """
    Run C{count} workers (homes C{base/w001}...) in this process until killed.
    """
    from twisted.application.service import MultiService
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from wazuhcluster.demo import nodeBranch
    from wazuhcluster.home import NodeHome
    from wazuhcluster.worker.client import WorkerService

    root = MultiService()
    for index in range(1, count + 1):
        home = NodeHome.fromPath(os.path.join(base, workerName(index)))

        def endpointFor(config, index=index):
            return TCP4ClientEndpoint(reactor, config.masterHost, port, timeout=30,
                                      bindAddress=(sourceAddress(index), 0))

        nodeBranch(home, WorkerService, reactor, endpointFor).setServiceParent(root)
    root.startService()
    reactor.addSystemEventTrigger("before", "shutdown", root.stopService)
    print(f"hosting {count} workers", flush=True)
    reactor.run()


def cpuSeconds(pid):
    """
    utime + stime of process C{pid} (all its threads), in seconds.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_COUNTER = re.compile(r"\b(bytes_sent|bytes_received|bytes_acked|segs_out|segs_in"
                      r"|data_segs_out|data_segs_in):(\d+)")


def socketCounters(port):
    """
    The kernel's TCP counters of every established socket whose local port
    is C{port} (the master's end of each worker connection).

    @return: C{{(local, peer): {counter: value}}}
    """
    output = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        check=True, capture_output=True, text=True).stdout
    sockets, current = {}, None
    for line in output.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            fields = line.split()
            current = (fields[-2], fields[-1])
            sockets[current] = {}
        elif current is not None:
            sockets[current].update(
                {name: int(value) for name, value in _COUNTER.findall(line)})
    return sockets


def controlHealth(masterHome):
    result = subprocess.run(
        [sys.executable, "-c", CLI, "control", "--home", masterHome, "-i", "--json"],
        capture_output=True, text=True, env=environment(), timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"control -i failed: {result.stdout}{result.stderr}")
    return json.loads(result.stdout)


def cli(argv):
    out, err = io.StringIO(), io.StringIO()
    status = runCli(argv, out, err)
    if status != 0:
        raise RuntimeError(f"wazuh-cluster {' '.join(argv)} failed: {err.getvalue()}")
    return out.getvalue()


def waitInSync(masterNode, count, timeout, hostProcess):
    """
    Poll C{control -i --json} until C{count} workers are connected and in
    integrity sync.

    @return: seconds waited.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = None
    while True:
        if hostProcess.poll() is not None:
            raise RuntimeError(f"the workers' process exited ({hostProcess.returncode})")
        if not masterNode.alive():
            raise RuntimeError(f"the master exited:\n{masterNode.output()}")
        try:
            health = controlHealth(masterNode.home)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
            health, last = None, str(error)
        if health is not None:
            nodes = {name: node for name, node in health.get("nodes", {}).items()
                     if node.get("info", {}).get("type") == "worker"}
            synced = sum(1 for node in nodes.values()
                         if node.get("status", {}).get("integrity_in_sync"))
            last = f"{len(nodes)} connected, {synced} in sync"
            if len(nodes) >= count and synced >= count:
                return time.monotonic() - started
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not in sync within {timeout}s ({last})")
        time.sleep(2.0)


def memoryKiB(pid):
    """
    C{VmRSS} and C{VmHWM} (peak RSS) of process C{pid}, in KiB.
    """
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def startWorkerHost(script, base, port, count, logPath):
    """
    Start C{script --worker-host BASE PORT COUNT} (a benchmark's hidden
    mode calling L{hostWorkers}) in its own session.

    @rtype: L{subprocess.Popen}
    """
    log = open(logPath, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, os.path.abspath(script), "--worker-host", base, str(port),
             str(count)],
            stdout=log, stderr=subprocess.STDOUT, env=environment(), cwd=base,
            start_new_session=True)
    finally:
        log.close()


def addWorkerHostOption(parser):
    """
    The hidden C{--worker-host BASE PORT N} option: the mode in which a
    benchmark's script is the process hosting the workers.
    """
    parser.add_argument("--worker-host", nargs=3, metavar=("BASE", "PORT", "N"),
                        help=argparse.SUPPRESS)


def benchmarkMain(options, run):
    """
    A hosted-workers benchmark's entry point: host the workers when
    C{--worker-host} says so, otherwise C{run(options)} and exit with its
    status (a SIGTERM exits through the cleanups: processes, directories).
    """
    if options.worker_host:
        base, port, count = options.worker_host
        hostWorkers(base, int(port), int(count))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(run(options))

