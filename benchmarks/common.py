"""
Helpers shared by the cluster benchmarks: node homes made with
C{wazuh-cluster init}, real C{twistd -n wazuh-master/worker} processes on
loopback, log polling, tree comparison, percentiles, and cleanup that runs
even when a benchmark fails.

Not a benchmark itself; the scripts in this directory import it (run them
from the repository root, or with the directory on C{sys.path}: each script
adds its own directory).
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from wazuhcluster.cli import run as runCli
from wazuhcluster.demo import freePort  # re-exported for the benchmarks

TWISTD = "from twisted.scripts.twistd import run; run()"

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The synced items' directories, relative to a home, and the one synced
#: file outside them (the shipped cluster.json's C{files} section).
SYNCED_DIRS = ("etc/shared", "var/multigroups", "etc/rules", "etc/decoders", "etc/lists")
SYNCED_FILES = ("etc/client.keys",)




def environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPOSITORY + os.pathsep + env.get("PYTHONPATH", "")
    return env


def percentile(values, fraction):
    """
    The C{fraction} percentile of C{values} (nearest rank, as most latency
    reports use).
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, int(-(-fraction * len(ordered) // 1)))
    return ordered[min(rank, len(ordered)) - 1]


class Node:
    """
    One node home and, while it runs, its C{twistd -n} process.
    """

    def __init__(self, cluster, name, nodeType):
        self.cluster = cluster
        self.name = name
        self.type = nodeType
        self.home = os.path.join(cluster.base, name)
        self.process = None
        self.started = None
        self._output = None

    @property
    def log(self):
        return os.path.join(self.home, "logs", "cluster.log")

    def path(self, relpath):
        return os.path.join(self.home, relpath)

    def logText(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self, *extra):
        """
        Start C{twistd -n wazuh-<type> --home HOME} (and the plugin options
        C{extra}).

        @return: the monotonic time just before the process was spawned.
        """
        self._output = open(os.path.join(self.cluster.base, f"{self.name}.out"), "ab")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"wazuh-{self.type}",
             "--home", self.home, *extra],
            stdout=self._output, stderr=subprocess.STDOUT, env=environment(),
            cwd=self.cluster.base, start_new_session=True)
        return self.started

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, sig=signal.SIGKILL):
        """
        Kill this node's process (only that process, by its id) and reap it.
        """
        if self.process is not None and self.process.poll() is None:
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None

    def waitForLog(self, needle, timeout, step=0.01, count=1):
        """
        Poll this node's cluster.log until C{needle} appears C{count} times.

        @return: the monotonic time it was first seen.
        @raise RuntimeError: on timeout, or if the process died.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.logText().count(needle) >= count:
                return time.monotonic()
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}) "
                                   f"while waiting for {needle!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {needle!r} not logged within {timeout}s")
            time.sleep(step)

    def output(self):
        path = os.path.join(self.cluster.base, f"{self.name}.out")
        try:
            with open(path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class Cluster:
    """
    A master and workers under one short temporary directory in /tmp.

    Use as a context manager: leaving it kills every process it started and
    removes the directory, whatever happened.
    """

    def __init__(self, prefix="wzb-", overrides=None, keep=False, directory="/tmp"):
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = tempfile.mkdtemp(prefix=prefix, dir=directory)
        self.ca = os.path.join(self.base, "ca")
        self.port = freePort()
        self.overrides = overrides
        self.keep = keep
        self.nodes = {}
        self.cleanups = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for node in list(self.nodes.values()):
            try:
                node.stop()
            except Exception as error:  # keep cleaning
                print(f"warning: could not stop {node.name}: {error}", file=sys.stderr)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as error:
                print(f"warning: cleanup failed: {error}", file=sys.stderr)
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def init(self, name, nodeType):
        """
        C{wazuh-cluster init} a home; write C{etc/cluster.json} overrides if
        the cluster has any.
        """
        argv = ["init", "--home", os.path.join(self.base, name), "--type", nodeType,
                "--name", name, "--ca", self.ca, "--port", str(self.port)]
        if nodeType == "worker":
            argv += ["--master-host", "127.0.0.1"]
        out, err = io.StringIO(), io.StringIO()
        status = runCli(argv, out, err)
        if status != 0:
            raise RuntimeError(f"wazuh-cluster init {name} failed: {err.getvalue()}")
        node = self.nodes[name] = Node(self, name, nodeType)
        if self.overrides:
            with open(node.path("etc/cluster.json"), "w") as f:
                json.dump(self.overrides, f)
        return node

    def master(self):
        return self.nodes["master"]


def syncedFiles(home):
    """
    Every synced regular file under C{home}: C{{relpath: absolute path}}
    (a plain walk of the synced items; excluded names are skipped like the
    cluster skips them).
    """
    excludedNames = {"ar.conf", "ossec.conf"}
    excludedEnds = ("~", ".tmp", ".lock", ".swp")
    found = {}
    for relfile in SYNCED_FILES:
        path = os.path.join(home, relfile)
        if os.path.isfile(path):
            found[relfile] = path
    for reldir in SYNCED_DIRS:
        top = os.path.join(home, reldir)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in filenames:
                if name in excludedNames or name.endswith(excludedEnds) or name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    continue
                found[os.path.relpath(path, home)] = path
    return found


def md5File(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def compareTrees(sourceHome, destinationHome, relpaths=None):
    """
    Compare the synced files of two homes by walk, size and MD5.

    @return: a list of differences (empty when identical).
    """
    source = syncedFiles(sourceHome)
    destination = syncedFiles(destinationHome)
    problems = []
    for relpath in sorted(set(source) - set(destination)):
        problems.append(f"missing {relpath}")
    for relpath in sorted(set(destination) - set(source)):
        problems.append(f"extra {relpath}")
    for relpath in sorted(set(source) & set(destination)):
        a, b = source[relpath], destination[relpath]
        if os.path.getsize(a) != os.path.getsize(b):
            problems.append(f"size differs {relpath}")
        elif md5File(a) != md5File(b):
            problems.append(f"md5 differs {relpath}")
    return problems


def filesystemOf(path):
    """
    The type of the file system holding C{path} (from /proc/mounts).
    """
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                mount = fields[1]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and \
                        len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def dropCaches():
    """
    Try to drop the page cache (root, and a writable /proc/sys).

    @return: whether it worked.
    """
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def ensureCommand(command, package):
    """
    Make sure C{command} exists, installing Debian's C{package} if not (the
    benchmark's own setup; never CI).
    """
    if shutil.which(command):
        return
    print(f"{command} missing: apt-get install -y {package}", flush=True)
    result = subprocess.run(["apt-get", "install", "-y", package],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", package], check=True,
                       stdout=subprocess.DEVNULL)
    if not shutil.which(command):
        raise RuntimeError(f"could not install {package}")
