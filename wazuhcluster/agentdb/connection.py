# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_files -*-
"""
Connections to the agent database: the L{twisted.enterprise.adbapi} pool of
a daemon, the blocking pool of a process without a reactor, and what turns
a driver's error into a L{ClusterError}.  SQLite's file handling lives here
too (modes, corruption); PostgreSQL's connections are in
L{wazuhcluster.agentdb.postgres}.

Both pools hold one connection (one thread): the calls of one process run
in the order they were made, and never contend with each other.  After an
error the connection is rolled back; when that fails (the connection was
lost) it is dropped, quietly, and the next call opens a new one.
"""

import os
from urllib.parse import quote
import sqlite3
import stat

from attrs import define
from twisted.enterprise import adbapi
from twisted.internet.defer import fail, succeed
from twisted.python.failure import Failure

from wazuhcluster.agentdb.dialect import BUSY_TIMEOUT_MS, SQLITE
from wazuhcluster.agentdb.schema import SCHEMA_VERSION
from wazuhcluster.errors import ClusterError

#: The mode of the database file and of its C{-wal} and C{-shm} files: they
#: hold the agents' keys.
DATABASE_MODE = 0o660

#: The error code of every agent database failure.
DATABASE_ERROR = 2000

#: SQLite's result codes for a damaged file.
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class _Connection(adbapi.Connection):
    """
    A pooled connection whose rollback, when the connection turns out to be
    lost, drops it without logging: the call's own error reaches its caller
    (as a L{ClusterError}) and the next call reconnects.
    """

    def rollback(self):
        try:
            self._connection.rollback()
            cursor = self._connection.cursor()
            cursor.execute(self._pool.good_sql)
            cursor.close()
        except Exception:
            self._pool.disconnect(self._connection)


class AgentPool(adbapi.ConnectionPool):
    """
    The pool of one agent database: a single connection and thread,
    reconnecting after a lost connection.
    """

    connectionFactory = _Connection

    def __init__(self, module, *args, reactor=None, openfun=None, **kwargs):
        if reactor is not None:
            kwargs["cp_reactor"] = reactor
        super().__init__(
            module,
            *args,
            cp_min=1,
            cp_max=1,
            cp_reconnect=True,
            cp_openfun=openfun,
            **kwargs,
        )


