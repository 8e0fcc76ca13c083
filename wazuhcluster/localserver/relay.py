# -*- test-case-name: tests.test_localserver_relay -*-
"""
C{sendsync} across the cluster: a daemon of a worker (authd enrolling or
removing an agent) asks the same daemon of the master, whose answer goes
back unchanged (WAZUH.md section 7.1).

  - L{relayToMaster} (worker): one L{SendSync} over the cluster connection,
    bounded in time;
  - L{DaemonRelay} (master): checks the request (a known daemon, a JSON
    object of bounded size), calls the daemon's local socket
    (C{queue/sockets/auth} with L{AuthdClient}) and answers its raw reply;
    requests in progress are bounded, per worker and in all.

Every failure is a declared L{RelayFailed} with Wazuh's code and text
(C{Error 1726 - Wazuh authd is not running: ...}).
"""

import json

from twisted.internet.defer import CancelledError, TimeoutError, fail
from twisted.internet.error import ConnectionClosed

from wazuhcluster.commands import InternalError, RelayFailed, SendSync
from wazuhcluster.errors import ClusterError
from wazuhcluster.wazuhdb.authd import AuthdClient

#: The largest daemon request relayed (authd's requests are a few hundred
#: bytes; one AMP value holds at most 65 535).
MAX_MESSAGE = 60000

#: The largest answer relayed back (one AMP value).
MAX_ANSWER = 65535

#: The daemons whose requests the master relays.
DAEMONS = ("authd",)

#: Requests in progress on the master: per worker, and in all.
MAX_PER_WORKER = 16
MAX_IN_PROGRESS = 64

#: Seconds a worker waits for the master's answer.
RELAY_TIMEOUT = 60.0


def relayFailed(code, text):
    return RelayFailed(f"Error {code} - {text}")


def checkedRequest(daemonName, message):
    """
    Check a daemon request received from a worker or a local client.

    @param message: the request, L{bytes} of a JSON object.
    @raise RelayFailed: an unknown daemon, a request too large, or not a
        JSON object.
    """
    if daemonName not in DAEMONS:
        raise relayFailed(3000, f"sendsync to daemon {daemonName[:40]!r} is not supported: "
                                f"only {', '.join(DAEMONS)}")
    if len(message) > MAX_MESSAGE:
        raise relayFailed(3050, f"a sendsync request of {len(message)} bytes "
                                f"(at most {MAX_MESSAGE})")
    try:
        value = json.loads(message)
    except (UnicodeDecodeError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise relayFailed(3036, "JSON couldn't be loaded: the sendsync message is not a "
                                "JSON object")


def relayToMaster(connection, daemonName, message, clock, timeout=RELAY_TIMEOUT):
    """
    Send a daemon request to the master (worker side).

    @return: a Deferred firing with the daemon's raw answer (L{bytes}), or
        failing with L{RelayFailed}.
    """
    try:
        checkedRequest(daemonName, message)
    except RelayFailed as error:
        return fail(error)
    d = connection.callRemote(SendSync, daemon_name=daemonName, message=message)
    d.addTimeout(timeout, clock)
    d.addCallbacks(lambda answer: answer["answer"], _relayError)
    return d


def _relayError(failure):
    if failure.check(RelayFailed):
        return failure
    if failure.check(TimeoutError, CancelledError):
        raise relayFailed(3020, "Timeout sending request: sendsync")
    if failure.check(ConnectionClosed):
        raise relayFailed(3023, "Worker node is not connected to master")
    if failure.check(InternalError):
        raise relayFailed(1000, f"the master failed: {failure.getErrorMessage()}")
    raise relayFailed(3018, f"Error sending request: {failure.getErrorMessage()}")


class DaemonRelay:
    """
    The master's side: hands a worker's daemon request to the master's
    daemon.
    """

    def __init__(self, home, reactor, log, authd=None, maxPerWorker=MAX_PER_WORKER,
                 maxInProgress=MAX_IN_PROGRESS):
        """
        @param authd: the L{AuthdClient} of the master's authd (by default
            the one of C{home}'s C{queue/sockets/auth}).
        """
        self.log = log
        self.authd = authd if authd is not None else AuthdClient.forHome(home, reactor)
        self.maxPerWorker = maxPerWorker
        self.maxInProgress = maxInProgress
        self.inProgress = {}

    def relay(self, workerName, daemonName, message):
        """
        Relay one request of worker C{workerName}.

        @return: a Deferred firing with the daemon's raw answer, or failing
            with L{RelayFailed}.
        """
        try:
            checkedRequest(daemonName, message)
            self._reserve(workerName)
        except RelayFailed as error:
            self.log.error("Could not relay a request of {worker} to {daemon}: {error}",
                           worker=workerName, daemon=daemonName[:40], error=str(error))
            return fail(error)
        d = self.authd.request(message)
        d.addCallbacks(self._answered, self._failed, (workerName, daemonName), None,
                       (workerName, daemonName))
        d.addBoth(self._release, workerName)
        return d

    def _reserve(self, workerName):
        if sum(self.inProgress.values()) >= self.maxInProgress:
            raise relayFailed(3051, f"too many sendsync requests in progress "
                                    f"(at most {self.maxInProgress})")
        if self.inProgress.get(workerName, 0) >= self.maxPerWorker:
            raise relayFailed(3051, f"too many sendsync requests in progress from "
                                    f"{workerName} (at most {self.maxPerWorker})")
        self.inProgress[workerName] = self.inProgress.get(workerName, 0) + 1

    def _release(self, result, workerName):
        self.inProgress[workerName] -= 1
        if not self.inProgress[workerName]:
            del self.inProgress[workerName]
        return result

    def _answered(self, answer, workerName, daemonName):
        if len(answer) > MAX_ANSWER:
            raise relayFailed(3050, f"{daemonName} answered {len(answer)} bytes "
                                    f"(at most {MAX_ANSWER})")
        self.log.debug("Relayed a request of {worker} to {daemon}.", worker=workerName,
                       daemon=daemonName)
        return answer

    def _failed(self, failure, workerName, daemonName):
        error = failure.value
        if not isinstance(error, ClusterError):
            error = ClusterError(failure.getErrorMessage(), 1000)
        self.log.error("Could not relay a request of {worker} to {daemon}: {error}",
                       worker=workerName, daemon=daemonName, error=str(error))
        raise RelayFailed(str(error))
