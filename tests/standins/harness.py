# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
Stand-ins and the project's clients wired together for tests: in memory
(a L{Clock} and L{MemoryNetwork}: deterministic) or on real UNIX sockets
under a short temporary home (the real reactor).
"""

import os
import shutil
import tempfile

from twisted.internet.defer import gatherResults, inlineCallbacks

from tests.standins.authd import AuthdStandIn
from tests.standins.memory import MemoryNetwork
from tests.standins.wazuhdb import WazuhDBStandIn
from wazuhcluster.home import NodeHome
from wazuhcluster.wazuhdb.authd import AuthdClient
from wazuhcluster.wazuhdb.classic import WazuhDBClient
from wazuhcluster.wazuhdb.httpapi import WazuhDBHTTPClient


class MemoryStandIns:
    """
    wazuh-db and authd stand-ins reached through memory connections.

    @ivar network: the L{MemoryNetwork}; C{network.flush()} moves bytes.
    """

    def __init__(self, clock, home=None, managerName="wazuh-manager", **wdbOptions):
        self.clock = clock
        self.home = home
        self.network = MemoryNetwork(clock)
        self.wazuhdb = WazuhDBStandIn(clock=clock, **wdbOptions)
        self.classicFactory = self.wazuhdb.classicFactory()
        self.httpFactory = self.wazuhdb.httpFactory()
        self.authd = None
        if home is not None:
            self.authd = AuthdStandIn(home, self.wazuhdb.model.execute, clock, managerName)
            self.authdFactory = self.authd.factory()

    def classicClient(self, **kwargs):
        return WazuhDBClient(self.network.endpoint(self.classicFactory), self.clock, **kwargs)

    def httpClient(self, **kwargs):
        return WazuhDBHTTPClient(self.network.endpoint(self.httpFactory), self.clock, **kwargs)

    def authdClient(self, **kwargs):
        return AuthdClient(self.network.endpoint(self.authdFactory), self.clock, **kwargs)

    def stopWazuhDB(self):
        """
        Refuse connections to wazuh-db (both sockets), and drop those open.
        """
        self.network.refusing.update([self.classicFactory, self.httpFactory])
        self.network.disconnectAll()

    def startWazuhDB(self):
        self.network.refusing.difference_update([self.classicFactory, self.httpFactory])

    def settle(self, d):
        """
        Flush the network and return C{d}'s result (C{d} must have fired).
        """
        self.network.flush()
        return d


def shortHome(testCase):
    """
    A fresh home under /tmp, short enough for UNIX socket paths, removed
    at cleanup.

    @rtype: L{NodeHome}
    """
    path = tempfile.mkdtemp(prefix="wz", dir="/tmp")
    testCase.addCleanup(shutil.rmtree, path, True)
    for relpath in ("etc/shared/default", "queue/db", "queue/sockets", "queue/cluster"):
        os.makedirs(os.path.join(path, relpath), exist_ok=True)
    return NodeHome.fromPath(path)


class SocketStandIns:
    """
    wazuh-db and authd stand-ins listening on the UNIX sockets of a home,
    with the real reactor.
    """

    def __init__(self, reactor, home, managerName="wazuh-manager", **wdbOptions):
        from tests.standins.authd import socketWdb

        self.reactor = reactor
        self.home = home
        self.wazuhdb = WazuhDBStandIn(clock=reactor, **wdbOptions)
        wdb = socketWdb(reactor, home.child("queue/db/wdb").path)
        self.authd = AuthdStandIn(home.root.path, wdb, reactor, managerName)

    def start(self):
        return gatherResults([self.wazuhdb.listen(self.reactor, self.home.root.path),
                              self.authd.listen(self.reactor, self.home.root.path)],
                             consumeErrors=True)

    @inlineCallbacks
    def stop(self):
        yield self.authd.stop()
        yield self.wazuhdb.stop()
