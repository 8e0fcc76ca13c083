# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_agentinfo,tests.test_agentdb_groups -*-
"""
The agent database: L{AgentDatabase}, the SQLite and PostgreSQL backends of
L{wazuhcluster.agentstore.IAgentStore}.

SQLite (C{queue/db/global.db}, WAL) is the embedded default of every node;
PostgreSQL is shared by the master candidates of a cluster with standby
masters (DESIGN.md, "Masters in standby").  Both hold the same schema,
modelled on the original's wazuh-db C{global.db} (WAZUH.md sections 4.5 and
4.6), follow the same version and sync-state rules and give the same
results.

Every query runs in a thread through L{twisted.enterprise.adbapi} (one
connection, so one writer per process); every method of L{AgentDatabase}
returns a L{Deferred}.  Each unit of work is an I{interaction} (a function
of a cursor, in L{transactions}) that opens its own transaction; the same
interactions run synchronously in the short-lived C{wazuh-cluster agent}
process through L{AgentDatabase.openBlocking} (or
L{AgentDatabase.openPostgresBlocking}), so the daemon and the CLI share
every line of SQL.

The package, by concern: L{values} (constants, IDs, groups, L{AgentInfo}),
L{dialect} (where the engines differ), L{connection} and L{postgres}
(pools, errors, SQLite's file), L{schema} (tables, migrations),
L{agentinfo}, L{groups}, L{management} (the interactions), L{ownership}
(which worker may report an agent), L{stores} (which store a node opens,
from C{agent_store} in cluster.json).
"""

import socket

from attrs import define
from twisted.internet.defer import fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agentdb import agentinfo, management, schema
from wazuhcluster.agentdb import groups as grouping
from wazuhcluster.agentdb.agentinfo import APPLY_SQL as _APPLY_SQL  # noqa: F401 (bench_agents)
from wazuhcluster.agentdb.connection import (
    DATABASE_MODE,
    BlockingPool,
    checkAgentDatabase,
    connectSQLite,
    prepareDatabaseFile,
    sqliteErrors,
    sqlitePool,
)
from wazuhcluster.agentdb.dialect import BUSY_TIMEOUT_MS, POSTGRESQL, SQLITE
from wazuhcluster.agentdb.schema import SCHEMA_VERSION
from wazuhcluster.agentdb.values import (
    AGENT_INFO_FIELDS,
    CONNECTION_STATUSES,
    DEFAULT_GROUP,
    INT_FIELDS,
    MAX_GROUP_NAME_LENGTH,
    OS_FIELDS,
    AgentInfo,
    agentNumber,
    epoch,
    groupHash,
    normaliseGroups,
)
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.clientkeys import parseAgentId
from wazuhcluster.errors import ClusterError

#: Kept for L{benchmarks.bench_agents}: SQLite's connection settings.
_configureConnection = SQLITE.configure

__all__ = [
    "AGENT_INFO_FIELDS",
    "BUSY_TIMEOUT_MS",
    "CONNECTION_STATUSES",
    "DATABASE_MODE",
    "DEFAULT_GROUP",
    "INT_FIELDS",
    "MAX_GROUP_NAME_LENGTH",
    "OS_FIELDS",
    "SCHEMA_VERSION",
    "AgentDatabase",
    "AgentInfo",
    "checkAgentDatabase",
    "groupHash",
    "openAgentStore",
    "openAgentStoreBlocking",
]


