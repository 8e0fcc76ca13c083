# -*- test-case-name: tests.test_agentdb -*-
"""
Tests for L{wazuhcluster.agentdb}.

Every behaviour is checked on both backends, SQLite and PostgreSQL (a real
server, from L{tests.pg}), and on each through the thread pool of
L{twisted.enterprise.adbapi} (as the daemons use it, with the real reactor)
and through the blocking pool (as the CLI uses it): one mixin per concern,
made into four test cases by L{_allBackends}.
"""

import sqlite3

import psycopg
from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from wazuhcluster.agentdb import (
    AGENT_INFO_FIELDS,
    DEFAULT_GROUP,
    SCHEMA_VERSION,
    AgentDatabase,
    AgentInfo,
    groupHash,
)
from wazuhcluster.agentdb.dialect import POSTGRESQL
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.clientkeys import ClientKey
from wazuhcluster.errors import ClusterError
from tests.pg import freshDatabase

KEY = "0" * 64


def keys(*specs):
    """
    L{ClientKey}s from C{(id, name)} pairs, IP C{any}.
    """
    return [ClientKey(f"{n:03d}", name, "any", KEY) for n, name in specs]


def infoRow(agentId, status="active", **fields):
    """
    An agent-info row as a worker sends it.
    """
    row = {name: None for name in AGENT_INFO_FIELDS}
    row.update(id=agentId, connection_status=status, labels={}, sync_version=1)
    row.update(fields)
    return row


class _DatabaseMixin:
    """
    Helpers to open databases by name; C{openDatabase(name)}, C{rows(name,
    sql, params)} (a query run apart from the L{AgentDatabase}, on a
    connection of its own) and C{tableNames(name)} are provided per backend
    and pool kind.
    """

    def setUp(self):
        self.dir = FilePath(self.mktemp())

    @defer.inlineCallbacks
    def database(self, name="global.db", agents=()):
        """
        Open the database C{name} of this test, closed at cleanup, holding
        C{agents} (from C{client.keys} entries).
        """
        db = yield self.openDatabase(name)
        self.addCleanup(db.close)
        if agents:
            yield db.reconcileClientKeys(agents)
        return db


class _SchemaTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_created(self):
        """
        A new database is created in WAL mode with the current schema
        version, its parent directory created, and only the manager's row
        (which is never listed).
        """
        db = yield self.database()
        self.assertEqual((yield db.schemaVersion()), SCHEMA_VERSION)
        self.assertEqual((yield db.journalMode()), self.journalMode)
        self.assertEqual(db.backend, self.backend)
        self.assertEqual((yield db.listAgents()), [])
        self.assertIsNone((yield db.getAgent("000")))
        self.assertEqual(
            self.rows("global.db", "SELECT id, name FROM agent"), [(0, "manager")]
        )
        self.assertTrue(
            {"metadata", "agent", "labels", "group", "belongs", "pending_groups"}
            <= self.tableNames("global.db")
        )

    @defer.inlineCallbacks
    def test_providesAgentStore(self):
        """
        L{AgentDatabase} provides L{IAgentStore}, every method with its
        declared signature.
        """
        db = yield self.database()
        self.assertTrue(verifyObject(IAgentStore, db))

    @defer.inlineCallbacks
    def test_reopen(self):
        """
        Reopening a database keeps its content and version.
        """
        db = yield self.openDatabase("global.db")
        yield db.addAgent("001", "a", "any", KEY, ["g1"])
        yield db.close()
        db = yield self.database()
        self.assertEqual([a["name"] for a in (yield db.listAgents())], ["a"])
        self.assertEqual((yield db.schemaVersion()), SCHEMA_VERSION)
        self.assertEqual((yield db.allGroupAssignments()), ([("001", ["g1"], 1)], 1))

    @defer.inlineCallbacks
    def test_newerSchemaRefused(self):
        """
        A database written by a newer schema version is refused with a
        clear error instead of being used.
        """
        db = yield self.openDatabase("global.db")
        yield db.close()
        self.rows(
            "global.db",
            "UPDATE metadata SET value = ? WHERE key = 'db_version'",
            (SCHEMA_VERSION + 1,),
        )
        error = yield self.assertFailure(self.openDatabase("global.db"), ClusterError)
        self.assertIn("newer than the supported version", str(error))


