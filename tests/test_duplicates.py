# -*- test-case-name: tests.test_duplicates -*-
"""
Two workers with one name (a copied home): the newcomer is refused while the
first one answers, and replaces it when it does not (a half-open
connection is never a lock-out).
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture

INTERVALS = {
    "worker": {"keep_alive": 5, "connection_retry": 2, "max_failed_keepalive_attempts": 2},
    "master": {"check_worker_lastkeepalive": 5, "max_allowed_time_without_keepalive": 60},
    "communication": {"timeout_cluster_request": 3},
}


class DuplicateNameTests(SynchronousTestCase):
    """
    L{wazuhcluster.master.registry.WorkerRegistry} and a name claimed twice.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        self.first = self.cluster.addWorker("worker1")
        self.connection = self.cluster.master.workers["worker1"]

    def copy(self):
        """
        A second worker process with worker1's name and certificate (a copied
        home), started.
        """
        return self.cluster.addWorker("worker1-copy", certName="worker1", node_name="worker1")

    def test_aliveFirstKeepsTheName(self):
        """
        While the first worker answers, the copy is refused, with an ERROR
        on both sides, again at every retry; the first one keeps working.
        """
        copy = self.copy()
        self.cluster.network.advance(1)
        self.assertIs(self.cluster.master.workers["worker1"], self.connection)
        self.assertIsNone(copy.connection)
        self.assertIsNotNone(self.first.connection)
        lines = self.logs.lines()
        self.assertTrue(any("ERROR: [Worker worker1] [Main] Refused a second connection of "
                            "worker1" in line for line in lines), lines)
        self.assertTrue(any("ERROR: [Worker worker1] [Main] Could not connect to master: "
                            "Error 3028 - Worker node ID already exists" in line
                            for line in lines), lines)
        self.cluster.network.advance(20)
        self.assertIs(self.cluster.master.workers["worker1"], self.connection)
        self.assertIsNone(copy.connection)
        self.assertFalse(any("Replacing the previous connection" in line
                             for line in self.logs.lines()))

    def test_deadFirstIsReplaced(self):
        """
        A first connection that no longer answers (half-open) is replaced by
        the newcomer after the duplicate check's timeout.
        """
        self.cluster.network.links[0].partitioned = True
        copy = self.copy()
        self.cluster.network.advance(1)
        self.assertIs(self.cluster.master.workers["worker1"], self.connection)
        self.cluster.network.advance(6)
        self.assertIsNot(self.cluster.master.workers["worker1"], self.connection)
        self.assertIsNotNone(copy.connection)
        self.assertTrue(any("Replacing the previous connection of worker1" in line
                            for line in self.logs.lines()))
