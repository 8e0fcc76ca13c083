# -*- test-case-name: tests.test_faults -*-
"""
Faults a cluster meets in production, injected into real C{twistd}
processes on loopback with short intervals: a master or a worker killed in
the middle of a large sync, a worker frozen past the keep-alive limit, a
master unreachable for many retry periods, a worker whose disk refuses the
files of a sync.  Each case checks what an operator cares about: files
whole, staging clean, one clear line per failure, no traceback, and the
cluster converging once the fault is gone.

Each test's docstring carries an C{Injected:} and a C{Checked:} line, from
which C{docs/reliability.py} builds C{docs/reliability.md}.
"""

import json
import os
import re
import resource
import signal
import sys
import time

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.test_endtoend import FAST, TWISTD, ClusterProcesses, _Node, environment
from tests.test_endtoend_integrity import synced, write

INTERVALS = {
    "worker": dict(FAST["worker"], sync_integrity=2),
    "master": dict(FAST["master"], recalculate_integrity=2),
    "communication": FAST["communication"],
}

#: What no log or output of a node may show, whatever was injected.
BAD = ("Unhandled", "Traceback", "CRITICAL", "Unknown Error")

#: The files of a large sync, and the size of each (a 25 MB sync).
FILES = 400
FILE_SIZE = 64 * 1024

#: The file-size limit of a worker whose "disk" is full (RLIMIT_FSIZE).
FILE_SIZE_LIMIT = 1024 * 1024


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


class FaultCluster(ClusterProcesses):
    """
    L{ClusterProcesses} whose nodes may start under a file-size limit.
    """

    def start(self, name, fileSizeLimit=None):
        """
        Start node C{name}; with C{fileSizeLimit}, its process may not
        grow any file beyond that many bytes (writes past it fail with
        C{EFBIG}, as on a file system that has no room left for them).
        """
        if fileSizeLimit is None:
            return super().start(name)
        nodeType = "master" if name == "master" else "worker"
        prelude = ("import resource; resource.setrlimit(resource.RLIMIT_FSIZE, "
                   f"({fileSizeLimit}, resource.RLIM_INFINITY)); ")
        node = _Node()
        node.transport = reactor.spawnProcess(
            node, sys.executable,
            [sys.executable, "-c", prelude + TWISTD, "-n", "--pidfile=", f"wazuh-{nodeType}",
             "--home", self.homes[name].root.path],
            env=environment(), path=self.base.path)
        self.nodes[name] = node
        self.testCase.addCleanup(self.kill, name)
        return node


