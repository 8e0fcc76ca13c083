# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
The agent store on a Wazuh manager's own wazuh-db
(L{wazuhcluster.agentstore.IAgentStore}, backend C{wazuh-db}), following
what wazuh-db 4.14.7 answered here (C{wazuh-db-4.14.7-session.txt}).

Worker:

  - agent info: the rows wazuh-db marked for sync are read with C{GET
    /v1/agents/sync} (what Wazuh 4.14's framework uses), or with C{global
    sync-agent-info-get} page by page when the HTTP API is not there.
    wazuh-db clears the marks as it answers, so every row read is kept
    (L{wazuhcluster.wazuhdb.pending}, on disk) until the master
    acknowledges its version. Agents marked only for a keep-alive or a
    status change are read again whole (C{get-agent-info}), so every row
    sent is complete.
  - group assignments from the master: C{global set-agent-groups}, each
    missing group created first (C{insert-agent-group}: wazuh-db refuses
    assignments to groups it does not have). Assignments for agents
    wazuh-db does not know yet are kept aside (on disk) and applied once
    it knows them.

Master:

  - agent info from workers: written as full rows with C{global
    sync-agent-info-set} (wazuh-db refuses partial rows), each the stored
    row with the received columns over it, for agents wazuh-db knows
    (others are counted and ignored); an agent seen active with no group
    gets C{default}.
  - group assignments: read with C{global sync-agent-groups-get}, kept in a
    table with versions (L{wazuhcluster.wazuhdb.groups}); only marked
    changes are read, and the whole table again when wazuh-db's global
    hash says the table drifted.

client.keys (both): on a manager, wazuh-modulesd inserts the agents of
client.keys into wazuh-db and deletes the others (deleting their databases
too), and authd/remoted own the rows. L{WazuhDBAgentStore.reconcileClientKeys}
only inserts the agents wazuh-db lacks (as wazuh-modulesd would, so
assignments waiting for them apply at once), never updates or deletes a
row, and reports no removal.

