# -*- test-case-name: tests.test_localclient -*-
"""
A client of a node's local socket (C{queue/cluster/c-internal.sock}) in
Wazuh's local protocol, behaving as Wazuh's own C{LocalClient} does: what
C{wazuh-cluster control} and the C{agent} commands use.

One request, and its answer:

  - most commands: the C{ok} reply's payload (an C{err} reply fails);
  - C{dapi}, C{dapi_fwd}, and any command the server answers C{ok "Sent
    request to master node"} (a worker's C{get_nodes}): the answer the
    server pushes later, C{control_res <json>}, C{dapi_res <string id>}
    (after C{new_str}/C{str_upd}), or C{dapi_err}/C{err} (which fail);
  - C{sendsync}: no reply; the pushed C{ok} frame (C{err} fails).

The client answers the server's pushes as Wazuh's client does (C{ok
"Response received"}...).  Failures are L{ClusterError}s with Wazuh's codes:
3012 when no daemon answers, 3020 when the answer does not come in time,
3018 when the connection closes first, the server's own otherwise.
"""

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol

from wazuhcluster.errors import ClusterError
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.wazuhlocal.handlers import CommandTable
from wazuhcluster.wazuhlocal.protocol import LocalLimits, WazuhLocalProtocol
from wazuhcluster.wazuhlocal.wazuhjson import decodeError

#: The reply of a server that will push the answer later.
SENT_TO_MASTER = b"Sent request to master node"

#: Commands whose answer is pushed after their C{ok} reply.
PUSHED_ANSWER = frozenset([b"dapi", b"dapi_fwd", b"send_file"])

#: Seconds to wait for an answer.
DEFAULT_TIMEOUT = 30.0

#: The client's bounds: Wazuh's (answers may be large), no idle timeout.
CLIENT_LIMITS = LocalLimits()

NOT_RUNNING = 3012
TIMEOUT = 3020


def notRunning(detail=None):
    """
    Wazuh's 3012: nothing answers on the socket.
    """
    return ClusterError("Cluster is not running", NOT_RUNNING)


class LocalClientHandler(CommandTable):
    """
    Takes what the server pushes to this client: the answer of the request
    in progress.
    """

    def __init__(self):
        super().__init__({
            b"control_res": self._controlResult,
            b"dapi_res": self._stringResult,
            b"send_f_res": self._stringResult,
            b"dapi_err": self._error,
            b"err": self._error,
            b"ok": self._okPush,
        })
        self._waiting = None

    def expect(self):
        """
        @return: a Deferred firing with the next pushed answer (failing
            with the pushed error).
        """
        self._waiting = Deferred(lambda d: setattr(self, "_waiting", None))
        return self._waiting

    def _deliver(self, result, error=None):
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        if error is not None:
            waiting.errback(error)
        else:
            waiting.callback(result)

    def _controlResult(self, protocol, payload):
        if payload.startswith(b"Error"):
            self._deliver(None, ClusterError(payload[:4096].decode("utf-8", "replace"), 3016))
        else:
            self._deliver(payload)
        return b"ok", b"Response received"

    def _stringResult(self, protocol, payload):
        try:
            data = protocol.takeString(payload)
        except ClusterError as error:
            self._deliver(None, error)
            raise
        self._deliver(data)
        return b"ok", b"Distributed api response received"

    def _error(self, protocol, payload):
        self._deliver(None, decodeError(payload))
        return b"ok", b"Error response received"

    def _okPush(self, protocol, payload):
        self._deliver(payload)
        return b"ok", b"Sendsync response received"

    def connectionLost(self, protocol, reason):
        self._deliver(None, ClusterError(
            "Error sending request: the cluster daemon closed the connection", 3018))


class LocalClient:
    """
    One connection to a local server.

    @ivar protocol: the L{WazuhLocalProtocol}.
    """

    def __init__(self, protocol, handler, clock):
        self.protocol = protocol
        self.handler = handler
        self.clock = clock

    @classmethod
    def connect(cls, endpoint, clock, log=None):
        """
        Connect over C{endpoint}.

        @return: a Deferred firing with the L{LocalClient}, or failing with
            Wazuh's 3012.
        """
        handler = LocalClientHandler()
        protocol = WazuhLocalProtocol(
            handler, clock, CLIENT_LIMITS,
            log if log is not None else ClusterLogger("Local Client",
                                                      namespace="wazuhcluster.localclient"))
        d = connectProtocol(endpoint, protocol)

        def failed(failure):
            raise notRunning(failure.getErrorMessage())

        return d.addCallbacks(lambda _: cls(protocol, handler, clock), failed)

    @classmethod
    def forSocket(cls, reactor, path, timeout=DEFAULT_TIMEOUT):
        """
        Connect to the UNIX socket at C{path}.
        """
        return cls.connect(UNIXClientEndpoint(reactor, path, timeout=timeout), reactor)

    @inlineCallbacks
    def execute(self, command, payload=b"", timeout=DEFAULT_TIMEOUT):
        """
        Send one request and wait for its answer (see the module docstring).

        @type command: L{bytes}
        @type payload: L{bytes}
        @return: a Deferred firing with the answer's payload (L{bytes}).
        """
        pushed = self.handler.expect()
        pushed.addTimeout(timeout, self.clock, onTimeoutCancel=lambda result, seconds: _timedOut(
            command))
        try:
            if command == b"sendsync":
                self.protocol.sendNotice(command, payload)
            else:
                reply = yield self.protocol.sendRequest(command, payload, timeout)
                if command not in PUSHED_ANSWER and reply != SENT_TO_MASTER:
                    return reply
            return (yield pushed)
        finally:
            if not pushed.called:
                pushed.cancel()
            pushed.addErrback(lambda failure: None)

    def close(self):
        """
        Close the connection.
        """
        if self.protocol.transport is not None:
            self.protocol.transport.loseConnection()


def _timedOut(command):
    raise ClusterError(f"Timeout sending request: {command.decode('ascii', 'replace')}",
                       TIMEOUT)
