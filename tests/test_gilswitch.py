# -*- test-case-name: tests.test_gilswitch -*-
"""
Tests for L{wazuhcluster.gilswitch}.
"""

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.gilswitch import NODE_SWITCH_INTERVAL, shortenSwitchInterval


class FakeSys:
    """
    The two functions of L{sys} that L{shortenSwitchInterval} uses.
    """

    def __init__(self, interval):
        self.interval = interval

    def getswitchinterval(self):
        return self.interval

    def setswitchinterval(self, interval):
        self.interval = interval


class ShortenSwitchIntervalTests(SynchronousTestCase):
    def test_shortens(self):
        """
        The default interval (5 ms) becomes the node's.
        """
        fake = FakeSys(0.005)
        self.assertEqual(shortenSwitchInterval(sys=fake), NODE_SWITCH_INTERVAL)
        self.assertEqual(fake.interval, NODE_SWITCH_INTERVAL)

    def test_neverLengthens(self):
        """
        An interval already shorter is kept.
        """
        fake = FakeSys(0.0001)
        self.assertEqual(shortenSwitchInterval(sys=fake), 0.0001)
