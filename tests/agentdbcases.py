# -*- test-case-name: tests.test_agentdb -*-
"""
What every test of the agent database shares: a mixin of tests of one
concern (a subclass of L{DatabaseMixin}) runs on both backends, SQLite and
PostgreSQL (a real server, from L{tests.pg}), and on each through the
thread pool of L{twisted.enterprise.adbapi} (as the daemons use it, with
the real reactor) and through the blocking pool (as the CLI uses it):
L{allBackends} makes the four test cases.
"""

import sqlite3

import psycopg
from twisted.internet import defer, reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.pg import freshDatabase
from wazuhcluster.agentdb import AGENT_INFO_FIELDS, AgentDatabase
from wazuhcluster.agentdb.dialect import POSTGRESQL
from wazuhcluster.clientkeys import ClientKey

KEY = "0" * 64


def keys(*specs):
    """
    L{ClientKey}s from C{(id, name)} pairs, IP C{any}.
    """
    return [ClientKey(f"{n:03d}", name, "any", KEY) for n, name in specs]


def infoRow(agentId, status="active", **fields):
    """
    An agent-info row as a worker sends it.
    """
    row = {name: None for name in AGENT_INFO_FIELDS}
    row.update(id=agentId, connection_status=status, labels={}, sync_version=1)
    row.update(fields)
    return row


class DatabaseMixin:
    """
    Helpers to open databases by name; C{openDatabase(name)}, C{rows(name,
    sql, params)} (a query run apart from the L{AgentDatabase}, on a
    connection of its own) and C{tableNames(name)} are provided per backend
    and pool kind.
    """

    def setUp(self):
        self.dir = FilePath(self.mktemp())

    @defer.inlineCallbacks
    def database(self, name="global.db", agents=()):
        """
        Open the database C{name} of this test, closed at cleanup, holding
        C{agents} (from C{client.keys} entries).
        """
        db = yield self.openDatabase(name)
        self.addCleanup(db.close)
        if agents:
            yield db.reconcileClientKeys(agents)
        return db


class _SQLite:
    """
    The SQLite backend: one file per database name in the test's directory.
    """

    backend = "sqlite"
    journalMode = "wal"

    def rows(self, name, sql, params=()):
        connection = sqlite3.connect(self.dir.child(name).path, isolation_level=None)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def tableNames(self, name):
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {row[0] for row in self.rows(name, query)}


class _SQLiteThreaded(_SQLite):
    """
    SQLite through the adbapi thread pool, with the real reactor.
    """

    def openDatabase(self, name):
        return AgentDatabase.open(
            self.dir.child(name), reactor=reactor, managerName="manager"
        )


class _SQLiteBlocking(_SQLite):
    """
    SQLite with L{AgentDatabase.openBlocking}, as the CLI does.
    """

    def openDatabase(self, name):
        return defer.maybeDeferred(
            AgentDatabase.openBlocking, self.dir.child(name), managerName="manager"
        )


class _Postgres:
    """
    The PostgreSQL backend: a fresh database of the test server per
    database name.
    """

    backend = "postgresql"
    journalMode = None

    def dsn(self, name):
        if not hasattr(self, "_dsns"):
            self._dsns = {}
        if name not in self._dsns:
            self._dsns[name] = freshDatabase(self)
        return self._dsns[name]

    def rows(self, name, sql, params=()):
        with psycopg.connect(self.dsn(name), autocommit=True) as connection:
            cursor = connection.execute(POSTGRESQL.sql(sql), params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def tableNames(self, name):
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        return {row[0] for row in self.rows(name, query)}


class _PostgresThreaded(_Postgres):
    """
    PostgreSQL through the adbapi thread pool, with the real reactor.
    """

    def openDatabase(self, name):
        return AgentDatabase.openPostgres(
            self.dsn(name), reactor=reactor, managerName="manager"
        )


class _PostgresBlocking(_Postgres):
    """
    PostgreSQL with L{AgentDatabase.openPostgresBlocking}, as the CLI does.
    """

    def openDatabase(self, name):
        return defer.maybeDeferred(
            AgentDatabase.openPostgresBlocking, self.dsn(name), managerName="manager"
        )


#: The backend and pool kinds every mixin of agent database tests runs on.
BACKENDS = {
    "SQLiteThreaded": _SQLiteThreaded,
    "SQLiteBlocking": _SQLiteBlocking,
    "PostgresThreaded": _PostgresThreaded,
    "PostgresBlocking": _PostgresBlocking,
}


def allBackends(name, mixin, namespace):
    """
    Make one test case class per backend and pool kind from C{mixin}, named
    C{<name><kind>}, into C{namespace} (a module's C{globals()}).
    """
    for kind, backend in BACKENDS.items():
        cls = type(f"{name}{kind}", (backend, mixin, TestCase), {})
        cls.__module__ = namespace["__name__"]
        namespace[cls.__name__] = cls
