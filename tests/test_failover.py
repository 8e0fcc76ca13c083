# -*- test-case-name: tests.test_failover -*-
"""
Failover end to end: two master candidates on one PostgreSQL database
(127.0.0.1 and 127.0.0.2, one port) and workers listing both, as real
C{twistd} processes made with C{wazuh-cluster init --nodes ... --database
...}: the active master killed with SIGKILL, its database session ended
by the server, and a switchover.
"""

import io
import json
import os
import shutil
import socket
import sys
import tempfile
import time

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.pg import adminConnection, passwordDatabase
from tests.test_endtoend import CLI, FAST, TWISTD, _Node, environment
from wazuhcluster.cli import run as runCli
from wazuhcluster.commands import ControlFailed
from wazuhcluster.controlclient import ClusterNotRunning, askDaemon
from wazuhcluster.home import NodeHome
from wazuhcluster.standby.items import MastersItems, overlapWindow

HOSTS = {"master1": "127.0.0.1", "master2": "127.0.0.2"}

MASTERS = {"lock_check_interval": 1, "lock_check_timeout": 2, "lock_poll_interval": 1,
           "switchover_grace": 10}

INTERVALS = {
    "worker": dict(FAST["worker"], sync_agent_info=1, sync_integrity=2),
    "master": dict(FAST["master"], recalculate_integrity=1, sync_agent_groups=1,
                   agent_group_start_delay=1),
    "communication": dict(FAST["communication"]),
}

#: The failover target (DESIGN.md, "Targets").
FAILOVER_TARGET = 15


def freeSharedPort():
    """
    A port free on both loopback addresses of the masters.
    """
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for host in HOSTS.values():
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


class FailoverProcesses:
    """
    Homes made with C{wazuh-cluster init} for two master candidates and
    workers, and their C{twistd} processes.
    """

    def __init__(self, testCase, workers=("worker1", "worker2")):
        self.testCase = testCase
        self.base = FilePath(tempfile.mkdtemp(prefix="wzf-", dir="/tmp"))
        testCase.addCleanup(shutil.rmtree, self.base.path, True)
        self.port = freeSharedPort()
        self.ca = self.base.child("ca").path
        self.dsn, password = passwordDatabase(testCase)
        self.passwordFile = self.base.child("pgpass")
        self.passwordFile.setContent(password.encode() + b"\n")
        os.chmod(self.passwordFile.path, 0o600)
        nodes = ",".join(HOSTS.values())
        self.nodes = {}
        self.homes = {}
        for name, host in HOSTS.items():
            self.init(name, "--type", "master", "--master-host", host, "--bind", host,
                      "--nodes", nodes, "--database", self.dsn,
                      "--password-file", self.passwordFile.path)
        for name in workers:
            self.init(name, "--type", "worker", "--nodes", nodes)

    def init(self, name, *options):
        home = self.base.child(name)
        out, err = io.StringIO(), io.StringIO()
        status = runCli(["init", "--home", home.path, "--name", name, "--ca", self.ca,
                         "--port", str(self.port), *options], out, err)
        assert status == 0, err.getvalue()
        node = NodeHome(home)
        overrides = node.clusterJsonOverrides
        document = json.loads(overrides.getContent()) if overrides.exists() else {}
        document.update(intervals=INTERVALS, masters=MASTERS)
        overrides.setContent(json.dumps(document).encode())
        self.homes[name] = node

    def start(self, name):
        kind = "master" if name in HOSTS else "worker"
        node = _Node()
        node.transport = reactor.spawnProcess(
            node, sys.executable,
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"wazuh-{kind}",
             "--home", self.homes[name].root.path],
            env=environment(), path=self.base.path)
        self.nodes[name] = node
        self.testCase.addCleanup(self.kill, name)
        return node

    def kill(self, name, signal="KILL"):
        node = self.nodes.get(name)
        if node is None or node.ended.called:
            return defer.succeed(None)
        node.transport.signalProcess(signal)
        return node.ended

    def cli(self, *argv):
        return getProcessOutputAndValue(sys.executable, ["-c", CLI] + list(argv),
                                        env=environment(), path=self.base.path)

    def log(self, name):
        path = self.homes[name].clusterLog
        return path.getContent().decode() if path.exists() else ""

    @defer.inlineCallbacks
    def ask(self, name, request, arguments=None):
        """
        A control request to the daemon of C{name}, or L{None} when it does
        not answer.
        """
        try:
            answer = yield askDaemon(reactor, self.homes[name], request, arguments or {},
                                     timeout=5)
        except (ClusterNotRunning, ControlFailed):
            return None
        return answer

    @defer.inlineCallbacks
    def role(self, name):
        answer = yield self.ask(name, "get_master_role")
        return answer

    @defer.inlineCallbacks
    def connected(self, name):
        """
        The names of the nodes master C{name} lists, with their roles.
        """
        answer = yield self.ask(name, "get_nodes", {"node_names": []})
        if answer is None:
            return None
        return {node["name"]: node.get("role", node["type"]) for node in answer["nodes"]}

    @defer.inlineCallbacks
    def waitFor(self, predicate, timeout=30, step=0.1):
        started = time.monotonic()
        while True:
            value = yield defer.maybeDeferred(predicate)
            if value:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"condition not met within {timeout}s")
            yield deferLater(reactor, step, lambda: None)

    @defer.inlineCallbacks
    def serving(self, name):
        role = yield self.role(name)
        return bool(role and role["serving"])

    @defer.inlineCallbacks
    def startMasters(self):
        """
        Start master1, wait until it serves, then master2, until it is its
        connected standby.
        """
        self.start("master1")
        yield self.waitFor(lambda: self.serving("master1"))
        self.start("master2")
        yield self.waitFor(lambda: self.connected("master1").addCallback(
            lambda nodes: (nodes or {}).get("master2") == "standby"))

    def files(self, name, relative):
        path = self.homes[name].root.preauthChild(relative)
        return path.getContent() if path.exists() else None


