# -*- test-case-name: tests.test_hello -*-
"""
The master node: listens for workers over mutual TLS, keeps the registry of
authenticated workers, and owns the master-side services.
"""

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from wazuhcluster import tls
from wazuhcluster.control import ControlServer, MasterControlHandler
from wazuhcluster.listening import ListeningService
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.master.connection import MasterConnection
from wazuhcluster.master.features import masterFeatures
from wazuhcluster.master.keepalive import KeepAliveChecker
from wazuhcluster.node import NodeService


class ConnectionLimiter(WrappingFactory):
    """
    Refuse more than C{limit} simultaneous connections from one address,
    before any TLS work is done for them.
    """

    def __init__(self, wrappedFactory, limit, log):
        super().__init__(wrappedFactory)
        self.limit = limit
        self.log = log
        self.perAddress = {}
        self.noisy = False

    def buildProtocol(self, addr):
        count = self.perAddress.get(addr.host, 0)
        if count >= self.limit:
            self.log.warn(
                "Too many connections from {host} ({count}), rejecting.",
                host=addr.host,
                count=count + 1,
            )
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.perAddress[addr.host] = count + 1
            protocol._limiterHost = addr.host
        return protocol

    def unregisterProtocol(self, protocol):
        super().unregisterProtocol(protocol)
        host = getattr(protocol, "_limiterHost", None)
        if host in self.perAddress:
            self.perAddress[host] -= 1
            if not self.perAddress[host]:
                del self.perAddress[host]


class MasterFactory(ServerFactory):
    """
    Builds a L{MasterConnection} for each worker connection.
    """

    noisy = False

    def __init__(self, master):
        self.master = master

    def buildProtocol(self, addr):
        return MasterConnection(self.master)


class MasterService(NodeService):
    """
    The master node.

    @ivar workers: authenticated worker connections by node name.
    @ivar clock: the clock of every timer (injectable for tests).
    """

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 runInThread=None, watchFiles=True):
        super().__init__(home, config, items, identity, reactor, clock, runInThread,
                         watchFiles)
        self.workers = {}
        self.log = ClusterLogger("Master", "Main", namespace="wazuhcluster.master",
                                 node=config.node_name)
        self.control = MasterControlHandler(self)
        self.listener = None
        self.agents = None
        KeepAliveChecker(self).setServiceParent(self)
        for makeFeature in masterFeatures():
            self.addFeature(makeFeature(self))

    def addFeature(self, feature):
        """
        Add a feature: a service that may also have C{locatorFor(connection)}
        (its responders on a worker connection, or L{None}),
        C{workerConnected(connection)} and C{workerDisconnected(connection)}.
        """
        super().addFeature(feature)

    def buildFactory(self):
        """
        The listening factory: per-address limit, then TLS, then AMP.
        """
        tlsFactory = TLSMemoryBIOFactory(
            tls.masterContextFactory(self.identity), False, MasterFactory(self)
        )
        tlsFactory.noisy = False
        return ConnectionLimiter(
            tlsFactory,
            self.items.master.max_connections_per_address,
            self.log,
        )

    def addListeners(self):
        """
        Add the cluster listener and the local control socket (not done in
        C{__init__} so that in-memory tests can run without them).
        """
        bind = self.config.bind_addr
        endpointType = TCP6ServerEndpoint if ":" in bind else TCP4ServerEndpoint
        endpoint = endpointType(self.reactor, self.config.port, interface=bind)
        self.listener = ListeningService(endpoint, self.buildFactory(), self._serving,
                                         log=self.log)
        self.listener.setServiceParent(self)
        ControlServer(self.home.controlSocket, self.control, self.reactor,
                      log=self.log.withTag("Local Server")).setServiceParent(self)

    def _serving(self, port):
        address = port.getHost()
        self.log.info("Serving on ('{host}', {port})", host=address.host, port=address.port)

    # -- registry ------------------------------------------------------------

    def workerConnected(self, connection):
        """
        Register an authenticated worker, replacing any older connection that
        proved the same identity.
        """
        name = connection.name
        previous = self.workers.get(name)
        if previous is not None and previous is not connection:
            connection.log.warn(
                "Replacing the previous connection of {name} from {peer}.",
                name=name,
                peer=previous.peerAddress,
            )
            previous.replaced = True
            previous.disconnect()
        self.workers[name] = connection
        connection.status.last_keep_alive = self.clock.seconds()
        self._cleanStaging(name)
        connection.log.info("Worker {name} connected from {peer}.", name=name,
                            peer=connection.peerAddress)
        connection.locators.extend(self.featureLocators(connection))
        for feature in self.features:
            connected = getattr(feature, "workerConnected", None)
            if connected is not None:
                connected(connection)

    def workerDisconnected(self, connection, reason):
        """
        Forget a worker connection that closed (unless it was replaced).
        """
        if self.workers.get(connection.name) is connection:
            del self.workers[connection.name]
            self._cleanStaging(connection.name)
        for feature in self.features:
            disconnected = getattr(feature, "workerDisconnected", None)
            if disconnected is not None:
                disconnected(connection)
        connection.log.info("Cancelling pending tasks.")
        connection.log.info("Worker {name} disconnected.", name=connection.name)

    def _cleanStaging(self, name):
        staging = self.home.staging(name)
        if staging.isdir():
            for child in staging.children():
                child.remove()

    # -- agents (answered by the agents feature when it is installed) ---------

    def activeAgentCounts(self):
        """
        Active agents per node name.
        """
        if self.agents is None:
            return {}
        return self.agents.activeAgentCounts()

    def listAgents(self, arguments):
        """
        The agent list for C{control -a}.
        """
        if self.agents is None:
            return {"agents": []}
        return self.agents.listAgents(arguments)
