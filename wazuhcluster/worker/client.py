# -*- test-case-name: tests.test_hello,tests.test_keepalive -*-
"""
The worker node: keeps one permanent, mutually authenticated TLS connection
to the master (C{ClientService} with back-off), says hello on it, and runs
the per-connection tasks while it is up.
"""

import random

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from wazuhcluster import PROTOCOL_VERSION, __version__, tls
from wazuhcluster.commands import Hello
from wazuhcluster.control import ControlServer, WorkerControlHandler
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.node import FeatureResponders, NodeService
from wazuhcluster.worker.features import workerFeatures
from wazuhcluster.worker.keepalive import KeepAliveSender

#: Longest wait between two connection attempts, whatever the back-off.
MAX_RETRY_DELAY = 60.0


@implementer(IHandshakeListener)
class WorkerConnection(FeatureResponders):
    """
    The worker's side of its connection to the master.

    @ivar handshake: fires when the TLS handshake completed, fails if the
        connection is lost before.
    """

    def __init__(self, worker):
        super().__init__()
        self.worker = worker
        self.handshake = Deferred()
        self.masterName = None

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


@implementer(IStreamClientEndpoint)
class _ObservedEndpoint:
    """
    An endpoint that tells the worker why a connection attempt failed.
    """

    def __init__(self, endpoint, onFailure):
        self._endpoint = endpoint
        self._onFailure = onFailure

    def connect(self, factory):
        d = self._endpoint.connect(factory)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure):
        self._onFailure(failure)
        return failure


class WorkerService(NodeService):
    """
    The worker node.

    @ivar connection: the authenticated L{WorkerConnection}, or L{None}.
    @ivar tasks: per-connection tasks, each with C{start(connection)} and
        C{stop()}.
    """

    def __init__(self, home, config, items, identity, reactor=None, clock=None,
                 endpoint=None, jitter=random.random, runInThread=None, watchFiles=True):
        super().__init__(home, config, items, identity, reactor, clock, runInThread,
                         watchFiles)
        reactor = self.reactor
        self.jitter = jitter
        self.connection = None
        self.log = ClusterLogger(f"Worker {config.node_name}", "Main",
                                 namespace="wazuhcluster.worker", node=config.node_name)
        self.keepAlive = KeepAliveSender(self)
        self.tasks = [self.keepAlive]
        self._lastProblem = None
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, config.masterHost, config.port)
        self.clientService = ClientService(
            _ObservedEndpoint(endpoint, self._connectFailed),
            self.buildFactory(),
            retryPolicy=self.retryDelay,
            clock=self.clock,
        )
        self.clientService.setServiceParent(self)
        for makeFeature in workerFeatures():
            self.addFeature(makeFeature(self))

    def addFeature(self, feature):
        """
        Add a feature: a service with C{start(connection)} and C{stop()}
        (run while connected) that may also have C{locatorFor(connection)}
        (its responders on the master connection, or L{None}).
        """
        self.tasks.append(feature)
        super().addFeature(feature)

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
            tls.workerConnectionCreator(self.identity, self.config.masterHost),
            True, factory, clock=self.clock)
        tlsFactory.noisy = False
        return tlsFactory

    def addListeners(self):
        """
        Add the local control socket.
        """
        ControlServer(self.home.controlSocket, WorkerControlHandler(self), self.reactor,
                      log=self.log.withTag("Local Server")).setServiceParent(self)

    # -- connecting ------------------------------------------------------------

    def retryDelay(self, attempt):
        """
        The back-off: C{worker.connection_retry} seconds, growing by half
        each failed attempt up to a minute, plus up to 10% jitter so that
        workers do not all knock at once after a master restart.
        """
        base = self.items.worker.connection_retry
        delay = min(base * 1.5 ** max(attempt - 1, 0), max(base, MAX_RETRY_DELAY))
        delay += delay * 0.1 * self.jitter()
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
        d.addTimeout(timeout, self.clock)
        d.addCallbacks(self._welcomed, self._refused, (connection,), None, (connection,))

    def _sendHello(self, connection):
        config = self.config
        proof = tls.helloProof(config.key, tls.channelBinding(connection.transport),
                               config.name, config.node_name)
        return connection.callRemote(
            Hello,
            cluster_name=config.name,
            node_name=config.node_name,
            node_type="worker",
            version=__version__,
            protocol=PROTOCOL_VERSION,
            proof=proof,
        )

    def _welcomed(self, answer, connection):
        connection.masterName = answer["master_name"]
        connection.locators.extend(self.featureLocators(connection))
        self.connection = connection
        self._cleanStaging(connection.masterName)
        self.log.info("Successfully connected to master.")
        for task in self.tasks:
            task.start(connection)

    def _refused(self, failure, connection):
        if failure.check(TimeoutError):
            problem = "Error 3020 - Timeout sending request: hello"
        else:
            problem = failure.getErrorMessage()
        self.log.error("Could not connect to master: {problem}.", problem=problem)
        self._lastProblem = "closed"
        if connection.transport is not None:
            connection.transport.abortConnection()

    def connectionLost(self, connection, reason):
        """
        The connection to the master is gone: stop its tasks.
        """
        if connection is not self.connection:
            return
        self.connection = None
        for task in self.tasks:
            task.stop()
        self._cleanStaging(connection.masterName)
        self._lastProblem = "closed"
        if reason.check(ConnectionDone):
            self.log.info("The master closed the connection")
        else:
            self.log.error("Connection with the master lost: {reason}",
                           reason=reason.getErrorMessage())

    def _cleanStaging(self, masterName):
        if not masterName:
            return
        staging = self.home.staging(masterName)
        if staging.isdir():
            for child in staging.children():
                child.remove()
