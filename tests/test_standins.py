"""
Tests for the stand-ins of L{tests.standins}: every recorded request is
replayed and the answer compared with the recorded one, in memory, through
the servers, and against the stand-ins run as processes.
"""

import json
import os
import re
import shutil
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import IntNStringReceiver
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from tests.standins.authd import AuthdStandIn
from tests.standins.memory import MemoryNetwork
from tests.standins.recordings import AUTHD_SESSION, WAZUH_DB_SESSION, parseSession
from tests.standins.wazuhdb import WazuhDBStandIn

#: wazuh-db's clock when C{update-keepalive} ran in the recording (the
#: C{last_keepalive} it then returned).
WDB_NOW = 1796117957

#: authd's clock when it added agent4 (its C{date_add}).
AUTHD_NOW = 1796118115

A64, B64 = "a" * 64, "b" * 64

#: The recorder cut these requests short; the completions agree with every
#: answer that follows (dates, groups and columns of the rows).
COMPLETIONS = [
    ('global insert-agent {"id": 1, "name": "agent1", "ip": "10.0.0.1", "register_ip": "any", '
     f'"internal_key": "{A64}", "group": "default", "date_add": 1700000000}}'),
    ('global insert-agent {"id": 2, "name": "agent2", "ip": "10.0.0.2", "register_ip": "any", '
     f'"internal_key": "{B64}", "date_add": 1700000001}}'),
    ('global sync-agent-info-set [{"id": 2, "name": "agent2", "version": "Wazuh v4.14.7", '
     '"os_name": "Debian", "node_name": "node01", "connection_status": "active", '
     '"status_code": 0}]'),
    ('global sync-agent-info-set [{"id": 2, "name": "agent2", "ip": "10.0.0.2", '
     f'"register_ip": "any", "internal_key": "{B64}", "node_name": "worker01", '
     '"os_name": "Debian GNU/Linux", "version": "Wazuh v4.14.7", "last_keepalive": 1700000100, '
     '"connection_status": "active", "disconnection_time": 0, '
     '"group_config_status": "not synced", "status_code": 0}]'),
]

#: The recording leaves out the bodies of C{POST /v1/agents/summary}: the
#: first is empty (no filter), the second an empty list of IDs, the only
#: bodies that give the recorded answers (wazuh-db's source).
SUMMARY_BODIES = [b"", b"[]"]

KEY = re.compile(r'"key":"([0-9a-f]{64})"')


def complete(exchange):
    """
    The request to replay: the recorded one, or its completion.
    """
    if not exchange.truncated:
        return exchange.request
    [full] = [c for c in COMPLETIONS if c.startswith(exchange.request)]
    return full


def wdbExchanges():
    exchanges, _ = parseSession(WAZUH_DB_SESSION)
    return exchanges


class RecordingTests(SynchronousTestCase):
    """
    The recordings parse as expected.
    """

    def test_wazuhDbSession(self):
        """
        The wazuh-db session has 40 exchanges, 4 of them cut short, each
        with one completion.
        """
        exchanges = wdbExchanges()
        self.assertEqual(len(exchanges), 40)
        truncated = [e for e in exchanges if e.truncated]
        self.assertEqual(len(truncated), 4)
        self.assertEqual([complete(e) for e in truncated], COMPLETIONS)

    def test_authdSession(self):
        """
        The authd session has 6 exchanges and the two client.keys lines.
        """
        exchanges, keys = parseSession(AUTHD_SESSION)
        self.assertEqual([e.kind for e in exchanges], ["auth"] * 3 + ["wdb"] * 3)
        self.assertEqual(len(keys), 2)


def replayWazuhDb(testCase, standin, send):
    """
    Replay the wazuh-db session: C{send(request)} answers a classic
    request (the answer or a Deferred of it); HTTP goes to the model.
    """
    summaries = iter(SUMMARY_BODIES)
    for exchange in wdbExchanges():
        if exchange.kind == "http":
            method, path = exchange.request.split(" ", 1)
            body = next(summaries) if path == "/v1/agents/summary" else b""
            testCase.assertEqual(standin.http.handle(method, path, body), exchange.answer,
                                 exchange.request)
        else:
            answer = send(complete(exchange))
            testCase.assertEqual(answer, exchange.answer, exchange.request)


def replayAuthd(testCase, home, answers):
    """
    Check the answers of the authd session and the client.keys it leaves.

    @param answers: the answer of each recorded request, in order.
    """
    exchanges, keys = parseSession(AUTHD_SESSION)
    generated = KEY.search(answers[0]).group(1)
    recorded = KEY.search(exchanges[0].answer).group(1)
    # The key authd generates is random: the only value normalised.
    testCase.assertEqual(answers[0].replace(generated, recorded), exchanges[0].answer)
    for exchange, answer in zip(exchanges[1:], answers[1:], strict=True):
        testCase.assertEqual(answer, exchange.answer, exchange.request)
    with open(os.path.join(home, "etc", "client.keys")) as f:
        written = f.read().replace(generated, recorded).splitlines()
    testCase.assertEqual(written, keys)


