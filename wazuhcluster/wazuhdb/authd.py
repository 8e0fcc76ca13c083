# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
A client of wazuh-authd's local socket, C{queue/sockets/auth}, as recorded
(C{wazuh-authd-4.14.7-session.txt}): one request per connection, a 4-byte
little-endian length and JSON C{{"function": "add", "arguments": {...}}};
authd answers the same way (C{{"error": 0, "data": {"id", "name", "ip",
"key"}}} or C{{"error": 9008, "message": "Duplicate name"}}) and closes.

The master uses it to answer the C{sendsync} of a worker's authd: the raw
answer goes back unchanged (L{AuthdClient.request}).
"""

import json

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.protocols.basic import IntNStringReceiver

from wazuhcluster.wazuhdb.errors import AUTHD_DOWN, AuthdError

#: Where authd listens, under the node home.
AUTH_SOCKET = "queue/sockets/auth"

#: Longest request or answer (authd's OS_MAXSTR).
MAX_MESSAGE = 65536

DEFAULT_TIMEOUT = 30.0


class _AuthdExchange(IntNStringReceiver):
    structFormat = "<I"
    prefixLength = 4
    MAX_LENGTH = MAX_MESSAGE

    def __init__(self, request):
        self._request = request
        self.answer = Deferred(lambda d: self._abort())

    def _abort(self):
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionMade(self):
        self.sendString(self._request)

    def stringReceived(self, data):
        if not self.answer.called:
            self.answer.callback(data)
        self.transport.loseConnection()

    def lengthLimitExceeded(self, length):
        if not self.answer.called:
            self.answer.errback(AuthdError(f"an answer of {length} bytes"))
        self._abort()

    def connectionLost(self, reason):
        if not self.answer.called:
            self.answer.errback(AuthdError(f"no answer ({reason.getErrorMessage()})"))


class AuthdClient:
    """
    The client of one authd local socket.
    """

    def __init__(self, endpoint, clock, timeout=DEFAULT_TIMEOUT):
        self._endpoint = endpoint
        self._clock = clock
        self.timeout = timeout

    @classmethod
    def forHome(cls, home, reactor=None, **kwargs):
        """
        The client of a node home's authd (C{queue/sockets/auth}).

        @type home: L{wazuhcluster.home.NodeHome}
        """
        if reactor is None:
            from twisted.internet import reactor
        return cls(UNIXClientEndpoint(reactor, home.child(AUTH_SOCKET).path), reactor, **kwargs)

    def request(self, message, timeout=None):
        """
        Send one request and return authd's raw answer.

        @param message: the request, a JSON-serialisable L{dict} or its
            L{bytes}.
        @return: a Deferred firing with the answer (L{bytes}), or failing
            with an L{AuthdError} 1726 when authd cannot be reached, does
            not answer within the timeout, or closes without answering.
        """
        if not isinstance(message, bytes):
            message = json.dumps(message, separators=(",", ":")).encode("utf-8")
        if len(message) > MAX_MESSAGE:
            d = Deferred()
            d.errback(AuthdError(f"a request of {len(message)} bytes", 1725))
            return d
        exchange = _AuthdExchange(message)
        connecting = connectProtocol(self._endpoint, exchange)

        def connectFailed(failure):
            if not exchange.answer.called:
                exchange.answer.errback(AuthdError(failure.getErrorMessage(), AUTHD_DOWN))

        connecting.addCallbacks(lambda _: None, connectFailed)
        seconds = self.timeout if timeout is None else timeout

        def timedOut(result, timeout):
            connecting.cancel()
            raise AuthdError(f"no answer within {timeout:g}s", AUTHD_DOWN)

        return exchange.answer.addTimeout(seconds, self._clock, onTimeoutCancel=timedOut)

    def call(self, function, arguments, timeout=None):
        """
        Call an authd function.

        @return: a Deferred firing with the answer's C{data}, or failing
            with an L{AuthdError} carrying authd's code and message.
        """
        d = self.request({"function": function, "arguments": arguments}, timeout)
        return d.addCallback(_data)

    def add(self, name, ip="any", groups=None, agentId=None, key=None, keyHash=None,
            timeout=None):
        """
        Register an agent (authd picks the ID when C{agentId} is L{None}).

        @param groups: group names, or L{None}.
        @return: a Deferred firing with C{{"id", "name", "ip", "key"}}.
        """
        arguments = {"name": name, "ip": ip}
        if groups:
            arguments["groups"] = ",".join(groups)
        if agentId is not None:
            arguments["id"] = agentId
        if key is not None:
            arguments["key"] = key
        if keyHash is not None:
            arguments["key_hash"] = keyHash
        return self.call("add", arguments, timeout)

    def remove(self, agentId, purge=False, timeout=None):
        """
        Remove an agent.
        """
        return self.call("remove", {"id": agentId, "purge": purge}, timeout)

    def get(self, agentId, timeout=None):
        """
        An agent's C{{"id", "name", "ip", "key"}}.
        """
        return self.call("get", {"id": agentId}, timeout)


def _data(raw):
    try:
        answer = json.loads(raw)
    except ValueError:
        raise AuthdError(f"an answer that is not JSON: {raw[:80]!r}", 1725) from None
    if not isinstance(answer, dict) or type(answer.get("error")) is not int:
        raise AuthdError(f"an unexpected answer: {raw[:80]!r}", 1725)
    if answer["error"] != 0:
        message = answer.get("message")
        raise AuthdError(message if isinstance(message, str) else "authd error",
                         answer["error"])
    return answer.get("data")
