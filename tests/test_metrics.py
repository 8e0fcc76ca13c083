# -*- test-case-name: tests.test_metrics -*-
"""
Tests for the nodes' Prometheus metrics (L{wazuhcluster.metrics}): scraped
over HTTP from a running master's and worker's web service (workers
connected in memory) and parsed with C{prometheus_client}'s parser.
"""

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.cluster import InMemoryCluster
from tests.test_agent_sync import keys
from tests.test_web import addMasterFile, startWeb
from tests.webclient import fetch, pumpInMemory
from wazuhcluster.clientkeys import writeClientKeys
from wazuhcluster.storeslot import AgentStoreService
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.metrics import (
    AGENT_COUNT_MAX_AGE,
    AgentCounts,
    IAgentCounter,
    NodeMetrics,
    SyncObservers,
    countAgents,
    storeAgents,
)

INTERVALS = {
    "worker": {"keep_alive": 5, "sync_agent_info": 5, "connection_retry": 2},
    "master": {"check_worker_lastkeepalive": 5, "max_allowed_time_without_keepalive": 30,
               "agent_group_start_delay": 1, "sync_agent_groups": 2},
}


def samples(text):
    """
    C{{(name, frozenset(labels.items())): value}} of a text exposition.
    """
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


class MasterMetricsTests(TestCase):
    """
    C{/metrics} of a master with two workers, one agent reporting.
    """

    timeout = 60

    def setUp(self):
        self.cluster = cluster = InMemoryCluster(self, intervals=INTERVALS)
        entries = keys(3)
        writeClientKeys(cluster.masterHome.clientKeys, entries)
        addMasterFile(cluster, "etc/rules/local_rules.xml", b"<group name=\"local\"/>\n")
        self.successResultOf(cluster.master.agents.reconcileClientKeys())
        self.web = startWeb(self, cluster.master)
        for name in ("worker1", "worker2"):
            writeClientKeys(cluster.makeHome(name).clientKeys, entries)
            cluster.addWorker(name)
        worker = cluster.workers["worker1"]
        self.successResultOf(worker.agentStore.store.reportAgent(
            "001", status="active", nodeName="worker1"))
        cluster.network.advance(12, step=0.5)

    @inlineCallbacks
    def scrape(self):
        status, headers, body = yield fetch(self.web.url + "metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(
            b"text/plain; version=0.0.4"))
        return samples(body.decode("utf-8"))

    @inlineCallbacks
    def test_state(self):
        """
        Connected workers, keep-alive ages, files in sync and the node's
        own reactor lag are read from the master at scrape time.
        """
        found = yield self.scrape()
        cluster = self.cluster
        self.assertEqual(value(found, "wazuhcluster_connected_workers"), 2)
        last = cluster.master.registry.session("worker1", "keepalive").last
        self.assertAlmostEqual(value(found, "wazuhcluster_keepalive_age_seconds",
                                     node="worker1"), cluster.clock.seconds() - last)
        self.assertEqual(value(found, "wazuhcluster_integrity_in_sync", node="worker2"), 1)
        figures = cluster.master.lag.figures()
        self.assertEqual(value(found, "wazuhcluster_reactor_lag_seconds", quantile="max"),
                         figures.max)
        self.assertEqual(value(found, "wazuhcluster_reactor_lag_seconds", quantile="p99"),
                         figures.p99)
        reported = cluster.master.registry.session("worker1", "keepalive").lag
        self.assertEqual(value(found, "wazuhcluster_worker_reactor_lag_seconds",
                               node="worker1", quantile="max"), reported.max)
        self.assertEqual(value(found, "wazuhcluster_synced_files"),
                         len(cluster.master.integrity.local.snapshot.files))
        self.assertEqual(value(found, "wazuhcluster_node_info", cluster="wazuh", node="master",
                               type="master", version=cluster.master.workers["worker1"].version),
                         1)

    @inlineCallbacks
    def test_agents(self):
        """
        Agents are counted per node and status: the one reporting to
        worker1 is active there; the others never connected.
        """
        found = yield self.scrape()
        self.assertEqual(value(found, "wazuhcluster_agents", status="active", node="worker1"), 1)
        self.assertEqual(value(found, "wazuhcluster_agents", status="active", node="worker2"), 0)
        self.assertEqual(value(found, "wazuhcluster_agents", status="never_connected",
                               node="unknown"), 2)

    @inlineCallbacks
    def test_syncs(self):
        """
        Every finished sync is in the duration histogram by kind, and its
        bytes in the counter by kind and direction.
        """
        found = yield self.scrape()
        self.assertEqual(value(found, "wazuhcluster_sync_duration_seconds_count",
                               kind="integrity"), 2)
        self.assertGreaterEqual(value(found, "wazuhcluster_sync_duration_seconds_count",
                                      kind="agent_info"), 1)
        self.assertGreaterEqual(value(found, "wazuhcluster_sync_duration_seconds_count",
                                      kind="agent_groups"), 2)
        self.assertEqual(value(found, "wazuhcluster_sync_duration_seconds_bucket",
                               kind="integrity", le="+Inf"), 2)
        self.assertGreater(value(found, "wazuhcluster_sync_bytes_total", kind="integrity",
                                 direction="sent"), 0)
        self.assertGreater(value(found, "wazuhcluster_sync_bytes_total", kind="agent_info",
                                 direction="received"), 0)

    @inlineCallbacks
    def test_agentCountsCached(self):
        """
        A scrape within a few seconds of the last one reuses its agent
        counts; a later one asks the store again.
        """
        yield self.scrape()
        cluster = self.cluster
        worker = cluster.workers["worker2"]
        self.successResultOf(worker.agentStore.store.reportAgent(
            "002", status="active", nodeName="worker2"))
        worker.agentInfo.syncNow()
        cluster.network.flush()
        self.assertEqual(self.successResultOf(cluster.masterStore.countActiveAgents("worker2")), 1)
        cached = yield self.scrape()
        self.assertEqual(value(cached, "wazuhcluster_agents", status="active", node="worker2"), 0)
        cluster.clock.advance(AGENT_COUNT_MAX_AGE)
        fresh = yield self.scrape()
        self.assertEqual(value(fresh, "wazuhcluster_agents", status="active", node="worker2"), 1)


