# -*- test-case-name: tests.test_agent_sync -*-
"""
The master's Local agent-groups task: reads the group assignments that
changed in the agent store into a cache, so that sending them to the workers
never queries the store per worker (DESIGN.md, "Agent groups").

The cache holds every assignment with its group version, the current
version and the global hash (L{wazuhcluster.grouphash}), which it keeps up to
date in O(1) per assignment that changes.  Each run asks the store only for
what changed after the cache's version, plus the store's global hash, in one
read transaction: when that hash differs from the cache's although the
versions say nothing changed (agents were removed), the cache drops the
agents the store no longer counts (it asks for their numbers only) and is
reloaded whole only if the hashes still differ.  A run that has to handle many rows does it in a thread.
"""

import bisect

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel

from wazuhcluster.agentdb import groupHash
from wazuhcluster.agentsync import encodeItem, groupRow
from wazuhcluster.grouphash import GlobalHash

#: Rows above which a cache update runs in a thread.
THREAD_THRESHOLD = 2000


class GroupCache:
    """
    Every agent-group assignment of the master with its version.

    A cache is never changed once made: L{withChanges} makes a new one, so
    a thread may read one while the reactor thread moves on to the next.
    The only thing successive caches share is an append-only table of the
    distinct group lists with their hashes (a few hundred for 100 000
    agents): every agent's entry points at the one tuple and hash of its
    groups instead of holding copies.  Caches are made one at a time (one
    refresh at a time), so the table has one writer.

    @ivar loaded: the cache was filled once.
    @ivar version: the group version the cache is at.
    """

    def __init__(self, rows=None, order=None, globalHash=None, version=0, loaded=False,
                 kinds=None):
        self.loaded = loaded
        # groups tuple -> (that tuple, its group hash), shared.
        self._kinds = kinds if kinds is not None else {}
        self.version = version
        self._hash = globalHash if globalHash is not None else GlobalHash()
        # id -> (groups, version, encoded row, group hash)
        self._rows = rows if rows is not None else {}
        # (version, id) in version order; entries whose id has a newer
        # version since are stale and skipped.
        self._order = order if order is not None else []

    def __len__(self):
        return len(self._rows)

    @property
    def hash(self):
        """
        The global hash of the cached assignments.
        """
        return self._hash.hexdigest

    @classmethod
    def of(cls, rows, version):
        """
        A cache holding exactly C{rows} (C{(id, groups, version)}), at
        C{version}.
        """
        return cls(loaded=True).withChanges(rows, version, reset=True)

    def withChanges(self, rows, version, reset=False):
        """
        A new cache with the assignments that changed (C{(id, groups,
        version)}, newer than every cached one), at C{version}.  O(cached)
        to copy, O(changes) to hash.
        """
        kinds = self._kinds
        if reset:
            table, order, running = {}, [], GlobalHash()
        else:
            table, order = dict(self._rows), list(self._order)
            running = GlobalHash()
            running.total, running.count = self._hash.total, self._hash.count
        for agentId, groups, rowVersion in sorted(rows, key=lambda row: row[2]):
            groups = tuple(groups)
            kind = kinds.get(groups)
            if kind is None:
                kind = kinds[groups] = (groups, groupHash(groups))
            groups, hashed = kind
            number = int(agentId)
            old = table.get(agentId)
            if old is not None:
                running.remove(number, old[3])
            running.add(number, hashed)
            table[agentId] = (groups, rowVersion,
                              encodeItem(groupRow(agentId, groups, rowVersion)), hashed)
            order.append((rowVersion, agentId))
        if len(order) > 2 * len(table) + 1024:
            order = sorted((v, i) for i, (_, v, _, _) in table.items())
        return GroupCache(table, order, running, max(self.version, version) if not reset
                          else version, loaded=True, kinds=kinds)

    def withoutAgentsBesides(self, grouped):
        """
        A new cache without the agents that had a group here but are not in
        C{grouped} any more (removed from the store): O(cached) to compare,
        O(removed) to hash, nothing re-encoded or re-sorted.

        @param grouped: the numbers of the agents the store's hash counts.
        """
        present = set(grouped)
        gone = [agentId for agentId, entry in self._rows.items()
                if entry[3] is not None and int(agentId) not in present]
        if not gone:
            return self
        table = dict(self._rows)
        running = GlobalHash()
        running.total, running.count = self._hash.total, self._hash.count
        for agentId in gone:
            running.remove(int(agentId), table.pop(agentId)[3])
        order = [entry for entry in self._order if entry[1] in table]
        return GroupCache(table, order, running, self.version, loaded=True,
                          kinds=self._kinds)

    def groupsOf(self, agentId):
        """
        The cached groups of one agent (L{None} when it is not cached).
        """
        entry = self._rows.get(agentId)
        return None if entry is None else list(entry[0])

    def changesSince(self, version):
        """
        The assignments with a version above C{version}, oldest first.

        @return: a list of C{(id, groups, version, encoded)}.
        """
        start = bisect.bisect_right(self._order, (version, "\uffff"))
        result = []
        for entryVersion, agentId in self._order[start:]:
            groups, current, encoded, _ = self._rows[agentId]
            if current == entryVersion:
                result.append((agentId, list(groups), current, encoded))
        return result

    def everything(self):
        """
        Every assignment, by ID.

        @return: a list of C{(id, groups, version, encoded)}.
        """
        return [
            (agentId, list(groups), version, encoded)
            for agentId, (groups, version, encoded, _) in sorted(
                self._rows.items(), key=lambda item: int(item[0]))
        ]