class _ManagementTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_addListRemove(self):
        """
        Added agents are listed by ID with the public fields; a removed one
        is gone.
        """
        db = yield self.database()
        self.assertEqual((yield db.addAgent("2", "b", "10.0.0.2", KEY)), "002")
        yield db.addAgent("001", "a", "any", KEY, ["g1", "g2"])
        agents = yield db.listAgents()
        self.assertEqual(
            agents[0],
            {
                "id": "001",
                "name": "a",
                "ip": "any",
                "status": "never_connected",
                "version": None,
                "node_name": None,
                "groups": ["g1", "g2"],
                "os_name": None,
                "os_version": None,
                "last_keepalive": None,
            },
        )
        self.assertEqual([a["id"] for a in agents], ["001", "002"])
        yield db.removeAgent("001")
        self.assertEqual([a["id"] for a in (yield db.listAgents())], ["002"])
        self.assertIsNone((yield db.getAgent("001")))

    @defer.inlineCallbacks
    def test_addDuplicate(self):
        """
        Adding an agent whose ID or name is taken fails with Wazuh's codes
        1708 and 1705; adding 000 fails with 1703.
        """
        db = yield self.database()
        yield db.addAgent("001", "a", "any", KEY)
        error = yield self.assertFailure(
            db.addAgent("001", "b", "any", KEY), ClusterError
        )
        self.assertEqual(error.code, 1708)
        error = yield self.assertFailure(
            db.addAgent("002", "a", "any", KEY), ClusterError
        )
        self.assertEqual(error.code, 1705)
        error = yield self.assertFailure(
            db.addAgent("000", "m", "any", KEY), ClusterError
        )
        self.assertEqual(error.code, 1703)

    @defer.inlineCallbacks
    def test_removeErrors(self):
        """
        Removing an unknown or malformed ID fails with 1701, removing the
        manager with 1703.
        """
        db = yield self.database()
        for bad in ["007", "abc"]:
            error = yield self.assertFailure(db.removeAgent(bad), ClusterError)
            self.assertEqual(error.code, 1701)
        error = yield self.assertFailure(db.removeAgent("000"), ClusterError)
        self.assertEqual(error.code, 1703)

    @defer.inlineCallbacks
    def test_removeCascades(self):
        """
        Removing an agent removes its labels and group memberships.
        """
        db = yield self.database()
        yield db.addAgent("001", "a", "any", KEY, ["g1"])
        yield db.reportAgent("001", labels={"k": "v"}, now=10)
        yield db.removeAgent("001")
        self.assertEqual(self.rows("global.db", "SELECT * FROM labels"), [])
        self.assertEqual(self.rows("global.db", "SELECT * FROM belongs"), [])

    @defer.inlineCallbacks
    def test_groupsStoredInBelongs(self):
        """
        Group assignments fill the C{group} and C{belongs} tables, with the
        list order as priority, repeats dropped.
        """
        db = yield self.database(agents=keys((1, "a")))
        yield db.setAgentGroups("001", ["g2", "g1", "g2"])
        self.assertEqual((yield db.getAgent("001"))["groups"], ["g2", "g1"])
        self.assertEqual(
            self.rows(
                "global.db",
                'SELECT g.name, b.priority FROM belongs b JOIN "group" g '
                "ON g.id = b.id_group ORDER BY b.priority",
            ),
            [("g2", 0), ("g1", 1)],
        )

    @defer.inlineCallbacks
    def test_invalidGroupName(self):
        """
        A group name Wazuh would refuse fails with 1722.
        """
        db = yield self.database(agents=keys((1, "a")))
        for bad in ["a,b", "../x", "", "a b"]:
            error = yield self.assertFailure(
                db.setAgentGroups("001", [bad]), ClusterError
            )
            self.assertEqual(error.code, 1722)

    @defer.inlineCallbacks
    def test_countActiveAgents(self):
        """
        Active agents are counted overall and per node.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        yield db.reportAgent("001", nodeName="w1", now=1)
        yield db.reportAgent("002", nodeName="w2", now=1)
        yield db.reportAgent("003", status="disconnected", nodeName="w1", now=1)
        self.assertEqual((yield db.countActiveAgents()), 2)
        self.assertEqual((yield db.countActiveAgents("w1")), 1)
        self.assertEqual((yield db.countActiveAgents("w3")), 0)


class _ReconcileTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_reconcile(self):
        """
        Reconciling adds agents new in C{client.keys}, deletes those no
        longer in it, and updates names, IPs and keys of the others.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        added, removed = yield db.reconcileClientKeys(
            [
                ClientKey("001", "a", "any", KEY),
                ClientKey("003", "c2", "10.0.0.3", "1" * 64),
                ClientKey("004", "d", "any", KEY),
            ]
        )
        self.assertEqual((added, removed), (["004"], ["002"]))
        agents = yield db.listAgents()
        self.assertEqual(
            [(a["id"], a["name"], a["ip"]) for a in agents],
            [("001", "a", "any"), ("003", "c2", "10.0.0.3"), ("004", "d", "any")],
        )
        self.assertEqual((yield db.getAgent("003"))["internal_key"], "1" * 64)

    @defer.inlineCallbacks
    def test_reconcileIdempotent(self):
        """
        Reconciling the same entries again changes nothing.
        """
        db = yield self.database(agents=keys((1, "a")))
        self.assertEqual((yield db.reconcileClientKeys(keys((1, "a")))), ([], []))