class WorkerMetricsTests(TestCase):
    """
    C{/metrics} of a worker.
    """

    timeout = 60

    @inlineCallbacks
    def test_worker(self):
        """
        A worker reports whether it is connected to its master and its own
        reactor lag.
        """
        cluster = InMemoryCluster(self, intervals=INTERVALS)
        worker = cluster.addWorker("worker1")
        cluster.network.advance(2, step=0.5)
        pumpInMemory(self, cluster)
        web = startWeb(self, worker)
        status, headers, body = yield fetch(web.url + "metrics")
        found = samples(body.decode("utf-8"))
        self.assertEqual(value(found, "wazuhcluster_master_connected"), 1)
        self.assertEqual(value(found, "wazuhcluster_reactor_lag_seconds", quantile="max"),
                         worker.lag.figures().max)
        self.assertNotIn(("wazuhcluster_connected_workers", frozenset()), found)


class RegistryTests(SynchronousTestCase):
    """
    Each node has its own registry.
    """

    def test_twoMastersInOneProcess(self):
        """
        Two masters' metrics live side by side (the global registry would
        refuse the second), and a sync observed by one is not counted by
        the other.
        """
        first = InMemoryCluster(self)
        second = InMemoryCluster(self)
        counts = [AgentCounts(storeAgents(c.master), c.clock, c.master.runInThread,
                              c.master.log) for c in (first, second)]
        one = NodeMetrics.forMaster(first.master, counts[0])
        two = NodeMetrics.forMaster(second.master, counts[1])
        one.start()
        two.start()
        first.master.syncEvents.finished("agent_info", "worker1", 0.0, 0.5, 100, "received")
        text = [self.successResultOf(m.render()).decode() for m in (one, two)]
        self.assertEqual(value(samples(text[0]), "wazuhcluster_sync_duration_seconds_count",
                               kind="agent_info"), 1)
        self.assertEqual(value(samples(text[1]), "wazuhcluster_sync_duration_seconds_count",
                               kind="agent_info"), 0)
        one.stop()
        first.master.syncEvents.finished("agent_info", "worker1", 0.0, 0.5, 100, "received")
        self.assertEqual(value(samples(self.successResultOf(one.render()).decode()),
                               "wazuhcluster_sync_duration_seconds_count", kind="agent_info"), 1)