class LocalAgentGroups(Service):
    """
    Refreshes the L{GroupCache} every C{master.sync_agent_groups} seconds,
    the first time after C{master.agent_group_start_delay}, and tells
    C{onRefreshed} after each run that changed something.  Stopping waits
    for the running refresh.

    @ivar cache: the L{GroupCache}.
    """

    name = "local-agent-groups"

    def __init__(self, master, store, onRefreshed):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        @param onRefreshed: called with no argument after each refresh.
        """
        self.master = master
        self.store = store
        self.onRefreshed = onRefreshed
        self.cache = GroupCache()
        self.log = master.log.withSubtag("Local agent-groups")
        self._loop = None
        self._delayed = None
        self._running = None
        self._waiters = []

    def startService(self):
        super().startService()
        delay = self.master.items.master.agent_group_start_delay
        self.log.info(
            "Sleeping {delay}s before starting the agent-groups task, waiting for the "
            "workers connection.", delay=delay)
        self._delayed = self.master.clock.callLater(delay, self._startLoop)

    def _startLoop(self):
        self._delayed = None
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self.master.clock
        self._loop.start(self.master.items.master.sync_agent_groups, now=True).addErrback(
            lambda f: self.log.failure("The agent-groups loop stopped", f,
                                       level=LogLevel.error))

    def stopService(self):
        super().stopService()
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self.whenIdle()

    def whenIdle(self):
        """
        @return: a Deferred firing once no refresh runs.
        """
        if self._running is None:
            return succeed(None)
        waiter = Deferred()
        self._waiters.append(waiter)
        return waiter

    def refresh(self):
        """
        Run one refresh now, or join the one in progress.

        @return: a L{Deferred} that fires (never fails) when it ended.
        """
        if self._running is not None:
            waiter = Deferred()
            self._waiters.append(waiter)
            return waiter
        if not self.running:
            return succeed(None)
        started = self.master.clock.seconds()
        self._running = d = self._refresh()
        d.addErrback(self._failed)
        d.addBoth(self._done, started)
        return d

    def _changed(self, rows, version, reset=False):
        """
        The next cache (made in a thread when there is much to do).
        """
        return self._run(self.cache.withChanges, rows, version, reset, size=len(rows))

    def _run(self, method, *args, size=0):
        """
        C{method(*args)} of the current cache, in a thread when the cache
        and C{size} rows are many.
        """
        if size + len(self.cache) >= THREAD_THRESHOLD:
            return self.master.runInThread(method, *args)
        return succeed(method(*args))

    @inlineCallbacks
    def _refresh(self):
        store = yield self.store.get()
        cache = self.cache
        rows, version, storeHash = yield store.groupSnapshot(
            cache.version if cache.loaded else 0)
        changed = not cache.loaded or bool(rows) or version != cache.version
        if changed:
            self.cache = yield self._changed(rows, version, reset=not cache.loaded)
        if self.cache.hash != storeHash:
            # Something changed that versions do not tell: agents were
            # removed.  Drop them (their numbers are enough); reload whole
            # only if the hashes still differ.
            grouped = yield store.groupedAgentNumbers()
            self.cache = yield self._run(self.cache.withoutAgentsBesides, grouped)
            changed = True
        if self.cache.hash != storeHash:
            self.log.warn("The agent-groups cache differs from the database: reloading it.")
            rows, version, storeHash = yield store.groupSnapshot(None)
            self.cache = yield self._changed(rows, version, reset=True)
            changed = True
            if self.cache.hash != storeHash:
                self.log.error("The agent-groups cache does not match the database "
                               "after a reload.")
        return changed

    def _failed(self, failure):
        self.log.error("Error reading agent-groups information: {error}",
                       error=failure.getErrorMessage())
        return None

    def _done(self, changed, started):
        self._running = None
        waiters, self._waiters = self._waiters, []
        elapsed = self.master.clock.seconds() - started
        # Rounds that changed nothing are logged at debug level, to keep
        # cluster.log readable at a 10 s period.
        emit = self.log.info if changed else self.log.debug
        if changed is not None:
            emit("Starting.")
            emit("Finished in {elapsed:.3f}s.", elapsed=elapsed)
            if changed:
                self.onRefreshed()
        for waiter in waiters:
            waiter.callback(None)
        return None
