# -*- test-case-name: tests.test_agent_sync -*-
"""
Tests for agent sync in a deterministic in-memory cluster: agent info
flowing from workers to the master, agent-group assignments flowing from the
master's cache to every worker, and the health and control answers they
fill.

The in-memory cluster runs on a L{Clock}, so every node is given a blocking
agent store (L{tests.cluster.InMemoryCluster.blockingStore}): every store
L{Deferred} has fired when returned.
"""

import json
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.cluster import InMemoryCluster
from tests.localhandlers import serving
from tests.test_hello import LogCapture
from wazuhcluster.agentdb import AGENT_INFO_FIELDS, AgentDatabase, AgentInfo
from wazuhcluster.agentsync import (
    MAX_TEXT,
    MalformedChunk,
    decodeAgentGroups,
    decodeAgentInfo,
    encodeAgentInfoRow,
    encodeItem,
    packChunks,
)
from wazuhcluster.clientkeys import ClientKey, formatAgentId, writeClientKeys
from wazuhcluster.commands import (
    MAX_CHUNK,
    RequestFullAgentGroups,
    SendAgentGroups,
    SendAgentInfo,
    SyncAborted,
)
from wazuhcluster.control import ControlServer
from wazuhcluster.daemonnudge import refreshDaemonGroups
from wazuhcluster.home import NodeHome
from wazuhcluster.master.local_agent_groups import GroupCache
from wazuhcluster.worker import agent_info as worker_agent_info

INTERVALS = {
    "worker": {"sync_agent_info": 10, "agent_groups_mismatch_limit": 3,
               "keep_alive": 1000, "sync_integrity": 1000},
    "master": {"sync_agent_groups": 10, "agent_group_start_delay": 5,
               "recalculate_integrity": 1000},
}


def keys(count):
    """
    C{count} client.keys entries, IDs 001 onwards.
    """
    return [ClientKey(formatAgentId(n), f"agent{n}", "any", f"{n:064x}")
            for n in range(1, count + 1)]


class AgentSyncTestsMixin:
    """
    Helpers: a cluster whose nodes share one client.keys.
    """

    def setUp(self):
        # client.keys is given to every node here (integrity, on long
        # periods, never announces a change: the end-to-end tests cover
        # integrity sync with it).
        self.logs = LogCapture(self)

    def assertNoDelayedCalls(self):
        """
        (Cleanup, after the cluster stopped.) No timer of the agent
        features is left behind.
        """
        self.assertEqual(self.cluster.clock.getDelayedCalls(), [])

    def call(self, connection, command, **arguments):
        """
        Call C{command} on C{connection}, move the bytes, and return its
        outcome (an errback is attached at once, as AMP requires).
        """
        outcome = []
        connection.callRemote(command, **arguments).addBoth(outcome.append)
        self.cluster.network.flush()
        return outcome[0]

    def startCluster(self, agents=3, workers=("worker1", "worker2"), groups=None):
        """
        A master knowing C{agents} agents (in C{groups}: a dict ID -> group
        list) and C{workers}, all with the same client.keys, connected.
        """
        self.addCleanup(self.assertNoDelayedCalls)
        self.cluster = InMemoryCluster(self, intervals=getattr(self, "intervals", INTERVALS))
        self.entries = keys(agents)
        writeClientKeys(self.cluster.masterHome.clientKeys, self.entries)
        # The master's snapshot holds the client.keys every worker gets.
        self.cluster.master.integrity.local.rescanNow()
        self.masterAgents = self.cluster.master.agents
        self.result(self.masterAgents.reconcileClientKeys())
        for agentId, names in (groups or {}).items():
            self.result(self.masterDb.setAgentGroups(agentId, names))
        for name in workers:
            self.addWorker(name)
        return self.cluster

    def addWorker(self, name):
        home = self.cluster.makeHome(name)
        writeClientKeys(home.clientKeys, self.entries)
        worker = self.cluster.addWorker(name)
        # The master sends the first agent-groups batch right after the
        # hello answer.
        self.cluster.clock.advance(0)
        self.cluster.network.flush()
        return worker

    @property
    def masterDb(self):
        return self.cluster.masterStore

    def workerDb(self, name):
        return self.cluster.workers[name].agentStore.store

    def session(self, name, feature):
        """
        The master's session of C{feature} on worker C{name}'s connection.
        """
        return self.cluster.master.registry.session(name, feature)

    def result(self, d):
        return self.successResultOf(d)

    def advance(self, seconds):
        self.cluster.network.advance(seconds)

    def groupsOn(self, database, agentId):
        return self.result(database.getAgent(agentId))["groups"]

    def recordGroupBatches(self, name):
        """
        Record every agent-groups chunk worker C{name} receives:
        C{(rows, version, hash, full, final)}.
        """
        connection = self.cluster.master.workers[name]
        original = connection.callRemote
        seen = []

        def callRemote(command, **arguments):
            if command is SendAgentGroups:
                seen.append((decodeAgentGroups(arguments["data"]), arguments["version"],
                             arguments["hash"], arguments["full"], arguments["final"]))
            return original(command, **arguments)

        connection.callRemote = callRemote
        return seen


