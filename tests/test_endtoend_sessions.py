# -*- test-case-name: tests.test_endtoend_sessions -*-
"""
End to end, with real C{twistd} processes on loopback: stops that wait
(SIGTERM in the middle of a sync), the staging race with a master killed in
the middle of a big sync, a directory replaced by a file and back, and a
steady writer on the master.
"""

import os
import re
import time

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.test_endtoend import FAST, ClusterProcesses
from tests.test_endtoend_integrity import synced, write

INTERVALS = {
    "worker": dict(FAST["worker"], sync_integrity=2),
    "master": dict(FAST["master"], recalculate_integrity=2),
    "communication": FAST["communication"],
}

#: Lines no clean run may log.
BAD = ("Unhandled", "Traceback", "CRITICAL", "Unknown Error")


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


class SessionsEndToEndTests(TestCase):
    """
    A master and two workers as real processes.
    """

    timeout = 180

    def setUp(self):
        from wazuhcluster.clusteritems import loadClusterItems

        self.cluster = ClusterProcesses(self, intervals=INTERVALS)
        self.fileset = loadClusterItems().fileset
        self.master = self.cluster.homes["master"]
        self.workers = [self.cluster.homes["worker1"], self.cluster.homes["worker2"]]

    def identical(self):
        expected = {p: data for p, (data, _) in synced(self.master, self.fileset).items()}
        return all({p: data for p, (data, _) in synced(home, self.fileset).items()} == expected
                   for home in self.workers)

    def assertClean(self, name):
        """
        Neither the cluster.log nor the output of node C{name} shows an
        unhandled error.
        """
        log = self.cluster.log(name)
        output = b"".join(self.cluster.nodes[name].output).decode("utf-8", "replace")
        for bad in BAD:
            self.assertNotIn(bad, log, name)
            self.assertNotIn(bad, output, name)

    def bigSet(self, count, size):
        for index in range(count):
            write(self.master, f"etc/shared/big{index % 20}/file{index:05d}.conf",
                  os.urandom(size))

    @defer.inlineCallbacks
    def test_sigtermMidSync(self):
        """
        SIGTERM to a master and two workers in the middle of a big sync: each
        stops within 5 s, with exit status 0, nothing logged as unhandled,
        and the workers hold no half-written file.
        """
        self.bigSet(6000, 16384)
        for name in ("master", "worker1", "worker2"):
            self.cluster.start(name)
        yield self.cluster.waitFor(
            lambda: "[Integrity sync] Files to create" in self.cluster.log("worker1"),
            timeout=120, step=0.05)
        started = time.monotonic()
        ends = []
        for name in ("master", "worker1", "worker2"):
            node = self.cluster.nodes[name]
            node.ended.addCallback(lambda code, name=name: ends.append(
                (name, code, time.monotonic() - started)) or code)
            node.transport.signalProcess("TERM")
        yield defer.gatherResults([self.cluster.nodes[n].ended
                                   for n in ("master", "worker1", "worker2")])
        for name, code, elapsed in ends:
            node = self.cluster.nodes[name]
            # twistd stops cleanly, then reports the signal it stopped for.
            self.assertIn(code if code is not None else node.reason.signal, (0, 15), name)
            self.assertIn(b"Server Shut Down.", b"".join(node.output), name)
            self.assertLess(elapsed, 5.0, name)
            self.assertClean(name)
        log = self.cluster.log("worker1")
        stop = log.index("SIGTERM")
        self.assertNotIn("[Integrity sync] Finished", log[log.index("Files to create"):stop],
                         "the signal came after the sync: the test proves nothing")
        for home in self.workers:
            for relpath, (data, _) in synced(home, self.fileset).items():
                if relpath.startswith("etc/shared/big"):
                    self.assertEqual(len(data), 16384, relpath)

    @defer.inlineCallbacks
    def test_masterKilledDuringBigSync(self):
        """
        The master SIGKILLed while a worker receives and applies a big sync:
        every file the worker holds is whole (old or new, never mixed), its
        staging directory is emptied, and once the master is back the worker
        converges.
        """
        self.bigSet(3000, 4096)
        self.cluster.start("master")
        self.cluster.start("worker1")
        yield self.cluster.waitFor(
            lambda: "[Integrity sync] Files to create" in self.cluster.log("worker1"),
            timeout=60, step=0.02)
        yield sleep(0.3)
        yield self.cluster.kill("master")
        worker = self.workers[0]
        master = synced(self.master, self.fileset)
        yield sleep(1.0)
        for relpath, (data, _) in synced(worker, self.fileset).items():
            if relpath in master:
                self.assertEqual(data, master[relpath][0], relpath)
        staging = worker.staging("master")
        yield self.cluster.waitFor(
            lambda: not staging.exists() or staging.children() == [], timeout=10)
        self.cluster.start("master")
        self.workers = self.workers[:1]
        yield self.cluster.waitFor(self.identical, timeout=60)
        self.assertClean("worker1")

    @defer.inlineCallbacks
    def test_directoryBecomesFileAndBack(self):
        """
        Under etc/lists, etc/rules and etc/decoders, a directory replaced by
        a file of the same name on the master (and back) reaches both
        workers, and other changes keep flowing meanwhile.
        """
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            write(self.master, f"{item}/audit-keys/one", b"one")
            write(self.master, f"{item}/audit-keys/sub/two", b"two")
        for name in ("master", "worker1", "worker2"):
            self.cluster.start(name)
        yield self.cluster.waitFor(self.identical, timeout=60)
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            self.master.child(f"{item}/audit-keys").remove()
            write(self.master, f"{item}/audit-keys", b"now a list")
        write(self.master, "etc/rules/other.xml", b"<other/>")
        yield self.cluster.waitFor(self.identical, timeout=30)
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            self.master.child(f"{item}/audit-keys").remove()
            write(self.master, f"{item}/audit-keys/again", b"a directory again")
        yield self.cluster.waitFor(self.identical, timeout=30)
        for name in ("master", "worker1", "worker2"):
            self.assertNotIn("Could not apply", self.cluster.log(name))
            self.assertClean(name)

    @defer.inlineCallbacks
    def test_steadyWriter(self):
        """
        A synced file appended to ten times a second for 30 s costs each
        worker at most two rounds a second, and both workers are identical
        to the master within 2 s after the writes stop.
        """
        write(self.master, "etc/lists/churn", b"")
        for name in ("master", "worker1", "worker2"):
            self.cluster.start(name)
        yield self.cluster.waitFor(self.identical, timeout=60)
        counts = {home: self.roundsOf(home) for home in self.workers}
        started = time.monotonic()
        path = self.master.child("etc/lists/churn").path
        while time.monotonic() - started < 30:
            with open(path, "ab") as f:
                f.write(b"line %f\n" % time.time())
            yield sleep(0.1)
        elapsed = time.monotonic() - started
        stopped = time.monotonic()
        yield self.cluster.waitFor(self.identical, timeout=10, step=0.05)
        self.assertLess(time.monotonic() - stopped, 2.0)
        for home in self.workers:
            rounds = self.roundsOf(home) - counts[home]
            self.assertLessEqual(rounds, 2 * (elapsed + 2) + 2, home.root.path)
            self.assertGreater(rounds, 10, home.root.path)

    def roundsOf(self, home):
        name = home.root.basename()
        return len(re.findall(rf"\[Worker {name}\] \[Integrity check\] Starting\.",
                              self.cluster.log(name)))
