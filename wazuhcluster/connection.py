# -*- test-case-name: tests.test_hello,tests.test_protocol_errors -*-
"""
What both ends of a cluster connection share: AMP with one chain of
responders (the connection's own, then its sessions'), strict handling of
whatever the peer sends, and bounded buffering.

Rules (DESIGN.md, "Protocol rules"):

  - before the hello succeeded, at most L{PRE_HELLO_BYTES} bytes are read;
    after it, no single box may exceed L{MAX_BOX_BYTES};
  - a command nobody answers here (a command of the other direction, an
    unknown one, AMP's own C{StartTLS}), an answer to no question asked, and
    a box that is neither are protocol violations: one log line, and this
    connection closes;
  - arguments that do not parse (C{index='abc'}, a 5 000-digit integer,
    bytes that are not UTF-8) get the declared error L{BadRequest}, which
    also closes the connection, and one log line;
  - a responder's own unexpected failure is logged and answered with the
    declared L{InternalError}; the connection stays.

No undeclared exception ever reaches AMP.
"""

from types import MethodType

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import LogLevel
from twisted.protocols import amp
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.reflect import accumulateClassDict
from zope.interface import implementer

from wazuhcluster.commands import BadRequest, InternalError
from wazuhcluster.session import IPeer

#: Bytes a connection may send before its hello succeeded.
PRE_HELLO_BYTES = 16 * 1024

#: The largest box accepted after the hello (a FileData carries 4 values of
#: 60 kB: 240 kB plus keys).
MAX_BOX_BYTES = 512 * 1024

#: Answers waiting for the transport to drain, at most; a peer that keeps
#: asking without reading breaks the protocol.
MAX_WAITING_ANSWERS = 64

#: AMP's own commands that a cluster connection never answers.
_REFUSED = frozenset({b"StartTLS"})

#: The longest peer-supplied name shown in a log line.
SHOWN = 80


def shown(value):
    """
    A peer-supplied value as a log line may show it: its C{repr}, cut short.
    """
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


def _fatalErrors(commandClass):
    """
    The fatal errors of C{commandClass}, its bases' included.
    """
    fatal = {}
    accumulateClassDict(commandClass, "fatalErrors", fatal)
    return fatal


def _responderOf(locator, name):
    """
    The command class and bound method answering C{name} on C{locator}
    (an L{amp.CommandLocator}), or L{None}.
    """
    entry = getattr(type(locator), "_commandDispatch", {}).get(name)
    if entry is None:
        return None
    commandClass, function = entry
    return commandClass, MethodType(function, locator)