class AgentInfoTests(AgentSyncTestsMixin, SynchronousTestCase):
    """
    Agent info flows from workers to the master.
    """

    def test_reportedAgentReachesMaster(self):
        """
        An agent reported on worker1 is stored on the master with
        C{node_name} worker1, its OS fields, labels, version and status
        after one C{sync_agent_info} period; agents not reported are left
        alone; both sides log the round.
        """
        self.startCluster()
        self.result(self.workerDb("worker1").reportAgent(
            "001", status="active", os={"os_name": "Ubuntu", "os_version": "24.04"},
            version="Wazuh v4.14.7", labels={"env": "prod"}, nodeName="worker1", now=1000))
        self.advance(10)
        agent = self.result(self.masterDb.getAgent("001"))
        self.assertEqual(
            (agent["node_name"], agent["os_name"], agent["os_version"], agent["version"],
             agent["connection_status"], agent["labels"]),
            ("worker1", "Ubuntu", "24.04", "Wazuh v4.14.7", "active", {"env": "prod"}))
        other = self.result(self.masterDb.getAgent("002"))
        self.assertEqual((other["node_name"], other["connection_status"]),
                         (None, "never_connected"))
        self.assertEqual(self.result(self.workerDb("worker1").agentInfoToSync()), [])
        for line in ("INFO: [Worker worker1] [Agent-info sync] Starting.",
                     "INFO: [Worker worker1] [Agent-info sync] Finished in 0.000s. "
                     "Updated 1 chunks."):
            self.assertEqual(sum(line in text for text in self.logs.lines()), 2,
                             (line, self.logs.lines()))

    def test_nothingToSend(self):
        """
        A worker with no marked row sends nothing and logs "No
        synchronization required, skipping."; the master records no round.
        """
        self.startCluster(workers=("worker1",))
        self.advance(10)
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Agent-info sync] No synchronization required, skipping."))
        self.assertIsNone(self.session("worker1", "agent-info").times.start)

    def test_statusChangeTravels(self):
        """
        An agent reported disconnected after being active is disconnected
        on the master after the next round.
        """
        self.startCluster(workers=("worker1",))
        db = self.workerDb("worker1")
        self.result(db.reportAgent("002", status="active", nodeName="worker1", now=100))
        self.advance(10)
        self.result(db.reportAgent("002", status="disconnected", nodeName="worker1", now=200))
        self.advance(10)
        agent = self.result(self.masterDb.getAgent("002"))
        self.assertEqual((agent["connection_status"], agent["disconnection_time"]),
                         ("disconnected", 200))

    def test_rowChangedDuringSyncStaysMarked(self):
        """
        A row reported again while its chunk is on the wire is not marked
        synced by the acknowledgement of the older version: it is sent
        again in the next round, with the new values.
        """
        self.startCluster(workers=("worker1",))
        db = self.workerDb("worker1")
        sender = self.cluster.workers["worker1"].agentInfo.current
        self.result(db.reportAgent("001", os={"os_name": "Debian"}, nodeName="worker1"))
        d = sender.syncOnce()
        self.assertNoResult(d)
        self.result(db.reportAgent("001", os={"os_name": "Alpine"}, nodeName="worker1"))
        self.cluster.network.flush()
        self.assertEqual(self.result(d), 1)
        self.assertEqual(self.result(self.masterDb.getAgent("001"))["os_name"], "Debian")
        marked = self.result(db.agentInfoToSync())
        self.assertEqual([(row["id"], row["os_name"]) for row in marked], [("001", "Alpine")])
        d = sender.syncOnce()
        self.cluster.network.flush()
        self.assertEqual(self.result(d), 1)
        self.assertEqual(self.result(db.agentInfoToSync()), [])
        self.assertEqual(self.result(self.masterDb.getAgent("001"))["os_name"], "Alpine")

    def test_unknownAgentsCountedAndIgnored(self):
        """
        Rows of agents the master does not know change nothing on the
        master, are counted (logged on both sides) and are marked synced on
        the worker once acknowledged.
        """
        self.startCluster(workers=("worker1",))
        self.result(self.masterDb.removeAgent("003"))
        db = self.workerDb("worker1")
        self.result(db.reportAgent("001", nodeName="worker1"))
        self.result(db.reportAgent("003", os={"os_name": "Ghost"}, nodeName="worker1"))
        self.advance(10)
        self.assertIsNone(self.result(self.masterDb.getAgent("003")))
        self.assertEqual(self.result(self.masterDb.getAgent("001"))["node_name"], "worker1")
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Agent-info sync] Ignored information of 1 agents "
            "unknown to the master."), self.logs.lines())
        self.assertTrue(self.logs.contains("The master ignored information of 1 agents"))
        self.assertEqual(self.result(db.agentInfoToSync()), [])

    def test_manyRowsInChunksAndPages(self):
        """
        Hundreds of marked rows are read page by page and sent in several
        chunks, none over L{MAX_CHUNK} bytes, the last one final; all arrive.
        """
        self.patch(worker_agent_info, "PAGE_SIZE", 100)
        self.startCluster(agents=450, workers=("worker1",))
        db = self.workerDb("worker1")
        for n in range(1, 451):
            self.result(db.reportAgent(formatAgentId(n), os={"os_uname": "x" * 300},
                                       labels={"k": "v" * 100}, nodeName="worker1"))
        sizes = []
        connection = self.cluster.workers["worker1"].connection
        original = connection.callRemote

        def callRemote(command, **kwargs):
            if command is SendAgentInfo:
                sizes.append((len(kwargs["data"]), kwargs["final"]))
            return original(command, **kwargs)

        connection.callRemote = callRemote
        self.advance(10)
        self.assertGreater(len(sizes), 3)
        self.assertTrue(all(size <= MAX_CHUNK for size, _ in sizes))
        self.assertEqual([final for _, final in sizes], [False] * (len(sizes) - 1) + [True])
        self.assertEqual(self.result(db.agentInfoToSync()), [])
        self.assertEqual(self.result(self.masterDb.countActiveAgents("worker1")), 450)
        self.assertEqual(self.session("worker1", "agent-info").times.chunks, len(sizes))

    def test_malformedChunkAbortedConnectionStays(self):
        """
        A chunk that is not JSON, or whose rows are off the format, is
        refused with L{SyncAborted} and logged; nothing is stored, the
        worker's connection stays registered, and a refused final chunk
        closes the round.
        """
        self.startCluster(workers=("worker1",))
        connection = self.cluster.workers["worker1"].connection
        masterSide = self.cluster.master.workers["worker1"]
        session = self.session("worker1", "agent-info")
        bad = [b"{not json\n", b'{"id": "001"}', b'{"id": "001"}\n',
               b'{"id": "001", "connection_status": "bogus"}\n',
               b'{"id": "001", "connection_status": "active", "os_name": 5}\n',
               b'{"id": "000", "connection_status": "active"}\n',
               b'{"id": "001", "connection_status": "active", "sql": "x"}\n',
               b'{"id": "001", "connection_status": "active", "labels": {"a": 1}}\n',
               b"[" * 5000 + b"]" * 5000 + b"\n"]
        for data in bad:
            outcome = self.call(connection, SendAgentInfo, data=data, final=True)
            self.assertTrue(outcome.check(SyncAborted), outcome)
            self.assertTrue(session.free)
        self.assertIs(self.cluster.master.workers["worker1"], masterSide)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Agent-info sync] malformed agent-info chunk"))
        self.assertIsNone(self.result(self.masterDb.getAgent("001"))["node_name"])
        self.assertIsNone(session.times.end)
        outcome = self.call(connection, SendAgentInfo,
                            data=b'{"id": "001", "connection_status": "active"}\n', final=True)
        self.assertEqual(outcome, {"updated": 1, "unknown": 0})
        self.assertIsNotNone(session.times.end)

    def test_refusedChunkKeepsRoundOpen(self):
        """
        A refused chunk that is not final leaves the round open (the
        following chunks of the window are still stored); the final chunk
        closes it, and the round is logged as having refused chunks.
        """
        self.startCluster(workers=("worker1",))
        connection = self.cluster.workers["worker1"].connection
        session = self.session("worker1", "agent-info")
        outcomes = []
        for data, final in [(b'{"id": "001", "connection_status": "active"}\n', False),
                            (b"[oops\n", False),
                            (b'{"id": "002", "connection_status": "active"}\n', False),
                            (b"", True)]:
            connection.callRemote(SendAgentInfo, data=data, final=final).addBoth(
                outcomes.append)
        self.cluster.network.flush()
        self.assertEqual(outcomes[0], {"updated": 1, "unknown": 0})
        self.assertTrue(outcomes[1].check(SyncAborted))
        self.assertEqual(outcomes[2:],
                         [{"updated": 1, "unknown": 0}, {"updated": 0, "unknown": 0}])
        self.assertTrue(session.free)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Agent-info sync] Round ended with 1 refused chunks."))
        self.assertEqual(self.result(self.masterDb.getAgent("002"))["connection_status"],
                         "active")

    def test_failedRoundLeavesRowsMarked(self):
        """
        When the master cannot store a chunk, the worker logs the error,
        closes the round on the master with an empty final chunk, and keeps
        the refused rows marked (rows of chunks already in the window that
        the master stored are marked synced); the next round sends them.
        """
        from twisted.internet.defer import fail

        self.patch(worker_agent_info, "PAGE_SIZE", 1)
        self.startCluster(workers=("worker1",))
        db = self.workerDb("worker1")
        for agentId in ("001", "002", "003"):
            self.result(db.reportAgent(agentId, nodeName="worker1"))
        calls = []

        class FailingOnce:
            def __init__(self, database):
                self.database = database

            def __getattr__(self, name):
                return getattr(self.database, name)

            def applyAgentInfo(self, nodeName, rows, ownership=None):
                calls.append(rows)
                if len(calls) == 2:
                    return fail(RuntimeError("disk full"))
                return self.database.applyAgentInfo(nodeName, rows, ownership=ownership)

        self.cluster.master.agentStore.store = FailingOnce(self.masterDb)
        self.advance(10)
        self.assertTrue(self.logs.contains(
            "ERROR: [Worker worker1] [Agent-info sync] Error synchronizing agent information: "
            "Error storing agent information: disk full"), self.logs.lines())
        self.assertTrue(self.session("worker1", "agent-info").free)
        self.assertEqual([row["id"] for row in self.result(db.agentInfoToSync())], ["002"])
        self.advance(10)
        self.assertEqual(self.result(db.agentInfoToSync()), [])
        self.assertEqual(self.result(self.masterDb.countActiveAgents("worker1")), 3)

    def test_roundKeepsFlagBusy(self):
        """
        C{sync_agent_info_free} is false between the first and the final
        chunk of a round, and true again after it.
        """
        self.startCluster(workers=("worker1",))
        connection = self.cluster.workers["worker1"].connection
        session = self.session("worker1", "agent-info")
        row = b'{"id": "001", "connection_status": "active"}\n'
        self.assertEqual(self.call(connection, SendAgentInfo, data=row, final=False),
                         {"updated": 1, "unknown": 0})
        self.assertFalse(session.free)
        self.call(connection, SendAgentInfo, data=b"", final=True)
        self.assertTrue(session.free)
        self.assertEqual(session.times.chunks, 1)


