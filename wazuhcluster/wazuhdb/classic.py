# -*- test-case-name: tests.test_wazuhdb_client -*-
"""
A client of wazuh-db's classic socket, C{queue/db/wdb}: each request is a
4-byte little-endian length and UTF-8 text (C{global get-agent-info 1}),
each answer the same framing around C{ok <json>}, C{due <json>} (more
follows: ask again) or C{err <message>}.

Asynchronous, never blocking the reactor: a small pool of connections,
each carrying one request at a time (wazuh-db answers a connection's
requests in order; one slow answer therefore delays only the requests of
its own connection, and other callers get another connection). Every
request has a timeout; a request that times out closes its connection (its
late answer can never be taken for another's), and the next request opens
a new one. Answers are bounded in size. Failures are L{WazuhDBError}s with
Wazuh's codes; none is fatal to the client.
"""

import json
from collections import deque

from attrs import define, field
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import IntNStringReceiver

from wazuhcluster.wazuhdb.errors import (
    CONNECT_ERROR,
    INCOMPLETE_ERROR,
    JSON_ERROR,
    RETRIEVE_ERROR,
    TIMEOUT_ERROR,
    TOO_LARGE_ERROR,
    WazuhDBError,
)

#: Where wazuh-db listens, under the node home.
WDB_SOCKET = "queue/db/wdb"

#: Longest request wazuh-db reads (OS_MAXSTR).
MAX_REQUEST = 65536

#: Default bound of an answer. wazuh-db pages its answers under 64 KiB.
MAX_ANSWER = 1024 * 1024

#: Default seconds a request may take, waiting for a connection included.
DEFAULT_TIMEOUT = 30.0

#: The statuses of an answer.
STATUSES = ("ok", "due", "err")


@define
class _Request:
    text: bytes
    deferred: Deferred
    timer: object = None
    connection: object = None


class _Connection(IntNStringReceiver):
    """
    One connection to wazuh-db, carrying one request at a time.
    """

    structFormat = "<I"
    prefixLength = 4

    def __init__(self, client, maxAnswer):
        self.client = client
        self.MAX_LENGTH = maxAnswer
        self.request = None

    def stringReceived(self, data):
        self.client._answered(self, data)

    def lengthLimitExceeded(self, length):
        self.client._tooLarge(self, length)

    def connectionLost(self, reason):
        self.client._lost(self, reason)


