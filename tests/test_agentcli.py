# -*- test-case-name: tests.test_agentcli -*-
"""
Tests for L{wazuhcluster.agentcli}: the C{wazuh-cluster agent} commands run
end to end on temporary node homes.
"""

import io
import json
import os
import shutil
import stat
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.localhandlers import serving
from wazuhcluster.agentcli import (
    agentAdd,
    agentGroup,
    agentList,
    agentRemove,
    agentReport,
    formatAgentTable,
)
from wazuhcluster.agentdb import AgentDatabase
from wazuhcluster.cli import run
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.clientkeys import readClientKeys
from wazuhcluster.control import ControlServer
from wazuhcluster.daemonnudge import askLocalDaemon
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import ClusterConfig
from wazuhcluster.ossecwrite import renderOssecConf


def makeHome(path, nodeType, nodeName, groups=()):
    """
    Create a node home of type C{nodeType} with an ossec.conf and the
    groups C{groups} under C{etc/shared/}.
    """
    home = NodeHome.fromPath(path)
    home.createLayout()
    config = ClusterConfig(
        name="wazuh",
        node_name=nodeName,
        node_type=nodeType,
        key="k" * 32,
        port=1516,
        bind_addr="0.0.0.0",
        nodes=("master.example",),
    )
    home.ossecConf.setContent(renderOssecConf(config))
    for group in groups:
        home.shared.child(group).makedirs()
    return home


class _CommandTestsMixin:
    """
    Helpers: a master home with groups C{default} and C{g1}, a worker home,
    and command runners capturing output.
    """

    def setUp(self):
        base = FilePath(self.mktemp())
        self.master = makeHome(
            base.child("master"), "master", "master-node", ["default", "g1"]
        )
        self.worker = makeHome(base.child("worker"), "worker", "worker1")

    def runCommand(self, command, home, *args, **kwargs):
        """
        Run C{command} on C{home}; return C{(status, out, err)}.
        """
        out, err = io.StringIO(), io.StringIO()
        status = command(home.root.path, *args, out=out, err=err, **kwargs)
        return status, out.getvalue(), err.getvalue()

    def add(self, name, **kwargs):
        status, out, err = self.runCommand(agentAdd, self.master, name, **kwargs)
        self.assertEqual((status, err), (0, ""))
        return out.strip()

    def listJson(self, home):
        status, out, err = self.runCommand(agentList, home, asJson=True)
        self.assertEqual((status, err), (0, ""))
        return json.loads(out)["agents"]

    def syncKeys(self):
        """
        Copy the master's client.keys to the worker, as integrity sync does.
        """
        self.master.clientKeys.copyTo(self.worker.clientKeys)

    def assertError(self, result, code, *fragments):
        """
        Check that a command failed with exit status 1 and one error line
        C{Error <code> - ...} containing C{fragments}, and printed nothing
        else.
        """
        status, out, err = result
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith(f"Error {code} - "), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertNotIn("Traceback", err)
        for fragment in fragments:
            self.assertIn(fragment, err)


