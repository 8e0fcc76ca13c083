# -*- test-case-name: tests.test_standby_lock -*-
"""
The lock session and the arbiter against a real PostgreSQL server
(L{tests.pg}), with real threads and the real reactor: taking, checking,
handing over and losing the active master's lock, a session ended by the
server, a stuck session cut, and the window during which two masters may
both believe they are active.
"""

import threading
import time

import psycopg

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.pg import adminConnection, freshDatabase, passwordDatabase
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.standby.arbiter import Arbiter, IRoleHooks
from wazuhcluster.standby.items import MastersItems, overlapWindow, serverKeepalives
from wazuhcluster.standby.locksession import LockError, LockLost, PostgresLockSession, lockKey

FAST = MastersItems(lock_check_interval=0.5, lock_check_timeout=1.0, lock_poll_interval=0.5,
                    switchover_grace=5)


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


class _Sessions:
    """
    Lock sessions of one cluster on one fresh database, closed when the
    test ends.
    """

    def __init__(self, testCase, dsn=None, password=None, masters=FAST):
        self.testCase = testCase
        self.dsn = dsn or freshDatabase(testCase)
        self.password = password
        self.masters = masters

    def session(self, name, host=None, cluster="wazuh", password=None):
        lock = PostgresLockSession(
            self.dsn, lambda: password if password is not None else self.password, cluster,
            name, host or f"{name}.example", self.masters, reactor)
        self.testCase.addCleanup(lock.close)
        return lock


def backendOf(lock):
    """
    The server process of C{lock}'s session.
    """
    row = adminConnection().execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (lock.applicationName,)).fetchone()
    return row[0] if row else None


