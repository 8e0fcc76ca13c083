"""
Several master candidates and their workers in memory, on one L{Clock},
joined by real TLS handshakes over iosim transports, with the PostgreSQL
lock played by L{MemoryLockServer}: a hand-written stand-in with failure
knobs (the real lock session is tested against a real server in
C{tests.test_standby_lock}).
"""

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.test import iosim
from zope.interface import implementer

from tests.certs import makeAuthority, makeNodeSsl
from tests.cluster import Link, makeConfig, runInline, writeIntervals
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.home import NodeHome
from wazuhcluster.master.server import MasterFactory, MasterService
from wazuhcluster.standby.candidates import CandidateEndpoint, MasterCandidates
from wazuhcluster.standby.locksession import ILockSession, LockAttempt, LockError, LockLost
from wazuhcluster.standby.role import ActiveMaster
from wazuhcluster.standby.service import StandbyService
from wazuhcluster.tls import loadNodeIdentity, masterContextFactory
from wazuhcluster.worker.client import WorkerService

#: Short lock intervals for the tests.
MASTERS = {"lock_check_interval": 1, "lock_check_timeout": 2, "lock_poll_interval": 1,
           "switchover_grace": 10}

INTERVALS = {
    "worker": {"keep_alive": 5, "connection_retry": 2},
}


class MemoryLockServer:
    """
    What the PostgreSQL server holds for one cluster: who holds the lock,
    the masters row, a switchover's reservation.

    @ivar holder: the L{MemoryLockSession} holding the lock, or L{None}.
    @ivar row: the L{ActiveMaster} the row names, or L{None}.
    """

    def __init__(self, clock):
        self.clock = clock
        self.holder = None
        self.row = None
        self.successor = None
        self.successorUntil = 0

    def session(self, name, host):
        return MemoryLockSession(self, name, host)

    def terminate(self, session):
        """
        The server ends C{session} (C{pg_terminate_backend}): its lock is
        free at once and its next call fails.
        """
        session.terminated = True
        if self.holder is session:
            self.holder = None

    def holderOf(self):
        if self.holder is None or self.row is None:
            return None
        return self.row


@implementer(ILockSession)
class MemoryLockSession:
    """
    One master's lock session on a L{MemoryLockServer}.

    Knobs: C{frozen} (calls get no answer until L{thaw}), C{down} (calls
    fail: the server cannot be reached), C{partitioned} (a cut is not heard
    by the server, which keeps the lock until L{MemoryLockServer.terminate}).
    """

    def __init__(self, server, name, host):
        self.server = server
        self.name = name
        self.host = host
        self.frozen = False
        self.down = False
        self.partitioned = False
        self.terminated = False
        self.closed = False
        self.cuts = 0
        self._pending = []

    def _answer(self, compute):
        if self.frozen:
            d = Deferred()
            self._pending.append((d, compute))
            return d
        try:
            return succeed(compute())
        except LockError:
            return fail()

    def thaw(self):
        self.frozen = False
        pending, self._pending = self._pending, []
        for d, compute in pending:
            if d.called:
                # Given up (timed out) meanwhile.
                continue
            try:
                d.callback(compute())
            except LockError as error:
                d.errback(error)

    def _reachable(self):
        if self.down:
            raise LockError("PostgreSQL lock session: connection refused")
        if self.terminated:
            # The call met the ended session; the next one reconnects.
            self.terminated = False
            raise LockError("PostgreSQL lock session: terminating connection due to "
                            "administrator command")

    def acquire(self):
        def compute():
            self._reachable()
            server = self.server
            if (server.successor not in (None, self.name)
                    and server.successorUntil > server.clock.seconds()):
                return LockAttempt(False, server.holderOf(), reserved=True)
            if server.holder is None:
                server.holder = self
                server.successor = None
                server.row = ActiveMaster(self.name, self.host, server.clock.seconds())
                return LockAttempt(True, server.row)
            if server.holder is self:
                return LockAttempt(True, server.row)
            return LockAttempt(False, server.holderOf())

        return self._answer(compute)

    def check(self):
        def compute():
            self._reachable()
            if self.server.holder is not self:
                raise LockLost("the lock session no longer holds the active master's lock")

        return self._answer(compute)

    def release(self, successor=None, grace=0):
        def compute():
            self._reachable()
            if successor is not None:
                self.server.successor = successor
                self.server.successorUntil = self.server.clock.seconds() + grace
            if self.server.holder is self:
                self.server.holder = None

        return self._answer(compute)

    def activeMaster(self):
        return self._answer(lambda: (self._reachable(), self.server.holderOf())[1])

    def cut(self):
        self.cuts += 1
        pending, self._pending = self._pending, []
        for d, _ in pending:
            if not d.called:
                d.errback(LockError("PostgreSQL lock session: the session was cut"))
        if not self.partitioned and self.server.holder is self:
            self.server.holder = None

    def close(self):
        self.closed = True
        if self.server.holder is self and not self.partitioned:
            self.server.holder = None
        return succeed(None)


