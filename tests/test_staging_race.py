# -*- test-case-name: tests.test_staging_race -*-
"""
The staging race (issue "Sessions that own their work", defect a), with the
apply in a real thread: a connection lost while the worker applies a big
sync must not clean the staging directory under the apply, nor reconnect
before the apply finished.
"""

import time

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.cluster import InMemoryCluster, pumpUntil
from tests.test_hello import LogCapture
from wazuhcluster import node, placing

INTERVALS = {
    "worker": {"sync_integrity": 3600, "keep_alive": 2, "connection_retry": 1},
    "master": {"recalculate_integrity": 3600},
}

FILES = 300


class StagingRaceTests(TestCase):
    """
    The node cleans a peer's staging directory only once every session of
    the connection stopped, and the apply thread is part of a session.
    """

    timeout = 120

    @inlineCallbacks
    def test_disconnectWhileApplyingInAThread(self):
        """
        The connection drops while the worker's apply runs in a real thread
        (slowed down: every file's flush waits): the apply still places all
        300 files (never a mixed set), the staging directory is cleaned only
        after it, and only then does the worker reconnect and start its
        keep-alives.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        cluster.addWorker("worker1", start=False)
        for index in range(FILES):
            path = cluster.masterHome.child(f"etc/shared/big/f{index:03d}.conf")
            path.parent().makedirs(ignoreExistingDirectory=True)
            path.setContent(b"new %d\n" % index)
        cluster.master.integrity.local.rescanNow()
        worker = cluster.workers["worker1"]
        worker.runInThread = deferToThread
        worker.integrity.queue._runInThread = deferToThread
        worker.integrity.durable = True
        events = []
        placed = []
        realRename = placing.Placer.rename

        def slowRename(self, source, target, staged, temporary):
            time.sleep(0.005)
            realRename(self, source, target, staged, temporary)
            placed.append(staged.relpath)

        realClean = node.cleanStaging

        def recordClean(stagingDir):
            if stagingDir == worker.home.staging("master"):
                events.append(("clean", len(placed)))
            return realClean(stagingDir)

        self.patch(placing.Placer, "rename", slowRename)
        self.patch(node, "cleanStaging", recordClean)
        worker.startService()
        started = yield pumpUntil(cluster, lambda: len(placed) > 10)
        self.assertTrue(started, logs.lines())
        # The apply is under way in its thread: drop the connection now.
        events.append(("drop", len(placed)))
        worker.connection.transport.abortConnection()
        back = yield pumpUntil(
            cluster, lambda: worker.connection is not None and len(placed) == FILES
            and worker.feature("keepalive").current is not None)
        self.assertTrue(back, logs.lines())
        drop = events.index(("drop", events[0][1]))
        cleans = [count for kind, count in events[drop + 1:] if kind == "clean"]
        self.assertTrue(cleans, events)
        self.assertEqual(cleans[0], FILES, "staging was cleaned before the apply ended")
        for index in range(FILES):
            self.assertEqual(
                worker.home.child(f"etc/shared/big/f{index:03d}.conf").getContent(),
                b"new %d\n" % index)
        staging = worker.home.staging("master")
        self.assertEqual(staging.children() if staging.exists() else [], [])
