# -*- test-case-name: tests.test_localserver_relay -*-
"""
Tests for L{wazuhcluster.localserver.relay}: a worker's daemon request
(C{sendsync}) handed to the master's authd (the authd stand-in, in
memory), its checks and bounds, and L{SendSync} over the cluster
connection.
"""

import json

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from tests.standins.harness import MemoryStandIns
from tests.test_hello import LogCapture
from wazuhcluster.commands import RelayFailed, SendSync
from wazuhcluster.home import NodeHome
from wazuhcluster.localserver.relay import MAX_MESSAGE, DaemonRelay, relayToMaster
from wazuhcluster.logs import ClusterLogger

ADD = b'{"function":"add","arguments":{"name":"agent3","ip":"any"}}'


class DaemonRelayTests(SynchronousTestCase):
    """
    The master's side.
    """

    def setUp(self):
        self.clock = Clock()
        self.home = NodeHome(FilePath(self.mktemp()))
        self.home.createLayout()
        self.standins = MemoryStandIns(self.clock, self.home.root.path)
        self.capture = LogCapture(self)
        self.relay = DaemonRelay(self.home, self.clock, ClusterLogger("Master", "SendSync"),
                                 authd=self.standins.authdClient(), maxPerWorker=2,
                                 maxInProgress=3)

    def result(self, d):
        self.standins.network.flush()
        return d

    def test_relaysRawAnswer(self):
        """
        authd's answer comes back unchanged, and authd wrote the agent.
        """
        answer = self.successResultOf(self.result(self.relay.relay("worker1", "authd", ADD)))
        data = json.loads(answer)["data"]
        self.assertEqual((data["id"], data["name"]), ("001", "agent3"))
        self.assertIn(b"001 agent3 any ", self.home.clientKeys.getContent())
        again = self.successResultOf(self.result(self.relay.relay("worker1", "authd", ADD)))
        self.assertEqual(again, b'{"error":9008,"message":"Duplicate name"}')
        self.assertEqual(self.relay.inProgress, {})

    def test_refusedRequests(self):
        """
        An unknown daemon, a request over the bound and one that is not a
        JSON object are refused with Wazuh's codes, logged, and never reach
        authd.
        """
        cases = [("wazuh-db", ADD, "Error 3000 - sendsync to daemon 'wazuh-db' is not "
                                   "supported: only authd"),
                 ("authd", b"[" * (MAX_MESSAGE + 1), "Error 3050 - a sendsync request of "
                                                     f"{MAX_MESSAGE + 1} bytes"),
                 ("authd", b'"add"', "Error 3036 - JSON couldn't be loaded")]
        for daemon, message, text in cases:
            failure = self.failureResultOf(self.relay.relay("worker1", daemon, message),
                                           RelayFailed)
            self.assertTrue(str(failure.value).startswith(text), str(failure.value))
        self.assertEqual(self.standins.authd.requests, [])
        self.assertEqual(sum("[Master] [SendSync] Could not relay a request of worker1" in line
                             for line in self.capture.lines()), 3)

    def test_bounds(self):
        """
        At most C{maxPerWorker} requests of one worker and C{maxInProgress}
        in all are in progress; the next ones fail at once with 3051.
        """
        self.standins.authd.knobs.slow("{", 10, times=10)
        pending = [self.relay.relay("worker1", "authd", ADD),
                   self.relay.relay("worker1", "authd", ADD.replace(b"agent3", b"agent4"))]
        refused = self.failureResultOf(self.relay.relay("worker1", "authd", ADD), RelayFailed)
        self.assertIn("Error 3051 - too many sendsync requests in progress from worker1",
                      str(refused.value))
        pending.append(self.relay.relay("worker2", "authd", ADD.replace(b"agent3", b"agent5")))
        refused = self.failureResultOf(self.relay.relay("worker3", "authd", ADD), RelayFailed)
        self.assertIn("(at most 3)", str(refused.value))
        self.standins.network.advance(10)
        for d in pending:
            self.assertEqual(json.loads(self.successResultOf(d))["error"], 0)
        self.assertEqual(self.relay.inProgress, {})

    def test_authdDown(self):
        """
        An authd that does not run is Wazuh's 1726.
        """
        self.standins.network.refusing.add(self.standins.authdFactory)
        failure = self.failureResultOf(self.result(self.relay.relay("worker1", "authd", ADD)),
                                       RelayFailed)
        self.assertTrue(str(failure.value).startswith("Error 1726 - Wazuh authd is not running"))


class ClusterRelayTests(SynchronousTestCase):
    """
    L{SendSync} from a worker to its master.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        self.worker = self.cluster.addWorker("worker1")
        self.standins = MemoryStandIns(self.cluster.clock, self.cluster.masterHome.root.path)
        self.cluster.master.relay.authd = self.standins.authdClient()

    def settle(self):
        for _ in range(10):
            self.cluster.network.flush()
            self.standins.network.flush()

    def test_relayed(self):
        """
        The worker's request is answered with authd's raw answer.
        """
        d = relayToMaster(self.worker.connection, "authd", ADD, self.cluster.clock)
        self.settle()
        self.assertEqual(json.loads(self.successResultOf(d))["data"]["name"], "agent3")

    def test_declaredError(self):
        """
        The master's refusal arrives as the declared L{RelayFailed} and the
        connection stays.
        """
        failures = []
        self.worker.connection.callRemote(SendSync, daemon_name="nosuch",
                                          message=b"{}").addErrback(failures.append)
        self.settle()
        self.assertTrue(failures[0].check(RelayFailed))
        self.assertIsNotNone(self.worker.connection)
        self.assertIn("worker1", self.cluster.master.workers)

    def test_timeoutAndLoss(self):
        """
        No answer within the timeout is 3020; a connection lost before the
        answer, 3023.
        """
        self.standins.authd.knobs.slow("{", 100, times=2)
        d = relayToMaster(self.worker.connection, "authd", ADD, self.cluster.clock, timeout=5)
        self.settle()
        self.cluster.clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, RelayFailed).value),
                         "Error 3020 - Timeout sending request: sendsync")
        d = relayToMaster(self.worker.connection, "authd", ADD, self.cluster.clock)
        self.settle()
        self.cluster.master.workers["worker1"].transport.loseConnection()
        self.settle()
        self.assertEqual(str(self.failureResultOf(d, RelayFailed).value),
                         "Error 3023 - Worker node is not connected to master")
        self.standins.network.advance(100)
