# -*- test-case-name: tests.test_agentdb_postgres -*-
"""
PostgreSQL for the tests: a real server, never a mock.

Usage, in any test module::

    from tests.pg import freshDatabase, passwordDatabase

    dsn = freshDatabase(self)              # a new, empty database
    dsn, password = passwordDatabase(self) # the same, owned by a new role
                                           # that logs in with a password
                                           # over TCP (127.0.0.1)

Each call creates a new database (and role), dropped when the test's
cleanups run; C{dsn} is a libpq connection string without any password.
L{adminConnection} gives a superuser connection to the server (for tests
that need to terminate backends or look at the catalogue).

Where the server comes from:

  - C{WAZUHCLUSTER_TEST_PG_DSN}, when set: a DSN of an existing server whose
    role may C{CREATE DATABASE} and C{CREATE ROLE}, with password
    authentication over TCP (for L{passwordDatabase});
  - otherwise a server this module starts itself, once per test process, at
    the first call: C{initdb} and C{pg_ctl} (found in C{PATH} or
    C{/usr/lib/postgresql/*/bin}) in a new temporary directory, run as an
    unprivileged user (when the tests run as root: the user C{postgres},
    created with C{useradd} if missing, through C{runuser -u postgres --}),
    listening on a UNIX socket in that directory (trusted) and on
    127.0.0.1 on a free port (SCRAM passwords), with C{fsync} off.  It is
    stopped and its directory removed when the process exits (C{atexit}; a
    small watchdog process does it if the test process is killed).
"""

import atexit
import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ENVIRONMENT_DSN = "WAZUHCLUSTER_TEST_PG_DSN"

#: The unprivileged user that runs the server when the tests run as root.
SERVER_USER = "postgres"

_WATCHDOG = r"""
import os, shutil, subprocess, sys, time
parent, command, base = int(sys.argv[1]), sys.argv[2:-1], sys.argv[-1]
while os.getppid() == parent:
    time.sleep(0.5)
subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
shutil.rmtree(base, ignore_errors=True)
"""


def findBinary(name):
    """
    The path of a PostgreSQL program: in C{PATH}, else the newest
    C{/usr/lib/postgresql/*/bin}.
    """
    found = shutil.which(name)
    if found:
        return found

    def version(path):
        try:
            return int(path.split("/")[4])
        except (IndexError, ValueError):
            return 0

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql), "
            f"and {ENVIRONMENT_DSN} is not set"
        )
    return candidates[-1]


def _freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """
    The test process's PostgreSQL server: its admin connection and how to
    reach it.
    """

    def __init__(self):
        self._admin = None
        self._base = None
        self._stop = None
        self._watchdog = None
        self._names = itertools.count(1)
        self.adminDsn = None
        self.tcp = None

    def admin(self):
        if self._admin is None or self._admin.closed:
            if self.adminDsn is None:
                self._start()
            self._admin = psycopg.connect(self.adminDsn, autocommit=True)
        return self._admin

    def _start(self):
        configured = os.environ.get(ENVIRONMENT_DSN)
        if configured:
            self.adminDsn = configured
            options = conninfo_to_dict(configured)
            self.tcp = (options.get("host") or "127.0.0.1", options.get("port") or "5432")
            return
        initdb, pgctl = findBinary("initdb"), findBinary("pg_ctl")
        self._base = tempfile.mkdtemp(prefix="wzc-pg-")
        prefix = []
        if os.geteuid() == 0:
            user = _serverUser()
            os.chown(self._base, user.pw_uid, user.pw_gid)
            prefix = ["runuser", "-u", user.pw_name, "--"]
        data = os.path.join(self._base, "data")
        self._run(prefix + [initdb, "-D", data, "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--locale=C", "--no-sync"])
        port = _freePort()
        with open(os.path.join(data, "postgresql.conf"), "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{self._base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )
        with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
            hba.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        stop = prefix + [pgctl, "-D", data, "-m", "immediate", "-w", "stop"]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), *stop, self._base],
            start_new_session=True, stdin=subprocess.DEVNULL,
        )
        self._stop = stop
        atexit.register(self.close)
        self._run(prefix + [pgctl, "-D", data, "-l", os.path.join(self._base, "server.log"),
                            "-w", "-t", "60", "start"])
        self.adminDsn = make_conninfo(host=self._base, port=str(port), user="postgres",
                                      dbname="postgres")
        self.tcp = ("127.0.0.1", str(port))

    def _run(self, command):
        result = subprocess.run(command, cwd=self._base, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n"
                               f"{result.stdout.decode(errors='replace')}")

    def newName(self, kind):
        return f"wzc_{kind}_{os.getpid()}_{next(self._names)}"

    def dsnFor(self, database, **options):
        return make_conninfo(self.adminDsn, dbname=database, **options)

    def close(self):
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._stop is not None:
            subprocess.run(self._stop, cwd="/", stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            self._stop = None
        if self._watchdog is not None:
            self._watchdog.send_signal(signal.SIGTERM)
            self._watchdog.wait()
            self._watchdog = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


def _serverUser():
    """
    The unprivileged user that runs the server, created if missing.
    """
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", SERVER_USER], check=True)
        return pwd.getpwnam(SERVER_USER)


_SERVER = _Server()


def adminConnection():
    """
    A superuser connection (autocommit) to the test server, started if
    needed. Shared: do not close it.
    """
    return _SERVER.admin()


def _createDatabase(testCase, owner=None):
    admin = adminConnection()
    name = _SERVER.newName("db")
    owned = f' OWNER "{owner}"' if owner else ""
    admin.execute(f'CREATE DATABASE "{name}"{owned}')

    def drop():
        adminConnection().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if testCase is not None:
        testCase.addCleanup(drop)
    return name


def freshDatabase(testCase=None):
    """
    Create a new, empty database on the test server.

    @param testCase: the L{twisted.trial.unittest.TestCase} whose cleanup
        drops the database (kept when L{None}).
    @return: its DSN (libpq C{key=value} form, no password).
    """
    return _SERVER.dsnFor(_createDatabase(testCase))


def passwordDatabase(testCase=None):
    """
    Create a new role with a random password and a new database it owns,
    reached over TCP on loopback (where the server checks passwords).

    @return: C{(dsn, password)}: the DSN (URI form, no password) and the
        password.
    """
    admin = adminConnection()
    role, password = _SERVER.newName("role"), secrets.token_urlsafe(18)
    admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
    name = _createDatabase(None, owner=role)

    def drop():
        connection = adminConnection()
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'DROP ROLE IF EXISTS "{role}"')

    if testCase is not None:
        testCase.addCleanup(drop)
    host, port = _SERVER.tcp
    return f"postgresql://{role}@{quote(host)}:{port}/{name}", password


def waitUntilDropped(name, timeout=10):
    """
    Wait until no backend serves the database C{name} (after terminating
    them).
    """
    deadline = time.monotonic() + timeout
    admin = adminConnection()
    while time.monotonic() < deadline:
        count = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()[0]
        if count == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"backends of {name} did not end")
