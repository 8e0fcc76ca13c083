# -*- test-case-name: tests.test_initstore -*-
"""
Tests for C{wazuh-cluster init --agent-store} (L{wazuhcluster.initstore}).
"""

import contextlib
import io
import json

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.cli import run
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.home import NodeHome


class AgentStoreInitTests(SynchronousTestCase):
    """
    init records the agent store in the node's etc/cluster.json.
    """

    def setUp(self):
        self.base = FilePath(self.mktemp())
        self.home = NodeHome(self.base.child("m"))

    def init(self, *extra):
        out, err = io.StringIO(), io.StringIO()
        status = run(["init", "--home", self.home.root.path, "--type", "master", "--name",
                      "master", "--ca", self.base.child("ca").path, *extra], out, err)
        return status, out.getvalue(), err.getvalue()

    def overrides(self):
        return json.loads(self.home.clusterJsonOverrides.getContent())

    def test_newNode(self):
        """
        A new node with C{--agent-store wazuh-db} gets C{{"agent_store":
        {"backend": "wazuh-db"}}} and a note saying so; without the option
        no etc/cluster.json is written and the store is sqlite.
        """
        status, out, err = self.init("--agent-store", "wazuh-db")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.overrides(), {"agent_store": {"backend": "wazuh-db"}})
        self.assertEqual(loadClusterItems(self.home).agentStore.backend, "wazuh-db")
        self.assertIn("Note: The agent store is wazuh-db", out)
        other = NodeHome(self.base.child("w"))
        run(["init", "--home", other.root.path, "--type", "worker", "--name", "w1", "--ca",
             self.base.child("ca").path, "--master-host", "10.0.0.1"], io.StringIO(),
            io.StringIO())
        self.assertFalse(other.clusterJsonOverrides.exists())
        self.assertEqual(loadClusterItems(other).agentStore.backend, "sqlite")

    def test_existingNodeKeepsOverrides(self):
        """
        On an existing node the other overrides are kept, the change is
        reported, a second run changes nothing, and C{sqlite} goes back.
        """
        self.init()
        self.home.clusterJsonOverrides.setContent(
            b'{"intervals": {"worker": {"keep_alive": 5}}}')
        status, out, err = self.init("--agent-store", "wazuh-db")
        self.assertEqual(status, 0, err)
        self.assertIn("  changed: agent store: sqlite -> wazuh-db", out)
        self.assertEqual(self.overrides(), {"intervals": {"worker": {"keep_alive": 5}},
                                            "agent_store": {"backend": "wazuh-db"}})
        status, out, err = self.init("--agent-store", "wazuh-db")
        self.assertIn("Nothing changed", out)
        status, out, err = self.init("--agent-store", "sqlite")
        self.assertIn("  changed: agent store: wazuh-db -> sqlite", out)
        self.assertEqual(loadClusterItems(self.home).worker.keep_alive, 5)
        self.assertEqual(loadClusterItems(self.home).agentStore.backend, "sqlite")

    def test_invalidOverridesRefused(self):
        """
        An etc/cluster.json that does not load is one error line, exit 1,
        and is left as it was.
        """
        self.init()
        self.home.clusterJsonOverrides.setContent(b'{"intervals": {"worker": {"nope": 1}}}')
        status, out, err = self.init("--agent-store", "wazuh-db")
        self.assertEqual(status, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("Unknown key 'intervals.worker.nope'", err)
        self.assertEqual(self.home.clusterJsonOverrides.getContent(),
                         b'{"intervals": {"worker": {"nope": 1}}}')

    def test_unknownBackend(self):
        """
        Another value is a usage error (exit 2).
        """
        usage = io.StringIO()
        with contextlib.redirect_stderr(usage):
            status, out, err = self.init("--agent-store", "mysql")
        self.assertEqual(status, 2)
        self.assertIn("invalid choice: 'mysql'", usage.getvalue())
        self.assertFalse(self.home.root.exists())
