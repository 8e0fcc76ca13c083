# -*- test-case-name: tests.test_standby_arbiter -*-
"""
The arbiter alone, on a L{Clock}, with the in-memory lock of
L{tests.standbycluster} and hooks that record what the node was asked to
do.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.standbycluster import MemoryLockServer
from wazuhcluster.commands import ControlFailed
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.standby.arbiter import Arbiter, IRoleHooks
from wazuhcluster.standby.items import MastersItems, overlapWindow

MASTERS = MastersItems(lock_check_interval=1, lock_check_timeout=2, lock_poll_interval=1,
                       switchover_grace=10)


@implementer(IRoleHooks)
class _Hooks:
    def __init__(self):
        self.calls = []
        self.promoting = None

    def promote(self):
        self.calls.append("promote")
        return self.promoting

    def demote(self):
        self.calls.append("demote")

    def standingBy(self, active):
        self.calls.append(("standingBy", active.name if active else None))


class ArbiterTests(SynchronousTestCase):
    """
    L{Arbiter}'s transitions.
    """

    def setUp(self):
        self.clock = Clock()
        self.server = MemoryLockServer(self.clock)
        self.events = []
        self.log = ClusterLogger("Master", "Active master", observer=self.events.append)

    def arbiter(self, name="m1", hooks=None):
        lock = self.server.session(name, f"{name}.example")
        arbiter = Arbiter(lock, hooks or _Hooks(), MASTERS, self.clock, self.log, "wazuh")
        arbiter.startService()
        self.addCleanup(lambda: arbiter.running and arbiter.stopService())
        return arbiter

    def lines(self, level):
        return [formatEvent(e) for e in self.events if e["log_level"] == level]

    def test_servesOncePrepared(self):
        """
        Taking the lock makes the master active, but it serves only once the
        node is prepared (L{IRoleHooks.promote} fired); no check runs
        meanwhile.
        """
        hooks = _Hooks()
        hooks.promoting = Deferred()
        arbiter = self.arbiter(hooks=hooks)
        self.clock.advance(0)
        self.assertEqual((arbiter.role, arbiter.serving), ("active", False))
        self.server.terminate(arbiter.lock)
        self.clock.advance(5)
        self.assertEqual(hooks.calls, ["promote"])
        hooks.promoting.callback(None)
        self.assertTrue(arbiter.serving)
        self.clock.advance(MASTERS.lock_check_interval)
        self.assertEqual((arbiter.role, arbiter.serving, hooks.calls),
                         ("standby", False, ["promote", "demote"]))

    def test_standingBy(self):
        """
        A poll that finds another master holding the lock tells the node who
        it is, at each poll.
        """
        self.arbiter("m1")
        self.clock.advance(0)
        hooks = _Hooks()
        second = self.arbiter("m2", hooks)
        self.clock.advance(0)
        self.clock.advance(MASTERS.lock_poll_interval)
        self.assertEqual(hooks.calls, [("standingBy", "m1")] * 2)
        self.assertEqual(second.active.name, "m1")

    def test_stuckCheck(self):
        """
        A check without an answer counts as the lock lost after the
        timeout: the master stops serving within the overlap window, its
        session is cut, the node is told, and one ERROR says why.
        """
        hooks = _Hooks()
        arbiter = self.arbiter(hooks=hooks)
        self.clock.advance(0)
        self.assertTrue(arbiter.serving)
        arbiter.lock.frozen = arbiter.lock.partitioned = True
        start = self.clock.seconds()
        while arbiter.serving:
            self.clock.advance(0.125)
        self.assertLessEqual(self.clock.seconds() - start, overlapWindow(MASTERS))
        self.assertEqual(arbiter.lock.cuts, 1)
        self.assertEqual(hooks.calls, ["promote", "demote"])
        self.clock.advance(10)
        errors = self.lines(LogLevel.error)
        self.assertEqual(errors, [
            "Lost the active master lock: the lock check got no answer within 2 seconds. "
            "Stopped serving at once (every worker disconnected); this master is a standby "
            "now. Two masters may both have served for at most 3 seconds."])

    def test_stuckPoll(self):
        """
        A poll without an answer is cut after twice the check timeout and
        said once; polling goes on.
        """
        hooks = _Hooks()
        arbiter = self.arbiter(hooks=hooks)
        arbiter.lock.frozen = True
        self.clock.advance(0)
        self.clock.advance(2 * MASTERS.lock_check_timeout)
        self.assertEqual(arbiter.lock.cuts, 1)
        self.clock.advance(2 * MASTERS.lock_check_timeout + MASTERS.lock_poll_interval)
        self.assertEqual(len(self.lines(LogLevel.warn)), 1)
        self.assertIn(("standingBy", None), hooks.calls)
        arbiter.lock.frozen = False
        # The poll in flight is given up first, then the next one answers.
        for _ in range(2):
            self.clock.advance(2 * MASTERS.lock_check_timeout + MASTERS.lock_poll_interval)
        self.assertTrue(arbiter.serving)

    def test_stopFreesTheLock(self):
        """
        Stopping closes the session (freeing the lock) and leaves no timer
        behind.
        """
        arbiter = self.arbiter()
        self.clock.advance(0)
        self.successResultOf(arbiter.stopService())
        self.assertTrue(arbiter.lock.closed)
        self.assertIsNone(self.server.holder)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopWaitsForTheCall(self):
        """
        A stop during a call waits for it; a call that never answers is
        given up after the timeout, and the session cut.
        """
        arbiter = self.arbiter()
        self.clock.advance(0)
        arbiter.lock.frozen = True
        self.clock.advance(MASTERS.lock_check_interval)
        stopped = arbiter.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(MASTERS.lock_check_timeout)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_switchoverWaitsForTheCheck(self):
        """
        A switchover asked during a check runs after it: the master stops
        serving, then frees the lock for the successor only.
        """
        hooks = _Hooks()
        arbiter = self.arbiter(hooks=hooks)
        self.clock.advance(0)
        arbiter.lock.frozen = True
        self.clock.advance(MASTERS.lock_check_interval)
        done = arbiter.switchover("m3")
        self.assertNoResult(done)
        arbiter.lock.thaw()
        self.successResultOf(done)
        self.assertEqual((arbiter.role, arbiter.serving), ("standby", False))
        self.assertEqual((self.server.holder, self.server.successor), (None, "m3"))
        self.assertEqual(hooks.calls, ["promote", "demote"])
        failure = self.failureResultOf(arbiter.switchover("m3"), ControlFailed)
        self.assertIn("Error 3065", str(failure.value))