@implementer(IPeer, IPushProducer)
class ClusterConnection(amp.AMP):
    """
    One end of a cluster connection.

    @ivar name: the peer's node name once the hello succeeded, else L{None}.
    @ivar sessions: the L{wazuhcluster.session.SessionGroup} of this
        connection once the hello succeeded, else L{None}.
    @ivar log: the logger of this connection.
    """

    def __init__(self, log):
        super().__init__()
        self.name = None
        self.sessions = None
        self.log = log
        self._boxBytes = 0
        self._closing = False
        self._paused = False
        self._writable = []

    def makeConnection(self, transport):
        super().makeConnection(transport)
        # Backpressure is read on the transport under TLS: TLS passes what
        # it is given down at once, and it would not close cleanly while a
        # producer is registered with it.
        target = transport
        if isinstance(transport, TLSMemoryBIOProtocol) and transport.transport is not None:
            target = transport.transport
        register = getattr(target, "registerProducer", None)
        if register is not None:
            try:
                register(self, True)
            except RuntimeError:
                pass

    def close(self):
        """
        Close this connection cleanly (the peer sees the end, not an error).
        """
        self._closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    # -- backpressure ------------------------------------------------------------

    def pauseProducing(self):
        """
        The transport's buffer is full.
        """
        self._paused = True

    def resumeProducing(self):
        """
        The transport drained: let the waiting answers go.
        """
        self._paused = False
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            if self._paused:
                self._writable.append(waiter)
            else:
                waiter.callback(None)

    def stopProducing(self):
        self._paused = True

    def whenWritable(self):
        """
        @return: a Deferred firing once the transport takes more bytes.
        """
        if not self._paused:
            return succeed(None)
        if len(self._writable) >= MAX_WAITING_ANSWERS:
            self.violation(f"more than {MAX_WAITING_ANSWERS} requests while not "
                           "reading the answers")
            return fail(BadRequest("too many requests waiting"))
        d = Deferred()
        self._writable.append(d)
        return d

    def connectionLost(self, reason):
        # Answers still waiting for the transport will never be sent.
        self._writable = []
        self._closing = True
        super().connectionLost(reason)

    # -- receiving ---------------------------------------------------------------

    @property
    def authenticated(self):
        return self.sessions is not None

    def dataReceived(self, data):
        self._boxBytes += len(data)
        if not self.authenticated and self._boxBytes > PRE_HELLO_BYTES:
            return self.violation(
                f"more than {PRE_HELLO_BYTES} bytes before a successful hello")
        if self._boxBytes > MAX_BOX_BYTES:
            return self.violation(f"a box larger than {MAX_BOX_BYTES} bytes")
        if self._closing:
            return None
        return super().dataReceived(data)

    def ampBoxReceived(self, box):
        if self.authenticated:
            self._boxBytes = 0
        if amp.ANSWER in box or amp.ERROR in box:
            tag = box[amp.ANSWER] if amp.ANSWER in box else box[amp.ERROR]
            if tag not in self._outstandingRequests:
                return self.violation(f"an answer to no question ({shown(tag)})")
            if amp.ANSWER not in box and not (amp.ERROR_CODE in box
                                              and amp.ERROR_DESCRIPTION in box):
                return self.violation("an error answer without its code or description")
        elif amp.COMMAND not in box:
            return self.violation("a box that is neither a command nor an answer")
        return super().ampBoxReceived(box)

    def locateResponder(self, name):
        """
        This connection's responders, then its sessions'; anything else is a
        violation.
        """
        if self._closing:
            return None
        found = None
        if name not in _REFUSED:
            found = _responderOf(self, name)
            if found is None and self.sessions is not None:
                for session in self.sessions.sessions:
                    locator = session.locator
                    if locator is not None:
                        found = _responderOf(locator, name)
                        if found is not None:
                            break
        if found is None:
            self.violation(self.refusal(name))
            return None
        return lambda box: self._serve(name, box, *found)

    def refusal(self, name):
        """
        Why command C{name} has no responder here (for the log line).
        """
        return f"unknown or wrong-direction command {shown(name)}"

    def _serve(self, name, box, commandClass, method):
        """
        Parse, run and answer one command, every failure declared.
        """
        if amp.ASK not in box:
            self.violation(f"command {shown(name)} without a request tag")
            return fail(BadRequest("every command needs an answer"))
        try:
            arguments = commandClass.parseArguments(box, self)
        except Exception as error:
            reason = f"malformed arguments of {shown(name)}: {type(error).__name__}"
            self.log.warn("Refused a command from {peer}: {reason}. Closing connection.",
                          peer=self.peerDescription(), reason=reason)
            self._closing = True
            return fail(amp.RemoteAmpError(b"BAD_REQUEST", reason, fatal=True))
        d = maybeDeferred(method, **arguments)
        d.addCallback(lambda answer: commandClass.makeResponse(answer, self))
        d.addErrback(self._answerError, commandClass, name)
        return d

    def _answerError(self, failure, commandClass, name):
        """
        Turn a responder's failure into a declared error answer.
        """
        declared = failure.check(*commandClass.allErrors)
        if declared is not None:
            code = commandClass.allErrors[declared]
            return Failure(amp.RemoteAmpError(
                code, str(failure.value), declared in _fatalErrors(commandClass),
                local=failure))
        self.log.failure("Error answering {command} from {peer}", failure,
                         level=LogLevel.error, command=shown(name),
                         peer=self.peerDescription())
        return Failure(amp.RemoteAmpError(
            InternalError.code, "Error 1000 - Wazuh Internal Error", False, local=failure))

    # -- IPeer -------------------------------------------------------------------

    def peerDescription(self):
        """
        The peer as log lines name it: its node name once known, else its
        address.
        """
        if self.name is not None:
            return self.name
        transport = self.transport
        if transport is None:
            return "(disconnected)"
        peer = transport.getPeer()
        return f"('{getattr(peer, 'host', peer)}', {getattr(peer, 'port', '?')})"

    def violation(self, reason):
        """
        The peer broke the protocol: log why (once) and close.
        """
        if self._closing:
            return None
        self._closing = True
        self.log.warn("Protocol violation from {peer}: {reason}. Closing connection.",
                      peer=self.peerDescription(), reason=reason)
        if self.transport is not None:
            self.transport.abortConnection()
        return None

    def disconnect(self):
        """
        Drop this connection at once.
        """
        self._closing = True
        if self.transport is not None:
            self.transport.abortConnection()
