# -*- test-case-name: tests.test_hello,tests.test_keepalive -*-
"""
The worker node: keeps one permanent, mutually authenticated TLS connection
to the master (C{ClientService} with Twisted's C{backoffPolicy}), says hello
on it, and runs one session of each feature while it is up.

A lost connection's sessions are stopped, and the staging directory is
cleaned, before the worker dials again: the next connection never races
the last one's work.
"""

import random

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from wazuhcluster import PROTOCOL_VERSION, __version__, tls
from wazuhcluster.agentdb import openAgentStore
from wazuhcluster.commands import Hello, Ping
from wazuhcluster.connection import ClusterConnection, shown
from wazuhcluster.control import ControlServer
from wazuhcluster.lag import ReactorLagProbe
from wazuhcluster.localserver.worker import workerHandlers
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.ossecchecks import isNodeName
from wazuhcluster.node import NodeService
from wazuhcluster.standby.candidates import (
    CandidateConnectionCreator,
    CandidateEndpoint,
    MasterCandidates,
)
from wazuhcluster.standby.role import activeHostIn
from wazuhcluster.revokedpeers import workerRevocations
from wazuhcluster.storeslot import AgentStoreService
from wazuhcluster.worker.agent_groups_recv import WorkerAgentGroups
from wazuhcluster.worker.agent_info import WorkerAgentInfo
from wazuhcluster.worker.agents import WorkerAgents
from wazuhcluster.worker.integrity_sync import WorkerIntegrity
from wazuhcluster.worker.keepalive import WorkerKeepAlive
from wazuhcluster.worker.tlsfailure import describeConnectFailure


@implementer(IHandshakeListener)
class WorkerConnection(ClusterConnection):
    """
    The worker's side of its connection to the master.

    @ivar handshake: fires when the TLS handshake completed, fails if the
        connection is lost before.
    """

    def __init__(self, worker):
        super().__init__(worker.log)
        self.worker = worker
        self.handshake = Deferred()

    def connectionMade(self):
        super().connectionMade()
        tls.setNoDelay(self.transport)
        self.worker.sayHello(self)

    def handshakeCompleted(self):
        if not self.handshake.called:
            self.handshake.callback(None)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if not self.handshake.called:
            self.handshake.errback(reason)
        self.worker.connectionLost(self, reason)

    @Ping.responder
    def ping(self):
        return {}


@implementer(IStreamClientEndpoint)
class _GatedEndpoint:
    """
    An endpoint that dials only once the worker is idle (the last
    connection's sessions stopped and its staging directory is clean), and
    tells the worker why an attempt failed.
    """

    def __init__(self, endpoint, whenIdle, onFailure):
        self._endpoint = endpoint
        self._whenIdle = whenIdle
        self._onFailure = onFailure

    def connect(self, factory):
        d = self._whenIdle()
        d.addCallback(lambda _: self._endpoint.connect(factory))
        d.addErrback(self._failed)
        return d

    def _failed(self, failure):
        self._onFailure(failure)
        return failure


def openLocalStore(worker):
    """
    The worker's agent store, the one C{agent_store} in C{etc/cluster.json}
    names (C{queue/db/global.db} by default).
    """
    return openAgentStore(worker.home, worker.items, worker.reactor, worker.config.node_name,
                          log=worker.log.withSubtag("Agent store"))