class ModelReplayTests(SynchronousTestCase):
    """
    The models answer every recorded request as recorded.
    """

    def test_wazuhDb(self):
        """
        Each recorded wazuh-db request gets the recorded answer.
        """
        clock = Clock()
        clock.advance(WDB_NOW)
        standin = WazuhDBStandIn(clock=clock)
        replayWazuhDb(self, standin, standin.model.execute)

    def test_authd(self):
        """
        After the wazuh-db session, each recorded authd request (and the
        wazuh-db queries after it) gets the recorded answer, and
        client.keys holds the recorded lines.
        """
        clock = Clock()
        clock.advance(WDB_NOW)
        wdb = WazuhDBStandIn(clock=clock)
        replayWazuhDb(self, wdb, wdb.model.execute)
        clock.advance(AUTHD_NOW - WDB_NOW)
        home = self.mktemp()
        os.makedirs(os.path.join(home, "etc", "shared", "default"))
        authd = AuthdStandIn(home, wdb.model.execute, clock, managerName="wazuh-manager")
        exchanges, _ = parseSession(AUTHD_SESSION)
        answers = []
        for exchange in exchanges:
            if exchange.kind == "auth":
                answers.append(self.successResultOf(authd.model.dispatch(exchange.request)))
            else:
                answers.append(wdb.model.execute(exchange.request))
        replayAuthd(self, home, answers)
        # The quirk: authd gave 001 from client.keys while wazuh-db has
        # agent1 there, so the insert failed and was ignored.
        self.assertEqual(len(authd.model.wdbErrors), 1)
        self.assertIn("UNIQUE constraint failed: agent.id", authd.model.wdbErrors[0][1])


class _Classic(IntNStringReceiver):
    """
    A raw client of the classic socket: 4-byte little-endian length + text.
    """

    structFormat = "<I"
    prefixLength = 4

    def __init__(self):
        self.answers = []
        self.waiting = []

    def stringReceived(self, data):
        self.answers.append(data.decode())
        if self.waiting:
            self.waiting.pop(0).callback(data.decode())

    def ask(self, text):
        d = defer.Deferred()
        self.waiting.append(d)
        self.sendString(text.encode())
        return d


class _Auth(_Classic):
    """
    A raw client of authd's socket: one request, one answer, closed.
    """

    def connectionLost(self, reason):
        for d in self.waiting:
            d.errback(reason)


class ServerReplayTests(SynchronousTestCase):
    """
    The servers put the same answers on the wire, framed.
    """

    def test_framing(self):
        """
        A request is 4-byte little-endian length + text, and so is the
        answer.
        """
        standin = WazuhDBStandIn(clock=Clock())
        server = standin.classicFactory().buildProtocol(None)
        transport = StringTransport()
        server.makeConnection(transport)
        request = b"global get-all-agents last_id 0"
        server.dataReceived(len(request).to_bytes(4, "little") + request[:10])
        server.dataReceived(request[10:])
        self.assertEqual(transport.value(), b"\x05\x00\x00\x00ok []")

    def test_pipelined(self):
        """
        Every recorded request sent at once on one connection is answered in
        order.
        """
        clock = Clock()
        clock.advance(WDB_NOW)
        standin = WazuhDBStandIn(clock=clock)
        network = MemoryNetwork(clock)
        client = _Classic()
        d = network.endpoint(standin.classicFactory()).connect(Factory.forProtocol(lambda: client))
        self.successResultOf(d)
        for exchange in wdbExchanges():
            if exchange.kind == "wdb":
                client.sendString(complete(exchange).encode())
        network.flush()
        self.assertEqual(client.answers, [e.answer for e in wdbExchanges() if e.kind == "wdb"])


    def test_httpOverTheWire(self):
        """
        The whole session through both servers in memory, the HTTP requests
        with twisted.web's own client: the recorded statuses and bodies.
        """
        clock = Clock()
        clock.advance(WDB_NOW)
        standin = WazuhDBStandIn(clock=clock)
        network = MemoryNetwork(clock)

        @implementer(IAgentEndpointFactory)
        class Endpoints:
            def endpointForURI(self, uri):
                return network.endpoint(standin.httpFactory())

        agent = Agent.usingEndpointFactory(clock, Endpoints())
        summaries = iter(SUMMARY_BODIES)
        for exchange in wdbExchanges():
            if exchange.kind == "wdb":
                self.assertEqual(standin.model.execute(complete(exchange)), exchange.answer)
                continue
            method, path = exchange.request.split(" ", 1)
            body = None
            if path == "/v1/agents/summary":
                body = _Body(next(summaries))
            d = agent.request(method.encode(), b"http://localhost" + path.encode(),
                              bodyProducer=body)
            network.flush()
            response = self.successResultOf(d)
            content = readBody(response)
            network.flush()
            self.assertEqual((response.code, self.successResultOf(content).decode()),
                             exchange.answer, exchange.request)


