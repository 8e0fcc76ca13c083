# -*- test-case-name: tests.test_hello -*-
"""
What a master and a worker node have in common: their configuration, the
clock and reactor they run on, how they run blocking work, and their
features.
"""

from twisted.application.service import MultiService
from twisted.protocols import amp


class NodeService(MultiService):
    """
    The base of L{wazuhcluster.master.server.MasterService} and
    L{wazuhcluster.worker.client.WorkerService}.

    @ivar runInThread: how blocking work (hashing, tree walks, applying
        files, database work) leaves the reactor thread; tests inject a
        synchronous one.
    @ivar watchFiles: whether features may watch files with inotify.
    @ivar clock: the clock of every timer (injectable for tests).
    @ivar features: the feature services, in the order they were added.
    """

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 runInThread=None, watchFiles=True):
        super().__init__()
        if runInThread is None:
            from twisted.internet.threads import deferToThread as runInThread
        if reactor is None:
            from twisted.internet import reactor
        self.runInThread = runInThread
        self.watchFiles = watchFiles
        self.home = home
        self.config = config
        self.items = items
        self.identity = identity
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.features = []

    def addFeature(self, feature):
        """
        Add a feature service; subclasses say which hooks it may have.
        """
        self.features.append(feature)
        feature.setServiceParent(self)

    def featureLocators(self, connection):
        """
        The responders of every feature for C{connection} (from their
        optional C{locatorFor(connection)}).
        """
        locators = []
        for feature in self.features:
            locatorFor = getattr(feature, "locatorFor", None)
            locator = locatorFor(connection) if locatorFor is not None else None
            if locator is not None:
                locators.append(locator)
        return locators


class FeatureResponders(amp.AMP):
    """
    An AMP connection whose commands are answered by its own responders,
    then by its features' locators (filled in once the peer is
    authenticated).
    """

    def __init__(self):
        super().__init__()
        self.locators = []

    def locateResponder(self, name):
        responder = super().locateResponder(name)
        if responder is None:
            for locator in self.locators:
                responder = locator.locateResponder(name)
                if responder is not None:
                    break
        return responder
