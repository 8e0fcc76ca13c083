# -*- test-case-name: tests.test_agent_ownership -*-
"""
One worker must not rewrite every agent (issue 10): a worker reporting
agents another connected worker serves overwrote their node, status, OS
fields and labels, and columns a report did not carry were set to NULL.
The rule is L{wazuhcluster.agentdb.ownership}; these tests attack it in an
in-memory cluster and on both database backends.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.agentdbcases import DatabaseMixin, allBackends, infoRow, keys
from tests.test_agent_sync import AgentSyncTestsMixin
from tests.test_wazuhdb_store import _StoreMixin
from tests.test_wazuhdb_store import infoRow as wdbRow
from wazuhcluster.agentdb.ownership import (
    MOVE,
    REFUSE,
    TAKE,
    AgentOwnership,
    OwnershipRule,
)

#: Short periods: a keep-alive every 20 s holds an agent for 60 s.
INTERVALS = {
    "worker": {"sync_agent_info": 10, "keep_alive": 20, "sync_integrity": 1000,
               "max_failed_keepalive_attempts": 1000},
    "master": {"sync_agent_groups": 10, "agent_group_start_delay": 5,
               "recalculate_integrity": 1000, "check_worker_lastkeepalive": 1000,
               "max_allowed_time_without_keepalive": 10000},
}


class OwnershipInClusterTests(AgentSyncTestsMixin, SynchronousTestCase):
    """
    Two workers of one cluster report the same agent.
    """

    intervals = INTERVALS

    def report(self, worker, agentId, status="active", **os):
        self.result(self.workerDb(worker).reportAgent(
            agentId, status=status, os=os or None, nodeName=worker,
            labels={"from": worker}))

    def agent(self, agentId):
        agent = self.result(self.masterDb.getAgent(agentId))
        return (agent["node_name"], agent["connection_status"], agent["os_name"],
                agent["labels"])

    def test_otherWorkerCannotRewrite(self):
        """
        The attack: worker2 reports agent 001, which worker1 serves and
        reported a moment ago, with another OS, status and labels.  The
        master keeps worker1's row untouched and logs a WARNING naming the
        agent and its owner; worker2's rows are not sent again.
        """
        self.startCluster()
        self.report("worker1", "001", os_name="Ubuntu")
        self.advance(10)
        self.assertEqual(self.agent("001"), ("worker1", "active", "Ubuntu",
                                             {"from": "worker1"}))
        self.report("worker2", "001", status="disconnected", os_name="Evil")
        self.report("worker2", "002", os_name="Fine")
        self.advance(10)
        self.assertEqual(self.agent("001"), ("worker1", "active", "Ubuntu",
                                             {"from": "worker1"}))
        self.assertEqual(self.agent("002"), ("worker2", "active", "Fine",
                                             {"from": "worker2"}))
        self.assertTrue(self.logs.contains(
            "WARNING: [Worker worker2] [Agent-info sync] Refused the information of 1 "
            "agents that other connected workers serve: 001 (worker1)."), self.logs.lines())
        self.assertEqual(self.result(self.workerDb("worker2").agentInfoToSync()), [])

    def test_everyAgentAttack(self):
        """
        A worker reporting every agent while the others report theirs
        rewrites none of them.
        """
        self.startCluster(agents=6)
        for agentId in ("001", "002", "003"):
            self.report("worker1", agentId, os_name="One")
        self.advance(10)
        for agentId in ("001", "002", "003", "004"):
            self.report("worker2", agentId, os_name="Two")
        self.advance(10)
        self.assertEqual([self.agent(f"00{n}")[0] for n in range(1, 5)],
                         ["worker1", "worker1", "worker1", "worker2"])
        self.assertEqual([self.agent(f"00{n}")[2] for n in range(1, 5)],
                         ["One", "One", "One", "Two"])

    def test_moveWhenOwnerDisconnects(self):
        """
        An agent whose worker is gone moves to the worker reporting it,
        with a WARNING.
        """
        self.startCluster()
        self.report("worker1", "001", os_name="Ubuntu")
        self.advance(10)
        self.cluster.workers["worker1"].stopService()
        self.cluster.network.flush()
        self.report("worker2", "001", os_name="Ubuntu")
        self.advance(10)
        self.assertEqual(self.agent("001")[0], "worker2")
        self.assertTrue(self.logs.contains(
            "WARNING: [Worker worker2] [Agent-info sync] Agent 001 moved from worker1 to "
            "worker2."), self.logs.lines())

    def test_moveWhenOwnerSaysDisconnected(self):
        """
        An agent its worker reported disconnected moves at once to the
        worker that reports it active (behind a load balancer).
        """
        self.startCluster()
        self.report("worker1", "001")
        self.advance(10)
        self.report("worker1", "001", status="disconnected")
        self.advance(10)
        self.report("worker2", "001")
        self.advance(10)
        self.assertEqual(self.agent("001")[:2], ("worker2", "active"))

    def test_moveWhenOwnerStopsReporting(self):
        """
        An agent its connected worker has not reported for three
        keep-alive periods moves to the worker reporting it; before that it
        stays.
        """
        self.startCluster()
        self.report("worker1", "001")
        self.advance(10)
        self.advance(30)
        self.report("worker2", "001", os_name="Moved")
        self.advance(10)
        self.assertEqual(self.agent("001")[0], "worker1")
        self.advance(20)
        self.report("worker2", "001", os_name="Moved")
        self.advance(10)
        self.assertEqual(self.agent("001")[:3], ("worker2", "active", "Moved"))

    def test_newConnectionHoldsItsAgents(self):
        """
        A worker that just connected holds the agents stored under its
        name for the hold period, even before it reports them (after a
        master restart the master has not heard from it yet).
        """
        self.startCluster(workers=("worker2",))
        self.result(self.masterDb.applyAgentInfo("worker1", [infoRow("001")]))
        self.addWorker("worker1")
        self.report("worker2", "001", os_name="Grab")
        self.advance(10)
        self.assertEqual(self.agent("001")[0], "worker1")


class OwnershipRuleTests(SynchronousTestCase):
    """
    L{OwnershipRule.decide} and L{AgentOwnership}.
    """

    def rule(self, **overrides):
        values = dict(reporter="w2", connected=frozenset({"w1", "w2", "master"}),
                      holding=frozenset({"master"}), recent={1: "w1"})
        values.update(overrides)
        return OwnershipRule(**values)

    def test_decisions(self):
        """
        Taken when unowned or the reporter's; moved when the owner is gone,
        when the report is active and the owner's is not, or when the owner
        is silent; refused when the owner holds it.
        """
        rule = self.rule()
        self.assertEqual(rule.decide(1, None, "never_connected", "active"), TAKE)
        self.assertEqual(rule.decide(1, "w2", "active", "active"), TAKE)
        self.assertEqual(rule.decide(1, "w9", "active", "active"), MOVE)
        self.assertEqual(rule.decide(1, "w1", "active", "active"), REFUSE)
        self.assertEqual(rule.decide(1, "w1", "disconnected", "active"), MOVE)
        self.assertEqual(rule.decide(1, "w1", "disconnected", "disconnected"), REFUSE)
        self.assertEqual(rule.decide(2, "w1", "active", "active"), MOVE)
        self.assertEqual(rule.decide(2, "master", "active", "active"), REFUSE)
        self.assertEqual(rule.decide(2, "master", "disconnected", "active"), MOVE)

    def test_memory(self):
        """
        A report holds its agent for three keep-alive periods; a new
        connection holds for as long.
        """
        clock = Clock()
        ownership = AgentOwnership(clock, "master", 20)
        ownership.connected("w1")
        ownership.connected("w2")
        ownership.reported("w1", [1])
        rule = ownership.rule("w2", [1, 2])
        self.assertEqual(rule.recent, {1: "w1"})
        self.assertEqual(rule.holding, {"w1", "w2", "master"})
        clock.advance(61)
        rule = ownership.rule("w2", [1])
        self.assertEqual((rule.recent, rule.holding), ({}, {"master"}))
        ownership.disconnected("w1")
        self.assertEqual(ownership.rule("w2", [1]).connected, {"w2", "master"})

    def test_replacedConnection(self):
        """
        The end of a worker's older connection does not disconnect the
        newer one that replaced it.
        """
        ownership = AgentOwnership(Clock(), "master", 20)
        old, new = object(), object()
        ownership.connected("w1", old)
        ownership.connected("w1", new)
        ownership.disconnected("w1", old)
        self.assertIn("w1", ownership.rule("w2", []).connected)
        ownership.disconnected("w1", new)
        self.assertNotIn("w1", ownership.rule("w2", []).connected)


class _StoreOwnershipTests(DatabaseMixin):
    """
    The rule and the carried columns in the agent database.
    """

    @defer.inlineCallbacks
    def test_missingColumnsKept(self):
        """
        The attack: a report carrying only an agent's status sets every
        other column to NULL.  Columns a report does not carry keep their
        stored values; an explicit null still clears a text column.
        """
        db = yield self.database(agents=keys((1, "a")))
        yield db.applyAgentInfo("w1", [infoRow("001", os_name="Ubuntu", os_arch="x86_64",
                                               version="Wazuh v4.14.7", last_keepalive=5)])
        yield db.applyAgentInfo("w1", [{"id": "001", "connection_status": "disconnected"}])
        agent = yield db.getAgent("001")
        self.assertEqual((agent["os_name"], agent["os_arch"], agent["version"],
                          agent["connection_status"]),
                         ("Ubuntu", "x86_64", "Wazuh v4.14.7", "disconnected"))
        yield db.applyAgentInfo("w1", [{"id": "001", "connection_status": "active",
                                        "os_arch": None}])
        agent = yield db.getAgent("001")
        self.assertEqual((agent["os_name"], agent["os_arch"]), ("Ubuntu", None))

    @defer.inlineCallbacks
    def test_partialDuplicates(self):
        """
        Two rows of one agent in one batch, the second partial: the second
        overrides only what it carries.
        """
        db = yield self.database(agents=keys((1, "a")))
        yield db.applyAgentInfo("w1", [infoRow("001", os_name="A", os_arch="x"),
                                       {"id": "001", "connection_status": "active",
                                        "os_name": "B"}])
        agent = yield db.getAgent("001")
        self.assertEqual((agent["os_name"], agent["os_arch"]), ("B", "x"))

    @defer.inlineCallbacks
    def test_ruleApplied(self):
        """
        With a rule, a refused row is not stored and a moved one is, and the
        outcome says which.
        """
        db = yield self.database(agents=keys((1, "a"), (2, "b"), (3, "c")))
        yield db.applyAgentInfo("w1", [infoRow("001", os_name="One"),
                                       infoRow("002", os_name="One")])
        rule = OwnershipRule("w2", frozenset({"w1", "w2"}), frozenset(), {1: "w1"})
        outcome = yield db.applyAgentInfo(
            "w2", [infoRow("001", os_name="Two"), infoRow("002", os_name="Two"),
                   infoRow("003", os_name="Two"), infoRow("009")], ownership=rule)
        self.assertEqual((outcome.updated, outcome.unknown), (2, 1))
        self.assertEqual(outcome.refused, ((1, "w1"),))
        self.assertEqual(outcome.moved, ((2, "w1"),))
        self.assertEqual(sorted(outcome.stored), [2, 3])
        names = []
        for n in (1, 2, 3):
            agent = yield db.getAgent(f"00{n}")
            names.append((agent["node_name"], agent["os_name"]))
        self.assertEqual(names, [("w1", "One"), ("w2", "Two"), ("w2", "Two")])


allBackends("StoreOwnershipTests", _StoreOwnershipTests, globals())


class WazuhDBStoreOwnershipTests(_StoreMixin, SynchronousTestCase):
    """
    The same rule and carried columns on the wazuh-db agent store (its
    stand-in).
    """

    def setUp(self):
        super().setUp()
        self.insert(1, 2)

    def apply(self, node, rows, ownership=None):
        return self.wait(self.store.applyAgentInfo(node, rows, ownership=ownership))

    def test_missingColumnsKept(self):
        """
        A row carrying only the status keeps the stored OS columns.
        """
        self.apply("w1", [wdbRow("001", os_name="Debian", os_arch="x86_64")])
        self.apply("w1", [{"id": "001", "connection_status": "disconnected"}])
        row = self.model.agentRow(1)
        self.assertEqual((row["os_name"], row["os_arch"], row["connection_status"]),
                         ("Debian", "x86_64", "disconnected"))

    def test_ruleApplied(self):
        """
        A refused row is not written; the outcome says so.
        """
        self.apply("w1", [wdbRow("001", os_name="One"), wdbRow("002", os_name="One")])
        rule = OwnershipRule("w2", frozenset({"w1", "w2"}), frozenset(), {1: "w1"})
        outcome = self.apply("w2", [wdbRow("001", os_name="Two"), wdbRow("002", os_name="Two")],
                             rule)
        self.assertEqual((outcome.updated, outcome.refused, outcome.moved),
                         (1, ((1, "w1"),), ((2, "w1"),)))
        self.assertEqual([self.model.agentRow(n)["node_name"] for n in (1, 2)], ["w1", "w2"])
