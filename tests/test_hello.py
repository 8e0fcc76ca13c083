# -*- test-case-name: tests.test_hello -*-
"""
Tests for the connection and hello between workers and the master: real TLS
handshakes in memory, every rejection with the original's text, pre-auth
rules and the replacement of a half-open connection.
"""

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import makeAuthority
from tests.cluster import KEY, InMemoryCluster
from wazuhcluster import PROTOCOL_VERSION
from wazuhcluster.commands import Hello, HelloRejected, KeepAlive
from wazuhcluster.tls import channelBinding, helloProof


class LogCapture:
    """
    Collects the text of cluster log events for the duration of a test.
    """

    def __init__(self, testCase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self):
        from wazuhcluster.logs import formatClusterEvent

        return [line for line in map(formatClusterEvent, self.events) if line]

    def contains(self, text):
        return any(text in line for line in self.lines())


class HelloTests(SynchronousTestCase):
    """
    A worker's hello and the master's answer.
    """

    def setUp(self):
        self.logs = LogCapture(self)
        self.cluster = InMemoryCluster(self)

    def test_workerConnects(self):
        """
        A worker with a certificate from the cluster CA, the right key and
        cluster name is registered on the master and logs the original's
        success line.
        """
        worker = self.cluster.addWorker("worker1")
        self.assertIsNot(worker.connection, None)
        self.assertEqual(worker.connection.name, "master")
        self.assertEqual(list(self.cluster.master.workers), ["worker1"])
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Main] Successfully connected to master."))
        self.assertTrue(self.logs.contains("INFO: [Worker] [Main] Connection from ('10.0.0.2',"))

    def assertRejected(self, worker, text):
        """
        The master refused C{worker} with C{text}, logged on both sides, and
        did not register it.
        """
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})
        self.assertTrue(
            self.logs.contains(f"ERROR: [Worker {worker.config.node_name}] [Main] "
                               f"Could not connect to master: {text}."),
            self.logs.lines(),
        )
        self.assertTrue(self.logs.contains("ERROR: [Worker] [Main] Rejected connection from "),
                        self.logs.lines())
        self.assertTrue(any(text in line and "[Worker] [Main]" in line
                            for line in self.logs.lines()))

    def test_wrongKey(self):
        """
        A worker with another cluster key is refused: the proof does not
        verify (the key itself never travels).
        """
        worker = self.cluster.addWorker("worker1", key="f" * 32)
        self.assertRejected(worker, "Error 3025 - Could not decrypt message")

    def test_wrongCluster(self):
        """
        A worker of another cluster is refused with 3030.
        """
        worker = self.cluster.addWorker("worker1", name="other")  # cluster name
        self.assertRejected(worker, "Error 3030 - Worker does not belong to the same cluster")

    def test_nameOfMaster(self):
        """
        A worker calling itself like the master is refused with 3029.
        """
        worker = self.cluster.addWorker("master", certName="master")
        self.assertRejected(worker, "Error 3029 - Connected worker with same name as the master")

    def test_certificateNameMismatch(self):
        """
        A worker whose certificate names another node is refused: it cannot
        impersonate that node.
        """
        worker = self.cluster.addWorker("worker2", certName="worker9")
        self.assertRejected(
            worker, "Error 3061 - Worker certificate does not match the node name it claims")

    def test_wrongAuthority(self):
        """
        A worker whose certificate comes from another CA never completes the
        TLS handshake, is never registered, and retries later.
        """
        otherCa = makeAuthority(self.cluster.tmp.child("other"))
        worker = self.cluster.addWorker("worker1", caDir=otherCa)
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})
        self.assertTrue(self.logs.contains("Could not connect to master:"), self.logs.lines())
        # It retries (after about a second, then less and less often).
        self.cluster.network.advance(15)
        self.assertGreater(len(self.cluster.network.links), 2)
        self.assertEqual(self.cluster.master.workers, {})

    def test_wrongMasterHost(self):
        """
        A worker dialing a host the master's certificate does not name
        refuses the master (service_identity).
        """
        worker = self.cluster.addWorker("worker1", masterHost="elsewhere.example")
        self.assertIs(worker.connection, None)
        self.assertEqual(self.cluster.master.workers, {})

    def helloOn(self, **overrides):
        """
        Connect a bare AMP client (with worker1's certificate) and send a
        hello built from C{overrides}; return the client and the answer (a result or a Failure).
        """
        self.cluster.addWorker("worker1", start=False)
        client = amp.AMP()
        self.cluster.connectBare(client, "worker1")
        values = dict(cluster_name="wazuh", node_name="worker1", node_type="worker",
                      version="0.1.0", protocol=PROTOCOL_VERSION)
        values.update(overrides)
        proof = helloProof(KEY, channelBinding(client.transport),
                           values["cluster_name"], values["node_name"])
        results = []
        client.callRemote(Hello, proof=values.pop("proof", proof), **values).addBoth(
            results.append)
        self.cluster.network.flush()
        self.assertEqual(len(results), 1)
        return client, results[0]

    def test_badNodeName(self):
        """
        A node name outside C{[A-Za-z0-9_-]+} is refused with 3060.
        """
        client, result = self.helloOn(node_name="bad name!")
        self.assertEqual(str(result.trap(HelloRejected) and result.value),
                         "Error 3060 - Invalid node name format")

    def test_longNodeName(self):
        """
        A worker name longer than a node name may be is refused with 3060
        before it names anything on disk.
        """
        name = "w" * 129
        worker = self.cluster.addWorker(name, certName="worker1")
        self.assertRejected(worker, "Error 3060 - Invalid node name format")

    def test_masterNamedDot(self):
        """
        A master (even one that knows the key) whose hello answer names it
        C{.}, or a name with C{/}, is refused by the worker before the name
        names its staging directory: C{queue/cluster} keeps everything.
        """
        for name in (".", "..", "a/b", "x\x00"):
            cluster = InMemoryCluster(self)
            cluster.master.config = evolve(cluster.master.config, node_name=name)
            keep = cluster.master.home.root  # the worker's home is apart
            worker = cluster.addWorker("worker1")
            self.assertIs(worker.connection, None)
            self.assertTrue(worker.home.clusterQueue.exists(), name)
            self.assertTrue(self.logs.contains(
                "ERROR: [Worker worker1] [Main] Could not connect to master: it gave an "
                f"invalid node name {name!r}."), self.logs.lines())
            self.assertTrue(keep.exists())

    def test_protocolVersion(self):
        """
        An unsupported protocol version is refused with 3031: version 1
        (before chunked records and incremental integrity) too.
        """
        for protocol in (PROTOCOL_VERSION + 41, 1):
            client, result = self.helloOn(protocol=protocol)
            self.assertEqual(str(result.trap(HelloRejected) and result.value),
                             "Error 3031 - Worker and master versions are not the same")

    def test_replayedProof(self):
        """
        A proof made for another connection (a replay) does not verify.
        """
        client, result = self.helloOn(proof=helloProof(KEY, b"\0" * 32, "wazuh", "worker1"))
        self.assertEqual(str(result.trap(HelloRejected) and result.value),
                         "Error 3025 - Could not decrypt message")

    def test_rejectionClosesConnection(self):
        """
        After a rejected hello the master closes the connection.
        """
        client, result = self.helloOn(cluster_name="nope")
        result.trap(HelloRejected)
        self.assertTrue(self.cluster.network.links[-1].clientTLS.disconnected)

    def test_commandBeforeHello(self):
        """
        Any command before the hello is not answered: the master logs the
        violation and closes that connection only.
        """
        other = self.cluster.addWorker("worker2")
        self.cluster.addWorker("worker1", start=False)
        bare = amp.AMP()
        self.cluster.connectBare(bare, "worker1")
        results = []
        bare.callRemote(KeepAlive).addBoth(results.append)
        self.cluster.network.flush()
        self.assertIsInstance(results[0], Failure)
        self.assertTrue(self.logs.contains(
            "WARNING: [Worker] [Main] Refused a connection from 10.0.0.2: protocol violation: "
            "command b'KeepAlive' before hello."), self.logs.lines())
        self.assertEqual(list(self.cluster.master.workers), ["worker2"])
        self.assertIsNot(other.connection, None)

    def test_helloDeadline(self):
        """
        A connection that says nothing is closed after C{hello_timeout}.
        """
        self.cluster.addWorker("worker1", start=False)
        silent = Protocol()
        lost = Deferred()
        silent.connectionLost = lambda reason: lost.callback(None)
        self.cluster.connectBare(silent, "worker1")
        self.cluster.network.advance(28)
        self.assertNoResult(lost)
        self.cluster.network.advance(2)
        self.successResultOf(lost)
        self.assertTrue(self.logs.contains("no hello received within 30s"), self.logs.lines())
