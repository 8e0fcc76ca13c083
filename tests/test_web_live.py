# -*- test-case-name: tests.test_web_live -*-
"""
The status web service of a cluster that runs for real in this process (a
master and two workers on loopback, the demo's homes): its page rendered
by headless Chromium, its metrics and health after real syncs, and the
demo printing its URL.
"""

import io
import json
import os
import shutil
import signal
import tempfile
from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.webclient import fetch, fetchJson
from wazuhcluster.agentcli import agentReport
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.demo import buildDemo, createDemo, freePort, instructions, webUrl
from wazuhcluster.master.server import MasterService
from wazuhcluster.ossecconf import readClusterConfig
from wazuhcluster.tls import loadNodeIdentity
from wazuhcluster.web.service import WebService
from wazuhcluster.worker.client import WorkerService

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-dev-shm-usage", "--window-size=1400,1000",
                  "--virtual-time-budget=6000"]

FAST = {
    "worker": {"keep_alive": 1, "connection_retry": 1, "sync_agent_info": 1,
               "sync_integrity": 1},
    "master": {"check_worker_lastkeepalive": 1, "max_allowed_time_without_keepalive": 10,
               "agent_group_start_delay": 1, "sync_agent_groups": 1,
               "recalculate_integrity": 1},
    "communication": {"timeout_cluster_request": 5},
}


class LiveCluster:
    """
    The demo's homes (short intervals) run in this process on the real
    reactor, the master with its web service on a free loopback port.
    """

    def __init__(self, testCase, workers=2):
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = tempfile.mkdtemp(prefix="wzw-", dir="/tmp")
        testCase.addCleanup(shutil.rmtree, self.base, True)
        self.homes = createDemo(self.base, workers, freePort())
        self.nodes = {}
        self.root = MultiService()
        for home, kind in self.homes:
            home.clusterJsonOverrides.setContent(json.dumps({"intervals": FAST}).encode())
            config = readClusterConfig(home)
            nodeClass = MasterService if kind == "master" else WorkerService
            node = nodeClass(home, config, loadClusterItems(home),
                             loadNodeIdentity(home.sslDir), reactor=reactor)
            node.addListeners()
            if kind == "master":
                self.web = WebService(node, "127.0.0.1", 0)
                self.web.setServiceParent(node)
            node.setServiceParent(self.root)
            self.nodes[config.node_name] = node
        self.root.startService()
        testCase.addCleanup(self.root.stopService)

    @property
    def master(self):
        return self.nodes["master"]

    def home(self, name):
        return [home for home, _ in self.homes if home.root.basename() == name][0]

    @inlineCallbacks
    def waitFor(self, predicate, timeout=30.0):
        """
        Wait until C{predicate()} (a value or a Deferred of one) is true
        (real time).
        """
        deadline = reactor.seconds() + timeout
        while not (yield maybeDeferred(predicate)):
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {predicate}")
            yield deferLater(reactor, 0.05, lambda: None)

    def inSync(self):
        registry = self.master.registry
        return (len(registry.names()) == len(self.nodes) - 1
                and all(registry.health(name)["integrity_in_sync"] for name in registry.names()))

    def lagReported(self):
        registry = self.master.registry
        return self.inSync() and all(registry.session(name, "keepalive").lag is not None
                                     for name in registry.names())


class _Collect(ProcessProtocol):
    def __init__(self):
        self.out, self.err = [], []
        self.ended = Deferred()

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


