# -*- test-case-name: tests.test_standby_arbiter,tests.test_standby_lock -*-
"""
The arbiter: which role this master candidate has, decided by the
PostgreSQL lock alone (L{wazuhcluster.standby.locksession}).

One tick at a time, the next scheduled when one ends:

  - a standby tries to take the lock every C{masters.lock_poll_interval}
    seconds; when it gets it, it becomes active: the node prepares
    (L{IRoleHooks.promote}: its link to the former active master stopped,
    its files rescanned) and only then serves;
  - the active master checks its session every
    C{masters.lock_check_interval} seconds; a check that fails, says the
    lock is gone, or takes more than C{masters.lock_check_timeout} seconds,
    and the master stops serving at once (L{IRoleHooks.demote}: every
    worker dropped, their sessions stopped), with one ERROR; its session is
    cut, so that the server frees the lock if it still held it;
  - a switchover (L{Arbiter.switchover}) stops serving first, then frees
    the lock and reserves it for the named standby.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, maybeDeferred, succeed
from twisted.logger import LogLevel
from zope.interface import Interface

from wazuhcluster.commands import ControlFailed
from wazuhcluster.standby.items import overlapWindow
from wazuhcluster.standby.locksession import LockError, LockLost
from wazuhcluster.standby.role import ACTIVE, STANDBY, SWITCHOVER_CODE


class IRoleHooks(Interface):
    """
    What the node does when its role changes.
    """

    def promote():
        """
        This master took the lock: prepare to serve.

        @return: a Deferred firing once ready (serving starts then).
        """

    def demote():
        """
        This master stopped serving: drop every worker.

        @return: a Deferred firing once their sessions stopped.
        """

    def standingBy(active):
        """
        A poll found the lock held by C{active} (an
        L{wazuhcluster.standby.role.ActiveMaster}, or L{None} when nobody
        holds it or the server could not be asked): keep the files in sync
        with the active master.
        """


def _reason(failure):
    """
    The text of a failure of the lock session (its message without the
    code).
    """
    if failure.check(LockError):
        return failure.value.message
    return failure.getErrorMessage() or failure.type.__name__


def _timedOut(failure, what, seconds):
    failure.trap(TimeoutError)
    raise LockLost(f"the {what} got no answer within {seconds:g} seconds")


class Arbiter(Service):
    """
    This master candidate's role.

    @ivar role: L{ACTIVE} or L{STANDBY}.
    @ivar serving: whether workers are served (active and prepared).
    @ivar active: the L{wazuhcluster.standby.role.ActiveMaster} last known
        (this one while active), or L{None}.
    @ivar changes: how many times the role changed (for tests and health).
    """

    name = "arbiter"

    def __init__(self, lock, hooks, masters, clock, log, clusterName):
        """
        @param lock: the L{wazuhcluster.standby.locksession.ILockSession}.
        @param hooks: the node's L{IRoleHooks}.
        @param masters: the L{wazuhcluster.standby.items.MastersItems}.
        @param log: a L{wazuhcluster.logs.ClusterLogger}.
        """
        self.lock = lock
        self.hooks = hooks
        self.masters = masters
        self.clock = clock
        self.log = log
        self.clusterName = clusterName
        self.role = STANDBY
        self.serving = False
        self.active = None
        self.changes = 0
        self._busy = None
        self._next = None
        self._pollProblem = None
        self._generation = 0

    # -- life ----------------------------------------------------------------------

    def startService(self):
        super().startService()
        # Not at once: the node's other services start first.
        self._next = self.clock.callLater(0, self._tick)

    def stopService(self):
        """
        Stop ticking, wait for the call in progress, then free the lock and
        close the session.
        """
        super().stopService()
        self.serving = False
        self._generation += 1
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        d = self._whenIdle()
        d.addCallback(lambda _: self._timed(self.lock.close(), "closing of the lock session",
                                            self.masters.lock_check_timeout))
        d.addErrback(self._closeFailed)
        return d

    def _closeFailed(self, failure):
        self.lock.cut()
        self.log.warn("Could not free the active master lock cleanly: {error}",
                      error=failure.getErrorMessage())

    def _whenIdle(self):
        if self._busy is None:
            return succeed(None)
        follower = Deferred()
        self._busy.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    # -- ticking -------------------------------------------------------------------

    def _timed(self, d, what, seconds):
        d.addTimeout(seconds, self.clock)
        d.addErrback(_timedOut, what, seconds)
        return d

    def _tick(self):
        self._next = None
        if not self.running or self._busy is not None:
            return
        timeout = self.masters.lock_check_timeout
        if self.role == ACTIVE:
            d = self._timed(self.lock.check(), "lock check", timeout)
            d.addCallbacks(lambda _: None, self._checkFailed)
        else:
            d = self._timed(self.lock.acquire(), "lock poll", 2 * timeout)
            d.addCallbacks(self._polled, self._pollFailed)
        self._run(d)

    def _run(self, d):
        """
        Make C{d} the call in progress; schedule the next tick when it ends.
        """
        self._busy = d
        d.addErrback(lambda failure: self.log.failure(
            "The active master lock loop failed", failure, level=LogLevel.error))
        d.addBoth(self._ended, d)

    def _ended(self, ignored, d):
        if self._busy is d:
            self._busy = None
        if self.running and self._next is None:
            interval = (self.masters.lock_check_interval if self.role == ACTIVE
                        else self.masters.lock_poll_interval)
            self._next = self.clock.callLater(interval, self._tick)

    # -- standby -------------------------------------------------------------------

    def _polled(self, attempt):
        if self._pollProblem is not None:
            self._pollProblem = None
            self.log.info("The PostgreSQL server of the active master lock answers again.")
        if not self.running:
            return None
        if attempt.acquired:
            return self._promote(attempt.active)
        self.active = attempt.active
        self.hooks.standingBy(attempt.active)
        return None

    def _pollFailed(self, failure):
        if failure.check(LockLost):
            # It took too long: the session may be stuck on a dead socket.
            self.lock.cut()
        problem = _reason(failure)
        if self._pollProblem is None:
            self.log.warn("Could not ask PostgreSQL for the active master lock (trying "
                          "again every {interval:g} seconds): {error}",
                          interval=self.masters.lock_poll_interval, error=problem)
        self._pollProblem = problem
        self.active = None
        self.hooks.standingBy(None)

    def _promote(self, me):
        self.role = ACTIVE
        self.active = me
        self.changes += 1
        self._generation += 1
        generation = self._generation
        self.log.info("This master is now the active master of cluster {cluster} (it holds "
                      "the PostgreSQL lock); preparing to serve.", cluster=self.clusterName)
        d = maybeDeferred(self.hooks.promote)
        d.addErrback(lambda failure: self.log.failure(
            "Error preparing to serve", failure, level=LogLevel.error))
        d.addCallback(self._serve, generation)
        return d

    def _serve(self, ignored, generation):
        if generation != self._generation or self.role != ACTIVE or not self.running:
            return
        self.serving = True
        self.log.info("Serving workers as the active master.")

    # -- active --------------------------------------------------------------------

    def _checkFailed(self, failure):
        # Whatever went wrong, this master cannot prove it holds the lock.
        if self.role != ACTIVE:
            return None
        self.lock.cut()
        self.log.error(
            "Lost the active master lock: {error}. Stopped serving at once (every worker "
            "disconnected); this master is a standby now. Two masters may both have "
            "served for at most {window:g} seconds.", error=_reason(failure),
            window=overlapWindow(self.masters))
        return self._stepDown()

    def _stepDown(self):
        self.role = STANDBY
        self.serving = False
        self.active = None
        self.changes += 1
        self._generation += 1
        d = maybeDeferred(self.hooks.demote)
        d.addErrback(lambda failure: self.log.failure(
            "Error stopping serving", failure, level=LogLevel.error))
        return d

    def switchover(self, successor):
        """
        Hand the active role to the standby C{successor}: stop serving, then
        free the lock and reserve it for C{successor} during
        C{masters.switchover_grace} seconds.

        @return: a Deferred firing once the lock is free, failing with
            L{ControlFailed} when this master is not the serving active one.
        """
        return self._whenIdle().addCallback(lambda _: self._switchover(successor))

    def _switchover(self, successor):
        if self.role != ACTIVE or not self.serving or self._busy is not None:
            raise ControlFailed(
                f"Error {SWITCHOVER_CODE} - This master is not serving as the active "
                "master now; run switchover on the active master's home")
        self.log.info("Switchover: handing the active role to {successor}.",
                      successor=successor)
        d = self._stepDown()
        grace = self.masters.switchover_grace
        d.addCallback(lambda _: self._timed(self.lock.release(successor, grace),
                                            "release of the lock",
                                            self.masters.lock_check_timeout))
        d.addErrback(self._releaseFailed)
        done = Deferred()
        d.addBoth(lambda result: (done.callback(None), result)[1])
        self._run(d)
        return done

    def _releaseFailed(self, failure):
        # The session is closed (or cut) on failure: the server frees the
        # lock, without the reservation.
        self.lock.cut()
        self.log.warn("Could not hand the lock over cleanly: {error}; the first standby "
                      "to poll takes it.", error=failure.getErrorMessage())