@implementer(IStreamClientEndpoint)
class HostEndpoint:
    """
    Dials the in-memory master candidate at C{host}.
    """

    def __init__(self, network, host):
        self.network = network
        self.host = host

    def connect(self, factory):
        master = self.network.masters.get(self.host)
        if master is None or not master.running or self.host in self.network.down:
            return fail(ConnectionRefusedError("Connection was refused by other side"))
        return succeed(self.network.join(self.host, factory))


class MastersNetwork:
    """
    The links of an in-memory cluster of several master candidates.
    """

    def __init__(self, clock):
        self.clock = clock
        self.masters = {}
        self.addresses = {}
        self.down = set()
        self.links = []
        self._ports = 40000

    def endpointFor(self, host):
        return HostEndpoint(self, host)

    def add(self, host, master, address):
        self.masters[host] = master
        self.addresses[host] = address

    def join(self, host, clientFactory):
        master = self.masters[host]
        self._ports += 1
        serverTLS = TLSMemoryBIOFactory(
            masterContextFactory(master.identity), False, MasterFactory(master),
            clock=self.clock).buildProtocol(None)
        clientTLS = clientFactory.buildProtocol(None)
        clientAddress = IPv4Address("TCP", "10.0.1.1", self._ports)
        serverAddress = IPv4Address("TCP", self.addresses[host], 1516)
        serverTransport = iosim.FakeTransport(serverTLS, True, serverAddress, clientAddress)
        clientTransport = iosim.FakeTransport(clientTLS, False, clientAddress, serverAddress)
        pump = iosim.connect(serverTLS, serverTransport, clientTLS, clientTransport,
                             greet=False, clock=self.clock)
        link = Link(pump, clientTLS, serverTLS)
        link.host = host
        self.links.append(link)
        return clientTLS

    def cutHost(self, host):
        """
        The master at C{host} is gone (its process killed): its links close
        and nothing more connects to it.
        """
        self.down.add(host)
        for link in self.links:
            if getattr(link, "host", None) == host:
                for transport in (link.pump.clientIO, link.pump.serverIO):
                    if not transport.disconnected:
                        transport.loseConnection()

    def flush(self, rounds=60):
        for _ in range(rounds):
            moved = False
            for link in list(self.links):
                moved = link.pump.pump() or moved
            if not moved:
                break

    def advance(self, seconds, step=0.25):
        self.flush()
        remaining = seconds
        while remaining > 1e-9:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            self.flush()

    def advanceUntil(self, predicate, limit, step=0.25):
        """
        Let time pass until C{predicate()} holds.

        @return: the seconds it took, or L{None} if C{limit} passed first.
        """
        waited = 0.0
        self.flush()
        while not predicate():
            if waited >= limit:
                return None
            self.clock.advance(step)
            waited += step
            self.flush()
        return waited


