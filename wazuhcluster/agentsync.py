# -*- test-case-name: tests.test_agent_sync -*-
"""
What the agent features of both sides share: the wire format of agent-info
and agent-group chunks, with the strict validation of what a peer sent, and
how a node opens its agent database.

Agent info (worker -> master, L{wazuhcluster.commands.SendAgentInfo}):

    C{data} is a UTF-8 JSON array of objects, one per agent: C{id} (the
    3-digit ID), C{connection_status} (required, one of
    L{wazuhcluster.agentdb.CONNECTION_STATUSES}), any other column of
    L{wazuhcluster.agentdb.AGENT_INFO_FIELDS} (text, or an integer for
    C{last_keepalive}, C{disconnection_time}, C{status_code}; C{null}
    allowed) and C{labels} (an object of text values). No other key is
    accepted. A round is any number of chunks sent one after the other, the
    last with C{final} set (possibly an empty array); each chunk is answered
    once it is stored, with how many rows were stored and how many named an
    agent the master does not know.

Agent groups (master -> worker, L{wazuhcluster.commands.SendAgentGroups}):

    C{data} is a UTF-8 JSON array of C{[id, [group, ...], version]}. A batch
    is any number of chunks, the last with C{final} set, which carries the
    master's group version and global hash after the batch. C{full} (on
    every chunk of the batch) means the batch is the master's whole table.
    The worker applies the batch in one transaction when the final chunk
    arrives and answers it with whether its own global hash now equals the
    master's; earlier chunks are answered at once (C{hash_matches} false).

Every chunk's C{data} is at most L{wazuhcluster.commands.MAX_CHUNK} bytes.
"""

import json

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure

from wazuhcluster.agentdb import (
    AGENT_INFO_FIELDS,
    CONNECTION_STATUSES,
    AgentDatabase,
    AgentInfo,
)
from wazuhcluster.clientkeys import formatAgentId, parseAgentId, readClientKeys
from wazuhcluster.commands import MAX_CHUNK
from wazuhcluster.errors import ClusterError

_INT_FIELDS = frozenset(["last_keepalive", "disconnection_time", "status_code"])
_AGENT_INFO_KEYS = frozenset(AGENT_INFO_FIELDS) | {"id", "labels"}

#: Longest text value accepted in an agent-info row.
MAX_TEXT = 4096

#: Largest integer accepted in an agent-info row (SQLite's 64-bit range).
MAX_INT = 2**63 - 1


class MalformedChunk(ValueError):
    """
    A chunk received from a peer does not follow the wire format.
    """


# ---------------------------------------------------------------------------
# Database and threads


def hasThreads(reactor):
    """
    Whether C{reactor} can run work in threads (a real reactor; not the
    L{twisted.internet.task.Clock} of deterministic tests).
    """
    return IReactorThreads.providedBy(reactor)


def openAgentDatabase(path, reactor, managerName):
    """
    Open the agent database of a running node.

    With a real reactor the queries run in a thread through adbapi. With a
    fake reactor (a L{Clock} in tests) the blocking database is used: its
    L{Deferred}s have fired when returned, which keeps tests deterministic.

    @return: a L{Deferred} firing with the L{AgentDatabase}.
    """
    if hasThreads(reactor):
        return AgentDatabase.open(path, reactor=reactor, managerName=managerName)
    return maybeDeferred(AgentDatabase.openBlocking, path, managerName=managerName)


class DatabaseSlot:
    """
    Where a node's agent features find the agent database: it opens in the
    background at start, and callers wait for it with L{get}.
    """

    def __init__(self, injected=None):
        """
        @param injected: an already open L{AgentDatabase} to use (and not
            close) instead of opening one in L{open}.
        """
        self.database = None
        self._failure = None
        self._waiters = []
        self._injected = injected

    def open(self, path, reactor, managerName, log):
        """
        Open the database at C{path} (or take the injected one) in the
        background; waiters get it, or the failure, which is also logged.

        @return: a L{Deferred} firing with the database, or L{None} when it
            could not be opened (never failing).
        """
        if self._injected is not None:
            d = succeed(self._injected)
        else:
            d = openAgentDatabase(path, reactor, managerName)

        def openFailed(failure):
            log.error("Could not open the agent database: {error}",
                      error=failure.getErrorMessage())
            self.failed(failure)

        return d.addCallbacks(self.opened, openFailed)

    def get(self):
        """
        @return: a L{Deferred} firing with the L{AgentDatabase} once it is
            open (failing if it could not be opened).
        """
        if self.database is not None:
            return succeed(self.database)
        if self._failure is not None:
            return fail(self._failure)
        d = Deferred()
        self._waiters.append(d)
        return d

    def opened(self, database):
        self.database = database
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(database)
        return database

    def failed(self, failure):
        self._failure = failure
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)

    def close(self):
        """
        Close the database (if open); later L{get}s fail.
        """
        database, self.database = self.database, None
        self._failure = Failure(ClusterError("The agent database is closed", 2000))
        self.failed(self._failure)
        if database is not None:
            return database.close()
        return succeed(None)

    def release(self):
        """
        L{close}, unless the database was injected (its owner closes it).

        @return: a L{Deferred}, or L{None} for an injected database.
        """
        if self._injected is None:
            return self.close()
        return None


# ---------------------------------------------------------------------------
# Chunking


def encodeItem(item):
    """
    One element of a chunk's JSON array, compact, as ASCII bytes.
    """
    return json.dumps(item, separators=(",", ":")).encode("ascii")


