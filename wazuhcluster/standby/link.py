# -*- test-case-name: tests.test_standby_cluster -*-
"""
A standby master's link to the active master: the worker's connection
machinery (L{wazuhcluster.worker.client.WorkerService}: candidates tried
in order, TLS, the hello, back-off, sessions stopped before the next dial)
with the worker's keep-alive and integrity features and no other, so that
the standby's synced files are the active master's.  Its hello says node
type C{master} and proves the cluster key as a standby; the active master
sends it files only, never agent groups, and expects no agent info from it.
"""

from wazuhcluster.worker.client import WorkerService
from wazuhcluster.worker.integrity_sync import WorkerIntegrity
from wazuhcluster.worker.keepalive import WorkerKeepAlive


class StandbyLink(WorkerService):
    """
    The standby's connection to the active master.
    """

    helloNodeType = "master"
    logKind = "Standby"

    def addFeatures(self, store, openStore, durable):
        self.agentStore = None
        self.agents = None
        self.agentInfo = None
        self.addFeature(WorkerKeepAlive(self))
        self.integrity = self.addFeature(WorkerIntegrity(self, durable=durable))

    def addListeners(self):
        """
        None: the master's own control socket answers for this node.
        """
