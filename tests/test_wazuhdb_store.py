"""
Tests for L{wazuhcluster.wazuhdb.store}: the agent store on wazuh-db,
against the wazuh-db stand-in (in memory with a clock, and on real sockets
with real threads).
"""

import json

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.standins.harness import MemoryStandIns, SocketStandIns, shortHome
from wazuhcluster.agentdb import AGENT_INFO_FIELDS, AgentDatabase, AgentInfo
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.clientkeys import ClientKey
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome
from wazuhcluster.wazuhdb.errors import WazuhDBError
from wazuhcluster.wazuhdb.groups import storeHash, wazuhHash
from wazuhcluster.wazuhdb.pending import readRows
from wazuhcluster.wazuhdb.rows import iterSyncLists
from wazuhcluster.wazuhdb.store import PENDING_INFO, WazuhDBAgentStore

KEY = "k" * 64
NOW = 1800000000


def infoRow(agentId, status="active", **fields):
    """
    An agent-info row as a worker sends it.
    """
    row = {name: None for name in AGENT_INFO_FIELDS}
    row.update(id=agentId, connection_status=status, labels=None)
    row.update(fields)
    return row


class _StoreMixin:
    """
    A store of a home on the wazuh-db stand-in, in memory.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.standins = MemoryStandIns(self.clock)
        self.wdb = self.standins.wazuhdb
        self.model = self.wdb.model
        self.home = NodeHome(FilePath(self.mktemp()))
        self.store = self.openStore()

    def openStore(self, **kwargs):
        store = WazuhDBAgentStore(self.home, self.standins.classicClient(timeout=30),
                                  self.standins.httpClient(timeout=30), self.clock, **kwargs)
        self.wait(store.load())
        return store

    def wait(self, d):
        """
        Run the network until C{d} fired; its result.
        """
        self.standins.network.flush()
        return self.successResultOf(d)

    def waitFailure(self, d, *types):
        self.standins.network.flush()
        return self.failureResultOf(d, *types).value

    def insert(self, *numbers, **fields):
        for n in numbers:
            row = {"id": n, "name": f"agent{n}", "register_ip": "any", "internal_key": KEY,
                   "date_add": NOW - 100}
            row.update(fields)
            self.assertEqual(self.model.execute("global insert-agent " + json.dumps(row)), "ok")

    def report(self, number, sync="syncreq", status="active", **columns):
        """
        What wazuh-remoted records when an agent reports to this node.
        """
        columns.update(connection_status=status, sync_status=sync, last_keepalive=NOW - 5)
        sets = ", ".join(f"{k} = ?" for k in columns)
        self.model.db.execute(f"UPDATE agent SET {sets} WHERE id = ?", (*columns.values(), number))

    def groups(self, number):
        return self.model.groupsOf(number)


class InterfaceTests(_StoreMixin, SynchronousTestCase):
    """
    The store provides the agent store's interface.
    """

    def test_interface(self):
        """
        L{WazuhDBAgentStore} provides L{IAgentStore}.
        """
        self.assertTrue(verifyObject(IAgentStore, self.store))

    def test_close(self):
        """
        Closing releases the clients and leaves no timer behind.
        """
        self.wait(self.store.close())
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WorkerAgentInfoTests(_StoreMixin, SynchronousTestCase):
    """
    Agent info read from a worker's wazuh-db, kept until acknowledged.
    """

    def setUp(self):
        super().setUp()
        self.insert(1, 2, 3)
        self.report(1, os_name="Debian GNU/Linux", version="Wazuh v4.14.7", node_name="worker1")
        self.model.replaceLabels(1, [{"key": "env", "value": "prod"}])
        self.report(2, sync="syncreq_keepalive", os_name="Ubuntu")

    def test_readFromHttp(self):
        """
        Rows marked C{syncreq} come from C{GET /v1/agents/sync} whole; rows
        marked for a keep-alive only are read whole again; wazuh-db's marks
        are gone.
        """
        rows = self.wait(self.store.agentInfoToSync())
        self.assertEqual([r["id"] for r in rows], ["001", "002"])
        first, second = rows
        self.assertEqual((first["os_name"], first["version"], first["connection_status"]),
                         ("Debian GNU/Linux", "Wazuh v4.14.7", "active"))
        self.assertEqual(first["labels"], {"env": "prod"})
        self.assertEqual(first["last_keepalive"], NOW - 5)
        self.assertEqual(second["os_name"], "Ubuntu")
        self.assertIsNone(second["labels"])
        self.assertEqual(set(first) - set(AGENT_INFO_FIELDS), {"id", "sync_version", "labels"})
        self.assertIn("GET /v1/agents/sync", self.wdb.requests)
        self.assertEqual(self.model.agentRow(1)["sync_status"], "synced")

    def test_keptUntilAcknowledged(self):
        """
        Rows read are given again until the master acknowledged their
        versions; then they are gone.
        """
        rows = self.wait(self.store.agentInfoToSync())
        again = self.wait(self.store.agentInfoToSync())
        self.assertEqual(again, rows)
        marked = self.wait(self.store.markAgentInfoSynced(
            [(r["id"], r["sync_version"]) for r in rows]))
        self.assertEqual(marked, 2)
        self.assertEqual(self.wait(self.store.agentInfoToSync()), [])

    def test_changedMeanwhileStays(self):
        """
        A row read again with other values takes a new version: the
        acknowledgement of the old version leaves it to be sent.
        """
        [row1, _] = self.wait(self.store.agentInfoToSync())
        self.report(1, os_name="Debian 13")
        rows = self.wait(self.store.agentInfoToSync())
        self.assertEqual(rows[0]["os_name"], "Debian 13")
        self.assertGreater(rows[0]["sync_version"], row1["sync_version"])
        self.assertEqual(self.wait(self.store.markAgentInfoSynced(
            [("001", row1["sync_version"])])), 0)
        self.assertEqual([r["id"] for r in self.wait(self.store.agentInfoToSync())],
                         ["001", "002"])

    def test_paging(self):
        """
        C{limit} and C{afterId} page through the kept rows without reading
        wazuh-db again.
        """
        self.wait(self.store.agentInfoToSync(limit=1))
        requests = len(self.wdb.requests)
        page = self.wait(self.store.agentInfoToSync(limit=1, afterId="001"))
        self.assertEqual([r["id"] for r in page], ["002"])
        self.assertEqual(len(self.wdb.requests), requests)

    def test_restartBetweenReadAndAck(self):
        """
        A worker restarted after reading (wazuh-db's marks are gone) and
        before the master acknowledged loses nothing: the next run sends the
        same rows.
        """
        rows = self.wait(self.store.agentInfoToSync())
        self.assertTrue(self.home.child(PENDING_INFO).exists())
        restarted = self.openStore()
        self.assertEqual(self.wait(restarted.agentInfoToSync()), rows)
        self.wait(restarted.markAgentInfoSynced([(r["id"], r["sync_version"]) for r in rows]))
        self.assertEqual(self.wait(self.openStore().agentInfoToSync()), [])

    def test_restartBeforeRowsRead(self):
        """
        When reading the rows of agents marked for a keep-alive fails (the
        marks are gone already), the call fails and the next run, even after
        a restart, reads them.
        """
        self.wdb.knobs.drop("global get-agent-info 2")
        error = self.waitFailure(self.store.agentInfoToSync(), WazuhDBError)
        self.assertEqual(error.code, 2010)
        self.assertEqual(self.model.agentRow(2)["sync_status"], "synced")
        rows = self.wait(self.openStore().agentInfoToSync())
        self.assertEqual([r["id"] for r in rows], ["001", "002"])

    def test_agentGoneBeforeRead(self):
        """
        An agent marked for a keep-alive but deleted before its row is read
        is forgotten.
        """
        self.wdb.knobs.drop("global get-agent-info 2")
        self.waitFailure(self.store.agentInfoToSync(), WazuhDBError)
        self.model.execute("global delete-agent 2")
        self.assertEqual([r["id"] for r in self.wait(self.store.agentInfoToSync())], ["001"])
        self.assertEqual(readRows(self.home.child(PENDING_INFO))[2], [])

    def test_fallbackToClassicPaged(self):
        """
        Without the HTTP API, C{sync-agent-info-get} is read page by page
        over several C{due} chunks.
        """
        self.standins.network.refusing.add(self.standins.httpFactory)
        self.model.maxResponse = 300
        for n in range(4, 12):
            self.insert(n)
            self.report(n, os_name="Debian")
        rows = self.wait(self.store.agentInfoToSync())
        self.assertEqual([r["id"] for r in rows], ["001"] + [f"{n:03d}" for n in range(4, 12)])
        pages = [r for r in self.wdb.requests if r.startswith("global sync-agent-info-get")]
        self.assertGreater(len(pages), 2)

    def test_classicPageFails(self):
        """
        When a later page fails, the pages read before it (no longer marked
        in wazuh-db) are kept: the next call gives every row.
        """
        self.standins.network.refusing.add(self.standins.httpFactory)
        self.model.maxResponse = 300
        for n in range(4, 12):
            self.insert(n)
            self.report(n, os_name="Debian")
        self.wdb.knobs.fail("global sync-agent-info-get last_id 5", "busy")
        error = self.waitFailure(self.store.agentInfoToSync(), WazuhDBError)
        self.assertEqual(error.detail, "busy")
        self.assertEqual(self.model.agentRow(4)["sync_status"], "synced")
        rows = self.wait(self.store.agentInfoToSync())
        self.assertEqual(len(rows), 9)

    def test_classicAnswerLost(self):
        """
        When the answer to a page is lost after wazuh-db cleared its marks
        (its flaw: nothing a reader can do), the pages before it are still
        kept.
        """
        self.standins.network.refusing.add(self.standins.httpFactory)
        self.model.maxResponse = 300
        for n in range(4, 12):
            self.insert(n)
            self.report(n, os_name="Debian")
        self.wdb.knobs.drop("global sync-agent-info-get last_id 5")
        self.assertEqual(self.waitFailure(self.store.agentInfoToSync(), WazuhDBError).code, 2010)
        ids = [r["id"] for r in self.wait(self.store.agentInfoToSync())]
        self.assertEqual(ids[:3], ["001", "004", "005"])

    def test_slowReadWaited(self):
        """
        A slow answer to the read that clears the marks is waited for (a
        late answer is data), longer than other requests.
        """
        self.wdb.knobs.slow("GET /v1/agents/sync", 45)
        d = self.store.agentInfoToSync()
        self.standins.network.advance(45)
        self.assertEqual(len(self.successResultOf(d)), 2)

    def test_slowAnswerThenNextCall(self):
        """
        An answer slower than the timeout fails the call; the next call
        works.
        """
        self.wdb.knobs.slow("global get-agent-info", 60)
        d = self.store.listAgents()
        self.standins.network.advance(30)
        self.assertEqual(self.failureResultOf(d, WazuhDBError).value.code, 2014)
        self.standins.network.advance(30)
        self.assertEqual(len(self.wait(self.store.listAgents())), 3)

    def test_errAnswer(self):
        """
        An C{err} answer fails the call with wazuh-db's message.
        """
        self.wdb.knobs.fail("global get-all-agents", "Cannot execute Global database query; "
                                                     "database is locked")
        error = self.waitFailure(self.store.listAgents(), WazuhDBError)
        self.assertEqual(error.detail, "Cannot execute Global database query; database is locked")
        self.assertIsInstance(error, ClusterError)
        self.assertEqual(len(self.wait(self.store.listAgents())), 3)

    def test_wazuhDbDown(self):
        """
        With wazuh-db down, the call fails; once it is back, the next one
        works.
        """
        self.standins.stopWazuhDB()
        self.assertIsInstance(self.waitFailure(self.store.agentInfoToSync()), WazuhDBError)
        self.standins.startWazuhDB()
        self.assertEqual(len(self.wait(self.store.agentInfoToSync())), 2)


class PendingFileTests(_StoreMixin, SynchronousTestCase):
    """
    The file of the rows kept.
    """

    def setUp(self):
        super().setUp()
        self.insert(1)
        self.report(1)

    def test_format(self):
        """
        One header line, then one row per line.
        """
        [row] = self.wait(self.store.agentInfoToSync())
        lines = self.home.child(PENDING_INFO).getContent().splitlines()
        self.assertEqual(json.loads(lines[0]), {"format": 1, "version": row["sync_version"],
                                                "incomplete": []})
        self.assertEqual([json.loads(line) for line in lines[1:]], [row])
        self.assertEqual(self.home.child(PENDING_INFO).getPermissions().shorthand(), "rw-r-----")

    def test_corruptSetAside(self):
        """
        A file that cannot be read is set aside and logged; the store starts
        empty.
        """
        self.wait(self.store.agentInfoToSync())
        self.home.child(PENDING_INFO).setContent(b"not json\n")
        store = self.openStore()
        self.assertEqual(self.wait(store.agentInfoToSync()), [])
        self.assertTrue(self.home.child(PENDING_INFO + ".corrupt").exists())

    def test_writeFails(self):
        """
        When the rows cannot be written, the call fails (they are kept in
        memory) and a later call writes them.
        """
        self.home.child("queue").makedirs()
        self.home.clusterQueue.setContent(b"a file in the way")
        error = self.waitFailure(self.store.agentInfoToSync(), ClusterError)
        self.assertIn(PENDING_INFO.rsplit("/", 1)[0], str(error))
        self.home.clusterQueue.remove()
        self.assertEqual([r["id"] for r in self.wait(self.store.agentInfoToSync())], ["001"])
        self.assertTrue(self.home.child(PENDING_INFO).exists())


class AgentsTests(_StoreMixin, SynchronousTestCase):
    """
    client.keys and the agent list.
    """

    def test_reconcileInsertsOnly(self):
        """
        Agents of client.keys wazuh-db lacks are inserted; agents wazuh-db
        has and client.keys does not are left to wazuh-modulesd.
        """
        self.insert(1, 2)
        entries = [ClientKey("001", "agent1", "any", KEY), ClientKey("003", "agent3",
                                                                     "10.0.0.3", KEY)]
        self.assertEqual(self.wait(self.store.reconcileClientKeys(entries)), (["003"], []))
        row = self.model.agentRow(3)
        self.assertEqual((row["name"], row["register_ip"], row["date_add"]),
                         ("agent3", "10.0.0.3", NOW))
        self.assertIsNotNone(self.model.agentRow(2))
        self.assertEqual(self.wait(self.store.reconcileClientKeys(entries)), ([], []))

    def test_listAgents(self):
        """
        Every agent, in the store's public form.
        """
        self.insert(1, 2)
        self.report(2, node_name="worker1", version="Wazuh v4.14.7", ip="10.0.0.2")
        self.model.execute("global insert-agent-group default")
        self.model.execute('global set-agent-groups {"mode":"override","sync_status":"synced",'
                           '"data":[{"id":2,"groups":["default"]}]}')
        agents = self.wait(self.store.listAgents())
        self.assertEqual([a["id"] for a in agents], ["001", "002"])
        self.assertEqual(agents[0]["ip"], "any")
        self.assertEqual(agents[0]["status"], "never_connected")
        self.assertEqual(agents[1]["groups"], ["default"])
        self.assertEqual(agents[1]["ip"], "10.0.0.2")
        self.assertEqual(agents[1]["last_keepalive"], "2027-01-15T07:59:55+00:00")
        self.assertIsNone(agents[0]["last_keepalive"])

    def test_countActiveAgents(self):
        """
        Active agents, all or by node.
        """
        self.insert(1, 2, 3)
        self.report(1, node_name="worker1")
        self.report(2, node_name="worker2")
        self.assertEqual(self.wait(self.store.countActiveAgents()), 2)
        self.assertEqual(self.wait(self.store.countActiveAgents("worker2")), 1)


class WorkerGroupsTests(_StoreMixin, SynchronousTestCase):
    """
    Assignments received from the master.
    """

    def setUp(self):
        super().setUp()
        self.insert(1, 2)

    def test_createsMissingGroups(self):
        """
        Groups wazuh-db lacks are created first (it refuses the assignment
        otherwise), then the assignments are stored, synced.
        """
        result = self.wait(self.store.applyGroupAssignments(
            [("001", ["default", "web"], 5), ("002", ["default"], 5)]))
        self.assertEqual(result, (2, 0))
        self.assertEqual((self.groups(1), self.groups(2)), (["default", "web"], ["default"]))
        self.assertEqual(self.model.agentRow(1)["group_sync_status"], "synced")
        self.assertIn("global insert-agent-group web", self.wdb.requests)

    def test_hashEqualsBothBackends(self):
        """
        The global hash is that of the SQLite store holding the same
        assignments.
        """
        self.wait(self.store.applyGroupAssignments(
            [("001", ["default", "web"], 5), ("002", ["default"], 5)]))
        database = AgentDatabase.openBlocking(FilePath(self.mktemp()), managerName="m")
        self.addCleanup(database.close)
        self.successResultOf(database.reconcileClientKeys(
            [ClientKey("001", "agent1", "any", KEY), ClientKey("002", "agent2", "any", KEY)]))
        self.successResultOf(database.applyGroupAssignments(
            [("001", ["default", "web"], 5), ("002", ["default"], 5)]))
        expected = self.successResultOf(database.globalGroupHash())
        self.assertEqual(self.wait(self.store.globalGroupHash()), expected)
        self.assertEqual(storeHash({1: ["default", "web"], 2: ["default"]}), expected)

    def test_noGroupsNoHash(self):
        """
        With no agent in a group the hash is L{None}.
        """
        self.assertIsNone(self.wait(self.store.globalGroupHash()))

    def test_unknownAgentKeptAside(self):
        """
        An assignment for an agent wazuh-db does not know yet is kept (on
        disk) and applied once client.keys brings the agent.
        """
        self.assertEqual(self.wait(self.store.applyGroupAssignments(
            [("003", ["web"], 7)])), (0, 1))
        restarted = self.openStore()
        entries = [ClientKey(f"00{n}", f"agent{n}", "any", KEY) for n in (1, 2, 3)]
        self.assertEqual(self.wait(restarted.reconcileClientKeys(entries)), (["003"], []))
        self.assertEqual(self.groups(3), ["web"])
        self.assertEqual(self.home.child("queue/cluster/agent-groups-pending.json")
                         .getContent(), b"{}")

    def test_fullClearsOthers(self):
        """
        A full table leaves no group to agents absent from it.
        """
        self.wait(self.store.applyGroupAssignments([("001", ["default"], 1),
                                                    ("002", ["default"], 1)]))
        self.wait(self.store.applyGroupAssignments([("001", ["default"], 2)], full=True))
        self.assertEqual((self.groups(1), self.groups(2)), (["default"], []))
        self.assertIn("global recalculate-agent-group-hashes", self.wdb.requests)

    def test_invalidGroup(self):
        """
        A group name Wazuh refuses fails the call (1722) before anything is
        written.
        """
        d = self.store.applyGroupAssignments([("001", ["bad name"], 1)])
        self.assertEqual(self.waitFailure(d, ClusterError).code, 1722)
        self.assertEqual(self.wdb.requests, [])

    def test_malformed(self):
        """
        Malformed rows are a ValueError.
        """
        for rows in ([("001", ["default"], -1)], [("000", [], 1)], [("x", [], 1)]):
            self.waitFailure(self.store.applyGroupAssignments(rows), ValueError)


class MasterTests(_StoreMixin, SynchronousTestCase):
    """
    Agent info stored on the master, group assignments read from it.
    """

    def setUp(self):
        super().setUp()
        self.insert(1, 2, ip="10.0.0.9")

    def test_applyFullRows(self):
        """
        Rows of known agents are stored as full rows (the stored columns
        with the received ones over them), the node name the worker's;
        unknown agents are counted.
        """
        rows = [infoRow("001", os_name="Debian", version="Wazuh v4.14.7", last_keepalive=NOW,
                        labels={"env": "prod"}),
                infoRow("002", status="disconnected", disconnection_time=NOW - 1),
                infoRow("009")]
        self.assertEqual(self.wait(self.store.applyAgentInfo("worker1", rows)), (2, 1))
        one = self.model.agentRow(1)
        self.assertEqual((one["name"], one["ip"], one["os_name"], one["node_name"],
                          one["connection_status"], one["sync_status"]),
                         ("agent1", "10.0.0.9", "Debian", "worker1", "active", "synced"))
        self.assertEqual(self.model.labelsOf(1), [{"key": "env", "value": "prod"}])
        self.assertEqual(self.model.agentRow(2)["disconnection_time"], NOW - 1)
        sets = [r for r in self.wdb.requests if r.startswith("global sync-agent-info-set")]
        [sent] = json.loads(sets[0][len("global sync-agent-info-set "):])[:1]
        self.assertEqual(sent["group_config_status"], "not synced")

    def test_defaultGroup(self):
        """
        An agent seen active with no group gets C{default} (created if
        needed), marked for the local agent-groups read.
        """
        self.wait(self.store.applyAgentInfo("worker1", [infoRow("001"),
                                                        infoRow("002", status="pending")]))
        self.assertEqual((self.groups(1), self.groups(2)), (["default"], []))
        self.assertEqual(self.model.agentRow(1)["group_sync_status"], "syncreq")

    def test_nullIntegerKeeps(self):
        """
        A received integer of L{None} keeps the stored one.
        """
        self.wait(self.store.applyAgentInfo("w", [infoRow("001", last_keepalive=NOW - 9)]))
        self.wait(self.store.applyAgentInfo("w", [infoRow("001", last_keepalive=None)]))
        self.assertEqual(self.model.agentRow(1)["last_keepalive"], NOW - 9)

    def test_agentInfoTuples(self):
        """
        Already validated L{AgentInfo} rows are accepted.
        """
        values = tuple("active" if n == "connection_status" else None for n in AGENT_INFO_FIELDS)
        self.assertEqual(self.wait(self.store.applyAgentInfo(
            "w", [AgentInfo(1, values, None)])), (1, 0))

    def test_malformed(self):
        """
        A malformed row fails the call with nothing stored.
        """
        d = self.store.applyAgentInfo("w", [infoRow("001"), infoRow("002", status="sleeping")])
        self.waitFailure(d, ValueError)
        self.assertEqual(self.wdb.requests, [])

    def test_chunked(self):
        """
        Many rows go in several requests under wazuh-db's 64 KiB.
        """
        for n in range(3, 400):
            self.insert(n)
        rows = [infoRow(f"{n:03d}", os_uname="x" * 300) for n in range(1, 400)]
        self.assertEqual(self.wait(self.store.applyAgentInfo("w", rows)), (399, 0))
        sets = [r for r in self.wdb.requests if r.startswith("global sync-agent-info-set")]
        self.assertGreater(len(sets), 1)
        self.assertTrue(all(len(r.encode()) <= 65536 for r in sets))

    def setGroups(self, pairs):
        for name in {g for _, groups in pairs for g in groups}:
            self.model.execute(f"global insert-agent-group {name}")
        self.assertEqual(self.model.execute("global set-agent-groups " + json.dumps(
            {"mode": "override", "sync_status": "syncreq",
             "data": [{"id": n, "groups": g} for n, g in pairs]})), "ok")

    def test_groupSnapshot(self):
        """
        The first snapshot has every assignment; later ones what changed
        after a version, with the current version and the hash.
        """
        self.setGroups([(1, ["default", "web"]), (2, ["default"])])
        rows, version, hashed = self.wait(self.store.groupSnapshot(0))
        self.assertEqual([(r[0], r[1]) for r in rows],
                         [("001", ["default", "web"]), ("002", ["default"])])
        self.assertEqual(hashed, storeHash({1: ["default", "web"], 2: ["default"]}))
        self.assertEqual(self.wait(self.store.groupSnapshot(version)), ([], version, hashed))
        self.setGroups([(2, ["web"])])
        rows, newVersion, newHash = self.wait(self.store.groupSnapshot(version))
        self.assertEqual(rows, [("002", ["web"], newVersion)])
        self.assertGreater(newVersion, version)
        self.assertNotEqual(newHash, hashed)

    def test_groupedAgentNumbers(self):
        """
        The agents with a group in the last snapshot are those its hash
        counts.
        """
        self.setGroups([(2, ["default"])])
        self.wait(self.store.groupSnapshot(None))
        self.assertEqual(self.wait(self.store.groupedAgentNumbers()), [2])

    def test_snapshotAll(self):
        """
        A snapshot without a version has every agent, those without groups
        too.
        """
        self.setGroups([(1, ["default"])])
        rows, _, _ = self.wait(self.store.groupSnapshot(None))
        self.assertEqual([(r[0], r[1]) for r in rows], [("001", ["default"]), ("002", [])])

    def test_snapshotNoticesRemoval(self):
        """
        A removed agent is not marked as changed: wazuh-db's global hash
        tells, and the table is read again.
        """
        self.setGroups([(1, ["default"]), (2, ["default"])])
        _, version, hashed = self.wait(self.store.groupSnapshot(0))
        self.model.execute("global delete-agent 2")
        rows, _, newHash = self.wait(self.store.groupSnapshot(version))
        self.assertEqual(rows, [])
        self.assertNotEqual(newHash, hashed)
        self.assertEqual(newHash, storeHash({1: ["default"]}))
        self.assertEqual(wazuhHash({1: ["default"]}), self.model.globalHash())

    def test_versionsGrowAcrossRestarts(self):
        """
        A master restarted later hands out higher versions.
        """
        self.setGroups([(1, ["default"])])
        _, version, _ = self.wait(self.store.groupSnapshot(0))
        self.clock.advance(10)
        _, later, _ = self.wait(self.openStore().groupSnapshot(0))
        self.assertGreater(later, version)

    def test_workerHashMatchesMaster(self):
        """
        A worker's wazuh-db holding the master's snapshot has the master's
        hash.
        """
        self.setGroups([(1, ["default", "web"]), (2, ["web"])])
        rows, _, hashed = self.wait(self.store.groupSnapshot(0))
        worker = MemoryStandIns(self.clock)
        worker.wazuhdb.model.execute('global insert-agent {"id":1,"name":"a","date_add":1}')
        worker.wazuhdb.model.execute('global insert-agent {"id":2,"name":"b","date_add":1}')
        home = NodeHome(FilePath(self.mktemp()))
        store = WazuhDBAgentStore(home, worker.classicClient(), worker.httpClient(), self.clock)
        worker.network.flush()
        d = store.applyGroupAssignments(rows, full=True)
        worker.network.flush()
        self.successResultOf(d)
        d = store.globalGroupHash()
        worker.network.flush()
        self.assertEqual(self.successResultOf(d), hashed)


class SyncBodyTests(SynchronousTestCase):
    """
    The incremental reading of C{GET /v1/agents/sync}.
    """

    def test_parse(self):
        """
        The lists come out element by element, whatever the spacing.
        """
        body = ' { "syncreq" : [ {"id":1} , {"id":2,"labels":[{"key":"a","value":"b"}]} ],' \
               '"syncreq_keepalive":[],"syncreq_status":[{"id":3}] } '
        self.assertEqual(iterSyncLists(body), json.loads(body))
        self.assertEqual(iterSyncLists("{}"), {})

    def test_malformed(self):
        """
        Anything but an object of lists is refused.
        """
        from wazuhcluster.wazuhdb.rows import BadRow

        for body in ("[]", '{"syncreq":{}}', '{"syncreq":[1,]}', '{"a":[]} x', '{"a":[]'):
            self.assertRaises(BadRow, iterSyncLists, body)


class SocketStoreTests(TestCase):
    """
    Worker and master stores on real sockets, with real threads for the
    kept rows.
    """

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.workerHome = shortHome(self)
        self.masterHome = shortHome(self)
        self.worker = SocketStandIns(reactor, self.workerHome)
        self.master = SocketStandIns(reactor, self.masterHome)
        for standins in (self.worker, self.master):
            yield standins.start()
            self.addCleanup(standins.stop)

    @defer.inlineCallbacks
    def openStore(self, home):
        store = yield WazuhDBAgentStore.open(home, reactor, timeout=5)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_workerToMaster(self):
        """
        A worker reads its marked agents, restarts before the master
        acknowledged, sends them again; the master stores them; after the
        acknowledgement nothing is left to send.
        """
        for model in (self.worker.wazuhdb.model, self.master.wazuhdb.model):
            for n in (1, 2):
                model.execute(f'global insert-agent {{"id":{n},"name":"agent{n}",'
                              f'"register_ip":"any","date_add":1}}')
        self.worker.wazuhdb.model.execute(
            'global update-keepalive {"id":1,"connection_status":"active",'
            '"sync_status":"syncreq_keepalive","status_code":0}')
        worker = yield self.openStore(self.workerHome)
        rows = yield worker.agentInfoToSync()
        self.assertEqual([r["id"] for r in rows], ["001"])
        yield worker.close()
        worker = yield self.openStore(self.workerHome)
        again = yield worker.agentInfoToSync()
        self.assertEqual(again, rows)
        master = yield self.openStore(self.masterHome)
        result = yield master.applyAgentInfo(
            "worker1", [{k: v for k, v in r.items() if k != "sync_version"} for r in again])
        self.assertEqual(result, (1, 0))
        stored = self.master.wazuhdb.model.agentRow(1)
        self.assertEqual((stored["node_name"], stored["connection_status"]),
                         ("worker1", "active"))
        yield worker.markAgentInfoSynced([(r["id"], r["sync_version"]) for r in again])
        yield worker.close()
        worker = yield self.openStore(self.workerHome)
        self.assertEqual((yield worker.agentInfoToSync()), [])
        snapshot = yield master.groupSnapshot(0)
        self.assertEqual(snapshot[0][0][:2], ("001", ["default"]))
