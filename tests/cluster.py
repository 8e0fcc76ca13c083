"""
An in-memory cluster for deterministic tests: a master and workers on one
L{Clock}, joined by real TLS handshakes over iosim transports.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test import iosim
from zope.interface import implementer

from tests.certs import makeAuthority, makeNodeSsl
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.home import NodeHome
from wazuhcluster.master.server import MasterFactory, MasterService
from wazuhcluster.ossecconf import ClusterConfig
from wazuhcluster.tls import (
    loadNodeIdentity,
    masterContextFactory,
    workerConnectionCreator,
)
from wazuhcluster.worker.client import WorkerService

KEY = "0123456789abcdef0123456789abcdef"
MASTER_HOST = "master.example"


class Link:
    """
    One in-memory connection: its pump, whether it still carries bytes.
    """

    def __init__(self, pump, clientTLS, serverTLS):
        self.pump = pump
        self.clientTLS = clientTLS
        self.serverTLS = serverTLS
        self.partitioned = False
        #: Bytes written on the wire (TLS records included) by each side.
        self.sent = {"worker": 0, "master": 0}
        self._count(pump.clientIO, "worker")
        self._count(pump.serverIO, "master")

    def _count(self, transport, side):
        write = transport.write

        def counted(data):
            self.sent[side] += len(data)
            return write(data)

        transport.write = counted

    @property
    def total(self):
        """
        Every byte this link carried, both ways.
        """
        return self.sent["worker"] + self.sent["master"]


@implementer(IStreamClientEndpoint)
class InMemoryEndpoint:
    """
    A worker's endpoint to the in-memory master.
    """

    def __init__(self, network, clientCreator):
        self.network = network
        self.clientCreator = clientCreator

    def connect(self, factory):
        if not self.network.masterUp:
            return fail(ConnectionRefusedError("Connection was refused by other side"))
        return succeed(self.network.join(factory))


class Network:
    """
    Every link of the in-memory cluster, pumped together.
    """

    def __init__(self, clock, masterFactory, masterContext):
        self.clock = clock
        self.masterFactory = masterFactory
        self.masterContext = masterContext
        self.links = []
        self.masterUp = True
        self._ports = 40000

    def join(self, clientFactory):
        """
        Connect a protocol of C{clientFactory} (which includes the client's
        TLS layer) to the master.
        """
        self._ports += 1
        serverTLS = TLSMemoryBIOFactory(
            self.masterContext, False, self.masterFactory, clock=self.clock
        ).buildProtocol(None)
        clientTLS = clientFactory.buildProtocol(None)
        workerAddress = IPv4Address("TCP", "10.0.0.2", self._ports)
        masterAddress = IPv4Address("TCP", "10.0.0.1", 1516)
        serverTransport = iosim.FakeTransport(serverTLS, True, masterAddress, workerAddress)
        clientTransport = iosim.FakeTransport(clientTLS, False, workerAddress, masterAddress)
        pump = iosim.connect(serverTLS, serverTransport, clientTLS, clientTransport,
                             greet=False, clock=self.clock)
        link = Link(pump, clientTLS, serverTLS)
        self.links.append(link)
        return clientTLS

    def flush(self, rounds=50):
        """
        Move bytes on every unpartitioned link until nothing moves.
        """
        for _ in range(rounds):
            moved = False
            for link in list(self.links):
                if not link.partitioned:
                    moved = link.pump.pump() or moved
                    continue
                # A partitioned link carries nothing, but each side still
                # notices its own close at once (as a real socket would).
                for transport in (link.pump.clientIO, link.pump.serverIO):
                    if transport.disconnecting and not transport.disconnected:
                        transport.disconnected = True
                        transport.reportDisconnect()
                        moved = True
            if not moved:
                break

    def advance(self, seconds, step=1.0):
        """
        Let C{seconds} pass in steps, flushing the network at each step.
        """
        self.flush()
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            self.flush()


def runInline(function, *args, **kwargs):
    """
    A synchronous stand-in for C{deferToThread}: deterministic tests run the
    blocking work at once.
    """
    return maybeDeferred(function, *args, **kwargs)


def makeConfig(nodeName, nodeType, **overrides):
    values = dict(name="wazuh", node_name=nodeName, node_type=nodeType, key=KEY,
                  port=1516, bind_addr="0.0.0.0", nodes=(MASTER_HOST,))
    values.update(overrides)
    return ClusterConfig(**values)


def writeIntervals(home, **sections):
    """
    Write C{etc/cluster.json} interval overrides into C{home}.
    """
    home.clusterJsonOverrides.setContent(
        json.dumps({"intervals": sections}).encode("utf-8")
    )


class InMemoryCluster:
    """
    A master and any number of workers for one test.
    """

    def __init__(self, testCase, intervals=None):
        self.testCase = testCase
        self.tmp = FilePath(testCase.mktemp())
        self.tmp.makedirs()
        self.caDir = makeAuthority(self.tmp)
        self.clock = Clock()
        self.intervals = intervals or {}
        self.masterHome = self.makeHome("master", hosts=(MASTER_HOST,), role="master")
        self.masterStore = self.blockingStore(self.masterHome, "master")
        self.master = MasterService(
            self.masterHome, makeConfig("master", "master"), self.itemsFor(self.masterHome),
            loadNodeIdentity(self.masterHome.sslDir), reactor=self.clock, clock=self.clock,
            runInThread=runInline, watchFiles=False, store=self.masterStore,
        )
        self.network = Network(
            self.clock, MasterFactory(self.master),
            masterContextFactory(self.master.identity, self.master.revocations),
        )
        self.master.startService()
        testCase.addCleanup(self.stop)
        self.workers = {}
        self.endpoints = {}

    def connectBare(self, protocol, workerName):
        """
        Connect C{protocol} to the master over TLS with C{workerName}'s
        certificate (a hand-driven peer); return the L{Link}.
        """
        from twisted.internet.protocol import Factory

        self.network.join(TLSMemoryBIOFactory(
            self.endpoints[workerName].clientCreator, True,
            Factory.forProtocol(lambda: protocol), clock=self.clock))
        self.network.flush()
        return self.network.links[-1]

    def blockingStore(self, home, name):
        """
        The node's agent database opened for synchronous use: on a Clock
        there are no threads, so every store call has fired when it returns.
        Closed when the test ends.
        """
        store = AgentDatabase.openBlocking(home.globalDb, managerName=name)
        self.testCase.addCleanup(store.close)
        return store

    def makeHome(self, name, hosts=(), caDir=None, role="worker"):
        home = NodeHome(self.tmp.child(name))
        home.createLayout()
        makeNodeSsl(caDir or self.caDir, home, name, hosts=hosts, role=role)
        if self.intervals:
            writeIntervals(home, **self.intervals)
        return home

    def itemsFor(self, home):
        return loadClusterItems(home)

    def addWorker(self, nodeName, start=True, caDir=None, certName=None, masterHost=MASTER_HOST,
                  runInThread=runInline, store=None, openStore=None, certRole="worker",
                  **configOverrides):
        """
        Create worker C{nodeName} (certificate for C{certName}, default
        C{nodeName}, of role C{certRole}: L{None} for a certificate made
        before roles) and start it.  Its blocking work runs inline, or in real
        threads with C{runInThread=deferToThread} (drive such a cluster
        with L{pumpUntil}).
        """
        name = nodeName
        home = self.makeHome(certName or name, caDir=caDir, role=certRole)
        identity = loadNodeIdentity(home.sslDir)
        config = makeConfig(name, "worker", nodes=(masterHost,), **configOverrides)
        endpoint = InMemoryEndpoint(self.network, workerConnectionCreator(identity, masterHost))
        worker = WorkerService(home, config, self.itemsFor(home), identity,
                               reactor=self.clock, clock=self.clock, endpoint=endpoint,
                               jitter=lambda: 0.0, runInThread=runInThread,
                               store=(self.blockingStore(home, name)
                                      if store is None and openStore is None else store),
                               openStore=openStore, durable=False)
        self.workers[name] = worker
        self.endpoints[name] = endpoint
        if start:
            worker.startService()
            self.network.flush()
        return worker

    def stop(self):
        for worker in self.workers.values():
            if worker.running:
                worker.stopService()
        if self.master.running:
            self.master.stopService()
        self.network.flush()


@inlineCallbacks
def pumpUntil(cluster, predicate, timeout=30.0, step=0.05):
    """
    Move the in-memory cluster on (bytes, then C{step} seconds of its clock)
    while letting the real reactor deliver the results of real threads,
    until C{predicate()} is true.

    @return: a Deferred firing with whether it became true before
        C{timeout} seconds of real time.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        cluster.network.flush()
        if predicate():
            return True
        cluster.clock.advance(step)
        yield deferLater(reactor, 0.005, lambda: None)
    return predicate()
