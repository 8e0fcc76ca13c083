"""
Tests for L{wazuhcluster.wazuhlocal.protocol}, speaking Wazuh's local
protocol byte for byte as recorded (C{/work/shared/wazuh-peers/README.md})
against a small server written here from the recorded facts.
"""

import json
import random
import struct

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.errors import ClusterError
from wazuhcluster.wazuhlocal.framing import (
    HEADER,
    HEADER_SIZE,
    REQUEST_CHUNK,
    FrameDecoder,
    Message,
    buildFrames,
)
from wazuhcluster.wazuhlocal.handlers import CommandTable, UnknownCommand
from wazuhcluster.wazuhlocal.protocol import (
    SERVER_LIMITS,
    LocalLimits,
    LocalServerFactory,
    WazuhLocalProtocol,
)
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError, decodeDapiRequest

#: What C{cluster_control -l} sends (wazuh-peers/README.md, get_nodes).
GET_NODES = (b'{"filter_node":null,"offset":0,"limit":null,"sort":null,"search":null,'
             b'"select":null,"filter_type":"all","distinct":false}')

#: The DAPI request of C{cluster_control -a}.
AGENTS_REQUEST = (
    b'{"f":{"__callable__":{"__name__":"get_agents_overview","__module__":"wazuh.core.agent",'
    b'"__qualname__":"Agent.get_agents_overview","__type__":"function"}},'
    b'"f_kwargs":{"filters":{"status":"all","node_name":"all"},"limit":null,'
    b'"select":["id","ip","name","status","node_name","version"]},'
    b'"from_cluster":false,"wait_for_complete":false}'
)

NODES = [
    {"name": "master-node", "type": "master", "version": "4.14.7", "ip": "wazuh-master"},
    {"name": "worker1", "type": "worker", "version": "4.14.7", "ip": "172.26.0.7"},
]

AGENTS = {"items": [{"id": "001", "name": "agent3", "ip": "any", "status": "active",
                     "version": "Wazuh v4.14.7", "node_name": "worker1"}], "totalItems": 1}


def frame(counter, command, payload):
    """
    One frame built by hand from the recorded layout: C{!2I12s}, the command
    padded with one space and dashes.
    """
    field = command + b" " + b"-" * (11 - len(command))
    return struct.pack("!2I", counter, len(payload)) + field + payload


def frames(data):
    """
    The messages in C{data}, a server's output.
    """
    return FrameDecoder().feed(data)


class RecordedMaster(CommandTable):
    """
    A master's local server answering as the recordings say.
    """

    def __init__(self, clock):
        super().__init__({
            b"get_nodes": self.getNodes,
            b"get_health": self.getHealth,
            b"dapi": self.dapi,
        })
        self.clock = clock
        self.dapiResults = []

    def getNodes(self, protocol, payload):
        arguments = json.loads(payload)
        wanted = arguments["filter_node"]
        items = [n for n in NODES if wanted is None or n["name"] in wanted]
        return b"ok", json.dumps({"items": items, "totalItems": len(items)}).encode()

    def getHealth(self, protocol, payload):
        names = json.loads(payload)
        nodes = {n["name"]: {"info": dict(n, n_active_agents=0)} for n in NODES
                 if names is None or n["name"] in names}
        for node in nodes.values():
            if node["info"]["type"] == "worker":
                node["status"] = {"sync_integrity_free": True, "last_keep_alive": "n/a"}
        return b"ok", json.dumps({"n_connected_nodes": 1, "nodes": nodes}).encode()

    def dapi(self, protocol, payload):
        request = decodeDapiRequest(payload)
        if request.function.qualname != "Agent.get_agents_overview":
            raise WazuhRemoteError(1000, "not available here")

        def push():
            d = protocol.sendString(json.dumps(AGENTS).encode())
            d.addCallback(lambda stringId: protocol.sendRequest(b"dapi_res", stringId))
            d.addBoth(self.dapiResults.append)

        self.clock.callLater(0, push)
        return b"ok", b"Added request to API requests queue"