class AddTests(_CommandTestsMixin, SynchronousTestCase):
    """
    Tests for L{agentAdd}.
    """

    def test_add(self):
        """
        Adding an agent prints its new 3-digit ID alone on a line, appends it
        to client.keys (mode 0640, a random 64-hex key) and inserts it in the
        database with no group.
        """
        status, out, err = self.runCommand(agentAdd, self.master, "web1")
        self.assertEqual((status, out, err), (0, "001\n", ""))
        self.assertEqual(self.add("web2", ip="10.0.0.2"), "002")
        entries, problems = readClientKeys(self.master.clientKeys)
        self.assertEqual(problems, [])
        self.assertEqual(
            [(e.id, e.name, e.ip) for e in entries],
            [("001", "web1", "any"), ("002", "web2", "10.0.0.2")],
        )
        self.assertEqual(len(entries[0].key), 64)
        int(entries[0].key, 16)
        self.assertNotEqual(entries[0].key, entries[1].key)
        mode = stat.S_IMODE(os.stat(self.master.clientKeys.path).st_mode)
        self.assertEqual(mode, 0o640)
        agents = self.listJson(self.master)
        self.assertEqual(
            [(a["id"], a["groups"]) for a in agents], [("001", []), ("002", [])]
        )

    def test_addWithGroup(self):
        """
        C{--group} puts the new agent in that group.
        """
        agentId = self.add("web1", group="g1")
        self.assertEqual(self.listJson(self.master)[0]["groups"], ["g1"])
        self.assertEqual(agentId, "001")

    def test_unknownGroup(self):
        """
        A group without a directory in C{etc/shared/} is refused with 1710
        and nothing is added.
        """
        result = self.runCommand(agentAdd, self.master, "web1", group="nope")
        self.assertError(result, 1710, "nope")
        self.assertFalse(self.master.clientKeys.exists())
        self.assertEqual(self.listJson(self.master), [])

    def test_duplicateName(self):
        """
        A name already in client.keys is refused with 1705.
        """
        self.add("web1")
        self.assertError(self.runCommand(agentAdd, self.master, "web1"), 1705, "web1")
        self.assertEqual(len(readClientKeys(self.master.clientKeys)[0]), 1)

    def test_invalidNameOrIp(self):
        """
        Invalid names are refused (1725, or 1738 when too long), and so are
        invalid IPs (1706).
        """
        self.assertError(self.runCommand(agentAdd, self.master, "bad name"), 1725)
        self.assertError(self.runCommand(agentAdd, self.master, "n" * 129), 1738)
        self.assertError(
            self.runCommand(agentAdd, self.master, "ok", ip="10.0.0.300"), 1706
        )
        self.assertFalse(self.master.clientKeys.exists())

    def test_workerRefuses(self):
        """
        A worker refuses to add agents, naming the master, as Wazuh's tools
        do (3019).
        """
        result = self.runCommand(agentAdd, self.worker, "web1")
        self.assertError(result, 3019, "worker nodes", "master.example")
        self.assertFalse(self.worker.clientKeys.exists())

    def test_idsFollowClientKeys(self):
        """
        New IDs follow the highest ID of client.keys, also when the file was
        edited by hand, and agents added by hand reach the database.
        """
        self.master.clientKeys.setContent(b"041 old any " + b"a" * 64 + b"\n")
        self.assertEqual(self.add("new"), "042")
        self.assertEqual([a["id"] for a in self.listJson(self.master)], ["041", "042"])

    def test_addKeepsEveryOtherLine(self):
        """
        Adding an agent appends one line and keeps every line it does not
        own byte for byte: malformed lines, Wazuh's removed lines (C{!NAME},
        C{#ID}), comments, CRLF endings, bytes that are not UTF-8 and a last
        line without a newline.
        """
        key = b"a" * 64
        before = (b"001 web1 any " + key + b"\r\n"
                  b"002 !gone any " + key + b"\n"
                  b"#009 old any " + key + b"\n"
                  b"007 broken\n"
                  b"\xff\xfe not utf-8\n"
                  b"003 web3 10.0.0.3 " + key)
        self.master.clientKeys.setContent(before)
        status, out, err = self.runCommand(agentAdd, self.master, "web4")
        self.assertEqual((status, out), (0, "010\n"))
        after = self.master.clientKeys.getContent()
        self.assertTrue(after.startswith(before + b"\n"), after)
        self.assertEqual(after.count(b"\n"), before.count(b"\n") + 2)
        self.assertTrue(after.endswith(b"\n"))
        self.assertEqual(after[len(before) + 1:].split()[:3], [b"010", b"web4", b"any"])

    def test_neverReusesAnId(self):
        """
        An ID that appears anywhere in client.keys (a removed agent's line,
        a malformed line) is never given to a new agent.
        """
        key = "b" * 64
        self.master.clientKeys.setContent(
            f"001 web1 any {key}\n005 !removed any {key}\n".encode())
        self.assertEqual(self.add("web2"), "006")
        self.master.clientKeys.setContent(
            self.master.clientKeys.getContent() + b"012 not a valid line at all\n")
        status, out, err = self.runCommand(agentAdd, self.master, "web3")
        self.assertEqual((status, out), (0, "013\n"))
        self.assertIn("line 4: expected 4 fields", err)

    def test_duplicateIpRefused(self):
        """
        An IP (or network) another agent has is refused with Wazuh's 1706
        text and nothing is added; C{any} may repeat.
        """
        self.add("web1", ip="10.0.0.5")
        self.add("net1", ip="10.1.0.0/24")
        before = self.master.clientKeys.getContent()
        self.assertError(self.runCommand(agentAdd, self.master, "web2", ip="10.0.0.5"),
                         1706, "There is an agent with the same IP or the IP is invalid",
                         "10.0.0.5")
        self.assertError(self.runCommand(agentAdd, self.master, "net2",
                                         ip="10.1.0.7/24"), 1706)
        self.assertEqual(self.master.clientKeys.getContent(), before)
        self.assertEqual(len(self.listJson(self.master)), 2)
        self.add("any1")
        self.add("any2")

    def test_missingConfiguration(self):
        """
        A home without ossec.conf gives Wazuh's 3006 error, no traceback.
        """
        self.master.ossecConf.remove()
        self.assertError(self.runCommand(agentAdd, self.master, "web1"), 3006)


