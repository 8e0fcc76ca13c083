# -*- test-case-name: tests.test_lag -*-
"""
Tests for the reactor lag probe (L{wazuhcluster.lag}): its figures on a
deterministic clock and on the real reactor, the bounded ring, and how
workers report theirs to the master in keep-alives.
"""

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.cluster import InMemoryCluster
from wazuhcluster.lag import (
    MAX_REPORTED_LAG,
    LagFigures,
    LagRing,
    ReactorLagProbe,
    percentile,
    reportedLag,
)

KEEPALIVE = {
    "worker": {"keep_alive": 5, "connection_retry": 2},
    "master": {"check_worker_lastkeepalive": 5, "max_allowed_time_without_keepalive": 12},
}


def advanceTo(clock, when):
    """
    Move C{clock} to the time C{when} (absolute: many small relative steps
    would pile up rounding errors and shift the probe's ticks).
    """
    clock.advance(when - clock.seconds())


def tick(clock, times, step=0.01):
    """
    Let C{times} probe intervals pass on C{clock}, one at a time, on the
    grid of C{step}.
    """
    first = round(clock.seconds() / step)
    for n in range(1, times + 1):
        advanceTo(clock, (first + n) * step)


class ProbeClockTests(SynchronousTestCase):
    """
    The probe on a L{Clock}: exact lateness, a one-minute window.
    """

    def setUp(self):
        self.clock = Clock()
        self.probe = ReactorLagProbe(self.clock)
        self.probe.startService()
        self.addCleanup(self.stopProbe)

    def stopProbe(self):
        if self.probe.running:
            self.probe.stopService()

    def test_noSampleBeforeFirstTick(self):
        """
        Right after the start nothing was measured: no figures, no
        keep-alive arguments.
        """
        self.assertIsNone(self.probe.figures())
        self.assertEqual(self.probe.keepAliveArguments(), {})

    def test_onTime(self):
        """
        Calls that fire when due are not late.
        """
        tick(self.clock, 200)
        figures = self.probe.figures()
        self.assertAlmostEqual(figures.max, 0.0, places=9)
        self.assertAlmostEqual(figures.p99, 0.0, places=9)
        self.assertEqual(len(self.probe.samples()), 200)

    def test_blockedReactor(self):
        """
        A reactor busy for 250 ms makes the next call 240 ms late (it was
        due 10 ms after the last one): the max says so; a single late call
        among a hundred does not move the p99.
        """
        tick(self.clock, 150)
        advanceTo(self.clock, 1.75)
        figures = self.probe.figures()
        self.assertAlmostEqual(figures.max, 0.24, places=6)
        self.assertAlmostEqual(figures.p99, 0.0, places=6)
        self.assertEqual(self.probe.keepAliveArguments(),
                         {"lag_max": figures.max, "lag_p99": figures.p99})

    def test_lateTicksSkipped(self):
        """
        After a busy stretch the probe does not fire once per missed tick:
        the next call is on the tick after the late one, and on time.
        """
        tick(self.clock, 10)
        advanceTo(self.clock, 0.205)
        advanceTo(self.clock, 0.21)
        samples = self.probe.samples()
        self.assertAlmostEqual(samples[-2][1], 0.095, places=6)
        self.assertAlmostEqual(samples[-1][1], 0.0, places=6)

    def test_p99(self):
        """
        When more than one call in a hundred is late, the p99 shows it.
        """
        for _ in range(20):
            tick(self.clock, 49)
            advanceTo(self.clock, self.clock.seconds() + 0.03)
        figures = self.probe.figures()
        self.assertAlmostEqual(figures.max, 0.02, places=6)
        self.assertAlmostEqual(figures.p99, 0.02, places=6)

    def test_lastMinuteOnly(self):
        """
        A late call older than a minute no longer counts.
        """
        advanceTo(self.clock, 0.5)
        self.assertGreater(self.probe.figures().max, 0.4)
        tick(self.clock, 6001)
        self.assertAlmostEqual(self.probe.figures().max, 0.0, places=6)
        self.assertLessEqual(len(self.probe.samples()), 6001)

    def test_history(self):
        """
        The history gives the worst lateness of each second with samples.
        """
        tick(self.clock, 100)
        advanceTo(self.clock, 1.3)
        tick(self.clock, 100)
        history = self.probe.history()
        self.assertEqual([second for second, _ in history], [0, 1, 2])
        self.assertAlmostEqual(history[1][1], 0.29, places=6)
        self.assertAlmostEqual(history[2][1], 0.0, places=6)

    def test_stopLeavesNoTimer(self):
        """
        Stopping the probe cancels its timer.
        """
        tick(self.clock, 3)
        self.probe.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RingTests(SynchronousTestCase):
    """
    The ring keeps a bounded number of samples.
    """

    def test_bounded(self):
        """
        A ring of 5 keeps the last 5 samples, oldest first.
        """
        ring = LagRing(5)
        for n in range(12):
            ring.add(float(n), n / 100)
        self.assertEqual(len(ring), 5)
        self.assertEqual([when for when, _ in ring.samplesSince(0)], [7, 8, 9, 10, 11])
        self.assertEqual([when for when, _ in ring.samplesSince(9.5)], [10, 11])

    def test_probeRingSize(self):
        """
        The probe's ring holds one minute of 10 ms samples, no more.
        """
        probe = ReactorLagProbe(Clock())
        self.assertEqual(probe._ring.capacity, 6001)

    @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=500),
           st.floats(min_value=0.01, max_value=1.0))
    def test_percentile(self, values, fraction):
        """
        L{percentile} is the nearest-rank percentile of the sorted values.
        """
        expected = sorted(values)[max(1, math.ceil(fraction * len(values))) - 1]
        self.assertEqual(percentile(values, fraction), expected)


