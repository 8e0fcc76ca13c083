# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_agentinfo,tests.test_agentdb_groups -*-
"""
The one place where SQLite and PostgreSQL differ.

The SQL of the agent database is written once, in the form both engines
accept (C{INSERT ... ON CONFLICT}, quoted C{"group"}, C{?} placeholders),
and every difference left is a member of the backend's dialect:

  - placeholders: C{?} for SQLite, C{%s} for psycopg (a literal C{%}
    doubled);
  - transactions: SQLite's C{BEGIN IMMEDIATE} takes the database write lock
    at once; on PostgreSQL a writer begins C{READ COMMITTED} and takes the
    transaction-level advisory lock L{WRITE_LOCK} first, so writers from
    every process (masters, the CLI) are serialised exactly as on SQLite and
    a group change always takes a unique, increasing version. Readers run
    in one C{REPEATABLE READ READ ONLY} snapshot (SQLite's deferred C{BEGIN}
    in WAL mode is a snapshot too);
  - C{MAX(a, b)} is C{GREATEST(a, b)};
  - storage: the often-updated C{agent} table keeps free room in its pages
    on PostgreSQL (C{fillfactor}) so updates stay in place;
  - schema types: C{INTEGER} (64-bit in SQLite) is C{BIGINT}, C{TEXT}
    compares bytewise (C{COLLATE "C"}, as SQLite does, so both engines sort
    alike), C{INTEGER PRIMARY KEY AUTOINCREMENT} is an identity column,
    C{WITHOUT ROWID} does not exist, the untyped C{metadata.value} is a
    C{BIGINT};
  - connection settings: SQLite's PRAGMAs (WAL, foreign keys, busy timeout,
    C{synchronous=NORMAL}); on PostgreSQL autocommit (transactions are
    explicit, as on SQLite) and a lock timeout like SQLite's busy timeout;
  - the catalogue (C{sqlite_master} or C{pg_tables}) and the journal mode;
  - bulk statements (L{_Dialect.matching}, L{_Dialect.updateMany},
    L{_Dialect.insertMany}): SQLite runs a prepared statement per row
    (C{executemany} in C, the fastest it has) and C{IN} lists; PostgreSQL
    sends each as one set-based statement over arrays (C{unnest}, C{= ANY}),
    one round trip instead of one per row.

An interaction receives a L{Txn}: the DB-API cursor and the dialect.
"""

from abc import ABC, abstractmethod

#: How long a statement waits for another process's lock, in milliseconds.
BUSY_TIMEOUT_MS = 10000

#: The key (two 32-bit integers: "WAZC", 1) of the PostgreSQL advisory lock
#: every writing transaction of the agent store holds until it ends. Other
#: advisory locks of the cluster (the active master's) use the one-key form,
#: a separate key space.
WRITE_LOCK = (0x57415A43, 1)


class _Dialect(ABC):
    """
    What a backend does its own way; see the module docstring.

    @ivar name: the backend's name in C{agent_store.backend}.
    @ivar schemaTypes: the values of the placeholders of the schema's
        C{CREATE} statements (C{{int}}, C{{text}}, C{{serial}},
        C{{withoutRowid}}, C{{value}}, C{{frequentUpdates}}).
    """

    name = None
    schemaTypes = {}

    def __init__(self):
        self._statements = {}

    def sql(self, text):
        """
        The statement C{text} (written with C{?} placeholders) as this
        engine's driver takes it.
        """
        return text

    def schema(self, template):
        """
        A C{CREATE} statement with this engine's types.
        """
        return template.format(**self.schemaTypes)

    @abstractmethod
    def greatest(self, a, b):
        """
        The SQL expression of the larger of C{a} and C{b}.
        """

    def matching(self, column, values):
        """
        A condition that C{column} is one of C{values}, and its parameters.

        @param values: a non-empty list.
        @return: C{(sql, params)}.
        """
        return f"{column} IN ({','.join('?' * len(values))})", values

    def updateMany(self, txn, table, columns, rows, keep=(), key="id"):
        """
        C{UPDATE table SET column = value, ... WHERE key = value} for every
        row of C{rows} (the values of C{columns}, then the key's), keys
        unique.

        @param columns: C{(name, type)}: the columns set, with their SQL type
            (C{BIGINT} or C{TEXT}).
        @param keep: the columns whose stored value is kept when the row
            has L{None}.
        """
        if not rows:
            return
        sql = self._statements.get((table, columns, keep, key))
        if sql is None:
            sql = self._updateStatement(table, columns, keep, key)
            self._statements[(table, columns, keep, key)] = sql
        self._updateRows(txn, sql, columns, rows)

    def _updateStatement(self, table, columns, keep, key):
        assignments = ", ".join(
            f"{name} = COALESCE(?, {name})" if name in keep else f"{name} = ?"
            for name, _ in columns
        )
        return f"UPDATE {table} SET {assignments} WHERE {key} = ?"

    def _updateRows(self, txn, sql, columns, rows):
        txn.executemany(sql, rows)

    def insertMany(self, txn, table, columns, rows):
        """
        Insert C{rows} (the values of C{columns}, C{(name, type)}) into
        C{table}.
        """
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" * len(columns))
        txn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)

    @abstractmethod
    def begin(self, txn, write):
        """
        Open the transaction of an interaction.

        @param write: the interaction writes: serialise it with every other
            writer, in every process.
        """