class AgentGroupsTests(AgentSyncTestsMixin, SynchronousTestCase):
    """
    Group assignments flow from the master's cache to every worker.
    """

    def test_startDelayLogged(self):
        """
        The Local agent-groups task says how long it sleeps before its first
        run, then logs its runs.
        """
        self.startCluster(workers=())
        self.assertTrue(self.logs.contains(
            "INFO: [Master] [Local agent-groups] Sleeping 5s before starting the "
            "agent-groups task, waiting for the workers connection."))
        self.assertFalse(self.cluster.master.groups.cache.loaded)
        self.advance(5)
        self.assertTrue(self.cluster.master.groups.cache.loaded)
        self.assertTrue(self.logs.contains(
            "INFO: [Master] [Local agent-groups] Finished in 0.000s."))

    def test_defaultGroupReachesEveryWorker(self):
        """
        An agent first seen active with no group gets C{default} on the
        master, and the next cache refresh brings it to every worker.
        """
        self.startCluster()
        self.advance(5)
        self.result(self.workerDb("worker1").reportAgent("002", nodeName="worker1"))
        self.advance(10)
        self.assertEqual(self.groupsOn(self.masterDb, "002"), ["default"])
        self.advance(10)
        for name in ("worker1", "worker2"):
            self.assertEqual(self.groupsOn(self.workerDb(name), "002"), ["default"], name)
            self.assertEqual(self.groupsOn(self.workerDb(name), "001"), [], name)

    def test_cacheVersioning(self):
        """
        A connecting worker first gets an empty batch with the cache's
        version and hash, then (its hash differs) the whole table
        (C{full}); afterwards only the assignments changed since its
        acknowledged version are sent, with the cache's version and hash on
        the final chunk; a worker that is up to date gets nothing.
        """
        self.startCluster(agents=5, groups={"001": ["g1"], "002": ["g2", "g1"]})
        seen = self.recordGroupBatches("worker1")
        self.advance(5)
        self.assertEqual(len(seen), 2)
        probe = seen.pop(0)
        self.assertEqual((probe[0], probe[1], probe[3], probe[4]), ([], 2, False, True))
        rows, version, hash, full, final = seen[0]
        self.assertEqual((full, final), (True, True))
        self.assertEqual(rows, [("001", ["g1"], 1), ("002", ["g2", "g1"], 2)])
        self.assertEqual(self.groupsOn(self.workerDb("worker1"), "002"), ["g2", "g1"])
        self.assertEqual(hash, self.result(self.masterDb.globalGroupHash()))

        self.advance(30)
        self.assertEqual(len(seen), 1, "nothing is sent to a worker that is up to date")

        self.result(self.masterDb.setAgentGroups("004", ["g4"]))
        self.advance(10)
        self.assertEqual(len(seen), 2)
        rows, version, hash, full, final = seen[1]
        self.assertEqual((rows, version, full, final), ([("004", ["g4"], 3)], 3, False, True))
        self.assertEqual(hash, self.result(self.workerDb("worker1").globalGroupHash()))
        self.assertEqual(self.session("worker1", "agent-groups").acked, 3)

        self.addWorker("worker3")
        seen3 = self.recordGroupBatches("worker3")
        self.assertEqual(self.groupsOn(self.workerDb("worker3"), "004"), ["g4"])
        self.assertEqual(self.groupsOn(self.workerDb("worker3"), "001"), ["g1"])
        self.advance(10)
        self.assertEqual(seen3, [], "worker3 got its full table when it connected")
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker3] [Agent-groups send full] Finished in 0.000s. "
            "Updated 1 chunks."), self.logs.lines())

    def test_reconnectedWorkerGetsNoFullTable(self):
        """
        A worker that reconnects holding the master's assignments answers
        the first, empty batch with a matching hash: it is sent no full
        table, and later changes still reach it as deltas.
        """
        self.startCluster(agents=5, groups={"001": ["g1"], "002": ["g2"]})
        self.advance(5)
        full = "INFO: [Worker worker1] [Agent-groups send full] Starting."
        self.assertEqual(sum(full in line for line in self.logs.lines()), 1)
        worker = self.cluster.workers["worker1"]
        worker.connection.transport.loseConnection()
        self.advance(15)
        self.assertIsNotNone(worker.connection)
        self.assertIn("worker1", self.cluster.master.workers)
        self.assertEqual(sum(full in line for line in self.logs.lines()), 1,
                         self.logs.lines())
        self.assertEqual(self.session("worker1", "agent-groups").acked,
                         self.cluster.master.groups.cache.version)
        self.result(self.masterDb.setAgentGroups("003", ["g3"]))
        self.advance(10)
        self.assertEqual(self.groupsOn(self.workerDb("worker1"), "003"), ["g3"])
        self.assertEqual(sum(full in line for line in self.logs.lines()), 1)

    def test_groupChangeReachesEveryWorker(self):
        """
        C{setAgentGroups} on the master reaches every worker at the next
        refresh; a refresh requested through control does it at once.
        """
        self.startCluster()
        self.advance(5)
        self.result(self.masterDb.setAgentGroups("003", ["web", "db"]))
        answer = self.result(self.cluster.master.control.answer("refresh_agent_groups", {}))
        self.assertEqual(answer, {"refreshed": True})
        self.cluster.network.flush()
        for name in ("worker1", "worker2"):
            self.assertEqual(self.groupsOn(self.workerDb(name), "003"), ["web", "db"])
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker2] [Agent-groups recv] Finished in 0.000s. Updated 1 chunks."))
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker2] [Agent-groups send] Starting."))

    def test_bigTableInChunks(self):
        """
        A full table of 6000 assignments travels in several chunks of at
        most L{MAX_CHUNK} bytes and is applied whole.
        """
        self.startCluster(agents=6000, workers=())
        self.result(self.cluster.master.groups.refresh())
        for n in range(1, 6001):
            self.result(self.masterDb.setAgentGroups(formatAgentId(n), ["default", f"g{n % 7}"]))
        self.result(self.cluster.master.groups.refresh())
        self.addWorker("worker1")
        self.cluster.network.flush()
        self.assertGreater(self.session("worker1", "agent-groups").fullTimes.chunks, 1)
        self.assertEqual(self.result(self.workerDb("worker1").globalGroupHash()),
                         self.cluster.master.groups.cache.hash)
        self.assertEqual(self.groupsOn(self.workerDb("worker1"), "5999"),
                         ["default", f"g{5999 % 7}"])

    def test_fullTablePackedOnce(self):
        """
        Two workers that need the whole table get it from one packing: the
        master packs a cache's table once, not per worker.
        """
        self.startCluster(agents=3000, workers=(), groups={"001": ["g1"], "002": ["g2"]})
        self.result(self.cluster.master.groups.refresh())
        feature = self.cluster.master.groups
        packs = []
        real = feature._pack

        def pack(cache, since):
            packs.append(since)
            return real(cache, since)

        self.patch(feature, "_pack", pack)
        for name in ("worker1", "worker2"):
            self.addWorker(name)
        self.advance(1)
        self.assertEqual(packs.count(None), 1)
        for name in ("worker1", "worker2"):
            self.assertGreaterEqual(self.session(name, "agent-groups").fullTimes.chunks, 1)
            self.assertEqual(self.result(self.workerDb(name).globalGroupHash()),
                             self.cluster.master.groups.cache.hash)

    def test_mismatchLeadsToFullSync(self):
        """
        A worker whose assignments drifted reports a hash mismatch after
        each incremental batch (debug C{Checksum comparison failed (n/3).});
        at the limit it asks for the whole table, the master sends it
        (C{Agent-groups send full}) and the drift is repaired.
        """
        self.startCluster(agents=6, groups={"001": ["g1"]})
        self.advance(5)
        worker = self.workerDb("worker1")
        self.result(worker.setAgentGroups("001", ["drift"]))
        for n, agentId in enumerate(["002", "003", "004"], 1):
            self.result(self.masterDb.setAgentGroups(agentId, ["g2"]))
            self.advance(10)
            if n < 3:
                self.assertTrue(self.logs.contains(
                    f"DEBUG: [Worker worker1] [Agent-groups recv] Checksum comparison "
                    f"failed ({n}/3)."), self.logs.lines())
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Agent-groups recv] Sent request to obtain all "
            "agent-groups information from the master node."))
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Agent-groups send full] Starting."))
        self.assertTrue(self.logs.contains(
            "INFO: [Worker worker1] [Agent-groups recv full] Finished in"))
        self.assertEqual(self.groupsOn(worker, "001"), ["g1"])
        self.assertEqual(self.result(worker.globalGroupHash()),
                         self.result(self.masterDb.globalGroupHash()))
        self.assertEqual(
            self.cluster.workers["worker1"].feature("agent-groups").current.mismatches, 0)
        self.assertFalse(self.logs.contains(
            "[Worker worker2] [Agent-groups recv] Sent request"))

    def test_removedAgentLeavesCache(self):
        """
        An agent removed on the master (which changes no group version)
        disappears from the cache at the next refresh, whose hash again
        equals the database's, without reading every assignment again: the
        other entries are the very same objects (a reload would have made
        them anew).
        """
        self.startCluster(groups={"001": ["g1"], "002": ["g2"], "003": ["g1"]})
        self.advance(5)
        before = self.cluster.master.groups.cache
        self.result(self.masterDb.removeAgent("002"))
        self.advance(10)
        cache = self.cluster.master.groups.cache
        self.assertIsNone(cache.groupsOf("002"))
        self.assertEqual(cache.hash, self.result(self.masterDb.globalGroupHash()))
        self.assertIs(cache._rows["001"], before._rows["001"])
        self.assertEqual([entry[0] for entry in cache.everything()], ["001", "003"])
        self.assertEqual(cache.changesSince(0), [e for e in before.changesSince(0)
                                                 if e[0] != "002"])
        self.assertFalse(self.logs.contains("reloading it"))

    def test_assignmentBeforeClientKeys(self):
        """
        An assignment for an agent the worker's client.keys does not list
        yet is kept aside and applied when C{clientKeysChanged} adds it.
        """
        self.startCluster(agents=2, workers=("worker1",))
        self.advance(5)
        worker = self.cluster.workers["worker1"]
        masterEntries = keys(3)
        writeClientKeys(self.cluster.masterHome.clientKeys, masterEntries)
        self.result(self.masterAgents.reconcileClientKeys())
        self.result(self.masterDb.setAgentGroups("003", ["late"]))
        self.advance(10)
        self.assertIsNone(self.result(self.workerDb("worker1").getAgent("003")))
        writeClientKeys(worker.home.clientKeys, masterEntries)
        added, removed = self.result(worker.agents.clientKeysChanged())
        self.assertEqual((added, removed), (["003"], []))
        self.assertEqual(self.groupsOn(self.workerDb("worker1"), "003"), ["late"])
        writeClientKeys(worker.home.clientKeys, masterEntries[:1])
        self.assertEqual(self.result(worker.agents.clientKeysChanged()), ([], ["002", "003"]))

    def test_malformedGroupsChunk(self):
        """
        A malformed agent-groups chunk is refused by the worker with
        L{SyncAborted}; the connection stays.
        """
        self.startCluster(workers=("worker1",))
        connection = self.cluster.master.workers["worker1"]
        for data in [b"nope\n", b'["001", "g1", 1]\n', b'["001", ["g1"], -1]\n',
                     b'["000", ["g1"], 1]\n', b'["001", ["bad/name"], 1]\n',
                     b'["001", ["g1"], 1]']:
            outcome = self.call(connection, SendAgentGroups, data=data, version=1, hash=None,
                                full=False, final=True)
            self.assertTrue(outcome.check(SyncAborted), outcome)
        self.assertIs(self.cluster.master.workers["worker1"], connection)
        self.assertIsNot(self.cluster.workers["worker1"].connection, None)


