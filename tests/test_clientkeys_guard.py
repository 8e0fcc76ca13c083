# -*- test-case-name: tests.test_clientkeys_guard -*-
"""
The client.keys guard in memory (Wazuh #3389: an empty master client.keys
wiped every worker's): the master does not announce a client.keys that
lost too many agents until the operator accepts it.  The real-process test
is L{tests.test_faults_clientkeys}.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster.clientkeys import ClientKey, formatAgentId, formatClientKeys

INTERVALS = {
    "worker": {"sync_integrity": 9, "keep_alive": 60},
    "master": {"recalculate_integrity": 8},
}


def writeOssecConf(home):
    """
    Give an in-memory cluster's master home its ossec.conf (the commands
    read the node type from it).
    """
    from tests.cluster import makeConfig
    from wazuhcluster.ossecwrite import renderOssecConf

    home.ossecConf.setContent(renderOssecConf(makeConfig("master", "master")))


def keysOf(*numbers):
    return formatClientKeys([ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
                             for n in numbers])


class GuardTests(SynchronousTestCase):
    """
    A master whose client.keys shrinks, and workers that hold agents.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        self.master = self.cluster.masterHome
        writeOssecConf(self.master)
        self.master.clientKeys.setContent(keysOf(1, 2, 3, 4))
        self.cluster.master.integrity.local.rescanNow()
        self.worker = self.cluster.addWorker("worker1")
        self.cluster.network.advance(2)
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))

    def change(self, content):
        """
        Write (or delete, for L{None}) the master's client.keys and let two
        integrity periods pass.
        """
        if content is None:
            self.master.clientKeys.remove()
        else:
            self.master.clientKeys.setContent(content)
        self.cluster.network.advance(20)

    def held(self):
        return sum("etc/client.keys lost" in line for line in self.logs.lines())

    def accept(self):
        from io import StringIO

        from wazuhcluster import cli

        out, err = StringIO(), StringIO()
        status = cli.run(["agent", "accept-keys", "--home", self.master.root.path], out, err)
        self.assertEqual(status, 0, err.getvalue())
        return out.getvalue()

    def test_emptiedNotAnnounced(self):
        """
        The attack: the master's client.keys is emptied.  The workers keep
        theirs (and their agents), other files still sync, and the master
        logs an ERROR every round it holds the file.
        """
        self.change(b"")
        self.master.child("etc/rules/local_rules.xml").setContent(b"<group/>\n")
        self.cluster.network.advance(20)
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))
        self.assertEqual(self.worker.home.child("etc/rules/local_rules.xml").getContent(),
                         b"<group/>\n")
        agents = self.successResultOf(self.worker.agentStore.store.listAgents())
        self.assertEqual(len(agents), 4)
        self.assertTrue(self.logs.contains(
            "ERROR: [Master] [Integrity sync] etc/client.keys lost 4 of the 4 agents of the "
            "last one announced (0 left): not announcing it, the workers keep theirs. If the "
            "change is wanted, run 'wazuh-cluster agent accept-keys --home "
            f"{self.master.root.path}'."), self.logs.lines())
        self.assertGreaterEqual(self.held(), 4)

    def test_deletedNotAnnounced(self):
        """
        A deleted client.keys is held back too: workers do not delete
        theirs.
        """
        self.change(None)
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))
        self.assertGreaterEqual(self.held(), 1)

    def test_acceptPropagates(self):
        """
        After C{wazuh-cluster agent accept-keys}, the held file reaches
        the workers at the next round, with a WARNING saying it was
        accepted; the ERRORs stop.
        """
        self.change(keysOf(4))
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))
        text = self.accept()
        self.assertIn("Accepted etc/client.keys (1 agents; the last one announced had 4)",
                      text)
        self.cluster.network.advance(20)
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(4))
        self.assertTrue(self.logs.contains(
            "WARNING: [Master] [Integrity sync] Announcing etc/client.keys with 1 agents (the "
            "last one announced had 4): accepted by the operator."), self.logs.lines())
        count = self.held()
        self.cluster.network.advance(30)
        self.assertEqual(self.held(), count)
        # The accepted file is the new reference: a later small change syncs.
        self.change(keysOf(4, 5))
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(4, 5))

    def test_acceptanceIsForThatFile(self):
        """
        An acceptance covers the file it was given for: a different one
        written after it is judged again.
        """
        self.change(keysOf(4))
        self.accept()
        self.master.clientKeys.setContent(b"")
        self.cluster.network.advance(20)
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))

    def test_smallLossAnnounced(self):
        """
        Losing no more than half of the agents (the default
        C{max_client_keys_loss}) is announced at once; so is a growth.
        """
        self.change(keysOf(1, 2))
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2))
        self.change(keysOf(1, 2, 7, 8, 9))
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 7, 8, 9))
        self.assertEqual(self.held(), 0)

    def test_restoredFileReleases(self):
        """
        Restoring the file ends the hold without any acceptance.
        """
        self.change(b"")
        self.change(keysOf(1, 2, 3, 4, 5))
        self.assertEqual(self.worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4, 5))

    def test_newWorkerGetsLastAnnounced(self):
        """
        While the file is held, a worker without client.keys receives the
        last announced one.
        """
        self.change(b"")
        worker = self.cluster.addWorker("worker2")
        self.cluster.network.advance(20)
        self.assertEqual(worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))

    def test_copySurvivesRestart(self):
        """
        The copy of the last announced file lives in queue/cluster: a
        master started on a home whose client.keys was emptied meanwhile
        holds it.
        """
        from tests.cluster import makeConfig, runInline
        from wazuhcluster.clusteritems import loadClusterItems
        from wazuhcluster.master.server import MasterService

        self.cluster.master.stopService()
        self.master.clientKeys.setContent(b"")
        restarted = MasterService(
            self.master, makeConfig("master", "master"), loadClusterItems(self.master),
            self.cluster.master.identity, reactor=self.cluster.clock,
            clock=self.cluster.clock, runInThread=runInline, watchFiles=False,
            store=self.cluster.masterStore)
        restarted.startService()
        self.addCleanup(restarted.stopService)
        self.cluster.network.flush()
        self.assertTrue(restarted.integrity.published.held)
        self.assertEqual(restarted.integrity.published.snapshot.files["etc/client.keys"].md5,
                         self.cluster.master.integrity.published.snapshot
                         .files["etc/client.keys"].md5)

    def test_threshold(self):
        """
        C{intervals.master.max_client_keys_loss} sets how much may be lost:
        with 0.2, losing one agent of four is held.
        """
        intervals = {"worker": INTERVALS["worker"],
                     "master": dict(INTERVALS["master"], max_client_keys_loss=0.2)}
        cluster = InMemoryCluster(self, intervals=intervals)
        cluster.masterHome.clientKeys.setContent(keysOf(1, 2, 3, 4))
        cluster.master.integrity.local.rescanNow()
        worker = cluster.addWorker("worker9")
        cluster.network.advance(2)
        cluster.masterHome.clientKeys.setContent(keysOf(1, 2, 3))
        cluster.network.advance(20)
        self.assertEqual(worker.home.clientKeys.getContent(), keysOf(1, 2, 3, 4))
        self.assertTrue(self.logs.contains("etc/client.keys lost 1 of the 4 agents"))


