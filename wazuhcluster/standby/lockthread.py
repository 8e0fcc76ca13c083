# -*- test-case-name: tests.test_standby_lock -*-
"""
The one thread of a lock session: every blocking call of the session runs
there, one at a time, in the order given.

A dedicated thread rather than the reactor's pool: the pool also hashes
files and runs other work, and a lock check that waits behind a busy pool
would look like a lost lock.  The thread is a daemon: a call still blocked
on a dead socket when the node stops (the session cuts the socket first,
which ends the call at once) does not keep the process alive.
"""

import threading

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


def _daemonThread(*args, **kwargs):
    thread = threading.Thread(*args, **kwargs)
    thread.daemon = True
    return thread


class LockThread:
    """
    One daemon thread running blocking calls in order.

    @ivar pending: calls given and not finished.
    """

    def __init__(self, reactor, name):
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._pool.threadFactory = _daemonThread
        self._stopped = False
        self.pending = 0
        self._idle = []

    def run(self, f, *args, **kwargs):
        """
        Run C{f(*args, **kwargs)} in the thread after every call given
        before.

        @return: a Deferred of its result.
        """
        if self._stopped:
            raise RuntimeError("the lock thread is stopped")
        if not self._pool.started:
            self._pool.start()
        self.pending += 1
        d = deferToThreadPool(self._reactor, self._pool, f, *args, **kwargs)
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self.pending -= 1
        if not self.pending:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def whenIdle(self):
        """
        @return: a Deferred firing once every call given so far finished.
        """
        if not self.pending:
            return succeed(None)
        d = Deferred()
        self._idle.append(d)
        return d

    def stop(self):
        """
        Stop the thread; call it once L{whenIdle} fired (a thread still
        blocked in a call is left to end with the process).
        """
        self._stopped = True
        if self._pool.started and not self.pending:
            self._pool.stop()
