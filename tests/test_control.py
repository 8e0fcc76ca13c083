# -*- test-case-name: tests.test_control -*-
"""
Tests for the control socket's requests, results in chunks, forwarding by
workers, and C{wazuh-cluster control}'s output.
"""

import io
import json

from twisted.protocols import amp
from twisted.python.filepath import FilePath
from twisted.test import iosim
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import InMemoryCluster
from wazuhcluster.cli import run
from wazuhcluster.commands import MAX_CHUNK, ControlFailed, ControlRequest, FetchResultChunk
from wazuhcluster.control import WorkerControlHandler
from wazuhcluster.controlclient import formatHealth, formatNodes, formatTable
from wazuhcluster.health import defaultStatus, isoDate, nodeInfo
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.nodeinit import initNode
from wazuhcluster.results import ResultStore, callControl
from wazuhcluster.wazuhlocal.handlers import CommandTable
from wazuhcluster.wazuhlocal.protocol import LocalLimits, WazuhLocalProtocol
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError


class ResultServer(amp.AMP):
    """
    The answering side of a forwarded control request (as
    L{wazuhcluster.master.connection.MasterConnection}): every request is
    answered with C{value}, kept in a L{ResultStore}.
    """

    def __init__(self, value):
        super().__init__()
        self.value = value
        self.results = ResultStore()

    @ControlRequest.responder
    def controlRequest(self, request, arguments):
        return self.results.put(self.value)

    @FetchResultChunk.responder
    def fetchResultChunk(self, result_id, index):
        return self.results.fetch(result_id, index)


class ResultChunkTests(SynchronousTestCase):
    """
    Results larger than one AMP value come back in chunks over the cluster
    connection; the local socket answers unknown requests with an error.
    """

    def test_bigResult(self):
        """
        A 300 kB answer arrives whole through L{callControl}.
        """
        value = json.dumps({"blob": "x" * (5 * MAX_CHUNK)}).encode()
        client, server, pump = connectedServerAndClient(lambda: ResultServer(value), amp.AMP)
        results = []
        callControl(client, "get_health").addBoth(results.append)
        pump.flush()
        self.assertEqual(len(results[0]["blob"]), 5 * MAX_CHUNK)

    def test_unknownRequest(self):
        """
        An unknown command on the master's local socket is an C{err} reply
        (Wazuh's 3000); the connection stays and answers the next request.
        """
        cluster = InMemoryCluster(self)
        server = WazuhLocalProtocol(MasterLocalHandler(cluster.master), cluster.clock)
        client = WazuhLocalProtocol(CommandTable(), cluster.clock, LocalLimits())
        pump = iosim.connect(server, iosim.makeFakeServer(server),
                             client, iosim.makeFakeClient(client), clock=cluster.clock)
        results = []
        client.sendRequest(b"format_disk").addBoth(results.append)
        pump.flush()
        self.assertIsInstance(results[0].value, WazuhRemoteError)
        self.assertEqual(str(results[0].value),
                         "Error 3000 - Cluster: unknown command 'b'format_disk''")
        client.sendRequest(b"get_nodes", b"{}").addBoth(results.append)
        pump.flush()
        self.assertEqual(json.loads(results[1])["items"][0]["name"], "master")
        server.transport.loseConnection()
        pump.flush()


