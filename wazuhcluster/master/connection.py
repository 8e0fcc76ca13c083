# -*- test-case-name: tests.test_hello -*-
"""
The master's side of one worker connection: the hello that authenticates it,
then the control requests a registered worker may forward for its local
clients, and the daemon requests (C{sendsync}) it relays for its daemons.  Everything else a registered worker may call is answered by its
sessions (L{wazuhcluster.session}).
"""

import json
import re

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from wazuhcluster import PROTOCOL_VERSION, SUPPORTED_PROTOCOLS, __version__, tls
from wazuhcluster.certroles import helloRoleProblem
from wazuhcluster.commands import (
    ControlFailed,
    ControlRequest,
    FetchResultChunk,
    Hello,
    HelloRejected,
    SendSync,
)
from wazuhcluster.connection import ClusterConnection, shown
from wazuhcluster.ossecchecks import MAX_NODE_NAME
from wazuhcluster.results import ResultStore
from wazuhcluster.standby.peers import HELLO_ROLES, standbyCertificateProblem
from wazuhcluster.worker.tlsfailure import describeTLSFailure

NODE_NAME = re.compile(r"[A-Za-z0-9_-]+")

#: Requests a worker may forward for its local control clients.
FORWARDABLE_REQUESTS = frozenset({"get_nodes", "get_health", "get_agents"})


def _rejection(code, text):
    return HelloRejected(f"Error {code} - {text}")