class _AgentInfoTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_reportMarksSyncreq(self):
        """
        A report stores status, OS, version, labels and node, and marks the
        row for sync with a bumped C{sync_version}.
        """
        db = yield self.database(agents=keys((1, "a")))
        version = yield db.reportAgent(
            "001",
            os={"os_name": "Ubuntu", "os_version": "22.04"},
            version="Wazuh v4.14.0",
            labels={"env": "prod"},
            nodeName="worker1",
            now=1700000000,
        )
        self.assertEqual(version, 1)
        agent = yield db.getAgent("001")
        self.assertEqual(agent["sync_status"], "syncreq")
        self.assertEqual(agent["connection_status"], "active")
        self.assertEqual(agent["os_name"], "Ubuntu")
        self.assertEqual(agent["version"], "Wazuh v4.14.0")
        self.assertEqual(agent["node_name"], "worker1")
        self.assertEqual(agent["labels"], {"env": "prod"})
        self.assertEqual(agent["last_keepalive"], "2023-11-14T22:13:20+00:00")
        self.assertEqual((yield db.reportAgent("001", status="disconnected", now=5)), 2)
        agent = yield db.getAgent("001")
        self.assertEqual(agent["disconnection_time"], 5)
        self.assertEqual(agent["os_name"], "Ubuntu")
        self.assertEqual(agent["labels"], {"env": "prod"})

    @defer.inlineCallbacks
    def test_reportErrors(self):
        """
        Reporting an unknown agent fails with 1701 naming it; an invalid
        status or OS field fails; nothing is marked.
        """
        db = yield self.database(agents=keys((1, "a")))
        error = yield self.assertFailure(db.reportAgent("009"), ClusterError)
        self.assertEqual(error.code, 1701)
        self.assertIn("009", str(error))
        yield self.assertFailure(db.reportAgent("001", status="dancing"), ClusterError)
        yield self.assertFailure(
            db.reportAgent("001", os={"colour": "red"}), ValueError
        )
        self.assertEqual((yield db.agentInfoToSync()), [])

    @defer.inlineCallbacks
    def test_toSyncAndMarkSynced(self):
        """
        Marked rows are read with their versions and labels, by ID, up to a
        limit and after a given ID; once marked synced they are not read
        again.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        yield db.reportAgent("003", labels={"x": "3"}, now=1)
        yield db.reportAgent("001", labels={"x": "1"}, now=1)
        yield db.reportAgent("001", now=2)
        rows = yield db.agentInfoToSync(limit=1)
        self.assertEqual(
            [(r["id"], r["sync_version"], r["labels"]) for r in rows],
            [("001", 2, {"x": "1"})],
        )
        rows = yield db.agentInfoToSync(limit=5, afterId="001")
        self.assertEqual([(r["id"], r["labels"]) for r in rows], [("003", {"x": "3"})])
        rows = yield db.agentInfoToSync()
        self.assertEqual(
            [(r["id"], r["labels"]) for r in rows],
            [("001", {"x": "1"}), ("003", {"x": "3"})],
        )
        self.assertEqual(
            set(rows[0]), set(AGENT_INFO_FIELDS) | {"id", "sync_version", "labels"}
        )
        marked = yield db.markAgentInfoSynced(
            [(r["id"], r["sync_version"]) for r in rows]
        )
        self.assertEqual(marked, 2)
        self.assertEqual((yield db.agentInfoToSync()), [])

    @defer.inlineCallbacks
    def test_rowChangedDuringSyncStaysMarked(self):
        """
        A row reported again after it was read for a sync is not marked
        synced by that sync's acknowledgement: it is sent next time, with
        its new data.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b")))
        yield db.reportAgent("001", os={"os_name": "old"}, now=1)
        yield db.reportAgent("002", now=1)
        sent = yield db.agentInfoToSync()
        yield db.reportAgent("001", os={"os_name": "new"}, now=2)
        marked = yield db.markAgentInfoSynced(
            [(r["id"], r["sync_version"]) for r in sent]
        )
        self.assertEqual(marked, 1)
        pending = yield db.agentInfoToSync()
        self.assertEqual([(r["id"], r["os_name"]) for r in pending], [("001", "new")])
        self.assertEqual((yield db.getAgent("001"))["sync_status"], "syncreq")
        self.assertEqual((yield db.getAgent("002"))["sync_status"], "synced")

    @defer.inlineCallbacks
    def test_applyAgentInfoKnownOnly(self):
        """
        The master stores rows of agents it knows (fields, labels replaced,
        C{node_name} of the sending worker) and counts the others without
        creating them.
        """
        master = yield self.database("master.db", agents=keys((1, "a"), (2, "b")))
        yield master.reportAgent("002", labels={"old": "1"}, now=1)
        rows = [
            infoRow(
                "001",
                os_name="Debian",
                version="v1",
                last_keepalive=50,
                labels={"k": "v"},
            ),
            infoRow("002", status="disconnected", disconnection_time=60),
            infoRow("009"),
        ]
        self.assertEqual((yield master.applyAgentInfo("worker1", rows)), (2, 1))
        first = yield master.getAgent("001")
        self.assertEqual(
            (first["os_name"], first["version"], first["node_name"], first["labels"]),
            ("Debian", "v1", "worker1", {"k": "v"}),
        )
        second = yield master.getAgent("002")
        self.assertEqual(
            (
                second["connection_status"],
                second["disconnection_time"],
                second["labels"],
            ),
            ("disconnected", 60, {}),
        )
        self.assertIsNone((yield master.getAgent("009")))
        self.assertEqual((yield master.countActiveAgents("worker1")), 1)

    @defer.inlineCallbacks
    def test_applyAgentInfoFromWorker(self):
        """
        Rows read on a worker with L{AgentDatabase.agentInfoToSync} are
        stored on the master as reported.
        """
        worker = yield self.database("worker.db", agents=keys((1, "a")))
        master = yield self.database("master.db", agents=keys((1, "a")))
        yield worker.reportAgent(
            "001",
            os={"os_name": "Alma", "os_arch": "x86_64"},
            labels={"a": "b"},
            nodeName="worker1",
            now=100,
        )
        rows = yield worker.agentInfoToSync()
        self.assertEqual((yield master.applyAgentInfo("worker1", rows)), (1, 0))
        agent = yield master.getAgent("001")
        self.assertEqual(
            (
                agent["os_name"],
                agent["os_arch"],
                agent["labels"],
                agent["last_keepalive"],
            ),
            ("Alma", "x86_64", {"a": "b"}, "1970-01-01T00:01:40+00:00"),
        )

    @defer.inlineCallbacks
    def test_applyAgentInfoMalformed(self):
        """
        A batch with a malformed row is refused as a whole: nothing is
        stored.
        """
        master = yield self.database(agents=keys((1, "a"), (2, "b")))
        for bad in [
            infoRow("abc"),
            infoRow("002", status="dancing"),
            infoRow("002", status_code="zero"),
            infoRow("002", os_name=["x"]),
            infoRow("002", labels={"k": 1}),
        ]:
            yield self.assertFailure(
                master.applyAgentInfo("w1", [infoRow("001", os_name="X"), bad]),
                ValueError,
            )
        self.assertIsNone((yield master.getAgent("001"))["os_name"])

    @defer.inlineCallbacks
    def test_defaultGroupOnFirstActive(self):
        """
        An agent seen active for the first time with no group gets
        C{default} with a new group version; an agent with groups, one only
        seen disconnected, and one whose groups were cleared on purpose do
        not.
        """
        master = yield self.database(
            agents=keys((1, "a"), (2, "b"), (3, "c"), (4, "d"))
        )
        yield master.setAgentGroups("002", ["g1"])
        yield master.setAgentGroups("004", [])
        rows = [
            infoRow("001"),
            infoRow("002"),
            infoRow("003", status="disconnected"),
            infoRow("004"),
        ]
        yield master.applyAgentInfo("w1", rows)
        changes, current = yield master.groupChangesSince(2)
        self.assertEqual(changes, [("001", [DEFAULT_GROUP], 3)])
        self.assertEqual(current, 3)
        yield master.applyAgentInfo("w1", rows)
        self.assertEqual((yield master.groupChangesSince(3)), ([], 3))
        self.assertEqual((yield master.getAgent("003"))["groups"], [])
        self.assertEqual((yield master.getAgent("004"))["groups"], [])


    @defer.inlineCallbacks
    def test_defaultGroupForManyAgents(self):
        """
        Many agents seen active for the first time in one batch all get
        C{default} with one new group version, in C{belongs} too; their
        labels are replaced; already validated L{AgentInfo} rows are stored
        like dicts.
        """
        agents = keys(*[(n, f"a{n}") for n in range(1, 61)])
        master = yield self.database("master.db", agents=agents)
        yield master.setAgentGroups("060", ["g1"])
        for n in range(1, 61):
            yield master.reportAgent(f"{n:03d}", labels={"old": "x"}, now=1)
        rows = [infoRow(f"{n:03d}", labels={"k": str(n)}) for n in range(1, 31)]
        rows += [
            AgentInfo(n, tuple(infoRow("x")[f] for f in AGENT_INFO_FIELDS), {"k": str(n)})
            for n in range(31, 61)
        ]
        self.assertEqual((yield master.applyAgentInfo("w1", rows)), (60, 0))
        changes, current = yield master.groupChangesSince(1)
        self.assertEqual(current, 2)
        self.assertEqual(changes, [(f"{n:03d}", [DEFAULT_GROUP], 2) for n in range(1, 60)])
        agent = yield master.getAgent("059")
        self.assertEqual(
            (agent["groups"], agent["group_hash"], agent["group_sync_status"],
             agent["labels"], agent["node_name"]),
            ([DEFAULT_GROUP], groupHash([DEFAULT_GROUP]), "syncreq", {"k": "59"}, "w1"),
        )
        self.assertEqual((yield master.getAgent("060"))["groups"], ["g1"])
        self.assertEqual(
            self.rows(
                "master.db",
                'SELECT b.id_agent, g.name, b.priority FROM belongs b JOIN "group" g '
                "ON g.id = b.id_group ORDER BY b.id_agent",
            ),
            [(n, DEFAULT_GROUP, 0) for n in range(1, 60)] + [(60, "g1", 0)],
        )
        self.assertEqual(self.rows("master.db", "SELECT COUNT(*) FROM labels"), [(60,)])