class ReportedLagTests(SynchronousTestCase):
    """
    What a worker reports is checked before the master keeps it.
    """

    def test_valid(self):
        """
        Finite values within bounds are kept; a p99 above the max is cut to
        the max.
        """
        self.assertEqual(reportedLag(0.02, 0.001), LagFigures(0.02, 0.001))
        self.assertEqual(reportedLag(0.02, 0.5), LagFigures(0.02, 0.02))

    def test_invalid(self):
        """
        Missing, negative, infinite, NaN or absurdly large values are
        ignored.
        """
        for pair in [(None, None), (0.1, None), (-0.1, 0.0), (math.inf, 0.0),
                     (math.nan, 0.0), (0.0, math.nan), (MAX_REPORTED_LAG * 2, 0.0), (1, 0.0)]:
            self.assertIsNone(reportedLag(*pair), pair)


class KeepAliveReportTests(SynchronousTestCase):
    """
    Workers tell the master their lag in keep-alives; C{get_health} carries
    every node's.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self, intervals=KEEPALIVE)
        self.worker = self.cluster.addWorker("worker1")

    def health(self):
        results = []
        self.cluster.master.control.answer("get_health", {}).addBoth(results.append)
        self.cluster.network.flush()
        return results[0]

    def test_beforeFirstKeepAlive(self):
        """
        Until its first keep-alive the worker's lag is unknown (None values);
        the master's own is measured.
        """
        self.cluster.network.advance(1, step=0.01)
        nodes = self.health()["nodes"]
        self.assertEqual(nodes["worker1"]["reactor_lag"], {"max": None, "p99": None})
        self.assertEqual(set(nodes["master"]["reactor_lag"]), {"max", "p99"})
        self.assertIsInstance(nodes["master"]["reactor_lag"]["max"], float)

    def test_reported(self):
        """
        After a keep-alive the master's C{get_health} has the figures the
        worker measured (here: a 500 ms stall of the shared clock).
        """
        self.cluster.network.advance(2, step=0.01)
        self.cluster.clock.advance(0.5)
        self.cluster.network.advance(3, step=0.01)
        expected = self.worker.lag.figures()
        self.assertGreater(expected.max, 0.45)
        lag = self.health()["nodes"]["worker1"]["reactor_lag"]
        self.assertEqual(lag, {"max": expected.max, "p99": expected.p99})

    def test_keepAliveWithoutLag(self):
        """
        A keep-alive without lag arguments (an older worker) or with
        nonsense keeps the last figures the worker reported, and is
        answered.
        """
        session = self.cluster.master.registry.session("worker1", "keepalive")
        self.assertEqual(session.keepAlive(), {"answer": "keepalive"})
        self.assertIsNone(session.lag)
        session.keepAlive(lag_max=0.01, lag_p99=0.002)
        session.keepAlive(lag_max=math.nan, lag_p99=0.0)
        session.keepAlive()
        self.assertEqual(session.lag, LagFigures(0.01, 0.002))


class ProbeRealReactorTests(TestCase):
    """
    The probe on the real reactor.
    """

    timeout = 60

    @inlineCallbacks
    def test_blockedReactorMeasured(self):
        """
        A callback that holds the reactor for 150 ms shows as a max of at
        least 140 ms (the probe was due at most 10 ms after the stall
        began).
        """
        probe = ReactorLagProbe(reactor)
        probe.startService()
        self.addCleanup(probe.stopService)
        yield deferLater(reactor, 0.2, lambda: None)
        yield deferLater(reactor, 0, time.sleep, 0.15)
        yield deferLater(reactor, 0.1, lambda: None)
        figures = probe.figures()
        self.assertGreaterEqual(figures.max, 0.14)
        self.assertLess(figures.max, 30)
        self.assertLessEqual(figures.p99, figures.max)
        self.assertGreater(len(probe.samples()), 5)
