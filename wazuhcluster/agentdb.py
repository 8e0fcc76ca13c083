# -*- test-case-name: tests.test_agentdb -*-
"""
The agent database, C{queue/db/global.db}: SQLite in WAL mode, modelled on
the original's wazuh-db C{global.db} (WAZUH.md sections 4.5 and 4.6).

Every query runs in a thread through L{twisted.enterprise.adbapi} (one
connection, so one writer per process); every method of L{AgentDatabase}
returns a L{Deferred}. Each unit of work is a module-level I{interaction}
(a function of a DB-API cursor) that opens its own transaction; the same
interactions run synchronously in the short-lived C{wazuh-cluster agent}
process through L{AgentDatabase.openBlocking}, so the daemon and the CLI
share every line of SQL.

Sync-state rules:

  - Agent info (worker to master): L{AgentDatabase.reportAgent} marks a row
    C{sync_status='syncreq'} and bumps its C{sync_version};
    L{AgentDatabase.agentInfoToSync} reads the marked rows with their
    versions; once the master acknowledged them,
    L{AgentDatabase.markAgentInfoSynced} marks synced only the rows whose
    version is unchanged, so a row reported again during a sync stays marked.
    The master stores rows with L{AgentDatabase.applyAgentInfo} for the
    agents it knows and counts the others.
  - Agent groups (master to workers): every assignment change on the master
    takes the next value of a global counter (C{metadata.group_version}) as
    the agent's C{group_version}; L{AgentDatabase.groupChangesSince} returns
    what changed after a version a worker acknowledged. Workers store the
    rows with L{AgentDatabase.applyGroupAssignments} and compare
    L{AgentDatabase.globalGroupHash} with the master's.

Agent C{000} is the manager itself: inserted at creation, never listed,
never synced, never changed through this API.
"""

import functools
import hashlib
import os
import socket
import sqlite3
import time
from datetime import datetime, timezone
from typing import NamedTuple, Optional

from attrs import define
from twisted.enterprise import adbapi
from twisted.internet.defer import fail, succeed
from twisted.python.failure import Failure

from wazuhcluster.clientkeys import formatAgentId, parseAgentId
from wazuhcluster.errors import ClusterError
from wazuhcluster.grouphash import globalHash

#: The schema version this code creates and expects.
SCHEMA_VERSION = 1

#: How long a statement waits for another process's lock, in milliseconds.
BUSY_TIMEOUT_MS = 10000

#: Values of C{agent.connection_status}.
CONNECTION_STATUSES = ("never_connected", "pending", "active", "disconnected")

#: The operating system columns of C{agent}.
OS_FIELDS = (
    "os_name",
    "os_version",
    "os_major",
    "os_minor",
    "os_codename",
    "os_build",
    "os_platform",
    "os_uname",
    "os_arch",
)

#: The columns an agent-info row carries from a worker to the master (besides
#: C{id}, C{sync_version} and C{labels}). Integer columns are listed in
#: L{_INT_FIELDS}; every other one is text.
AGENT_INFO_FIELDS = OS_FIELDS + (
    "version",
    "config_sum",
    "merged_sum",
    "manager_host",
    "last_keepalive",
    "connection_status",
    "disconnection_time",
    "status_code",
)

_INT_FIELDS = frozenset(["last_keepalive", "disconnection_time", "status_code"])

#: The group an agent seen active for the first time with no group gets.
DEFAULT_GROUP = "default"

#: Longest group name Wazuh accepts.
MAX_GROUP_NAME_LENGTH = 255