def advisoryHolders():
    """
    The application names of the sessions holding an advisory lock.
    """
    return sorted(row[0] for row in adminConnection().execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1").fetchall())


class LockSessionTests(TestCase):
    """
    L{PostgresLockSession} on a real server.
    """

    def setUp(self):
        self.sessions = _Sessions(self)

    @inlineCallbacks
    def test_firstTakesTheLock(self):
        """
        The first session to try takes the lock and records itself; the
        second is told who holds it and since when; only the holder's check
        passes.
        """
        a, b = self.sessions.session("m1"), self.sessions.session("m2")
        first = yield a.acquire()
        second = yield b.acquire()
        self.assertTrue(first.acquired)
        self.assertEqual((second.acquired, second.active), (False, first.active))
        self.assertEqual((first.active.name, first.active.host), ("m1", "m1.example"))
        self.assertLess(abs(first.active.since - time.time()), 60)
        yield a.check()
        yield self.assertFailure(b.check(), LockLost)
        self.assertEqual(advisoryHolders(), ["wazuh-cluster lock m1"])
        active = yield b.activeMaster()
        self.assertEqual(active, first.active)

    @inlineCallbacks
    def test_clustersAreApart(self):
        """
        Two clusters on one database have two locks (and two rows).
        """
        a = self.sessions.session("m1", cluster="east")
        b = self.sessions.session("m2", cluster="west")
        self.assertTrue((yield a.acquire()).acquired)
        self.assertTrue((yield b.acquire()).acquired)
        self.assertNotEqual(lockKey("east"), lockKey("west"))

    @inlineCallbacks
    def test_releaseHandsOver(self):
        """
        Once the holder releases the lock, another session takes it and the
        row names the new holder with a later time.
        """
        a, b = self.sessions.session("m1"), self.sessions.session("m2")
        first = yield a.acquire()
        yield a.release()
        self.assertEqual(advisoryHolders(), [])
        second = yield b.acquire()
        self.assertTrue(second.acquired)
        self.assertGreaterEqual(second.active.since, first.active.since)
        yield self.assertFailure(a.check(), LockLost)

    @inlineCallbacks
    def test_reservation(self):
        """
        A release for a successor keeps every other session from taking the
        lock during the grace period; the successor takes it.
        """
        a, b, c = (self.sessions.session(name) for name in ("m1", "m2", "m3"))
        yield a.acquire()
        yield a.release("m3", 30)
        refused = yield b.acquire()
        self.assertEqual((refused.acquired, refused.reserved, refused.active),
                         (False, True, None))
        taken = yield c.acquire()
        self.assertTrue(taken.acquired)
        again = yield b.acquire()
        self.assertEqual((again.acquired, again.reserved, again.active.name),
                         (False, False, "m3"))

    @inlineCallbacks
    def test_reservationExpires(self):
        """
        When the successor does not take the lock within the grace period,
        any session may.
        """
        a, b = self.sessions.session("m1"), self.sessions.session("m2")
        yield a.acquire()
        yield a.release("m3", 0.2)
        yield sleep(0.4)
        self.assertTrue((yield b.acquire()).acquired)

    @inlineCallbacks
    def test_terminatedBackend(self):
        """
        When the server ends the holder's session (C{pg_terminate_backend}),
        the lock is free at once and the holder's next check fails without
        waiting for a timeout; its next call opens a new session.
        """
        a, b = self.sessions.session("m1"), self.sessions.session("m2")
        yield a.acquire()
        adminConnection().execute("SELECT pg_terminate_backend(%s)", (backendOf(a),))
        started = time.monotonic()
        failure = yield self.assertFailure(a.check(), LockLost)
        # The closed connection answers at once, not after a timeout (the
        # session's statement timeout, 1 s, would say "canceling").
        self.assertLess(time.monotonic() - started, 2 * FAST.lock_check_timeout)
        self.assertIn("terminating connection", failure.message)
        self.assertTrue((yield b.acquire()).acquired)
        self.assertFalse((yield a.acquire()).acquired)

    @inlineCallbacks
    def test_closeFreesTheLock(self):
        """
        Closing the holder's session frees the lock and stops its thread.
        """
        a, b = self.sessions.session("m1"), self.sessions.session("m2")
        yield a.acquire()
        yield a.close()
        self.assertTrue((yield b.acquire()).acquired)
        yield sleep(0.1)
        names = [t.name for t in threading.enumerate()]
        self.assertFalse(any("wazuhcluster-lock-m1" in name for name in names), names)

    @inlineCallbacks
    def test_cutEndsABlockedCall(self):
        """
        A check blocked on the server (here by a table lock) is ended at
        once by a cut (long before the statement timeout, 30 s here); the
        server then ends the session and frees the advisory lock, and the
        next call opens a new session.
        """
        patient = MastersItems(lock_check_interval=0.5, lock_check_timeout=30,
                               lock_poll_interval=0.5, switchover_grace=5)
        a = _Sessions(self, self.sessions.dsn, masters=patient).session("m1")
        yield a.acquire()
        admin = psycopg.connect(self.sessions.dsn, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute("BEGIN")
        admin.execute("LOCK TABLE wazuh_cluster_masters IN ACCESS EXCLUSIVE MODE")
        check = a.check()
        yield sleep(0.3)
        self.assertFalse(check.called)
        started = time.monotonic()
        a.cut()
        yield self.assertFailure(check, LockLost)
        self.assertLess(time.monotonic() - started, 5)
        for _ in range(50):
            if not advisoryHolders():
                break
            yield sleep(0.1)
        self.assertEqual(advisoryHolders(), [])
        admin.execute("COMMIT")
        self.assertTrue((yield a.acquire()).acquired)

    @inlineCallbacks
    def test_callsRunInOrderOnOneThread(self):
        """
        Calls given at once run one after the other, in order, on the
        session's own daemon thread: a check given right after an attempt
        sees the lock the attempt took.
        """
        seen = []

        def password():
            thread = threading.current_thread()
            seen.append((thread.name, thread.daemon))
            return None

        a = self.sessions.session("m1", password="unused")
        a._readPassword = password
        attempt, check, active = a.acquire(), a.check(), a.activeMaster()
        self.assertTrue((yield attempt).acquired)
        yield check
        self.assertEqual((yield active).name, "m1")
        self.assertEqual(len(seen), 1)
        name, daemon = seen[0]
        self.assertIn("wazuhcluster-lock-m1", name)
        self.assertTrue(daemon)
        self.assertNotEqual(name, threading.current_thread().name)

    @inlineCallbacks
    def test_serverKeepalives(self):
        """
        Over TCP the session asks the server for keep-alives that give a
        silent session up only after more than the overlap window, and
        bounds each statement by the check timeout.
        """
        dsn, password = passwordDatabase(self)
        a = _Sessions(self, dsn, password).session("m1")
        yield a.acquire()

        def show():
            return [a._connection.execute(f"SHOW {name}").fetchone()[0] for name in (
                "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
                "statement_timeout")]

        settings = yield a._thread.run(show)
        idle, interval, count = serverKeepalives(FAST)
        self.assertEqual(settings, [str(idle), str(interval), str(count), "1s"])
        self.assertGreater(idle + interval * count, overlapWindow(FAST))

    @inlineCallbacks
    def test_passwordNeverShown(self):
        """
        A refused login fails with a L{LockError} naming the redacted DSN,
        never the password.
        """
        dsn, password = passwordDatabase(self)
        wrong = password[::-1] + "x"
        a = _Sessions(self, dsn, wrong).session("m1")
        failure = yield self.assertFailure(a.acquire(), LockError)
        self.assertNotIn(wrong, str(failure))
        self.assertIn("PostgreSQL lock session", str(failure))
        right = _Sessions(self, dsn, password).session("m2")
        self.assertTrue((yield right.acquire()).acquired)


@implementer(IRoleHooks)
class _Timeline:
    """
    Records when each arbiter starts and stops serving.
    """

    def __init__(self, name, events):
        self.name = name
        self.events = events

    def promote(self):
        return None

    def demote(self):
        self.events.append((time.monotonic(), self.name, "stopped"))

    def standingBy(self, active):
        pass


class ArbiterOnPostgresTests(TestCase):
    """
    Two arbiters on real lock sessions: the window during which both may
    serve, when the active master's session dies or hangs.
    """

    def setUp(self):
        self.sessions = _Sessions(self)
        self.events = []

    def arbiter(self, name):
        lock = self.sessions.session(name)
        log = ClusterLogger("Master", "Active master", node=name)
        arbiter = Arbiter(lock, _Timeline(name, self.events), FAST, reactor, log, "wazuh")
        original = arbiter._serve

        def serve(ignored, generation):
            original(ignored, generation)
            if arbiter.serving:
                self.events.append((time.monotonic(), name, "serving"))

        arbiter._serve = serve
        arbiter.startService()
        self.addCleanup(arbiter.stopService)
        return arbiter

    @inlineCallbacks
    def until(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("condition not met in time")
            yield sleep(0.02)

    @inlineCallbacks
    def twoArbiters(self):
        a = self.arbiter("m1")
        yield self.until(lambda: a.serving)
        b = self.arbiter("m2")
        yield self.until(lambda: b.active is not None)
        return a, b

    def overlap(self):
        """
        The longest time both served at once, from the timeline.
        """
        serving, since, longest = set(), None, 0.0
        for moment, name, what in sorted(self.events):
            if what == "serving":
                serving.add(name)
                if len(serving) == 2:
                    since = moment
            else:
                if len(serving) == 2:
                    longest = max(longest, moment - since)
                serving.discard(name)
        return longest

    @inlineCallbacks
    def test_terminatedSession(self):
        """
        The server ends the active master's session: the active master stops
        serving within the check interval (its check fails at once), the
        other takes over, and the two served at once for less than the
        overlap window.
        """
        a, b = yield self.twoArbiters()
        started = time.monotonic()
        adminConnection().execute("SELECT pg_terminate_backend(%s)", (backendOf(a.lock),))
        yield self.until(lambda: not a.serving)
        self.assertLess(time.monotonic() - started,
                        FAST.lock_check_interval + FAST.lock_check_timeout)
        yield self.until(lambda: b.serving)
        self.assertLess(self.overlap(), overlapWindow(FAST))
        yield sleep(FAST.lock_check_interval * 3)
        self.assertEqual((a.role, b.role), ("standby", "active"))

    @inlineCallbacks
    def test_stuckSession(self):
        """
        The active master's check hangs (the server blocks it): after the
        check timeout the master stops serving, which is within the overlap
        window; the other master cannot take the lock before (it is still
        held, then blocked); once the server answers again one of them takes
        it: they never serve at once.
        """
        a, b = yield self.twoArbiters()
        admin = psycopg.connect(self.sessions.dsn, autocommit=True)
        self.addCleanup(admin.close)
        admin.execute("BEGIN")
        admin.execute("LOCK TABLE wazuh_cluster_masters IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        yield self.until(lambda: not a.serving)
        # The window, and some slack for a loaded machine.
        self.assertLessEqual(time.monotonic() - started, overlapWindow(FAST) + 1.0)
        self.assertFalse(b.serving)
        admin.execute("COMMIT")
        # Whichever polls first after the server freed the lock takes it.
        yield self.until(lambda: a.serving or b.serving)
        yield sleep(FAST.lock_check_interval * 3)
        self.assertEqual(sorted((a.role, b.role)), ["active", "standby"])
        self.assertEqual(self.overlap(), 0.0)