def packChunks(encoded, limit=MAX_CHUNK):
    """
    Group encoded array elements into JSON arrays of at most C{limit} bytes.

    @param encoded: an iterable of C{(item, bytes)}, C{bytes} as made by
        L{encodeItem}, each at most C{limit - 2} bytes long.
    @return: a list of C{(items, data)}: the items of each chunk and its
        JSON text.
    """
    chunks = []
    items, parts, size = [], [], 2
    for item, data in encoded:
        extra = len(data) + (1 if parts else 0)
        if parts and size + extra > limit:
            chunks.append((items, b"[" + b",".join(parts) + b"]"))
            items, parts, size = [], [], 2
            extra = len(data)
        items.append(item)
        parts.append(data)
        size += extra
    if parts:
        chunks.append((items, b"[" + b",".join(parts) + b"]"))
    return chunks


def _loadArray(data):
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedChunk(f"not a JSON document: {e}") from None
    if not isinstance(value, list):
        raise MalformedChunk("not a JSON array")
    return value


def _agentNumber(value):
    try:
        number = parseAgentId(value)
    except ValueError:
        raise MalformedChunk(f"invalid agent ID {value!r}") from None
    if not isinstance(value, str) or number == 0:
        raise MalformedChunk(f"invalid agent ID {value!r}")
    return number


# ---------------------------------------------------------------------------
# Agent info


def agentInfoRow(row):
    """
    The wire form of a row of L{AgentDatabase.agentInfoToSync} (without its
    C{sync_version}, which stays on the worker).
    """
    return {key: value for key, value in row.items() if key != "sync_version"}


def decodeAgentInfo(data):
    """
    Parse and validate an agent-info chunk.

    @type data: L{bytes}
    @return: the rows as L{AgentInfo}, ready for
        L{AgentDatabase.applyAgentInfo} (which does not check them again).
    @raise MalformedChunk: anything off the wire format.
    """
    return [_checkedAgentInfo(row) for row in _loadArray(data)]


def checkAgentInfoRow(row):
    """
    Validate one agent-info row (as received, or before sending it).

    @return: the row, its C{id} in the 3-digit form.
    @raise MalformedChunk: the row is off the wire format.
    """
    number = _checkedAgentInfo(row).number
    return dict(row, id=formatAgentId(number))


def _checkedAgentInfo(row):
    """
    Validate one agent-info row.

    @return: its L{AgentInfo}.
    @raise MalformedChunk: the row is off the wire format.
    """
    if not isinstance(row, dict):
        raise MalformedChunk("an agent-info row is not an object")
    if not row.keys() <= _AGENT_INFO_KEYS:
        unexpected = set(row) - _AGENT_INFO_KEYS
        raise MalformedChunk(f"unexpected keys {sorted(unexpected)}")
    number = _agentNumber(row.get("id"))
    if row.get("connection_status") not in CONNECTION_STATUSES:
        raise MalformedChunk(f"agent {number:03d}: invalid connection_status")
    values = tuple(map(row.get, AGENT_INFO_FIELDS))
    for name, value in zip(AGENT_INFO_FIELDS, values):
        if value is None:
            continue
        if name in _INT_FIELDS:
            if type(value) is not int or not 0 <= value <= MAX_INT:
                raise MalformedChunk(f"agent {number:03d}: invalid {name}")
        elif type(value) is not str or len(value) > MAX_TEXT:
            raise MalformedChunk(f"agent {number:03d}: invalid {name}")
    labels = row.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and all(
            type(k) is str and type(v) is str and 0 < len(k) <= MAX_TEXT
            and len(v) <= MAX_TEXT
            for k, v in labels.items()
        )
    ):
        raise MalformedChunk(f"agent {number:03d}: invalid labels")
    return AgentInfo(number, values, labels)


# ---------------------------------------------------------------------------
# Agent groups


def groupRow(agentId, groups, version):
    """
    The wire form of one assignment.
    """
    return [agentId, list(groups), version]


def decodeAgentGroups(data):
    """
    Parse and validate an agent-groups chunk.

    @type data: L{bytes}
    @return: C{(id, groups, version)} tuples, ready for
        L{AgentDatabase.applyGroupAssignments}.
    @raise MalformedChunk: anything off the wire format.
    """
    rows = _loadArray(data)
    checked = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            raise MalformedChunk("an assignment is not [id, groups, version]")
        agentId, groups, version = row
        number = _agentNumber(agentId)
        if not (isinstance(groups, list) and all(type(g) is str for g in groups)):
            raise MalformedChunk(f"agent {number:03d}: invalid groups")
        if type(version) is not int or not 0 <= version <= MAX_INT:
            raise MalformedChunk(f"agent {number:03d}: invalid group version")
        checked.append((formatAgentId(number), groups, version))
    return checked


def reconcileClientKeys(database, keysPath, runInThread, log):
    """
    Read C{client.keys} off the reactor thread and bring C{database} in line
    with it (new agents added, removed ones deleted), logging what changed
    and every malformed line.

    @return: a L{Deferred} firing with C{(added, removed)} (two lists of
        IDs), or L{None} if it failed (logged; it never fails).
    """

    def reconcile(result):
        entries, problems = result
        for problem in problems:
            log.warn("{path}: {problem}", path=keysPath.path, problem=problem)
        return database.reconcileClientKeys(entries)

    def reconciled(result):
        added, removed = result
        if added or removed:
            log.info("Agent database updated from client.keys: {added} added, "
                     "{removed} removed.", added=len(added), removed=len(removed))
        return result

    def failed(failure):
        log.error("Could not reconcile client.keys: {error}", error=failure.getErrorMessage())
        return None

    d = runInThread(readClientKeys, keysPath)
    return d.addCallback(reconcile).addCallbacks(reconciled, failed)