@implementer(IBodyProducer)
class _Body:
    """
    A request body written at once.
    """

    def __init__(self, data):
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def stopProducing(self):
        pass


class ProcessTests(TestCase):
    """
    The stand-ins run as processes on real UNIX sockets.
    """

    timeout = 60

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="wzsi", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.home, True)

    def start(self, module):
        """
        Run C{python -m module --home H}; wait for its ready line.
        """
        ready = defer.Deferred()
        ended = defer.Deferred()

        class Watch(ProcessProtocol):
            def outReceived(self, data):
                if b"ready" in data and not ready.called:
                    ready.callback(None)

            def processEnded(self, reason):
                if not ready.called:
                    ready.errback(reason)
                ended.callback(None)

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        transport = reactor.spawnProcess(
            Watch(), sys.executable, [sys.executable, "-m", module, "--home", self.home],
            env=dict(os.environ, PYTHONPATH=root), path=root)

        def stop():
            if transport.pid is not None:
                transport.signalProcess("TERM")
            return ended

        self.addCleanup(stop)
        return ready

    def ask(self, relpath, protocol, text):
        endpoint = UNIXClientEndpoint(reactor, os.path.join(self.home, relpath))
        d = connectProtocol(endpoint, protocol)
        return d.addCallback(lambda p: p.ask(text))

    @defer.inlineCallbacks
    def test_replay(self):
        """
        The wazuh-db process answers the recorded requests over its socket
        (but for the times, which are now: C{last_keepalive} of the
        keep-alive is normalised), and the authd process adds agents,
        writing client.keys and wazuh-db.
        """
        yield self.start("tests.standins.wazuhdb")
        client = _Classic()
        yield connectProtocol(
            UNIXClientEndpoint(reactor, os.path.join(self.home, "queue/db/wdb")), client)
        for exchange in wdbExchanges():
            if exchange.kind != "wdb":
                continue
            answer = yield client.ask(complete(exchange))
            answer = re.sub(r'"last_keepalive":1[0-9]{9}(?=,"connection_status":"active",'
                            r'"disconnection_time":0,"group_config_status")',
                            f'"last_keepalive":{WDB_NOW}', answer)
            self.assertEqual(answer, exchange.answer, exchange.request)
        client.transport.loseConnection()
        os.makedirs(os.path.join(self.home, "etc", "shared", "default"))
        yield self.start("tests.standins.authd")
        answer = yield self.ask("queue/sockets/auth", _Auth(), json.dumps(
            {"function": "add", "arguments": {"name": "agent5", "ip": "any",
                                              "groups": "default"}}))
        self.assertEqual(json.loads(answer)["data"]["id"], "001")
        self.assertEqual(json.loads(answer)["error"], 0)
        info = yield self.ask("queue/db/wdb", _Classic(), "global get-all-agents last_id 0")
        self.assertEqual(info, 'ok [{"id":1},{"id":2}]')
        answer = yield self.ask("queue/sockets/auth", _Auth(), json.dumps(
            {"function": "add", "arguments": {"name": "agent6", "ip": "any"}}))
        self.assertEqual(json.loads(answer)["data"]["id"], "002")
        answer = yield self.ask("queue/sockets/auth", _Auth(), json.dumps(
            {"function": "add", "arguments": {"name": "agent7", "ip": "any", "id": "007"}}))
        info = yield self.ask("queue/db/wdb", _Classic(), "global get-agent-info 7")
        self.assertEqual(json.loads(info[3:])[0]["name"], "agent7")
        with open(os.path.join(self.home, "etc", "client.keys")) as f:
            self.assertEqual([line.split()[:2] for line in f],
                             [["001", "agent5"], ["002", "agent6"], ["007", "agent7"]])


