# -*- test-case-name: tests.test_demo -*-
"""
Tests for C{wazuh-cluster demo}: the embedded-defaults cluster in one
process.
"""

import io
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from wazuhcluster.demo import SAMPLE_AGENTS, buildDemo, createDemo, freePort, runDemo


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
