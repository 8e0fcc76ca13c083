# -*- test-case-name: tests.test_localclient -*-
"""
Twisted client protocols run without a reactor, for the short-lived
C{wazuh-cluster agent ...} commands (which may also run in a thread beside
a reactor, as the tests run them): the very protocols the daemon uses
(L{wazuhcluster.localclient.LocalClient}, L{wazuhcluster.wazuhdb.authd.
AuthdClient}), fed from blocking UNIX sockets, their timers on a L{Clock}
moved on with the real time.

    endpoint = BlockingUNIXEndpoint(path)
    client = run(LocalClient.connect(endpoint, endpoint.clock), endpoint)
    answer = run(client.execute(b"refresh_agent_groups", b"{}"), endpoint)
"""

import select
import socket
import time

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint, ITransport
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.errors import ClusterError
from wazuhcluster.localclient import LocalClient

#: Bytes read at once.
READ_SIZE = 65536


@implementer(ITransport)
class _SocketTransport:
    """
    A connected blocking socket as a protocol's transport.
    """

    def __init__(self, sock, protocol, path):
        self.socket = sock
        self.protocol = protocol
        self.path = path
        self.closed = False
        self.disconnecting = False

    def write(self, data):
        if self.closed:
            return
        try:
            self.socket.sendall(data)
        except OSError as error:
            self._lost(Failure(ConnectionLost(str(error))))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        self._lost(Failure(ConnectionDone()))

    abortConnection = loseConnection

    def getPeer(self):
        return UNIXAddress(self.path)

    def getHost(self):
        return UNIXAddress(None)

    def readable(self):
        """
        Read what arrived and give it to the protocol.
        """
        try:
            data = self.socket.recv(READ_SIZE)
        except OSError as error:
            self._lost(Failure(ConnectionLost(str(error))))
            return
        if not data:
            self._lost(Failure(ConnectionDone()))
            return
        self.protocol.dataReceived(data)

    def _lost(self, reason):
        if self.closed:
            return
        self.closed = self.disconnecting = True
        self.socket.close()
        self.protocol.connectionLost(reason)


@implementer(IStreamClientEndpoint)
class BlockingUNIXEndpoint:
    """
    Connects at once (blocking) to the UNIX socket at C{path}; L{run}
    serves the connections it made.

    @ivar clock: the L{Clock} the protocols' timers run on.
    """

    def __init__(self, path, connectTimeout=5.0):
        self.path = path
        self.connectTimeout = connectTimeout
        self.clock = Clock()
        self.clock.advance(time.time())
        self.transports = []

    def connect(self, factory):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connectTimeout)
        try:
            sock.connect(self.path)
        except OSError as error:
            sock.close()
            return fail(ConnectError(string=f"{self.path}: {error.strerror or error}"))
        sock.settimeout(None)
        protocol = factory.buildProtocol(UNIXAddress(self.path))
        if protocol is None:
            sock.close()
            return fail(ConnectError(string="refused by the factory"))
        transport = _SocketTransport(sock, protocol, self.path)
        self.transports.append(transport)
        protocol.makeConnection(transport)
        return succeed(protocol)


def run(d, endpoint, timeout=60.0):
    """
    Serve the connections of C{endpoint} until C{d} fires, moving its clock
    on with the real time (so the protocols' own timeouts fire).

    @return: C{d}'s result.
    @raise Exception: C{d}'s failure; L{ClusterError} 3020 when nothing
        fires C{d} within C{timeout} seconds.
    """
    results = []
    d.addBoth(results.append)
    clock = endpoint.clock
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while not results:
        now = time.monotonic()
        clock.advance(now - last)
        last = now
        if results:
            break
        open_ = [t for t in endpoint.transports if not t.closed]
        calls = clock.getDelayedCalls()
        wait = deadline - now
        if calls:
            wait = min(wait, max(0.0, min(c.getTime() for c in calls) - clock.seconds()))
        if now >= deadline or (not open_ and not calls):
            break
        if not open_:
            time.sleep(wait)
            continue
        ready, _, _ = select.select([t.socket for t in open_], [], [], wait)
        for transport in open_:
            if transport.socket in ready and not transport.closed:
                transport.readable()
    if not results:
        raise ClusterError("Timeout sending request: no answer", 3020)
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def callLocalSocket(path, command, payload=b"", timeout=5.0):
    """
    Send one request to the local server on the UNIX socket at C{path} and
    wait for its answer (L{LocalClient.execute}), blocking.

    @return: the answer's payload (L{bytes}).
    @raise ClusterError: 3012 when nothing answers, 3020 without an answer
        in C{timeout} seconds, the server's error otherwise.
    """
    endpoint = BlockingUNIXEndpoint(path, connectTimeout=timeout)
    try:
        client = run(LocalClient.connect(endpoint, endpoint.clock), endpoint, timeout)
        return run(client.execute(command, payload, timeout), endpoint, timeout + 1)
    finally:
        closeAll(endpoint)


def closeAll(endpoint):
    """
    Close every connection C{endpoint} made.
    """
    for transport in endpoint.transports:
        transport.loseConnection()