class RemoveTests(_CommandTestsMixin, SynchronousTestCase):
    """
    Tests for L{agentRemove}.
    """

    def test_remove(self):
        """
        Removing an agent deletes it from client.keys and the database.
        """
        self.add("web1")
        self.add("web2")
        status, out, err = self.runCommand(agentRemove, self.master, "1")
        self.assertEqual((status, out, err), (0, "Agent 001 removed.\n", ""))
        self.assertEqual(
            [e.id for e in readClientKeys(self.master.clientKeys)[0]], ["002"]
        )
        self.assertEqual([a["id"] for a in self.listJson(self.master)], ["002"])

    def test_removeKeepsEveryOtherLine(self):
        """
        Removing an agent deletes its line only: every other line, removed
        and malformed ones included, stays byte for byte.
        """
        key = b"c" * 64
        keep = [b"001 web1 any " + key + b"\r",
                b"002 !gone any " + key,
                b"garbage line \xff",
                b"",
                b"004 web4 any " + key]
        lines = keep[:2] + [b"003 web3 any " + key] + keep[2:]
        self.master.clientKeys.setContent(b"\n".join(lines))
        status, out, err = self.runCommand(agentRemove, self.master, "003")
        self.assertEqual((status, out), (0, "Agent 003 removed.\n"))
        self.assertEqual(self.master.clientKeys.getContent(), b"\n".join(keep))
        status, out, err = self.runCommand(agentList, self.master, asJson=True)
        self.assertEqual(sorted(a["id"] for a in json.loads(out)["agents"]),
                         ["001", "004"])

    def test_badId(self):
        """
        A malformed or unknown ID is refused with 1701.
        """
        self.add("web1")
        self.assertError(self.runCommand(agentRemove, self.master, "abc"), 1701)
        self.assertError(self.runCommand(agentRemove, self.master, "007"), 1701, "007")
        self.assertEqual(len(self.listJson(self.master)), 1)

    def test_workerRefuses(self):
        """
        A worker refuses to remove agents (3019).
        """
        self.assertError(self.runCommand(agentRemove, self.worker, "001"), 3019)


class GroupTests(_CommandTestsMixin, SynchronousTestCase):
    """
    Tests for L{agentGroup}.
    """

    def test_setAndClear(self):
        """
        C{--set} replaces an agent's groups in order, and an empty list
        clears them; each change takes a new group version.
        """
        self.add("web1")
        status, out, err = self.runCommand(
            agentGroup, self.master, "001", ["g1", "default"]
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, "Agent 001 groups: g1,default\n")
        self.assertEqual(self.listJson(self.master)[0]["groups"], ["g1", "default"])
        self.assertEqual(self.runCommand(agentGroup, self.master, "001", [])[0], 0)
        self.assertEqual(self.listJson(self.master)[0]["groups"], [])
        db = AgentDatabase.openBlocking(self.master.globalDb)
        self.addCleanup(db.close)
        versions = []
        db.groupChangesSince(0).addCallback(versions.append)
        self.assertEqual(versions, [([("001", [], 2)], 2)])

    def test_unknownGroup(self):
        """
        Every group must exist in C{etc/shared/} (1710); nothing changes
        otherwise.
        """
        self.add("web1", group="g1")
        self.assertError(
            self.runCommand(agentGroup, self.master, "001", ["default", "nope"]),
            1710,
            "nope",
        )
        self.assertError(
            self.runCommand(agentGroup, self.master, "001", ["../etc"]), 1710
        )
        self.assertEqual(self.listJson(self.master)[0]["groups"], ["g1"])

    def test_unknownAgent(self):
        """
        An unknown ID is refused with 1701.
        """
        self.assertError(
            self.runCommand(agentGroup, self.master, "005", ["g1"]), 1701, "005"
        )

    def test_workerRefuses(self):
        """
        A worker refuses to change groups (3019).
        """
        self.assertError(self.runCommand(agentGroup, self.worker, "001", ["g1"]), 3019)