class RecordedWorker(CommandTable):
    """
    A worker's local server: control commands go to the master; the
    answer comes later as a pushed C{control_res}; C{sendsync} has no
    immediate reply.
    """

    def __init__(self, clock):
        super().__init__({
            b"get_nodes": self.forward,
            b"get_health": self.forward,
            b"sendsync": self.sendsync,
        })
        self.clock = clock
        self.sendsyncs = []

    def forward(self, protocol, payload):
        answer = json.dumps({"items": NODES, "totalItems": 2}).encode()
        self.clock.callLater(1, protocol.sendNotice, b"control_res", answer)
        return b"ok", b"Sent request to master node"

    def sendsync(self, protocol, payload):
        self.sendsyncs.append((protocol, json.loads(payload)))


def serverOn(handler, clock, limits=SERVER_LIMITS, seed=1):
    """
    A server protocol on a L{StringTransport}.
    """
    protocol = WazuhLocalProtocol(handler, clock, limits, rng=random.Random(seed))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def take(transport):
    """
    The messages written so far, clearing the transport.
    """
    data = transport.value()
    transport.clear()
    return frames(data)


class ByteLevelTests(SynchronousTestCase):
    """
    A client speaking raw bytes, as cluster_control and authd do.
    """

    def setUp(self):
        self.clock = Clock()
        self.handler = RecordedMaster(self.clock)
        self.server, self.transport = serverOn(self.handler, self.clock)

    def test_getNodes(self):
        """
        C{get_nodes} is answered C{ok}, reusing the request's counter, with
        the recorded C{{"items": [...], "totalItems": N}}.
        """
        self.server.dataReceived(frame(0xDEADBEEF, b"get_nodes", GET_NODES))
        body = json.dumps({"items": NODES, "totalItems": 2}).encode()
        self.assertEqual(self.transport.value(), frame(0xDEADBEEF, b"ok", body))

    def test_getNodesFiltered(self):
        """
        C{filter_node} narrows the nodes listed.
        """
        payload = GET_NODES.replace(b'"filter_node":null', b'"filter_node":["worker1"]')
        self.server.dataReceived(frame(5, b"get_nodes", payload))
        [reply] = take(self.transport)
        self.assertEqual(json.loads(reply.payload), {"items": [NODES[1]], "totalItems": 1})

    def test_getHealth(self):
        """
        C{get_health} with C{null} answers every node, C{status} for workers
        only.
        """
        self.server.dataReceived(frame(77, b"get_health", b"null"))
        [reply] = take(self.transport)
        self.assertEqual((reply.counter, reply.command), (77, b"ok"))
        health = json.loads(reply.payload)
        self.assertEqual(health["n_connected_nodes"], 1)
        self.assertNotIn("status", health["nodes"]["master-node"])
        self.assertIn("status", health["nodes"]["worker1"])

    def test_unknownCommand(self):
        """
        An unknown command gets C{err} with Wazuh's JSON exception encoding.
        """
        self.server.dataReceived(frame(3, b"bogus", b""))
        payload = (b'{"__wazuh_exception__":{"__class__":"WazuhClusterError","__object__":'
                   b'{"code":3000,"extra_message":"unknown command \'b\'bogus\'\'"}}}')
        self.assertEqual(self.transport.value(), frame(3, b"err", payload))

    def test_echo(self):
        """
        C{echo} and C{echo-c} are answered C{ok} with the same data.
        """
        self.server.dataReceived(frame(1, b"echo", b"hello") + frame(2, b"echo-c", b"keepalive"))
        self.assertEqual(self.transport.value(),
                         frame(1, b"ok", b"hello") + frame(2, b"ok", b"keepalive"))

    def test_unexpectedRepliesNotAnswered(self):
        """
        An C{ok} or C{err} with a counter nobody waits for is not answered
        (answering it with C{err} would make two peers bounce errors).
        """
        self.server.dataReceived(frame(4, b"ok", b"late") + frame(5, b"err", b"{}"))
        self.assertEqual(self.transport.value(), b"")

    def test_errFromHandler(self):
        """
        An error raised by the handler is the C{err} payload.
        """
        self.server.dataReceived(frame(9, b"dapi", b'{"f":{"__callable__":{"__name__":"x",'
                                 b'"__module__":"wazuh.x","__qualname__":"X.x"}}}'))
        [reply] = take(self.transport)
        self.assertEqual((reply.counter, reply.command), (9, b"err"))
        self.assertEqual(json.loads(reply.payload), {"__wazuh_exception__": {
            "__class__": "WazuhClusterError",
            "__object__": {"code": 1000, "extra_message": "not available here"}}})

    def test_dapiExchange(self):
        """
        The C{-a} exchange: C{dapi} is answered at once C{ok "Added request
        to API requests queue"}; then the server pushes C{new_str "<len>"}
        (the client answers C{ok "<id>"}), C{str_upd "<id> <json>"} and
        C{dapi_res "<id>"}, with consecutive counters of its own.
        """
        self.server.dataReceived(frame(1000, b"dapi", AGENTS_REQUEST))
        self.assertEqual(self.transport.value(),
                         frame(1000, b"ok", b"Added request to API requests queue"))
        self.transport.clear()
        self.clock.advance(0)
        body = json.dumps(AGENTS).encode()
        [newStr] = take(self.transport)
        self.assertEqual(newStr.command, b"new_str")
        self.assertEqual(newStr.payload, str(len(body)).encode())
        self.server.dataReceived(frame(newStr.counter, b"ok", b"1234567"))
        [strUpd] = take(self.transport)
        self.assertEqual(strUpd, Message((newStr.counter + 1) % 2**32, b"str_upd",
                                         b"1234567 " + body))
        self.server.dataReceived(frame(strUpd.counter, b"ok", b"String updated"))
        [dapiRes] = take(self.transport)
        self.assertEqual(dapiRes, Message((strUpd.counter + 1) % 2**32, b"dapi_res", b"1234567"))
        self.server.dataReceived(frame(dapiRes.counter, b"ok",
                                       b"Distributed api response received"))
        self.assertEqual(self.handler.dapiResults, [b"Distributed api response received"])

    def test_dividedRequest(self):
        """
        A request split in C{d} frames is answered once, with its counter.
        """
        payload = b"x" * 100
        data = b"".join(buildFrames(11, b"echo", payload, chunk=40))
        self.assertIn(b"echo ------d", data)
        for piece in (data[:30], data[30:]):
            self.server.dataReceived(piece)
        self.assertEqual(self.transport.value(), frame(11, b"ok", payload))

    def test_dividedReply(self):
        """
        A reply over 5 MiB goes back in C{d} frames of 5 MiB, header
        included, with the request's counter.
        """
        payload = b"y" * (REQUEST_CHUNK + 10)
        self.server.dataReceived(b"".join(buildFrames(12, b"echo", payload)))
        out = self.transport.value()
        first = HEADER.unpack(out[:HEADER_SIZE])
        self.assertEqual(first, (12, REQUEST_CHUNK - HEADER_SIZE, b"ok --------d"))
        self.assertEqual(frames(out), [Message(12, b"ok", payload)])


