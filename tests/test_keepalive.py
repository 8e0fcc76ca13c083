# -*- test-case-name: tests.test_keepalive -*-
"""
Tests for keep-alive on both sides, reconnection after the master comes
back, and a half-open connection being replaced.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture

INTERVALS = {
    "worker": {"keep_alive": 5, "connection_retry": 2, "max_failed_keepalive_attempts": 2},
    "master": {"check_worker_lastkeepalive": 5, "max_allowed_time_without_keepalive": 12},
    "communication": {"timeout_cluster_request": 3},
}


class KeepAliveTests(SynchronousTestCase):
    """
    Keep-alives keep a healthy connection up and bring a dead one down.
    """

    def setUp(self):
        self.logs = LogCapture(self)

    def startCluster(self, worker=None, master=None):
        """
        A cluster of one worker with L{INTERVALS} changed by C{worker} and
        C{master}.
        """
        intervals = {section: dict(values) for section, values in INTERVALS.items()}
        intervals["worker"].update(worker or {})
        intervals["master"].update(master or {})
        self.cluster = InMemoryCluster(self, intervals=intervals)
        self.worker = self.cluster.addWorker("worker1")
        self.connection = self.cluster.master.workers["worker1"]

    def lastKeepAlive(self):
        """
        When the master last heard worker1's keep-alive.
        """
        return self.cluster.master.registry.session("worker1", "keepalive").last

    def failures(self):
        """
        The worker's consecutive failed keep-alives on its current connection.
        """
        return self.worker.feature("keepalive").current.failures

    def test_healthyConnectionStays(self):
        """
        Keep-alives every C{worker.keep_alive} seconds are answered, logged
        by the worker, and recorded by the master; nobody is dropped.
        """
        self.startCluster()
        self.cluster.network.advance(60)
        self.assertIs(self.cluster.master.workers["worker1"], self.connection)
        self.assertEqual(self.lastKeepAlive(), 60)
        self.assertEqual(self.cluster.master.registry.health("worker1")["last_keep_alive"],
                         "1970-01-01T00:01:00.000000Z")
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Keep Alive] Successful response from master: keepalive"))
        self.assertEqual(self.failures(), 0)

    def test_masterDropsSilentWorker(self):
        """
        A worker that stops talking (its link carries nothing) is dropped by
        the master once its last keep-alive is older than
        C{max_allowed_time_without_keepalive}, at the next check.
        """
        self.startCluster(worker={"max_failed_keepalive_attempts": 100})
        self.cluster.network.advance(5)
        self.assertEqual(self.lastKeepAlive(), 5)
        self.cluster.network.links[0].partitioned = True
        self.cluster.network.advance(14)
        self.assertIn("worker1", self.cluster.master.workers)
        self.cluster.network.advance(1)
        self.assertNotIn("worker1", self.cluster.master.workers)
        self.assertTrue(self.logs.contains(
            "ERROR: [Master] [Keep alive] No keep alives have been received from worker1 in "
            "the last minute. Disconnecting"), self.logs.lines())

    def test_workerDropsAfterFailedKeepAlives(self):
        """
        When keep-alives go unanswered, the worker logs each timeout and
        drops the connection after C{max_failed_keepalive_attempts}, then
        reconnects; its new hello replaces the half-open old connection the
        master still holds.
        """
        self.startCluster(master={"max_allowed_time_without_keepalive": 100})
        self.cluster.network.links[0].partitioned = True
        self.cluster.network.advance(8)
        self.assertEqual(self.failures(), 1)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Keep Alive] Error sending keep alive: Error 3020 - "
            "Timeout sending request: keepalive"))
        self.assertIsNot(self.worker.connection, None)
        self.cluster.network.advance(5)
        self.assertTrue(self.logs.contains(
            "Maximum number of failed keep alives reached. Disconnecting."))
        # The old link is half-open: the master still has the old connection;
        # the worker's new hello makes it ping the old one, which does not
        # answer within the duplicate check's timeout: it is replaced.
        self.cluster.network.advance(1)
        self.assertIs(self.cluster.master.workers["worker1"], self.connection)
        self.cluster.network.advance(3)
        self.assertIsNot(self.worker.connection, None)
        self.assertIsNot(self.cluster.master.workers["worker1"], self.connection)
        self.assertEqual(len(self.cluster.network.links), 2)
        self.assertTrue(self.logs.contains("Replacing the previous connection of worker1"),
                        self.logs.lines())


class ReconnectTests(SynchronousTestCase):
    """
    A worker survives the master going away.
    """

    def test_reconnectAfterMasterRestart(self):
        """
        When the master closes every connection and refuses new ones for a
        while, the worker logs the loss, retries with back-off, and is
        connected again once the master is back.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker("worker1")
        cluster.network.masterUp = False
        cluster.master.workers["worker1"].transport.loseConnection()
        cluster.network.flush()
        self.assertIs(worker.connection, None)
        self.assertTrue(logs.contains("INFO: [Worker worker1] [Main] The master closed the connection"))
        cluster.network.advance(10)
        self.assertTrue(logs.contains(
            "ERROR: [Worker worker1] [Main] Could not connect to master. Trying again in"))
        self.assertIs(worker.connection, None)
        cluster.network.masterUp = True
        cluster.network.advance(20)
        self.assertIsNot(worker.connection, None)
        self.assertIn("worker1", cluster.master.workers)

    def test_backoffGrows(self):
        """
        The retry delay starts at about a second (a restarted master is
        usually back in seconds), grows with each failed attempt (Twisted's
        C{backoffPolicy}) and never exceeds C{worker.connection_retry}, jitter
        included.
        """
        intervals = {section: dict(values) for section, values in INTERVALS.items()}
        intervals["worker"]["connection_retry"] = 10
        cluster = InMemoryCluster(self, intervals=intervals)
        worker = cluster.addWorker("worker1", start=False)
        delays = [worker.retryDelay(attempt) for attempt in range(0, 12)]
        self.assertEqual(delays[0], 1)
        self.assertEqual(delays[1], 1.5)
        self.assertEqual(delays, sorted(delays))
        self.assertEqual(delays[-1], 10)
        worker.jitter = lambda: 0.999
        jittered = [worker.retryDelay(attempt) for attempt in range(0, 12)]
        self.assertGreater(jittered[0], delays[0])
        self.assertLessEqual(max(jittered), 10)

    def test_backAfterRestartWithinSeconds(self):
        """
        A master that is back two seconds after it went away has its worker
        back within a few seconds, not after C{connection_retry}.
        """
        intervals = {section: dict(values) for section, values in INTERVALS.items()}
        intervals["worker"]["connection_retry"] = 10
        cluster = InMemoryCluster(self, intervals=intervals)
        worker = cluster.addWorker("worker1")
        cluster.network.masterUp = False
        cluster.master.workers["worker1"].transport.loseConnection()
        cluster.network.advance(2, step=0.1)
        cluster.network.masterUp = True
        cluster.network.advance(3, step=0.1)
        self.assertIsNot(worker.connection, None)
