# -*- test-case-name: tests.test_web -*-
"""
What the status page shows of the recent past, kept in bounded memory:
the node's last log lines (L{RecentLog}), its last syncs (L{SyncHistory})
and the workers it has seen (L{SeenWorkers}, so one that went away shows as
disconnected).
"""

import collections

from twisted.application.service import Service
from twisted.logger import FilteringLogObserver, globalLogPublisher

from wazuhcluster.logs import formatClusterEvent, levelPredicate, nodePredicate

#: Log lines kept.
LOG_LINES = 200

#: Syncs kept.
SYNC_EVENTS = 300

#: Workers remembered.
SEEN_WORKERS = 1000


class RecentLog(Service):
    """
    The last L{LOG_LINES} lines of one node's cluster.log (info and up,
    first line of each event), while running.
    """

    name = "recent-log"

    def __init__(self, nodeName, size=LOG_LINES, publisher=globalLogPublisher):
        self.lines = collections.deque(maxlen=size)
        self._publisher = publisher
        self._observer = FilteringLogObserver(
            self._add, [levelPredicate(), nodePredicate(nodeName)])

    def startService(self):
        super().startService()
        self._publisher.addObserver(self._observer)

    def stopService(self):
        super().stopService()
        self._publisher.removeObserver(self._observer)

    def _add(self, event):
        line = formatClusterEvent(event)
        if line is not None:
            self.lines.append(line.split("\n", 1)[0])


class SyncHistory:
    """
    The last L{SYNC_EVENTS} syncs of the node (a L{SyncObservers}
    subscriber).
    """

    def __init__(self, size=SYNC_EVENTS):
        self.events = collections.deque(maxlen=size)

    def __call__(self, event):
        self.events.append(event)

    def asList(self):
        """
        C{[{"t", "kind", "node", "duration", "bytes"}...]}, oldest first.
        """
        return [{"t": e.started + e.duration, "kind": e.kind, "node": e.node,
                 "duration": e.duration, "bytes": e.size} for e in self.events]


class SeenWorkers:
    """
    The workers seen connected, with when they were last seen (at most
    L{SEEN_WORKERS}: the longest unseen are forgotten first).
    """

    def __init__(self, size=SEEN_WORKERS):
        self.size = size
        self._lastSeen = collections.OrderedDict()

    def seen(self, names, now):
        for name in names:
            self._lastSeen.pop(name, None)
            self._lastSeen[name] = now
        while len(self._lastSeen) > self.size:
            self._lastSeen.popitem(last=False)

    def lastSeen(self):
        """
        C{{name: when}}.
        """
        return dict(self._lastSeen)
