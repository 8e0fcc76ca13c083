# -*- test-case-name: tests.test_agentdb -*-
"""
Tests for L{wazuhcluster.agentdb}: schema, management, client.keys
reconciliation, concurrent writers.

Every test runs on SQLite and PostgreSQL, threaded and blocking
(L{tests.agentdbcases.allBackends}).
"""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.agentdbcases import KEY, DatabaseMixin, allBackends, keys
from wazuhcluster.agentdb import SCHEMA_VERSION, groupHash
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.clientkeys import ClientKey
from wazuhcluster.errors import ClusterError


class _SchemaTests(DatabaseMixin):
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


class _ManagementTests(DatabaseMixin):
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


class _ReconcileTests(DatabaseMixin):
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


class _ConcurrentWriterTests(DatabaseMixin):
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


for _name, _mixin in [
    ("SchemaTests", _SchemaTests),
    ("ManagementTests", _ManagementTests),
    ("ReconcileTests", _ReconcileTests),
    ("ConcurrentWriterTests", _ConcurrentWriterTests),
]:
    allBackends(_name, _mixin, globals())
