# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of a node (DESIGN.md, "Operator surface"), with
C{prometheus_client}: one L{CollectorRegistry} per node, never the global
default one (the demo runs several nodes in one process).

Most figures are read from the node's state at scrape time by a custom
collector (L{MasterCollector}, L{WorkerCollector}): connected workers,
reactor lag, keep-alive ages, files in sync, agents per node and status.
What only an event can tell (how long a sync took, how many bytes it moved)
comes from L{SyncObservers}: the master's feature sessions call
L{SyncObservers.finished} where they log "Finished in", and
L{NodeMetrics} feeds a histogram and a counter from it.

Agents are counted from the master's agent store at most every
L{AGENT_COUNT_MAX_AGE} seconds whatever the scrape rate (L{AgentCounts}):
by the store itself when it provides L{IAgentCounter}; else from its list
(read and counted in threads) for up to about 5 000 agents; else only the
active ones (L{storeAgents}).
"""

import collections

from attrs import frozen
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.logger import LogLevel
from zope.interface import Interface

from wazuhcluster import __version__
from wazuhcluster.agentdb import CONNECTION_STATUSES
from wazuhcluster.logs import ClusterLogger

#: The kinds of sync the master observes.
SYNC_KINDS = ("integrity", "agent_info", "agent_groups")

#: Upper bounds (seconds) of the sync duration histogram's buckets.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0)

#: Seconds an agent count may be reused before the store is asked again.
AGENT_COUNT_MAX_AGE = 10.0

#: The content type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@frozen
class SyncEvent:
    """
    One sync with a worker that finished.

    @ivar kind: one of L{SYNC_KINDS}.
    @ivar node: the worker.
    @ivar started: when it started (the node's clock).
    @ivar duration: seconds it took.
    @ivar size: the bytes it moved (file bytes, agent records).
    @ivar direction: C{sent} or C{received}, seen from this node.
    """

    kind: str
    node: str
    started: float
    duration: float
    size: int
    direction: str


class SyncObservers:
    """
    Who wants to know of every sync that finished on this node.
    """

    def __init__(self, log=None):
        self._observers = []
        self.log = log if log is not None else ClusterLogger(namespace="wazuhcluster.metrics")

    def subscribe(self, observer):
        """
        Call C{observer} with a L{SyncEvent} for every sync from now on.
        """
        self._observers.append(observer)

    def unsubscribe(self, observer):
        if observer in self._observers:
            self._observers.remove(observer)

    def finished(self, kind, node, started, duration, size=0, direction="sent"):
        """
        A sync finished (called by the feature sessions; never fails).
        """
        event = SyncEvent(kind, node, started, max(duration, 0.0), size, direction)
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:
                self.log.failure("A sync observer failed", level=LogLevel.error)


class IAgentCounter(Interface):
    """
    An agent store that counts its agents per node and status itself (one
    C{GROUP BY}), which L{AgentCounts} then uses instead of listing every
    agent.
    """

    def countAgentsByNodeAndStatus():
        """
        @return: a Deferred firing with C{{(node, status): count}} (agents
            reporting to no node under C{unknown}).
        """


#: The largest C{client.keys} (bytes; about 5 000 agents) whose agents are
#: listed to be counted by status: listing more, even in a thread, holds
#: the interpreter long enough to delay the reactor beyond its budget
#: (C{benchmarks/bench_web.py}).  Above it, without an L{IAgentCounter}
#: store, only active agents are counted (one cheap count per node).
LIST_LIMIT_BYTES = 400 * 1024


class Counts(dict):
    """
    C{{(node, status): count}}, made by the store (nothing to count in a
    thread).

    @ivar complete: every status is counted (else only C{active}).
    """

    complete = True


def storeAgents(master, listLimit=LIST_LIMIT_BYTES):
    """
    The C{listAgents} of L{AgentCounts} for C{master}: the store's own
    counts when it provides L{IAgentCounter}; else every agent (a list to
    count) while C{client.keys} is at most C{listLimit} bytes; else the
    active agents of each node (L{Counts} not C{complete}).
    """

    def listAgents(store):
        if IAgentCounter.providedBy(store):
            return store.countAgentsByNodeAndStatus().addCallback(Counts)
        snapshot = master.integrity.local.snapshot
        keys = snapshot.files.get("etc/client.keys") if snapshot is not None else None
        if keys is None or keys.size <= listLimit:
            return store.listAgents()
        names = [master.config.node_name] + master.registry.names()
        d = gatherResults([store.countActiveAgents(name) for name in names],
                          consumeErrors=True)

        def counted(results):
            counts = Counts({(name, "active"): n for name, n in zip(names, results)})
            counts.complete = False
            return counts

        return d.addCallback(counted)

    return lambda: master.agentStore.get().addCallback(listAgents)


def countAgents(agents):
    """
    C{{(node, status): count}} of a C{get_agents} list (agents reporting to
    no node count under C{unknown}).  Blocking for big lists: run it in a
    thread.
    """
    return dict(collections.Counter(
        (agent.get("node_name") or "unknown", agent.get("status") or "unknown")
        for agent in agents))


class AgentCounts:
    """
    The master's agents counted per node and status, asked of the store at
    most every C{maxAge} seconds, one query at a time.

    @ivar latest: the last L{Counts}, C{{(node, status): count}}.
    @ivar updated: when they were made (the node's clock), or L{None}.
    """

    def __init__(self, listAgents, clock, runInThread, log, maxAge=AGENT_COUNT_MAX_AGE):
        """
        @param listAgents: returns a Deferred of every agent (dicts with
            C{node_name} and C{status}), e.g. L{storeAgents} of the master.
        """
        self.listAgents = listAgents
        self.clock = clock
        self.runInThread = runInThread
        self.log = log
        self.maxAge = maxAge
        self.latest = Counts()
        self.updated = None
        self._waiting = None

    def get(self):
        """
        @return: a Deferred of fresh counts (or of the last ones when the
            store could not answer: logged); never fails.
        """
        now = self.clock.seconds()
        if self.updated is not None and now - self.updated < self.maxAge:
            return succeed(self.latest)
        waiter = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        d = maybeDeferred(self.listAgents)
        d.addCallback(lambda agents: agents if isinstance(agents, Counts)
                      else self.runInThread(countAgents, agents).addCallback(Counts))
        d.addCallbacks(self._counted, self._failed)
        return waiter

    def _counted(self, counts):
        self.latest = counts
        self.updated = self.clock.seconds()
        self._release()

    def _failed(self, failure):
        # Asked again only after maxAge: one line per period, not per scrape.
        self.updated = self.clock.seconds()
        self.log.warn("Could not count the agents: {error}", error=failure.getErrorMessage())
        self._release()

    def _release(self):
        waiting, self._waiting = self._waiting, None
        for waiter in waiting:
            waiter.callback(self.latest)


def _lagFamily(name, documentation, labels=()):
    return GaugeMetricFamily(name, documentation, labels=list(labels) + ["quantile"])


def _addLag(family, figures, labels=()):
    if figures is not None:
        family.add_metric(list(labels) + ["max"], figures.max)
        family.add_metric(list(labels) + ["p99"], figures.p99)


def _infoFamily(config):
    family = GaugeMetricFamily(
        "wazuhcluster_node_info", "This node: cluster, name, type and version (always 1).",
        labels=["cluster", "node", "type", "version"])
    family.add_metric([config.name, config.node_name, config.node_type, __version__], 1)
    return family


class MasterCollector:
    """
    The master's state, read at scrape time.
    """

    def __init__(self, master, agentCounts):
        self.master = master
        self.agentCounts = agentCounts

    def describe(self):
        return []

    def collect(self):
        master = self.master
        registry = master.registry
        names = registry.names()
        now = master.clock.seconds()
        yield _infoFamily(master.config)
        yield GaugeMetricFamily("wazuhcluster_connected_workers",
                                "Workers connected to this master.", value=len(names))
        own = _lagFamily("wazuhcluster_reactor_lag_seconds",
                         "How late this node's reactor ran a 10 ms timer, last minute.")
        _addLag(own, master.lag.figures())
        yield own
        workers = _lagFamily("wazuhcluster_worker_reactor_lag_seconds",
                             "Each worker's reactor lag of the last minute, as of its last "
                             "keep-alive.", labels=["node"])
        ages = GaugeMetricFamily("wazuhcluster_keepalive_age_seconds",
                                 "Seconds since each worker's last keep-alive.",
                                 labels=["node"])
        inSync = GaugeMetricFamily("wazuhcluster_integrity_in_sync",
                                   "1 when the worker's files are the master's current ones.",
                                   labels=["node"])
        for name in names:
            keepAlive = registry.session(name, "keepalive")
            _addLag(workers, keepAlive.lag, [name])
            ages.add_metric([name], max(now - keepAlive.last, 0.0))
            inSync.add_metric([name], 1 if registry.health(name)["integrity_in_sync"] else 0)
        yield workers
        yield ages
        yield inSync
        snapshot = master.integrity.local.snapshot
        yield GaugeMetricFamily("wazuhcluster_synced_files",
                                "Files in the master's synced set (its last scan).",
                                value=len(snapshot.files) if snapshot is not None else 0)
        agents = GaugeMetricFamily("wazuhcluster_agents", "Agents per node and status.",
                                   labels=["status", "node"])
        counts = self.agentCounts.latest
        nodes = sorted({master.config.node_name, *names, *(n for n, _ in counts)})
        statuses = sorted({*CONNECTION_STATUSES, *(s for _, s in counts)}
                          if counts.complete else {"active"})
        for node in nodes:
            for status in statuses:
                agents.add_metric([status, node], counts.get((node, status), 0))
        yield agents


class WorkerCollector:
    """
    A worker's state, read at scrape time.
    """

    def __init__(self, worker):
        self.worker = worker

    def describe(self):
        return []

    def collect(self):
        worker = self.worker
        yield _infoFamily(worker.config)
        yield GaugeMetricFamily("wazuhcluster_master_connected",
                                "1 while this worker is connected to its master.",
                                value=1 if worker.connection is not None else 0)
        own = _lagFamily("wazuhcluster_reactor_lag_seconds",
                         "How late this node's reactor ran a 10 ms timer, last minute.")
        _addLag(own, worker.lag.figures())
        yield own


class NodeMetrics:
    """
    The metrics of one node in their own registry.

    @ivar registry: the node's L{CollectorRegistry}.
    """

    def __init__(self, collector, syncEvents=None, agentCounts=None):
        """
        @param collector: what reads the node's state at scrape time
            (L{MasterCollector} or L{WorkerCollector}).
        @param syncEvents: the node's L{SyncObservers} (a master's), whose
            events feed the sync histogram and byte counter.
        @param agentCounts: the master's L{AgentCounts}, refreshed before a
            scrape.
        """
        self.agentCounts = agentCounts
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._events = syncEvents
        if syncEvents is not None:
            self.durations = Histogram(
                "wazuhcluster_sync_duration_seconds", "How long syncs with workers took.",
                ["kind"], buckets=DURATION_BUCKETS, registry=self.registry)
            self.bytes = Counter(
                "wazuhcluster_sync_bytes_total", "Bytes moved by syncs with workers.",
                ["kind", "direction"], registry=self.registry)
            for kind in SYNC_KINDS:
                self.durations.labels(kind=kind)

    @classmethod
    def forMaster(cls, master, agentCounts):
        return cls(MasterCollector(master, agentCounts), master.syncEvents, agentCounts)

    @classmethod
    def forWorker(cls, worker):
        return cls(WorkerCollector(worker))

    def start(self):
        """
        Observe the node's syncs.
        """
        if self._events is not None:
            self._events.subscribe(self.observe)

    def stop(self):
        if self._events is not None:
            self._events.unsubscribe(self.observe)

    def observe(self, event):
        """
        Account for one L{SyncEvent}.
        """
        self.durations.labels(kind=event.kind).observe(event.duration)
        if event.size:
            self.bytes.labels(kind=event.kind, direction=event.direction).inc(event.size)

    def render(self):
        """
        @return: a Deferred of the Prometheus text exposition (bytes), with
            agent counts at most L{AGENT_COUNT_MAX_AGE} seconds old.
        """
        d = self.agentCounts.get() if self.agentCounts is not None else succeed(None)
        d.addCallback(lambda _: generate_latest(self.registry))
        return d
