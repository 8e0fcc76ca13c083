# -*- test-case-name: tests.test_web_tap -*-
"""
Tests for the plugins' web options (C{--web}, C{--web-users},
C{--web-tls}), and for C{twistd wazuh-master --web} and C{control -i
--json} with real processes.
"""

import io
import json
import shutil
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.test_endtoend import TWISTD, ClusterProcesses, _Node, environment, freePort
from tests.test_web_auth import usersText
from tests.webclient import basicAuth, fetch, fetchJson
from wazuhcluster.errors import StartupError
from wazuhcluster.master.server import MasterService
from wazuhcluster.nodeinit import initNode
from wazuhcluster.tap import Options, makeNodeService
from wazuhcluster.web.service import WebService


class WebOptionsTests(SynchronousTestCase):
    """
    The web options of L{Options}.
    """

    def parse(self, *argv):
        options = Options()
        options.parseOptions(["--home", "/x"] + list(argv))
        return options

    def test_accepted(self):
        """
        C{--web PORT} or C{ADDR:PORT}, with a users file and TLS.
        """
        options = self.parse("--web", "55000", "--web-users", "/u", "--web-tls")
        self.assertEqual((options["web"], options["web-users"], options["web-tls"]),
                         ("55000", "/u", True))
        self.assertEqual(self.parse()["web"], None)

    def test_refused(self):
        """
        A malformed address, or the users file or TLS without C{--web}, are
        usage errors.
        """
        for argv in (["--web", "high"], ["--web", "::1:80"], ["--web-users", "/u"],
                     ["--web-tls"]):
            self.assertRaises(UsageError, self.parse, *argv)


class WebServiceTreeTests(SynchronousTestCase):
    """
    L{makeNodeService} with C{--web}.
    """

    def setUp(self):
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = FilePath(tempfile.mkdtemp(prefix="wzt-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        ca = self.base.child("ca").path
        port = freePort()
        self.master = initNode(self.base.child("m").path, "master", "master", ca,
                               port=port, bindAddr="127.0.0.1")
        self.worker = initNode(self.base.child("w").path, "worker", "worker1", ca,
                               masterHost="127.0.0.1", port=port)

    def makeWith(self, home, kind, *argv):
        options = Options()
        options.parseOptions(["--home", home.root.path] + list(argv))
        err = io.StringIO()
        return err, lambda: makeNodeService(options, kind, reactor=None, stderr=err)

    def test_webAdded(self):
        """
        With C{--web}, the node has a web service on that address.
        """
        err, make = self.makeWith(self.master, "master", "--web", "127.0.0.1:0")
        node = [s for s in make() if isinstance(s, MasterService)][0]
        [web] = [s for s in node if isinstance(s, WebService)]
        self.assertEqual((web.host, web.scheme), ("127.0.0.1", "http"))

    def test_badUsersFileRefused(self):
        """
        A users file that cannot be used stops the start with one line.
        """
        users = FilePath(self.mktemp())
        users.setContent(b"alice\n")
        err, make = self.makeWith(self.worker, "worker", "--web", "0", "--web-users",
                                  users.path)
        self.assertRaises(StartupError, make)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertIn("line 1: expected user:hash", err.getvalue())


class ProcessTests(TestCase):
    """
    C{twistd -n wazuh-master --web}, as an operator runs it.
    """

    timeout = 120

    @inlineCallbacks
    def test_masterServesWeb(self):
        """
        A master started with C{--web} and C{--web-users} answers the API
        shapes behind basic authentication, and C{control -i --json} has
        every node's C{reactor_lag}.
        """
        cluster = ClusterProcesses(self, workers=("worker1",))
        users = cluster.base.child("web-users")
        users.setContent(usersText(alice="s3cret").encode())
        port = freePort()
        node = _Node()
        transport = reactor.spawnProcess(
            node, sys.executable,
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "wazuh-master", "--home",
             cluster.homes["master"].root.path, "--web", f"127.0.0.1:{port}",
             "--web-users", users.path],
            env=environment(), path=cluster.base.path)
        node.transport = transport
        cluster.nodes["master"] = node
        self.addCleanup(cluster.kill, "master")
        cluster.start("worker1")
        url = f"http://127.0.0.1:{port}/"
        auth = basicAuth("alice", "s3cret")

        @inlineCallbacks
        def workerConnected():
            try:
                status, body = yield fetchJson(url + "cluster/nodes", headers=auth)
            except Exception:
                return False
            return status == 200 and body["data"]["total_affected_items"] == 2

        yield cluster.waitFor(workerConnected, timeout=60)
        status, headers, body = yield fetch(url + "cluster/nodes")
        self.assertEqual(status, 401)
        status, headers, html = yield fetch(url, headers=auth)
        self.assertIn(b"<title>wazuhcluster status</title>", html)

        @inlineCallbacks
        def lagOfEveryNode():
            out, err, code = yield cluster.cli("control", "--home",
                                               cluster.homes["master"].root.path, "-i",
                                               "--json")
            if code != 0:
                return None
            nodes = json.loads(out)["nodes"]
            if sorted(nodes) != ["master", "worker1"]:
                return None
            if any(entry["reactor_lag"]["max"] is None for entry in nodes.values()):
                return None
            return nodes

        nodes = yield cluster.waitFor(lagOfEveryNode, timeout=60)
        for entry in nodes.values():
            self.assertEqual(set(entry["reactor_lag"]), {"max", "p99"})
            self.assertLessEqual(entry["reactor_lag"]["p99"], entry["reactor_lag"]["max"])
        self.assertIn(f"[Master] [Web] Serving the status service on {url}",
                      cluster.log("master"))
