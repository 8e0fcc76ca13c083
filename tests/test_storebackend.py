# -*- test-case-name: tests.test_storebackend -*-
"""
Tests for the service tree of a node with the wazuh-db agent store: the
master and the worker open the manager's wazuh-db when
C{agent_store.backend} says so (L{wazuhcluster.agentdb.stores}), and keep
Wazuh's pidfile.
"""

import io
import shutil
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.test_endtoend import freePort
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.master.server import MasterService
from wazuhcluster.nodeinit import initNode
from wazuhcluster.pidfile import WazuhPidfile
from wazuhcluster.tap import Options, makeNodeService
from wazuhcluster.wazuhdb.store import WazuhDBAgentStore
from wazuhcluster.worker.client import WorkerService


class TreeTests(TestCase):
    """
    The service tree of nodes made with C{init --agent-store wazuh-db}.
    """

    def setUp(self):
        self.base = FilePath(tempfile.mkdtemp(prefix="wzs-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        ca = self.base.child("ca").path
        port = freePort()
        self.master = initNode(self.base.child("m").path, "master", "master", ca, port=port,
                               bindAddr="127.0.0.1", agentStore="wazuh-db")
        self.worker = initNode(self.base.child("w").path, "worker", "worker1", ca,
                               masterHost="127.0.0.1", port=port, agentStore="wazuh-db")

    def tree(self, home, kind):
        options = Options()
        options.parseOptions(["--home", home.root.path])
        return makeNodeService(options, kind, stderr=io.StringIO())

    @inlineCallbacks
    def test_wazuhDBStore(self):
        """
        Both the master and the worker open a L{WazuhDBAgentStore}, and
        Wazuh's pidfile is the tree's last service.
        """
        for home, kind, cls in ((self.master, "master", MasterService),
                                (self.worker, "worker", WorkerService)):
            root = self.tree(home, kind)
            services = list(root)
            self.assertIsInstance(services[-1], WazuhPidfile)
            node = [s for s in services if isinstance(s, cls)][0]
            node.agentStore.startService()
            store = yield node.agentStore.get()
            self.assertIsInstance(store, WazuhDBAgentStore)
            yield node.agentStore.stopService()

    @inlineCallbacks
    def test_sqliteByDefault(self):
        """
        Back on C{sqlite}, the node opens its own database, as before.
        """
        initNode(self.master, "master", "master", self.base.child("ca").path,
                 agentStore="sqlite")
        root = self.tree(self.master, "master")
        node = [s for s in root if isinstance(s, MasterService)][0]
        node.agentStore.startService()
        store = yield node.agentStore.get()
        self.assertIsInstance(store, AgentDatabase)
        yield node.agentStore.stopService()