class WorkerByteLevelTests(SynchronousTestCase):
    """
    The worker side, as recorded: forwarded control commands and
    C{sendsync}.
    """

    def setUp(self):
        self.clock = Clock()
        self.handler = RecordedWorker(self.clock)
        self.server, self.transport = serverOn(self.handler, self.clock)

    def test_controlForwarded(self):
        """
        C{get_nodes} on a worker is answered C{ok "Sent request to master
        node"}; the master's answer is pushed later as C{control_res}.
        """
        self.server.dataReceived(frame(21, b"get_nodes", GET_NODES))
        self.assertEqual(self.transport.value(), frame(21, b"ok", b"Sent request to master node"))
        self.transport.clear()
        self.clock.advance(1)
        [pushed] = take(self.transport)
        self.assertEqual(pushed.command, b"control_res")
        self.assertNotEqual(pushed.counter, 21)
        self.assertEqual(json.loads(pushed.payload)["totalItems"], 2)

    def test_sendsync(self):
        """
        authd's C{sendsync} has no immediate reply; its answer is one pushed
        frame with command C{ok} and the raw reply, which authd does not
        answer: no error follows.
        """
        message = {"daemon_name": "authd", "message": {"function": "add", "arguments": {
            "name": "agent3", "ip": "any", "groups": "default"}}}
        self.server.dataReceived(frame(0x1234, b"sendsync", json.dumps(message).encode()))
        self.assertEqual(self.transport.value(), b"")
        [(protocol, received)] = self.handler.sendsyncs
        self.assertEqual(received, message)
        answer = (b'{"error":0,"data":{"id":"001","name":"agent3","ip":"any","key":"'
                  + b"7" * 64 + b'"}}')
        protocol.sendNotice(b"ok", answer)
        raw = self.transport.value()
        [pushed] = take(self.transport)
        self.assertEqual(raw, frame(pushed.counter, b"ok", answer))
        self.clock.advance(3600)
        self.assertTrue(self.server.connected)
        self.assertFalse(self.flushLoggedErrors())

    def test_noticeReplyDropped(self):
        """
        Wazuh's Python LocalClient does answer a pushed C{ok}; the answer is
        dropped, not taken for a new request.
        """
        self.server.sendNotice(b"ok", b"{}")
        [pushed] = take(self.transport)
        self.server.dataReceived(frame(pushed.counter, b"ok", b"Sendsync response received"))
        self.assertEqual(self.transport.value(), b"")