class GroupCommandLineTests(_CommandTestsMixin, SynchronousTestCase):
    """
    C{wazuh-cluster agent group} on the command line.
    """

    def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        status = run(list(argv), out, err, environ={})
        return status, out.getvalue(), err.getvalue()

    def test_emptySetRefused(self):
        """
        C{--set ''} (or only commas) is refused with one line naming
        C{--clear}, and the agent keeps its groups.
        """
        self.add("web1", group="g1")
        for value in ("", " , "):
            status, out, err = self.cli("agent", "group", "--home", self.master.root.path,
                                        "--id", "001", "--set", value)
            self.assertEqual((status, out), (2, ""))
            self.assertEqual(len(err.splitlines()), 1)
            self.assertIn("--clear", err)
        self.assertEqual(self.listJson(self.master)[0]["groups"], ["g1"])

    def test_clear(self):
        """
        C{--clear} removes every group; C{--set} and C{--clear} together are
        a usage error.
        """
        self.add("web1", group="g1")
        status, out, err = self.cli("agent", "group", "--home", self.master.root.path,
                                    "--id", "001", "--clear")
        self.assertEqual((status, out, err), (0, "Agent 001 groups: (none)\n", ""))
        self.assertEqual(self.listJson(self.master)[0]["groups"], [])
        status, _, _ = self.cli("agent", "group", "--home", self.master.root.path,
                                "--id", "001", "--clear", "--set", "g1")
        self.assertEqual(status, 2)


class ListTests(_CommandTestsMixin, SynchronousTestCase):
    """
    Tests for L{agentList} and L{formatAgentTable}.
    """

    def test_table(self):
        """
        The table has C{cluster_control -a}'s header, every column as wide
        as its longest cell plus 2, and C{unknown} for missing values.
        """
        self.add("web1")
        self.add("a-much-longer-name", ip="10.0.0.2")
        status, out, err = self.runCommand(agentList, self.master)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out,
            "ID   NAME                IP        STATUS           VERSION  NODE NAME  \n"
            "001  web1                any       never_connected  unknown  unknown    \n"
            "002  a-much-longer-name  10.0.0.2  never_connected  unknown  unknown    \n",
        )

    def test_formatAgentTable(self):
        """
        Known values are shown as they are; a table with no agent is the
        header alone.
        """
        agent = {
            "id": "001",
            "name": "a",
            "ip": "any",
            "status": "active",
            "version": "Wazuh v4.14.0",
            "node_name": "worker1",
        }
        self.assertEqual(
            formatAgentTable([agent]).splitlines()[1],
            "001  a     any  active  Wazuh v4.14.0  worker1    ",
        )
        self.assertEqual(
            formatAgentTable([]), "ID  NAME  IP  STATUS  VERSION  NODE NAME  \n"
        )

    def test_json(self):
        """
        C{--json} prints C{{"agents": [...]}} with DESIGN.md's field names.
        """
        self.add("web1", group="default")
        agents = self.listJson(self.master)
        self.assertEqual(
            agents,
            [
                {
                    "id": "001",
                    "name": "web1",
                    "ip": "any",
                    "status": "never_connected",
                    "version": None,
                    "node_name": None,
                    "groups": ["default"],
                    "os_name": None,
                    "os_version": None,
                    "last_keepalive": None,
                }
            ],
        )

    def test_workerListsSyncedKeys(self):
        """
        On a worker, the agents of its (synced) client.keys are listed, and
        agents removed from it disappear.
        """
        self.add("web1")
        self.add("web2")
        self.syncKeys()
        self.assertEqual(
            [a["name"] for a in self.listJson(self.worker)], ["web1", "web2"]
        )
        self.runCommand(agentRemove, self.master, "001")
        self.worker.clientKeys.remove()
        self.syncKeys()
        self.assertEqual([a["name"] for a in self.listJson(self.worker)], ["web2"])

    def test_malformedKeysWarned(self):
        """
        Malformed client.keys lines are reported as warnings with their line
        numbers; the valid agents are still listed.
        """
        self.worker.clientKeys.setContent(
            b"001 ok any " + b"a" * 64 + b"\nbroken line\n"
        )
        status, out, err = self.runCommand(agentList, self.worker, asJson=True)
        self.assertEqual(status, 0)
        self.assertIn("WARNING:", err)
        self.assertIn("line 2:", err)
        self.assertEqual([a["id"] for a in json.loads(out)["agents"]], ["001"])