class FailoverTests(TestCase):
    """
    Real processes, one real PostgreSQL database.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_killedActiveMaster(self):
        """
        With both workers served by master1 and an agent update acknowledged,
        master1 is killed with SIGKILL: master2 serves both workers within
        the failover target, has the agent update, and a rule changed on it
        reaches both workers; master1 started again stands by, and
        C{control -l} says so.
        """
        cluster = FailoverProcesses(self)
        yield cluster.startMasters()
        cluster.start("worker1")
        cluster.start("worker2")
        yield cluster.waitFor(lambda: cluster.connected("master1").addCallback(
            lambda nodes: {"worker1", "worker2"} <= set(nodes or ())))

        master1 = cluster.homes["master1"].root.path
        out, err, status = yield cluster.cli("agent", "add", "--home", master1,
                                             "--name", "web-01")
        self.assertEqual(status, 0, err)
        agentId = out.decode().strip().split()[-1]
        worker1 = cluster.homes["worker1"].root.path
        yield cluster.waitFor(lambda: agentId.encode() in (
            cluster.files("worker1", "etc/client.keys") or b""))
        out, err, status = yield cluster.cli("agent", "report", "--home", worker1, "--id",
                                             agentId, "--os-name", "Ubuntu",
                                             "--os-version", "24.04")
        self.assertEqual(status, 0, err)

        def reported(name):
            def check(answer):
                agents = {a["id"]: a for a in (answer or {}).get("agents", [])}
                agent = agents.get(agentId, {})
                return agent.get("os_name") == "Ubuntu" and agent.get("node_name") == "worker1"
            return cluster.ask(name, "get_agents", {}).addCallback(check)

        yield cluster.waitFor(lambda: reported("master1"))

        yield cluster.kill("master1")
        took = yield cluster.waitFor(lambda: cluster.connected("master2").addCallback(
            lambda nodes: {"worker1", "worker2"} <= set(nodes or ())), timeout=30)
        self.assertLess(took, FAILOVER_TARGET)
        self.assertTrue((yield reported("master2")))
        self.assertIn("This master is now the active master", cluster.log("master2"))

        rule = b"<group name='failover'>\n  <rule id='100100' level='3'/>\n</group>\n"
        rules = cluster.homes["master2"].root.child("etc").child("rules")
        rules.child("failover_rules.xml").setContent(rule)
        for worker in ("worker1", "worker2"):
            yield cluster.waitFor(
                lambda worker=worker: cluster.files(
                    worker, "etc/rules/failover_rules.xml") == rule, timeout=20)

        cluster.start("master1")
        yield cluster.waitFor(lambda: cluster.connected("master2").addCallback(
            lambda nodes: (nodes or {}).get("master1") == "standby"))
        role = yield cluster.role("master1")
        self.assertEqual((role["role"], role["serving"], role["active"]["name"]),
                         ("standby", False, "master2"))
        out, err, status = yield cluster.cli("control", "--home", master1, "-l")
        self.assertEqual(status, 0, err)
        rows = {line.split()[0]: line for line in out.decode().splitlines()[1:]}
        self.assertIn("master (standby)", rows["master1"])
        self.assertEqual(rows["master2"].split()[1], "master")
        self.assertNotIn("standby", rows["master2"])
        yield cluster.waitFor(lambda: cluster.files(
            "master1", "etc/rules/failover_rules.xml") == rule, timeout=20)

    @defer.inlineCallbacks
    def test_databaseSessionEnded(self):
        """
        The server ends the active master's lock session: master1 stops
        serving within the overlap window (one ERROR), master2 takes over,
        and the two never serve at once for longer than the window; the
        worker follows; a switchover gives the role back to master1.
        """
        cluster = FailoverProcesses(self, workers=("worker1",))
        yield cluster.startMasters()
        cluster.start("worker1")
        yield cluster.waitFor(lambda: cluster.connected("master1").addCallback(
            lambda nodes: "worker1" in (nodes or ())))

        samples = []

        @defer.inlineCallbacks
        def sample():
            first = yield cluster.serving("master1")
            second = yield cluster.serving("master2")
            samples.append((time.monotonic(), first, second))
            return second and not first

        cut = time.monotonic()
        ended = adminConnection().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'wazuh-cluster lock master1'").fetchall()
        self.assertEqual(ended, [(True,)])
        yield cluster.waitFor(sample, timeout=20, step=0.02)
        window = overlapWindow(MastersItems(**MASTERS))
        stopped = min(moment for moment, first, _ in samples if not first)
        self.assertLess(stopped - cut, window)
        both = [moment for moment, first, second in samples if first and second]
        if both:
            self.assertLess(max(both) - min(both), window)
        yield cluster.waitFor(lambda: cluster.connected("master2").addCallback(
            lambda nodes: "worker1" in (nodes or ())))
        self.assertEqual(cluster.log("master1").count("ERROR: [Master] [Active master] "
                                                      "Lost the active master lock"), 1)

        master2 = cluster.homes["master2"].root.path
        yield cluster.waitFor(lambda: cluster.connected("master2").addCallback(
            lambda nodes: (nodes or {}).get("master1") == "standby"))
        out, err, status = yield cluster.cli("switchover", "--home", master2, "--to", "master1")
        self.assertEqual(status, 0, err)
        self.assertIn(b"master1 is the active master now", out)
        yield cluster.waitFor(lambda: cluster.connected("master1").addCallback(
            lambda nodes: "worker1" in (nodes or ())))
        out, err, status = yield cluster.cli("switchover", "--home", master2, "--to", "master1")
        self.assertEqual(status, 1)
        self.assertIn(b"Error 3065 - master2 is a standby", err)