class SyncObserversTests(SynchronousTestCase):
    """
    The hook the feature sessions call.
    """

    def test_failingObserverLogged(self):
        """
        An observer that raises is logged; the others still hear of the
        sync, and the caller never sees the error.
        """
        events = []
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        observers = SyncObservers()
        observers.subscribe(lambda event: 1 / 0)
        observers.subscribe(events.append)
        observers.finished("integrity", "worker1", 10.0, 0.25, 4096)
        self.assertEqual([(e.kind, e.node, e.duration, e.size, e.direction) for e in events],
                         [("integrity", "worker1", 0.25, 4096, "sent")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class AgentCountsTests(SynchronousTestCase):
    """
    Agent counts asked of the store one query at a time, reused a while.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        writeClientKeys(self.cluster.masterHome.clientKeys, keys(2))
        self.successResultOf(self.cluster.master.agents.reconcileClientKeys())
        self.pending = []

    def runLater(self, function, *args):
        """
        A thread runner whose jobs run when the test says so.
        """
        d = Deferred()
        self.pending.append((d, function, args))
        return d

    def finishJobs(self):
        jobs, self.pending = self.pending, []
        for d, function, args in jobs:
            d.callback(function(*args))

    def test_oneQueryAtATime(self):
        """
        Callers arriving while a count runs wait for that count; within
        the maximum age the result is reused, after it the store is asked
        again.
        """
        clock = self.cluster.clock
        counts = AgentCounts(storeAgents(self.cluster.master), clock, self.runLater,
                             self.cluster.master.log, maxAge=5)
        first, second = counts.get(), counts.get()
        self.assertEqual(len(self.pending), 1)
        self.assertNoResult(first)
        self.finishJobs()
        result = self.successResultOf(first)
        self.assertEqual(result, {("unknown", "never_connected"): 2})
        self.assertIs(self.successResultOf(second), result)
        clock.advance(4)
        counts.get()
        self.assertEqual(self.pending, [])
        clock.advance(2)
        third = counts.get()
        self.assertEqual(len(self.pending), 1)
        self.finishJobs()
        self.assertEqual(self.successResultOf(third), {("unknown", "never_connected"): 2})

    def test_failureKeepsLastCounts(self):
        """
        When the store cannot answer, the last counts are given and a
        warning is logged, once per maximum age (not at every scrape).
        """
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)

        def broken(function, *args):
            raise RuntimeError("disk on fire")

        counts = AgentCounts(storeAgents(self.cluster.master), self.cluster.clock, broken,
                             self.cluster.master.log, maxAge=5)
        self.assertEqual(self.successResultOf(counts.get()), {})
        self.assertEqual(self.successResultOf(counts.get()), {})
        self.assertEqual(sum("disk on fire" in e.get("error", "") for e in logged), 1)
        self.cluster.clock.advance(5)
        counts.get()
        self.assertEqual(sum("disk on fire" in e.get("error", "") for e in logged), 2)

    def test_manyAgentsActiveOnly(self):
        """
        Above the listing limit (C{client.keys} size), a store that does not
        count by itself is asked only for each node's active agents: the
        counts say they are not complete, and C{/metrics} has only the
        C{active} series.
        """
        cluster = self.cluster
        cluster.master.integrity.local.rescanNow()
        self.successResultOf(cluster.masterStore.reportAgent("001", status="active",
                                                             nodeName="master"))
        counts = AgentCounts(storeAgents(cluster.master, listLimit=10), cluster.clock,
                             self.runLater, cluster.master.log)
        result = self.successResultOf(counts.get())
        self.assertEqual(self.pending, [])
        self.assertEqual(result, {("master", "active"): 1})
        self.assertFalse(result.complete)
        metrics = NodeMetrics.forMaster(cluster.master, counts)
        found = samples(self.successResultOf(metrics.render()).decode())
        self.assertEqual(value(found, "wazuhcluster_agents", status="active", node="master"), 1)
        self.assertNotIn(("wazuhcluster_agents",
                          frozenset({"status": "never_connected", "node": "master"}.items())),
                         found)
        listed = AgentCounts(storeAgents(cluster.master), cluster.clock, cluster.master.runInThread,
                             cluster.master.log)
        self.assertTrue(self.successResultOf(listed.get()).complete)

    def test_countAgents(self):
        """
        Agents are counted by node and status; agents of no node count
        under C{unknown}.
        """
        self.assertEqual(countAgents([
            {"node_name": "w1", "status": "active"}, {"node_name": "w1", "status": "active"},
            {"node_name": None, "status": "never_connected"},
            {"node_name": "w2", "status": "disconnected"}]),
            {("w1", "active"): 2, ("unknown", "never_connected"): 1,
             ("w2", "disconnected"): 1})


@implementer(IAgentCounter)
class CountingDatabase(AgentDatabase):
    """
    The SQLite agent store with the one-query count L{AgentCounts} prefers.
    """

    def countAgentsByNodeAndStatus(self):
        def count(transaction):
            transaction.execute(
                "SELECT node_name, connection_status, COUNT(*) FROM agent WHERE id > 0 "
                "GROUP BY node_name, connection_status")
            return {(node or "unknown", status): n for node, status, n in transaction.fetchall()}

        return self._pool.runInteraction(count)


class _Node:
    def __init__(self, store, log):
        self.agentStore = AgentStoreService(lambda: None, log, injected=store)
        self.agentStore.startService()


class AgentCounterTests(SynchronousTestCase):
    """
    A store that counts by itself is asked for its counts, not its list.
    """

    def test_sameCountsWithoutTheList(self):
        """
        The counts of a store providing L{IAgentCounter} equal those made
        from its list, and nothing is counted in a thread.
        """
        cluster = InMemoryCluster(self)
        writeClientKeys(cluster.masterHome.clientKeys, keys(3))
        self.successResultOf(cluster.master.agents.reconcileClientKeys())
        self.successResultOf(cluster.masterStore.reportAgent("002", status="active",
                                                             nodeName="worker1"))
        listed = self.successResultOf(
            AgentCounts(storeAgents(cluster.master), cluster.clock, cluster.master.runInThread,
                        cluster.master.log).get())
        counting = CountingDatabase.openBlocking(cluster.masterHome.globalDb,
                                                 managerName="master")
        self.addCleanup(counting.close)
        threadJobs = []
        counts = AgentCounts(storeAgents(_Node(counting, cluster.master.log)), cluster.clock,
                             lambda f, *a: threadJobs.append(f), cluster.master.log)
        self.assertEqual(self.successResultOf(counts.get()), listed)
        self.assertEqual(listed, {("worker1", "active"): 1, ("unknown", "never_connected"): 2})
        self.assertEqual(threadJobs, [])