class ReportTests(_CommandTestsMixin, SynchronousTestCase):
    """
    Tests for L{agentReport}.
    """

    def test_reportOnWorker(self):
        """
        A report on a worker stores the status, OS, version, labels and the
        worker's node name, and marks the agent for agent-info sync.
        """
        self.add("web1")
        self.syncKeys()
        status, out, err = self.runCommand(
            agentReport,
            self.worker,
            "001",
            osName="Ubuntu",
            osVersion="22.04",
            version="Wazuh v4.14.0",
            labels=["env=prod", "team=a=b"],
            now=1700000000,
        )
        self.assertEqual(
            (status, out, err), (0, "Agent 001 reported active to worker1.\n", "")
        )
        [agent] = self.listJson(self.worker)
        self.assertEqual(
            {
                k: agent[k]
                for k in (
                    "status",
                    "node_name",
                    "os_name",
                    "os_version",
                    "version",
                    "last_keepalive",
                )
            },
            {
                "status": "active",
                "node_name": "worker1",
                "os_name": "Ubuntu",
                "os_version": "22.04",
                "version": "Wazuh v4.14.0",
                "last_keepalive": "2023-11-14T22:13:20+00:00",
            },
        )
        db = AgentDatabase.openBlocking(self.worker.globalDb)
        self.addCleanup(db.close)
        rows = []
        db.agentInfoToSync().addCallback(rows.extend)
        self.assertEqual(
            [(r["id"], r["labels"]) for r in rows],
            [("001", {"env": "prod", "team": "a=b"})],
        )

    def test_reportDisconnected(self):
        """
        C{--status disconnected} is recorded.
        """
        self.add("web1")
        self.assertEqual(
            self.runCommand(agentReport, self.master, "001", status="disconnected")[0],
            0,
        )
        self.assertEqual(self.listJson(self.master)[0]["status"], "disconnected")

    def test_unknownId(self):
        """
        An ID absent from this node's client.keys is refused with a message
        saying so, even if another node knows it.
        """
        self.add("web1")
        result = self.runCommand(agentReport, self.worker, "001")
        self.assertError(result, 1701, "001", "client.keys")
        self.assertError(self.runCommand(agentReport, self.worker, "x1"), 1701)

    def test_badStatusOrLabel(self):
        """
        An unknown status or a label without C{=} is refused, nothing
        recorded.
        """
        self.add("web1")
        self.assertError(
            self.runCommand(agentReport, self.master, "001", status="dancing"),
            1000,
            "dancing",
        )
        self.assertError(
            self.runCommand(agentReport, self.master, "001", labels=["novalue"]),
            1000,
            "novalue",
        )
        self.assertEqual(self.listJson(self.master)[0]["status"], "never_connected")


class RecordingDaemon:
    """
    The control handler of a daemon that answers every request with C{{}}
    and records the requests it was sent (the daemon side of
    C{sync_agent_info} belongs to the worker's agent-info service).
    """

    def __init__(self):
        self.requests = []

    def answer(self, request, arguments):
        from twisted.internet.defer import succeed

        self.requests.append(request)
        return succeed(b"{}")


class ReportNotifiesDaemonTests(TestCase):
    """
    C{agent report} asks the running daemon to send its agent info now.
    """

    def setUp(self):
        # A short base: UNIX socket paths are limited to 107 bytes.
        base = FilePath(tempfile.mkdtemp(prefix="wza-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, base.path, True)
        self.master = makeHome(base.child("m"), "master", "master-node", ["default"])
        self.worker = makeHome(base.child("w"), "worker", "worker1")

    def serve(self, handlerFactory):
        from twisted.internet import reactor

        server = ControlServer(self.worker.controlSocket, handlerFactory, reactor)
        server.startService()
        self.addCleanup(server.stopService)

    @inlineCallbacks
    def test_reportRequestsAgentInfoSync(self):
        """
        After recording the report, the command sends the control request
        C{sync_agent_info} to the worker's daemon (from a real thread, as
        the command blocks).
        """
        daemon = RecordingDaemon()
        self.serve(serving(daemon))
        out, err = io.StringIO(), io.StringIO()
        agentAdd(self.master.root.path, "web1", out=out, err=err)
        self.master.clientKeys.copyTo(self.worker.clientKeys)
        status = yield deferToThread(agentReport, self.worker.root.path, "001",
                                     out=out, err=err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.assertEqual(daemon.requests, ["sync_agent_info"])

    @inlineCallbacks
    def test_daemonErrorIsFine(self):
        """
        A daemon that does not know C{sync_agent_info} answers an error: the
        report still succeeds, and L{askLocalDaemon} tells an answer from an
        error.
        """
        from tests.cluster import InMemoryCluster

        cluster = InMemoryCluster(self)
        self.serve(lambda: MasterLocalHandler(cluster.master))
        self.master.clientKeys.setContent(b"001 web1 any " + b"a" * 64 + b"\n")
        self.master.clientKeys.copyTo(self.worker.clientKeys)
        out, err = io.StringIO(), io.StringIO()
        status = yield deferToThread(agentReport, self.worker.root.path, "001",
                                     out=out, err=err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        answered = yield deferToThread(askLocalDaemon, self.worker, "get_nodes")
        self.assertTrue(answered)
        refused = yield deferToThread(askLocalDaemon, self.worker, "sync_agent_info")
        self.assertFalse(refused)
