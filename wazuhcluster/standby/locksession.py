# -*- test-case-name: tests.test_standby_lock -*-
"""
The lock session: the one PostgreSQL session through which a master
candidate takes, holds and checks the active master's advisory lock.

It is a connection of its own (never one of the agent store's pool: a pool
hands its connections to whoever asks, and a session-level lock belongs to
one session), used from one thread (L{LockThread}).  The lock is the
one-key advisory lock L{lockKey} of the cluster name; the agent store's
writers use the two-key form, another key space.

Beside the lock, the table C{wazuh_cluster_masters} holds one row per
cluster, written only by the session holding the lock: which master is
active, at which address, since when, and, during a switchover, which
standby alone may take the lock until when.  The row says who the holder
is; the lock says whether there is one.

Every failure of a call closes the session (so that the server frees
whatever it held) and fails the call with L{LockError}; the next call opens
a new session.  L{PostgresLockSession.cut} ends the session at once from
the reactor thread (it shuts the socket down, which ends a call blocked on
it): the server then ends the backend and frees the lock, unless it cannot
hear the close (a network cut), in which case its own keep-alives do it
after L{wazuhcluster.standby.items.serverRelease} seconds.

No text carries the password: DSNs are redacted and the password scrubbed
from the driver's messages.
"""

import hashlib
import math
import os
import socket

import psycopg
from attrs import frozen
from twisted.internet.defer import succeed
from psycopg import errors as pgerrors
from zope.interface import Interface, implementer

from wazuhcluster.agentdb.postgres import TCP_SETTINGS
from wazuhcluster.agentstoreitems import redactDsn
from wazuhcluster.errors import ClusterError
from wazuhcluster.standby.items import serverKeepalives
from wazuhcluster.standby.lockthread import LockThread
from wazuhcluster.standby.role import ActiveMaster

#: The code of a failure of the lock session.
LOCK_ERROR = 2000

#: Seconds between two checks, by the server, that the client of a running
#: statement is still there (PostgreSQL 14 and later).
CLIENT_CHECK_MS = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS wazuh_cluster_masters (
    cluster TEXT PRIMARY KEY,
    active TEXT NOT NULL,
    host TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL,
    successor TEXT,
    successor_until TIMESTAMPTZ
)"""

_HELD_BY_ANYONE = """
EXISTS (SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid::bigint = %(high)s AND objid::bigint = %(low)s)"""

#: NULL: a switchover reserves the lock for another standby; else whether
#: this session got it.
TRY_LOCK = """
SELECT CASE WHEN EXISTS (
    SELECT 1 FROM wazuh_cluster_masters
    WHERE cluster = %(cluster)s AND successor IS NOT NULL AND successor <> %(me)s
      AND successor_until > now())
  THEN NULL ELSE pg_try_advisory_lock(%(key)s) END"""

CLAIM = """
INSERT INTO wazuh_cluster_masters (cluster, active, host, since)
VALUES (%(cluster)s, %(me)s, %(host)s, now())
ON CONFLICT (cluster) DO UPDATE SET active = EXCLUDED.active, host = EXCLUDED.host,
    since = EXCLUDED.since, successor = NULL, successor_until = NULL
