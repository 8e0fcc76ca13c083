# -*- test-case-name: tests.test_tls_failures -*-
"""
Lines about refused connections, rate-limited per address: an
unauthenticated client must not be able to flood cluster.log.
"""

#: Seconds between two lines about one address.
INTERVAL = 60.0

#: Addresses remembered at most (the oldest forgotten first).
MAX_ADDRESSES = 4096


class RefusalLog:
    """
    Logs one WARNING per address per L{INTERVAL} about refused connections;
    the next line after a quiet spell says how many were not logged.
    """

    def __init__(self, log, clock, interval=INTERVAL):
        self.log = log
        self.clock = clock
        self.interval = interval
        self._seen = {}

    def note(self, host, reason):
        """
        A connection from C{host} was refused for C{reason}.
        """
        now = self.clock.seconds()
        last, suppressed = self._seen.get(host, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[host] = (last, suppressed + 1)
            return
        if len(self._seen) >= MAX_ADDRESSES:
            self._seen.pop(next(iter(self._seen)))
        self._seen[host] = (now, 0)
        if suppressed:
            self.log.warn("Refused a connection from {host}: {reason} ({count} more "
                          "refused since the last line about this address).",
                          host=host, reason=reason, count=suppressed)
        else:
            self.log.warn("Refused a connection from {host}: {reason}.", host=host,
                          reason=reason)
