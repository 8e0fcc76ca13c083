# -*- test-case-name: tests.test_lag -*-
"""
Reactor lag (DESIGN.md, "Reactor budget"): how late a node's reactor runs
what is due.

Every node runs a L{ReactorLagProbe}: a 10 ms C{LoopingCall} on the node's
clock that records, at each call, how late it fired compared with the tick
it was scheduled for.  The samples of the last minute are kept in a bounded
ring (L{LagRing}, one slot per tick of the window), and L{LagFigures} gives
their maximum and 99th percentile.

Workers report their figures to the master in their keep-alives (the
optional, bounded arguments C{lag_max} and C{lag_p99} of
L{wazuhcluster.commands.KeepAlive}; L{reportedLag} checks them), so the
master's C{get_health} carries every node's C{reactor_lag}: its own, and
each worker's as of that worker's last keep-alive (at most
C{worker.keep_alive} seconds old; L{None} values until the first one).
"""

import heapq
import math
from array import array

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel

from wazuhcluster.logs import ClusterLogger

#: Seconds between two calls of the probe.
PROBE_INTERVAL = 0.01

#: Seconds of samples the figures cover.
WINDOW = 60.0

#: The largest lag (seconds) a worker may report; anything above, negative
#: or not a finite number is ignored.
MAX_REPORTED_LAG = 3600.0


@frozen
class LagFigures:
    """
    The reactor lag of one node over the last minute, in seconds.
    """

    max: float
    p99: float

    def asDict(self):
        """
        C{{"max": S, "p99": S}}, as C{get_health} carries it.
        """
        return {"max": self.max, "p99": self.p99}

    def keepAliveArguments(self):
        """
        The optional arguments of L{wazuhcluster.commands.KeepAlive}.
        """
        return {"lag_max": float(self.max), "lag_p99": float(self.p99)}


#: The C{reactor_lag} of a node nothing was measured or reported for yet.
UNKNOWN_LAG = {"max": None, "p99": None}


def reportedLag(maxValue, p99Value):
    """
    The figures a worker reported in a keep-alive, if they make sense.

    @return: L{LagFigures}, or L{None} when either value is missing,
        negative, not finite or above L{MAX_REPORTED_LAG} (the p99 is cut
        down to the max).
    """
    values = (maxValue, p99Value)
    if any(not isinstance(v, float) or not math.isfinite(v)
           or not 0.0 <= v <= MAX_REPORTED_LAG for v in values):
        return None
    return LagFigures(max=maxValue, p99=min(p99Value, maxValue))


def percentile(values, fraction):
    """
    The nearest-rank percentile C{fraction} (0 < fraction <= 1) of a
    non-empty sequence, without sorting all of it.
    """
    rank = max(1, math.ceil(fraction * len(values)))
    return heapq.nlargest(len(values) - rank + 1, values)[-1]


class LagRing:
    """
    The last C{capacity} samples C{(when, lateness)}, in two fixed arrays.
    """

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("a ring holds at least one sample")
        self.capacity = capacity
        self._when = array("d", bytes(8 * capacity))
        self._late = array("d", bytes(8 * capacity))
        self._next = 0
        self._count = 0

    def __len__(self):
        return self._count

    def add(self, when, lateness):
        """
        Record one sample (the oldest goes when the ring is full).
        """
        self._when[self._next] = when
        self._late[self._next] = lateness
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def samplesSince(self, start):
        """
        The samples taken at C{start} or later, oldest first.

        @rtype: L{list} of C{(when, lateness)}
        """
        first = (self._next - self._count) % self.capacity
        order = [(first + i) % self.capacity for i in range(self._count)]
        return [(self._when[i], self._late[i]) for i in order if self._when[i] >= start]


class ReactorLagProbe(Service):
    """
    A L{PROBE_INTERVAL} C{LoopingCall} on C{clock} recording how late each
    call fires.

    A call's lateness is the time it ran minus the tick it was scheduled
    for: C{LoopingCall} schedules on the grid C{start + k * interval}, the
    first tick after the previous call (ticks missed while the reactor was
    busy are skipped, and the lateness of the call that finally runs says
    how long it was).
    """

    name = "reactor-lag"

    def __init__(self, clock, interval=PROBE_INTERVAL, window=WINDOW, log=None):
        self.clock = clock
        self.interval = interval
        self.window = window
        self.log = log if log is not None else ClusterLogger(namespace="wazuhcluster.lag")
        self._ring = LagRing(int(math.ceil(window / interval)) + 1)
        self._loop = None
        self._expected = None

    def startService(self):
        super().startService()
        self._expected = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self.log.failure("The reactor lag probe stopped", f,
                                       level=LogLevel.error))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _tick(self):
        now = self.clock.seconds()
        if self._expected is not None:
            self._ring.add(now, max(0.0, now - self._expected))
        self._expected = self._nextTick(now)

    def _nextTick(self, now):
        """
        When C{LoopingCall} will run next, scheduled at C{now} (the same
        arithmetic as its own).
        """
        untilNext = self.interval - ((now - self._loop.starttime) % self.interval)
        if now == now + untilNext:
            untilNext = self.interval
        return now + untilNext

    def samples(self):
        """
        The samples of the last minute, C{(when, lateness)}, oldest first.
        """
        return self._ring.samplesSince(self.clock.seconds() - self.window)

    def figures(self):
        """
        @return: the L{LagFigures} of the last minute, or L{None} before the
            first sample.
        """
        late = [lateness for _, lateness in self.samples()]
        if not late:
            return None
        return LagFigures(max=max(late), p99=percentile(late, 0.99))

    def history(self):
        """
        The largest lateness of each second of the last minute that has
        samples, C{[second, seconds late]}, oldest first (for a chart).
        """
        worst = {}
        for when, lateness in self.samples():
            second = math.floor(when)
            if lateness >= worst.get(second, -1.0):
                worst[second] = lateness
        return [[second, worst[second]] for second in sorted(worst)]

    def keepAliveArguments(self):
        """
        The lag arguments of this node's next keep-alive (none before the
        first sample).
        """
        figures = self.figures()
        return {} if figures is None else figures.keepAliveArguments()


def nodeLag(master, workerName=None):
    """
    The C{reactor_lag} of a C{get_health} node entry on the master.

    @param master: the L{wazuhcluster.master.server.MasterService}.
    @param workerName: a connected worker, or L{None} for the master itself.
    @return: C{{"max": S, "p99": S}} (L{None} values when unknown).
    """
    if workerName is None:
        figures = master.lag.figures()
    else:
        figures = master.registry.session(workerName, "keepalive").lag
    return dict(UNKNOWN_LAG) if figures is None else figures.asDict()
