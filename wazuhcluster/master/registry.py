# -*- test-case-name: tests.test_hello,tests.test_duplicates -*-
"""
The master's registry of authenticated workers: one connection per worker
name, its sessions, and the order of what happens when a worker connects,
reconnects or goes.

  - A worker whose name is free is registered, its sessions built and
    started right after the hello answer left.
  - A newcomer claiming a registered name: the older connection is asked a
    L{Ping} with a short timeout.  It answers: the newcomer is refused (a
    copied home, two workers with one name), an ERROR on both sides.  It does
    not: it is half-open, dropped, and the newcomer replaces it once its
    sessions stopped.
  - A connection that goes: its sessions are stopped, and only once they all
    stopped is the worker's staging directory cleaned and the name free for
    a new connection's sessions.
"""

from twisted.internet.defer import Deferred, DeferredList, TimeoutError, succeed

from wazuhcluster.commands import HelloRejected, Ping
from wazuhcluster.health import workerStatus

#: Seconds an older connection has to answer the L{Ping} of the duplicate
#: check (at most half of C{communication.timeout_cluster_request}, the
#: newcomer's wait for its hello answer).
DUPLICATE_CHECK_TIMEOUT = 5.0


class WorkerRegistry:
    """
    Authenticated worker connections by name.
    """

    def __init__(self, master, duplicateTimeout=DUPLICATE_CHECK_TIMEOUT):
        self.master = master
        self.duplicateTimeout = duplicateTimeout
        self.workers = {}
        self._idle = {}

    def names(self):
        return sorted(self.workers)

    def connection(self, name):
        return self.workers.get(name)

    def health(self, name):
        """
        The full status block of worker C{name} (its sessions' fields over
        the defaults).
        """
        connection = self.workers[name]
        return workerStatus(connection.sessions.health())

    def session(self, name, feature):
        """
        The session of feature C{feature} on worker C{name}'s connection.
        """
        connection = self.workers[name]
        index = [f.name for f in self.master.features].index(feature)
        return connection.sessions.sessions[index]

    # -- arriving ------------------------------------------------------------------

    def authenticate(self, connection):
        """
        Register C{connection} (its hello checked out), checking an older
        connection of the same name first.

        @return: a Deferred firing once registered, or failing with
            L{HelloRejected}.
        """
        name = connection.name
        previous = self.workers.get(name)
        if previous is None or previous is connection:
            return self._register(connection)
        d = previous.callRemote(Ping)
        # Well within the worker's own wait for the hello answer.
        timeout = min(self.duplicateTimeout,
                      self.master.items.communication.timeout_cluster_request / 2 or
                      self.duplicateTimeout)
        d.addTimeout(timeout, self.master.clock)
        d.addCallbacks(self._previousAlive, self._previousDead,
                       (connection, previous), None, (connection, previous))
        return d

    def _previousAlive(self, answer, connection, previous):
        if connection.transport is None or self.workers.get(connection.name) is not previous:
            return self.authenticate(connection)
        previous.log.error(
            "Refused a second connection of {name} from {peer}: a worker with this "
            "name is connected from {other} and answers (two workers with one name, "
            "or a copied home?).", name=connection.name, peer=connection.peerAddress,
            other=previous.peerAddress)
        raise HelloRejected(
            f"Error 3028 - Worker node ID already exists: {connection.name} is connected "
            f"from {previous.peerAddress} and alive; give this worker another name")

    def _previousDead(self, failure, connection, previous):
        if self.workers.get(connection.name) is previous:
            reason = ("no answer in time" if failure.check(TimeoutError)
                      else failure.getErrorMessage())
            connection.log.warn(
                "Replacing the previous connection of {name} from {peer} ({reason}).",
                name=connection.name, peer=previous.peerAddress, reason=reason)
            previous.disconnect()
        return self._register(connection)

    def whenIdle(self, name):
        """
        @return: a Deferred firing once no earlier connection of C{name} has
            a session still stopping (and its staging directory is clean).
        """
        idle = self._idle.get(name)
        if idle is None:
            return succeed(None)
        follower = Deferred()
        idle.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    def _register(self, connection):
        waiter = Deferred()
        self.whenIdle(connection.name).addCallback(
            lambda _: self._registerNow(connection, waiter))
        return waiter

    def _registerNow(self, connection, waiter):
        if connection.transport is None or connection.lost:
            waiter.errback(HelloRejected("Error 3023 - The connection was lost"))
            return
        if not self.master.serving:
            # This master stopped serving while the hello was checked.
            waiter.errback(self.master.standby.refusal())
            return
        name = connection.name
        self.workers[name] = connection
        connection.sessions = self.master.sessionsFor(connection)
        kind = "Standby master" if connection.nodeType == "master" else "Worker"
        connection.log.info("{kind} {name} connected from {peer}.", kind=kind, name=name,
                            peer=connection.peerAddress)
        waiter.callback(None)

    def startSessions(self, connection):
        """
        The hello answer left: start the sessions of C{connection}.
        """
        if self.workers.get(connection.name) is connection and not connection.lost:
            connection.sessions.start()

    # -- leaving -------------------------------------------------------------------

    def gone(self, connection):
        """
        C{connection} closed: stop its sessions, then clean the staging
        directory of its worker.
        """
        name = connection.name
        if self.workers.get(name) is not connection:
            return
        del self.workers[name]
        previous = self.whenIdle(name)
        stopped = Deferred()
        self._idle[name] = stopped

        def stop(_):
            return connection.sessions.stop()

        def clean(_):
            return self.master.cleanStaging(name)

        def done(_):
            kind = "Standby master" if connection.nodeType == "master" else "Worker"
            connection.log.info("{kind} {name} disconnected.", kind=kind, name=name)
            if self._idle.get(name) is stopped:
                del self._idle[name]
            stopped.callback(None)

        connection.log.info("Cancelling pending tasks.")
        previous.addCallback(stop).addCallback(clean).addBoth(done)

    def stopAll(self):
        """
        Drop every worker and wait until all their sessions stopped and
        their staging directories are clean.
        """
        waits = []
        for name, connection in list(self.workers.items()):
            waits.append(connection.whenLost().addCallback(
                lambda _, name=name: self.whenIdle(name)))
            connection.disconnect()
        waits.extend(self.whenIdle(name) for name in list(self._idle))
        return DeferredList(waits, consumeErrors=True)
