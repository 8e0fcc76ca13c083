# -*- test-case-name: tests.test_agentdb_agentinfo -*-
"""
Tests for agent info in L{wazuhcluster.agentdb}: reports and sync state on
workers, batches stored on the master.

Every test runs on SQLite and PostgreSQL, threaded and blocking
(L{tests.agentdbcases.allBackends}).
"""

from twisted.internet import defer

from tests.agentdbcases import DatabaseMixin, allBackends, infoRow, keys
from wazuhcluster.agentdb import AGENT_INFO_FIELDS, DEFAULT_GROUP, AgentInfo, groupHash
from wazuhcluster.errors import ClusterError


class _AgentInfoTests(DatabaseMixin):
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

class _AgentInfoBatchTests(DatabaseMixin):
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


    @defer.inlineCallbacks
    def test_timeWithoutDate(self):
        """
        A worker may report any 64-bit time; one no calendar has is stored
        and shown as unknown instead of failing every read of the agent.
        """
        db = yield self.database(agents=keys((1, "a")))
        yield db.applyAgentInfo("w1", [infoRow("001", last_keepalive=2**63 - 1)])
        agent = yield db.getAgent("001")
        self.assertEqual((agent["name"], agent["last_keepalive"]), ("a", None))

    @defer.inlineCallbacks
    def test_valuesStoredExactly(self):
        """
        The bulk statements store every value exactly as given: non-ASCII
        text, quotes, backslashes, an escape that looks like a NUL, a label
        holding a NUL (SQLite's JSON functions would cut it: those rows go
        row by row), a large integer, and an integer left out keeps the
        stored value.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        texts = ["Ubuntu \u00e9\u4e2d\U0001f600", 'quote " and \\ back', "\\u0000 not a NUL"]
        rows = [infoRow(f"00{n}", os_name=text, last_keepalive=4102444800,
                        labels={"k": text, "\u00e9": "v"})
                for n, text in enumerate(texts, 1)]
        yield db.applyAgentInfo("w1", rows)
        for n, text in enumerate(texts, 1):
            agent = yield db.getAgent(f"00{n}")
            self.assertEqual((agent["os_name"], agent["last_keepalive"], agent["labels"]),
                             (text, "2100-01-01T00:00:00+00:00", {"k": text, "\u00e9": "v"}))
        try:
            yield db.applyAgentInfo("w1", [infoRow("003", os_name="x", labels={"k": "a\0b"},
                                                   last_keepalive=None)])
        except ValueError:
            # PostgreSQL cannot store a NUL: the whole row is refused.
            expected = (texts[2], "2100-01-01T00:00:00+00:00", {"k": texts[2], "\u00e9": "v"})
        else:
            expected = ("x", "2100-01-01T00:00:00+00:00", {"k": "a\0b"})
        agent = yield db.getAgent("003")
        self.assertEqual((agent["os_name"], agent["last_keepalive"], agent["labels"]),
                         expected)


for _name, _mixin in [
    ("AgentInfoTests", _AgentInfoTests),
    ("AgentInfoBatchTests", _AgentInfoBatchTests),
]:
    allBackends(_name, _mixin, globals())
