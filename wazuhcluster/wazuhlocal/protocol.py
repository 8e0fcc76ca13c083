# -*- test-case-name: tests.test_wazuhlocal_protocol -*-
"""
A Twisted protocol for both sides of Wazuh's local socket
(L{wazuhcluster.wazuhlocal.framing}).

Counters (Wazuh's C{Handler}): each side starts at a random 32-bit counter
and takes the next one for each request it sends; a reply reuses the
request's counter and has command C{ok} (raw payload; C{ok-m}/C{ok-c}, the
keep-alive answers, count as C{ok}) or C{err} (an exception,
L{wazuhcluster.wazuhlocal.wazuhjson}). A received counter that names none
of our requests in progress is a new request from the peer, whatever its
command: servers push C{dapi_res}, C{control_res}, C{new_str} or a bare
C{ok} (the answer of C{sendsync}) that way.

This protocol answers the commands every Wazuh handler answers (C{echo},
the keep-alive C{echo-c}, and the big strings C{new_str}, C{str_upd},
C{err_str}); every other request goes to its
L{wazuhcluster.wazuhlocal.handlers.ILocalHandler}, whose answer (or
exception) becomes the reply. Unknown commands get C{err}, but for an
unexpected C{ok} or C{err} (a reply nobody waits for), which gets nothing.

Bounds: those of L{FrameDecoder}; at most C{maxStrings} big strings of at
most C{maxStringBytes} together; at most C{maxInflight} requests of the peer
being handled at once; a started frame, or the next frame of a split
message, must arrive within C{payloadDeadline} seconds; with an C{idleTimeout}, a peer that sends
nothing for that long is disconnected. A breach closes the connection.
"""

import random
from collections import OrderedDict

from attrs import frozen
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel
from twisted.protocols.policies import TimeoutMixin

from wazuhcluster.errors import ClusterError
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.wazuhlocal.framing import (
    COUNTER_MODULUS,
    MAX_DIVIDED_MESSAGES,
    MAX_FRAME_PAYLOAD,
    MAX_MESSAGE_SIZE,
    REQUEST_CHUNK,
    FrameDecoder,
    FramingError,
    buildFrames,
)
from wazuhcluster.wazuhlocal.handlers import UnknownCommand
from wazuhcluster.wazuhlocal.strings import InStrings
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError, decodeError, encodeError

#: Reply commands that mean success.
OK_COMMANDS = frozenset([b"ok", b"ok-m", b"ok-c"])

#: Largest C{err} payload decoded (a longer one is kept as text).
MAX_ERROR_SIZE = 1024 * 1024

#: Counters of timed-out requests and notices remembered, to drop late
#: replies to them.
_REMEMBERED_COUNTERS = 1024


@frozen
class LocalLimits:
    """
    The bounds and timeouts of one connection (defaults: Wazuh's).
    """

    maxFramePayload: int = MAX_FRAME_PAYLOAD
    maxMessage: int = MAX_MESSAGE_SIZE
    maxDivided: int = MAX_DIVIDED_MESSAGES
    maxBuffered: int = MAX_MESSAGE_SIZE
    maxStrings: int = 10
    maxStringBytes: int = MAX_MESSAGE_SIZE
    maxInflight: int = 64
    chunkSize: int = REQUEST_CHUNK
    requestTimeout: float = 20.0
    payloadDeadline: float = 30.0
    idleTimeout: float = None


#: The limits of the local server: clients silent for 120 s are dropped
#: (WAZUH.md section 7.1; Wazuh's LocalClient sends C{echo-c} every 60 s).
SERVER_LIMITS = LocalLimits(idleTimeout=120.0)


def _connectionGone():
    return ClusterError("Error sending request: the connection is closed", 3018)


