# -*- test-case-name: tests.test_agent_sync -*-
"""
Where a node's agent features find the agent store
(L{wazuhcluster.agentstore.IAgentStore}): a service that opens it at start
and closes it last, after every feature that used it stopped.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from wazuhcluster.errors import ClusterError


class AgentStoreService(Service):
    """
    Opens the agent store in the background at start; callers wait for it
    with L{get}.

    @ivar store: the open store, or L{None}.
    """

    name = "agent-store"

    def __init__(self, opener, log, injected=None):
        """
        @param opener: called without arguments at start, returns a Deferred
            of the store.
        @param log: where a failure to open is reported.
        @param injected: an already open store to use (and not close)
            instead of calling C{opener}.
        """
        self.opener = opener
        self.log = log
        self.store = None
        self._injected = injected
        self._failure = None
        self._waiters = []
        self._opening = None

    def startService(self):
        super().startService()
        if self._injected is not None:
            self._opened(self._injected)
            return
        self._opening = maybeDeferred(self.opener)
        self._opening.addCallbacks(self._opened, self._openFailed)

    def _opened(self, store):
        self._opening = None
        if not self.running:
            # Stopped while it was opening.
            return None if store is self._injected else maybeDeferred(store.close)
        self.store = store
        self._failure = None
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(store)
        return None

    def _openFailed(self, failure):
        self._opening = None
        self.log.error("Could not open the agent database: {error}",
                       error=failure.getErrorMessage())
        self._fail(failure)
        return None

    def _fail(self, failure):
        self._failure = failure
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)

    def get(self):
        """
        @return: a Deferred firing with the store once it is open (failing if
            it could not be opened or is closed).
        """
        if self.store is not None:
            return succeed(self.store)
        if self._failure is not None:
            return fail(self._failure)
        d = Deferred()
        self._waiters.append(d)
        return d

    def stopService(self):
        """
        Close the store (unless injected); later L{get}s fail.
        """
        super().stopService()
        store, self.store = self.store, None
        self._fail(Failure(ClusterError("The agent database is closed", 2000)))
        if self._opening is not None:
            # _opened closes it once open.
            return self._opening
        if store is not None and store is not self._injected:
            return maybeDeferred(store.close)
        return None