class FaultTests(TestCase):
    """
    A master and up to two workers as real processes, one fault each.
    """

    timeout = 120

    def setUp(self):
        from wazuhcluster.clusteritems import loadClusterItems

        self.cluster = FaultCluster(self, intervals=INTERVALS)
        self.fileset = loadClusterItems().fileset
        self.master = self.cluster.homes["master"]
        self.workers = {name: self.cluster.homes[name] for name in ("worker1", "worker2")}

    # -- helpers ---------------------------------------------------------------------

    def files(self, home):
        return {path: data for path, (data, _) in synced(home, self.fileset).items()}

    def identical(self, *names):
        expected = self.files(self.master)
        return all(self.files(self.workers[name]) == expected for name in names)

    def writeVersion(self, version, count, size):
        """
        Write C{count} files of C{size} bytes under etc/shared/ on the
        master, each starting with its version; return their contents by
        path.
        """
        contents = {}
        for index in range(count):
            relpath = f"etc/shared/big{index % 10}/file{index:05d}.conf"
            data = (b"v%d %05d " % (version, index)) + os.urandom(max(size - 9, 0))
            write(self.master, relpath, data)
            contents[relpath] = data
        return contents

    def assertWhole(self, name, *versions):
        """
        Every synced file of worker C{name} that one of C{versions} names
        holds exactly one version's bytes: never a mix, never partial.
        """
        for relpath, data in self.files(self.workers[name]).items():
            known = [version[relpath] for version in versions if relpath in version]
            if known:
                self.assertIn(data, known, f"{name}: {relpath} is not whole")

    def stagingClean(self, name):
        """
        Whether worker C{name}'s staging directory is empty (or absent).
        """
        try:
            return self.workers[name].staging("master").children() == []
        except OSError:
            return True

    def log(self, name):
        return self.cluster.log(name)

    def setIntervals(self, intervals):
        """
        Give every node C{intervals} (before they start).
        """
        for home in self.cluster.homes.values():
            home.clusterJsonOverrides.setContent(json.dumps({"intervals": intervals}).encode())

    def assertClean(self, name):
        """
        Neither the cluster.log nor the output of node C{name} shows an
        unhandled error.
        """
        log = self.log(name)
        output = b"".join(self.cluster.nodes[name].output).decode("utf-8", "replace")
        for bad in BAD:
            self.assertNotIn(bad, log, name)
            self.assertNotIn(bad, output, name)

    def levelLines(self, name, since=0, levels=("ERROR", "WARNING", "CRITICAL")):
        pattern = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (%s): " % "|".join(levels))
        return [line for line in self.log(name)[since:].splitlines() if pattern.match(line)]

    def startAll(self, *names):
        for name in ("master",) + names:
            self.cluster.start(name)

    def partsStaged(self, name):
        """
        Whether worker C{name} is receiving files (parts in its staging).
        """
        try:
            return any(child.isdir() and child.children()
                       for child in self.workers[name].staging("master").children())
        except OSError:  # a directory went away as we looked
            return False

    def syncInProgress(self, name):
        """
        Whether worker C{name}'s last integrity sync started and did not
        finish.
        """
        log = self.log(name)
        return log.rfind("[Integrity sync] Starting.") > log.rfind("[Integrity sync] Finished")

    # -- cases -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_masterKilledMidSync(self):
        """
        The master SIGKILLed while two workers receive a large sync that
        replaces every file: each worker keeps whole files, its staging
        directory is emptied, and both converge once the master is back.

        Injected: SIGKILL to the master while both workers stage a 25 MB sync
        replacing 400 files.
        Checked: every worker file is wholly the old or the new version,
        staging emptied, both workers identical to the master after its
        restart, no traceback in any log.
        """
        old = self.writeVersion(1, FILES, 64)
        self.startAll("worker1", "worker2")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=60)
        new = self.writeVersion(2, FILES, FILE_SIZE)
        yield self.cluster.waitFor(lambda: self.partsStaged("worker1"), timeout=30, step=0.02)
        yield self.cluster.kill("master")
        self.assertTrue(self.syncInProgress("worker1"),
                        "the kill came after the sync: the test proves nothing")
        yield self.cluster.waitFor(
            lambda: self.stagingClean("worker1") and self.stagingClean("worker2"), timeout=15)
        for name in ("worker1", "worker2"):
            self.assertWhole(name, old, new)
        self.cluster.start("master")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=60)
        for name in ("master", "worker1", "worker2"):
            self.assertClean(name)

    @defer.inlineCallbacks
    def test_workerKilledMidSync(self):
        """
        A worker SIGKILLed while it receives a large sync: the master goes
        on serving the other worker, the killed worker's synced files are
        whole, and once restarted it empties its staging and converges.

        Injected: SIGKILL to worker1 while it stages a 25 MB sync replacing
        400 files; worker2 syncs at the same time.
        Checked: worker1's files wholly old or new and no stray file; the
        master logs the disconnection, worker2 converges and keeps its
        keep-alives; the restarted worker1 leaves no staged part behind and
        converges; no traceback in any log.
        """
        old = self.writeVersion(1, FILES, 64)
        self.startAll("worker1", "worker2")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=60)
        new = self.writeVersion(2, FILES, FILE_SIZE)
        yield self.cluster.waitFor(lambda: self.partsStaged("worker1"), timeout=30, step=0.02)
        yield self.cluster.kill("worker1")
        self.assertTrue(self.syncInProgress("worker1"),
                        "the kill came after the sync: the test proves nothing")
        self.assertWhole("worker1", old, new)
        allowed = set(old) | set(self.files(self.master))
        self.assertEqual(set(self.files(self.workers["worker1"])) - allowed, set())
        yield self.cluster.waitFor(
            lambda: "Worker worker1 disconnected." in self.log("master"), timeout=10)
        keepAlives = self.log("worker2").count("Successful response from master")
        yield self.cluster.waitFor(lambda: self.identical("worker2"), timeout=60)
        yield self.cluster.waitFor(
            lambda: self.log("worker2").count("Successful response from master")
            > keepAlives + 1, timeout=10)
        self.assertEqual(self.log("worker2").count("Successfully connected to master."), 1)

        self.cluster.start("worker1")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=60)
        yield self.cluster.waitFor(lambda: self.stagingClean("worker1"), timeout=10)
        for name in ("master", "worker1", "worker2"):
            self.assertClean(name)

    @defer.inlineCallbacks
    def test_workerFrozenPastKeepAlive(self):
        """
        A worker frozen longer than the master tolerates silence is dropped
        by the master with its keep-alive line; thawed, it reconnects and
        catches up with what changed meanwhile, without a traceback.

        Injected: SIGSTOP to worker1 for twice
        master.max_allowed_time_without_keepalive, a file changed on the
        master meanwhile, then SIGCONT.
        Checked: the master's "No keep alives have been received" ERROR,
        once; worker1 reconnects and is identical to the master; no
        traceback in either log.
        """
        write(self.master, "etc/rules/local_rules.xml", b"<group name='before'/>\n")
        self.startAll("worker1")
        yield self.cluster.waitFor(lambda: self.identical("worker1"), timeout=30)
        node = self.cluster.nodes["worker1"]
        node.transport.signalProcess(signal.SIGSTOP)
        frozen = time.monotonic()
        write(self.master, "etc/rules/local_rules.xml", b"<group name='while frozen'/>\n")
        line = ("ERROR: [Master] [Keep alive] No keep alives have been received from "
                "worker1 in the last minute. Disconnecting")
        yield self.cluster.waitFor(lambda: line in self.log("master"), timeout=15)
        limit = INTERVALS["master"]["max_allowed_time_without_keepalive"]
        self.assertGreaterEqual(time.monotonic() - frozen, limit - 1.5)
        yield sleep(max(0.0, 2 * limit - (time.monotonic() - frozen)))
        self.assertFalse(self.identical("worker1"))
        node.transport.signalProcess(signal.SIGCONT)
        yield self.cluster.waitFor(
            lambda: self.log("worker1").count("Successfully connected to master.") == 2,
            timeout=30)
        yield self.cluster.waitFor(lambda: self.identical("worker1"), timeout=30)
        self.assertEqual(self.log("master").count(line), 1)
        for name in ("master", "worker1"):
            self.assertClean(name)

    @defer.inlineCallbacks
    def test_masterUnreachable(self):
        """
        While the master is down for many retry periods the workers keep
        their files and retry at their pace, one line per attempt; once it
        is back they reconnect and converge.

        Injected: the master killed and kept down for at least 24 connection
        attempts of each worker (worker.connection_retry 0.5 s), its files
        changed meanwhile.
        Checked: the workers' files untouched during the outage; attempts no
        faster than the retry interval; one ERROR line per attempt, and
        hardly any other line (the loss); both workers reconnect and
        converge; no traceback.
        """
        retry = 0.5
        attempts = 24
        intervals = dict(INTERVALS, worker=dict(INTERVALS["worker"], connection_retry=retry))
        self.setIntervals(intervals)
        write(self.master, "etc/lists/audit-keys", b"before:1\n")
        self.startAll("worker1", "worker2")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=30)
        held = {name: self.files(self.workers[name]) for name in ("worker1", "worker2")}
        offsets = {name: len(self.log(name)) for name in ("worker1", "worker2")}
        yield self.cluster.kill("master")
        down = time.monotonic()
        write(self.master, "etc/lists/audit-keys", b"after:2\n")

        def tries(name):
            return self.log(name)[offsets[name]:].count("Could not connect to master")

        yield self.cluster.waitFor(
            lambda: min(tries("worker1"), tries("worker2")) >= attempts, timeout=60)
        elapsed = time.monotonic() - down
        for name in ("worker1", "worker2"):
            self.assertEqual(self.files(self.workers[name]), held[name], name)
            count = tries(name)
            # Back-off from about a second at most, then every retry period:
            # never faster than the period (the jitter only adds to it).
            self.assertLessEqual(count, elapsed / retry + 2, name)
            problems = self.levelLines(name, offsets[name])
            self.assertLessEqual(len(problems), count + 1, (name, problems[:5]))
            lines = self.log(name)[offsets[name]:].splitlines()
            self.assertLessEqual(len(lines), count + 4, (name, lines[:8]))
        self.cluster.start("master")
        yield self.cluster.waitFor(lambda: self.identical("worker1", "worker2"), timeout=30)
        for name in ("worker1", "worker2"):
            self.assertEqual(self.log(name).count("Successfully connected to master."), 2)
            self.assertClean(name)
        self.assertClean("master")

    @defer.inlineCallbacks
    def test_workerDiskFull(self):
        """
        A worker whose file system refuses the bytes of a sync applies
        nothing, says so in one ERROR line per round, retries at its
        period, and converges once there is room again.

        Injected: worker1 runs with a 1 MiB file-size limit (RLIMIT_FSIZE:
        writes past it fail with EFBIG, as a full disk fails them with
        ENOSPC); the master adds five small files and a 3 MiB one; later
        the limit is lifted (prlimit).
        Checked: none of the new files applied while the limit holds, and
        no staged part left; exactly one ERROR line on the worker per failed
        round, naming the cause; rounds retried; identical to the master
        once the limit is lifted, with no ERROR after; no traceback.
        """
        write(self.master, "etc/rules/local_rules.xml", b"<group name='before'/>\n")
        self.cluster.start("master")
        node = self.cluster.start("worker1", fileSizeLimit=FILE_SIZE_LIMIT)
        yield self.cluster.waitFor(lambda: self.identical("worker1"), timeout=30)
        offset = len(self.log("worker1"))
        added = {f"etc/shared/default/small{n}.conf": b"small %d\n" % n for n in range(5)}
        added["etc/lists/big-list"] = os.urandom(3 * FILE_SIZE_LIMIT)
        for relpath, data in added.items():
            write(self.master, relpath, data)

        def failures():
            return self.levelLines("worker1", offset)

        yield self.cluster.waitFor(lambda: len(failures()) >= 3, timeout=30)
        worker = self.workers["worker1"]
        for relpath in added:
            self.assertFalse(worker.child(relpath).exists(), relpath)
        yield self.cluster.waitFor(lambda: self.stagingClean("worker1"), timeout=10)
        log = self.log("worker1")[offset:]
        rounds = log.count("[Integrity sync] Starting.")
        lines = failures()
        self.assertIn(len(lines), (rounds - 1, rounds), lines)
        for line in lines:
            self.assertIn("ERROR: [Worker worker1] [Integrity sync] Error synchronizing "
                          "integrity: ", line)
            self.assertIn("File too large", line)
        resource.prlimit(node.transport.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        yield self.cluster.waitFor(lambda: self.identical("worker1"), timeout=30)
        after = len(self.log("worker1"))
        yield sleep(2 * INTERVALS["worker"]["sync_integrity"])
        self.assertEqual(self.levelLines("worker1", after), [])
        for name in ("master", "worker1"):
            self.assertClean(name)
