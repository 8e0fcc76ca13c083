# -*- test-case-name: tests.test_keepalive -*-
"""
The master's keep-alive: each worker connection's session records the time
of its worker's keep-alives, and a checker drops workers that stopped
talking.
"""

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from twisted.protocols import amp
from zope.interface import implementer

from wazuhcluster.commands import KeepAlive
from wazuhcluster.health import isoDate
from wazuhcluster.lag import reportedLag
from wazuhcluster.session import IFeature, IFeatureSession


@implementer(IFeatureSession)
class MasterKeepAliveSession(amp.CommandLocator):
    """
    The keep-alives of one worker connection.

    @ivar last: when the last keep-alive (or the hello) arrived.
    @ivar lag: the worker's L{wazuhcluster.lag.LagFigures} as of its last
        keep-alive that reported them, or L{None}.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.peer = peer
        self.last = feature.clock.seconds()
        self.lag = None
        self.locator = self

    @KeepAlive.responder
    def keepAlive(self, lag_max=None, lag_p99=None):
        self.last = self.feature.clock.seconds()
        self.lag = reportedLag(lag_max, lag_p99) or self.lag
        self.peer.log.debug("Keep alive received.", cluster_subtag="Keep alive")
        return {"answer": "keepalive"}

    def start(self):
        self.feature.sessions[self.peer.name] = self

    def stop(self):
        if self.feature.sessions.get(self.peer.name) is self:
            del self.feature.sessions[self.peer.name]
        return succeed(None)

    def health(self):
        return {"last_keep_alive": isoDate(self.last)}


@implementer(IFeature)
class MasterKeepAlive(Service):
    """
    Every C{master.check_worker_lastkeepalive} seconds, disconnect each worker
    whose last keep-alive is older than
    C{master.max_allowed_time_without_keepalive}.

    @ivar sessions: the running sessions by worker name.
    """

    name = "keepalive"

    def __init__(self, master):
        self.master = master
        self.clock = master.clock
        self.log = master.log.withSubtag("Keep alive")
        self.sessions = {}
        self._loop = None

    def sessionFor(self, peer):
        return MasterKeepAliveSession(self, peer)

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.master.items.master.check_worker_lastkeepalive,
                         now=False).addErrback(
            lambda f: self.log.failure("The keep-alive checker stopped", f,
                                       level=LogLevel.error))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self):
        """
        Disconnect every worker silent for too long.
        """
        now = self.clock.seconds()
        limit = self.master.items.master.max_allowed_time_without_keepalive
        for name, session in sorted(self.sessions.items()):
            if now - session.last > limit:
                self.log.error("No keep alives have been received from {name} in the "
                               "last minute. Disconnecting", name=name)
                session.peer.disconnect()