RETURNING extract(epoch FROM since)"""

HOLDER = f"""
SELECT active, host, extract(epoch FROM since), {_HELD_BY_ANYONE}
FROM wazuh_cluster_masters WHERE cluster = %(cluster)s"""

CHECK = """
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 1
                 AND pid = pg_backend_pid()
                 AND classid::bigint = %(high)s AND objid::bigint = %(low)s)
   AND EXISTS (SELECT 1 FROM wazuh_cluster_masters
               WHERE cluster = %(cluster)s AND active = %(me)s)"""

RESERVE = """
UPDATE wazuh_cluster_masters
SET successor = %(successor)s, successor_until = now() + make_interval(secs => %(grace)s)
WHERE cluster = %(cluster)s AND active = %(me)s"""

UNLOCK = "SELECT pg_advisory_unlock_all()"


class LockError(ClusterError):
    """
    The lock session failed (the server cannot be reached, the session was
    ended, a statement failed); the message says why.
    """

    code = LOCK_ERROR


class LockLost(LockError):
    """
    The active master's session no longer holds the lock.
    """


@frozen
class LockAttempt:
    """
    The outcome of an attempt to take the lock.

    @ivar acquired: this session holds the lock now.
    @ivar active: the L{ActiveMaster} (this one when C{acquired}), or
        L{None} when nobody holds the lock.
    @ivar reserved: the lock is reserved for another standby (a
        switchover).
    """

    acquired: bool
    active: object = None
    reserved: bool = False


def lockKey(clusterName):
    """
    The one-key advisory lock of the active master of C{clusterName}: a
    64-bit integer from its SHA-256.
    """
    digest = hashlib.sha256(b"wazuhcluster active master\0" + clusterName.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big", signed=True)


class ILockSession(Interface):
    """
    What the arbiter needs of a lock session.  Every method but L{cut}
    returns a Deferred.
    """

    def acquire():
        """
        Try to take the lock (unless a switchover reserves it for another
        standby) and, when taken, record this master as the active one.

        @return: a Deferred of a L{LockAttempt}.
        """

    def check():
        """
        @return: a Deferred firing when this session still holds the lock,
            failing with L{LockLost} otherwise.
        """

    def release(successor=None, grace=0):
        """
        Free the lock, reserving it for C{successor} during C{grace} seconds
        when given (a switchover).
        """

    def activeMaster():
        """
        @return: a Deferred of the L{ActiveMaster} holding the lock, or
            L{None}.
        """

    def cut():
        """
        End the session at once (a check that took too long): a call in
        progress fails, the next one opens a new session.
        """

    def close():
        """
        Free the lock and close the session for good.
        """


def _scrub(text, password):
    return text.replace(password, "***") if password else text


@implementer(ILockSession)
class PostgresLockSession:
    """
    The lock session on the PostgreSQL server of the agent store.
    """

    def __init__(self, dsn, readPassword, clusterName, nodeName, host, masters, reactor):
        """
        @param readPassword: called in the thread before each connection;
            returns the password or L{None}.
        @param host: this master's own address (recorded when it is active).
        @param masters: the L{wazuhcluster.standby.items.MastersItems}.
        """
        self._dsn = dsn
        self._readPassword = readPassword
        self._masters = masters
        self._thread = LockThread(reactor, f"wazuhcluster-lock-{nodeName}")
        self._connection = None
        self._cutRequested = False
        self._closed = False
        self._password = None
        key = lockKey(clusterName)
        self._parameters = {
            "cluster": clusterName,
            "me": nodeName,
            "host": host,
            "key": key,
            "high": (key >> 32) & 0xFFFFFFFF,
            "low": key & 0xFFFFFFFF,
        }
        self.applicationName = f"wazuh-cluster lock {nodeName}"[:63]

    # -- the interface (reactor thread) ------------------------------------------

    def acquire(self):
        return self._thread.run(self._guarded, self._acquire)

    def check(self):
        return self._thread.run(self._guarded, self._check, LockLost)

    def release(self, successor=None, grace=0):
        return self._thread.run(self._guarded, self._release, LockError, successor, grace)

    def activeMaster(self):
        return self._thread.run(self._guarded, self._activeMaster)

    def cut(self):
        """
        Shut the session's socket down: the call blocked on it, if any,
        fails at once, and the next call opens a new session.
        """
        self._cutRequested = True
        connection = self._connection
        if connection is None:
            return
        try:
            fd = connection.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, psycopg.Error):
            pass

    def close(self):
        if self._closed:
            return succeed(None)
        self._closed = True
        d = self._thread.run(self._closeFinally)
        d.addBoth(lambda result: (self._thread.stop(), result)[1])
        return d

    # -- in the thread -------------------------------------------------------------

    def _guarded(self, call, errorType=LockError, *args):
        """
        Run C{call(connection, *args)} on the session (opened first when
        needed); any failure closes the session and raises C{errorType}.
        """
        try:
            return call(self._session(), *args)
        except psycopg.Error as error:
            self._closeNow()
            detail = " ".join(str(error).split()) or type(error).__name__
            raise errorType(_scrub(f"PostgreSQL lock session ({redactDsn(self._dsn)}): "
                                   f"{detail}", self._password)) from None
        except ClusterError as error:
            self._closeNow()
            if isinstance(error, errorType):
                raise
            raise errorType(error.message) from None

    def _session(self):
        if self._cutRequested:
            self._cutRequested = False
            self._closeNow()
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    def _connect(self):
        timeout = self._masters.lock_check_timeout
        self._password = self._readPassword()
        arguments = dict(TCP_SETTINGS)
        arguments["tcp_user_timeout"] = int(timeout * 1000)
        if self._password is not None:
            arguments["password"] = self._password
        connection = psycopg.connect(
            self._dsn, connect_timeout=max(2, math.ceil(timeout)),
            application_name=self.applicationName, autocommit=True, **arguments)
        try:
            idle, interval, count = serverKeepalives(self._masters)
            milliseconds = int(timeout * 1000)
            for setting, value in (("statement_timeout", milliseconds),
                                   ("lock_timeout", milliseconds),
                                   ("tcp_keepalives_idle", idle),
                                   ("tcp_keepalives_interval", interval),
                                   ("tcp_keepalives_count", count)):
                connection.execute(f"SET {setting} = {int(value)}")
            if connection.info.server_version >= 140000:
                connection.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
            try:
                connection.execute(SCHEMA)
            except (pgerrors.UniqueViolation, pgerrors.DuplicateTable):
                # Another candidate created it at the same moment.
                pass
        except BaseException:
            connection.close()
            raise
        return connection

    def _closeNow(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except psycopg.Error:
                pass

    def _acquire(self, connection):
        got = connection.execute(TRY_LOCK, self._parameters).fetchone()[0]
        if got is None:
            return LockAttempt(False, self._holder(connection), reserved=True)
        if not got:
            return LockAttempt(False, self._holder(connection))
        try:
            since = connection.execute(CLAIM, self._parameters).fetchone()[0]
        except BaseException:
            # Never hold the lock without the row naming this master.
            self._closeNow()
            raise
        parameters = self._parameters
        return LockAttempt(True, ActiveMaster(parameters["me"], parameters["host"],
                                              float(since)))

    def _holder(self, connection):
        row = connection.execute(HOLDER, self._parameters).fetchone()
        if row is None or not row[3]:
            return None
        return ActiveMaster(row[0], row[1], float(row[2]))

    def _check(self, connection):
        if not connection.execute(CHECK, self._parameters).fetchone()[0]:
            raise LockLost("the lock session no longer holds the active master's lock")

    def _release(self, connection, successor, grace):
        if successor is not None:
            connection.execute(RESERVE, dict(self._parameters, successor=successor,
                                              grace=float(grace)))
        connection.execute(UNLOCK)

    def _activeMaster(self, connection):
        return self._holder(connection)

    def _closeFinally(self):
        connection = self._connection
        if connection is not None and not connection.closed and not self._cutRequested:
            try:
                connection.execute(UNLOCK)
            except psycopg.Error:
                pass
        self._closeNow()
