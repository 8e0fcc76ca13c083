# -*- test-case-name: tests.test_endtoend -*-
"""
A service that listens on a server endpoint while it runs, failing the start
loudly when the address cannot be bound.
"""

from twisted.application.service import Service


class ListeningService(Service):
    """
    Listen with C{factory} on C{endpoint} while running.

    @ivar port: the listening port once started.
    @ivar onListening: called with the port once it listens.
    """

    def __init__(self, endpoint, factory, onListening=None):
        self.endpoint = endpoint
        self.factory = factory
        self.onListening = onListening
        self.port = None

    def startService(self):
        super().startService()
        failures = []
        d = self.endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            self.running = 0
            failures[0].raiseException()

    def _listening(self, port):
        self.port = port
        if self.onListening is not None:
            self.onListening(port)

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
