# -*- test-case-name: tests.test_demo -*-
"""
Tests for C{wazuh-cluster demo}: the embedded-defaults cluster in one
process.
"""

import io
import shutil
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from wazuhcluster.demo import (
    SAMPLE_AGENTS,
    buildDemo,
    createDemo,
    freePort,
    prepareDemo,
    runDemo,
)
from wazuhcluster.ossecconf import readClusterConfig


class DemoTests(TestCase):
    """
    The demo creates a working cluster and runs it.
    """

    timeout = 60

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="wzd-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.base, True)

    def test_createIsIdempotent(self):
        """
        Creating the demo twice in the same directory keeps the homes and
        registers the sample agents once.
        """
        port = freePort()
        first = createDemo(self.base, 2, port)
        keys = first[0][0].clientKeys.getContent()
        second = createDemo(self.base, 2, port)
        self.assertEqual([h.root for h, _ in first], [h.root for h, _ in second])
        self.assertEqual(second[0][0].clientKeys.getContent(), keys)
        self.assertEqual(len(keys.splitlines()), len(SAMPLE_AGENTS))

    def test_refusesNoWorkers(self):
        """
        C{--workers 0} is refused with a clear line and status 2.
        """
        err = io.StringIO()
        self.assertEqual(runDemo(self.base, 0, 0, io.StringIO(), err), 2)
        self.assertIn("--workers must be at least 1", err.getvalue())

    @inlineCallbacks
    def test_clusterRuns(self):
        """
        Running the demo connects every worker, which then holds the
        master's sample rules and client.keys, and each node writes its own
        cluster.log.
        """
        homes = createDemo(self.base, 2, freePort())
        service = buildDemo(homes, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        workers = [home for home, kind in homes if kind == "worker"]
        for _ in range(100):
            if all(home.child("etc/rules/local_rules.xml").exists()
                   and home.clientKeys.exists() for home in workers):
                break
            yield deferLater(reactor, 0.1, lambda: None)
        master = homes[0][0]
        for home in workers:
            self.assertEqual(home.child("etc/rules/local_rules.xml").getContent(),
                             master.child("etc/rules/local_rules.xml").getContent())
            self.assertEqual(home.clientKeys.getContent(), master.clientKeys.getContent())
        log = workers[0].clusterLog.getContent().decode()
        self.assertIn("[Worker worker1] [Main] Successfully connected to master.", log)
        self.assertNotIn("[Worker worker2]", log)

    def test_rerunPicksAFreePortAgain(self):
        """
        Running the demo again without C{--port} gives it a new free port
        (the old one may be taken by then), rewritten into every home.
        """
        first = createDemo(self.base, 2, freePort())
        busy = socket.socket()
        busy.bind(("127.0.0.1", readClusterConfig(first[0][0]).port))
        busy.listen(1)
        self.addCleanup(busy.close)
        base, homes, port = prepareDemo(self.base, 2, 0)
        self.assertNotEqual(port, busy.getsockname()[1])
        self.assertEqual({readClusterConfig(home).port for home, _ in homes}, {port})
        self.assertEqual([h.root for h, _ in homes], [h.root for h, _ in first])

    def test_takenPortExplained(self):
        """
        A C{--port} that is taken is refused before anything starts, in one
        line naming the port, the reason and what to do.
        """
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(runDemo(self.base, 1, port, out, err), 1)
        lines = err.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn(f"port {port} on 127.0.0.1 cannot be used (Address already in use)",
                      lines[0])
        self.assertIn("--port", lines[0])
