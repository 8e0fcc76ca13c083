# -*- test-case-name: tests.test_agentcli_wazuhdb -*-
"""
Tests for the C{wazuh-cluster agent} commands of a node with the wazuh-db
agent store: authd registers and removes agents (on a master directly, on
a worker through its daemon's C{sendsync}), wazuh-db lists them; the
stand-ins answer on real sockets and the commands run in a thread, as
they block.
"""

import io
import json
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.standins.harness import SocketStandIns
from wazuhcluster.agentcli import agentAdd, agentGroup, agentList, agentRemove
from wazuhcluster.nodeinit import initNode


class AuthdCommandsTests(TestCase):
    """
    C{agent add/remove/list} beside a manager's authd and wazuh-db.
    """

    def setUp(self):
        self.base = FilePath(tempfile.mkdtemp(prefix="wzd-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        ca = self.base.child("ca").path
        self.master = initNode(self.base.child("m").path, "master", "master", ca,
                               agentStore="wazuh-db")
        self.worker = initNode(self.base.child("w").path, "worker", "worker1", ca,
                               masterHost="127.0.0.1", agentStore="wazuh-db")
        self.standins = SocketStandIns(reactor, self.master)
        self.addCleanup(self.standins.stop)
        return self.standins.start()

    @inlineCallbacks
    def cli(self, command, home, *args, **kwargs):
        out, err = io.StringIO(), io.StringIO()
        status = yield deferToThread(command, home.root.path, *args, out=out, err=err,
                                     **kwargs)
        return status, out.getvalue(), err.getvalue()

    @inlineCallbacks
    def test_addListRemove(self):
        """
        On the master, C{agent add} asks authd (which writes client.keys and
        wazuh-db) and prints the ID; C{agent list} reads wazuh-db; C{agent
        remove} asks authd again.
        """
        status, out, err = yield self.cli(agentAdd, self.master, "web01", group="default")
        self.assertEqual((status, out, err), (0, "001\n", ""))
        self.assertRegex(self.master.clientKeys.getContent().decode(),
                         r"\A001 web01 any [0-9a-f]{64}\n\Z")
        status, out, err = yield self.cli(agentList, self.master, True)
        [agent] = json.loads(out)["agents"]
        self.assertEqual((agent["id"], agent["name"], agent["status"], agent["groups"]),
                         ("001", "web01", "never_connected", ["default"]))
        status, out, err = yield self.cli(agentAdd, self.master, "web01")
        self.assertEqual((status, err), (1, "Error 9008 - Duplicate name\n"))
        status, out, err = yield self.cli(agentRemove, self.master, "1")
        self.assertEqual((status, out), (0, "Agent 001 removed.\n"))
        self.assertEqual(self.master.clientKeys.getContent(), b"")
        status, out, err = yield self.cli(agentList, self.master, True)
        self.assertEqual(json.loads(out), {"agents": []})

    @inlineCallbacks
    def test_failures(self):
        """
        Without authd, the master's C{agent add} is Wazuh's 1726; without a
        running worker daemon, the worker's is 3012; C{agent group} is
        Wazuh's tools' job: one clear line each, exit 1.
        """
        yield self.standins.authd.stop()
        status, out, err = yield self.cli(agentAdd, self.master, "web01")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("Error 1726 - Wazuh authd is not running"), err)
        status, out, err = yield self.cli(agentAdd, self.worker, "web01")
        self.assertEqual((status, err), (1, "Error 3012 - Cluster is not running\n"))
        status, out, err = yield self.cli(agentGroup, self.master, "001", ["default"])
        self.assertEqual(status, 1)
        self.assertIn("agent group is not available with the wazuh-db agent store", err)
        self.assertEqual(len(err.splitlines()), 1)