class _AgentInfoBatchTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_duplicateRowsLikeInTurn(self):
        """
        A batch with several rows of one agent stores what storing them one
        after the other stores: later text values win, a L{None} integer
        keeps the earlier row's, the last labels given win; the agent is
        counted once per row.
        """
        agents = keys((1, "a"), (2, "b"))
        together = yield self.database("together.db", agents=agents)
        inTurn = yield self.database("inturn.db", agents=agents)
        rows = [
            infoRow("001", os_name="A", last_keepalive=10, labels={"k": "1"}),
            infoRow("002", status="disconnected"),
            infoRow("001", os_name="B", last_keepalive=None, status_code=3, labels=None),
            infoRow("001", os_name="C", disconnection_time=5, labels=None),
            infoRow("009"),
        ]
        self.assertEqual((yield together.applyAgentInfo("w1", rows)), (4, 1))
        for row in rows:
            yield inTurn.applyAgentInfo("w1", [row])
        for agentId in ("001", "002"):
            one, other = (yield together.getAgent(agentId)), (yield inTurn.getAgent(agentId))
            del one["date_add"], other["date_add"]
            self.assertEqual(one, other)
        agent = yield together.getAgent("001")
        self.assertEqual(
            (agent["os_name"], agent["last_keepalive"], agent["status_code"],
             agent["disconnection_time"], agent["labels"]),
            ("C", "1970-01-01T00:00:10+00:00", 3, 5, {"k": "1"}),
        )

    @defer.inlineCallbacks
    def test_labelsReplacedOnlyWhenGiven(self):
        """
        Labels repeated unchanged stay; changed ones are replaced; an empty
        dict clears them; no C{labels} keeps them.
        """
        db = yield self.database(agents=keys((1, "a")))
        yield db.applyAgentInfo("w1", [infoRow("001", labels={"a": "1", "b": "2"})])
        yield db.applyAgentInfo("w1", [infoRow("001", labels={"a": "1", "b": "2"})])
        self.assertEqual((yield db.getAgent("001"))["labels"], {"a": "1", "b": "2"})
        yield db.applyAgentInfo("w1", [infoRow("001", labels={"b": "3"})])
        self.assertEqual((yield db.getAgent("001"))["labels"], {"b": "3"})
        row = infoRow("001")
        del row["labels"]
        yield db.applyAgentInfo("w1", [row])
        self.assertEqual((yield db.getAgent("001"))["labels"], {"b": "3"})
        yield db.applyAgentInfo("w1", [infoRow("001", labels={})])
        self.assertEqual((yield db.getAgent("001"))["labels"], {})

    @defer.inlineCallbacks
    def test_manyRowsInOneBatch(self):
        """
        A batch larger than one C{IN} list (over 500 agents) is stored
        whole, with its unknown agents counted.
        """
        db = yield self.database(agents=keys(*[(n, f"a{n}") for n in range(1, 1201)]))
        rows = [infoRow(f"{n:03d}", os_name=f"os{n}", labels={"n": str(n)})
                for n in range(1, 1301)]
        self.assertEqual((yield db.applyAgentInfo("w1", rows)), (1200, 100))
        self.assertEqual((yield db.countActiveAgents("w1")), 1200)
        agent = yield db.getAgent("1200")
        self.assertEqual((agent["os_name"], agent["labels"], agent["groups"]),
                         ("os1200", {"n": "1200"}, [DEFAULT_GROUP]))

    @defer.inlineCallbacks
    def test_nulCharacterRefused(self):
        """
        A text value neither backend can store as given (a NUL character on
        PostgreSQL) fails the batch as malformed or stores it unchanged:
        never a half-stored batch.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b")))
        rows = [infoRow("001", os_name="fine"), infoRow("002", os_name="bad\0x")]
        try:
            yield db.applyAgentInfo("w1", rows)
        except ValueError:
            self.assertIsNone((yield db.getAgent("001"))["os_name"])
        else:
            self.assertEqual((yield db.getAgent("002"))["os_name"], "bad\0x")


class _GroupSyncTests(_DatabaseMixin):
    @defer.inlineCallbacks
    def test_groupVersioning(self):
        """
        Every assignment change takes the next global version;
        C{groupChangesSince(n)} returns exactly the agents changed after
        version C{n}, with the current version.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        self.assertEqual((yield db.groupChangesSince(0)), ([], 0))
        self.assertEqual((yield db.setAgentGroups("001", ["g1"])), 1)
        self.assertEqual((yield db.setAgentGroups("002", ["g2", "g1"])), 2)
        self.assertEqual((yield db.setAgentGroups("001", ["g3"])), 3)
        yield db.addAgent("004", "d", "any", KEY, ["g4"])
        self.assertEqual(
            (yield db.groupChangesSince(2)),
            ([("001", ["g3"], 3), ("004", ["g4"], 4)], 4),
        )
        self.assertEqual(
            (yield db.groupChangesSince(0))[0],
            [("001", ["g3"], 3), ("002", ["g2", "g1"], 2), ("004", ["g4"], 4)],
        )
        rows, current = yield db.allGroupAssignments()
        self.assertEqual([r[0] for r in rows], ["001", "002", "003", "004"])
        self.assertEqual(rows[2], ("003", [], 0))
        self.assertEqual(current, 4)
        agent = yield db.getAgent("002")
        self.assertEqual(agent["group_hash"], groupHash(["g2", "g1"]))
        self.assertEqual(agent["group_sync_status"], "syncreq")

    @defer.inlineCallbacks
    def test_globalHashEqualAfterApply(self):
        """
        A worker that applied the master's assignments has the master's
        global group hash; the hash changes with any assignment and is
        L{None} when no agent has a group.
        """
        agents = keys((1, "a"), (2, "b"), (3, "c"))
        master = yield self.database("master.db", agents=agents)
        worker = yield self.database("worker.db", agents=agents)
        self.assertIsNone((yield master.globalGroupHash()))
        self.assertIsNone((yield worker.globalGroupHash()))
        yield master.setAgentGroups("001", ["g1"])
        yield master.setAgentGroups("003", ["g2", "default"])
        rows, _ = yield master.groupChangesSince(0)
        self.assertEqual((yield worker.applyGroupAssignments(rows)), (2, 0))
        masterHash = yield master.globalGroupHash()
        self.assertIsNotNone(masterHash)
        self.assertEqual((yield worker.globalGroupHash()), masterHash)
        yield master.setAgentGroups("003", ["default", "g2"])
        self.assertNotEqual((yield master.globalGroupHash()), masterHash)
        agent = yield worker.getAgent("003")
        self.assertEqual(
            (agent["groups"], agent["group_version"], agent["group_sync_status"]),
            (["g2", "default"], 2, "synced"),
        )

    @defer.inlineCallbacks
    def test_globalHashSeesSwappedAssignments(self):
        """
        Two nodes whose agents hold the same groups but swapped have
        different global hashes.
        """
        agents = keys((1, "a"), (2, "b"))
        one = yield self.database("one.db", agents=agents)
        two = yield self.database("two.db", agents=agents)
        yield one.applyGroupAssignments([("001", ["g1"], 1), ("002", ["g2"], 1)])
        yield two.applyGroupAssignments([("001", ["g2"], 1), ("002", ["g1"], 1)])
        self.assertNotEqual(
            (yield one.globalGroupHash()), (yield two.globalGroupHash())
        )

    @defer.inlineCallbacks
    def test_fullApplyClearsAbsent(self):
        """
        A full apply clears the groups of agents absent from it; an
        incremental apply leaves them alone.
        """
        worker = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        yield worker.applyGroupAssignments([("001", ["g1"], 1), ("002", ["g2"], 2)])
        yield worker.applyGroupAssignments([("003", ["g3"], 3)])
        groups = [a["groups"] for a in (yield worker.listAgents())]
        self.assertEqual(groups, [["g1"], ["g2"], ["g3"]])
        yield worker.applyGroupAssignments([("002", ["g9"], 7)], full=True)
        groups = [a["groups"] for a in (yield worker.listAgents())]
        self.assertEqual(groups, [[], ["g9"], []])

    @defer.inlineCallbacks
    def test_fullApplyMatchesMasterHash(self):
        """
        After a full apply of the master's whole table, a worker that had
        diverged has the master's global hash.
        """
        agents = keys((1, "a"), (2, "b"), (3, "c"))
        master = yield self.database("master.db", agents=agents)
        worker = yield self.database("worker.db", agents=agents)
        yield master.setAgentGroups("001", ["g1"])
        yield worker.applyGroupAssignments([("002", ["stale"], 1), ("003", ["g3"], 1)])
        rows, _ = yield master.allGroupAssignments()
        yield worker.applyGroupAssignments(rows, full=True)
        self.assertEqual(
            (yield worker.globalGroupHash()), (yield master.globalGroupHash())
        )

    @defer.inlineCallbacks
    def test_assignmentBeforeClientKeys(self):
        """
        An assignment received for an agent the worker does not know yet is
        counted as pending and applied when C{client.keys} brings the agent.
        """
        worker = yield self.database(agents=keys((1, "a")))
        result = yield worker.applyGroupAssignments(
            [("001", ["g1"], 1), ("002", ["g2"], 2)]
        )
        self.assertEqual(result, (1, 1))
        yield worker.reconcileClientKeys(keys((1, "a"), (2, "b")))
        agent = yield worker.getAgent("002")
        self.assertEqual((agent["groups"], agent["group_version"]), (["g2"], 2))

    @defer.inlineCallbacks
    def test_applyGroupAssignmentsMalformed(self):
        """
        Malformed assignment rows are refused as a whole.
        """
        worker = yield self.database(agents=keys((1, "a")))
        yield self.assertFailure(
            worker.applyGroupAssignments([("001", ["g1"], 1), ("x", ["g"], 1)]),
            ValueError,
        )
        yield self.assertFailure(
            worker.applyGroupAssignments([("001", ["g1"], "1")]), ValueError
        )
        yield self.assertFailure(
            worker.applyGroupAssignments([("001", ["a,b"], 1)]), ClusterError
        )
        self.assertEqual((yield worker.getAgent("001"))["groups"], [])


    @defer.inlineCallbacks
    def test_sharedAssignmentsLikeSingleOnes(self):
        """
        Assignments applied many at a time (many agents sharing groups and
        version) leave the same rows as the same assignments applied one by
        one.
        """
        agents = keys(*[(n, f"a{n}") for n in range(1, 81)])
        many = yield self.database("many.db", agents=agents)
        single = yield self.database("single.db", agents=agents)
        rows = [(f"{n:03d}", ["g2", "g1"], 5) for n in range(1, 41)]
        rows += [(f"{n:03d}", ["g1"], 6) for n in range(41, 81)]
        again = [(f"{n:03d}", ["g3"], 7) for n in range(21, 61)]
        yield many.applyGroupAssignments(rows)
        yield many.applyGroupAssignments(again)
        for row in rows + again:
            yield single.applyGroupAssignments([row])
        self.assertEqual(
            (yield many.globalGroupHash()), (yield single.globalGroupHash())
        )
        self.assertEqual((yield many.listAgents()), (yield single.listAgents()))
        tables = []
        for name in ("many.db", "single.db"):
            tables.append(
                self.rows(
                    name,
                    'SELECT b.id_agent, g.name, b.priority FROM belongs b JOIN "group" g '
                    "ON g.id = b.id_group ORDER BY b.id_agent, b.priority",
                )
            )
        self.assertEqual(tables[0], tables[1])
        self.assertEqual(len(tables[0]), 20 * 2 + 40 + 20)

    @defer.inlineCallbacks
    def test_setGroupsOfAgents(self):
        """
        Many agents get the same groups in one change, one new version;
        unknown IDs are skipped, 000 and bad group names refused.
        """
        db = yield self.database(agents=keys(*[(n, f"a{n}") for n in range(1, 31)]))
        yield db.setAgentGroups("030", ["keep"])
        result = yield db.setGroupsOfAgents(
            [f"{n:03d}" for n in range(1, 26)] + ["077"], ["g1", "default"])
        self.assertEqual(result, (2, 25))
        self.assertEqual(
            (yield db.groupChangesSince(1)),
            ([(f"{n:03d}", ["g1", "default"], 2) for n in range(1, 26)], 2),
        )
        error = yield self.assertFailure(db.setGroupsOfAgents(["000"], ["g"]), ClusterError)
        self.assertEqual(error.code, 1703)
        error = yield self.assertFailure(db.setGroupsOfAgents(["001"], ["a b"]), ClusterError)
        self.assertEqual(error.code, 1722)

    @defer.inlineCallbacks
    def test_groupSnapshot(self):
        """
        L{AgentDatabase.groupSnapshot} gives the changes after a version
        (every assignment for L{None}), the current version and the global
        hash, as the separate queries do.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        self.assertEqual((yield db.groupSnapshot(0)), ([], 0, None))
        yield db.setAgentGroups("001", ["g1"])
        yield db.setAgentGroups("003", ["g2"])
        expected = yield db.globalGroupHash()
        self.assertEqual(
            (yield db.groupSnapshot(1)), ([("003", ["g2"], 2)], 2, expected)
        )
        rows, version = yield db.allGroupAssignments()
        self.assertEqual((yield db.groupSnapshot(None)), (rows, version, expected))

class _ConcurrentWriterTests(_DatabaseMixin):
    """
    Two masters (two connections to one database) and the CLI writing at
    the same time.
    """

    @defer.inlineCallbacks
    def test_concurrentGroupChanges(self):
        """
        Group changes made at the same time through two connections each
        take a unique version, and every agent keeps the groups of the
        change with its highest version.
        """
        one = yield self.database("shared", agents=keys(*[(n, f"a{n}") for n in range(1, 11)]))
        two = yield self.database("shared")
        changes = [(f"{i % 10 + 1:03d}", [f"g{i}"]) for i in range(40)]
        versions = yield defer.gatherResults(
            [(one, two)[i % 2].setAgentGroups(agentId, groups)
             for i, (agentId, groups) in enumerate(changes)]
        )
        self.assertEqual(sorted(versions), list(range(1, 41)))
        latest = {}
        for (agentId, groups), version in zip(changes, versions):
            if version > latest.get(agentId, (0, None))[0]:
                latest[agentId] = (version, groups)
        rows, current = yield two.groupChangesSince(0)
        self.assertEqual(current, 40)
        self.assertEqual({agentId: (v, g) for agentId, g, v in rows}, latest)

    @defer.inlineCallbacks
    def test_concurrentAddSameName(self):
        """
        Adding agents of the same name through two connections at the same
        time: one add wins, the other fails with 1705.
        """
        one = yield self.database("shared")
        two = yield self.database("shared")
        results = []
        for n in range(1, 41, 2):
            pair = yield defer.DeferredList(
                [one.addAgent(n, f"same{n}", "any", KEY),
                 two.addAgent(n + 1, f"same{n}", "any", KEY)],
                consumeErrors=True,
            )
            results.append(sorted(
                "ok" if ok else str(value.value.code) for ok, value in pair))
        self.assertEqual(results, [["1705", "ok"]] * 20)
        self.assertEqual(len((yield one.listAgents())), 20)


class GroupHashTests(SynchronousTestCase):
    """
    Tests for L{groupHash}.
    """

    def test_groupHash(self):
        """
        An agent's group hash is the first 8 hex digits of the SHA-1 of its
        comma-separated groups, and L{None} for no group.
        """
        self.assertEqual(groupHash(["default"]), "7505d64a")
        self.assertEqual(groupHash(["a", "b"]), "5d8b1241")
        self.assertIsNone(groupHash([]))


class _SQLite:
    """
    The SQLite backend: one file per database name in the test's directory.
    """

    backend = "sqlite"
    journalMode = "wal"

    def rows(self, name, sql, params=()):
        connection = sqlite3.connect(self.dir.child(name).path, isolation_level=None)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def tableNames(self, name):
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {row[0] for row in self.rows(name, query)}


class _SQLiteThreaded(_SQLite):
    """
    SQLite through the adbapi thread pool, with the real reactor.
    """

    def openDatabase(self, name):
        return AgentDatabase.open(
            self.dir.child(name), reactor=reactor, managerName="manager"
        )


class _SQLiteBlocking(_SQLite):
    """
    SQLite with L{AgentDatabase.openBlocking}, as the CLI does.
    """

    def openDatabase(self, name):
        return defer.maybeDeferred(
            AgentDatabase.openBlocking, self.dir.child(name), managerName="manager"
        )


class _Postgres:
    """
    The PostgreSQL backend: a fresh database of the test server per
    database name.
    """

    backend = "postgresql"
    journalMode = None

    def dsn(self, name):
        if not hasattr(self, "_dsns"):
            self._dsns = {}
        if name not in self._dsns:
            self._dsns[name] = freshDatabase(self)
        return self._dsns[name]

    def rows(self, name, sql, params=()):
        with psycopg.connect(self.dsn(name), autocommit=True) as connection:
            cursor = connection.execute(POSTGRESQL.sql(sql), params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def tableNames(self, name):
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {row[0] for row in self.rows(name, query)}


class _PostgresThreaded(_Postgres):
    """
    PostgreSQL through the adbapi thread pool, with the real reactor.
    """

    def openDatabase(self, name):
        return AgentDatabase.openPostgres(
            self.dsn(name), reactor=reactor, managerName="manager"
        )


class _PostgresBlocking(_Postgres):
    """
    PostgreSQL with L{AgentDatabase.openPostgresBlocking}, as the CLI does.
    """

    def openDatabase(self, name):
        return defer.maybeDeferred(
            AgentDatabase.openPostgresBlocking, self.dsn(name), managerName="manager"
        )


#: The backend and pool kinds every mixin of agent database tests runs on.
BACKENDS = {
    "SQLiteThreaded": _SQLiteThreaded,
    "SQLiteBlocking": _SQLiteBlocking,
    "PostgresThreaded": _PostgresThreaded,
    "PostgresBlocking": _PostgresBlocking,
}


def allBackends(name, mixin, namespace):
    """
    Make one test case class per backend and pool kind from C{mixin}, named
    C{<name><kind>}, into C{namespace} (a module's C{globals()}).
    """
    for kind, backend in BACKENDS.items():
        cls = type(f"{name}{kind}", (backend, mixin, TestCase), {})
        cls.__module__ = namespace["__name__"]
        namespace[cls.__name__] = cls


for _name, _mixin in [
    ("SchemaTests", _SchemaTests),
    ("ManagementTests", _ManagementTests),
    ("ReconcileTests", _ReconcileTests),
    ("AgentInfoTests", _AgentInfoTests),
    ("GroupSyncTests", _GroupSyncTests),
    ("ConcurrentWriterTests", _ConcurrentWriterTests),
    ("AgentInfoBatchTests", _AgentInfoBatchTests),
]:
    allBackends(_name, _mixin, globals())