Every failure (wazuh-db down, slow, C{err}) fails the call with a
L{wazuhcluster.wazuhdb.errors.WazuhDBError}; the next call starts afresh.
"""

from twisted.internet.defer import inlineCallbacks, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from wazuhcluster.agentdb.ownership import MOVE, REFUSE, ApplyOutcome
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.clientkeys import formatAgentId, parseAgentId
from wazuhcluster.errors import ClusterError
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.wazuhdb.classic import WazuhDBClient
from wazuhcluster.wazuhdb.commands import WazuhDBCommands
from wazuhcluster.wazuhdb.errors import (
    HTTP_CONNECT_ERROR,
    HTTP_STATUS_ERROR,
    WazuhDBError,
)
from wazuhcluster.wazuhdb.groups import GroupTable, storeHash
from wazuhcluster.wazuhdb.httpapi import WazuhDBHTTPClient
from wazuhcluster.wazuhdb.pending import PendingAgentInfo, PendingGroups
from wazuhcluster.wazuhdb.rows import (
    BadRow,
    checkedInfo,
    fullRow,
    infoFromWazuh,
    iterSyncLists,
    listedAgent,
)

PENDING_INFO = "queue/cluster/agent-info-pending.jsonl"

#: Default seconds for the reads that clear wazuh-db's marks.
READ_TIMEOUT = 300.0
PENDING_GROUPS = "queue/cluster/agent-groups-pending.json"

DEFAULT_GROUP = "default"
_MAX_GROUP_NAME = 255


def threadRunner(reactor):
    """
    Run blocking work in the reactor's thread pool; with a reactor that has
    none (a L{Clock} in tests), at once.
    """
    if IReactorThreads.providedBy(reactor):
        return lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    return maybeDeferred


def _validGroup(name):
    return (isinstance(name, str) and 0 < len(name) <= _MAX_GROUP_NAME
            and name not in (".", "..")
            and all(c.isascii() and (c.isalnum() or c in "._-") for c in name))


def _groupList(groups):
    result = []
    for name in groups:
        if not _validGroup(name):
            raise ClusterError(f"Incorrect format for group_id: {name!r:.80}", 1722)
        if name not in result:
            result.append(name)
    return result


@implementer(IAgentStore)
class WazuhDBAgentStore:
    """
    The agent store of a node beside a Wazuh manager.
    """

    def __init__(self, home, classic, http, clock, log=None, runInThread=None,
                 readTimeout=READ_TIMEOUT):
        """
        @type home: L{wazuhcluster.home.NodeHome}
        @param classic: a L{WazuhDBClient} of C{queue/db/wdb}.
        @param http: a L{WazuhDBHTTPClient} of C{queue/sockets/wdb-http.sock}.
        @param clock: the reactor (or a L{Clock}).
        @param readTimeout: seconds for the reads that clear wazuh-db's
            marks (a late answer to them is data: it is waited for longer
            than other answers, which nothing waits behind).
        """
        self.readTimeout = readTimeout
        self.log = ClusterLogger(subtag="Agent store") if log is None else log
        self._clock = clock
        self._classic = classic
        self._http = http
        self._wdb = WazuhDBCommands(classic)
        self._run = threadRunner(clock) if runInThread is None else runInThread
        self._pending = PendingAgentInfo(home.child(PENDING_INFO), self._run, self.log)
        self._pendingGroups = PendingGroups(home.child(PENDING_GROUPS), self._run, self.log)
        self._groups = GroupTable(int(clock.seconds() * 1000))

    @classmethod
    def open(cls, home, reactor=None, log=None, timeout=30.0):
        """
        Open the store of C{home}'s wazuh-db and read what it kept.

        @return: a Deferred firing with the store.
        """
        if reactor is None:
            from twisted.internet import reactor
        store = cls(home, WazuhDBClient.forHome(home, reactor, timeout=timeout),
                    WazuhDBHTTPClient.forHome(home, reactor, timeout=timeout), reactor, log)
        return store.load().addCallback(lambda _: store)

    @inlineCallbacks
    def load(self):
        """
        Read the rows and assignments kept from an earlier run.
        """
        yield self._pending.load()
        yield self._pendingGroups.load()

    @inlineCallbacks
    def close(self):
        yield self._pending.flush()
        yield self._classic.close()
        yield self._http.close()

    # -- both sides ------------------------------------------------------------

    @inlineCallbacks
    def reconcileClientKeys(self, entries):
        known = yield self._wdb.agentIds()
        wanted = {int(e.id): e for e in entries if int(e.id) > 0}
        missing = sorted(set(wanted) - known)
        now = int(self._clock.seconds())

        @inlineCallbacks
        def insert(number):
            entry = wanted[number]
            try:
                yield self._wdb.insertAgent(number, entry.name, entry.ip, entry.key, now)
            except WazuhDBError:
                # wazuh-modulesd may have inserted it meanwhile.
                if (yield self._wdb.agentRow(number)) is None:
                    raise
                return False
            return True

        inserted = yield self._wdb.each(missing, insert)
        added = [n for n, done in zip(missing, inserted, strict=True) if done]
        yield self._applyPendingGroups(known | set(missing))
        return [formatAgentId(n) for n in added], []

    @inlineCallbacks
    def listAgents(self):
        numbers = sorted((yield self._wdb.agentIds()))
        rows = yield self._wdb.agentRows(numbers)
        return [listedAgent(rows[n]) for n in numbers if rows[n] is not None]

    @inlineCallbacks
    def countActiveAgents(self, nodeName=None):
        active = yield self._wdb.activeAgents()
        if nodeName is None:
            return len(active)
        rows = yield self._wdb.agentRows(active)
        return sum(1 for row in rows.values() if row and row.get("node_name") == nodeName)

    # -- worker side: agent info -----------------------------------------------

    @inlineCallbacks
    def agentInfoToSync(self, limit=None, afterId=None):
        if afterId is None:
            yield self._readMarked()
            after = 0
        else:
            after = parseAgentId(afterId)
        return self._pending.page(limit, after)

    def markAgentInfoSynced(self, pairs):
        return succeed(self._pending.acknowledge(list(pairs)))

    @inlineCallbacks
    def _readMarked(self):
        """
        Keep what wazuh-db marked for sync (on disk before going on).
        """
        try:
            body = yield self._http.request(b"GET", "/agents/sync", timeout=self.readTimeout)
        except WazuhDBError as e:
            if not _httpUnavailable(e):
                raise
            self.log.debug("wazuh-db's HTTP API is not available ({error}); using "
                           "sync-agent-info-get.", error=str(e))
            yield self._completeRows()
            yield self._wdb.markedAgentInfo(self._keepWazuhRows, self.readTimeout)
            return
        lists = yield self._run(_parseAgentsSync, body)
        others = set()
        for name in ("syncreq_keepalive", "syncreq_status"):
            others.update(entry["id"] for entry in lists.get(name, [])
                          if isinstance(entry, dict) and type(entry.get("id")) is int
                          and entry["id"] > 0)
        # Both on disk before anything else can fail: the marks are gone.
        yield self._keepWazuhRows(lists.get("syncreq", []))
        yield self._pending.markIncomplete(others)
        yield self._completeRows()

    @inlineCallbacks
    def _completeRows(self):
        """
        Read whole the agents marked only for a keep-alive or a status
        change (and those an earlier failure left to read), as they are
        now.
        """
        numbers = sorted(self._pending.incomplete)
        if not numbers:
            return
        rows = yield self._wdb.agentRows(numbers)
        yield self._keepWazuhRows([row for row in rows.values() if row is not None])
        self._pending.completed([n for n, row in rows.items() if row is None])

    def _keepWazuhRows(self, rows):
        kept, skipped = [], []
        for row in rows:
            try:
                kept.append(infoFromWazuh(row))
            except BadRow as e:
                self.log.warning("An agent row of wazuh-db was skipped: {error}", error=str(e))
                if isinstance(row, dict) and type(row.get("id")) is int:
                    skipped.append(row["id"])
        self._pending.completed(skipped)
        return self._pending.merge(kept)

    # -- worker side: groups ---------------------------------------------------

    @inlineCallbacks
    def applyGroupAssignments(self, rows, full=False):
        parsed = {}
        for agentId, groups, version in rows:
            if type(version) is not int or version < 0:
                raise ValueError(f"invalid group version {version!r}")
            number = parseAgentId(agentId)
            if number == 0:
                raise ValueError("agent 000 has no groups")
            parsed[number] = _groupList(groups)
        known = yield self._wdb.agentIds()
        apply = {n: g for n, g in parsed.items() if n in known}
        pending = {n: g for n, g in parsed.items() if n not in known}
        if full:
            self._pendingGroups.assignments.clear()
            apply.update({n: [] for n in known - set(parsed)})
        yield self._setGroups(apply)
        if pending or full:
            self._pendingGroups.assignments.update(pending)
            yield self._pendingGroups.save()
        if full:
            yield self._wdb.recalculateHashes()
        return len(parsed) - len(pending), len(pending)

    @inlineCallbacks
    def _setGroups(self, assignments):
        if not assignments:
            return
        yield self._wdb.ensureGroups({g for groups in assignments.values() for g in groups})
        yield self._wdb.setGroups(sorted(assignments.items()), "synced")

    @inlineCallbacks
    def _applyPendingGroups(self, known):
        ready = {n: g for n, g in self._pendingGroups.assignments.items() if n in known}
        if not ready:
            return
        yield self._setGroups(ready)
        for number in ready:
            del self._pendingGroups.assignments[number]
        yield self._pendingGroups.save()

    @inlineCallbacks
    def globalGroupHash(self):
        assignments, _ = yield self._wdb.assignments()
        return storeHash(assignments)

    def groupedAgentNumbers(self):
        """
        The agents with a group in the table L{groupSnapshot} last read
        (the master reads a snapshot just before it asks).
        """
        return succeed(self._groups.groupedNumbers())

    # -- master side -------------------------------------------------------------

    @inlineCallbacks
    def applyAgentInfo(self, nodeName, rows, ownership=None):
        parsed = [checkedInfo(row) for row in rows]
        current = yield self._wdb.agentRows(sorted({n for n, _, _ in parsed if n > 0}))
        known = [(n, f, lab) for n, f, lab in parsed if current.get(n) is not None]
        stored, refused, moved = known, [], []
        if ownership is not None:
            stored, verdicts = [], {}
            for n, f, lab in known:
                if n not in verdicts:
                    verdicts[n] = ownership.decide(n, current[n].get("node_name"),
                                                   current[n].get("connection_status"),
                                                   f.get("connection_status"))
                    if verdicts[n] == REFUSE:
                        refused.append((n, current[n].get("node_name")))
                    elif verdicts[n] == MOVE:
                        moved.append((n, current[n].get("node_name")))
                if verdicts[n] != REFUSE:
                    stored.append((n, f, lab))
        yield self._wdb.setAgentInfo(
            [fullRow(current[n], n, f, lab, nodeName) for n, f, lab in stored])
        newcomers = sorted({n for n, f, _ in stored
                            if f.get("connection_status") == "active" and not current[n].get("group")})
        if newcomers:
            try:
                yield self._wdb.ensureGroups([DEFAULT_GROUP])
                yield self._wdb.setGroups([(n, [DEFAULT_GROUP]) for n in newcomers], "syncreq")
            except WazuhDBError as e:
                self.log.error("Could not assign the group {group} to {count} agents: {error}",
                               group=DEFAULT_GROUP, count=len(newcomers), error=str(e))
        if ownership is None:
            return len(stored), len(parsed) - len(stored)
        return ApplyOutcome(len(stored), len(parsed) - len(known),
                            tuple(sorted({n for n, _, _ in stored})), tuple(refused),
                            tuple(moved))

    @inlineCallbacks
    def groupSnapshot(self, version=None):
        table = self._groups
        if not table.loaded or version is None:
            assignments, _ = yield self._wdb.assignments("all", setSynced=True)
            table.replace(assignments)
        else:
            changes, wazuhHash = yield self._wdb.assignments("sync_status", setSynced=True)
            table.update(changes)
            if wazuhHash != table.wazuhHash():
                # Something changed that the marks do not tell (an agent
                # removed): read it all again.
                assignments, _ = yield self._wdb.assignments("all", setSynced=True)
                table.replace(assignments)
        return table.rows(version), table.version, table.storeHash()


def _httpUnavailable(error):
    """
    Whether C{error} says the HTTP API is not there (no socket, or no such
    endpoint), rather than that it failed.
    """
    if error.code == HTTP_CONNECT_ERROR:
        return True
    return error.code == HTTP_STATUS_ERROR and (error.detail or "").startswith("404")


def _parseAgentsSync(body):
    """
    The lists of a C{GET /v1/agents/sync} body (run in a thread).
    """
    try:
        lists = iterSyncLists(body.decode("utf-8"))
    except (UnicodeDecodeError, BadRow) as e:
        raise WazuhDBError(f"GET /v1/agents/sync: {e}", 2006) from None
    return {name: value for name, value in lists.items() if isinstance(value, list)}
