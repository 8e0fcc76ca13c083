# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
Connections in memory: client endpoints whose connections reach a server
factory through L{twisted.test.iosim}, pumped on demand, for deterministic
tests of clients against the stand-ins (with a L{task.Clock}).
"""

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.test import iosim
from zope.interface import implementer


class MemoryNetwork:
    """
    Where in-memory connections live.

    @ivar refusing: server factories currently refusing connections (as a
        stopped daemon's socket does).
    @ivar connections: how many connections were made, by server factory.
    """

    def __init__(self, clock):
        self.clock = clock
        self._pumps = []
        self.refusing = set()
        self.connections = {}

    def endpoint(self, serverFactory, path="/memory.sock"):
        """
        A client endpoint connecting to C{serverFactory}.
        """
        return MemoryEndpoint(self, serverFactory, path)

    def connect(self, serverFactory, clientFactory, path):
        if serverFactory in self.refusing:
            return fail(ConnectionRefusedError(path))
        address = UNIXAddress(path)
        server = serverFactory.buildProtocol(address)
        client = clientFactory.buildProtocol(address)
        if client is None:
            return fail(ConnectionRefusedError("client factory refused"))
        pump = iosim.connect(server, iosim.makeFakeServer(server), client,
                             iosim.makeFakeClient(client), greet=False, clock=self.clock)
        self._pumps.append(pump)
        self.connections[serverFactory] = self.connections.get(serverFactory, 0) + 1
        return succeed(client)

    def flush(self):
        """
        Move bytes on every connection (and run calls due now) until
        nothing moves.
        """
        for _ in range(10000):
            moved = False
            self.clock.advance(0)
            for pump in list(self._pumps):
                if pump.pump(advanceClock=False):
                    moved = True
                if pump.clientIO.disconnected and pump.serverIO.disconnected:
                    self._pumps.remove(pump)
            if not moved:
                return
        raise AssertionError("the memory network never settled")

    def advance(self, seconds, step=1.0):
        """
        Advance the clock by C{seconds} in steps, flushing at each.
        """
        self.flush()
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            self.flush()

    def disconnectAll(self):
        """
        Drop every connection (both ends see it lost).
        """
        for pump in self._pumps:
            pump.serverIO.loseConnection()
        self.flush()


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    A client endpoint of a L{MemoryNetwork}.
    """

    def __init__(self, network, serverFactory, path):
        self.network = network
        self.serverFactory = serverFactory
        self.path = path

    def connect(self, protocolFactory):
        return self.network.connect(self.serverFactory, protocolFactory, self.path)