class StandbyCluster:
    """
    Master candidates C{m1}, C{m2}... at C{m1.example}, C{m2.example}... and
    workers listing them all, on one clock, sharing one agent store.
    """

    def __init__(self, testCase, masters=("m1", "m2"), masterIntervals=MASTERS):
        self.testCase = testCase
        self.tmp = FilePath(testCase.mktemp())
        self.tmp.makedirs()
        self.caDir = makeAuthority(self.tmp)
        self.clock = Clock()
        self.network = MastersNetwork(self.clock)
        self.lockServer = MemoryLockServer(self.clock)
        self.names = tuple(masters)
        self.nodes = tuple(f"{name}.example" for name in masters)
        self.overrides = {"intervals": INTERVALS, "masters": masterIntervals}
        self.store = AgentDatabase.openBlocking(self.tmp.child("shared.db"),
                                                managerName="master")
        testCase.addCleanup(self.store.close)
        self.masters = {}
        self.locks = {}
        self.workers = {}
        self.homes = {}
        testCase.addCleanup(self.stop)

    def makeHome(self, name, hosts=(), role="worker"):
        import json

        home = NodeHome(self.tmp.child(name))
        if not home.root.exists():
            home.createLayout()
            makeNodeSsl(self.caDir, home, name, hosts=hosts, role=role)
            home.clusterJsonOverrides.setContent(json.dumps(self.overrides).encode())
        self.homes[name] = home
        return home

    def hostOf(self, name):
        return f"{name}.example"

    def startMaster(self, name):
        """
        Build (again, after L{killMaster}) and start master candidate
        C{name}.
        """
        host = self.hostOf(name)
        home = self.makeHome(name, hosts=(host,), role="master")
        lock = self.lockServer.session(name, host)
        self.locks[name] = lock
        config = makeConfig(name, "master", nodes=self.nodes)

        def standby(master):
            return StandbyService(master, lock, endpointFor=self.network.endpointFor,
                                  durable=False, jitter=lambda: 0.0)

        master = MasterService(home, config, loadClusterItems(home),
                               loadNodeIdentity(home.sslDir), reactor=self.clock,
                               clock=self.clock, runInThread=runInline, watchFiles=False,
                               store=self.store, standby=standby)
        self.masters[name] = master
        self.network.down.discard(host)
        self.network.add(host, master, f"10.0.0.{self.names.index(name) + 1}")
        master.startService()
        self.network.flush()
        return master

    def killMaster(self, name):
        """
        C{kill -9} of master C{name}: its connections close, nothing answers
        at its address, the server ends its lock session.
        """
        master = self.masters[name]
        self.network.cutHost(self.hostOf(name))
        self.lockServer.terminate(self.locks[name])
        master.stopService()
        self.network.flush()

    def addWorker(self, name, nodes=None):
        home = self.makeHome(name)
        identity = loadNodeIdentity(home.sslDir)
        config = makeConfig(name, "worker", nodes=nodes or self.nodes)
        candidates = MasterCandidates(config.nodes)
        endpoint = CandidateEndpoint(None, candidates, 1516, self.network.endpointFor)
        store = AgentDatabase.openBlocking(home.globalDb, managerName=name)
        self.testCase.addCleanup(store.close)
        worker = WorkerService(home, config, loadClusterItems(home), identity,
                               reactor=self.clock, clock=self.clock, endpoint=endpoint,
                               jitter=lambda: 0.0, runInThread=runInline, store=store,
                               durable=False, candidates=candidates)
        self.workers[name] = worker
        worker.startService()
        self.network.flush()
        return worker

    def connectBare(self, protocol, certName, hosts=(), toHost="m1.example", role="master"):
        """
        Connect C{protocol} (a hand-driven peer) to the master at C{toHost}
        over TLS, with a certificate of C{role} for C{certName} naming
        C{hosts}.
        """
        from twisted.internet.protocol import Factory

        from wazuhcluster.tls import workerConnectionCreator

        home = self.makeHome(certName, hosts=hosts, role=role)
        creator = workerConnectionCreator(loadNodeIdentity(home.sslDir), toHost)
        self.network.join(toHost, TLSMemoryBIOFactory(
            creator, True, Factory.forProtocol(lambda: protocol), clock=self.clock))
        self.network.flush()
        return self.network.links[-1]

    def active(self):
        """
        The names of the masters that serve.
        """
        return sorted(name for name, master in self.masters.items()
                      if master.running and master.serving)

    def connectedTo(self, worker):
        """
        The name of the master C{worker} is connected to, or L{None}.
        """
        connection = self.workers[worker].connection
        return connection.name if connection is not None else None

    def stop(self):
        for worker in self.workers.values():
            if worker.running:
                worker.stopService()
        for master in self.masters.values():
            if master.running:
                master.stopService()
        self.network.flush()
        self.clock.advance(5)
        self.network.flush()


__all__ = ["StandbyCluster", "MemoryLockServer", "MASTERS", "writeIntervals"]
