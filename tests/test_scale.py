# -*- test-case-name: tests.test_scale -*-
"""
Integrity sync at scale, in memory and deterministic: 200 workers on one
L{Clock} over real TLS handshakes, and the bytes one change costs on the
wire, which must not grow with the number of synced files.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.test_integrity_sync import INTERVALS, MASTER_FILES, write

#: What one one-file change may cost a worker on the wire, both ways, TLS
#: included (DESIGN.md "Targets": under 8 KiB).
CHANGE_BUDGET = 8 * 1024


class ManyWorkersTests(SynchronousTestCase):
    """
    One change on the master reaches every one of 200 workers.
    """

    WORKERS = 200

    def test_oneChangeReachesEveryWorker(self):
        """
        With 200 workers in sync, one rule edited on the master is on every
        worker after one announcement, each worker's connection carries
        about the same few KiB for it, and no worker was disconnected.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        for relpath, data in MASTER_FILES.items():
            write(cluster.masterHome, relpath, data)
        cluster.master.integrity.local.rescanNow()
        workers = [cluster.addWorker(f"worker{index:03d}") for index in range(self.WORKERS)]
        cluster.network.advance(2)
        self.assertEqual(len(cluster.master.workers), self.WORKERS)
        rule = "etc/rules/local_rules.xml"
        for worker in workers:
            self.assertEqual(worker.home.child(rule).getContent(), MASTER_FILES[rule])

        before = [link.total for link in cluster.network.links]
        write(cluster.masterHome, rule, b"<group name='changed'/>\n")
        cluster.master.integrity.local.trigger()
        cluster.network.advance(2)

        stale = [w.config.node_name for w in workers
                 if w.home.child(rule).getContent() != b"<group name='changed'/>\n"]
        self.assertEqual(stale, [])
        self.assertEqual(len(cluster.master.workers), self.WORKERS)
        costs = [link.total - b for link, b in zip(cluster.network.links, before)]
        self.assertEqual(len(costs), self.WORKERS)
        self.assertTrue(all(0 < cost < CHANGE_BUDGET for cost in costs),
                        (min(costs), max(costs)))


class WireBytesTests(SynchronousTestCase):
    """
    What a one-file change costs on the wire does not depend on how many
    files are synced.
    """

    def changeCost(self, fileCount):
        """
        The bytes one worker's connection carries, both ways, for one file
        changed on a master holding C{fileCount} synced files.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        for index in range(fileCount):
            write(cluster.masterHome, f"etc/shared/many/f{index:05d}.conf", b"%d\n" % index)
        cluster.master.integrity.local.rescanNow()
        worker = cluster.addWorker("worker1")
        cluster.network.advance(2)
        changed = worker.home.child("etc/shared/many/f00007.conf")
        self.assertEqual(changed.getContent(), b"7\n")
        link, = cluster.network.links
        before = link.total
        write(cluster.masterHome, "etc/shared/many/f00007.conf", b"changed\n")
        cluster.master.integrity.local.trigger()
        cluster.network.advance(2)
        self.assertEqual(changed.getContent(), b"changed\n")
        return link.total - before

    def test_oneChangeIsO1(self):
        """
        One file changed among 5 000 costs the same bytes (within 1 KiB of
        TLS record and digest noise) as one changed among 100, and less than
        the 8 KiB budget: only the delta travels, never the manifest (a
        5 000-entry manifest is several hundred KiB).
        """
        small = self.changeCost(100)
        large = self.changeCost(5000)
        self.assertLess(small, CHANGE_BUDGET)
        self.assertLess(large, CHANGE_BUDGET)
        self.assertLess(abs(large - small), 1024, (small, large))
