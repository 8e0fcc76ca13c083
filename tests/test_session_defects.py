# -*- test-case-name: tests.test_session_defects -*-
"""
Defects found on real Wazuh material that the feature sessions fix (issue
"Sessions that own their work and finish it", 3c, 3d, 3f, 3i), each shown
failing harmlessly now.
"""

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from tests.certs import makeAuthority
from tests.cluster import InMemoryCluster
from tests.test_hello import LogCapture
from wazuhcluster.commands import (
    ControlFailed,
    ControlRequest,
    SendAgentGroups,
    SendAgentInfo,
)
from wazuhcluster.errors import ClusterError
from wazuhcluster.results import ResultStore

INTERVALS = {
    "worker": {"sync_integrity": 1000, "keep_alive": 5, "sync_agent_info": 1000},
    "master": {"recalculate_integrity": 1000, "agent_group_start_delay": 1000},
}


def call(cluster, connection, command, **arguments):
    outcome = []
    connection.callRemote(command, **arguments).addBoth(outcome.append)
    cluster.network.flush()
    return outcome[0]


class Slowed:
    """
    A store whose method C{name} waits for C{gate} before it runs.
    """

    def __init__(self, store, name, gate, calls):
        self._store = store
        self._name = name
        self._gate = gate
        self._calls = calls

    def __getattr__(self, name):
        real = getattr(self._store, name)
        if name != self._name:
            return real

        def slowed(*args, **kwargs):
            self._calls.append(args)
            return self._gate.addCallback(lambda _: real(*args, **kwargs))

        return slowed


class FailingFeatureTests(SynchronousTestCase):
    """
    3c: a failing feature fails its round, logs one line, and never drops
    the connection.
    """

    def test_workerStoreCannotOpen(self):
        """
        A worker whose agent database cannot be opened answers agent-groups
        chunks with the declared L{SyncAborted}; its connection stays, again
        and again.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker(
            "worker1", openStore=lambda w: fail(ClusterError("database is locked", 2000)))
        connection = cluster.master.workers["worker1"]
        for _ in range(3):
            outcome = call(cluster, connection, SendAgentGroups, data=b'["001", ["g"], 1]\n',
                           version=1, hash=None, full=True, final=True)
            self.assertEqual(type(outcome.value).__name__, "SyncAborted")
            self.assertIs(cluster.master.workers["worker1"], connection)
            self.assertIsNotNone(worker.connection)
        self.assertTrue(logs.contains("Could not open the agent database: Error 2000 - "
                                      "database is locked"), logs.lines())
        self.assertTrue(logs.contains("[Agent-groups recv full] Error applying agent-groups "
                                      "information"), logs.lines())


class StopWaitsTests(SynchronousTestCase):
    """
    3d: stops wait for the work they started.
    """

    def test_localAgentGroupsStopWaits(self):
        """
        Stopping the master waits for the Local agent-groups refresh that is
        reading the database; the database is released only after it.
        """
        cluster = InMemoryCluster(self, intervals={"master": {"agent_group_start_delay": 0}})
        pending = Deferred()
        calls = []
        cluster.master.agentStore.store = Slowed(cluster.masterStore, "groupSnapshot",
                                                 pending, calls)
        cluster.clock.advance(0)
        groups = cluster.master.groups.local
        groups.refresh()
        self.assertTrue(calls)
        stopped = groups.stopService()
        self.assertNoResult(stopped)
        pending.callback(None)
        self.successResultOf(stopped)

    def test_agentInfoChunkAfterDisconnect(self):
        """
        A chunk being stored when the worker goes is finished without an
        error (no AttributeError reaches the log), and the session's stop
        waits for it.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker("worker1")
        pending = Deferred()
        cluster.master.agentStore.store = Slowed(cluster.masterStore, "applyAgentInfo",
                                                 pending, [])
        session = cluster.master.registry.session("worker1", "agent-info")
        answer = []
        worker.connection.callRemote(
            SendAgentInfo, data=b'{"id": "001", "connection_status": "active"}\n',
            final=True).addBoth(answer.append)
        cluster.network.flush()
        stopped = session.stop()
        self.assertNoResult(stopped)
        pending.callback(None)
        self.successResultOf(stopped)
        self.assertFalse(logs.contains("AttributeError"), logs.lines())
        self.assertEqual(self.flushLoggedErrors(), [])


