# -*- test-case-name: tests.test_agent_sync -*-
"""
The master's Local agent-groups task: reads the group assignments that
changed in the agent database into a cache, so that sending them to the
workers never queries the database per worker (DESIGN.md, "Agent groups").

The cache holds every assignment with its group version, the current
version and the global hash. Each run asks the database only for what
changed after the cache's version, plus the database's global hash, in one
read transaction (so agent info assigning groups meanwhile cannot make them
disagree): when that hash differs from the cache's although nothing changed
(an agent was removed), the cache is reloaded whole.
"""

import bisect
import hashlib

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall

from wazuhcluster.agentdb import groupHash
from wazuhcluster.agentsync import encodeItem, groupRow


class GroupCache:
    """
    Every agent-group assignment of the master with its version.

    @ivar loaded: the cache was filled once.
    @ivar version: the group version the cache is at.
    @ivar hash: the global hash of the cached assignments (the same formula
        as L{wazuhcluster.agentdb.AgentDatabase.globalGroupHash}).
    """

    def __init__(self):
        self.loaded = False
        self.version = 0
        self.hash = None
        # id -> (groups, version, encoded row)
        self._rows = {}
        # (version, id) in version order; entries whose id has a newer
        # version since are stale and skipped.
        self._order = []

    def __len__(self):
        return len(self._rows)

    def replace(self, rows, version):
        """
        Hold exactly C{rows} (C{(id, groups, version)}), at C{version}.
        """
        self._rows = {}
        self._order = []
        self._store(rows)
        self.version = version
        self.loaded = True
        self.hash = self.computeHash()

    def update(self, rows, version):
        """
        Add the assignments that changed (C{(id, groups, version)}, newer
        than every cached one), now at C{version}.
        """
        self._store(rows)
        self.version = max(self.version, version)
        self.loaded = True
        self.hash = self.computeHash()
        if len(self._order) > 2 * len(self._rows) + 1024:
            self._order = sorted((v, i) for i, (_, v, _) in self._rows.items())

    def _store(self, rows):
        for agentId, groups, version in sorted(rows, key=lambda row: row[2]):
            groups = tuple(groups)
            self._rows[agentId] = (groups, version, encodeItem(groupRow(agentId, groups, version)))
            self._order.append((version, agentId))

    def computeHash(self):
        """
        The SHA-1 over C{"<number>:<group_hash>\\n"} of every agent with a
        group, by ID; L{None} when no agent has a group.
        """
        lines = [
            f"{int(agentId)}:{groupHash(groups)}\n"
            for agentId, (groups, _, _) in sorted(self._rows.items(), key=lambda i: int(i[0]))
            if groups
        ]
        if not lines:
            return None
        return hashlib.sha1("".join(lines).encode("ascii")).hexdigest()

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
            groups, current, encoded = self._rows[agentId]
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
            for agentId, (groups, version, encoded) in sorted(
                self._rows.items(), key=lambda item: int(item[0]))
        ]


class LocalAgentGroups(Service):
    """
    Refreshes the L{GroupCache} every C{master.sync_agent_groups} seconds,
    the first time after C{master.agent_group_start_delay}, and tells
    C{onRefreshed} after each run.

    @ivar cache: the L{GroupCache}.
    """

    name = "local-agent-groups"

    def __init__(self, master, database, onRefreshed):
        """
        @param database: a callable returning a L{Deferred} of the
            L{wazuhcluster.agentdb.AgentDatabase}.
        @param onRefreshed: called with no argument after each refresh.
        """
        self.master = master
        self.database = database
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
        self._loop.start(self.master.items.master.sync_agent_groups, now=True)

    def stopService(self):
        super().stopService()
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if self._loop is not None and self._loop.running:
            d = self._loop.stop()
            self._loop = None
            return d
        self._loop = None
        return None

    def refresh(self):
        """
        Run one refresh now, or join the one in progress.

        @return: a L{Deferred} that fires (never fails) when it ended.
        """
        if self._running is not None:
            waiter = Deferred()
            self._waiters.append(waiter)
            return waiter
        started = self.master.clock.seconds()
        self._running = d = self._refresh()
        d.addErrback(self._failed)
        d.addBoth(self._done, started)
        return d

    @inlineCallbacks
    def _refresh(self):
        database = yield self.database()
        cache = self.cache
        # The changes and the hash come from one read transaction: agent
        # info assigning groups meanwhile cannot make them disagree (which
        # would force a reload of the whole table).
        rows, version, databaseHash = yield database.groupSnapshot(
            cache.version if cache.loaded else 0)
        changed = not cache.loaded or bool(rows) or version != cache.version
        if not cache.loaded:
            cache.replace(rows, version)
        elif changed:
            cache.update(rows, version)
        if cache.hash != databaseHash:
            # Something changed that versions do not tell (an agent was
            # removed): reload.
            rows, version, databaseHash = yield database.groupSnapshot(None)
            cache.replace(rows, version)
            changed = True
            if cache.hash != databaseHash:
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
            self.onRefreshed()
        for waiter in waiters:
            waiter.callback(None)
        return None
