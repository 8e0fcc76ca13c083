# -*- test-case-name: tests.test_endtoend -*-
"""
End-to-end: real C{twistd} processes on loopback, driven as a user would
(C{wazuh-cluster init}, C{twistd -n wazuh-master/worker}, C{wazuh-cluster
control}).
"""

import json
import os
import shutil
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from wazuhcluster.cli import run as runCli
from wazuhcluster.home import NodeHome

TWISTD = "from twisted.scripts.twistd import run; run()"
CLI = "from wazuhcluster.cli import main; main()"

FAST = {
    "worker": {"keep_alive": 1, "connection_retry": 1, "max_failed_keepalive_attempts": 2},
    "master": {"check_worker_lastkeepalive": 1, "max_allowed_time_without_keepalive": 3},
    "communication": {"timeout_cluster_request": 2},
}




class _Node(ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()
        self.output = []

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.reason = reason.value
        self.ended.callback(reason.value.exitCode)


def environment():
    env = dict(os.environ)
    root = FilePath(__file__).parent().parent().path
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ClusterProcesses:
    """
    Homes made with C{wazuh-cluster init} and their C{twistd} processes.
    """

    def __init__(self, testCase, workers=("worker1", "worker2"), intervals=FAST):
        self.testCase = testCase
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = FilePath(tempfile.mkdtemp(prefix="wzc-", dir="/tmp"))
        testCase.addCleanup(shutil.rmtree, self.base.path, True)
        self.port = freePort()
        self.ca = self.base.child("ca").path
        self.nodes = {}
        self.homes = {"master": self.init("master", "master")}
        for name in workers:
            self.homes[name] = self.init(name, "worker")
        for home in self.homes.values():
            home.clusterJsonOverrides.setContent(
                json.dumps({"intervals": intervals}).encode())

    def init(self, name, nodeType):
        argv = ["init", "--home", self.base.child(name).path, "--type", nodeType,
                "--name", name, "--ca", self.ca, "--port", str(self.port)]
        if nodeType == "worker":
            argv += ["--master-host", "127.0.0.1"]
        import io

        out, err = io.StringIO(), io.StringIO()
        status = runCli(argv, out, err)
        assert status == 0, err.getvalue()
        return NodeHome(self.base.child(name))

    def start(self, name):
        nodeType = "master" if name == "master" else "worker"
        node = _Node()
        transport = reactor.spawnProcess(
            node, sys.executable,
            [sys.executable, "-c", TWISTD, "-n", "--pidfile=", f"wazuh-{nodeType}",
             "--home", self.homes[name].root.path],
            env=environment(), path=self.base.path)
        node.transport = transport
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
        """
        Run C{wazuh-cluster ARGV} as a separate process.

        @return: Deferred of (stdout, stderr, exit status).
        """
        return getProcessOutputAndValue(sys.executable, ["-c", CLI] + list(argv),
                                        env=environment(), path=self.base.path)

    def log(self, name):
        path = self.homes[name].clusterLog
        return path.getContent().decode() if path.exists() else ""

    @defer.inlineCallbacks
    def waitFor(self, predicate, timeout=20, step=0.2):
        """
        Poll C{predicate} (which may return a Deferred) until it is true.
        """
        waited = 0.0
        while True:
            value = yield defer.maybeDeferred(predicate)
            if value:
                return value
            if waited >= timeout:
                raise AssertionError(f"condition not met within {timeout}s")
            yield deferLater(reactor, step, lambda: None)
            waited += step


class EndToEndTests(TestCase):
    """
    A master and two workers as real processes.
    """

    timeout = 120

    @defer.inlineCallbacks
    def connectedNames(self, cluster, home="master"):
        out, err, status = yield cluster.cli("control", "--home",
                                             cluster.homes[home].root.path, "-l", "--json")
        if status != 0:
            return None
        return sorted(node["name"] for node in json.loads(out)["nodes"])

    @defer.inlineCallbacks
    def test_clusterFormsAndNoticesLoss(self):
        """
        Both workers connect; C{control -l --json} lists all three on the
        master and through a worker; after one worker freezes (SIGSTOP: its
        connection stays open but silent) the master drops it within the
        configured keep-alive limits while the other stays connected; a
        killed worker is noticed at once.
        """
        cluster = ClusterProcesses(self)
        out, err, status = yield cluster.cli("control", "--home",
                                             cluster.homes["master"].root.path, "-l")
        self.assertEqual((out, status), (b"", 1))
        self.assertEqual(err.strip(), b"Cluster is not running.")

        cluster.start("master")
        cluster.start("worker1")
        cluster.start("worker2")
        everyone = ["master", "worker1", "worker2"]
        yield cluster.waitFor(lambda: self.connectedNames(cluster).addCallback(
            lambda names: names == everyone))
        names = yield self.connectedNames(cluster, home="worker1")
        self.assertEqual(names, everyone)

        out, err, status = yield cluster.cli("control", "--home",
                                             cluster.homes["master"].root.path, "-l")
        self.assertEqual(status, 0)
        self.assertEqual(out.decode().splitlines()[0].split(), ["NAME", "TYPE", "VERSION", "ADDRESS"])

        out, err, status = yield cluster.cli("control", "--home",
                                             cluster.homes["master"].root.path, "-i", "--json")
        health = json.loads(out)
        self.assertEqual(health["n_connected_nodes"], 2)
        self.assertNotEqual(health["nodes"]["worker1"]["status"]["last_keep_alive"], "n/a")

        cluster.nodes["worker2"].transport.signalProcess("STOP")
        # max_allowed_time_without_keepalive (3 s) + one check period (1 s)
        # + the last keep-alive period (1 s), and slack for a loaded machine.
        yield cluster.waitFor(lambda: self.connectedNames(cluster).addCallback(
            lambda names: names == ["master", "worker1"]), timeout=10)
        self.assertIn("ERROR: [Master] [Keep alive] No keep alives have been received from "
                      "worker2 in the last minute. Disconnecting", cluster.log("master"))
        keepAlivesBefore = cluster.log("worker1").count("Successful response from master")
        yield deferLater(reactor, 2.5, lambda: None)
        self.assertGreater(cluster.log("worker1").count("Successful response from master"),
                           keepAlivesBefore)
        names = yield self.connectedNames(cluster)
        self.assertEqual(names, ["master", "worker1"])
        self.assertEqual(cluster.log("worker1").count("Successfully connected to master."), 1)

        yield cluster.kill("worker1")
        yield cluster.waitFor(lambda: self.connectedNames(cluster).addCallback(
            lambda names: names == ["master"]), timeout=5)
        self.assertIn("Worker worker1 disconnected.", cluster.log("master"))

    @defer.inlineCallbacks
    def test_workerReconnectsAfterMasterRestart(self):
        """
        When the master process dies and comes back, the worker logs the
        loss, retries, and is listed again.
        """
        cluster = ClusterProcesses(self, workers=("worker1",))
        cluster.start("master")
        cluster.start("worker1")
        yield cluster.waitFor(lambda: self.connectedNames(cluster).addCallback(
            lambda names: names == ["master", "worker1"]))
        yield cluster.kill("master")
        yield cluster.waitFor(lambda: "Could not connect to master" in cluster.log("worker1"))
        cluster.start("master")
        yield cluster.waitFor(lambda: self.connectedNames(cluster).addCallback(
            lambda names: names == ["master", "worker1"]))
        # The master lists worker1 once it accepted the hello; the worker logs
        # its line when the answer arrives.
        yield cluster.waitFor(
            lambda: cluster.log("worker1").count("Successfully connected to master.") == 2)

    @defer.inlineCallbacks
    def test_pluginRefusesOtherKind(self):
        """
        C{twistd wazuh-worker} on a master's home exits with status 1 and
        one clear line.
        """
        cluster = ClusterProcesses(self, workers=())
        out, err, status = yield getProcessOutputAndValue(
            sys.executable, ["-c", TWISTD, "-n", "--pidfile=", "wazuh-worker", "--home",
                             cluster.homes["master"].root.path],
            env=environment(), path=cluster.base.path)
        self.assertEqual(status, 1)
        lines = (out + err).decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("is the home of master node 'master'", lines[0])


# ---------------------------------------------------------------------------
# Agents end to end


from twisted.python.failure import Failure  # noqa: E402

from wazuhcluster.agentdb import AgentDatabase  # noqa: E402
from wazuhcluster.demo import freePort

AGENTS_FAST = {
    "worker": dict(FAST["worker"], sync_agent_info=1, sync_integrity=1),
    "master": dict(FAST["master"], sync_agent_groups=1, agent_group_start_delay=1,
                   recalculate_integrity=1),
    "communication": dict(FAST["communication"]),
}


class AgentsEndToEndTests(TestCase):
    """
    Agents across a master and two workers as real processes: client.keys
    reaches the workers through integrity sync, agent info flows to the
    master, group assignments flow to every worker.
    """

    timeout = 180

    @defer.inlineCallbacks
    def agents(self, cluster, name):
        """
        The agents C{name}'s C{agent list --json} shows, by ID.
        """
        out, err, status = yield cluster.cli("agent", "list", "--home",
                                             cluster.homes[name].root.path, "--json")
        self.assertEqual(status, 0, err)
        return {agent["id"]: agent for agent in json.loads(out)["agents"]}

    @defer.inlineCallbacks
    def agentCli(self, cluster, *argv):
        out, err, status = yield cluster.cli("agent", *argv)
        self.assertEqual(status, 0, err)
        return out.decode().strip()

    def waitForAgents(self, cluster, names, predicate, timeout=30):
        """
        Wait until C{predicate(agents)} holds for the agent list of every
        node in C{names}.
        """
        @defer.inlineCallbacks
        def check():
            for name in names:
                agents = yield self.agents(cluster, name)
                if not predicate(agents):
                    return False
            return True

        return cluster.waitFor(check, timeout=timeout)

    @defer.inlineCallbacks
    def test_agentsAcrossTheCluster(self):
        """
        Agents added on the master appear in every worker's C{agent list};
        an agent reported on worker1 shows on the master with node_name
        worker1, its OS fields, version, labels and status, and gets group
        C{default} on the master and every worker; a report for an agent the
        master does not know changes nothing there and is counted;
        C{agent group --set} reaches every worker; a worker that was down
        catches up after reconnecting; the master's health and C{control -a}
        show it all.
        """
        cluster = ClusterProcesses(self, intervals=AGENTS_FAST)
        master = cluster.homes["master"]
        master.shared.child("web").makedirs()
        master.shared.child("web").child("agent.conf").setContent(b"<agent_config/>\n")
        for name in ("master", "worker1", "worker2"):
            cluster.start(name)
        everyone = ("master", "worker1", "worker2")

        ids = []
        for agentName in ("web01", "db01", "ghost01"):
            ids.append((yield self.agentCli(cluster, "add", "--home", master.root.path,
                                            "--name", agentName)))
        self.assertEqual(ids, ["001", "002", "003"])
        yield self.waitForAgents(cluster, everyone,
                                 lambda agents: sorted(agents) == ["001", "002", "003"])

        yield self.agentCli(cluster, "report", "--home", cluster.homes["worker1"].root.path,
                            "--id", "001", "--status", "active", "--os-name", "Ubuntu",
                            "--os-version", "24.04", "--version", "Wazuh v4.14.7",
                            "--label", "env=prod", "--label", "team=blue")
        yield self.waitForAgents(cluster, ["master"], lambda agents: agents["001"]["node_name"]
                                 == "worker1")
        agent = (yield self.agents(cluster, "master"))["001"]
        self.assertEqual(
            (agent["status"], agent["os_name"], agent["os_version"], agent["version"]),
            ("active", "Ubuntu", "24.04", "Wazuh v4.14.7"))
        self.assertIsNotNone(agent["last_keepalive"])
        database = AgentDatabase.openBlocking(master.globalDb)
        self.addCleanup(database.close)
        self.assertEqual(_fired(database.getAgent("001"))["labels"],
                         {"env": "prod", "team": "blue"})

        # First seen active with no group: `default`, on every node.
        yield self.waitForAgents(cluster, everyone,
                                 lambda agents: agents["001"]["groups"] == ["default"])

        # The master forgets agent 003 (its row only; client.keys, hence the
        # workers, still list it): worker2's report of it is counted and
        # ignored.
        _fired(database.removeAgent("003"))
        yield self.agentCli(cluster, "report", "--home", cluster.homes["worker2"].root.path,
                            "--id", "003", "--os-name", "Ghost")
        yield cluster.waitFor(lambda: "[Worker worker2] [Agent-info sync] Ignored information "
                              "of 1 agents unknown to the master." in cluster.log("master"))
        self.assertIsNone(_fired(database.getAgent("003")))
        # The master logs its line before it answers; worker2 logs its own
        # when the answer arrives, so wait for that one too.
        yield cluster.waitFor(lambda: "[Agent-info sync] The master ignored information "
                              "of 1 agents" in cluster.log("worker2"))

        yield self.agentCli(cluster, "group", "--home", master.root.path, "--id", "002",
                            "--set", "web,default")
        yield self.waitForAgents(cluster, everyone,
                                 lambda agents: agents["002"]["groups"] == ["web", "default"])

        # worker2 goes down, misses changes, and catches up.
        yield cluster.kill("worker2")
        yield self.agentCli(cluster, "group", "--home", master.root.path, "--id", "001",
                            "--set", "web")
        late = yield self.agentCli(cluster, "add", "--home", master.root.path,
                                   "--name", "late01")
        self.assertEqual(late, "004")
        yield self.waitForAgents(cluster, ["worker1"],
                                 lambda agents: agents.get("004") is not None
                                 and agents["001"]["groups"] == ["web"])
        cluster.start("worker2")
        yield self.waitForAgents(cluster, ["worker2"],
                                 lambda agents: agents.get("004") is not None
                                 and agents["001"]["groups"] == ["web"]
                                 and agents["002"]["groups"] == ["web", "default"])

        out, err, status = yield cluster.cli("control", "--home", master.root.path, "-a",
                                             "--json", "-fn", "worker1")
        self.assertEqual(status, 0, err)
        self.assertEqual([a["id"] for a in json.loads(out)["agents"]], ["001"])
        out, err, status = yield cluster.cli("control", "--home", master.root.path, "-a")
        self.assertEqual(out.decode().splitlines()[0].split(),
                         ["ID", "NAME", "IP", "STATUS", "VERSION", "NODE", "NAME"])
        out, err, status = yield cluster.cli("control", "--home", master.root.path, "-i",
                                             "--json")
        health = json.loads(out)
        node = health["nodes"]["worker1"]
        self.assertEqual(node["info"]["n_active_agents"], 1)
        for block in ("last_sync_agentinfo", "last_sync_agentgroup"):
            self.assertGreaterEqual(node["status"][block]["n_synced_chunks"], 1, block)
        # A worker that held the master's assignments when it connected
        # (none, here) is sent no full table.
        self.assertIn("n_synced_chunks", node["status"]["last_sync_full_agentgroup"])
        self.assertNotEqual(node["status"]["last_sync_agentinfo"]["date_end_master"], "n/a")
        self.assertIn("INFO: [Master] [Local agent-groups] Finished in", cluster.log("master"))
        yield cluster.waitFor(lambda: "INFO: [Worker worker1] [Agent-groups recv] Finished in"
                              in cluster.log("worker1"))


def _fired(d):
    """
    The result of an already-fired Deferred (a blocking agent database's).
    """
    results = []
    d.addBoth(results.append)
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]
