# -*- test-case-name: tests.test_endtoend_integrity -*-
"""
End-to-end integrity: real C{twistd} processes on loopback keep every
worker's synced files identical to the master's.
"""

import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.test_endtoend import FAST, ClusterProcesses

INTERVALS = {
    "worker": dict(FAST["worker"], sync_integrity=2),
    "master": dict(FAST["master"], recalculate_integrity=2),
    "communication": FAST["communication"],
}

SYNCED_ROOTS = ("etc/client.keys", "etc/shared", "etc/rules", "etc/decoders", "etc/lists",
                "var/multigroups")


def synced(home, fileset):
    """
    C{{relpath: (bytes, mode)}} of the synced, non-excluded files of C{home}.
    """
    found = {}
    for rootName in SYNCED_ROOTS:
        base = home.child(rootName)
        paths = [base] if base.isfile() else ([p for p in base.walk() if p.isfile()]
                                               if base.isdir() else [])
        for path in paths:
            relpath = "/".join(path.segmentsFrom(home.root))
            if not fileset.isExcluded(path.basename()):
                found[relpath] = (path.getContent(), os.stat(path.path).st_mode & 0o777)
    return found


def write(home, relpath, data):
    path = home.child(relpath)
    path.parent().makedirs(ignoreExistingDirectory=True)
    path.setContent(data)


class IntegrityEndToEndTests(TestCase):
    """
    A master and two workers as real processes.
    """

    timeout = 120

    def setUp(self):
        from wazuhcluster.clusteritems import loadClusterItems

        self.cluster = ClusterProcesses(self, intervals=INTERVALS)
        self.fileset = loadClusterItems().fileset
        self.master = self.cluster.homes["master"]
        self.workers = [self.cluster.homes["worker1"], self.cluster.homes["worker2"]]

    def identical(self):
        expected = {path: data for path, (data, mode) in synced(self.master, self.fileset).items()}
        for home in self.workers:
            mine = synced(home, self.fileset)
            if {path: data for path, (data, mode) in mine.items()} != expected:
                return False
            for relpath, (data, mode) in mine.items():
                if mode != (0o640 if relpath == "etc/client.keys" else 0o660):
                    return False
        return True

    @defer.inlineCallbacks
    def test_everyItemSyncedAndReverted(self):
        """
        Files added, changed and deleted in every synced item on the master
        appear identical (bytes and modes) on both workers; a file added or
        edited on a worker is reverted; excluded files are never touched; an
        emptied group directory disappears from the workers.
        """
        for relpath, data in {
            "etc/client.keys": b"001 web-01 any " + b"a" * 64 + b"\n",
            "etc/shared/web/agent.conf": b"<agent_config/>\n",
            "etc/shared/web/sca_web.yml": b"policy: web\n",
            "etc/rules/local_rules.xml": b"<group name='local'/>\n",
            "etc/decoders/local_decoder.xml": b"<decoder name='local'/>\n",
            "etc/lists/audit-keys": b"key:value\n",
            "var/multigroups/3b00ee98/merged.mg": b"#multi\n",
        }.items():
            write(self.master, relpath, data)
        self.cluster.start("master")
        self.cluster.start("worker1")
        self.cluster.start("worker2")
        yield self.cluster.waitFor(self.identical)
        self.assertTrue(self.workers[0].child("etc/shared/default/agent.conf").exists())

        # Changes in every item on the master.
        write(self.master, "etc/client.keys",
              b"001 web-01 any " + b"a" * 64 + b"\n002 db-01 any " + b"b" * 64 + b"\n")
        write(self.master, "etc/shared/web/agent.conf", b"<agent_config><x/></agent_config>\n")
        write(self.master, "etc/rules/more_rules.xml", b"<group name='more'/>\n")
        self.master.child("etc/decoders/local_decoder.xml").remove()
        write(self.master, "etc/lists/big", os.urandom(3 * 1024 * 1024))
        write(self.master, "var/multigroups/3b00ee98/merged.mg", b"#multi v2\n")
        yield self.cluster.waitFor(self.identical)

        # Worker-side edits are reverted; excluded files stay.
        worker = self.workers[0]
        write(worker, "etc/rules/rogue.xml", b"<rogue/>")
        write(worker, "etc/rules/local_rules.xml", b"<edited/>")
        write(worker, "etc/shared/ar.conf", b"restart-ossec0 - restart-ossec.sh - 0\n")
        write(worker, "etc/rules/local_rules.xml.swp", b"vim swap")
        yield self.cluster.waitFor(self.identical)
        self.assertEqual(worker.child("etc/shared/ar.conf").getContent(),
                         b"restart-ossec0 - restart-ossec.sh - 0\n")
        self.assertEqual(worker.child("etc/rules/local_rules.xml.swp").getContent(), b"vim swap")

        # A group emptied on the master disappears from the workers.
        self.master.child("etc/shared/web").remove()
        yield self.cluster.waitFor(lambda: self.identical() and not any(
            home.child("etc/shared/web").exists() for home in self.workers))
        log = self.cluster.log("master")
        self.assertIn("[Worker worker1] [Integrity sync] Files to create in worker:", log)
        self.assertIn("[Worker worker2] [Integrity check] Finished in", self.cluster.log("worker2"))
