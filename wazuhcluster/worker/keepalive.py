# -*- test-case-name: tests.test_keepalive -*-
"""
The worker's keep-alive: proves the permanent connection is alive, and drops
it after too many failed attempts so the worker reconnects.
"""

from twisted.application.service import Service
from twisted.internet.defer import TimeoutError, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from zope.interface import implementer

from wazuhcluster.commands import KeepAlive
from wazuhcluster.session import IFeature, IFeatureSession


@implementer(IFeatureSession)
class WorkerKeepAliveSession:
    """
    Sends L{KeepAlive} every C{worker.keep_alive} seconds on one connection.

    @ivar failures: consecutive failed keep-alives on this connection.
    """

    locator = None

    def __init__(self, feature, peer):
        self.feature = feature
        self.peer = peer
        self.failures = 0
        self.log = feature.worker.log.withSubtag("Keep Alive")
        self._loop = None
        self._pending = None

    def start(self):
        self._loop = LoopingCall(self.send)
        self._loop.clock = self.feature.worker.clock
        self._loop.start(self.feature.worker.items.worker.keep_alive, now=False) \
            .addErrback(lambda f: self.log.failure("The keep-alive loop stopped", f,
                                                   level=LogLevel.error))
        self.feature.current = self

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.feature.current is self:
            self.feature.current = None
        return succeed(None)

    def health(self):
        return {}

    def send(self):
        """
        Send one keep-alive and account for its outcome; never fails.
        """
        worker = self.feature.worker
        lag = self.feature.lag
        d = self.peer.callRemote(KeepAlive, **(lag.keepAliveArguments() if lag else {}))
        d.addTimeout(worker.items.communication.timeout_cluster_request, worker.clock)
        d.addCallbacks(self._succeeded, self._failed)
        return d

    def _succeeded(self, answer):
        self.failures = 0
        self.log.info("Successful response from master: {answer}", answer=answer["answer"])

    def _failed(self, failure):
        if self._loop is None:
            return None
        self.failures += 1
        if failure.check(TimeoutError):
            error = "Error 3020 - Timeout sending request: keepalive"
        else:
            error = failure.getErrorMessage()
        self.log.error("Error sending keep alive: {error}", error=error)
        if self.failures >= self.feature.worker.items.worker.max_failed_keepalive_attempts:
            self.log.error("Maximum number of failed keep alives reached. Disconnecting.")
            self.stop()
            self.peer.disconnect()
        return None


@implementer(IFeature)
class WorkerKeepAlive(Service):
    """
    The worker's keep-alive feature.

    @ivar current: the session of the current connection, or L{None}.
    """

    name = "keepalive"

    def __init__(self, worker, lag=None):
        """
        @param lag: the worker's L{wazuhcluster.lag.ReactorLagProbe}, whose
            figures each keep-alive reports.
        """
        self.worker = worker
        self.lag = lag
        self.current = None

    def sessionFor(self, peer):
        return WorkerKeepAliveSession(self, peer)