class WorkerService(NodeService):
    """
    The worker node.

    @ivar connection: the authenticated L{WorkerConnection}, or L{None}.
    @ivar lag: the L{ReactorLagProbe} of this node (reported in keep-alives).
    @ivar candidates: the L{MasterCandidates} of C{<nodes>}, tried in order.
    """

    #: The node type this node gives in its hello (a standby master's link
    #: to the active master says C{master}).
    helloNodeType = "worker"

    #: The first tag of this node's log lines.
    logKind = "Worker"

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 endpoint=None, jitter=random.random, runInThread=None, store=None,
                 openStore=None, durable=True, candidates=None):
        """
        @param candidates: the master candidates to dial (those of
            C{<nodes>} by default).
        """
        super().__init__(home, config, items, identity, reactor, clock, runInThread)
        self.jitter = jitter
        self.connection = None
        self.candidates = candidates or MasterCandidates(config.nodes)
        self.log = ClusterLogger(f"{self.logKind} {config.node_name}", "Main",
                                 namespace="wazuhcluster.worker", node=config.node_name)
        self._lastProblem = None
        self._idle = succeed(None)
        retry = items.worker.connection_retry
        self._policy = backoffPolicy(initialDelay=min(1.0, retry), maxDelay=retry,
                                     jitter=lambda: self.jitter() * min(1.0, retry / 10))
        self.revocations = workerRevocations(self)
        if endpoint is None:
            endpoint = CandidateEndpoint(self.reactor, self.candidates, config.port)
        self.clientService = ClientService(
            _GatedEndpoint(endpoint, self.whenIdle, self._connectFailed),
            self.buildFactory(),
            retryPolicy=self.retryDelay,
            clock=self.clock,
        )
        self.addFeatures(store, openStore, durable)
        self.clientService.setServiceParent(self)

    def addFeatures(self, store, openStore, durable):
        """
        Add the agent store and the worker's features (see
        L{wazuhcluster.standby.link} for a node with fewer).
        """
        opener = openStore or openLocalStore
        self.agentStore = AgentStoreService(lambda: opener(self), self.log, injected=store)
        self.agentStore.setServiceParent(self)
        self.agents = WorkerAgents(self, self.agentStore)
        self.agents.setServiceParent(self)
        self.lag = ReactorLagProbe(self.clock, log=self.log)
        self.lag.setServiceParent(self)
        self.addFeature(WorkerKeepAlive(self, lag=self.lag))
        self.integrity = self.addFeature(WorkerIntegrity(
            self, clientKeysChanged=self.agents.clientKeysChanged, durable=durable,
            revocationListChanged=self.revocations.reload))
        self.agentInfo = self.addFeature(WorkerAgentInfo(self, self.agentStore))
        self.addFeature(WorkerAgentGroups(self, self.agentStore))

    def buildFactory(self):
        """
        TLS (verifying the master's certificate against the cluster CA and
        the configured master host), then AMP.

        TLS is put in the factory rather than in the endpoint so that
        C{ClientService}'s protocol proxy sits outside TLS and the TLS
        layer can tell L{WorkerConnection} when the handshake completed.
        """
        factory = Factory.forProtocol(lambda: WorkerConnection(self))
        factory.noisy = False
        tlsFactory = TLSMemoryBIOFactory(
            CandidateConnectionCreator(self.identity, self.candidates, self.revocations),
            True, factory, clock=self.clock)
        tlsFactory.noisy = False
        return tlsFactory

    def startService(self):
        # Nothing is in progress before the first connection, but a worker
        # killed in the middle of a sync left its staged parts behind: the
        # staging directories are emptied before the first dial.
        self._idle = self.cleanStaging()
        super().startService()

    def addListeners(self):
        """
        Add the local control socket.
        """
        ControlServer(self.home.controlSocket, workerHandlers(self), self.reactor,
                      log=self.log.withTag("Local Server")).setServiceParent(self)

    # -- connecting ------------------------------------------------------------

    def whenIdle(self):
        """
        @return: a Deferred firing once the last connection's sessions have
            stopped and its staging directory is clean.
        """
        follower = Deferred()
        self._idle.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    def retryDelay(self, attempt):
        """
        The back-off: Twisted's C{backoffPolicy} from about a second, growing
        by half each failed attempt, never above C{worker.connection_retry},
        with jitter so that workers do not all knock at once after a master
        restart.
        """
        delay = min(self.candidates.retryDelay(attempt, self._policy),
                    self.items.worker.connection_retry)
        problem, self._lastProblem = self._lastProblem, None
        if problem == "refused":
            self.log.error("Could not connect to master. Trying again in {delay:.3g} seconds.",
                           delay=delay)
        elif problem is not None and problem != "closed":
            self.log.error("Could not connect to master: {problem}. Trying again in "
                           "{delay:.3g} seconds.", problem=problem, delay=delay)
        else:
            self.log.info("The connection has been closed. Reconnecting in {delay:.3g} seconds.",
                          delay=delay)
        return delay

    def _connectFailed(self, failure):
        if failure.check(ConnectionRefusedError):
            self._lastProblem = "refused"
        else:
            self._lastProblem = failure.getErrorMessage()
        self.candidates.failed()

    def sayHello(self, connection):
        """
        Say hello on a new connection once TLS is up; close it if the master
        refuses or does not answer in time.

        (Not C{ClientService}'s C{prepareConnection}: a connection lost while
        that runs, e.g. a refused TLS handshake, breaks C{ClientService}'s
        state machine.)
        """
        timeout = self.items.communication.timeout_cluster_request
        d = connection.handshake
        d.addCallback(lambda _: self._sendHello(connection))
        if timeout:
            d.addTimeout(timeout, self.clock)
        d.addCallbacks(self._welcomed, self._refused, (connection,), None, (connection,))

    def _sendHello(self, connection):
        config = self.config
        role = "worker" if self.helloNodeType == "worker" else "standby"
        proof = tls.helloProof(config.key, tls.channelBinding(connection.transport),
                               config.name, config.node_name, role=role)
        return connection.callRemote(
            Hello, cluster_name=config.name, node_name=config.node_name,
            node_type=self.helloNodeType, version=__version__, protocol=PROTOCOL_VERSION,
            proof=proof)

    def _welcomed(self, answer, connection):
        if connection.transport is None or connection._closing:
            return
        master = answer["master_name"]
        if not isNodeName(master):
            self.log.error("Could not connect to master: it gave an invalid node name "
                           "{name}.", name=shown(master))
            self._lastProblem = "closed"
            self.candidates.failed()
            connection.disconnect()
            return
        binding = tls.channelBinding(connection.transport)
        if not tls.verifyHelloProof(answer["proof"], self.config.key, binding,
                                    self.config.name, master, role="master"):
            self.log.error("Could not connect to master: it did not prove the cluster "
                           "key (is it a master of cluster {cluster}?).",
                           cluster=self.config.name)
            self._lastProblem = "closed"
            self.candidates.failed()
            connection.disconnect()
            return
        connection.name = master
        connection.sessions = self.sessionsFor(connection)
        self.connection = connection
        self.candidates.welcomed()
        self.log.info("Successfully connected to master.")
        connection.sessions.start()

    def _refused(self, failure, connection):
        if failure.check(TimeoutError):
            problem = "Error 3020 - Timeout sending request: hello"
        else:
            problem = describeConnectFailure(failure, self.candidates.current)
        self.log.error("Could not connect to master: {problem}.", problem=problem)
        self._lastProblem = "closed"
        self.candidates.failed(activeHostIn(problem))
        if connection.transport is not None:
            connection.disconnect()

    def connectionLost(self, connection, reason):
        """
        The connection to the master is gone: stop its sessions, then clean
        the staging directory; only then may the worker dial again.
        """
        if connection is not self.connection:
            return
        self.connection = None
        self._lastProblem = "closed"
        if not self.running:
            self.log.info("Closed the connection to the master (the node stops).")
        elif reason.check(ConnectionDone):
            self.log.info("The master closed the connection")
        else:
            self.log.warn("The connection to the master was lost: {reason}",
                          reason=reason.getErrorMessage())
        stopped = connection.sessions.stop()
        stopped.addCallback(lambda _: self.cleanStaging(connection.name))
        self._idle = stopped

    def stopConnections(self):
        """
        Stop dialling, drop the connection, wait for its sessions.
        """
        d = self.clientService.stopService()
        d.addCallback(lambda _: self.whenIdle())
        return d