class ControlRequestTests(SynchronousTestCase):
    """
    3d: a malformed forwarded control request is a declared error; results
    are bounded by bytes.
    """

    def test_malformedForwardedRequest(self):
        """
        A worker forwarding arguments that are not JSON gets
        L{ControlFailed}; the connection stays.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker("worker1")
        outcome = call(cluster, worker.connection, ControlRequest, request="get_nodes",
                       arguments="{not json")
        self.assertTrue(outcome.check(ControlFailed), outcome)
        self.assertIn("Malformed control request", str(outcome.value))
        self.assertIsNotNone(worker.connection)
        self.assertIn("worker1", cluster.master.workers)

    def test_resultsBoundedByBytes(self):
        """
        A connection keeps at most C{maxBytes} of results: the oldest go
        first; one result larger than the bound is refused.
        """
        store = ResultStore(maxResults=16, maxBytes=200000)
        big = {"x": "y" * 90000}
        ids = [store.put(big)["result_id"] for _ in range(4)]
        self.assertLessEqual(store.bytes, 200000)
        self.assertRaises(ControlFailed, store.fetch, ids[0], 1)
        self.assertEqual(len(store.fetch(ids[-1], 1)["data"]) > 0, True)
        self.assertRaises(ControlFailed, store.put, {"x": "z" * 300000})


class ChurnTests(SynchronousTestCase):
    """
    3f: a steady writer costs at most two rounds per worker per second.
    """

    def test_announcementsCoalesced(self):
        """
        Ten announcements a second start at most two rounds a second, and the
        first change after a quiet spell starts a round at once.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker("worker1")
        cluster.network.advance(2)
        rounds = worker.integrity.rounds
        session = worker.integrity.current
        for tick in range(50):
            session.integrityChanged("f" * 64)
            cluster.network.advance(0.1, step=0.1)
        done = worker.integrity.rounds - rounds
        self.assertLessEqual(done, 2 * 5 + 1)
        self.assertGreaterEqual(done, 5)
        cluster.network.advance(5)
        before = worker.integrity.rounds
        session.integrityChanged("e" * 64)
        cluster.network.flush()
        self.assertEqual(worker.integrity.rounds, before + 1)


class LogSeverityTests(SynchronousTestCase):
    """
    3i: what each side says, and at which level.
    """

    def test_cleanMasterStopIsInfo(self):
        """
        A master that stops closes its workers' connections cleanly: they log
        INFO "The master closed the connection", not an ERROR.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        cluster.addWorker("worker1")
        cluster.network.masterUp = False
        cluster.master.workers["worker1"].close()
        cluster.network.flush()
        self.assertTrue(logs.contains(
            "INFO: [Worker worker1] [Main] The master closed the connection"), logs.lines())
        self.assertFalse(any("ERROR: [Worker worker1] [Main]" in line and "lost" in line
                             for line in logs.lines()))

    def test_masterNotReadyIsAWait(self):
        """
        A worker asking before the master's first scan waits for it; no
        "3034" error is logged.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        local = cluster.master.integrity.local
        local.snapshot = None
        realRequest = local._request
        held = []

        def holdFirst():
            if not held:
                held.append(Deferred())
                return held[0]
            return realRequest()

        self.patch(local, "_request", holdFirst)
        worker = cluster.addWorker("worker1")
        self.patch(local, "_request", realRequest)
        local.rescanNow()
        cluster.network.flush()
        self.assertFalse(logs.contains("3034"), logs.lines())
        self.assertTrue(logs.contains("[Worker worker1] [Integrity check] Finished in"),
                        logs.lines())
        self.assertIsNotNone(worker.connection)

    def test_tlsFailureLoggedOnBothSides(self):
        """
        A worker whose certificate comes from another CA: the master logs one
        WARNING naming the address and the reason; the worker says in words
        what is wrong and how to fix it.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        otherCa = makeAuthority(cluster.tmp.child("other"))
        cluster.addWorker("worker1", caDir=otherCa)
        lines = logs.lines()
        self.assertTrue(any("WARNING: [Worker] [Main] Refused a connection from 10.0.0.2:" in line
                            and "CA" in line for line in lines), lines)
        self.assertTrue(any("ERROR: [Worker worker1] [Main] Could not connect to master:" in line
                            and "--ca" in line for line in lines), lines)

    def test_wrongMasterHostInWords(self):
        """
        A worker dialing an address the master's certificate does not name
        says so, with the fix, instead of a raw VerificationError.
        """
        logs = LogCapture(self)
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        cluster.addWorker("worker1", masterHost="elsewhere.example")
        lines = logs.lines()
        self.assertTrue(any("does not name 'elsewhere.example'" in line
                            and "--master-host elsewhere.example" in line for line in lines),
                        lines)
        self.assertFalse(any("VerificationError" in line for line in lines))
