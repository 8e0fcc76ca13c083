# -*- test-case-name: tests.test_hello -*-
"""
The master node: listens for workers over mutual TLS, keeps the registry of
authenticated workers (L{wazuhcluster.master.registry}), and owns the
master's features.

The features are built here, with what each needs passed in: the agent
store (agent info, agent groups, control), nothing else.
"""

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

from wazuhcluster import tls
from wazuhcluster.agentdb import openAgentStore
from wazuhcluster.control import ControlServer, MasterControlHandler
from wazuhcluster.lag import ReactorLagProbe
from wazuhcluster.listening import ListeningService
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.localserver.relay import DaemonRelay
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.master.agent_groups_send import MasterAgentGroups
from wazuhcluster.master.agent_info import MasterAgentInfo
from wazuhcluster.master.agents import MasterAgents
from wazuhcluster.master.connection import MasterConnection
from wazuhcluster.master.integrity_sync import MasterIntegrity
from wazuhcluster.master.keepalive import MasterKeepAlive
from wazuhcluster.master.refusals import RefusalLog
from wazuhcluster.master.registry import WorkerRegistry
from wazuhcluster.metrics import SyncObservers
from wazuhcluster.node import NodeService
from wazuhcluster.standby.peers import standbySessions
from wazuhcluster.standby.service import standbyFor
from wazuhcluster.revokedpeers import masterRevocations, watchLocalIntegrity
from wazuhcluster.storeslot import AgentStoreService


class ConnectionLimiter(WrappingFactory):
    """
    Refuse more than C{limit} simultaneous connections from one address,
    before any TLS work is done for them.
    """

    def __init__(self, wrappedFactory, limit, log):
        """
        @param log: the L{RefusalLog} noting each refusal.
        """
        super().__init__(wrappedFactory)
        self.limit = limit
        self.log = log
        self.perAddress = {}
        self.noisy = False

    def buildProtocol(self, addr):
        count = self.perAddress.get(addr.host, 0)
        if count >= self.limit:
            self.log.note(addr.host, f"Too many connections from {addr.host} "
                                     f"({count + 1}), rejecting")
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


def openLocalStore(master):
    """
    The master's agent store, the one C{agent_store} in C{etc/cluster.json}
    names (C{queue/db/global.db} by default).
    """
    return openAgentStore(master.home, master.items, master.reactor, master.config.node_name,
                          log=master.log.withSubtag("Agent store"))


class MasterService(NodeService):
    """
    The master node.

    @ivar registry: the L{WorkerRegistry} of authenticated workers (and
        standby masters).
    @ivar agentStore: the L{AgentStoreService}.
    @ivar lag: the L{ReactorLagProbe} of this node.
    @ivar syncEvents: the L{SyncObservers} told of every finished sync.
    @ivar standby: the L{wazuhcluster.standby.service.StandbyService} of a
        master candidate (PostgreSQL agent store), else L{None}.
    """

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 runInThread=None, watchFiles=True, store=None, openStore=None,
                 standby=standbyFor):
        """
        @param store: an open agent store to use (and not close) instead of
            opening one at start (tests).
        @param openStore: called with this service at start to open the
            agent store (L{openLocalStore} by default).
        @param standby: called with this service, returns its
            L{wazuhcluster.standby.service.StandbyService} or L{None}.
        """
        super().__init__(home, config, items, identity, reactor, clock, runInThread)
        self.log = ClusterLogger("Master", "Main", namespace="wazuhcluster.master",
                                 node=config.node_name)
        self.standby = None
        self.registry = WorkerRegistry(self)
        self.refusals = RefusalLog(self.log.withTag("Worker"), self.clock)
        self.revocations = masterRevocations(self)
        opener = openStore or openLocalStore
        self.agentStore = AgentStoreService(lambda: opener(self), self.log, injected=store)
        self.agentStore.setServiceParent(self)
        self.agents = MasterAgents(self, self.agentStore)
        self.agents.setServiceParent(self)
        self.lag = ReactorLagProbe(self.clock, log=self.log)
        self.lag.setServiceParent(self)
        self.syncEvents = SyncObservers(self.log)
        self.addFeature(MasterKeepAlive(self))
        self.integrity = self.addFeature(MasterIntegrity(self, watch=watchFiles))
        watchLocalIntegrity(self.revocations, self.integrity.local)
        self.addFeature(MasterAgentInfo(self, self.agentStore))
        self.groups = self.addFeature(MasterAgentGroups(self, self.agentStore))
        self.control = MasterControlHandler(self, self.agents, self.groups)
        self.relay = DaemonRelay(home, self.reactor, self.log.withSubtag("SendSync"))
        self.listener = None
        self.standby = standby(self)
        if self.standby is not None:
            from wazuhcluster.standby.control import RoleControlHandler

            self.standby.setServiceParent(self)
            self.control = RoleControlHandler(self.control, self.standby)

    @property
    def serving(self):
        """
        Whether this master serves workers (it is the active master).
        """
        return self.standby is None or self.standby.serving

    def sessionsFor(self, peer):
        """
        A worker's connection has a session of every feature; a standby
        master's, of keep-alive and integrity only.
        """
        if peer.nodeType == "master":
            return standbySessions(self.features, peer)
        return super().sessionsFor(peer)

    @property
    def workers(self):
        """
        The authenticated worker connections by name.
        """
        return self.registry.workers

    def buildFactory(self):
        """
        The listening factory: per-address limit, then TLS, then AMP.
        """
        tlsFactory = TLSMemoryBIOFactory(
            tls.masterContextFactory(self.identity, self.revocations), False,
            MasterFactory(self))
        tlsFactory.noisy = False
        return ConnectionLimiter(tlsFactory, self.items.master.max_connections_per_address,
                                 self.refusals)

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
        ControlServer(self.home.controlSocket, lambda: MasterLocalHandler(self), self.reactor,
                      log=self.log.withTag("Local Server")).setServiceParent(self)

    def _serving(self, port):
        address = port.getHost()
        self.log.info("Serving on ('{host}', {port})", host=address.host, port=address.port)

    def stopConnections(self):
        """
        Stop listening, drop every worker, wait for all their sessions.
        """
        d = None
        if self.listener is not None and self.listener.running:
            d = self.listener.stopService()
        stopped = self.registry.stopAll()
        if d is not None:
            stopped.addCallback(lambda _: d)
        return stopped