class QuirkTests(SynchronousTestCase):
    """
    Behaviours of the stand-ins beyond the recorded exchanges (from
    Wazuh's source, or chosen: see L{tests.standins}).
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(WDB_NOW)
        self.standin = WazuhDBStandIn(clock=self.clock)
        self.run = self.standin.model.execute
        for n in (1, 2, 3):
            self.run(f'global insert-agent {{"id":{n},"name":"a{n}","date_add":1}}')

    def test_groupsPaged(self):
        """
        C{sync-agent-groups-get} pages with C{due} and resumes after
        C{last_id}, with the hash in every chunk.
        """
        self.standin.model.maxResponse = 80
        ids, last, status, pages = [], 0, "due", 0
        while status == "due":
            pages += 1
            answer = self.run("global sync-agent-groups-get " + json.dumps(
                {"condition": "all", "last_id": last, "get_global_hash": True}))
            status, payload = answer.split(" ", 1)
            [chunk] = json.loads(payload)
            self.assertIn("hash", chunk)
            ids += [agent["id"] for agent in chunk["data"]]
            last = ids[-1]
        self.assertEqual(ids, [1, 2, 3])
        self.assertGreater(pages, 1)

    def test_setGroupsModes(self):
        """
        C{append} adds at the end, C{empty_only} only fills agents with no
        group; an unknown agent fails the whole command.
        """
        for name in ("a", "b"):
            self.assertEqual(self.run(f"global insert-agent-group {name}"), "ok")
        self.assertTrue(self.run("global insert-agent-group a").startswith(
            "err Cannot execute Global database query; UNIQUE constraint failed"))
        self.run('global set-agent-groups {"mode":"override","data":[{"id":1,"groups":["a"]}]}')
        self.run('global set-agent-groups {"mode":"append","data":[{"id":1,"groups":["b"]}]}')
        self.run('global set-agent-groups {"mode":"empty_only","data":[{"id":1,"groups":["b"]},'
                 '{"id":2,"groups":["b"]}]}')
        self.assertEqual([self.standin.model.groupsOf(n) for n in (1, 2)], [["a", "b"], ["b"]])
        self.assertEqual(self.run('global set-agent-groups {"data":[{"id":9,"groups":["a"]}]}'),
                         "err An error occurred during the set of the groups")

    def test_syncInfoServerCursor(self):
        """
        Without C{last_id}, C{sync-agent-info-get} continues where its last
        C{due} stopped.
        """
        self.standin.model.maxResponse = 150
        for n in (1, 2, 3):
            self.run(f'global update-connection-status {{"id":{n},"connection_status":"active",'
                     f'"sync_status":"syncreq","status_code":0}}')
        answers = [self.run("global sync-agent-info-get")]
        while answers[-1].startswith("due"):
            answers.append(self.run("global sync-agent-info-get"))
        ids = [row["id"] for a in answers for row in json.loads(a.split(" ", 1)[1])]
        self.assertEqual(ids, [1, 2, 3])
        self.assertEqual(self.run("global sync-agent-info-get"), "ok []")

    def test_postAgentsSync(self):
        """
        C{POST /v1/agents/sync} updates the three lists by ID.
        """
        body = json.dumps({"syncreq_keepalive": [{"id": 1, "version": "v"}],
                           "syncreq_status": [{"id": 2, "connection_status": "disconnected",
                                               "disconnection_time": 7, "status_code": 1}]})
        self.assertEqual(self.standin.http.handle("POST", "/v1/agents/sync", body.encode()),
                         (200, ""))
        one, two = self.standin.model.agentRow(1), self.standin.model.agentRow(2)
        self.assertEqual((one["connection_status"], one["last_keepalive"], one["version"]),
                         ("active", WDB_NOW, "v"))
        self.assertEqual((two["connection_status"], two["disconnection_time"]),
                         ("disconnected", 7))

    def test_summaryByIds(self):
        """
        C{POST /v1/agents/summary} with IDs counts those agents only.
        """
        self.assertEqual(self.standin.http.handle("POST", "/v1/agents/summary", b"[1,2]"),
                         (200, '{"agents_by_status":{"never_connected":2}}'))

    def test_authdErrors(self):
        """
        authd refuses duplicate IPs and IDs, unknown groups, bad names.
        """
        home = self.mktemp()
        os.makedirs(os.path.join(home, "etc", "shared", "default"))
        authd = AuthdStandIn(home, self.run, self.clock, managerName="manager")

        def add(**arguments):
            text = json.dumps({"function": "add", "arguments": arguments})
            return json.loads(self.successResultOf(authd.model.dispatch(text)))

        # From client.keys, not from wazuh-db (which holds 1 to 3).
        self.assertEqual(add(name="x1", ip="10.0.0.1")["data"]["id"], "001")
        self.assertEqual(len(authd.model.wdbErrors), 1)
        self.assertEqual(add(name="x2", ip="10.0.0.1")["error"], 9007)
        self.assertEqual(add(name="x3", ip="any", id="001")["error"], 9012)
        self.assertEqual(add(name="x4", ip="any", groups="nope")["error"], 9014)
        self.assertEqual(add(name="bad name", ip="any")["error"], 9017)
        self.assertEqual(add(name="manager", ip="any")["error"], 9008)
        self.assertEqual(add(ip="any")["error"], 9005)
        self.assertEqual(json.loads(self.successResultOf(authd.model.dispatch("nonsense"))),
                         {"error": 9002, "message": "Parsing JSON input"})
