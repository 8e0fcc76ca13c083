# -*- test-case-name: tests.test_endtoend -*-
"""
A service that listens on a server endpoint while it runs, failing the start
loudly when the address cannot be bound.
"""

import sys

from twisted.application.service import Service

from wazuhcluster.errors import StartupError
from wazuhcluster.logs import ClusterLogger


class ListeningService(Service):
    """
    Listen with C{factory} on C{endpoint} while running.

    @ivar port: the listening port once started.
    @ivar onListening: called with the port once it listens.
    """

    def __init__(self, endpoint, factory, onListening=None, stderr=None, log=None):
        self.endpoint = endpoint
        self.factory = factory
        self.onListening = onListening
        self.port = None
        self._stderr = stderr
        self.log = log if log is not None else ClusterLogger(
            "Cluster", "Main", namespace="wazuhcluster.listening")

    def startService(self):
        """
        Listen now; if the address cannot be bound, say why in one line (on
        stderr and in the log) and stop the start with L{StartupError}.
        """
        super().startService()
        failures = []
        d = self.endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            self.running = 0
            reason = failures[0].getErrorMessage()
            self.log.error("Cannot start: {reason}", reason=reason)
            (self._stderr or sys.stderr).write(f"Cannot start: {reason}\n")
            raise StartupError()

    def _listening(self, port):
        self.port = port
        if self.onListening is not None:
            self.onListening(port)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