@implementer(IHandshakeListener)
class MasterConnection(ClusterConnection):
    """
    One worker's connection to the master.

    Until L{Hello} succeeds, any other command closes the connection, and a
    connection still without a hello after C{hello_timeout} seconds is
    closed.

    @ivar master: the L{wazuhcluster.master.server.MasterService}.
    @ivar version: the worker's software version once authenticated.
    @ivar nodeType: C{worker}, or C{master} for a standby master, once
        authenticated.
    @ivar lost: whether the connection is gone.
    """

    def __init__(self, master):
        super().__init__(master.log.withTag("Worker"))
        self.master = master
        self.version = None
        self.nodeType = None
        self.results = ResultStore()
        self.lost = False
        self._helloDeadline = None
        self._helloStarted = False
        self._handshaken = False
        self._lostWaiters = []

    # -- connection life -----------------------------------------------------------

    @property
    def peerAddress(self):
        """
        The worker's address as the original prints it: C{('ip', port)}.
        """
        if self.transport is None:
            return "(disconnected)"
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
            self.master.items.master.hello_timeout, self._helloTimedOut)

    def _helloTimedOut(self):
        self._helloDeadline = None
        self.log.warn("Closing connection from {peer}: no hello received within "
                      "{timeout}s.", peer=self.peerAddress,
                      timeout=self.master.items.master.hello_timeout)
        self.disconnect()

    def handshakeCompleted(self):
        self._handshaken = True

    def connectionLost(self, reason):
        if not self._handshaken and self.transport is not None:
            problem = describeTLSFailure(reason, side="master")
            if problem is not None:
                self.master.refusals.note(self.peerHost, problem)
        self.lost = True
        if self._helloDeadline is not None and self._helloDeadline.active():
            self._helloDeadline.cancel()
        self._helloDeadline = None
        super().connectionLost(reason)
        if self.sessions is not None:
            self.master.registry.gone(self)
        waiters, self._lostWaiters = self._lostWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenLost(self):
        """
        @return: a Deferred firing once the connection is gone.
        """
        if self.lost:
            return succeed(None)
        d = Deferred()
        self._lostWaiters.append(d)
        return d

    def violation(self, reason):
        """
        Before the hello, violations are refusals of a stranger: logged
        rate-limited per address.
        """
        if self.sessions is not None or self._closing or self.transport is None:
            return super().violation(reason)
        self._closing = True
        self.master.refusals.note(self.peerHost, f"protocol violation: {reason}")
        self.transport.abortConnection()
        return None

    def refusal(self, name):
        if self.sessions is None and name != Hello.commandName:
            return f"command {shown(name)} before hello"
        return super().refusal(name)

    def locateResponder(self, name):
        if self.sessions is None and name != Hello.commandName:
            self.violation(self.refusal(name))
            return None
        return super().locateResponder(name)

    # -- hello -------------------------------------------------------------------

    @Hello.responder
    def hello(self, cluster_name, node_name, node_type, version, protocol, proof):
        if self._helloStarted:
            self.violation("a second hello")
            raise HelloRejected("Error 3028 - Worker node ID already exists")
        self._helloStarted = True
        try:
            self._checkHello(cluster_name, node_name, node_type, protocol, proof)
        except HelloRejected as rejected:
            self._rejected(node_name, rejected)
            raise
        if not self.master.serving:
            refusal = self.master.standby.refusal()
            self.log.info("Refused the hello of {node} from {peer}: {error}",
                          node=node_name, peer=self.peerAddress, error=str(refusal))
            raise refusal
        self.name = node_name
        self.nodeType = node_type
        self.version = version
        kind = "Standby" if node_type == "master" else "Worker"
        self.log = self.log.withTag(f"{kind} {node_name}")
        d = self.master.registry.authenticate(self)
        d.addCallbacks(self._welcome, self._refused, errbackArgs=(node_name,))
        return d

    def _rejected(self, nodeName, rejected):
        self.log.error("Rejected connection from {peer} (node {node}): {error}",
                       peer=self.peerAddress, node=shown(nodeName), error=str(rejected))

    def _refused(self, failure, nodeName):
        failure.trap(HelloRejected)
        self._rejected(nodeName, failure.value)
        return failure

    def _welcome(self, ignored):
        if self._helloDeadline is not None and self._helloDeadline.active():
            self._helloDeadline.cancel()
        self._helloDeadline = None
        # The sessions start once this answer has left, so that the worker has
        # installed its own sessions' responders before any of ours talks.
        self.master.clock.callLater(0, self.master.registry.startSessions, self)
        binding = tls.channelBinding(self.transport)
        return {
            "master_name": self.master.config.node_name,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "proof": tls.helloProof(self.master.config.key, binding, self.master.config.name,
                                    self.master.config.node_name, role="master"),
        }

    def _checkHello(self, clusterName, nodeName, nodeType, protocol, proof):
        """
        Raise L{HelloRejected} with the original's text for every bad hello.
        """
        config = self.master.config
        if len(nodeName) > MAX_NODE_NAME or not NODE_NAME.fullmatch(nodeName):
            raise _rejection(3060, "Invalid node name format")
        if nodeName not in tls.peerCertificateNames(self.transport):
            raise _rejection(
                3061, "Worker certificate does not match the node name it claims")
        if not tls.verifyHelloProof(
                proof, config.key, tls.channelBinding(self.transport), clusterName, nodeName,
                role=HELLO_ROLES.get(nodeType, "worker")):
            raise _rejection(3025, "Could not decrypt message")
        if nodeName == config.node_name:
            raise _rejection(3029, "Connected worker with same name as the master")
        if clusterName != config.name:
            raise _rejection(3030, "Worker does not belong to the same cluster")
        if protocol not in SUPPORTED_PROTOCOLS:
            raise _rejection(3031, "Worker and master versions are not the same")
        if nodeType not in HELLO_ROLES:
            raise _rejection(3062, f"Invalid node type {shown(nodeType)} in hello")
        if nodeType == "master":
            problem = standbyCertificateProblem(self.transport, config.nodes)
            if problem is not None:
                raise _rejection(3063, problem)
        cert = tls.peerCertificate(self.transport)
        problem = helloRoleProblem(cert, nodeType) or self.master.revocations.problem(cert)
        if problem is not None:
            raise _rejection(3063, problem)

    # -- forwarded control requests ------------------------------------------------

    @ControlRequest.responder
    def controlRequest(self, request, arguments):
        if request not in FORWARDABLE_REQUESTS:
            raise ControlFailed(f"Error 3038 - Unknown control request {shown(request)}")
        d = maybeDeferred(json.loads, arguments or "{}")
        d.addCallback(lambda parsed: self.master.control.answer(request, parsed))
        d.addErrback(_asControlFailure)
        d.addCallback(self.results.put)
        return d

    @FetchResultChunk.responder
    def fetchResultChunk(self, result_id, index):
        return self.results.fetch(result_id, index)

    # -- daemon requests relayed for the worker's daemons --------------------------

    @SendSync.responder
    def sendSync(self, daemon_name, message):
        d = self.master.relay.relay(self.name, daemon_name, message)
        return d.addCallback(lambda answer: {"answer": answer})


def _asControlFailure(failure):
    from wazuhcluster.control import asControlFailure

    return asControlFailure(failure)
