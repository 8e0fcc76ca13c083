# -*- test-case-name: tests.test_integrity_sync -*-
"""
Integrity sync between a master and workers, in memory over real TLS: the
worker ends with exactly the master's synced files, never a half-written
one.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster.commands import MAX_CHUNK
from wazuhcluster.worker import integrity_round as worker_round

INTERVALS = {
    "worker": {"sync_integrity": 9, "keep_alive": 60},
    "master": {"recalculate_integrity": 8},
}

MASTER_FILES = {
    "etc/client.keys": b"001 agent1 any " + b"a" * 64 + b"\n",
    "etc/shared/default/agent.conf": b"<agent_config>\n</agent_config>\n",
    "etc/shared/default/merged.mg": b"#default\n",
    "etc/shared/web/agent.conf": b"<agent_config><localfile/></agent_config>\n",
    "etc/shared/web/sca_web.yml": b"policy: web\n",
    "etc/rules/local_rules.xml": b"<group name='local'/>\n",
    "etc/decoders/local_decoder.xml": b"<decoder name='local'/>\n",
    "etc/lists/audit-keys": b"key1:value\n",
    "var/multigroups/3b00ee98/merged.mg": b"#multi\n",
}


def write(home, relpath, data):
    path = home.child(relpath)
    path.parent().makedirs(ignoreExistingDirectory=True)
    path.setContent(data)


def syncedFiles(home):
    """
    The synced files of C{home}: C{{relpath: (bytes, mode)}}.
    """
    found = {}
    for item in ("etc/client.keys", "etc/shared", "etc/rules", "etc/decoders", "etc/lists",
                 "var/multigroups"):
        base = home.child(item)
        if base.isfile():
            paths = [base]
        elif base.isdir():
            paths = [p for p in base.walk() if p.isfile()]
        else:
            paths = []
        for path in paths:
            relpath = "/".join(path.segmentsFrom(home.root))
            found[relpath] = (path.getContent(), os.stat(path.path).st_mode & 0o777)
    return found


class IntegritySyncTests(SynchronousTestCase):
    """
    Workers converge to the master's files.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        for relpath, data in MASTER_FILES.items():
            write(self.cluster.masterHome, relpath, data)
        self.integrity = self.cluster.master.integrity
        self.integrity.local.rescanNow()
        self.cluster.network.flush()

    def startWorkers(self, *names):
        workers = [self.cluster.addWorker(name) for name in names]
        self.cluster.network.advance(1)
        return workers

    def assertIdentical(self, worker):
        """
        C{worker} holds exactly the master's synced files (excluded ones
        aside), with the items' modes.
        """
        fileset = worker.items.fileset

        def synced(home):
            return {path: found for path, found in syncedFiles(home).items()
                    if not fileset.isExcluded(path.rsplit("/", 1)[-1])}

        master = {path: data for path, (data, mode) in synced(self.cluster.masterHome).items()}
        mine = synced(worker.home)
        self.assertEqual({path: data for path, (data, mode) in mine.items()}, master)
        for relpath, (data, mode) in mine.items():
            expected = 0o640 if relpath == "etc/client.keys" else 0o660
            self.assertEqual(mode, expected, relpath)

    def masterChanged(self, seconds=1):
        self.integrity.local.trigger()
        self.cluster.network.advance(seconds)

    def test_freshWorkersGetEverything(self):
        """
        New workers receive every synced file with the item's mode
        (client.keys 0640, the others 0660), and both sides log the
        original's lines.
        """
        one, two = self.startWorkers("worker1", "worker2")
        self.assertIdentical(one)
        self.assertIdentical(two)
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Integrity sync] Files to create in worker: 9 | "
            "Files to update in worker: 0 | Files to delete in worker: 0"), self.logs.lines())
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker2] [Integrity sync] Files to create: 9 | Files to update: 0 | "
            "Files to delete: 0"))
        self.assertTrue(self.logs.contains("[Worker worker1] [Integrity sync] Finished in"))

    def test_inSyncIsOneRoundTrip(self):
        """
        A worker already in sync learns it from the digests alone: "Sync not
        required.", no manifest, no files.
        """
        worker, = self.startWorkers("worker1")
        before = len(self.logs.lines())
        self.cluster.network.advance(9)
        fresh = self.logs.lines()[before:]
        self.assertTrue(any("[Worker worker1] [Integrity check] Finished in" in line
                            and "Sync not required." in line for line in fresh), fresh)
        self.assertFalse(any("[Integrity sync]" in line for line in fresh))

    def test_changesReachWorkers(self):
        """
        Files added, changed and deleted on the master, in every item, reach
        every worker as soon as the master rescans (it announces its new
        digest; workers do not wait for their timer).
        """
        one, two = self.startWorkers("worker1", "worker2")
        home = self.cluster.masterHome
        write(home, "etc/rules/new_rules.xml", b"<group name='new'/>\n")
        write(home, "etc/client.keys", MASTER_FILES["etc/client.keys"] + b"002 b any " + b"b" * 64 + b"\n")
        write(home, "etc/shared/db/agent.conf", b"<agent_config/>\n")
        write(home, "etc/lists/big-list", os.urandom(5 * MAX_CHUNK))
        home.child("etc/decoders/local_decoder.xml").remove()
        home.child("var/multigroups/3b00ee98/merged.mg").setContent(b"#changed\n")
        self.masterChanged()
        self.assertIdentical(one)
        self.assertIdentical(two)

    def test_workerChangesReverted(self):
        """
        A file added or edited on a worker is reverted (master always wins),
        excluded files are never touched, and a group emptied on the master
        disappears from the worker.
        """
        worker, = self.startWorkers("worker1")
        write(worker.home, "etc/rules/rogue.xml", b"<rogue/>")
        write(worker.home, "etc/rules/local_rules.xml", b"<edited/>")
        write(worker.home, "etc/shared/ar.conf", b"restart-ossec0 - restart-ossec.sh - 0\n")
        write(worker.home, "etc/rules/notes.swp", b"swap")
        self.cluster.network.advance(9)
        self.assertIdentical(worker)
        self.assertEqual(worker.home.child("etc/shared/ar.conf").getContent(),
                         b"restart-ossec0 - restart-ossec.sh - 0\n")
        self.assertEqual(worker.home.child("etc/rules/notes.swp").getContent(), b"swap")

        home = self.cluster.masterHome
        home.child("etc/shared/web").remove()
        self.masterChanged()
        self.assertFalse(worker.home.child("etc/shared/web").exists())
        self.assertIdentical(worker)

    def test_healthFilled(self):
        """
        The master fills the integrity fields of the worker's health.
        """
        worker, = self.startWorkers("worker1")
        status = self.cluster.master.registry.health("worker1")
        self.assertTrue(status["integrity_in_sync"])
        self.assertTrue(status["sync_integrity_free"])
        self.assertNotEqual(status["last_check_integrity"]["date_end_master"], "n/a")
        self.assertNotEqual(status["last_sync_integrity"]["date_end_master"], "n/a")
        self.assertEqual(status["last_sync_integrity"]["total_files"],
                         {"missing": 9, "shared": 0, "extra": 0})
        write(self.cluster.masterHome, "etc/rules/more.xml", b"<more/>")
        self.integrity.local.rescanNow()
        self.assertFalse(self.cluster.master.registry.health("worker1")["integrity_in_sync"])

    def test_connectionDroppedMidTransfer(self):
        """
        A connection lost in the middle of a transfer leaves every worker file
        either old or new with matching MD5, nothing staged, and the next
        round completes the sync.
        """
        worker, = self.startWorkers("worker1")
        home = self.cluster.masterHome
        old = {path: data for path, (data, _) in syncedFiles(worker.home).items()}
        write(home, "etc/lists/huge", os.urandom(40 * MAX_CHUNK))
        write(home, "etc/rules/local_rules.xml", b"<group name='v2'/>\n")
        received = []
        realFeed = worker_round.feedAll

        def feedThenDrop(receiver, pieces):
            received.append(len(pieces))
            if len(received) == 3:
                worker.connection.transport.abortConnection()
            return realFeed(receiver, pieces)

        self.patch(worker_round, "feedAll", feedThenDrop)
        self.masterChanged(seconds=0.5)
        self.assertGreaterEqual(len(received), 3)
        new = {path: data for path, (data, _) in syncedFiles(self.cluster.masterHome).items()}
        for path, (data, _) in syncedFiles(worker.home).items():
            self.assertIn(data, (old.get(path), new.get(path)), path)
        self.assertFalse(worker.home.child("etc/lists/huge").exists())
        staging = worker.home.staging("master")
        self.assertEqual(staging.children() if staging.exists() else [], [])
        self.patch(worker_round, "feedAll", realFeed)
        self.cluster.network.advance(20)
        self.assertIdentical(worker)

    def test_fileChangedDuringSend(self):
        """
        A master file that changes between the scan and the send reaches the
        worker as it was read (its MD5 computed while sending, a consistent
        version), the round succeeds, and the next one (after the master's
        rescan) converges.
        """
        worker, = self.startWorkers("worker1")
        home = self.cluster.masterHome
        write(home, "etc/rules/local_rules.xml", b"<group name='v2'/>\n")
        self.integrity.local.rescanNow()
        # Same size, other bytes, and the master has not rescanned yet.
        write(home, "etc/rules/local_rules.xml", b"<group name='v3'/>\n")
        worker.integrity.check()
        self.cluster.network.flush()
        self.assertEqual(worker.home.child("etc/rules/local_rules.xml").getContent(),
                         b"<group name='v3'/>\n")
        self.assertFalse(self.logs.contains("Error synchronizing integrity"), self.logs.lines())
        self.masterChanged(seconds=10)
        self.assertIdentical(worker)

    def test_directoryBecomesFileAndBack(self):
        """
        A directory on the master replaced by a file of the same name (and
        back) under etc/lists, etc/rules and etc/decoders reaches every
        worker: nothing wedges, the other files keep flowing.
        """
        worker, = self.startWorkers("worker1")
        home = self.cluster.masterHome
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            write(home, f"{item}/thing/one", b"one")
            write(home, f"{item}/thing/two/three", b"three")
        self.masterChanged()
        self.assertIdentical(worker)
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            home.child(f"{item}/thing").remove()
            write(home, f"{item}/thing", b"now a file")
        write(home, "etc/rules/local_rules.xml", b"<group name='meanwhile'/>\n")
        self.masterChanged()
        self.assertIdentical(worker)
        for item in ("etc/lists", "etc/rules", "etc/decoders"):
            home.child(f"{item}/thing").remove()
            write(home, f"{item}/thing/again", b"a directory again")
        self.masterChanged()
        self.assertIdentical(worker)
        self.assertFalse(self.logs.contains("Could not apply"), self.logs.lines())

    def test_oneFileCannotBlockTheOthers(self):
        """
        A file the worker cannot place (here a symlinked directory on the
        worker) is reported and retried; every other change arrives.
        """
        worker, = self.startWorkers("worker1")
        outside = self.cluster.tmp.child("outside")
        outside.makedirs()
        os.symlink(outside.path, worker.home.child("etc/shared/web").path + "-link")
        worker.home.child("etc/shared/web").remove()
        os.rename(worker.home.child("etc/shared/web").path + "-link",
                  worker.home.child("etc/shared/web").path)
        write(self.cluster.masterHome, "etc/rules/new.xml", b"<new/>")
        # The worker's safety-net scan finds its group files gone (a link is
        # never followed) and asks for them again.
        self.masterChanged(seconds=10)
        self.assertEqual(worker.home.child("etc/rules/new.xml").getContent(), b"<new/>")
        self.assertEqual(outside.listdir(), [])
        self.assertTrue(self.logs.contains("Could not apply etc/shared/web/"), self.logs.lines())

    def test_deltaIsSmall(self):
        """
        A worker in sync that misses one change receives only that change:
        the delta holds one record, not the manifest.
        """
        worker, = self.startWorkers("worker1")
        for index in range(300):
            write(self.cluster.masterHome, f"etc/shared/many/f{index}.conf", b"%d" % index)
        self.masterChanged()
        self.assertIdentical(worker)
        answers = []
        session = self.cluster.master.registry.session("worker1", "integrity")
        real = session._open

        def recordOpen(snapshot, answer, started):
            answers.append(answer)
            return real(snapshot, answer, started)

        self.patch(session, "_open", recordOpen)
        write(self.cluster.masterHome, "etc/shared/many/f7.conf", b"changed")
        self.masterChanged()
        self.assertIdentical(worker)
        self.assertEqual([(a.full, a.entries) for a in answers], [(False, 1)])


