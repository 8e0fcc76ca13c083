# -*- test-case-name: tests.test_standby_control -*-
"""
How C{wazuh-cluster control} shows the masters' roles: C{-l} prints TYPE
C{master (standby)} for a standby, C{-i} the active master and since when.
"""

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.controlclient import formatHealth, formatNodes
from wazuhcluster.health import defaultStatus, nodeInfo

NODES = {"nodes": [
    {"name": "master1", "type": "master", "version": "0.1.0", "ip": "10.0.0.1",
     "role": "active"},
    {"name": "master2", "type": "master", "version": "0.1.0", "ip": "10.0.0.2",
     "role": "standby"},
    {"name": "worker1", "type": "worker", "version": "0.1.0", "ip": "10.0.0.3"},
]}


def health(active):
    nodes = {}
    for node in NODES["nodes"]:
        info = nodeInfo(node["name"], node["type"], node["version"], node["ip"])
        if "role" in node:
            info["role"] = node["role"]
        status = defaultStatus() if node["type"] == "worker" else {}
        nodes[node["name"]] = {"info": info, "status": status}
    return {"n_connected_nodes": 1, "nodes": nodes, "active_master": active}


ACTIVE = {"name": "master1", "ip": "10.0.0.1", "since": "2026-11-25T10:00:00.000000Z"}


class RoleOutputTests(SynchronousTestCase):
    """
    The text layouts with roles.
    """

    def test_nodes(self):
        """
        C{-l}: the active master's TYPE is C{master}, a standby's
        C{master (standby)}.
        """
        self.assertEqual(formatNodes(NODES).splitlines(), [
            "NAME     TYPE              VERSION  ADDRESS",
            "master1  master            0.1.0    10.0.0.1",
            "master2  master (standby)  0.1.0    10.0.0.2",
            "worker1  worker            0.1.0    10.0.0.3",
        ])

    def test_health(self):
        """
        C{-i} names the active master and since when, and lists the
        workers only; C{-i more} shows each master's type with its role.
        """
        lines = formatHealth("wazuh", health(ACTIVE)).splitlines()
        self.assertEqual(lines[:4], [
            "Cluster name: wazuh",
            "Active master: master1 (10.0.0.1) since 2026-11-25T10:00:00.000000Z",
            "",
            "Last completed synchronization for connected nodes (1):",
        ])
        self.assertEqual(len(lines), 5)
        more = formatHealth("wazuh", health(ACTIVE), more=True)
        self.assertIn("    master2 (10.0.0.2)\n        Version: 0.1.0\n"
                      "        Type: master (standby)\n", more)
        self.assertIn("    master1 (10.0.0.1)\n        Version: 0.1.0\n"
                      "        Type: master\n", more)

    def test_noActiveMaster(self):
        """
        While no master holds the lock, C{-i} says so.
        """
        self.assertEqual(formatHealth("wazuh", health(None)).splitlines()[1],
                         "Active master: none")

    def test_singleMaster(self):
        """
        An answer without C{active_master} (a master on SQLite, the only
        one) keeps Wazuh's layout.
        """
        answer = health(ACTIVE)
        del answer["active_master"]
        self.assertEqual(formatHealth("wazuh", answer).splitlines()[:2],
                         ["Cluster name: wazuh", ""])
