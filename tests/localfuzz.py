"""
The master's local control socket (C{c-internal.sock}, Wazuh's local
framing) in memory, for the fuzz tests: a server protocol of it, a hostile
local peer sending raw frames, and an honest client asking for the nodes as
C{wazuh-cluster control -l} does.
"""

from twisted.internet.protocol import Protocol
from twisted.test import iosim

from wazuhcluster.control import ControlFactory
from wazuhcluster.controlclient import localRequest
from wazuhcluster.localclient import CLIENT_LIMITS, LocalClient, LocalClientHandler
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.wazuhlocal.framing import HEADER, FrameDecoder
from wazuhcluster.wazuhlocal.protocol import WazuhLocalProtocol
from wazuhcluster.wazuhlocal.wazuhjson import loads


def controlServer(cluster):
    """
    A new server-side protocol of the master's control socket.
    """
    factory = ControlFactory(lambda: MasterLocalHandler(cluster.master), clock=cluster.clock)
    return factory.buildProtocol(None)


def connectControl(cluster, client):
    """
    Connect C{client} (a protocol) to a new server protocol of the master's
    control socket, in memory.

    @return: the L{iosim.IOPump} moving their bytes.
    """
    server = controlServer(cluster)
    return iosim.connect(server, iosim.makeFakeServer(server), client,
                         iosim.makeFakeClient(client), greet=False, clock=cluster.clock)


class HostileLocalPeer(Protocol):
    """
    A local client that sends whatever frames it is given and keeps every
    frame the server sends back.

    @ivar replies: the C{(counter, command, payload)} of every message
        received.
    @ivar closed: whether the connection is gone.
    @ivar closedByServer: whether the server closed it.
    """

    def __init__(self):
        self.replies = []
        self.closed = False
        self.closedByServer = False
        self._closing = False
        self._decoder = FrameDecoder(2 ** 31, 2 ** 31, 1000, 2 ** 31)

    def sendFrame(self, counter, field, payload):
        """
        One frame, its header made of C{counter}, the payload's length and
        the raw 12-byte command C{field}.
        """
        if self.transport is not None and not self.closed:
            self.transport.write(HEADER.pack(counter, len(payload), field) + payload)

    def dataReceived(self, data):
        for message in self._decoder.feed(data):
            self.replies.append((message.counter, message.command, message.payload))

    def close(self):
        self._closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.closed = True
        self.closedByServer = not self._closing


def honestControlAnswer(cluster):
    """
    Ask the master's control socket for its nodes, as C{wazuh-cluster
    control -l} does.

    @return: the answer (C{{"nodes": [...]}}), or the failure.
    """
    handler = LocalClientHandler()
    protocol = WazuhLocalProtocol(handler, cluster.clock, CLIENT_LIMITS)
    pump = connectControl(cluster, protocol)
    command, payload, convert = localRequest("get_nodes")
    outcome = []
    d = LocalClient(protocol, handler, cluster.clock).execute(command, payload)
    d.addCallback(lambda answer: convert(loads(answer)))
    d.addBoth(outcome.append)
    pump.flush()
    protocol.transport.loseConnection()
    pump.flush()
    return outcome[0] if outcome else None