@define
class WazuhDBClient:
    """
    The client of one wazuh-db classic socket.

    @ivar timeout: default seconds per request.
    @ivar maxConnections: connections open at most at once.
    @ivar maxQueued: requests waiting for a connection at most (more fail
        at once).
    """

    _endpoint: object
    _clock: object
    timeout: float = DEFAULT_TIMEOUT
    maxAnswer: int = MAX_ANSWER
    maxConnections: int = 4
    maxQueued: int = 10000
    _idle: list = field(factory=list, init=False)
    _connecting: int = field(default=0, init=False)
    _busy: set = field(factory=set, init=False)
    _queue: deque = field(factory=deque, init=False)
    _closed: bool = field(default=False, init=False)

    @classmethod
    def forHome(cls, home, reactor=None, **kwargs):
        """
        The client of the wazuh-db of a node home (C{queue/db/wdb}).

        @type home: L{wazuhcluster.home.NodeHome}
        """
        if reactor is None:
            from twisted.internet import reactor
        endpoint = UNIXClientEndpoint(reactor, home.child(WDB_SOCKET).path)
        return cls(endpoint, reactor, **kwargs)

    # -- requests --------------------------------------------------------------

    def query(self, command, timeout=None):
        """
        Send one command.

        @type command: L{str}
        @return: a Deferred firing with C{(status, payload)}, both L{str}
            (status C{ok}, C{due} or C{err}; payload possibly empty), or
            failing with a L{WazuhDBError}: 2005 (cannot connect), 2009
            (answer over C{maxAnswer}), 2010 (connection lost before the
            answer), 2014 (timeout), 2007 (anything else).
        """
        if self._closed:
            return _fail(WazuhDBError("the client is closed", CONNECT_ERROR))
        text = command.encode("utf-8")
        if len(text) > MAX_REQUEST:
            return _fail(WazuhDBError(f"request of {len(text)} bytes, over {MAX_REQUEST}",
                                      RETRIEVE_ERROR))
        if len(self._queue) >= self.maxQueued:
            return _fail(WazuhDBError("too many requests waiting", RETRIEVE_ERROR))
        request = _Request(text, Deferred(lambda d: self._cancel(request)))
        seconds = self.timeout if timeout is None else timeout
        request.timer = self._clock.callLater(seconds, self._timedOut, request, seconds)
        self._queue.append(request)
        self._dispatch()
        return request.deferred

    def run(self, command, timeout=None):
        """
        Send one command whose answer is not paged.

        @return: a Deferred firing with the decoded JSON of an C{ok} answer
            (L{None} for a bare C{ok}), or failing with a L{WazuhDBError}:
            2003 with wazuh-db's message for C{err}, 2007 for C{due}.
        """
        return self.query(command, timeout).addCallback(_decoded, command)

    @inlineCallbacks
    def runPaged(self, makeCommand, nextCursor, cursor=0, maxPages=100000, timeout=None):
        """
        Send a paged command until wazuh-db answers C{ok}.

        @param makeCommand: C{makeCommand(cursor)} gives the command text.
        @param nextCursor: C{nextCursor(page, cursor)} gives the cursor of
            the next command after a C{due} page; it must move.
        @return: a Deferred firing with the decoded pages, in order.
        """
        pages = []
        while True:
            status, payload = yield self.query(makeCommand(cursor), timeout)
            if status == "err":
                raise WazuhDBError(payload)
            pages.append(_parse(payload))
            if status == "ok":
                return pages
            following = nextCursor(pages[-1], cursor)
            if following is None or following == cursor or len(pages) >= maxPages:
                raise WazuhDBError(f"paging of {makeCommand(cursor)[:60]!r} does not advance",
                                   RETRIEVE_ERROR)
            cursor = following

    def close(self):
        """
        Close every connection; requests in progress fail.

        @return: a Deferred firing once closed.
        """
        self._closed = True
        while self._queue:
            self._fail(self._queue.popleft(), WazuhDBError("the client is closed",
                                                           CONNECT_ERROR))
        for connection in list(self._idle) + list(self._busy):
            connection.transport.loseConnection()
        self._idle.clear()
        return succeed(None)

    # -- connections -----------------------------------------------------------

    def _dispatch(self):
        while self._queue and self._idle:
            connection = self._idle.pop()
            self._send(connection, self._queue.popleft())
        while (self._queue and not self._closed
               and len(self._busy) + len(self._idle) + self._connecting < self.maxConnections
               and self._connecting < len(self._queue)):
            self._connect()

    def _connect(self):
        self._connecting += 1
        factory = Factory.forProtocol(lambda: _Connection(self, self.maxAnswer))
        d = self._endpoint.connect(factory)

        def connected(connection):
            self._connecting -= 1
            if self._closed:
                connection.transport.loseConnection()
                return
            self._idle.append(connection)
            self._dispatch()

        def failed(failure):
            self._connecting -= 1
            if self._queue:
                self._fail(self._queue.popleft(), WazuhDBError(failure.getErrorMessage(),
                                                               CONNECT_ERROR))
            self._dispatch()

        d.addCallbacks(connected, failed)

    def _send(self, connection, request):
        request.connection = connection
        connection.request = request
        self._busy.add(connection)
        connection.sendString(request.text)

    def _answered(self, connection, data):
        request, connection.request = connection.request, None
        self._busy.discard(connection)
        if request is None:
            # An answer nobody asked for: the stream cannot be trusted.
            connection.transport.abortConnection()
            return
        self._idle.append(connection)
        text = data.decode("utf-8", errors="replace")
        status, _, payload = text.partition(" ")
        if status not in STATUSES:
            self._fail(request, WazuhDBError(f"unexpected answer {text[:80]!r}", RETRIEVE_ERROR))
        else:
            self._succeed(request, (status, payload))
        self._dispatch()

    def _tooLarge(self, connection, length):
        request = connection.request
        connection.transport.abortConnection()
        if request is not None:
            self._fail(request, WazuhDBError(f"an answer of {length} bytes", TOO_LARGE_ERROR))

    def _lost(self, connection, reason):
        self._busy.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        request, connection.request = connection.request, None
        if request is not None:
            self._fail(request, WazuhDBError(
                f"connection lost before the answer ({reason.getErrorMessage()})",
                INCOMPLETE_ERROR))
        self._dispatch()

    def _timedOut(self, request, seconds):
        request.timer = None
        self._drop(request)
        self._fail(request, WazuhDBError(f"no answer within {seconds:g}s", TIMEOUT_ERROR))

    def _cancel(self, request):
        self._drop(request)
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        request.timer = None

    def _drop(self, request):
        """
        Forget a request that will not be answered: out of the queue, or
        its connection closed (a late answer must not reach anyone).
        """
        if request in self._queue:
            self._queue.remove(request)
        connection = request.connection
        if connection is not None and connection.request is request:
            connection.request = None
            self._busy.discard(connection)
            connection.transport.abortConnection()

    def _succeed(self, request, result):
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        if not request.deferred.called:
            request.deferred.callback(result)

    def _fail(self, request, error):
        if request.timer is not None and request.timer.active():
            request.timer.cancel()
        if not request.deferred.called:
            request.deferred.errback(error)


def _fail(error):
    d = Deferred()
    d.errback(error)
    return d


def _parse(payload):
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        raise WazuhDBError(f"{payload[:80]!r}", JSON_ERROR) from None


def _decoded(answer, command):
    status, payload = answer
    if status == "err":
        raise WazuhDBError(payload)
    if status == "due":
        raise WazuhDBError(f"paged answer to {command[:60]!r}", RETRIEVE_ERROR)
    return _parse(payload)