class HealthAndControlTests(AgentSyncTestsMixin, SynchronousTestCase):
    """
    The agent parts of C{get_health} and C{get_agents}.
    """

    def control(self, request, arguments=None):
        return self.result(self.cluster.master.control.answer(request, arguments or {}))

    def test_healthFieldsFilled(self):
        """
        After agent info and group rounds, the worker's status has every
        agent field filled, and C{n_active_agents} counts its active agents.
        """
        self.startCluster(workers=("worker1",), groups={"001": ["g1"]})
        self.result(self.workerDb("worker1").reportAgent("001", nodeName="worker1"))
        self.result(self.workerDb("worker1").reportAgent("002", nodeName="worker1"))
        self.advance(5)
        self.result(self.masterDb.setAgentGroups("003", ["g3"]))
        self.advance(10)
        self.assertEqual(self.call(self.cluster.workers["worker1"].connection,
                                   RequestFullAgentGroups), {})
        self.cluster.network.flush()
        health = self.control("get_health")
        node = health["nodes"]["worker1"]
        self.assertEqual(node["info"]["n_active_agents"], 2)
        status = node["status"]
        self.assertTrue(status["sync_agent_info_free"])
        for block, start, end in [("last_sync_agentinfo", "date_start_master", "date_end_master"),
                                  ("last_sync_agentgroup", "date_start", "date_end"),
                                  ("last_sync_full_agentgroup", "date_start", "date_end")]:
            self.assertNotEqual(status[block][start], "n/a", block)
            self.assertNotEqual(status[block][end], "n/a", block)
            self.assertGreaterEqual(status[block]["n_synced_chunks"], 1, block)

    def test_agentsListedWithFilters(self):
        """
        C{get_agents} lists the master's agents with the DESIGN.md fields;
        C{node_names} and C{statuses} filter them; an unknown status is an
        error.
        """
        self.startCluster(workers=("worker1", "worker2"))
        self.result(self.workerDb("worker1").reportAgent("001", nodeName="worker1"))
        self.result(self.workerDb("worker2").reportAgent("002", status="disconnected",
                                                         nodeName="worker2"))
        self.advance(10)
        agents = self.control("get_agents")["agents"]
        self.assertEqual([a["id"] for a in agents], ["001", "002", "003"])
        self.assertEqual(set(agents[0]), {"id", "name", "ip", "status", "version", "node_name",
                                          "groups", "os_name", "os_version", "last_keepalive"})
        self.assertEqual([a["id"] for a in self.control(
            "get_agents", {"node_names": ["worker2"]})["agents"]], ["002"])
        self.assertEqual([a["id"] for a in self.control(
            "get_agents", {"statuses": ["active", "never_connected"]})["agents"]], ["001", "003"])
        d = self.cluster.master.control.answer("get_agents", {"statuses": ["zzz"]})
        self.assertIn("Invalid agent status", str(self.failureResultOf(d).value))