_SCHEMA_V1 = [
    """CREATE TABLE metadata (
        key TEXT PRIMARY KEY,
        value
    )""",
    """CREATE TABLE agent (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        ip TEXT,
        register_ip TEXT,
        internal_key TEXT,
        os_name TEXT,
        os_version TEXT,
        os_major TEXT,
        os_minor TEXT,
        os_codename TEXT,
        os_build TEXT,
        os_platform TEXT,
        os_uname TEXT,
        os_arch TEXT,
        version TEXT,
        config_sum TEXT,
        merged_sum TEXT,
        manager_host TEXT,
        node_name TEXT,
        date_add INTEGER NOT NULL,
        last_keepalive INTEGER,
        connection_status TEXT NOT NULL DEFAULT 'never_connected'
            CHECK (connection_status IN
                   ('never_connected', 'pending', 'active', 'disconnected')),
        disconnection_time INTEGER NOT NULL DEFAULT 0,
        status_code INTEGER NOT NULL DEFAULT 0,
        sync_status TEXT NOT NULL DEFAULT 'synced'
            CHECK (sync_status IN ('synced', 'syncreq')),
        sync_version INTEGER NOT NULL DEFAULT 0,
        "group" TEXT,
        group_hash TEXT,
        group_sync_status TEXT NOT NULL DEFAULT 'synced'
            CHECK (group_sync_status IN ('synced', 'syncreq')),
        group_version INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX agent_name ON agent (name)",
    "CREATE INDEX agent_syncreq ON agent (id) WHERE sync_status = 'syncreq'",
    "CREATE INDEX agent_group_version ON agent (group_version)",
    """CREATE TABLE labels (
        id INTEGER NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (id, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE "group" (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE belongs (
        id_agent INTEGER NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        id_group INTEGER NOT NULL REFERENCES "group" (id) ON DELETE CASCADE,
        priority INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (id_agent, id_group)
    ) WITHOUT ROWID""",
    "CREATE INDEX belongs_group ON belongs (id_group)",
    # Assignments a worker received for agents its client.keys does not list
    # yet; applied when reconcileClientKeys adds them.
    """CREATE TABLE pending_groups (
        id INTEGER PRIMARY KEY,
        "group" TEXT,
        group_version INTEGER NOT NULL
    )""",
]


# ---------------------------------------------------------------------------
# Connections


def _configureConnection(connection):
    """
    Prepare a new SQLite connection: WAL journal, foreign keys, a busy
    timeout for concurrent processes (daemon and CLI), and
    C{synchronous=NORMAL} (durable at each checkpoint, never corrupt, the
    usual WAL setting).
    """
    connection.isolation_level = None
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")


def _connectionPool(path, reactor):
    """
    The L{adbapi.ConnectionPool} of one database: a single connection and
    thread, so writes from this process never contend with each other.
    """
    kwargs = {}
    if reactor is not None:
        kwargs["cp_reactor"] = reactor
    return adbapi.ConnectionPool(
        "sqlite3",
        path.path,
        check_same_thread=False,
        isolation_level=None,
        cp_min=1,
        cp_max=1,
        cp_openfun=_configureConnection,
        **kwargs,
    )


@define
class _BlockingPool:
    """
    Run interactions at once in the calling thread, for a process without a
    reactor (the C{wazuh-cluster agent} commands). Offers the part of
    L{adbapi.ConnectionPool} that L{AgentDatabase} uses; results come as
    already-fired L{Deferred}s.
    """

    _connection: sqlite3.Connection

    @classmethod
    def connect(cls, path):
        connection = sqlite3.connect(path.path, isolation_level=None)
        _configureConnection(connection)
        return cls(connection)

    def runInteraction(self, interaction, *args, **kwargs):
        cursor = self._connection.cursor()
        try:
            result = interaction(cursor, *args, **kwargs)
            self._connection.commit()
        except BaseException:
            failure = Failure()
            self._connection.rollback()
            return fail(failure)
        finally:
            cursor.close()
        return succeed(result)

    def close(self):
        self._connection.close()


def _transaction(immediate):
    """
    Decorate an interaction so that it runs in one explicit transaction
    (the connection is in autocommit mode; the pool commits or rolls back).

    @param immediate: take the write lock at once (C{BEGIN IMMEDIATE}), for
        interactions that write, so a read-then-write is never interleaved
        with another process's write.
    """
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def decorator(interaction):
        @functools.wraps(interaction)
        def run(txn, *args, **kwargs):
            txn.execute(begin)
            return interaction(txn, *args, **kwargs)

        return run

    return decorator


_reads = _transaction(immediate=False)
_writes = _transaction(immediate=True)


# ---------------------------------------------------------------------------
# Values


def groupHash(groups):
    """
    The hash of one agent's group list, like Wazuh's C{group_hash}: the first
    8 hex digits of the SHA-1 of the comma-separated list; L{None} for no
    group.

    @type groups: sequence of L{str}
    """
    if not groups:
        return None
    return hashlib.sha1(",".join(groups).encode("utf-8")).hexdigest()[:8]


def _normaliseGroups(groups):
    """
    Check group names and drop repeats, keeping the order (the first group
    has the highest priority).

    @raise ClusterError: 1722 for a name Wazuh would refuse.
    @rtype: L{tuple} of L{str}
    """
    result = []
    for name in groups:
        if not _isValidGroupName(name):
            raise ClusterError(f"Incorrect format for group_id: {name!r}", 1722)
        if name not in result:
            result.append(name)
    return tuple(result)


def _isValidGroupName(name):
    """
    Whether C{name} is a valid group name: letters, digits, C{.}, C{_} and
    C{-}, at most L{MAX_GROUP_NAME_LENGTH} characters, not C{.} or C{..}.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_GROUP_NAME_LENGTH
        and name not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )


def _splitGroups(column):
    """
    The list of groups stored in the C{agent.group} column.
    """
    return column.split(",") if column else []


def _isoTime(timestamp):
    """
    A stored epoch time as an ISO 8601 UTC string, or L{None}.
    """
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _agentNumber(agentId):
    """
    Parse an agent ID given to the API.

    @raise ClusterError: 1701 for an ID that is not a number.
    """
    try:
        return parseAgentId(agentId)
    except ValueError:
        raise ClusterError(f"Agent does not exist: {agentId!r}", 1701) from None


def _requireAgent(txn, number):
    """
    Check that agent C{number} exists and is not the manager.

    @raise ClusterError: 1703 for the manager, 1701 for an unknown agent.
    """
    if number == 0:
        raise ClusterError("Action not available for Manager (agent 000)", 1703)
    txn.execute("SELECT 1 FROM agent WHERE id = ?", (number,))
    if txn.fetchone() is None:
        raise ClusterError(f"Agent does not exist: {formatAgentId(number)}", 1701)


# ---------------------------------------------------------------------------
# Schema


def _schemaVersion(txn):
    """
    The schema version of an open database (0 when it is empty).
    """
    txn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metadata'"
    )
    if txn.fetchone() is None:
        return 0
    txn.execute("SELECT value FROM metadata WHERE key = 'db_version'")
    row = txn.fetchone()
    return int(row[0]) if row else 0


def _migrateTo1(txn, managerName, now):
    """
    Create the first schema and the manager's row, agent C{000}.
    """
    for statement in _SCHEMA_V1:
        txn.execute(statement)
    txn.executemany(
        "INSERT INTO metadata (key, value) VALUES (?, ?)",
        [("db_version", 0), ("group_version", 0)],
    )
    txn.execute(
        "INSERT INTO agent (id, name, ip, register_ip, date_add, "
        "connection_status) VALUES (0, ?, '127.0.0.1', '127.0.0.1', ?, 'active')",
        (managerName, now),
    )


#: C{_MIGRATIONS[n]} takes a database from version C{n} to C{n + 1}.
_MIGRATIONS = {0: _migrateTo1}


@_writes
def _txnMigrate(txn, managerName, now):
    """
    Create or upgrade the schema to L{SCHEMA_VERSION}.

    @return: the version found before migrating.
    @raise ClusterError: the database was written by a newer version.
    """
    found = _schemaVersion(txn)
    if found > SCHEMA_VERSION:
        raise ClusterError(
            f"Agent database schema version {found} is newer than the "
            f"supported version {SCHEMA_VERSION}",
            2000,
        )
    for version in range(found, SCHEMA_VERSION):
        _MIGRATIONS[version](txn, managerName, now)
    txn.execute(
        "UPDATE metadata SET value = ? WHERE key = 'db_version'", (SCHEMA_VERSION,)
    )
    return found


@_reads
def _txnMetadata(txn, key):
    txn.execute("SELECT value FROM metadata WHERE key = ?", (key,))
    row = txn.fetchone()
    return row[0] if row else None


@_reads
def _txnJournalMode(txn):
    txn.execute("PRAGMA journal_mode")
    return txn.fetchone()[0]


# ---------------------------------------------------------------------------
# Groups


def _bumpGroupVersion(txn):
    """
    Take the next value of the global group-assignment counter.
    """
    txn.execute("UPDATE metadata SET value = value + 1 WHERE key = 'group_version'")
    txn.execute("SELECT value FROM metadata WHERE key = 'group_version'")
    return txn.fetchone()[0]


def _raiseGroupVersion(txn, version):
    """
    Make the global counter at least C{version} (on a worker, the highest
    version received from the master).
    """
    txn.execute(
        "UPDATE metadata SET value = MAX(value, ?) WHERE key = 'group_version'",
        (version,),
    )


def _currentGroupVersion(txn):
    txn.execute("SELECT value FROM metadata WHERE key = 'group_version'")
    return txn.fetchone()[0]


#: Assignments sharing their groups and version stored with set-based
#: statements once there are at least this many of them.
_SET_BASED_MIN = 16

#: Agent numbers per C{IN (...)} list.
_IN_BATCH = 500


def _writeGroups(txn, assignments, syncStatus):
    """
    Store group assignments: the C{agent} columns and the C{belongs} rows.

    @param assignments: C{(number, groups, version)} for existing agents,
        groups already normalised.
    @param syncStatus: the C{group_sync_status} to set.
    """
    if not assignments:
        return
    names = {name for _, groups, _ in assignments for name in groups}
    txn.executemany(
        'INSERT OR IGNORE INTO "group" (name) VALUES (?)', [(g,) for g in names]
    )
    # Many agents getting the same groups in one change (the default group
    # of agents seen for the first time, a group change of many agents):
    # a few statements over IN lists instead of statements per agent.
    shared = {}
    for n, groups, version in assignments:
        shared.setdefault((tuple(groups), version), []).append(n)
    single = []
    for (groups, version), numbers in shared.items():
        if len(numbers) < _SET_BASED_MIN:
            single.extend((n, groups, version) for n in numbers)
        else:
            _writeSharedGroups(txn, sorted(numbers), groups, version, syncStatus)
    if not single:
        return
    txn.executemany(
        'UPDATE agent SET "group" = ?, group_hash = ?, group_version = ?, '
        "group_sync_status = ? WHERE id = ?",
        [
            (",".join(groups) or None, groupHash(groups), version, syncStatus, n)
            for n, groups, version in single
        ],
    )
    txn.executemany(
        "DELETE FROM belongs WHERE id_agent = ?", [(n,) for n, _, _ in single]
    )
    txn.executemany(
        "INSERT INTO belongs (id_agent, id_group, priority) "
        'SELECT ?, id, ? FROM "group" WHERE name = ?',
        [
            (n, priority, name)
            for n, groups, _ in single
            for priority, name in enumerate(groups)
        ],
    )


def _writeSharedGroups(txn, numbers, groups, version, syncStatus):
    """
    Store the same C{groups} and C{version} for every agent of C{numbers}.
    """
    column, hashed = ",".join(groups) or None, groupHash(groups)
    groupIds = []
    for name in groups:
        txn.execute('SELECT id FROM "group" WHERE name = ?', (name,))
        groupIds.append(txn.fetchone()[0])
    for start in range(0, len(numbers), _IN_BATCH):
        batch = numbers[start : start + _IN_BATCH]
        marks = ",".join("?" * len(batch))
        txn.execute(
            'UPDATE agent SET "group" = ?, group_hash = ?, group_version = ?, '
            f"group_sync_status = ? WHERE id IN ({marks})",
            (column, hashed, version, syncStatus, *batch),
        )
        txn.execute(f"DELETE FROM belongs WHERE id_agent IN ({marks})", batch)
        for priority, groupId in enumerate(groupIds):
            txn.execute(
                "INSERT INTO belongs (id_agent, id_group, priority) "
                f"SELECT id, ?, ? FROM agent WHERE id IN ({marks})",
                (groupId, priority, *batch),
            )


def _assignGroups(txn, pairs):
    """
    Change the groups of agents on the master: one new global version for
    the whole change, marked C{syncreq}.

    @param pairs: C{(number, groups)}, groups already normalised.
    @return: the new version.
    """
    version = _bumpGroupVersion(txn)
    _writeGroups(
        txn, [(n, groups, version) for n, groups in pairs], syncStatus="syncreq"
    )
    return version


@_writes
def _txnSetAgentGroups(txn, number, groups):
    _requireAgent(txn, number)
    return _assignGroups(txn, [(number, groups)])


def _assignmentRows(txn, where, params=()):
    txn.execute(
        f'SELECT id, "group", group_version FROM agent WHERE id > 0 {where} '
        "ORDER BY id",
        params,
    )
    return [
        (formatAgentId(n), _splitGroups(groups), version)
        for n, groups, version in txn.fetchall()
    ]


@_reads
def _txnGroupChangesSince(txn, version):
    rows = _assignmentRows(txn, "AND group_version > ?", (version,))
    return rows, _currentGroupVersion(txn)


@_reads
def _txnAllGroupAssignments(txn):
    return _assignmentRows(txn, ""), _currentGroupVersion(txn)


def _globalGroupHash(txn):
    txn.execute(
        "SELECT id, group_hash FROM agent WHERE id > 0 AND group_hash IS NOT NULL"
    )
    return globalHash(txn.fetchall())


@_reads
def _txnGlobalGroupHash(txn):
    return _globalGroupHash(txn)


@_reads
def _txnGroupSnapshot(txn, version):
    """
    The changes after C{version} (every assignment when L{None}), the
    current version and the global hash, read in one transaction: one
    consistent snapshot, even while agent info assigns groups.
    """
    if version is None:
        rows = _assignmentRows(txn, "")
    else:
        rows = _assignmentRows(txn, "AND group_version > ?", (version,))
    return rows, _currentGroupVersion(txn), _globalGroupHash(txn)


def _parseAssignments(rows):
    """
    Validate group assignment rows received from the master.

    @return: C{(number, groups, version)} with normalised groups.
    @raise ValueError: a row is malformed.
    @raise ClusterError: a group name is invalid.
    """
    parsed = []
    for agentId, groups, version in rows:
        if not isinstance(version, int) or version < 0:
            raise ValueError(f"invalid group version {version!r}")
        number = parseAgentId(agentId)
        if number == 0:
            raise ValueError("agent 000 has no groups")
        parsed.append((number, _normaliseGroups(groups), version))
    return parsed


@_writes
def _txnApplyGroupAssignments(txn, rows, full):
    assignments = _parseAssignments(rows)
    known = _agentNumbers(txn)
    applied = [a for a in assignments if a[0] in known]
    pending = [a for a in assignments if a[0] not in known]
    if full:
        txn.execute("DELETE FROM pending_groups")
        present = {a[0] for a in assignments}
        top = max((a[2] for a in assignments), default=0)
        applied += [(n, (), top) for n in sorted(known - present)]
    _writeGroups(txn, applied, syncStatus="synced")
    txn.executemany(
        'INSERT OR REPLACE INTO pending_groups (id, "group", group_version) '
        "VALUES (?, ?, ?)",
        [(n, ",".join(groups) or None, version) for n, groups, version in pending],
    )
    if assignments:
        _raiseGroupVersion(txn, max(a[2] for a in assignments))
    return len(assignments) - len(pending), len(pending)


# ---------------------------------------------------------------------------
# Management


def _agentNumbers(txn):
    txn.execute("SELECT id FROM agent WHERE id > 0")
    return {row[0] for row in txn.fetchall()}


@_writes
def _txnAddAgent(txn, number, name, ip, key, groups, now):
    if number == 0:
        raise ClusterError("Action not available for Manager (agent 000)", 1703)
    txn.execute("SELECT 1 FROM agent WHERE id = ?", (number,))
    if txn.fetchone() is not None:
        raise ClusterError(
            f"There is an agent with the same ID: {formatAgentId(number)}", 1708
        )
    txn.execute("SELECT 1 FROM agent WHERE name = ? AND id > 0", (name,))
    if txn.fetchone() is not None:
        raise ClusterError(f"There is an agent with the same name: {name}", 1705)
    _insertAgents(txn, [(number, name, ip, key)], now)
    if groups:
        _assignGroups(txn, [(number, groups)])
    return formatAgentId(number)


def _insertAgents(txn, agents, now):
    """
    Insert new agents, C{(number, name, ip, key)}, never connected.
    """
    txn.executemany(
        "INSERT INTO agent (id, name, ip, register_ip, internal_key, date_add) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(n, name, ip, ip, key, now) for n, name, ip, key in agents],
    )


@_writes
def _txnRemoveAgent(txn, number):
    _requireAgent(txn, number)
    txn.execute("DELETE FROM agent WHERE id = ?", (number,))


_LIST_COLUMNS = (
    'id, name, ip, connection_status, version, node_name, "group", '
    "os_name, os_version, last_keepalive"
)


def _listedAgent(row):
    """
    The public form of one agent (DESIGN.md, C{agent list --json}).
    """
    n, name, ip, status, version, node, groups, osName, osVersion, alive = row
    return {
        "id": formatAgentId(n),
        "name": name,
        "ip": ip,
        "status": status,
        "version": version,
        "node_name": node,
        "groups": _splitGroups(groups),
        "os_name": osName,
        "os_version": osVersion,
        "last_keepalive": _isoTime(alive),
    }


@_reads
def _txnListAgents(txn):
    txn.execute(f"SELECT {_LIST_COLUMNS} FROM agent WHERE id > 0 ORDER BY id")
    return [_listedAgent(row) for row in txn.fetchall()]


@_reads
def _txnGetAgent(txn, number):
    if number == 0:
        return None
    txn.execute("SELECT * FROM agent WHERE id = ?", (number,))
    row = txn.fetchone()
    if row is None:
        return None
    agent = dict(zip([d[0] for d in txn.description], row))
    agent["id"] = formatAgentId(number)
    agent["groups"] = _splitGroups(agent.pop("group"))
    agent["last_keepalive"] = _isoTime(agent["last_keepalive"])
    agent["labels"] = _labelsOf(txn, number)
    return agent


def _labelsOf(txn, number):
    txn.execute("SELECT key, value FROM labels WHERE id = ? ORDER BY key", (number,))
    return dict(txn.fetchall())


@_reads
def _txnCountActiveAgents(txn, nodeName):
    query = "SELECT COUNT(*) FROM agent WHERE id > 0 AND connection_status = 'active'"
    if nodeName is None:
        txn.execute(query)
    else:
        txn.execute(query + " AND node_name = ?", (nodeName,))
    return txn.fetchone()[0]


# ---------------------------------------------------------------------------
# Worker side: client.keys and reports


@_writes
def _txnReconcile(txn, entries, now):
    wanted = {int(e.id): e for e in entries if int(e.id) > 0}
    txn.execute("SELECT id, name, register_ip, internal_key FROM agent WHERE id > 0")
    current = {row[0]: row[1:] for row in txn.fetchall()}
    removed = sorted(set(current) - set(wanted))
    added = sorted(set(wanted) - set(current))
    changed = [
        n
        for n in sorted(set(current) & set(wanted))
        if current[n] != (wanted[n].name, wanted[n].ip, wanted[n].key)
    ]
    txn.executemany("DELETE FROM agent WHERE id = ?", [(n,) for n in removed])
    txn.executemany(
        "UPDATE agent SET name = ?, ip = ?, register_ip = ?, internal_key = ? "
        "WHERE id = ?",
        [
            (wanted[n].name, wanted[n].ip, wanted[n].ip, wanted[n].key, n)
            for n in changed
        ],
    )
    _insertAgents(
        txn, [(n, wanted[n].name, wanted[n].ip, wanted[n].key) for n in added], now
    )
    _applyPendingGroups(txn, added)
    return [formatAgentId(n) for n in added], [formatAgentId(n) for n in removed]


def _applyPendingGroups(txn, numbers):
    """
    Apply assignments received before the agents they name were known.
    """
    if not numbers:
        return
    txn.execute('SELECT id, "group", group_version FROM pending_groups')
    wanted = set(numbers)
    pending = [
        (n, tuple(_splitGroups(groups)), version)
        for n, groups, version in txn.fetchall()
        if n in wanted
    ]
    _writeGroups(txn, pending, syncStatus="synced")
    txn.executemany(
        "DELETE FROM pending_groups WHERE id = ?", [(n,) for n, _, _ in pending]
    )


def _reportAssignments(status, os, version, nodeName, now):
    """
    The C{SET} clause and values of one report.
    """
    if status not in CONNECTION_STATUSES:
        raise ClusterError(
            f"Invalid agent status {status!r}: expected one of "
            + ", ".join(CONNECTION_STATUSES),
            1000,
        )
    columns = {"connection_status": status, "status_code": 0}
    if status == "active":
        columns["last_keepalive"] = now
    elif status == "disconnected":
        columns["disconnection_time"] = now
    for key, value in (os or {}).items():
        if key not in OS_FIELDS:
            raise ValueError(f"unknown OS field {key!r}")
        columns[key] = value
    if version is not None:
        columns["version"] = version
    if nodeName is not None:
        columns["node_name"] = nodeName
    return columns


@_writes
def _txnReportAgent(txn, number, columns, labels):
    _requireAgent(txn, number)
    assignments = ", ".join(f"{name} = ?" for name in columns)
    txn.execute(
        f"UPDATE agent SET {assignments}, sync_status = 'syncreq', "
        "sync_version = sync_version + 1 WHERE id = ?",
        (*columns.values(), number),
    )
    if labels is not None:
        _replaceLabels(txn, [(number, labels)])
    txn.execute("SELECT sync_version FROM agent WHERE id = ?", (number,))
    return txn.fetchone()[0]


def _replaceLabels(txn, pairs):
    """
    Replace the labels of agents: C{(number, {key: value})}.
    """
    numbers = [n for n, _ in pairs]
    for start in range(0, len(numbers), _IN_BATCH):
        batch = numbers[start : start + _IN_BATCH]
        txn.execute(
            f"DELETE FROM labels WHERE id IN ({','.join('?' * len(batch))})", batch
        )
    txn.executemany(
        "INSERT INTO labels (id, key, value) VALUES (?, ?, ?)",
        [(n, key, value) for n, labels in pairs for key, value in labels.items()],
    )


_SYNC_COLUMNS = "id, sync_version, " + ", ".join(AGENT_INFO_FIELDS)


@_reads
def _txnAgentInfoToSync(txn, limit, after):
    query = (
        f"SELECT {_SYNC_COLUMNS} FROM agent "
        "WHERE sync_status = 'syncreq' AND id > ? ORDER BY id"
    )
    if limit is None:
        txn.execute(query, (after,))
    else:
        txn.execute(query + " LIMIT ?", (after, limit))
    rows = txn.fetchall()
    if not rows:
        return []
    txn.execute(
        "SELECT l.id, l.key, l.value FROM labels l JOIN agent a ON a.id = l.id "
        "WHERE a.sync_status = 'syncreq' AND a.id > ? AND a.id <= ?",
        (after, rows[-1][0]),
    )
    labels = {}
    for n, key, value in txn.fetchall():
        labels.setdefault(n, {})[key] = value
    return [_syncRow(row, labels.get(row[0], {})) for row in rows]


def _syncRow(row, labels):
    result = dict(zip(AGENT_INFO_FIELDS, row[2:]))
    result["id"] = formatAgentId(row[0])
    result["sync_version"] = row[1]
    result["labels"] = labels
    return result


@_writes
def _txnMarkSynced(txn, pairs):
    txn.executemany(
        "UPDATE agent SET sync_status = 'synced' "
        "WHERE id = ? AND sync_version = ? AND sync_status = 'syncreq'",
        [(parseAgentId(agentId), version) for agentId, version in pairs],
    )
    return max(txn.rowcount, 0)


# ---------------------------------------------------------------------------
# Master side: agent info


class AgentInfo(NamedTuple):
    """
    One agent-info row already validated and converted (as
    L{wazuhcluster.agentsync.decodeAgentInfo} makes them from a received
    chunk): L{AgentDatabase.applyAgentInfo} stores it without checking it
    again.

    @ivar number: the agent number.
    @ivar values: the values of L{AGENT_INFO_FIELDS}, in order.
    @ivar labels: the labels, L{None} when the row has none.
    """

    number: int
    values: tuple
    labels: Optional[dict]


def _agentInfoParams(row):
    """
    Validate one agent-info row from a worker.

    @return: the agent number, the values of L{AGENT_INFO_FIELDS} in order,
        and the labels (L{None} when the row has none).
    @raise ValueError: the row is malformed.
    """
    number = parseAgentId(row["id"])
    values = tuple(row.get(name) for name in AGENT_INFO_FIELDS)
    for name, value in zip(AGENT_INFO_FIELDS, values):
        if value is None:
            continue
        expected = int if name in _INT_FIELDS else str
        if type(value) is not expected:
            raise ValueError(f"agent {number}: invalid {name} {value!r}")
    if row.get("connection_status") not in CONNECTION_STATUSES:
        raise ValueError(f"agent {number}: invalid connection_status")
    labels = row.get("labels")
    if labels is not None and not (
        isinstance(labels, dict)
        and all(type(k) is str and type(v) is str for k, v in labels.items())
    ):
        raise ValueError(f"agent {number}: invalid labels")
    return number, values, labels


_APPLY_SQL = (
    "UPDATE agent SET "
    + ", ".join(
        f"{name} = COALESCE(?, {name})" if name in _INT_FIELDS else f"{name} = ?"
        for name in AGENT_INFO_FIELDS
    )
    + ", node_name = ? WHERE id = ?"
)


@_writes
def _txnApplyAgentInfo(txn, nodeName, rows):
    parsed = [
        row if isinstance(row, AgentInfo) else _agentInfoParams(row) for row in rows
    ]
    # Only the agents of this batch (reading the whole table per chunk made
    # a 100 000-agent sync quadratic).
    numbers = sorted({p[0] for p in parsed if p[0] > 0})
    known = {}
    for start in range(0, len(numbers), 500):
        batch = numbers[start : start + 500]
        marks = ",".join("?" * len(batch))
        txn.execute(
            f'SELECT id, group_version, "group" IS NULL FROM agent WHERE id IN ({marks})',
            batch,
        )
        known.update((n, (version, noGroup)) for n, version, noGroup in txn.fetchall())
    stored = [p for p in parsed if p[0] in known]
    txn.executemany(_APPLY_SQL, [(*values, nodeName, n) for n, values, _ in stored])
    _replaceLabels(txn, [(n, labels) for n, _, labels in stored if labels is not None])
    _assignDefaultGroup(txn, stored, known)
    return len(stored), len(parsed) - len(stored)


_STATUS_INDEX = AGENT_INFO_FIELDS.index("connection_status")


def _assignDefaultGroup(txn, stored, known):
    """
    Give L{DEFAULT_GROUP} to agents seen active that never had a group
    assignment (group version 0 and no group).
    """
    newcomers = sorted(
        {
            n
            for n, values, _ in stored
            if values[_STATUS_INDEX] == "active" and known[n] == (0, 1)
        }
    )
    if newcomers:
        _assignGroups(txn, [(n, (DEFAULT_GROUP,)) for n in newcomers])


# ---------------------------------------------------------------------------
# The API


@define
class AgentDatabase:
    """
    The agent database of one node.

    Open it with L{open} (daemon, queries in a thread) or L{openBlocking}
    (CLI process without a reactor: same interactions, run at once). Every
    method returns a L{Deferred}; agent IDs come back as 3-digit strings
    (C{"001"}) and are accepted as such or as numbers.
    """

    _pool: object

    @classmethod
    def open(cls, path, reactor=None, managerName=None, now=None):
        """
        Open (creating or migrating it as needed) the database at C{path}.

        @type path: L{twisted.python.filepath.FilePath}
        @param reactor: the reactor that runs the pool's thread pool and
            delivers results (the global reactor when L{None}).
        @param managerName: the name of agent C{000} when the database is
            created (the host name by default).
        @param now: the creation time as an epoch (now by default).
        @return: a L{Deferred} firing with the L{AgentDatabase}.
        """
        path.parent().makedirs(ignoreExistingDirectory=True)
        database = cls(_connectionPool(path, reactor))
        return database._migrate(path, managerName, now)

    @classmethod
    def openBlocking(cls, path, managerName=None, now=None):
        """
        Open the database at C{path} for synchronous use in a process that
        runs no reactor: every method's L{Deferred} has already fired when
        it is returned.

        @rtype: L{AgentDatabase}
        @raise ClusterError: the database is newer than this code.
        @raise sqlite3.Error: the database cannot be opened.
        """
        path.parent().makedirs(ignoreExistingDirectory=True)
        database = cls(_BlockingPool.connect(path))
        results = []
        database._migrate(path, managerName, now).addBoth(results.append)
        if isinstance(results[0], Failure):
            database._pool.close()
            results[0].raiseException()
        return database

    def _migrate(self, path, managerName, now):
        if managerName is None:
            managerName = socket.gethostname()
        d = self._pool.runInteraction(_txnMigrate, managerName, _now(now))

        def done(found):
            if found == 0:
                os.chmod(path.path, 0o660)
            return self

        def failed(failure):
            self._pool.close()
            return failure

        return d.addCallbacks(done, failed)

    def close(self):
        """
        Close the connection and stop the pool's thread.

        @return: a L{Deferred} firing when closed.
        """
        self._pool.close()
        return succeed(None)

    # Introspection

    def schemaVersion(self):
        """
        @return: a L{Deferred} firing with the stored schema version.
        """
        return self._pool.runInteraction(_txnMetadata, "db_version")

    def journalMode(self):
        """
        @return: a L{Deferred} firing with SQLite's journal mode (C{"wal"}).
        """
        return self._pool.runInteraction(_txnJournalMode)

    # Management (master)

    def addAgent(self, agentId, name, ip, key, groups=(), now=None):
        """
        Insert a new agent, never connected, with C{groups} (in priority
        order; assigning them takes a new group version).

        @return: a L{Deferred} firing with the 3-digit ID.
        @raise ClusterError: (in the L{Deferred}) 1708 for a used ID, 1705
            for a used name, 1722 for an invalid group name, 1703 for 000.
        """
        try:
            number = _agentNumber(agentId)
            groups = _normaliseGroups(groups)
        except ClusterError:
            return fail()
        return self._pool.runInteraction(
            _txnAddAgent, number, name, ip, key, groups, _now(now)
        )

    def removeAgent(self, agentId):
        """
        Delete an agent with its labels and group memberships.

        @return: a L{Deferred} firing with L{None}.
        @raise ClusterError: (in the L{Deferred}) 1701 unknown, 1703 for 000.
        """
        return self._withAgent(agentId, _txnRemoveAgent)

    def setAgentGroups(self, agentId, groups):
        """
        Replace an agent's groups (in priority order; empty to clear them).
        The change takes the next global group version and is marked
        C{group_sync_status='syncreq'}.

        @return: a L{Deferred} firing with the new group version.
        @raise ClusterError: (in the L{Deferred}) 1701, 1703, or 1722 for an
            invalid group name.
        """
        try:
            groups = _normaliseGroups(groups)
        except ClusterError:
            return fail()
        return self._withAgent(agentId, _txnSetAgentGroups, groups)

    def listAgents(self):
        """
        Every agent but the manager, by ID.

        @return: a L{Deferred} firing with a L{list} of L{dict}s with keys
            C{id}, C{name}, C{ip}, C{status}, C{version}, C{node_name},
            C{groups} (list), C{os_name}, C{os_version}, C{last_keepalive}
            (ISO 8601 or L{None}).
        """
        return self._pool.runInteraction(_txnListAgents)

    def getAgent(self, agentId):
        """
        One agent's full row: every column (C{group} as the list C{groups},
        C{last_keepalive} in ISO 8601) plus C{labels} as a dict.

        @return: a L{Deferred} firing with the L{dict}, or L{None} when there
            is no such agent (or for 000).
        """
        try:
            number = _agentNumber(agentId)
        except ClusterError:
            return succeed(None)
        return self._pool.runInteraction(_txnGetAgent, number)

    def countActiveAgents(self, nodeName=None):
        """
        @return: a L{Deferred} firing with the number of active agents
            (reporting to C{nodeName} when given).
        """
        return self._pool.runInteraction(_txnCountActiveAgents, nodeName)

    # Worker side: client.keys and agent info

    def reconcileClientKeys(self, entries):
        """
        Make the agent table match C{client.keys}: agents not in C{entries}
        are deleted, new ones added (never connected, no group, unless an
        assignment for them arrived earlier), names, IPs and keys updated.

        @type entries: L{list} of L{wazuhcluster.clientkeys.ClientKey}
        @return: a L{Deferred} firing with C{(added, removed)}, two lists of
            3-digit IDs.
        """
        return self._pool.runInteraction(_txnReconcile, list(entries), _now(None))

    def reportAgent(
        self,
        agentId,
        status="active",
        os=None,
        version=None,
        labels=None,
        nodeName=None,
        now=None,
    ):
        """
        Record what an agent reported to this node and mark its row for
        agent-info sync (C{sync_status='syncreq'}, C{sync_version} bumped).

        @param status: one of L{CONNECTION_STATUSES}. C{active} sets
            C{last_keepalive}, C{disconnected} sets C{disconnection_time}.
        @param os: values of L{OS_FIELDS} to set, by column name; others are
            kept.
        @param version: the agent version (kept when L{None}).
        @param labels: the agent's labels, replacing all of them (kept when
            L{None}).
        @param nodeName: the node the agent reports to.
        @param now: the time of the report as an epoch (now by default).
        @return: a L{Deferred} firing with the row's new C{sync_version}.
        @raise ClusterError: (in the L{Deferred}) 1701 for an unknown agent,
            1703 for 000, 1000 for an invalid status.
        """
        try:
            columns = _reportAssignments(status, os, version, nodeName, _now(now))
        except (ClusterError, ValueError):
            return fail()
        return self._withAgent(
            agentId, _txnReportAgent, columns, None if labels is None else dict(labels)
        )

    def agentInfoToSync(self, limit=None, afterId=None):
        """
        The rows marked for agent-info sync, by ID.

        @param limit: the most rows to return (all when L{None}).
        @param afterId: return only agents with a higher ID (to page through
            the marked rows while earlier pages are not acknowledged yet).
        @return: a L{Deferred} firing with a L{list} of L{dict}s: C{id},
            C{sync_version}, C{labels} (dict) and every L{AGENT_INFO_FIELDS}
            column. This is the row format of L{applyAgentInfo}.
        """
        try:
            after = 0 if afterId is None else parseAgentId(afterId)
        except ValueError:
            return fail()
        return self._pool.runInteraction(_txnAgentInfoToSync, limit, after)

    def markAgentInfoSynced(self, pairs):
        """
        Mark rows synced after the master acknowledged them, only where the
        row's C{sync_version} is still the one that was sent: a row reported
        again meanwhile stays marked for the next sync.

        @param pairs: C{(id, sync_version)} as returned by
            L{agentInfoToSync}.
        @return: a L{Deferred} firing with the number of rows marked synced.
        """
        return self._pool.runInteraction(_txnMarkSynced, list(pairs))

    # Master side: agent info and groups

    def applyAgentInfo(self, nodeName, rows):
        """
        Store agent-info rows received from worker C{nodeName}, in one
        transaction: the L{AGENT_INFO_FIELDS} columns (a L{None} integer
        keeps the stored value), C{node_name}, and the labels (replaced
        when the row has a C{labels} key). Rows of agents this node does not
        know are counted and ignored. An agent seen C{active} that never
        had a group assignment gets L{DEFAULT_GROUP}, with a new group
        version.

        @param rows: dicts as made by L{agentInfoToSync} (C{sync_version}
            is ignored), or L{AgentInfo} rows (already validated).
        @return: a L{Deferred} firing with C{(updated, unknown)}.
        @raise ValueError: (in the L{Deferred}) a row is malformed; nothing
            is stored.
        """
        return self._pool.runInteraction(_txnApplyAgentInfo, nodeName, list(rows))

    def groupChangesSince(self, version):
        """
        The assignments that changed after group version C{version}.

        @return: a L{Deferred} firing with C{(rows, currentVersion)}; rows
            are C{(id, groups, group_version)} by ID, C{groups} a list in
            priority order (empty for an agent whose groups were cleared).
        """
        return self._pool.runInteraction(_txnGroupChangesSince, version)

    def allGroupAssignments(self):
        """
        Every agent's assignment (agents with no group included, with an
        empty list).

        @return: a L{Deferred} firing with C{(rows, currentVersion)} as
            L{groupChangesSince}.
        """
        return self._pool.runInteraction(_txnAllGroupAssignments)

    def globalGroupHash(self):
        """
        The hash of every assignment, equal on two nodes holding the same
        assignments (L{wazuhcluster.grouphash}).

        @return: a L{Deferred} firing with the hex digest, or L{None} when no
            agent has a group.
        """
        return self._pool.runInteraction(_txnGlobalGroupHash)

    def groupSnapshot(self, version=None):
        """
        L{groupChangesSince} C{version} (L{allGroupAssignments} when
        L{None}) and L{globalGroupHash}, read in one transaction, so the
        hash is that of the assignments returned.

        @return: a L{Deferred} firing with C{(rows, currentVersion, hash)}.
        """
        return self._pool.runInteraction(_txnGroupSnapshot, version)

    def applyGroupAssignments(self, rows, full=False):
        """
        Store assignments received from the master, in one transaction,
        marked synced, with the master's versions. An assignment for an
        agent this node does not know yet is kept aside and applied when
        L{reconcileClientKeys} adds the agent.

        @param rows: C{(id, groups, group_version)} as made by
            L{groupChangesSince}.
        @param full: C{rows} is the master's whole table: agents absent from
            it get their groups cleared, and earlier kept-aside assignments
            are dropped.
        @return: a L{Deferred} firing with C{(applied, pending)}: rows
            stored, and rows kept aside for unknown agents.
        @raise ValueError: (in the L{Deferred}) a row is malformed; nothing
            is stored.
        """
        return self._pool.runInteraction(
            _txnApplyGroupAssignments, [tuple(row) for row in rows], full
        )

    def _withAgent(self, agentId, interaction, *args):
        """
        Run C{interaction(txn, number, *args)} for a parsed agent ID.
        """
        try:
            number = _agentNumber(agentId)
        except ClusterError:
            return fail()
        return self._pool.runInteraction(interaction, number, *args)


def _now(now):
    """
    C{now} as an integer epoch, the current time when L{None}.
    """
    return int(time.time() if now is None else now)