@inlineCallbacks
def runChromium(profile, arguments, timeout=120):
    """
    Run headless Chromium with a fresh profile in C{profile}.

    @return: a Deferred of C{(exit status, stdout, stderr)}; a Chromium
        still running after C{timeout} seconds is killed.
    """
    collect = _Collect()
    env = {"HOME": profile, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    process = reactor.spawnProcess(
        collect, CHROMIUM,
        [CHROMIUM] + CHROMIUM_FLAGS + [f"--user-data-dir={profile}/chromium"] + arguments,
        env=env)
    killer = reactor.callLater(timeout, process.signalProcess, signal.SIGKILL)
    status = yield collect.ended
    if killer.active():
        killer.cancel()
    return status, b"".join(collect.out).decode("utf-8", "replace"), b"".join(collect.err)


class NodeRows(HTMLParser):
    """
    The node rows of the rendered page: C{{name: {"state": .., field: text}}}.
    """

    def __init__(self):
        super().__init__()
        self.rows = {}
        self._row = None
        self._field = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "node" in (attrs.get("class") or "").split():
            self._row = {"state": attrs.get("data-state")}
            self.rows[attrs.get("data-node")] = self._row
        elif tag == "td" and self._row is not None:
            self._field = attrs.get("data-field")
            self._row[self._field] = ""
        elif tag == "small":
            self._field = None

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._field = None

    def handle_data(self, data):
        if self._row is not None and self._field is not None:
            self._row[self._field] += data


class LiveWebTests(TestCase):
    """
    The master's web service in a running cluster.
    """

    timeout = 240

    def setUp(self):
        self.cluster = LiveCluster(self)
        return self.cluster.waitFor(self.cluster.lagReported)

    @inlineCallbacks
    def test_pageInBrowser(self):
        """
        Headless Chromium renders the page: after its script fetched the
        status, there is one row per node, the workers connected and in
        sync, the lag shown; a screenshot is kept with the test.
        """
        profile = FilePath(self.mktemp())
        profile.makedirs()
        url = self.cluster.web.url
        status, dom, err = yield runChromium(profile.path, ["--dump-dom", url])
        self.assertEqual(status, 0, err[-2000:])
        parser = NodeRows()
        parser.feed(dom)
        rows = parser.rows
        self.assertEqual(sorted(rows), ["master", "worker1", "worker2"], dom[-3000:])
        self.assertEqual(rows["master"]["state"], "this node")
        for name in ("worker1", "worker2"):
            self.assertEqual(rows[name]["state"], "connected")
            self.assertEqual(rows[name]["files"], "in sync")
            self.assertIn(" / ", rows[name]["reactor_lag"])
            self.assertTrue(rows[name]["keepalive"].endswith(" ago"), rows[name])
        self.assertIn('id="state" class="ok"', dom)
        self.assertIn("Integrity sync", dom)
        screenshot = profile.child("status-page.png")
        status, out, err = yield runChromium(profile.path,
                                             [f"--screenshot={screenshot.path}", url])
        self.assertEqual(status, 0, err[-2000:])
        self.assertEqual(screenshot.getContent()[:8], b"\x89PNG\r\n\x1a\n")

    @inlineCallbacks
    def test_metricsAndHealthAfterSyncs(self):
        """
        After an agent reports to worker1, the master's C{/metrics} counts
        it active there, and has the integrity and agent-info syncs that
        ran; C{/cluster/healthcheck} carries every node's reactor lag.
        """
        cluster = self.cluster
        out, err = io.StringIO(), io.StringIO()
        status = yield deferToThread(agentReport, cluster.home("worker1").root.path, "001",
                                     osName="Ubuntu", out=out, err=err)
        self.assertEqual(status, 0, err.getvalue())

        def active():
            return cluster.master.agentStore.store.countActiveAgents("worker1").addCallback(
                lambda count: count == 1)

        yield cluster.waitFor(active)
        status, headers, text = yield fetch(cluster.web.url + "metrics")
        found = {}
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        self.assertEqual(found[("wazuhcluster_agents",
                                (("node", "worker1"), ("status", "active")))], 1)
        self.assertEqual(found[("wazuhcluster_connected_workers", ())], 2)
        self.assertGreaterEqual(found[("wazuhcluster_sync_duration_seconds_count",
                                       (("kind", "integrity"),))], 2)
        self.assertGreaterEqual(found[("wazuhcluster_sync_duration_seconds_count",
                                       (("kind", "agent_info"),))], 1)
        self.assertGreater(found[("wazuhcluster_sync_bytes_total",
                                  (("direction", "sent"), ("kind", "integrity")))], 0)
        status, body = yield fetchJson(cluster.web.url + "cluster/healthcheck")
        for item in body["data"]["affected_items"]:
            lag = item["reactor_lag"]
            self.assertIsInstance(lag["max"], float, item["info"]["name"])
            self.assertLess(lag["max"], 30)
        status, body = yield fetchJson(cluster.web.url + "status.json")
        nodes = {node["name"]: node for node in body["nodes"]}
        self.assertEqual(nodes["worker1"]["agents"].get("active"), 1)
        self.assertEqual(body["agents"]["active"], 1)


class DemoWebTests(TestCase):
    """
    The demo serves the status page and says where.
    """

    timeout = 60

    @inlineCallbacks
    def test_demoUrl(self):
        """
        The demo's master serves the page on a loopback port, and the
        instructions print its URL.
        """
        base = tempfile.mkdtemp(prefix="wzd-", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        port = freePort()
        homes = createDemo(base, 1, port)
        service = buildDemo(homes, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        url = webUrl(service)
        self.assertTrue(url.startswith("http://127.0.0.1:"), url)
        self.assertIn(f"Status page: {url}", instructions(base, homes, port, url))
        status, headers, html = yield fetch(url)
        self.assertEqual(status, 200)
        self.assertIn(b"<title>wazuhcluster status</title>", html)
