# -*- test-case-name: tests.test_endtoend_dropin -*-
"""
End-to-end beside Wazuh managers: real C{twistd} processes made with
C{wazuh-cluster init --agent-store wazuh-db}, the wazuh-db and authd
stand-ins as processes (C{python -m tests.standins.wazuhdb --home H},
C{python -m tests.standins.authd --home H}), and clients speaking Wazuh's
local framing byte for byte on C{queue/cluster/c-internal.sock}, as
C{cluster_control} and authd do.
"""

import json
import os
import struct
import sys

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.test_endtoend import AGENTS_FAST, ClusterProcesses, environment
from wazuhcluster.wazuhdb.classic import WazuhDBClient
from wazuhcluster.wazuhlocal.framing import FrameDecoder

#: What C{cluster_control -l} sends.
GET_NODES = (b'{"filter_node":null,"offset":0,"limit":null,"sort":null,"search":null,'
             b'"select":null,"filter_type":"all","distinct":false}')

#: What C{cluster_control -a} sends.
AGENTS_REQUEST = (
    b'{"f":{"__callable__":{"__name__":"get_agents_overview","__module__":"wazuh.core.agent",'
    b'"__qualname__":"Agent.get_agents_overview","__type__":"function"}},'
    b'"f_kwargs":{"filters":{"status":"all","node_name":"all"},"limit":null,'
    b'"select":["id","ip","name","status","node_name","version"]},'
    b'"from_cluster":false,"wait_for_complete":false}'
)


def frame(counter, command, payload):
    """
    One frame built by hand from the recorded layout.
    """
    field = command + b" " + b"-" * (11 - len(command))
    return struct.pack("!2I", counter, len(payload)) + field + payload


class RawClient:
    """
    A blocking client of a local socket speaking bytes (run it in a
    thread).
    """

    def __init__(self, path):
        import socket

        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.settimeout(30)
        self.socket.connect(path)
        self.decoder = FrameDecoder()
        self.received = []

    def send(self, data):
        self.socket.sendall(data)

    def next(self):
        while not self.received:
            data = self.socket.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.received.extend(self.decoder.feed(data))
        return self.received.pop(0)

    def close(self):
        self.socket.close()


def listNodes(path):
    """
    C{cluster_control -l}'s exchange: one C{get_nodes}; on a worker, the
    reply says the master was asked and the answer comes as C{control_res}.

    @return: the messages received.
    """
    client = RawClient(path)
    try:
        client.send(frame(0x5EED, b"get_nodes", GET_NODES))
        reply = client.next()
        messages = [reply]
        if reply.payload == b"Sent request to master node":
            pushed = client.next()
            client.send(frame(pushed.counter, b"ok", b"Response received"))
            messages.append(pushed)
        return messages
    finally:
        client.close()


def listAgents(path):
    """
    C{cluster_control -a}'s exchange: C{dapi}, then the server's
    C{new_str}, C{str_upd} and C{dapi_res}, each answered as Wazuh's client
    answers them.

    @return: the reply to C{dapi} and the decoded overview.
    """
    client = RawClient(path)
    try:
        client.send(frame(42, b"dapi", AGENTS_REQUEST))
        reply = client.next()
        newStr = client.next()
        assert newStr.command == b"new_str", newStr
        client.send(frame(newStr.counter, b"ok", b"31337"))
        strUpd = client.next()
        client.send(frame(strUpd.counter, b"ok", b"String updated"))
        dapiRes = client.next()
        assert (dapiRes.command, dapiRes.payload) == (b"dapi_res", b"31337"), dapiRes
        client.send(frame(dapiRes.counter, b"ok", b"Distributed api response received"))
        return reply, json.loads(strUpd.payload.split(b" ", 1)[1])
    finally:
        client.close()


def enrol(path, name):
    """
    authd's C{sendsync} on a worker: no reply; one pushed C{ok} frame
    with authd's answer.

    @return: the pushed message.
    """
    client = RawClient(path)
    try:
        message = {"daemon_name": "authd", "message": {"function": "add", "arguments": {
            "name": name, "ip": "any", "groups": "default"}}}
        client.send(frame(0xABCD, b"sendsync", json.dumps(message).encode()))
        return client.next()
    finally:
        client.close()