class AcceptCommandTests(SynchronousTestCase):
    """
    C{wazuh-cluster agent accept-keys}.
    """

    def run_(self, home):
        from io import StringIO

        from wazuhcluster import cli

        out, err = StringIO(), StringIO()
        status = cli.run(["agent", "accept-keys", "--home", home.root.path], out, err)
        return status, out.getvalue(), err.getvalue()

    def test_nothingToAccept(self):
        """
        A client.keys that is the one announced needs no acceptance.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        writeOssecConf(cluster.masterHome)
        cluster.masterHome.clientKeys.setContent(keysOf(1))
        cluster.master.integrity.local.rescanNow()
        status, out, err = self.run_(cluster.masterHome)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("nothing to accept", out)
        self.assertFalse(cluster.masterHome.root.preauthChild(
            "queue/cluster/client.keys.accept").exists())

    def test_workerRefused(self):
        """
        accept-keys is for the master's home: a worker's is refused with one
        line.
        """
        from wazuhcluster.nodeinit import initNode

        import shutil
        import tempfile

        from twisted.python.filepath import FilePath

        base = FilePath(tempfile.mkdtemp(prefix="wzg-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, base.path, True)
        worker = initNode(base.child("w"), "worker", "worker1", base.child("ca"),
                          masterHost="127.0.0.1")
        status, out, err = self.run_(worker)
        self.assertEqual(status, 1)
        self.assertIn("master", err)
        self.assertEqual(len(err.splitlines()), 1)
