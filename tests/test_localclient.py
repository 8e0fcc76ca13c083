# -*- test-case-name: tests.test_localclient -*-
"""
Tests for L{wazuhcluster.localclient} (the client of the local socket, as
Wazuh's C{LocalClient} behaves) against servers answering as the
recordings say, and for L{wazuhcluster.blockingclient} (the same protocols
run without a reactor, on real sockets).
"""

import json
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_wazuhlocal_protocol import (
    AGENTS,
    AGENTS_REQUEST,
    GET_NODES,
    RecordedMaster,
    RecordedWorker,
)
from wazuhcluster.blockingclient import BlockingUNIXEndpoint, closeAll, run
from wazuhcluster.control import ControlServer
from wazuhcluster.daemonnudge import callLocalDaemon
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome
from wazuhcluster.localclient import CLIENT_LIMITS, LocalClient, LocalClientHandler
from wazuhcluster.wazuhlocal.handlers import CommandTable
from wazuhcluster.wazuhlocal.protocol import WazuhLocalProtocol
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError


class ClientTests(SynchronousTestCase):
    """
    L{LocalClient.execute} in memory.
    """

    def setUp(self):
        self.clock = Clock()

    def connect(self, serverHandler):
        server = WazuhLocalProtocol(serverHandler, self.clock, CLIENT_LIMITS)
        handler = LocalClientHandler()
        protocol = WazuhLocalProtocol(handler, self.clock, CLIENT_LIMITS)
        self.pump = iosim.connect(server, iosim.makeFakeServer(server),
                                  protocol, iosim.makeFakeClient(protocol), clock=self.clock)
        self.server = server
        return LocalClient(protocol, handler, self.clock)

    def test_reply(self):
        """
        A master's C{get_nodes} is answered by its C{ok} reply.
        """
        client = self.connect(RecordedMaster(self.clock))
        d = client.execute(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.assertIn(b'"totalItems": 2', self.successResultOf(d))

    def test_errReply(self):
        """
        An C{err} reply fails with the decoded Wazuh error.
        """
        client = self.connect(RecordedMaster(self.clock))
        d = client.execute(b"bogus")
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, WazuhRemoteError).value.code, 3000)

    def test_controlResult(self):
        """
        A worker answers C{ok "Sent request to master node"}; the answer is
        the C{control_res} it pushes later.
        """
        client = self.connect(RecordedWorker(self.clock))
        d = client.execute(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.assertNoResult(d)
        self.clock.advance(1)
        self.pump.flush()
        self.assertIn(b'"totalItems": 2', self.successResultOf(d))

    def test_dapiResult(self):
        """
        The answer of C{dapi} is the string the server pushes and names in
        C{dapi_res}.
        """
        client = self.connect(RecordedMaster(self.clock))
        d = client.execute(b"dapi", AGENTS_REQUEST)
        self.pump.flush()
        self.clock.advance(0)
        self.pump.flush()
        self.assertEqual(json.loads(self.successResultOf(d)), AGENTS)
        self.assertEqual(client.protocol.stringsInProgress, 0)

    def test_sendsync(self):
        """
        C{sendsync} has no reply: the answer is the C{ok} frame pushed
        later; a pushed C{err} fails with its error.
        """
        handler = RecordedWorker(self.clock)
        client = self.connect(handler)
        d = client.execute(b"sendsync", b'{"daemon_name":"authd","message":{}}')
        self.pump.flush()
        [(protocol, _)] = handler.sendsyncs
        protocol.sendNotice(b"ok", b'{"error":0}')
        self.pump.flush()
        self.assertEqual(self.successResultOf(d), b'{"error":0}')
        d = client.execute(b"sendsync", b'{"daemon_name":"authd","message":{}}')
        self.pump.flush()
        protocol.sendNotice(b"err", b'{"__wazuh_exception__":{"__class__":"WazuhClusterError",'
                                    b'"__object__":{"code":3023,"extra_message":null}}}')
        self.pump.flush()
        self.assertEqual(str(self.failureResultOf(d, WazuhRemoteError).value),
                         "Error 3023 - Worker node is not connected to master")

    def test_pushTimeout(self):
        """
        Without the pushed answer in time, Wazuh's 3020; no timer is left.
        """
        client = self.connect(CommandTable({b"sendsync": lambda protocol, payload: None}))
        d = client.execute(b"sendsync", b"{}", timeout=5)
        self.pump.flush()
        self.clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, ClusterError).value),
                         "Error 3020 - Timeout sending request: sendsync")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closedWhileWaiting(self):
        """
        A server that closes the connection before pushing the answer fails
        the request with 3018.
        """
        client = self.connect(CommandTable({b"sendsync": lambda protocol, payload: None}))
        d = client.execute(b"sendsync", b"{}")
        self.pump.flush()
        self.server.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, ClusterError).value.code, 3018)


class SocketTests(TestCase):
    """
    Real UNIX sockets: the Twisted client and the blocking one.
    """

    def setUp(self):
        base = FilePath(tempfile.mkdtemp(prefix="wzl-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, base.path, True)
        self.home = NodeHome(base)

    def serve(self, handlerFactory):
        server = ControlServer(self.home.controlSocket, handlerFactory, reactor)
        server.startService()
        self.addCleanup(server.stopService)

    @inlineCallbacks
    def test_notRunning(self):
        """
        Nothing on the socket: Wazuh's 3012, from both clients.
        """
        error = yield self.assertFailure(
            LocalClient.forSocket(reactor, self.home.controlSocket.path), ClusterError)
        self.assertEqual(str(error), "Error 3012 - Cluster is not running")
        with self.assertRaises(ClusterError) as caught:
            callLocalDaemon(self.home, b"get_nodes", b"{}", 1)
        self.assertEqual(caught.exception.code, 3012)

    @inlineCallbacks
    def test_blockingPushedAnswer(self):
        """
        The blocking client, in a thread, gets an answer pushed a while
        after the reply (a worker's C{control_res}), on the server's real
        reactor.
        """
        self.serve(lambda: RecordedWorker(reactor))
        answer = yield deferToThread(callLocalDaemon, self.home, b"get_nodes", GET_NODES, 10)
        self.assertIn(b'"totalItems": 2', answer)

    @inlineCallbacks
    def test_blockingTimeout(self):
        """
        The blocking client's own timeout fires on its clock, moved on with
        the real time.
        """
        self.serve(lambda: CommandTable({b"sendsync": lambda protocol, payload: None}))
        error = yield self.assertFailure(
            deferToThread(callLocalDaemon, self.home, b"sendsync", b"{}", 0.3), ClusterError)
        self.assertEqual(str(error), "Error 3020 - Timeout sending request: sendsync")

    def test_endpointRefuses(self):
        """
        L{BlockingUNIXEndpoint} fails to connect where nothing listens, and
        L{run} raises that failure.
        """
        endpoint = BlockingUNIXEndpoint(self.home.controlSocket.path)
        d = LocalClient.connect(endpoint, endpoint.clock)
        with self.assertRaises(ClusterError):
            run(d, endpoint, 1)
        closeAll(endpoint)
