# -*- test-case-name: tests.test_keepalive -*-
"""
The worker's keep-alive: proves the permanent connection is alive, and drops
it after too many failed attempts so the worker reconnects.
"""

from twisted.internet.defer import TimeoutError
from twisted.internet.task import LoopingCall

from wazuhcluster.commands import KeepAlive


class KeepAliveSender:
    """
    Sends L{KeepAlive} every C{worker.keep_alive} seconds on one connection.

    @ivar failures: consecutive failed keep-alives on the current connection.
    """

    def __init__(self, worker):
        self.worker = worker
        self.failures = 0
        self._loop = None
        self._connection = None

    @property
    def log(self):
        return self.worker.log.withSubtag("Keep Alive")

    def start(self, connection):
        """
        Start sending keep-alives over C{connection}.
        """
        self.stop()
        self.failures = 0
        self._connection = connection
        self._loop = LoopingCall(self.send)
        self._loop.clock = self.worker.clock
        self._loop.start(self.worker.items.worker.keep_alive, now=False)

    def stop(self):
        """
        Stop sending (the connection is gone).
        """
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._connection = None

    def send(self):
        """
        Send one keep-alive and account for its outcome; never fails.
        """
        connection = self._connection
        timeout = self.worker.items.communication.timeout_cluster_request
        d = connection.callRemote(KeepAlive)
        d.addTimeout(timeout, self.worker.clock)
        d.addCallbacks(self._succeeded, self._failed, errbackArgs=(connection,))
        return d

    def _succeeded(self, answer):
        self.failures = 0
        self.log.info("Successful response from master: {answer}", answer=answer["answer"])

    def _failed(self, failure, connection):
        self.failures += 1
        if failure.check(TimeoutError):
            error = "Error 3020 - Timeout sending request: keepalive"
        else:
            error = failure.getErrorMessage()
        self.log.error("Error sending keep alive: {error}", error=error)
        limit = self.worker.items.worker.max_failed_keepalive_attempts
        if self.failures >= limit and connection is self._connection:
            self.log.error("Maximum number of failed keep alives reached. Disconnecting.")
            self.stop()
            connection.transport.abortConnection()
