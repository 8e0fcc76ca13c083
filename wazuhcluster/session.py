# -*- test-case-name: tests.test_session -*-
"""
Feature sessions (DESIGN.md, "Connections and feature sessions").

A connection is transport, hello and a list of sessions; it knows nothing of
any feature.  Each feature (keep-alive, integrity, agent info, agent groups)
is a service of the node providing L{IFeature}: for every authenticated
connection it builds one L{IFeatureSession}, which holds all the
per-connection state of the feature, answers the feature's commands (its
C{locator}), and whose C{stop()} fires only when every round, thread job and
disk operation it started has finished or unwound.

The node starts a connection's sessions after a successful hello (a
L{SessionGroup}), and on disconnect or replacement stops them and waits for
all of them before it cleans that peer's staging directory, releases what
they used, or (on a worker) reconnects.

L{ThreadQueue} is how a session runs blocking work: in a thread, one job at a
time, in order, and with a way to wait until the last one finished.
"""

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from wazuhcluster.errors import ClusterError


class IPeer(Interface):
    """
    The other end of one authenticated connection, as a session sees it.
    """

    name = Attribute("The peer's node name.")
    log = Attribute("A ClusterLogger tagged for this connection (C{Worker <name>}).")

    def callRemote(command, **arguments):
        """
        Send an AMP command to the peer.

        @return: a Deferred of the answer (failing when the connection goes).
        """

    def violation(reason):
        """
        The peer broke the protocol: log C{reason} once and close this
        connection (and only this one).
        """

    def disconnect():
        """
        Drop this connection at once (the peer went silent).
        """

    def whenWritable():
        """
        @return: a Deferred firing once the transport can take more bytes
            (answers to bulk requests wait for it: a peer that does not read
            cannot make this node buffer without bound).
        """


class IFeatureSession(Interface):
    """
    One feature's work on one authenticated connection.
    """

    locator = Attribute(
        "An C{amp.CommandLocator} answering this feature's commands on the "
        "connection, or None."
    )

    def start():
        """
        Begin: the hello succeeded and every session's responders are in
        place.
        """

    def stop():
        """
        The connection is gone or the node stops: stop starting work, cancel
        what can be cancelled.

        @return: a Deferred firing (never failing) once every round, thread
            job and disk operation this session started has finished or
            unwound.  Calling it again returns the same outcome.
        """

    def health():
        """
        @return: this session's fields of the peer's health status (the
            C{status} block of Wazuh's C{get_health}, WAZUH.md section 4.8),
            or an empty dict.
        """


class IFeature(Interface):
    """
    A feature of a node: one session per authenticated connection.
    """

    name = Attribute("The feature's name (C{keepalive}, C{integrity}...).")

    def sessionFor(peer):
        """
        @param peer: the L{IPeer} just authenticated.
        @return: its L{IFeatureSession}.
        """


class SessionGroup:
    """
    The sessions of one connection, consulted in order for responders,
    started and stopped together.
    """

    def __init__(self, sessions, log):
        """
        @param sessions: L{IFeatureSession}s, in feature order.
        @param log: where a session's failure to stop is reported.
        """
        self.sessions = list(sessions)
        self.log = log
        self._stopped = None

    def locateResponder(self, name):
        """
        The first session responder for command C{name}, or L{None}.
        """
        for session in self.sessions:
            locator = session.locator
            if locator is not None:
                responder = locator.locateResponder(name)
                if responder is not None:
                    return responder
        return None

    def start(self):
        """
        Start every session (unless they were already stopped).
        """
        if self._stopped is None:
            for session in self.sessions:
                session.start()

    def stop(self):
        """
        Stop every session.

        @return: a Deferred firing once all of them finished stopping (never
            failing: a session whose stop failed is logged).
        """
        if self._stopped is None:
            self._stopped = gatherResults(
                [maybeDeferred(session.stop).addErrback(self._stopFailed, session)
                 for session in self.sessions])
            self._stopped.addCallback(lambda _: None)
        return _follow(self._stopped)

    def _stopFailed(self, failure, session):
        self.log.failure("Error stopping {session!r}", failure, session=session)
        return None

    def health(self):
        """
        The merged health fields of every session.
        """
        merged = {}
        for session in self.sessions:
            merged.update(session.health())
        return merged


def _follow(d):
    """
    A new Deferred with C{d}'s outcome (so several callers can wait for one
    result without changing it).
    """
    follower = Deferred()

    def relay(result):
        if isinstance(result, Failure):
            follower.errback(result)
            return None
        follower.callback(result)
        return result

    d.addBoth(relay)
    return follower


class ThreadQueue:
    """
    Blocking jobs run in a thread, one at a time, in the order given.

    @ivar pending: jobs submitted and not finished.
    """

    def __init__(self, runInThread):
        """
        @param runInThread: C{deferToThread}-like: C{runInThread(f, *args)}
            returns a Deferred firing with C{f(*args)}.
        """
        self._runInThread = runInThread
        self._tail = succeed(None)
        self.pending = 0
        self._idleWaiters = []
        self._closed = False

    def run(self, f, *args, **kwargs):
        """
        Run C{f(*args, **kwargs)} in a thread after every job submitted
        before.

        @return: a Deferred of its result.
        """
        if self._closed:
            return fail(ClusterError("This session is stopping", 3023))
        self.pending += 1
        result = Deferred()

        def go(_):
            d = maybeDeferred(self._runInThread, f, *args, **kwargs)
            d.addBoth(done)
            return d.addBoth(lambda _: None)

        def done(outcome):
            self.pending -= 1
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
            if not self.pending:
                waiters, self._idleWaiters = self._idleWaiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return None

        self._tail.addCallback(go)
        return result

    def close(self):
        """
        Accept no more jobs (those submitted still run).
        """
        self._closed = True

    def idle(self):
        """
        @return: a Deferred firing once every job submitted so far finished.
        """
        if not self.pending:
            return succeed(None)
        d = Deferred()
        self._idleWaiters.append(d)
        return d


@implementer(IFeatureSession)
class NoSession:
    """
    A session with nothing to do (for features that have no work on some
    connections).
    """

    locator = None

    def start(self):
        pass

    def stop(self):
        return succeed(None)

    def health(self):
        return {}
