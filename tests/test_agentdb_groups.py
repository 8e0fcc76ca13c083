# -*- test-case-name: tests.test_agentdb_groups -*-
"""
Tests for agent groups in L{wazuhcluster.agentdb}: versions, assignments,
the global hash, snapshots.

Every test runs on SQLite and PostgreSQL, threaded and blocking
(L{tests.agentdbcases.allBackends}).
"""

from twisted.internet import defer

from tests.agentdbcases import KEY, DatabaseMixin, allBackends, keys
from wazuhcluster.agentdb import groupHash
from wazuhcluster.errors import ClusterError


class _GroupSyncTests(DatabaseMixin):
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
    def test_groupedAgentNumbers(self):
        """
        C{groupedAgentNumbers} lists the agents the global hash counts:
        those with a group, not the removed ones nor those without.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        self.assertEqual((yield db.groupedAgentNumbers()), [])
        yield db.setAgentGroups("001", ["g1"])
        yield db.setAgentGroups("003", ["g2"])
        self.assertEqual(sorted((yield db.groupedAgentNumbers())), [1, 3])
        yield db.removeAgent("003")
        self.assertEqual((yield db.groupedAgentNumbers()), [1])

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


for _name, _mixin in [
    ("GroupSyncTests", _GroupSyncTests),
]:
    allBackends(_name, _mixin, globals())