class RequestTests(SynchronousTestCase):
    """
    What the master answers, directly and through a worker.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        self.worker = self.cluster.addWorker("worker1")
        self.cluster.addWorker("worker2")

    def answer(self, handler, request, arguments=None):
        results = []
        d = handler.answer(request, arguments or {})
        d.addBoth(results.append)
        self.cluster.network.flush()
        return results[0]

    def test_nodes(self):
        """
        C{get_nodes} lists the master then the workers, with
        C{-fn} filtering.
        """
        nodes = self.answer(self.cluster.master.control, "get_nodes")["nodes"]
        self.assertEqual([(n["name"], n["type"]) for n in nodes],
                         [("master", "master"), ("worker1", "worker"), ("worker2", "worker")])
        filtered = self.answer(self.cluster.master.control, "get_nodes",
                               {"node_names": ["worker2"]})["nodes"]
        self.assertEqual([n["name"] for n in filtered], ["worker2"])

    def test_health(self):
        """
        C{get_health} has the connected count, the info block of every node
        and the status block with C{last_keep_alive} of every worker.
        """
        health = self.answer(self.cluster.master.control, "get_health")
        self.assertEqual(health["n_connected_nodes"], 2)
        self.assertEqual(sorted(health["nodes"]), ["master", "worker1", "worker2"])
        self.assertEqual(set(health["nodes"]["worker1"]["info"]),
                         {"name", "type", "version", "ip", "n_active_agents"})
        self.assertNotEqual(health["nodes"]["worker1"]["status"]["last_keep_alive"], "n/a")

    def test_unknownNodeFilter(self):
        """
        C{-fn} naming a node that does not exist is Wazuh's 1730, for
        C{get_nodes} and C{get_health}, even beside existing names.
        """
        for request in ("get_nodes", "get_health"):
            failure = self.answer(self.cluster.master.control, request,
                                  {"node_names": ["worker1", "nosuch"]})
            self.assertIsInstance(failure.value, ControlFailed)
            self.assertEqual(str(failure.value), "Error 1730 - Node does not exist: nosuch")

    def test_healthCountsWhatIsListed(self):
        """
        With C{-fn}, C{n_connected_nodes} counts the connected nodes listed,
        not every connected worker.
        """
        health = self.answer(self.cluster.master.control, "get_health",
                             {"node_names": ["worker1"]})
        self.assertEqual(sorted(health["nodes"]), ["worker1"])
        self.assertEqual(health["n_connected_nodes"], 1)
        text = formatHealth("wazuh", health, more=True)
        self.assertIn("Connected nodes (1):", text)
        self.assertEqual(text.count("        Type: "), 1)
        master = self.answer(self.cluster.master.control, "get_health",
                             {"node_names": ["master"]})
        self.assertEqual((sorted(master["nodes"]), master["n_connected_nodes"]),
                         (["master"], 0))

    def test_workerForwards(self):
        """
        A worker answers by asking its master.
        """
        handler = WorkerControlHandler(self.worker)
        nodes = self.answer(handler, "get_nodes")["nodes"]
        self.assertEqual(len(nodes), 3)

    def test_workerNotConnected(self):
        """
        A worker without its master answers 3023.
        """
        self.cluster.network.masterUp = False
        self.cluster.master.workers["worker1"].transport.loseConnection()
        self.cluster.network.flush()
        handler = WorkerControlHandler(self.worker)
        self.assertRaises(ControlFailed, handler.answer, "get_nodes", {})
        try:
            handler.answer("get_nodes", {})
        except ControlFailed as error:
            self.assertEqual(str(error), "Error 3023 - Worker node is not connected to master")


class OutputTests(SynchronousTestCase):
    """
    cluster_control's text layout.
    """

    def test_table(self):
        """
        Columns are as wide as their longest cell plus two; missing values
        print C{unknown}.
        """
        self.assertEqual(formatTable(("A", "BB"), [("xxx", None)]),
                         "A    BB\nxxx  unknown\n")

    def test_nodes(self):
        """
        C{-l} prints NAME TYPE VERSION ADDRESS.
        """
        text = formatNodes({"nodes": [
            {"name": "master", "type": "master", "version": "0.1.0", "ip": "10.0.0.1"},
            {"name": "worker1", "type": "worker", "version": "0.1.0", "ip": "10.0.0.2"}]})
        self.assertEqual(text.splitlines(), [
            "NAME     TYPE    VERSION  ADDRESS",
            "master   master  0.1.0    10.0.0.1",
            "worker1  worker  0.1.0    10.0.0.2"])

    def health(self):
        status = dict(defaultStatus(), last_keep_alive=isoDate(1764064800.0))
        return {"n_connected_nodes": 1, "nodes": {
            "master": {"info": nodeInfo("master", "master", "0.1.0", "10.0.0.1"), "status": {}},
            "worker1": {"info": nodeInfo("worker1", "worker", "0.1.0", "10.0.0.2", 3),
                        "status": status}}}

    def test_health(self):
        """
        C{-i} prints the cluster name and one line per worker.
        """
        lines = formatHealth("wazuh", self.health()).splitlines()
        self.assertEqual(lines[0], "Cluster name: wazuh")
        self.assertEqual(lines[2], "Last completed synchronization for connected nodes (1):")
        self.assertTrue(lines[3].startswith("    worker1 (10.0.0.2): Integrity check: n/a |"))
        self.assertTrue(lines[3].endswith("Last keep alive: 2025-11-25T10:00:00.000000Z."))

    def test_healthMore(self):
        """
        C{-i more} prints every node with its version, type, active agents
        and the workers' status blocks.
        """
        text = formatHealth("wazuh", self.health(), more=True)
        self.assertIn("Connected nodes (1):", text)
        self.assertIn("        Active agents: 3", text)
        self.assertIn("Synchronized files: Shared: 0 | Missing: 0 | Extra: 0.", text)
        self.assertIn("Permission to synchronize agent-info: True.", text)


class CommandLineTests(SynchronousTestCase):
    """
    C{wazuh-cluster control} without a daemon, and argument mistakes.
    """

    def test_notRunning(self):
        """
        With no daemon on the home, control says "Cluster is not running."
        and exits 1.
        """
        base = FilePath(self.mktemp())
        initNode(base.child("m").path, "master", "master", base.child("ca").path)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(run(["control", "--home", base.child("m").path, "-l"], out, err), 1)
        self.assertEqual(err.getvalue(), "Cluster is not running.\n")

    def test_userMistakeNoTraceback(self):
        """
        A bad init is one line and exit status 1, no traceback.
        """
        base = FilePath(self.mktemp())
        out, err = io.StringIO(), io.StringIO()
        status = run(["init", "--home", base.child("w").path, "--type", "worker", "--name",
                      "w1", "--ca", base.child("ca").path], out, err)
        self.assertEqual(status, 1)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertNotIn("Traceback", err.getvalue())
