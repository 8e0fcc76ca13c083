# -*- test-case-name: tests.test_standby_role -*-
"""
The standby's refusal of a hello, and the active master it names.
"""

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.commands import HelloRejected
from wazuhcluster.standby.role import ActiveMaster, activeHostIn, standbyRefusal


class RefusalTests(SynchronousTestCase):
    """
    L{standbyRefusal} and L{activeHostIn}.
    """

    def test_namesTheActiveMaster(self):
        """
        The refusal is a L{HelloRejected} with code 3064 naming the active
        master and its address, which L{activeHostIn} reads back.
        """
        refusal = standbyRefusal("m2", ActiveMaster("m1", "10.0.0.1", 0.0))
        self.assertIsInstance(refusal, HelloRejected)
        self.assertEqual(str(refusal), "Error 3064 - Master m2 is a standby: the active "
                                       "master is m1 at 10.0.0.1")
        self.assertEqual(activeHostIn(str(refusal)), "10.0.0.1")
        ipv6 = standbyRefusal("m2", ActiveMaster("m1", "fd00::1", 0.0))
        self.assertEqual(activeHostIn(str(ipv6)), "fd00::1")

    def test_noActiveMaster(self):
        """
        Without an active master (or when the last known one is this
        standby itself) the refusal says so and names no address.
        """
        for active in (None, ActiveMaster("m2", "10.0.0.2", 0.0)):
            text = str(standbyRefusal("m2", active))
            self.assertEqual(text, "Error 3064 - Master m2 is a standby and no master is "
                                   "active at the moment")
            self.assertIsNone(activeHostIn(text))

    def test_otherRefusals(self):
        """
        Other hello refusals name no active master.
        """
        for text in ("Error 3025 - Could not decrypt message",
                     "Error 3028 - Worker node ID already exists: the active master is x at y",
                     ""):
            self.assertIsNone(activeHostIn(text))

    def test_asJson(self):
        """
        The active master as control answers show it: name, address, and
        the time it took the lock in Wazuh's date format.
        """
        self.assertEqual(ActiveMaster("m1", "10.0.0.1", 86400.25).asJson(),
                         {"name": "m1", "ip": "10.0.0.1",
                          "since": "1970-01-02T00:00:00.250000Z"})