class SlowDiskTests(SynchronousTestCase):
    """
    Big syncs to several workers at once, with slow disks: every worker
    progresses and keep-alives keep flowing.
    """

    def test_keepAlivesFlowDuringBigSyncs(self):
        """
        While two workers each receive 3 MB at one chunk per simulated 0.2 s
        (a slow disk: about 10 s per worker, side by side), their keep-alives every second are still answered
        within the request timeout, no connection is dropped, and both
        syncs complete.
        """
        from twisted.internet.task import deferLater

        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals={
            "worker": {"sync_integrity": 3600, "keep_alive": 1,
                       "max_failed_keepalive_attempts": 1},
            "master": {"recalculate_integrity": 3600, "check_worker_lastkeepalive": 1,
                       "max_allowed_time_without_keepalive": 3},
            "communication": {"timeout_cluster_request": 1},
        })
        write(cluster.masterHome, "etc/lists/big-a", os.urandom(25 * MAX_CHUNK))
        write(cluster.masterHome, "etc/lists/big-b", os.urandom(25 * MAX_CHUNK))
        cluster.master.integrity.local.rescanNow()
        workers = [cluster.addWorker(name, start=False) for name in ("worker1", "worker2")]
        disks = {}
        realFeed = worker_round.feedAll

        def slowFeed(receiver, pieces):
            # One chunk at a time, 0.2 s per 60 kB, like a slow disk.
            realFeed(receiver, pieces)
            disk = disks.setdefault(id(receiver.staged.root), {"free": 0.0})
            now = cluster.clock.seconds()
            disk["free"] = max(now, disk["free"]) + 0.2 * len(pieces)
            return deferLater(cluster.clock, disk["free"] - now, lambda: None)

        self.patch(worker_round, "feedAll", slowFeed)
        for worker in workers:
            worker.startService()
        cluster.network.advance(4, step=0.1)
        # Mid-transfer: nothing arrived yet, everybody still connected.
        self.assertFalse(workers[0].home.child("etc/lists/big-a").exists())
        self.assertEqual(sorted(cluster.master.workers), ["worker1", "worker2"])
        cluster.network.advance(20, step=0.1)
        for worker in workers:
            self.assertEqual(worker.home.child("etc/lists/big-a").getContent(),
                             cluster.masterHome.child("etc/lists/big-a").getContent())
            self.assertEqual(worker.feature("keepalive").current.failures, 0)
        lines = logs.lines()
        self.assertFalse(any("Error sending keep alive" in line for line in lines), lines)
        self.assertFalse(any("No keep alives have been received" in line for line in lines))
        self.assertEqual(sum("Successfully connected to master." in line for line in lines), 2)
