# -*- test-case-name: tests.test_migrate_agents -*-
"""
C{wazuh-cluster migrate-agents --home H --to postgresql://USER@HOST:PORT/DB
[--password-file F] [--replace]}: copy a node's SQLite agent database
(C{queue/db/global.db}) into PostgreSQL, to move a master to the
C{postgresql} agent store (DESIGN.md, "Masters in standby").

Everything is copied (agents with their keys and sync state, labels, groups
with their IDs, memberships, pending group assignments, metadata) in one
transaction of the target, which holds the agent store's write lock
throughout: the copy is all or nothing.  The schema is created first if the
target has none.  A target that already holds agents is refused unless
C{--replace} is given, which deletes what it held.  The global group
version becomes the higher of the two, so workers that acknowledged a
version never miss a later change.

The source is read in one snapshot; the node may keep running, but changes
it makes after the snapshot are not copied: stop it first.
"""

import os
import sqlite3
import sys

from twisted.python.failure import Failure

from wazuhcluster.agentdb.connection import checkAgentDatabase
from wazuhcluster.agentdb.dialect import POSTGRESQL, Txn
from wazuhcluster.agentdb.schema import SCHEMA_VERSION, migrate
from wazuhcluster.agentdb.values import epoch
from wazuhcluster.agentstoreitems import dsnProblem, redactDsn
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome

#: The tables copied, parents first.
COPIED_TABLES = ("agent", "labels", "group", "belongs", "pending_groups")


def migrateAgents(homePath, target, passwordFile=None, replace=False, out=None, err=None):
    """
    Run C{migrate-agents}: print what was copied, or one error line.

    @param target: the PostgreSQL URI (no password in it).
    @param passwordFile: a file whose first line is the password.
    @param replace: delete what the target holds instead of refusing it.
    @return: the exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        out.write(_migrate(NodeHome.fromPath(homePath), target, passwordFile, replace))
    except ClusterError as e:
        err.write(f"{e}\n")
        return 1
    return 0


def _migrate(home, target, passwordFile, replace):
    from twisted.python.filepath import FilePath

    from wazuhcluster.agentdb.stores import readPassword

    problem = dsnProblem(target, passwordHint="a file given with --password-file")
    if problem is not None:
        raise ClusterError(f"Invalid --to {redactDsn(target)}: {problem}", 1000)
    path = home.globalDb
    if not path.exists():
        raise ClusterError(f"No agent database at {path.path}", 2000)
    checkAgentDatabase(path)
    password = None
    if passwordFile is not None:
        password = readPassword(FilePath(os.path.abspath(passwordFile)))
    source = _readSource(path)
    counts = _writeTarget(target, password, source, replace)
    return (
        f"Copied {path.path} to {redactDsn(target)}: {counts['agent']} agents, "
        f"{counts['labels']} labels, {counts['group']} groups, "
        f"{counts['belongs']} group memberships, {counts['pending_groups']} pending "
        f"group assignments; group version {counts['version']}.\n"
    )


def _readSource(path):
    """
    Every row of the SQLite database, in one snapshot.

    @return: C{{table: (columns, rows)}}, plus C{"version"}: the global
        group version.
    """
    connection = sqlite3.connect(path.path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        version = connection.execute(
            "SELECT value FROM metadata WHERE key = 'db_version'"
        ).fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise ClusterError(
                f"The agent database {path.path} has schema version "
                f"{version[0] if version else 0}, not {SCHEMA_VERSION}: start the "
                f"node once with this version to upgrade it, then migrate",
                2000,
            )
        source = {}
        for table in COPIED_TABLES:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            source[table] = ([d[0] for d in cursor.description], cursor.fetchall())
        source["version"] = int(
            connection.execute(
                "SELECT value FROM metadata WHERE key = 'group_version'"
            ).fetchone()[0]
        )
        connection.execute("COMMIT")
    except sqlite3.Error as e:
        raise ClusterError(f"Cannot read the agent database {path.path}: {e}", 2000)
    finally:
        connection.close()
    return source


def _writeTarget(dsn, password, source, replace):
    from wazuhcluster.agentdb.postgres import connectPostgres, postgresErrors

    try:
        connection = connectPostgres(dsn, password)
    except Exception:
        postgresErrors(dsn, password)(Failure())
        raise
    try:
        txn = Txn(connection.cursor(), POSTGRESQL)
        POSTGRESQL.begin(txn, write=True)
        # The schema (with a manager row, replaced by the source's below).
        migrate(txn, "manager", epoch(None))
        txn.execute("SELECT COUNT(*) FROM agent WHERE id > 0")
        held = txn.value()
        if held and not replace:
            raise ClusterError(
                f"The target {redactDsn(dsn)} already holds {held} agents: "
                f"use --replace to delete them and copy",
                2000,
            )
        txn.execute("SELECT value FROM metadata WHERE key = 'group_version'")
        version = max(int(txn.value()), source["version"])
        for table in reversed(COPIED_TABLES):
            txn.execute(f'DELETE FROM "{table}"')
        counts = {"version": version}
        for table in COPIED_TABLES:
            columns, rows = source[table]
            names = ", ".join(f'"{name}"' for name in columns)
            with connection.cursor().copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
            counts[table] = sum(1 for row in rows if table != "agent" or row[0] != 0)
        txn.execute(
            "SELECT setval(pg_get_serial_sequence('\"group\"', 'id'), "
            'COALESCE((SELECT MAX(id) FROM "group"), 0) + 1, false)'
        )
        txn.execute("UPDATE metadata SET value = ? WHERE key = 'group_version'", (version,))
        connection.commit()
        return counts
    except ClusterError:
        raise
    except Exception:
        postgresErrors(dsn, password)(Failure())
        raise
    finally:
        # Closing without a commit rolls the transaction back.
        connection.close()