@implementer(IAgentStore)
@define
class AgentDatabase:
    """
    The agent database of one node, on SQLite or PostgreSQL.

    Open it with L{open} or L{openPostgres} (daemon, queries in a thread),
    or L{openBlocking} / L{openPostgresBlocking} (CLI process without a
    reactor: same interactions, run at once). Every method returns a
    L{Deferred}; agent IDs come back as 3-digit strings (C{"001"}) and are
    accepted as such or as numbers. A failure of the database itself (a
    damaged file, a lost connection, a server that does not answer) is a
    L{ClusterError} of the call that met it; after a lost connection, the
    next call reconnects.
    """

    _pool: object
    _dialect: object
    _translate: object

    @classmethod
    def open(cls, path, reactor=None, managerName=None, now=None):
        """
        Open (creating or migrating it as needed) the SQLite database at
        C{path}; the file and its C{-wal}/C{-shm} files get
        L{DATABASE_MODE}.

        @type path: L{twisted.python.filepath.FilePath}
        @param reactor: the reactor that runs the pool's thread pool and
            delivers results (the global reactor when L{None}).
        @param managerName: the name of agent C{000} when the database is
            created (the host name by default).
        @param now: the creation time as an epoch (now by default).
        @return: a L{Deferred} firing with the L{AgentDatabase}, or failing
            with a L{ClusterError} (a corrupt file says what to do).
        """
        try:
            prepareDatabaseFile(path)
        except OSError as e:
            return fail(_fileError(path, e))
        database = cls(sqlitePool(path, reactor), SQLITE, sqliteErrors(path))
        return database._migrate(managerName, now)

    @classmethod
    def openBlocking(cls, path, managerName=None, now=None):
        """
        Open the SQLite database at C{path} for synchronous use in a process
        that runs no reactor: every method's L{Deferred} has already fired
        when it is returned.

        @rtype: L{AgentDatabase}
        @raise ClusterError: the database cannot be opened or used, or is
            newer than this code.
        """
        try:
            prepareDatabaseFile(path)
        except OSError as e:
            raise _fileError(path, e)
        pool = BlockingPool(lambda: connectSQLite(path))
        return cls(pool, SQLITE, sqliteErrors(path))._migrateBlocking(managerName, now)

    @classmethod
    def openPostgres(cls, dsn, reactor=None, managerName=None, password=None, now=None):
        """
        Open (creating or migrating its schema as needed) the PostgreSQL
        database C{dsn}.

        @param dsn: a libpq connection string or URI
            (C{postgresql://USER@HOST:PORT/DB}).
        @param password: the password, kept apart from the DSN (never
            logged, never in an error text).
        @return: a L{Deferred} firing with the L{AgentDatabase}, or failing
            with a L{ClusterError} naming the DSN without its password.
        """
        from wazuhcluster.agentdb.postgres import postgresErrors, postgresPool

        pool = postgresPool(dsn, password, reactor)
        database = cls(pool, POSTGRESQL, postgresErrors(dsn, password))
        return database._migrate(managerName, now)

    @classmethod
    def openPostgresBlocking(cls, dsn, managerName=None, password=None, now=None):
        """
        L{openPostgres} for a process that runs no reactor (see
        L{openBlocking}).

        @rtype: L{AgentDatabase}
        @raise ClusterError: the database cannot be reached or used.
        """
        from wazuhcluster.agentdb.postgres import connectPostgres, postgresErrors

        pool = BlockingPool(lambda: connectPostgres(dsn, password))
        database = cls(pool, POSTGRESQL, postgresErrors(dsn, password))
        return database._migrateBlocking(managerName, now)

    def _migrate(self, managerName, now):
        if managerName is None:
            managerName = socket.gethostname()
        d = self._run(schema.txnMigrate, managerName, epoch(now))

        def failed(failure):
            self._pool.close()
            return failure

        return d.addCallbacks(lambda _: self, failed)

    def _migrateBlocking(self, managerName, now):
        results = []
        self._migrate(managerName, now).addBoth(results.append)
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return self

    def _run(self, interaction, *args):
        """
        Run an interaction of this package in the pool, its driver errors
        translated.
        """
        d = self._pool.runInteraction(interaction, self._dialect, *args)
        return d.addErrback(self._translate)

    def _withAgent(self, interaction, agentId, *args):
        """
        Run C{interaction(txn, number, *args)} for a parsed agent ID.
        """
        try:
            number = agentNumber(agentId)
        except ClusterError:
            return fail()
        return self._run(interaction, number, *args)

    @property
    def backend(self):
        """
        The backend's name: C{sqlite} or C{postgresql}.
        """
        return self._dialect.name

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
        return self._run(schema.txnMetadata, "db_version").addCallback(int)

    def journalMode(self):
        """
        @return: a L{Deferred} firing with SQLite's journal mode (C{"wal"}),
            L{None} on PostgreSQL.
        """
        return self._run(schema.txnJournalMode)

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
            number = agentNumber(agentId)
            groups = normaliseGroups(groups)
        except ClusterError:
            return fail()
        return self._run(
            management.txnAddAgent, number, name, ip, key, groups, epoch(now)
        )

    def removeAgent(self, agentId):
        """
        Delete an agent with its labels and group memberships.

        @return: a L{Deferred} firing with L{None}.
        @raise ClusterError: (in the L{Deferred}) 1701 unknown, 1703 for 000.
        """
        return self._withAgent(management.txnRemoveAgent, agentId)

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
            groups = normaliseGroups(groups)
        except ClusterError:
            return fail()
        return self._withAgent(management.txnSetAgentGroups, agentId, groups)

    def setGroupsOfAgents(self, agentIds, groups):
        """
        Give the same C{groups} to many agents in one change (one new group
        version for all of them); IDs of unknown agents are skipped.

        @return: a L{Deferred} firing with C{(version, changed)}.
        @raise ClusterError: (in the L{Deferred}) 1701 for a malformed ID,
            1703 for 000, 1722 for an invalid group name.
        """
        try:
            groups = normaliseGroups(groups)
            numbers = [agentNumber(agentId) for agentId in agentIds]
            if 0 in numbers:
                raise ClusterError("Action not available for Manager (agent 000)", 1703)
        except ClusterError:
            return fail()
        return self._run(grouping.txnSetGroupsOfAgents, numbers, groups)

    def listAgents(self):
        """
        Every agent but the manager, by ID.

        @return: a L{Deferred} firing with a L{list} of L{dict}s with keys
            C{id}, C{name}, C{ip}, C{status}, C{version}, C{node_name},
            C{groups} (list), C{os_name}, C{os_version}, C{last_keepalive}
            (ISO 8601 or L{None}).
        """
        return self._run(management.txnListAgents)

    def getAgent(self, agentId):
        """
        One agent's full row: every column (C{group} as the list C{groups},
        C{last_keepalive} in ISO 8601) plus C{labels} as a dict.

        @return: a L{Deferred} firing with the L{dict}, or L{None} when there
            is no such agent (or for 000).
        """
        try:
            number = agentNumber(agentId)
        except ClusterError:
            return succeed(None)
        return self._run(management.txnGetAgent, number)

    def countActiveAgents(self, nodeName=None):
        """
        @return: a L{Deferred} firing with the number of active agents
            (reporting to C{nodeName} when given).
        """
        return self._run(management.txnCountActiveAgents, nodeName)

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
        return self._run(management.txnReconcile, list(entries), epoch(None))

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
            columns = agentinfo.reportAssignments(
                status, os, version, nodeName, epoch(now)
            )
        except (ClusterError, ValueError):
            return fail()
        return self._withAgent(
            agentinfo.txnReportAgent,
            agentId,
            columns,
            None if labels is None else dict(labels),
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
        return self._run(agentinfo.txnAgentInfoToSync, limit, after)

    def markAgentInfoSynced(self, pairs):
        """
        Mark rows synced after the master acknowledged them, only where the
        row's C{sync_version} is still the one that was sent: a row reported
        again meanwhile stays marked for the next sync.

        @param pairs: C{(id, sync_version)} as returned by
            L{agentInfoToSync}.
        @return: a L{Deferred} firing with the number of rows marked synced.
        """
        return self._run(agentinfo.txnMarkSynced, list(pairs))

    # Master side: agent info and groups

    def applyAgentInfo(self, nodeName, rows, ownership=None):
        """
        Store agent-info rows received from worker C{nodeName}, in one
        transaction: the L{AGENT_INFO_FIELDS} columns the row carries (a
        column it does not carry, and a L{None} integer, keep the stored
        value), C{node_name}, and the labels (replaced when the row has a
        C{labels} key). Rows of agents this node does not know are counted
        and ignored. An agent seen C{active} that never had a group
        assignment gets L{DEFAULT_GROUP}, with a new group version.

        @param rows: dicts as made by L{agentInfoToSync} (C{sync_version}
            is ignored), or L{AgentInfo} rows (already validated).
        @param ownership: an L{wazuhcluster.agentdb.ownership.OwnershipRule}:
            only the rows of agents C{nodeName} may report are stored.
        @return: a L{Deferred} firing with C{(updated, unknown)}, or with an
            L{wazuhcluster.agentdb.ownership.ApplyOutcome} when
            C{ownership} is given.
        @raise ValueError: (in the L{Deferred}) a row is malformed; nothing
            is stored.
        """
        return self._run(agentinfo.txnApplyAgentInfo, nodeName, list(rows), ownership)

    def groupChangesSince(self, version):
        """
        The assignments that changed after group version C{version}.

        @return: a L{Deferred} firing with C{(rows, currentVersion)}; rows
            are C{(id, groups, group_version)} by ID, C{groups} a list in
            priority order (empty for an agent whose groups were cleared).
        """
        return self._run(grouping.txnGroupChangesSince, version)

    def allGroupAssignments(self):
        """
        Every agent's assignment (agents with no group included, with an
        empty list).

        @return: a L{Deferred} firing with C{(rows, currentVersion)} as
            L{groupChangesSince}.
        """
        return self._run(grouping.txnAllGroupAssignments)

    def groupedAgentNumbers(self):
        """
        The numbers of the agents with at least one group (those the global
        hash counts).

        @return: a L{Deferred} firing with a list of C{int}.
        """
        return self._run(grouping.txnGroupedAgentNumbers)

    def globalGroupHash(self):
        """
        The hash of every assignment, equal on two nodes holding the same
        assignments: the multiset hash of C{(id, group_hash)} of every agent
        with a group (L{wazuhcluster.grouphash}; Wazuh hashes the
        C{group_hash} values alone: the ID makes swapped assignments
        visible).

        @return: a L{Deferred} firing with the hex digest, or L{None} when no
            agent has a group.
        """
        return self._run(grouping.txnGlobalGroupHash)

    def groupSnapshot(self, version=None):
        """
        L{groupChangesSince} C{version} (L{allGroupAssignments} when
        L{None}) and L{globalGroupHash}, read in one transaction, so the
        hash is that of the assignments returned.

        @return: a L{Deferred} firing with C{(rows, currentVersion, hash)}.
        """
        return self._run(grouping.txnGroupSnapshot, version)

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
        return self._run(
            grouping.txnApplyGroupAssignments, [tuple(row) for row in rows], full
        )


def _fileError(path, error):
    return ClusterError(
        f"Cannot open the agent database {path.path}: {error.strerror or error}",
        2000,
    )


from wazuhcluster.agentdb.stores import (  # noqa: E402 (needs AgentDatabase)
    openAgentStore,
    openAgentStoreBlocking,
)
