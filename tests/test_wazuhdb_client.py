"""
Tests for the clients of L{wazuhcluster.wazuhdb} (classic socket, HTTP API,
authd) against the stand-ins of L{tests.standins}: in memory with a clock,
and on real UNIX sockets.
"""

import json

from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.standins.harness import MemoryStandIns, SocketStandIns, shortHome
from wazuhcluster.wazuhdb.authd import AuthdClient
from wazuhcluster.wazuhdb.classic import WazuhDBClient
from wazuhcluster.wazuhdb.errors import AuthdError, WazuhDBError
from wazuhcluster.wazuhdb.httpapi import WazuhDBHTTPClient


@defer.inlineCallbacks
def waitFor(condition, seconds=10.0):
    """
    Wait (with the real reactor) until C{condition()} holds.
    """
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        yield deferLater(reactor, 0.01)
    raise AssertionError("condition never held")


INSERT = 'global insert-agent {{"id": {n}, "name": "agent{n}", "date_add": 1000}}'


class ClassicMemoryTests(SynchronousTestCase):
    """
    L{WazuhDBClient} against the wazuh-db stand-in, in memory.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(2000)
        self.standins = MemoryStandIns(self.clock)
        self.client = self.standins.classicClient(timeout=30)
        self.model = self.standins.wazuhdb.model

    def call(self, d):
        self.standins.network.flush()
        return d

    def test_run(self):
        """
        C{ok <json>} answers decode; a bare C{ok} is L{None}.
        """
        self.assertIsNone(self.successResultOf(self.call(self.client.run(INSERT.format(n=1)))))
        rows = self.successResultOf(self.call(self.client.run("global get-agent-info 1")))
        self.assertEqual(rows[0]["name"], "agent1")

    def test_err(self):
        """
        An C{err} answer is Wazuh's 2003 with wazuh-db's message.
        """
        error = self.failureResultOf(self.call(self.client.run("global bogus-cmd")),
                                     WazuhDBError).value
        self.assertEqual(error.code, 2003)
        self.assertEqual(error.detail, "Invalid DB query syntax, near 'bogus-cmd'")
        self.assertEqual(str(error), "Error 2003 - Error in wazuhdb request: "
                                     "Invalid DB query syntax, near 'bogus-cmd'")

    def test_query(self):
        """
        L{WazuhDBClient.query} gives the raw status and payload.
        """
        answer = self.successResultOf(self.call(self.client.query("global select-groups")))
        self.assertEqual(answer, ("ok", "[]"))

    def test_slowAnswerTimesOut(self):
        """
        An answer slower than the timeout fails that request with 2014 and
        freezes nothing: a concurrent request answers at once on another
        connection, and the next request works.
        """
        self.standins.wazuhdb.knobs.slow("global get-all-agents", 40)
        slow = self.client.run("global get-all-agents last_id 0")
        self.standins.network.flush()
        other = self.call(self.client.run("global select-groups"))
        self.assertEqual(self.successResultOf(other), [])
        self.standins.network.advance(29)
        self.assertNoResult(slow)
        self.standins.network.advance(1)
        self.assertEqual(self.failureResultOf(slow, WazuhDBError).value.code, 2014)
        self.standins.network.advance(20)
        again = self.call(self.client.run("global get-all-agents last_id 0"))
        self.assertEqual(self.successResultOf(again), [])

    def test_connectionLostMidRequest(self):
        """
        A connection lost before the answer fails the request with 2010; the
        next request reconnects (and sees what wazuh-db did meanwhile).
        """
        self.standins.wazuhdb.knobs.drop("global insert-agent")
        lost = self.call(self.client.run(INSERT.format(n=5)))
        self.assertEqual(self.failureResultOf(lost, WazuhDBError).value.code, 2010)
        rows = self.successResultOf(self.call(self.client.run("global get-agent-info 5")))
        self.assertEqual(rows[0]["id"], 5)

    def test_duePaging(self):
        """
        L{WazuhDBClient.runPaged} follows C{due} answers over several chunks.
        """
        self.model.maxResponse = 60
        for n in range(1, 21):
            self.model.execute(INSERT.format(n=n))
        d = self.client.runPaged(lambda last: f"global get-all-agents last_id {last}",
                                 lambda page, last: page[-1]["id"])
        pages = self.successResultOf(self.call(d))
        self.assertGreater(len(pages), 3)
        self.assertEqual([row["id"] for page in pages for row in page], list(range(1, 21)))

    def test_pagingMustAdvance(self):
        """
        A C{due} answer whose cursor does not move is an error, not a loop.
        """
        self.model.maxResponse = 30
        for n in range(1, 5):
            self.model.execute(INSERT.format(n=n))
        d = self.client.runPaged(lambda last: "global get-all-agents last_id 0",
                                 lambda page, last: last)
        self.assertEqual(self.failureResultOf(self.call(d), WazuhDBError).value.code, 2007)

    def test_dueToRun(self):
        """
        L{WazuhDBClient.run} refuses a paged answer.
        """
        self.model.maxResponse = 30
        for n in range(1, 5):
            self.model.execute(INSERT.format(n=n))
        d = self.call(self.client.run("global get-all-agents last_id 0"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2007)

    def test_connectRefused(self):
        """
        While wazuh-db is down, requests fail with 2005; once it is back,
        they work.
        """
        self.standins.stopWazuhDB()
        d = self.call(self.client.run("global select-groups"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2005)
        self.standins.startWazuhDB()
        self.assertEqual(self.successResultOf(self.call(self.client.run("global select-groups"))),
                         [])

    def test_answerTooLarge(self):
        """
        An answer over the bound fails with 2009; the next request works.
        """
        client = self.standins.classicClient(maxAnswer=40)
        for n in range(1, 10):
            self.model.execute(INSERT.format(n=n))
        d = self.call(client.run("global get-all-agents last_id 0"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2009)
        self.assertEqual(self.successResultOf(self.call(client.run("global select-groups"))), [])

    def test_requestTooLong(self):
        """
        A request over wazuh-db's 64 KiB fails at once.
        """
        d = self.client.run("global insert-agent " + "x" * 70000)
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2007)

    def test_badJSON(self):
        """
        An C{ok} payload that is not JSON is 2006.
        """
        self.standins.wazuhdb.model.execute = lambda text: "ok {not json"
        d = self.call(self.client.run("global select-groups"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2006)

    def test_unexpectedStatus(self):
        """
        An answer with another status is 2007.
        """
        self.standins.wazuhdb.model.execute = lambda text: "what?"
        d = self.call(self.client.run("global select-groups"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2007)

    def test_connectionLimit(self):
        """
        At most C{maxConnections} connections open; more requests wait for
        one and are answered in turn.
        """
        client = self.standins.classicClient(maxConnections=2)
        self.standins.wazuhdb.knobs.slow("global select-groups", 5, times=3)
        ds = [client.run("global select-groups") for _ in range(3)]
        self.standins.network.flush()
        self.assertEqual(self.standins.network.connections[self.standins.classicFactory], 2)
        self.standins.network.advance(5)
        self.assertNoResult(ds[2])
        self.standins.network.advance(5)
        self.assertEqual([self.successResultOf(d) for d in ds], [[], [], []])

    def test_cancel(self):
        """
        A cancelled request closes its connection; the next one works.
        """
        self.standins.wazuhdb.knobs.slow("global select-groups", 100)
        d = self.client.run("global select-groups")
        self.standins.network.flush()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.standins.network.flush()
        self.assertEqual(self.successResultOf(self.call(self.client.run("global select-groups"))),
                         [])

    def test_close(self):
        """
        After L{WazuhDBClient.close}, requests fail.
        """
        self.successResultOf(self.call(self.client.run("global select-groups")))
        self.successResultOf(self.client.close())
        self.standins.network.flush()
        d = self.client.run("global select-groups")
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2005)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class HTTPMemoryTests(SynchronousTestCase):
    """
    L{WazuhDBHTTPClient} against the stand-in's HTTP API, in memory.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(2000)
        self.standins = MemoryStandIns(self.clock)
        self.client = self.standins.httpClient(timeout=30)
        self.model = self.standins.wazuhdb.model
        for n in (1, 2):
            self.model.execute(INSERT.format(n=n))

    def call(self, d):
        self.standins.network.flush()
        return d

    def test_get(self):
        """
        C{GET /v1/agents/ids} lists the agents.
        """
        self.assertEqual(self.successResultOf(self.call(self.client.getJSON("/agents/ids"))),
                         [1, 2])

    def test_agentsSyncClearsMarks(self):
        """
        C{GET /v1/agents/sync} returns the marked agents once: the marks are
        cleared on read.
        """
        self.model.execute('global update-keepalive {"id": 1, "connection_status": "active", '
                           '"sync_status": "syncreq_keepalive", "status_code": 0}')
        first = self.successResultOf(self.call(self.client.getJSON("/agents/sync")))
        self.assertEqual(first, {"syncreq_keepalive": [{"id": 1}]})
        self.assertEqual(self.successResultOf(self.call(self.client.getJSON("/agents/sync"))),
                         {})

    def test_post(self):
        """
        C{POST /v1/agents/sync} stores what it is given.
        """
        d = self.client.postJSON("/agents/sync", {"syncreq_status": [
            {"id": 2, "connection_status": "disconnected", "disconnection_time": 5,
             "status_code": 0}]})
        self.assertIsNone(self.successResultOf(self.call(d)))
        self.assertEqual(self.model.agentRow(2)["connection_status"], "disconnected")

    def test_errorStatus(self):
        """
        An HTTP error status is 2012 with the body.
        """
        d = self.call(self.client.getJSON("/agents/nothing"))
        error = self.failureResultOf(d, WazuhDBError).value
        self.assertEqual(error.code, 2012)
        self.assertIn("404", error.detail)

    def test_slowAnswer(self):
        """
        An answer slower than the timeout is 2014; the next request works.
        """
        self.standins.wazuhdb.knobs.slow("GET /v1/agents/ids", 45)
        d = self.call(self.client.getJSON("/agents/ids"))
        self.standins.network.advance(30)
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2014)
        self.standins.network.advance(20)
        self.assertEqual(self.successResultOf(self.call(self.client.getJSON("/agents/ids"))),
                         [1, 2])

    def test_connectionLost(self):
        """
        A connection dropped before the answer is 2013.
        """
        self.standins.wazuhdb.knobs.drop("GET /v1/agents/ids")
        d = self.call(self.client.getJSON("/agents/ids"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2013)

    def test_refused(self):
        """
        While the socket refuses connections, requests fail with 2011.
        """
        self.standins.stopWazuhDB()
        d = self.call(self.client.getJSON("/agents/ids"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2011)

    def test_bodyTooLarge(self):
        """
        A body over the bound is 2009.
        """
        client = self.standins.httpClient(maxBody=3)
        d = self.call(client.getJSON("/agents/ids"))
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2009)


class AuthdMemoryTests(SynchronousTestCase):
    """
    L{AuthdClient} against the authd stand-in, in memory.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(2000)
        self.home = shortHome(self)
        self.standins = MemoryStandIns(self.clock, home=self.home.root.path)
        self.client = self.standins.authdClient(timeout=30)

    def call(self, d):
        self.standins.network.flush()
        return d

    def test_add(self):
        """
        C{add} answers the new agent; authd wrote client.keys and wazuh-db.
        """
        data = self.successResultOf(self.call(self.client.add("agent3", groups=["default"])))
        self.assertEqual((data["id"], data["name"], data["ip"]), ("001", "agent3", "any"))
        self.assertEqual(len(data["key"]), 64)
        self.assertEqual(self.home.clientKeys.getContent().decode().split()[:2],
                         ["001", "agent3"])
        row = self.standins.wazuhdb.model.agentRow(1)
        self.assertEqual((row["name"], row["group"]), ("agent3", "default"))

    def test_duplicateName(self):
        """
        authd's error answers are L{AuthdError}s printed as Wazuh prints them.
        """
        self.successResultOf(self.call(self.client.add("agent3")))
        error = self.failureResultOf(self.call(self.client.add("agent3")), AuthdError).value
        self.assertEqual(str(error), "Error 9008 - Duplicate name")

    def test_rawRequest(self):
        """
        L{AuthdClient.request} gives authd's answer unchanged, as the master
        sends it back to a worker's C{sendsync}.
        """
        raw = self.successResultOf(self.call(self.client.request(
            {"function": "add", "arguments": {"name": "agent4", "ip": "10.0.0.4", "id": "010",
                                              "key": "c" * 64}})))
        self.assertEqual(raw, b'{"error":0,"data":{"id":"010","name":"agent4",'
                              b'"ip":"10.0.0.4","key":"' + b"c" * 64 + b'"}}')

    def test_removeAndGet(self):
        """
        C{remove} and C{get} work by ID.
        """
        self.successResultOf(self.call(self.client.add("agent3")))
        self.assertEqual(self.successResultOf(self.call(self.client.get("001")))["name"],
                         "agent3")
        self.successResultOf(self.call(self.client.remove("001", purge=True)))
        error = self.failureResultOf(self.call(self.client.get("001")), AuthdError).value
        self.assertEqual(error.code, 9011)

    def test_down(self):
        """
        When authd cannot be reached, the error is 1726.
        """
        self.standins.network.refusing.add(self.standins.authdFactory)
        error = self.failureResultOf(self.call(self.client.add("x")), AuthdError).value
        self.assertEqual(error.code, 1726)
        self.assertTrue(str(error).startswith("Error 1726 - Wazuh authd is not running"))

    def test_slow(self):
        """
        No answer within the timeout is 1726 too.
        """
        self.standins.authd.knobs.slow('{"function"', 60)
        d = self.call(self.client.add("agent3"))
        self.standins.network.advance(30)
        self.assertEqual(self.failureResultOf(d, AuthdError).value.code, 1726)

    def test_closedWithoutAnswer(self):
        """
        A connection closed without an answer is 1726.
        """
        self.standins.authd.knobs.drop('{"function"')
        d = self.call(self.client.add("agent3"))
        self.assertEqual(self.failureResultOf(d, AuthdError).value.code, 1726)


class SocketTests(TestCase):
    """
    The clients on real UNIX sockets, with the real reactor.
    """

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.home = shortHome(self)
        self.standins = SocketStandIns(reactor, self.home)
        yield self.standins.start()
        self.addCleanup(self.standins.stop)
        self.classic = WazuhDBClient.forHome(self.home, reactor, timeout=2.0)
        self.addCleanup(self.classic.close)
        self.http = WazuhDBHTTPClient.forHome(self.home, reactor, timeout=5.0)
        self.addCleanup(self.http.close)
        self.authd = AuthdClient.forHome(self.home, reactor, timeout=5.0)

    @defer.inlineCallbacks
    def test_classic(self):
        """
        Requests, a slow answer timing out then the next one working, and a
        wazuh-db restart between two requests.
        """
        yield self.classic.run(INSERT.format(n=1))
        self.standins.wazuhdb.knobs.slow("global get-agent-info", 6)
        error = yield self.assertFailure(self.classic.run("global get-agent-info 1"),
                                         WazuhDBError)
        self.assertEqual(error.code, 2014)
        rows = yield self.classic.run("global get-agent-info 1")
        self.assertEqual(rows[0]["name"], "agent1")
        self.standins.wazuhdb.knobs.slow("global select-groups", 10)
        inFlight = self.classic.run("global select-groups", timeout=20)
        yield waitFor(lambda: "global select-groups" in self.standins.wazuhdb.requests)
        self.standins.wazuhdb.dropConnections()
        error = yield self.assertFailure(inFlight, WazuhDBError)
        self.assertEqual(error.code, 2010)
        rows = yield self.classic.run("global get-all-agents last_id 0")
        self.assertEqual(rows, [{"id": 1}])

    @defer.inlineCallbacks
    def test_http(self):
        """
        The HTTP API over the UNIX socket.
        """
        yield self.classic.run(INSERT.format(n=7))
        ids = yield self.http.getJSON("/agents/ids")
        self.assertEqual(ids, [7])
        missing = yield self.assertFailure(self.http.getJSON("/nothing"), WazuhDBError)
        self.assertEqual(missing.code, 2012)

    @defer.inlineCallbacks
    def test_authd(self):
        """
        authd adds an agent, writing wazuh-db through its own socket.
        """
        data = yield self.authd.add("agent9", "any")
        self.assertEqual(data["id"], "001")
        rows = yield self.classic.run("global get-agent-info 1")
        self.assertEqual(rows[0]["name"], "agent9")
        raw = yield self.authd.request(json.dumps({"function": "get", "arguments": {
            "id": "001"}}).encode())
        self.assertEqual(json.loads(raw)["data"]["name"], "agent9")

    @defer.inlineCallbacks
    def test_socketsMissing(self):
        """
        With no daemon listening, each client fails with its code.
        """
        yield self.standins.stop()
        self.assertFalse(self.home.child("queue/db/wdb").exists())
        error = yield self.assertFailure(self.classic.run("global select-groups"), WazuhDBError)
        self.assertEqual(error.code, 2005)
        error = yield self.assertFailure(self.http.getJSON("/agents/ids"), WazuhDBError)
        self.assertEqual(error.code, 2011)
        error = yield self.assertFailure(self.authd.add("x"), AuthdError)
        self.assertEqual(error.code, 1726)
