# -*- test-case-name: tests.test_keepalive -*-
"""
The master's keep-alive checker: drops workers that stopped talking.
"""

from twisted.application.service import Service
from twisted.internet.task import LoopingCall


class KeepAliveChecker(Service):
    """
    Every C{master.check_worker_lastkeepalive} seconds, disconnect each worker
    whose last keep-alive is older than
    C{master.max_allowed_time_without_keepalive}.
    """

    name = "keepalive-checker"

    def __init__(self, master):
        self.master = master
        self.log = master.log.withSubtag("Keep alive")
        self._loop = None

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.master.clock
        self._loop.start(self.master.items.master.check_worker_lastkeepalive, now=False)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def check(self):
        """
        Disconnect every worker silent for too long.
        """
        now = self.master.clock.seconds()
        limit = self.master.items.master.max_allowed_time_without_keepalive
        for name, connection in sorted(self.master.workers.items()):
            last = connection.status.last_keep_alive
            if last is not None and now - last > limit:
                self.log.error(
                    "No keep alives have been received from {name} in the last "
                    "minute. Disconnecting",
                    name=name,
                )
                connection.disconnect()