class WireTests(SynchronousTestCase):
    """
    The chunk format helpers.
    """

    def test_packChunksRespectsLimit(self):
        """
        L{packChunks} never builds a chunk over the limit, keeps every item
        in order, and each chunk holds its items, one JSON record each.
        """
        items = [[formatAgentId(n), ["g" * (n % 50)], n] for n in range(1, 2000)]
        chunks = packChunks(((item, encodeItem(item)) for item in items), limit=1000)
        self.assertTrue(all(len(data) <= 1000 for _, data in chunks))
        self.assertEqual([i for part, _ in chunks for i in part], items)
        for part, data in chunks:
            self.assertEqual([json.loads(r) for r in data.split(b"\n")[:-1]], part)

    def test_decodeRejects(self):
        """
        The decoders refuse documents off the format with
        L{MalformedChunk}, and accept well-formed ones.
        """
        for data in [b"\xff\n", b"{}\n", b'[1]\n', b'{"id": 1, "connection_status": "active"}\n',
                     b'{"id": "001", "connection_status": "active"}', b"[" * 100 + b"\n"]:
            self.assertRaises(MalformedChunk, decodeAgentInfo, data)
        for data in [b"[1, [], 1]\n", b'["001", [], true]\n', b'["001", [1], 1]\n', b"[]\n",
                     b'["001", [' + b'"g",' * 200 + b'"g"], 1]\n']:
            self.assertRaises(MalformedChunk, decodeAgentGroups, data)
        self.assertEqual(decodeAgentGroups(b'["7", ["a"], 3]\n'), [("007", ["a"], 3)])

    def test_decodeAgentInfo(self):
        """
        L{decodeAgentInfo} gives each row as an L{AgentInfo}: the agent
        number, the values of every field in order (L{None} when absent),
        the labels.
        """
        (row,) = decodeAgentInfo(
            b'{"id": "007", "connection_status": "active", "os_name": "Alma", '
            b'"last_keepalive": 5, "labels": {"k": "v"}}\n')
        self.assertIsInstance(row, AgentInfo)
        values = dict(zip(AGENT_INFO_FIELDS, row.values))
        self.assertEqual(
            (row.number, values["os_name"], values["last_keepalive"],
             values["connection_status"], values["os_arch"], row.labels),
            (7, "Alma", 5, "active", None, {"k": "v"}))
        for bad in [b'{"id": "007", "connection_status": "active", "x": 1}\n',
                    b'{"id": "000", "connection_status": "active"}\n',
                    b'{"id": "007", "connection_status": "active", "version": 1}\n',
                    b'{"id": "007", "connection_status": "active", "status_code": -1}\n',
                    b'{"id": "007", "connection_status": "active", "labels": {"": "v"}}\n']:
            self.assertRaises(MalformedChunk, decodeAgentInfo, bad)

    def test_decodeAgentInfoBounds(self):
        """
        Texts and labels up to L{MAX_TEXT} characters are accepted, one
        more is refused naming the column, in records short enough to skip
        the length checks and in long ones; so are non-text values among
        short records, and the worker's encoder refuses what the master
        would.
        """
        def record(**fields):
            row = {"id": "007", "connection_status": "active", **fields}
            return encodeItem(row) + b"\n"

        accepted = decodeAgentInfo(record(os_name="n" * MAX_TEXT,
                                          labels={"k" * MAX_TEXT: "v" * MAX_TEXT}))
        self.assertEqual(len(accepted[0].values[AGENT_INFO_FIELDS.index("os_name")]), MAX_TEXT)
        for bad, column in [(record(os_name="n" * (MAX_TEXT + 1)), "os_name"),
                            (record(os_name="n", version="v" * (MAX_TEXT + 1)), "version"),
                            (record(os_name=["n"]), "os_name"),
                            (record(last_keepalive="5"), "last_keepalive"),
                            (record(last_keepalive=True), "last_keepalive"),
                            (record(labels={"k": "v" * (MAX_TEXT + 1)}), "labels"),
                            (record(labels={"k" * (MAX_TEXT + 1): "v"}), "labels"),
                            (record(labels={"k": 1}), "labels"),
                            (record(labels=["k"]), "labels")]:
            error = self.assertRaises(MalformedChunk, decodeAgentInfo, bad)
            self.assertIn(f"agent 007: invalid {column}", str(error))
        worker = {"id": "007", "sync_version": 3, "connection_status": "active",
                  "labels": {}}
        self.assertNotIn(b"sync_version", encodeAgentInfoRow(worker))
        self.assertEqual(decodeAgentInfo(encodeAgentInfoRow(worker) + b"\n")[0].number, 7)
        for bad in [dict(worker, os_name=1), dict(worker, connection_status="up"),
                    dict(worker, os_name="n" * (MAX_TEXT + 1))]:
            self.assertRaises(MalformedChunk, encodeAgentInfoRow, bad)

    def test_cacheHashMatchesDatabase(self):
        """
        The cache's hash uses the database's formula, and C{changesSince}
        returns only newer assignments, each agent once with its latest
        version.
        """
        db = AgentDatabase.openBlocking(FilePath(self.mktemp()).child("global.db"),
                                        managerName="m")
        self.addCleanup(db.close)
        for n in range(1, 13):
            self.successResultOf(db.addAgent(formatAgentId(n), f"a{n}", "any", "k"))
        for n in range(1, 13, 2):
            self.successResultOf(db.setAgentGroups(formatAgentId(n), ["x", f"y{n}"]))
        self.successResultOf(db.setAgentGroups("001", ["z"]))
        rows, version = self.successResultOf(db.groupChangesSince(0))
        cache = GroupCache.of(rows, version)
        self.assertEqual(cache.hash, self.successResultOf(db.globalGroupHash()))
        self.assertEqual([(r[0], r[2]) for r in cache.changesSince(5)],
                         [("011", 6), ("001", 7)])
        self.assertEqual(len(cache.everything()), 6)


class RefreshDaemonTests(TestCase):
    """
    C{wazuh-cluster agent add/remove/group} nudge a running master daemon.
    """

    def test_noDaemon(self):
        """
        Without a control socket nothing is asked and nothing fails.
        """
        home = NodeHome(FilePath(self.mktemp()))
        self.assertFalse(refreshDaemonGroups(home))

    @inlineCallbacks
    def test_asksRunningDaemon(self):
        """
        With a daemon listening on the control socket, the blocking client
        sends C{refresh_agent_groups} and reads the whole answer.
        """
        from twisted.internet import reactor

        base = FilePath(tempfile.mkdtemp(prefix="wzc-", dir="/tmp"))
        self.addCleanup(base.remove)
        home = NodeHome(base)
        asked = []

        class Handler:
            def answer(self, request, arguments):
                asked.append((request, arguments))
                return {"refreshed": True}

        server = ControlServer(home.controlSocket, serving(Handler()), reactor)
        server.startService()
        self.addCleanup(server.stopService)
        answered = yield deferToThread(refreshDaemonGroups, home)
        self.assertTrue(answered)
        self.assertEqual(asked, [("refresh_agent_groups", {})])