class _StandIn(ProcessProtocol):
    def __init__(self):
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.output = b""

    def outReceived(self, data):
        self.output += data
        if b"ready" in self.output and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.ready.called:
            self.ready.errback(RuntimeError(self.output.decode(errors="replace")))
        self.ended.callback(None)


class DropinProcesses(ClusterProcesses):
    """
    Nodes made with C{init --agent-store wazuh-db}, each beside its own
    wazuh-db stand-in (and the master beside an authd stand-in).
    """

    def __init__(self, testCase, workers=("worker1", "worker2")):
        super().__init__(testCase, workers=workers, intervals=AGENTS_FAST)
        for home in self.homes.values():
            overrides = json.loads(home.clusterJsonOverrides.getContent())
            overrides["agent_store"] = {"backend": "wazuh-db"}
            home.clusterJsonOverrides.setContent(json.dumps(overrides).encode())
            home.shared.child("default").makedirs(ignoreExistingDirectory=True)
        self.standins = []

    def init(self, name, nodeType):
        import io

        from wazuhcluster.cli import run as runCli

        argv = ["init", "--home", self.base.child(name).path, "--type", nodeType,
                "--name", name, "--ca", self.ca, "--port", str(self.port),
                "--agent-store", "wazuh-db"]
        if nodeType == "worker":
            argv += ["--master-host", "127.0.0.1"]
        out, err = io.StringIO(), io.StringIO()
        assert runCli(argv, out, err) == 0, err.getvalue()
        from wazuhcluster.home import NodeHome

        home = NodeHome(self.base.child(name))
        assert json.loads(home.clusterJsonOverrides.getContent()) == {
            "agent_store": {"backend": "wazuh-db"}}
        return home

    def startStandIn(self, module, name):
        process = _StandIn()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        transport = reactor.spawnProcess(
            process, sys.executable,
            [sys.executable, "-m", f"tests.standins.{module}", "--home",
             self.homes[name].root.path], env=environment(), path=root)
        process.transport = transport
        self.testCase.addCleanup(self._stopStandIn, process)
        return process.ready

    def _stopStandIn(self, process):
        if process.ended.called:
            return None
        process.transport.signalProcess("TERM")
        return process.ended

    @defer.inlineCallbacks
    def startStandIns(self):
        for name in self.homes:
            yield self.startStandIn("wazuhdb", name)
        yield self.startStandIn("authd", "master")

    def wdb(self, name):
        client = WazuhDBClient.forHome(self.homes[name], reactor)
        self.testCase.addCleanup(client.close)
        return client