class SQLiteDialect(_Dialect):
    name = "sqlite"
    schemaTypes = {
        "int": "INTEGER",
        "text": "TEXT",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "withoutRowid": " WITHOUT ROWID",
        "value": "",
        "frequentUpdates": "",
    }
    tableExists = (
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    )
    journalMode = "PRAGMA journal_mode"

    def greatest(self, a, b):
        return f"MAX({a}, {b})"

    def begin(self, txn, write):
        txn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    @staticmethod
    def configure(connection):
        """
        Prepare a new SQLite connection: autocommit (transactions are
        explicit), WAL journal, foreign keys, a busy timeout for concurrent
        processes (daemon and CLI), and C{synchronous=NORMAL} (durable at
        each checkpoint, never corrupt, the usual WAL setting).
        """
        connection.isolation_level = None
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")


class PostgresDialect(_Dialect):
    name = "postgresql"
    schemaTypes = {
        "int": "BIGINT",
        "text": 'TEXT COLLATE "C"',
        "serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "withoutRowid": "",
        "value": "BIGINT",
        # Room in every page for the new version of its rows (HOT updates:
        # no index entry per agent-info update, little bloat).
        "frequentUpdates": " WITH (fillfactor = 50)",
    }
    tableExists = (
        "SELECT 1 FROM pg_catalog.pg_tables "
        "WHERE schemaname = current_schema() AND tablename = ?"
    )
    journalMode = None

    def sql(self, text):
        statement = self._statements.get(text)
        if statement is None:
            statement = text.replace("%", "%%").replace("?", "%s")
            self._statements[text] = statement
        return statement

    def greatest(self, a, b):
        return f"GREATEST({a}, {b})"

    def matching(self, column, values):
        return f"{column} = ANY(?)", (list(values),)

    # The bulk statements are written for the driver directly, with binary
    # parameters (%b): one array per column, about twice as fast to send as
    # text.

    def _updateStatement(self, table, columns, keep, key):
        assignments = ", ".join(
            f"{name} = COALESCE(v.{name}, t.{name})" if name in keep else f"{name} = v.{name}"
            for name, _ in columns
        )
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        names = ", ".join(name for name, _ in columns)
        return (
            f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}, %b::BIGINT[]) "
            f"AS v({names}, {key}) WHERE t.{key} = v.{key}"
        )

    def _updateRows(self, txn, sql, columns, rows):
        txn.cursor.execute(sql, [list(values) for values in zip(*rows)])

    def insertMany(self, txn, table, columns, rows):
        if not rows:
            return
        sql = self._statements.get((table, columns))
        if sql is None:
            names = ", ".join(name for name, _ in columns)
            arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
            self._statements[(table, columns)] = sql
        txn.cursor.execute(sql, [list(values) for values in zip(*rows)])

    def begin(self, txn, write):
        if write:
            txn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            txn.execute("SELECT pg_advisory_xact_lock(?, ?)", WRITE_LOCK)
        else:
            txn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    @staticmethod
    def configure(connection):
        """
        Prepare a new psycopg connection: autocommit (transactions are
        explicit, as on SQLite) and a lock timeout like SQLite's busy
        timeout.
        """
        connection.autocommit = True
        connection.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")


class Txn:
    """
    The cursor of one interaction, with its dialect: statements are written
    once with C{?} placeholders and translated here.

    @ivar cursor: the DB-API cursor (or L{twisted.enterprise.adbapi}
        transaction).
    @ivar dialect: the backend's dialect.
    """

    __slots__ = ("cursor", "dialect", "_sql")

    def __init__(self, cursor, dialect):
        self.cursor = cursor
        self.dialect = dialect
        self._sql = dialect.sql

    def execute(self, sql, params=()):
        self.cursor.execute(self._sql(sql), params)
        return self

    def executemany(self, sql, rows):
        """
        Run C{sql} once per row of parameters.

        @return: the number of rows changed.
        """
        if not rows:
            return 0
        self.cursor.executemany(self._sql(sql), rows)
        return max(self.cursor.rowcount, 0)

    def fetchone(self):
        return self.cursor.fetchone()

    def fetchall(self):
        return self.cursor.fetchall()

    def value(self):
        """
        The first column of the next row, L{None} when there is none.
        """
        row = self.cursor.fetchone()
        return None if row is None else row[0]

    @property
    def rowcount(self):
        return self.cursor.rowcount

    @property
    def description(self):
        return self.cursor.description


SQLITE = SQLiteDialect()
POSTGRESQL = PostgresDialect()