class PairTests(SynchronousTestCase):
    """
    Two protocols joined in memory: requests, replies, timeouts and bounds.
    """

    def setUp(self):
        self.clock = Clock()

    def connect(self, serverHandler, clientHandler=None, serverLimits=SERVER_LIMITS,
                clientLimits=None):
        if clientHandler is None:
            clientHandler = CommandTable()
        self.server = WazuhLocalProtocol(serverHandler, self.clock, serverLimits,
                                         rng=random.Random(1))
        self.client = WazuhLocalProtocol(clientHandler, self.clock, clientLimits or LocalLimits(),
                                         rng=random.Random(2))
        self.pump = iosim.connect(self.server, iosim.makeFakeServer(self.server),
                                  self.client, iosim.makeFakeClient(self.client),
                                  clock=self.clock)

    def test_requestReply(self):
        """
        A request's Deferred fires with the reply's payload.
        """
        self.connect(RecordedMaster(self.clock))
        d = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.assertEqual(json.loads(self.successResultOf(d))["totalItems"], 2)

    def test_errReply(self):
        """
        An C{err} reply fails the request with the decoded Wazuh error.
        """
        self.connect(RecordedMaster(self.clock))
        d = self.client.sendRequest(b"bogus")
        self.pump.flush()
        error = self.failureResultOf(d, WazuhRemoteError).value
        self.assertEqual(error.code, 3000)

    def test_dapiWithPushes(self):
        """
        The client side receives the pushed string and C{dapi_res} through
        its handler and takes the string by id.
        """
        received = []

        def dapiRes(protocol, payload):
            received.append(json.loads(protocol.takeString(payload)))
            return b"ok", b"Distributed api response received"

        self.connect(RecordedMaster(self.clock), CommandTable({b"dapi_res": dapiRes}))
        d = self.client.sendRequest(b"dapi", AGENTS_REQUEST)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d), b"Added request to API requests queue")
        self.assertEqual(received, [AGENTS])
        self.assertEqual(self.client.stringsInProgress, 0)

    def test_timeout(self):
        """
        A request unanswered for 20 s fails with Wazuh's 3020; the late
        reply is dropped.
        """
        never = Deferred()
        self.connect(CommandTable({b"get_nodes": lambda p, payload: never}))
        d = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.clock.advance(19.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.failureResultOf(d, ClusterError).value
        self.assertEqual(str(error), "Error 3020 - Timeout sending request: get_nodes")
        never.callback((b"ok", b"late"))
        self.pump.flush()
        self.assertTrue(self.client.connected)
        self.client.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connectionLost(self):
        """
        Requests in progress fail with 3018 when the connection goes.
        """
        self.connect(CommandTable({b"get_nodes": lambda p, payload: Deferred()}))
        d = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.server.transport.loseConnection()
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, ClusterError).value.code, 3018)
        self.assertEqual(self.failureResultOf(self.client.sendRequest(b"echo"),
                                              ClusterError).value.code, 3018)

    def test_idleClientDropped(self):
        """
        The local server drops a client silent for 120 s; a keep-alive every
        60 s keeps it.
        """
        self.connect(RecordedMaster(self.clock))
        for _ in range(3):
            self.clock.advance(60)
            d = self.client.sendRequest(b"echo-c", b"keepalive")
            self.pump.flush()
            self.assertEqual(self.successResultOf(d), b"keepalive")
        self.assertTrue(self.server.connected)
        self.clock.advance(120)
        self.pump.flush()
        self.assertFalse(self.server.connected)
        self.assertFalse(self.client.connected)

    def test_payloadDeadline(self):
        """
        A header whose payload does not arrive within 30 s closes the
        connection.
        """
        self.connect(RecordedMaster(self.clock))
        self.server.dataReceived(frame(1, b"echo", b"complete")[:HEADER_SIZE + 2])
        self.clock.advance(29)
        self.assertTrue(self.server.connected)
        self.clock.advance(1)
        self.pump.flush()
        self.assertFalse(self.server.connected)

    def test_unfinishedSplitMessage(self):
        """
        The first frames of a split message whose next frame does not
        start within 30 s close the connection: they are not held until
        the peer goes idle.
        """
        self.connect(RecordedMaster(self.clock))
        first = buildFrames(3, b"echo", b"z" * 400, chunk=60)[0]
        self.server.dataReceived(first)
        self.clock.advance(29)
        self.assertTrue(self.server.connected)
        self.clock.advance(1)
        self.pump.flush()
        self.assertFalse(self.server.connected)

    def test_deadlineRestartsPerFrame(self):
        """
        A long message arriving frame after frame is not cut by the
        deadline.
        """
        self.connect(RecordedMaster(self.clock))
        data = b"".join(buildFrames(4, b"echo", b"z" * 400, chunk=60))
        for start in range(0, len(data), 50):
            self.server.dataReceived(data[start:start + 50])
            self.clock.advance(20)
        self.assertTrue(self.server.connected)

    def test_oversizedFrameCloses(self):
        """
        A frame over the bound closes that connection, logged.
        """
        self.connect(RecordedMaster(self.clock), serverLimits=LocalLimits(maxFramePayload=64))
        d = self.client.sendRequest(b"echo", b"x" * 65)
        self.pump.flush()
        self.assertFalse(self.server.connected)
        self.assertEqual(self.failureResultOf(d, ClusterError).value.code, 3018)

    def test_tooManyInflight(self):
        """
        Past C{maxInflight} requests being handled, new ones get C{err}.
        """
        self.connect(CommandTable({b"get_nodes": lambda p, payload: Deferred()}),
                     serverLimits=LocalLimits(maxInflight=2))
        ds = [self.client.sendRequest(b"get_nodes", GET_NODES) for _ in range(3)]
        self.pump.flush()
        self.assertNoResult(ds[0])
        self.assertNoResult(ds[1])
        self.assertEqual(self.failureResultOf(ds[2], WazuhRemoteError).value.code, 3018)
        for d in ds[:2]:
            d.cancel()
            self.failureResultOf(d)

    def test_unexpectedHandlerError(self):
        """
        An unexpected exception in a handler is Wazuh's internal error 1000
        to the peer, and logged.
        """
        self.connect(CommandTable({b"get_nodes": lambda p, payload: 1 / 0}))
        d = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.pump.flush()
        self.assertEqual(self.failureResultOf(d, WazuhRemoteError).value.code, 1000)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_bigString(self):
        """
        A string over 5 MiB travels in several C{str_upd} and arrives whole.
        """
        data = bytes(range(256)) * (REQUEST_CHUNK // 128)
        self.connect(CommandTable({b"take": lambda p, i: (b"ok", p.takeString(i))}))
        d = self.client.sendString(data)
        self.pump.flush()
        stringId = self.successResultOf(d)
        d = self.client.sendRequest(b"take", stringId)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d), data)

    def test_stringBounds(self):
        """
        Strings over the bound, too many strings, unknown ids and incomplete
        strings are refused with C{err}.
        """
        self.connect(CommandTable({b"take": lambda p, i: (b"ok", p.takeString(i))}),
                     serverLimits=LocalLimits(maxStrings=1, maxMessage=100))
        results = [self.client.sendRequest(b"new_str", b"101"),
                   self.client.sendRequest(b"new_str", b"10"),
                   self.client.sendRequest(b"new_str", b"10"),
                   self.client.sendRequest(b"str_upd", b"999 abc"),
                   self.client.sendRequest(b"new_str", b"-1")]
        self.pump.flush()
        self.assertEqual(self.failureResultOf(results[0], WazuhRemoteError).value.code, 3050)
        stringId = self.successResultOf(results[1])
        self.assertEqual(self.failureResultOf(results[2], WazuhRemoteError).value.code, 3051)
        self.assertEqual(self.failureResultOf(results[3], WazuhRemoteError).value.code, 3035)
        self.assertEqual(self.failureResultOf(results[4], WazuhRemoteError).value.code, 3036)
        incomplete = self.client.sendRequest(b"take", stringId)
        overflow = self.client.sendRequest(b"str_upd", stringId + b" " + b"x" * 11)
        self.pump.flush()
        self.assertEqual(self.failureResultOf(incomplete, WazuhRemoteError).value.code, 3035)
        self.assertEqual(self.failureResultOf(overflow, WazuhRemoteError).value.code, 3050)
        self.assertEqual(self.server.stringsInProgress, 0)

    def test_errStr(self):
        """
        C{err_str <len>} drops an empty string of that length.
        """
        self.connect(CommandTable())
        created = self.client.sendRequest(b"new_str", b"5")
        self.pump.flush()
        stringId = self.successResultOf(created)
        dropped = self.client.sendRequest(b"err_str", b"5")
        none = self.client.sendRequest(b"err_str", b"5")
        self.pump.flush()
        self.assertEqual(self.successResultOf(dropped), stringId)
        self.assertEqual(self.successResultOf(none), b"None")

    def test_countersSkipInFlight(self):
        """
        A counter is never reused while a request with it is in progress,
        even after wrapping around.
        """
        self.connect(CommandTable({b"get_nodes": lambda p, payload: Deferred()}))
        self.client._counter = 2**32 - 2
        first = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.client._counter = 2**32 - 3
        second = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.assertEqual(sorted(self.client._pending), [2**32 - 2, 2**32 - 1])
        third = self.client.sendRequest(b"get_nodes", GET_NODES)
        self.assertIn(0, self.client._pending)
        for d in (first, second, third):
            d.cancel()
            self.failureResultOf(d)

    def test_invalidCommand(self):
        """
        Sending a command over 11 bytes fails at once with 3024.
        """
        self.connect(CommandTable())
        d = self.client.sendRequest(b"twelve_chars")
        self.assertEqual(self.failureResultOf(d, ClusterError).value.code, 3024)

    def test_unknownCommandRaised(self):
        """
        L{CommandTable} raises L{UnknownCommand} for other commands.
        """
        self.assertRaises(UnknownCommand, CommandTable().requestReceived, None, b"x", b"")


class FactoryTests(SynchronousTestCase):
    """
    L{LocalServerFactory}.
    """

    def test_handlerPerConnection(self):
        """
        Each connection gets its own handler and the server limits.
        """
        clock = Clock()
        factory = LocalServerFactory(lambda: RecordedMaster(clock), clock)
        one, two = factory.buildProtocol(None), factory.buildProtocol(None)
        self.assertIsNot(one.handler, two.handler)
        self.assertEqual(one.limits.idleTimeout, 120.0)
        self.assertIs(one.factory, factory)
