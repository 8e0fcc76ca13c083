# -*- test-case-name: tests.test_hello,tests.test_stop -*-
"""
What a master and a worker node have in common: their configuration, the
clock and reactor they run on, how they run blocking work, their features
(L{wazuhcluster.session.IFeature}), and a stop that waits.

Stopping a node (SIGTERM, C{stopService}) runs in order: stop accepting or
making connections and drop the current ones, wait until every session of
every connection has stopped (its rounds, thread jobs and disk work
finished or unwound) and the staging directories are clean, then stop the
features (their timers, their running rounds), then the other services in
reverse order of their start; the agent store is closed last, after its
last use.
"""

from twisted.application.service import MultiService, Service
from twisted.internet.defer import maybeDeferred, succeed
from twisted.logger import LogLevel

from wazuhcluster.session import IFeature, SessionGroup
from wazuhcluster.staging import cleanStaging, cleanStagingAreas


class NodeService(MultiService):
    """
    The base of L{wazuhcluster.master.server.MasterService} and
    L{wazuhcluster.worker.client.WorkerService}.

    @ivar runInThread: how blocking work (hashing, tree walks, applying
        files, database work) leaves the reactor thread.
    @ivar clock: the clock of every timer (injectable for tests).
    @ivar features: the L{IFeature} services, in the order they were added.
    """

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 runInThread=None):
        super().__init__()
        if runInThread is None:
            from twisted.internet.threads import deferToThread as runInThread
        if reactor is None:
            from twisted.internet import reactor
        self.runInThread = runInThread
        self.home = home
        self.config = config
        self.items = items
        self.identity = identity
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.features = []

    def addFeature(self, feature):
        """
        Add a feature service (it provides L{IFeature}).
        """
        if not IFeature.providedBy(feature):
            raise TypeError(f"{feature!r} does not provide IFeature")
        self.features.append(feature)
        feature.setServiceParent(self)
        return feature

    def feature(self, name):
        """
        The feature called C{name}.
        """
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def sessionsFor(self, peer):
        """
        A new L{SessionGroup}: one session of every feature for C{peer}.
        """
        return SessionGroup([feature.sessionFor(peer) for feature in self.features],
                            peer.log)

    def cleanStaging(self, peerName=None):
        """
        Empty C{queue/cluster/<peerName>/} in a thread (every staging
        directory when C{peerName} is L{None}: the node starts).

        @return: a Deferred firing when done (never failing: logged).
        """
        if peerName is None:
            d = self.runInThread(cleanStagingAreas, self.home.clusterQueue)
        else:
            d = self.runInThread(cleanStaging, self.home.staging(peerName))
        d.addErrback(lambda f: self.log.failure(
            "Could not clean the staging directory of {peer}", f, level=LogLevel.error,
            peer=peerName or "any peer"))
        return d

    def stopConnections(self):
        """
        Stop accepting or making connections, drop the current ones, and
        wait until every one of their sessions stopped.  Subclasses say how.

        @return: a Deferred.
        """
        return succeed(None)

    def stopService(self):
        """
        Stop in order (see the module docstring).

        @return: a Deferred firing once everything stopped.
        """
        Service.stopService(self)
        d = maybeDeferred(self.stopConnections)
        d.addErrback(self._stopFailed, "the connections")
        features = list(reversed(self.features))
        others = [s for s in reversed(list(self)) if s not in self.features]
        for service in features + others:
            d.addCallback(self._stopChild, service)
        return d

    def _stopChild(self, ignored, service):
        if not service.running:
            return None
        d = maybeDeferred(service.stopService)
        return d.addErrback(self._stopFailed, getattr(service, "name", None) or service)

    def _stopFailed(self, failure, what):
        self.log.failure("Error stopping {what}", failure, level=LogLevel.error,
                         what=str(what))
        return None
