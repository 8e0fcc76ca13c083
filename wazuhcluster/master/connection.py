# -*- test-case-name: tests.test_hello -*-
"""
The master's side of one worker connection: the hello that authenticates it,
then the responders a registered worker may call.
"""

import re

from wazuhcluster import PROTOCOL_VERSION, SUPPORTED_PROTOCOLS, __version__, tls
from wazuhcluster.commands import (
    ControlFailed,
    ControlRequest,
    FetchResultChunk,
    Hello,
    HelloRejected,
    KeepAlive,
)
from wazuhcluster.health import WorkerStatus
from wazuhcluster.node import FeatureResponders
from wazuhcluster.results import ResultStore

NODE_NAME = re.compile(r"[A-Za-z0-9_-]+")

#: Requests a worker may forward for its local control clients.
FORWARDABLE_REQUESTS = frozenset({"get_nodes", "get_health", "get_agents"})


def _rejection(code, text):
    return HelloRejected(f"Error {code} - {text}")


class MasterConnection(FeatureResponders):
    """
    One worker's connection to the master.

    Until L{Hello} succeeds, any other command closes the connection, and a
    connection still without a hello after C{hello_timeout} seconds is
    closed.

    @ivar master: the L{wazuhcluster.master.server.MasterService}.
    @ivar name: the worker's node name once authenticated, else L{None}.
    @ivar status: the worker's L{WorkerStatus}.
    """

    def __init__(self, master):
        super().__init__()
        self.master = master
        self.name = None
        self.version = None
        self.status = WorkerStatus()
        self.results = ResultStore()
        self.log = master.log.withTag("Worker")
        self._helloDeadline = None
        self.replaced = False

    # -- connection life -----------------------------------------------------

    @property
    def peerAddress(self):
        """
        The worker's address as the original prints it: C{('ip', port)}.
        """
        peer = self.transport.getPeer()
        return f"('{peer.host}', {peer.port})"

    @property
    def peerHost(self):
        return self.transport.getPeer().host

    def connectionMade(self):
        super().connectionMade()
        tls.setNoDelay(self.transport)
        self.log.info("Connection from {peer}", peer=self.peerAddress)
        self._helloDeadline = self.master.clock.callLater(
            self.master.items.master.hello_timeout, self._helloTimedOut
        )

    def _helloTimedOut(self):
        self._helloDeadline = None
        self.log.warn(
            "Closing connection from {peer}: no hello received within "
            "{timeout}s.",
            peer=self.peerAddress,
            timeout=self.master.items.master.hello_timeout,
        )
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._helloDeadline is not None and self._helloDeadline.active():
            self._helloDeadline.cancel()
        self._helloDeadline = None
        super().connectionLost(reason)
        if self.name is not None:
            self.master.workerDisconnected(self, reason)

    def locateResponder(self, name):
        if self.name is None and name != Hello.commandName:
            self.log.warn(
                "Protocol violation from {peer}: command {command} before "
                "hello. Closing connection.",
                peer=self.peerAddress,
                command=name.decode("ascii", "replace"),
            )
            self.transport.abortConnection()
            return None
        return super().locateResponder(name)

    # -- hello ---------------------------------------------------------------

    @Hello.responder
    def hello(self, cluster_name, node_name, node_type, version, protocol, proof):
        if self.name is not None:
            raise _rejection(3028, "Worker node ID already exists")
        try:
            self._checkHello(cluster_name, node_name, node_type, protocol, proof)
        except HelloRejected as rejected:
            self.log.error(
                "Rejected connection from {peer} (node {node!r}): {error}",
                peer=self.peerAddress,
                node=node_name[:64],
                error=str(rejected),
            )
            raise
        if self._helloDeadline is not None and self._helloDeadline.active():
            self._helloDeadline.cancel()
        self._helloDeadline = None
        self.name = node_name
        self.version = version
        self.log = self.log.withTag(f"Worker {node_name}")
        self.master.workerConnected(self)
        return {
            "master_name": self.master.config.node_name,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
        }

    def _checkHello(self, clusterName, nodeName, nodeType, protocol, proof):
        """
        Raise L{HelloRejected} with the original's text for every bad hello.
        """
        config = self.master.config
        if not NODE_NAME.fullmatch(nodeName):
            raise _rejection(3060, "Invalid node name format")
        if nodeName not in tls.peerCertificateNames(self.transport):
            raise _rejection(
                3061, "Worker certificate does not match the node name it claims"
            )
        if not tls.verifyHelloProof(
            proof, config.key, tls.channelBinding(self.transport), clusterName, nodeName
        ):
            raise _rejection(3025, "Could not decrypt message")
        if nodeName == config.node_name:
            raise _rejection(3029, "Connected worker with same name as the master")
        if clusterName != config.name:
            raise _rejection(3030, "Worker does not belong to the same cluster")
        if protocol not in SUPPORTED_PROTOCOLS:
            raise _rejection(3031, "Worker and master versions are not the same")
        if nodeType != "worker":
            raise _rejection(3062, f"Invalid node type {nodeType!r} in hello")

    # -- registered worker ---------------------------------------------------

    @KeepAlive.responder
    def keepAlive(self):
        self.status.last_keep_alive = self.master.clock.seconds()
        self.log.debug("Keep alive received.", cluster_subtag="Keep alive")
        return {"answer": "keepalive"}

    @ControlRequest.responder
    def controlRequest(self, request, arguments):
        if request not in FORWARDABLE_REQUESTS:
            raise ControlFailed(f"Error 3038 - Unknown control request {request!r}")
        d = self.master.control.answer(request, arguments)
        d.addCallback(self.results.put)
        return d

    @FetchResultChunk.responder
    def fetchResultChunk(self, result_id, index):
        return self.results.fetch(result_id, index)

    def disconnect(self):
        """
        Drop this connection at once.
        """
        self.transport.abortConnection()
