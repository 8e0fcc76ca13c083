# -*- test-case-name: tests.test_standby_items -*-
"""
The C{masters} section of cluster.json and the window it implies.
"""

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.clusteritems import mergeClusterItems
from wazuhcluster.errors import ConfigError
from wazuhcluster.standby.items import (
    DEFAULT_MASTERS,
    MastersItems,
    overlapWindow,
    serverKeepalives,
    serverRelease,
)


class MastersItemsTests(SynchronousTestCase):
    """
    Validation of C{masters} and the arithmetic of the window.
    """

    def test_shippedDefaults(self):
        """
        The shipped cluster.json has the defaults: checks every 2 s, 3 s to
        answer, polls every 2 s, 15 s of switchover grace.
        """
        self.assertEqual(mergeClusterItems({}).masters, DEFAULT_MASTERS)
        self.assertEqual(DEFAULT_MASTERS, MastersItems(2, 3, 2, 15))

    def test_override(self):
        """
        Each key may be overridden with a positive number.
        """
        items = mergeClusterItems({"masters": {"lock_check_interval": 0.5,
                                               "lock_check_timeout": 1}})
        self.assertEqual((items.masters.lock_check_interval,
                          items.masters.lock_check_timeout,
                          items.masters.lock_poll_interval), (0.5, 1, 2))

    def test_refused(self):
        """
        Zero, a negative number, a boolean and an unknown key are refused,
        naming the key.
        """
        for section, text in [
                ({"lock_check_interval": 0},
                 "Interval 'masters.lock_check_interval' is a period and must be a "
                 "positive number, found 0"),
                ({"lock_check_timeout": -1},
                 "Interval 'masters.lock_check_timeout' is a limit and must be a positive "
                 "number, found -1"),
                ({"lock_poll_interval": True},
                 "Wrong type for 'masters.lock_poll_interval': expected a number, found "
                 "a boolean"),
                ({"lock_timeout": 3}, "Unknown key 'masters.lock_timeout'")]:
            error = self.assertRaises(ConfigError, mergeClusterItems, {"masters": section},
                                      "etc/cluster.json")
            self.assertEqual(error.detail, f"{text} in etc/cluster.json")

    def test_window(self):
        """
        Two masters may both believe they are active for at most the check
        interval plus the check timeout; the server frees a silent session's
        lock only after longer than that.
        """
        masters = MastersItems(2, 3, 2, 15)
        self.assertEqual(overlapWindow(masters), 5)
        self.assertEqual(serverKeepalives(masters), (5, 2, 3))
        self.assertEqual(serverRelease(masters), 11)
        small = MastersItems(0.3, 0.2, 1, 1)
        self.assertEqual(serverKeepalives(small), (1, 1, 3))
        for masters in (MastersItems(2, 3, 2, 15), small, MastersItems(7.5, 0.5, 1, 1)):
            self.assertGreater(serverRelease(masters), overlapWindow(masters))