class DropinEndToEndTests(TestCase):
    """
    A master and two workers in the place of wazuh-clusterd.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_dropin(self):
        """
        Wazuh's pidfile names the running nodes; C{cluster_control -l}'s
        bytes list every node on the master and through a worker; authd's
        C{sendsync} on a worker enrols an agent with the master's authd,
        whose client.keys reaches every worker; an agent marked active in
        a worker's wazuh-db shows active on the master's, with the worker's
        name, and in C{cluster_control -a}'s exchange; a group assigned in
        the master's wazuh-db reaches every worker's; C{wazuh-cluster agent
        add --home WORKER} enrols through the worker's daemon; at stop the
        pidfile is gone.
        """
        cluster = DropinProcesses(self)
        yield cluster.startStandIns()
        nodes = {name: cluster.start(name) for name in ("master", "worker1", "worker2")}
        master, worker1 = cluster.homes["master"], cluster.homes["worker1"]
        everyone = ["master", "worker1", "worker2"]

        def pidfile(name):
            pid = nodes[name].transport.pid
            return cluster.homes[name].child(f"var/run/wazuh-clusterd-{pid}.pid")

        yield cluster.waitFor(lambda: all(pidfile(name).exists() for name in everyone))
        self.assertEqual(pidfile("master").getContent(),
                         f"{nodes['master'].transport.pid}\n".encode())

        @defer.inlineCallbacks
        def listed(name):
            try:
                messages = yield deferToThread(listNodes, cluster.homes[name].controlSocket.path)
            except OSError:
                return None
            if messages[-1].command not in (b"ok", b"control_res"):
                return None
            items = json.loads(messages[-1].payload)["items"]
            return sorted(item["name"] for item in items) == everyone and messages

        yield cluster.waitFor(lambda: listed("master"))
        messages = yield cluster.waitFor(lambda: listed("worker1"))
        self.assertEqual([m.command for m in messages], [b"ok", b"control_res"])
        self.assertEqual(messages[0].counter, 0x5EED)

        # Enrollment through worker1, as its authd does it.
        pushed = yield deferToThread(enrol, worker1.controlSocket.path, "agent3")
        self.assertEqual(pushed.command, b"ok")
        answer = json.loads(pushed.payload)
        self.assertEqual((answer["error"], answer["data"]["id"]), (0, "001"))
        keys = master.clientKeys.getContent()
        self.assertEqual(keys, f"001 agent3 any {answer['data']['key']}\n".encode())
        for name in ("worker1", "worker2"):
            yield cluster.waitFor(
                lambda name=name: cluster.homes[name].clientKeys.exists()
                and cluster.homes[name].clientKeys.getContent() == keys, timeout=30)

        # Each worker's wazuh-db learns the agent (as wazuh-modulesd would
        # insert client.keys agents); worker1's marks it active.
        for name in ("worker1", "worker2"):
            wdb = cluster.wdb(name)
            yield cluster.waitFor(lambda wdb=wdb: wdb.run("global get-agent-info 1"), timeout=30)
        yield cluster.wdb("worker1").run(
            'global update-connection-status {"id": 1, "connection_status": "active", '
            '"sync_status": "syncreq", "status_code": 0}')
        masterDb = cluster.wdb("master")

        @defer.inlineCallbacks
        def activeOnMaster():
            [row] = yield masterDb.run("global get-agent-info 1")
            return row["connection_status"] == "active" and row["node_name"] == "worker1"

        yield cluster.waitFor(activeOnMaster, timeout=30)
        reply, overview = yield deferToThread(listAgents, master.controlSocket.path)
        self.assertEqual((reply.counter, reply.command, reply.payload),
                         (42, b"ok", b"Added request to API requests queue"))
        self.assertEqual(overview["totalItems"], 1)
        self.assertEqual({k: overview["items"][0][k] for k in ("id", "name", "status",
                                                               "node_name")},
                         {"id": "001", "name": "agent3", "status": "active",
                          "node_name": "worker1"})

        # A group assigned in the master's wazuh-db reaches every worker's.
        groups = yield masterDb.run("global select-groups")
        for group in {"default", "web"} - {g["name"] for g in groups}:
            yield masterDb.run(f"global insert-agent-group {group}")
        yield masterDb.run('global set-agent-groups {"mode":"override","sync_status":"syncreq",'
                           '"data":[{"id":1,"groups":["default","web"]}]}')
        for name in ("worker1", "worker2"):
            wdb = cluster.wdb(name)

            @defer.inlineCallbacks
            def grouped(wdb=wdb):
                [row] = yield wdb.run("global get-agent-info 1")
                return row.get("group") == "default,web"

            yield cluster.waitFor(grouped, timeout=30)

        # wazuh-cluster agent add on a worker goes through its daemon.
        out, err, status = yield cluster.cli("agent", "add", "--home",
                                             cluster.homes["worker2"].root.path,
                                             "--name", "agent4")
        self.assertEqual((status, out, err), (0, b"002\n", b""))
        self.assertIn(b" agent4 any ", master.clientKeys.getContent())
        out, err, status = yield cluster.cli("control", "--home", worker1.root.path, "-a",
                                             "--json")
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(a["id"] for a in json.loads(out)["agents"]), ["001", "002"])

        path = pidfile("master")
        yield cluster.kill("master", "TERM")
        self.assertFalse(path.exists())