class WazuhLocalProtocol(Protocol, TimeoutMixin):
    """
    One connection of Wazuh's local socket (either side).

    @ivar handler: the L{wazuhcluster.wazuhlocal.handlers.ILocalHandler}.
    @ivar limits: the L{LocalLimits}.
    """

    def __init__(self, handler, clock=None, limits=None, log=None, rng=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.handler = handler
        self.limits = SERVER_LIMITS if limits is None else limits
        self.log = ClusterLogger("Local Server") if log is None else log
        self.callLater = clock.callLater
        self._clock = clock
        self._random = random.SystemRandom() if rng is None else rng
        self._decoder = FrameDecoder(
            self.limits.maxFramePayload,
            self.limits.maxMessage,
            self.limits.maxDivided,
            self.limits.maxBuffered,
        )
        self._counter = self._random.randrange(COUNTER_MODULUS)
        self._pending = {}
        self._dropReplies = OrderedDict()
        self._inbound = set()
        self._strings = InStrings(self.limits.maxMessage, self.limits.maxStrings,
                                  self.limits.maxStringBytes, self._random)
        self._deadline = None
        self._deadlineKind = None
        self.connected = False
        self._builtins = {
            b"echo": self._echo,
            b"echo-c": self._echo,
            b"new_str": self._strings.newString,
            b"str_upd": self._strings.update,
            b"err_str": self._strings.dropEmpty,
        }

    # -- connection ----------------------------------------------------------

    def connectionMade(self):
        self.connected = True
        self.setTimeout(self.limits.idleTimeout)
        self.handler.connectionMade(self)

    def connectionLost(self, reason):
        self.connected = False
        self.setTimeout(None)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        pending, self._pending = self._pending, {}
        for d, _, timer in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(_connectionGone())
        self._strings.clear()
        self.handler.connectionLost(self, reason)

    def timeoutConnection(self):
        self.log.info("Closing the connection of a local client idle for {seconds:.0f}s.",
                      seconds=self.limits.idleTimeout)
        self.transport.abortConnection()

    def _violation(self, error):
        self.log.error("Closing a local connection: {error}", error=str(error))
        self.connected = False
        self.transport.abortConnection()

    # -- receiving -----------------------------------------------------------

    def dataReceived(self, data):
        if not self.connected:
            return
        self.resetTimeout()
        before = self._decoder.framesCompleted
        try:
            messages = self._decoder.feed(data)
        except FramingError as e:
            self._violation(e)
            return
        for message in messages:
            if not self.connected:
                return
            self._messageReceived(message)
        self._watchDeadline(self._decoder.framesCompleted != before)

    def _watchDeadline(self, progressed):
        # Two waits are bounded: a started frame must be complete within
        # the deadline, and, between the frames of a split message (whose
        # first frames are held meanwhile), the next frame must start
        # within it.
        if self._decoder.frameStarted:
            kind = "frame"
        elif self._decoder.dividedInProgress:
            kind = "next"
        else:
            kind = None
        if self._deadline is not None and (progressed or kind != self._deadlineKind):
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None
        if self._deadline is None and kind is not None and self.connected:
            self._deadlineKind = kind
            self._deadline = self.callLater(self.limits.payloadDeadline, self._deadlinePassed)

    def _deadlinePassed(self):
        self._deadline = None
        self._violation(
            FramingError("incomplete message payload not received within deadline.")
        )

    def _messageReceived(self, message):
        pending = self._pending.pop(message.counter, None)
        if pending is not None:
            self._replyReceived(pending, message)
        elif self._dropReplies.pop(message.counter, None) is not None:
            pass  # the late reply to a request that timed out, or to a notice
        else:
            self._requestReceived(message)

    def _replyReceived(self, pending, message):
        d, command, timer = pending
        if timer.active():
            timer.cancel()
        if message.command in OK_COMMANDS:
            d.callback(message.payload)
        elif message.command == b"err":
            d.errback(decodeError(message.payload, maxSize=MAX_ERROR_SIZE))
        else:
            d.errback(
                WazuhRemoteError(3016, f"unknown response command {message.command!r} "
                                       f"to {command!r}")
            )

    def _requestReceived(self, message):
        counter, command = message.counter, message.command
        if len(self._inbound) >= self.limits.maxInflight:
            self._reply(counter, b"err", encodeError(
                ClusterError("Error sending request: too many requests in progress", 3018)))
            return
        self._inbound.add(counter)
        responder = self._builtins.get(command)
        if responder is not None:
            d = maybeDeferred(responder, message.payload)
        else:
            d = maybeDeferred(self.handler.requestReceived, self, command, message.payload)
        d.addCallbacks(self._answered, self._failed, (counter,), None, (counter, command))

    def _answered(self, result, counter):
        self._inbound.discard(counter)
        if result is None:
            return
        try:
            command, payload = result
            if isinstance(payload, str):
                payload = payload.encode("utf-8")
            if not isinstance(command, bytes) or not isinstance(payload, bytes):
                raise TypeError(f"invalid reply {result!r:.80}")
        except (TypeError, ValueError) as e:
            self.log.error("Invalid answer of a local handler: {error}", error=str(e))
            command, payload = b"err", encodeError(WazuhRemoteError(1000, str(e)))
        self._reply(counter, command, payload)

    def _failed(self, failure, counter, command):
        self._inbound.discard(counter)
        error = failure.value
        if isinstance(error, UnknownCommand) and (command in OK_COMMANDS or command == b"err"):
            # An answer nobody waits for (or a push this side does not
            # take) is never answered: two peers would bounce errors.
            self.log.debug("Dropped an unexpected {command!r}.", command=command)
            return
        if not isinstance(error, ClusterError):
            self.log.failure("Unhandled error processing request {command!r}",
                             failure, LogLevel.error, command=command)
            error = WazuhRemoteError(1000, str(error), "WazuhInternalError")
        elif not isinstance(error, UnknownCommand):
            self.log.debug("Error processing request {command!r}: {error}",
                           command=command, error=str(error))
        self._reply(counter, b"err", encodeError(error))

    def _reply(self, counter, command, payload):
        if not self.connected:
            return
        try:
            frames = buildFrames(counter, command, payload, self.limits.chunkSize)
        except FramingError as e:
            self.log.error("Cannot send a reply: {error}", error=str(e))
            frames = buildFrames(counter, b"err", encodeError(e), self.limits.chunkSize)
        self.transport.writeSequence(frames)

    # -- sending requests -----------------------------------------------------

    def _nextCounter(self):
        while True:
            self._counter = (self._counter + 1) % COUNTER_MODULUS
            counter = self._counter
            if (counter not in self._pending and counter not in self._inbound
                    and counter not in self._dropReplies):
                return counter

    def _remember(self, counter):
        self._dropReplies[counter] = True
        while len(self._dropReplies) > _REMEMBERED_COUNTERS:
            self._dropReplies.popitem(last=False)

    def sendRequest(self, command, payload=b"", timeout=None):
        """
        Send a request and wait for its reply.

        @type command: L{bytes}
        @type payload: L{bytes}
        @param timeout: seconds (the limits' C{requestTimeout} by default).
        @return: a Deferred firing with the reply's payload (L{bytes}), or
            failing with the L{WazuhRemoteError} of an C{err} reply,
            Wazuh's 3020 after C{timeout} (a late reply is dropped), or
            3018 when the connection is or gets closed.
        @raise FramingError: (in the Deferred) for an invalid command or
            an oversized payload.
        """
        if not self.connected:
            return _failed(_connectionGone())
        counter = self._nextCounter()
        try:
            frames = buildFrames(counter, command, payload, self.limits.chunkSize)
        except FramingError as e:
            return _failed(e)

        def cancel(d):
            entry = self._pending.pop(counter, None)
            if entry is not None:
                if entry[2].active():
                    entry[2].cancel()
                self._remember(counter)

        d = Deferred(cancel)
        if timeout is None:
            timeout = self.limits.requestTimeout
        timer = self.callLater(timeout, self._timedOut, counter)
        self._pending[counter] = (d, command, timer)
        self.transport.writeSequence(frames)
        return d

    def _timedOut(self, counter):
        entry = self._pending.pop(counter, None)
        if entry is not None:
            self._remember(counter)
            entry[0].errback(ClusterError(
                f"Timeout sending request: {entry[1].decode('ascii', 'replace')}", 3020))

    def sendNotice(self, command, payload=b""):
        """
        Send a request without waiting for a reply (what a server pushes to
        a client that may never answer, such as authd waiting for its
        C{sendsync} answer); a reply, if the peer sends one, is dropped.

        @raise FramingError: for an invalid command or an oversized payload.
        @raise ClusterError: 3018 when the connection is closed.
        """
        if not self.connected:
            raise _connectionGone()
        counter = self._nextCounter()
        frames = buildFrames(counter, command, payload, self.limits.chunkSize)
        self._remember(counter)
        self.transport.writeSequence(frames)

    def sendString(self, data, timeout=None):
        """
        Send a big string as Wazuh's C{send_string} does: C{new_str <len>}
        (the peer answers the string's id), then C{str_upd <id> <part>}
        until all is sent.

        @type data: L{bytes}
        @return: a Deferred firing with the id (L{bytes}), to be named by a
            following request (C{dapi_res <id>}).
        """
        piece = self.limits.chunkSize
        result = Deferred()

        def sendFrom(start, stringId):
            if start >= len(data):
                result.callback(stringId)
                return
            part = piece - len(stringId) - 1
            d = self.sendRequest(b"str_upd", stringId + b" " + data[start:start + part], timeout)
            d.addCallbacks(lambda _: sendFrom(start + part, stringId), result.errback)

        def created(stringId):
            if not stringId.isdigit() or len(stringId) > 10:
                raise WazuhRemoteError(3035, f"invalid string id {stringId[:20]!r}")
            sendFrom(0, stringId)

        d = self.sendRequest(b"new_str", str(len(data)).encode("ascii"), timeout)
        d.addCallback(created).addErrback(result.errback)
        return result

    # -- built-in commands ------------------------------------------------------

    def _echo(self, payload):
        return b"ok", payload

    def takeString(self, stringId):
        """
        Take (and forget) a big string the peer sent completely.

        @type stringId: L{bytes}
        @rtype: L{bytes}
        @raise ClusterError: 3035 for an unknown or incomplete string.
        """
        return self._strings.take(stringId)

    @property
    def stringsInProgress(self):
        """
        The number of big strings announced and not yet taken.
        """
        return len(self._strings)


def _failed(error):
    d = Deferred()
    d.errback(error)
    return d


class LocalServerFactory(Factory):
    """
    Build the connections of a local server: one handler per connection.
    """

    protocol = WazuhLocalProtocol

    def __init__(self, handlerFactory, clock=None, limits=SERVER_LIMITS, log=None):
        """
        @param handlerFactory: a callable returning a new
            L{wazuhcluster.wazuhlocal.handlers.ILocalHandler}.
        """
        self.handlerFactory = handlerFactory
        self.clock = clock
        self.limits = limits
        self.log = log

    def buildProtocol(self, addr):
        protocol = self.protocol(self.handlerFactory(), self.clock, self.limits, self.log)
        protocol.factory = self
        return protocol