@define
class BlockingPool:
    """
    Run interactions at once in the calling thread, for a process without a
    reactor (the C{wazuh-cluster agent} commands). Offers the part of
    L{adbapi.ConnectionPool} that L{wazuhcluster.agentdb.AgentDatabase}
    uses; results come as already-fired L{Deferred}s.

    @ivar _connect: makes a new, configured DB-API connection.
    """

    _connect: object
    _connection: object = None

    def runInteraction(self, interaction, *args, **kwargs):
        try:
            if self._connection is None:
                self._connection = self._connect()
            cursor = self._connection.cursor()
        except BaseException:
            return fail()
        try:
            result = interaction(cursor, *args, **kwargs)
            cursor.close()
            self._connection.commit()
        except BaseException:
            failure = Failure()
            self._rollback()
            return fail(failure)
        return succeed(result)

    def _rollback(self):
        try:
            self._connection.rollback()
        except Exception:
            self.close()

    def close(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass


# ---------------------------------------------------------------------------
# SQLite


def prepareDatabaseFile(path):
    """
    Create the database file (and its directory) if missing, and give it
    and any C{-wal}/C{-shm} file L{DATABASE_MODE} whatever the umask: SQLite
    creates those two with the mode of the database file.

    Only the owner can change a mode: files of another user are left as
    they are.

    @type path: L{twisted.python.filepath.FilePath}
    """
    path.parent().makedirs(ignoreExistingDirectory=True)
    fd = os.open(path.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, DATABASE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != DATABASE_MODE:
            _ignoreNotOwner(os.fchmod, fd, DATABASE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            _ignoreNotOwner(os.chmod, path.path + suffix, DATABASE_MODE)
        except FileNotFoundError:
            pass


def _ignoreNotOwner(chmod, target, mode):
    try:
        chmod(target, mode)
    except PermissionError:
        pass


def connectSQLite(path):
    """
    A configured SQLite connection to the database at C{path}.
    """
    connection = sqlite3.connect(path.path, isolation_level=None, check_same_thread=False)
    try:
        SQLITE.configure(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def sqlitePool(path, reactor):
    """
    The L{AgentPool} of the SQLite database at C{path}.
    """
    return AgentPool(
        "sqlite3",
        path.path,
        reactor=reactor,
        openfun=SQLITE.configure,
        check_same_thread=False,
        isolation_level=None,
    )


def isCorruption(error):
    """
    Whether a SQLite error says the file is damaged or not a database.
    """
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(error)
    return "not a database" in text or "malformed" in text


def corruptError(path, detail):
    """
    The L{ClusterError} of a damaged database file: what is wrong and what
    to do.
    """
    return ClusterError(
        f"The agent database {path.path} is corrupt ({detail}). Stop the node, "
        f"move the file away (with its -wal and -shm files), for example to "
        f"{path.basename()}.corrupt, and start the node again: it rebuilds the "
        f"agents from client.keys (group assignments come back from the "
        f"master on a worker; on a master they must be set again).",
        DATABASE_ERROR,
    )


def sqliteErrors(path):
    """
    The translator of SQLite's errors into L{ClusterError}s for the
    database at C{path}.
    """

    def translate(failure):
        error = failure.value
        if isinstance(error, sqlite3.Error):
            if isCorruption(error):
                raise corruptError(path, error)
            raise ClusterError(
                f"Agent database error ({path.path}): {error}", DATABASE_ERROR
            )
        if isinstance(error, adbapi.ConnectionLost):
            raise ClusterError(
                f"Agent database error ({path.path}): the connection was lost",
                DATABASE_ERROR,
            )
        return failure

    return translate


def checkAgentDatabase(path):
    """
    Check, blocking, that the SQLite agent database at C{path} can be used:
    what a node calls before it daemonises, so that a damaged file stops the
    start with a clear line instead of a node serving without agents.  A
    missing file is fine (the node creates it).

    @type path: L{twisted.python.filepath.FilePath}
    @raise ClusterError: the file is not a database, is damaged, or cannot
        be read; the text says what to do.
    """
    if not path.exists():
        return
    # Read only, and creating nothing: a check run by another user (root
    # before the node drops its privileges, an operator's check-config)
    # must not leave -wal/-shm files the node cannot open.  Without a WAL
    # file nobody is writing, so the file is read as immutable; with one,
    # its -shm exists too and a read-only connection shares them.
    if os.path.exists(path.path + "-wal"):
        uri = f"file:{quote(path.path)}?mode=ro"
    else:
        uri = f"file:{quote(path.path)}?immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise ClusterError(
            f"Cannot open the agent database {path.path}: {e}", DATABASE_ERROR
        )
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        rows = connection.execute("PRAGMA quick_check").fetchall()
        version = _storedVersion(connection)
    except sqlite3.Error as e:
        if isCorruption(e):
            raise corruptError(path, e)
        raise ClusterError(
            f"Cannot read the agent database {path.path}: {e}", DATABASE_ERROR
        )
    finally:
        connection.close()
    problems = [row[0] for row in rows if row[0] != "ok"]
    if problems:
        raise corruptError(path, "; ".join(problems[:3]))
    if version > SCHEMA_VERSION:
        raise ClusterError(
            f"The agent database {path.path} has schema version {version}, newer "
            f"than the supported version {SCHEMA_VERSION}: run the version of "
            f"wazuh-cluster that wrote it",
            DATABASE_ERROR,
        )


def _storedVersion(connection):
    """
    The schema version stored in an open SQLite database (0 if none).
    """
    found = connection.execute(SQLITE.tableExists, ("metadata",)).fetchone()
    if found is None:
        return 0
    row = connection.execute(
        "SELECT value FROM metadata WHERE key = 'db_version'"
    ).fetchone()
    return int(row[0]) if row else 0
