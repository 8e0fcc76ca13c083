# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
A client of wazuh-db's HTTP API, HTTP/1.1 over the UNIX socket
C{queue/sockets/wdb-http.sock} (C{http://localhost/v1/...}), with
L{twisted.web.client.Agent} on a UNIX endpoint.

Every request has a timeout and a bound on the answer's body. Failures are
L{WazuhDBError}s with the codes of Wazuh's own C{WazuhDBHTTPClient}: 2011
(cannot connect), 2012 (an HTTP error status, with the body), 2013 (the
request failed), 2014 (timeout), and 2009 (a body over the bound).
"""

import json

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from wazuhcluster.wazuhdb.errors import (
    HTTP_CONNECT_ERROR,
    HTTP_SEND_ERROR,
    HTTP_STATUS_ERROR,
    JSON_ERROR,
    TIMEOUT_ERROR,
    TOO_LARGE_ERROR,
    WazuhDBError,
)

#: Where the HTTP API listens, under the node home.
WDB_HTTP_SOCKET = "queue/sockets/wdb-http.sock"

#: The URL prefix (the host is not used on a UNIX socket).
API_URL = b"http://localhost/v1"

#: Default bound of a body: C{GET /v1/agents/sync} lists every marked
#: agent in one answer.
MAX_BODY = 256 * 1024 * 1024

DEFAULT_TIMEOUT = 30.0


@implementer(IAgentEndpointFactory)
class _OneEndpoint:
    def __init__(self, endpoint):
        self._endpoint = endpoint

    def endpointForURI(self, uri):
        return self._endpoint


@implementer(IBodyProducer)
class _BytesBody:
    """
    A request body already in memory, written at once.
    """

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class _BoundedBody(Protocol):
    """
    Collect a response body of at most C{limit} bytes.
    """

    def __init__(self, limit):
        self._limit = limit
        self._parts = []
        self._size = 0
        self.done = Deferred(lambda d: self._stop())

    def _stop(self):
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data):
        if self.done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._stop()
            self.done.errback(WazuhDBError(f"a body of over {self._limit} bytes",
                                           TOO_LARGE_ERROR))
            return
        self._parts.append(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(WazuhDBError(f"body not received: {reason.getErrorMessage()}",
                                           HTTP_SEND_ERROR))


class WazuhDBHTTPClient:
    """
    The client of one wazuh-db HTTP API.
    """

    def __init__(self, endpoint, clock, timeout=DEFAULT_TIMEOUT, maxBody=MAX_BODY):
        """
        @param endpoint: the client endpoint of the socket.
        @param clock: the reactor (or a L{Clock} in tests) for timeouts.
        """
        self._clock = clock
        self._pool = HTTPConnectionPool(clock, persistent=False)
        self._agent = Agent.usingEndpointFactory(clock, _OneEndpoint(endpoint), pool=self._pool)
        self.timeout = timeout
        self.maxBody = maxBody

    @classmethod
    def forHome(cls, home, reactor=None, **kwargs):
        """
        The client of the HTTP API of a node home's wazuh-db.

        @type home: L{wazuhcluster.home.NodeHome}
        """
        if reactor is None:
            from twisted.internet import reactor
        endpoint = UNIXClientEndpoint(reactor, home.child(WDB_HTTP_SOCKET).path)
        return cls(endpoint, reactor, **kwargs)

    def request(self, method, path, body=None, timeout=None, maxBody=None):
        """
        Send one request.

        @param method: C{b"GET"} or C{b"POST"}.
        @param path: after C{/v1}, e.g. C{"/agents/sync"}.
        @param body: a JSON-serialisable value to POST, or L{None}.
        @return: a Deferred firing with the body (L{bytes}) of a 2xx answer.
        """
        headers = Headers({b"Accept": [b"application/json"]})
        producer = None
        if body is not None:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
            producer = _BytesBody(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        limit = self.maxBody if maxBody is None else maxBody
        url = API_URL + path.encode("ascii")
        d = self._agent.request(method, url, headers, producer)
        d.addCallback(self._response, limit)
        seconds = self.timeout if timeout is None else timeout
        d.addTimeout(seconds, self._clock,
                     onTimeoutCancel=lambda result, timeout: _timedOut(method, path, timeout))
        d.addErrback(_translated, method, path)
        return d

    def _response(self, response, limit):
        if response.length is not UNKNOWN_LENGTH and response.length > limit:
            discard = _BoundedBody(0)
            response.deliverBody(discard)
            discard.done.addErrback(lambda _: None)
            raise WazuhDBError(f"a body of {response.length} bytes", TOO_LARGE_ERROR)
        reader = _BoundedBody(limit)
        response.deliverBody(reader)
        if 200 <= response.code < 300:
            return reader.done

        def status(body):
            text = body[:4096].decode("utf-8", "replace")
            raise WazuhDBError(f"{response.code} {text}".strip(), HTTP_STATUS_ERROR)

        return reader.done.addCallback(status)

    def getJSON(self, path, timeout=None, maxBody=None):
        """
        C{GET} C{path} and decode its JSON body.
        """
        d = self.request(b"GET", path, timeout=timeout, maxBody=maxBody)
        return d.addCallback(_json)

    def postJSON(self, path, value, timeout=None, maxBody=None):
        """
        C{POST} C{value} as JSON to C{path}; decode the JSON answer (L{None}
        for an empty body).
        """
        d = self.request(b"POST", path, value, timeout=timeout, maxBody=maxBody)
        return d.addCallback(_json)

    def close(self):
        """
        Close cached connections.

        @return: a Deferred firing once closed.
        """
        return self._pool.closeCachedConnections()


def _timedOut(method, path, timeout):
    raise WazuhDBError(f"{method.decode()} {path}: no answer within {timeout:g}s", TIMEOUT_ERROR)


def _translated(failure, method, path):
    if failure.check(WazuhDBError):
        return failure
    what = f"{method.decode()} {path}: {failure.getErrorMessage()}"
    if failure.check(ConnectError):
        raise WazuhDBError(what, HTTP_CONNECT_ERROR)
    raise WazuhDBError(what, HTTP_SEND_ERROR)


def _json(body):
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise WazuhDBError(f"{body[:80]!r}", JSON_ERROR) from None
