# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_files,tests.test_agentdb_postgres -*-
"""
L{AgentDatabase}: opening an agent database (SQLite or PostgreSQL, in a
thread or blocking), its lifecycle and the master's management of agents.

Every query runs in a thread through L{twisted.enterprise.adbapi} (one
connection, so one writer per process); every method returns a
L{Deferred}.  The queries of the cluster's syncs come from
L{wazuhcluster.agentdb.syncqueries.AgentSyncQueries}.
"""

import socket

from attrs import define
from twisted.internet.defer import fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agentdb import management, schema
from wazuhcluster.agentdb import groups as grouping
from wazuhcluster.agentdb.connection import (
    BlockingPool,
    connectSQLite,
    prepareDatabaseFile,
    sqliteErrors,
    sqlitePool,
)
from wazuhcluster.agentdb.dialect import POSTGRESQL, SQLITE
from wazuhcluster.agentdb.syncqueries import AgentSyncQueries
from wazuhcluster.agentdb.values import agentNumber, epoch, normaliseGroups
from wazuhcluster.agentstore import IAgentStore
from wazuhcluster.errors import ClusterError


@implementer(IAgentStore)
@define
class AgentDatabase(AgentSyncQueries):
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


def _fileError(path, error):
    return ClusterError(
        f"Cannot open the agent database {path.path}: {error.strerror or error}",
        2000,
    )
