# -*- test-case-name: tests.test_localserver -*-
"""
Tests for the node's local server (L{wazuhcluster.control.ControlServer}
with L{wazuhcluster.localserver}): a client speaks Wazuh's local framing
byte for byte as recorded of C{cluster_control} and authd
(C{/work/shared/wazuh-peers/README.md}) to the connections the real
server's factory builds, for an in-memory cluster.
"""

import hashlib
import json
import struct

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.cluster import MASTER_HOST, InMemoryCluster
from tests.standins.harness import MemoryStandIns
from wazuhcluster import __version__
from wazuhcluster.control import CONTROL_IDLE_TIMEOUT, ControlServer
from wazuhcluster.errors import ClusterError
from wazuhcluster.localserver.master import MasterLocalHandler
from wazuhcluster.localserver.shapes import AgentsQuery, NodesQuery, healthNames
from wazuhcluster.localserver.worker import workerHandlers
from wazuhcluster.wazuhlocal.framing import FrameDecoder, Message, buildFrames

#: What C{cluster_control -l} sends.
GET_NODES = (b'{"filter_node":null,"offset":0,"limit":null,"sort":null,"search":null,'
             b'"select":null,"filter_type":"all","distinct":false}')

#: The DAPI request of C{cluster_control -a}.
AGENTS_REQUEST = (
    b'{"f":{"__callable__":{"__name__":"get_agents_overview","__module__":"wazuh.core.agent",'
    b'"__qualname__":"Agent.get_agents_overview","__type__":"function"}},'
    b'"f_kwargs":{"filters":{"status":"all","node_name":"all"},"limit":null,'
    b'"select":["id","ip","name","status","node_name","version"]},'
    b'"from_cluster":false,"wait_for_complete":false}'
)

#: authd's C{sendsync} on a worker, enrolling agent3.
ENROL = (b'{"daemon_name":"authd","message":{"function":"add","arguments":'
         b'{"name":"agent3","ip":"any","groups":"default"}}}')

KEY = "7" * 64


def frame(counter, command, payload):
    """
    One frame built by hand from the recorded layout: C{!2I12s}, the
    command padded with one space and dashes.
    """
    field = command + b" " + b"-" * (11 - len(command))
    return struct.pack("!2I", counter, len(payload)) + field + payload


def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


def wazuhError(className, code, extra):
    return compact({"__wazuh_exception__": {"__class__": className, "__object__": {
        "code": code, "extra_message": extra}}})


class LocalClientBytes:
    """
    One connection of the real server's factory, driven with bytes.
    """

    def __init__(self, server):
        self.protocol = server.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)

    def raw(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def take(self):
        return FrameDecoder().feed(self.raw())


class MasterBytesTests(SynchronousTestCase):
    """
    The master's local server, as C{cluster_control} and the Wazuh API
    speak to it.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        self.cluster.addWorker("worker1")
        self.cluster.addWorker("worker2")
        master = self.cluster.master
        self.server = ControlServer(self.cluster.masterHome.controlSocket,
                                    lambda: MasterLocalHandler(master), self.cluster.clock)
        self.client = LocalClientBytes(self.server)

    def nodes(self):
        return [{"name": "master", "type": "master", "version": __version__, "ip": MASTER_HOST},
                {"name": "worker1", "type": "worker", "version": __version__, "ip": "10.0.0.2"},
                {"name": "worker2", "type": "worker", "version": __version__, "ip": "10.0.0.2"}]

    def test_getNodes(self):
        """
        C{get_nodes} with C{cluster_control -l}'s payload is answered with
        one frame: the request's counter, the payload's length, C{ok} padded
        with a space and dashes, then the recorded C{{"items": [...],
        "totalItems": N}}.
        """
        self.client.send(frame(0xDEADBEEF, b"get_nodes", GET_NODES))
        body = compact({"items": self.nodes(), "totalItems": 3})
        raw = self.client.raw()
        self.assertEqual(raw[:20], struct.pack("!2I", 0xDEADBEEF, len(body)) + b"ok ---------")
        self.assertEqual(raw, frame(0xDEADBEEF, b"ok", body))

    def test_getNodesQuery(self):
        """
        C{filter_node}, C{filter_type}, C{select}, C{sort}, C{search},
        C{offset} and C{limit} act as Wazuh's; C{totalItems} counts before
        the page.
        """
        query = json.loads(GET_NODES)
        query.update(filter_type="worker", select=["name"], sort={"fields": ["name"],
                     "order": "desc"}, offset=0, limit=1)
        self.client.send(frame(1, b"get_nodes", compact(query)))
        [reply] = self.client.take()
        self.assertEqual(json.loads(reply.payload),
                         {"items": [{"name": "worker2"}], "totalItems": 2})
        query = json.loads(GET_NODES)
        query.update(filter_node=["worker1", "master"], search={"value": "WORKER",
                     "negation": True})
        self.client.send(frame(2, b"get_nodes", compact(query)))
        [reply] = self.client.take()
        self.assertEqual(json.loads(reply.payload), {"items": [self.nodes()[0]], "totalItems": 1})

    def test_getNodesErrors(self):
        """
        An unknown node is Wazuh's 1730, an unknown select field 1724, an
        unknown node type 1728, JSON that does not parse 3036: each an
        C{err} frame with the request's counter and Wazuh's exception
        encoding.
        """
        query = json.loads(GET_NODES)
        query["filter_node"] = ["worker1", "nosuch"]
        self.client.send(frame(7, b"get_nodes", compact(query)))
        self.assertEqual(self.client.raw(), frame(7, b"err", wazuhError(
            "WazuhError", 1730, "nosuch")))
        for change, code in (({"select": ["name", "cpu"]}, 1724),
                             ({"filter_type": "client"}, 1728)):
            query = dict(json.loads(GET_NODES), **change)
            self.client.send(frame(8, b"get_nodes", compact(query)))
            [reply] = self.client.take()
            self.assertEqual((reply.counter, reply.command), (8, b"err"))
            self.assertEqual(json.loads(reply.payload)["__wazuh_exception__"]["__object__"]
                             ["code"], code)
        self.client.send(frame(9, b"get_nodes", b"{not json"))
        [reply] = self.client.take()
        self.assertEqual(json.loads(reply.payload)["__wazuh_exception__"]["__object__"]["code"],
                         3036)

    def test_getHealth(self):
        """
        C{get_health null} answers every node, the status block of workers
        with Wazuh's fields; a list of names narrows it.
        """
        self.client.send(frame(77, b"get_health", b"null"))
        [reply] = self.client.take()
        self.assertEqual((reply.counter, reply.command), (77, b"ok"))
        health = json.loads(reply.payload)
        self.assertEqual(health["n_connected_nodes"], 2)
        self.assertEqual(sorted(health["nodes"]), ["master", "worker1", "worker2"])
        self.assertEqual(health["nodes"]["worker1"]["info"], {
            "name": "worker1", "type": "worker", "version": __version__, "ip": "10.0.0.2",
            "n_active_agents": 0})
        status = health["nodes"]["worker1"]["status"]
        for field in ("sync_integrity_free", "last_check_integrity", "last_sync_integrity",
                      "sync_agent_info_free", "last_sync_agentinfo", "last_sync_agentgroup",
                      "last_sync_full_agentgroup", "last_keep_alive"):
            self.assertIn(field, status)
        self.assertRegex(status["last_keep_alive"], r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
        self.client.send(frame(78, b"get_health", b'["worker2"]'))
        [reply] = self.client.take()
        health = json.loads(reply.payload)
        self.assertEqual((sorted(health["nodes"]), health["n_connected_nodes"]),
                         (["worker2"], 1))

    def addAgents(self):
        store = self.cluster.masterStore
        self.successResultOf(store.addAgent("001", "agent1", "10.0.0.1", "a" * 64, ["default"]))
        self.successResultOf(store.addAgent("002", "agent2", "any", "b" * 64))
        self.successResultOf(store.reportAgent("001", status="active", version="Wazuh v4.14.7",
                                               nodeName="worker1"))

    def test_dapiAgentsOverview(self):
        """
        The C{-a} exchange, as recorded: C{dapi} is answered at once C{ok
        "Added request to API requests queue"} with its counter; then the
        server sends C{new_str "<len>"} (the client answers the id), C{str_upd
        "<id> <json>"} and C{dapi_res "<id>"} with consecutive counters of
        its own; the JSON is C{{"items": [...], "totalItems": N}} from the
        agent store, the fields in the order selected, values it lacks left
        out.
        """
        self.addAgents()
        self.client.send(frame(1000, b"dapi", AGENTS_REQUEST))
        self.assertEqual(self.client.raw(),
                         frame(1000, b"ok", b"Added request to API requests queue"))
        self.cluster.clock.advance(0)
        body = compact({"items": [
            {"id": "001", "ip": "10.0.0.1", "name": "agent1", "status": "active",
             "node_name": "worker1", "version": "Wazuh v4.14.7"},
            {"id": "002", "ip": "any", "name": "agent2", "status": "never_connected"}],
            "totalItems": 2})
        [newStr] = self.client.take()
        self.assertEqual((newStr.command, newStr.payload), (b"new_str", str(len(body)).encode()))
        self.client.send(frame(newStr.counter, b"ok", b"1234567"))
        [strUpd] = self.client.take()
        self.assertEqual(strUpd, Message((newStr.counter + 1) % 2**32, b"str_upd",
                                         b"1234567 " + body))
        self.client.send(frame(strUpd.counter, b"ok", b"String updated"))
        [dapiRes] = self.client.take()
        self.assertEqual(dapiRes, Message((strUpd.counter + 1) % 2**32, b"dapi_res",
                                          b"1234567"))
        self.client.send(frame(dapiRes.counter, b"ok", b"Distributed api response received"))
        self.assertEqual(self.client.raw(), b"")

    def test_dapiFilters(self):
        """
        C{-a -fs active -fn worker1} (comma-separated filters) keeps the
        matching agents.
        """
        self.addAgents()
        request = json.loads(AGENTS_REQUEST)
        request["f_kwargs"]["filters"] = {"status": "active,pending", "node_name": "worker1"}
        self.client.send(frame(5, b"dapi", compact(request)))
        self.client.take()
        self.cluster.clock.advance(0)
        [newStr] = self.client.take()
        self.client.send(frame(newStr.counter, b"ok", b"9"))
        [strUpd] = self.client.take()
        overview = json.loads(strUpd.payload.split(b" ", 1)[1])
        self.assertEqual(([a["id"] for a in overview["items"]], overview["totalItems"]),
                         (["001"], 1))

    def test_dapiOtherFunction(self):
        """
        Another DAPI function is queued like any, then answered with one
        pushed C{dapi_err} carrying Wazuh's 3009 and the function's name.
        """
        request = AGENTS_REQUEST.replace(b"Agent.get_agents_overview", b"get_nodes_info") \
            .replace(b"wazuh.core.agent", b"wazuh.cluster")
        self.client.send(frame(3, b"dapi", request))
        self.assertEqual(self.client.take(),
                         [Message(3, b"ok", b"Added request to API requests queue")])
        self.cluster.clock.advance(0)
        [pushed] = self.client.take()
        self.assertEqual(pushed.command, b"dapi_err")
        error = json.loads(pushed.payload)["__wazuh_exception__"]
        self.assertEqual((error["__class__"], error["__object__"]["code"]),
                         ("WazuhClusterError", 3009))
        self.assertIn("wazuh.cluster.get_nodes_info is not available",
                      error["__object__"]["extra_message"])

    def test_dapiForward(self):
        """
        C{dapi_fwd "<node> <request>"} to a connected worker is answered
        C{ok "Request forwarded to worker node"} and pushed like C{dapi};
        to an unknown node, Wazuh's 3022.
        """
        self.client.send(frame(4, b"dapi_fwd", b"worker1 " + AGENTS_REQUEST))
        self.assertEqual(self.client.take(),
                         [Message(4, b"ok", b"Request forwarded to worker node")])
        self.cluster.clock.advance(0)
        self.assertEqual(self.client.take()[0].command, b"new_str")
        self.client.send(frame(6, b"dapi_fwd", b"nosuch " + AGENTS_REQUEST))
        self.assertEqual(self.client.raw(), frame(6, b"err", wazuhError(
            "WazuhClusterError", 3022, "nosuch")))

    def test_dividedMessages(self):
        """
        A request split in C{d} frames (5 MiB each, header included, one
        counter) is answered once; a reply over 5 MiB goes back the same
        way with the request's counter.
        """
        payload = b"x" * (5 * 1024 * 1024 + 100)
        frames = buildFrames(0x10, b"echo", payload)
        self.assertEqual([f[8:20] for f in frames], [b"echo ------d", b"echo -------"])
        for piece in frames:
            self.client.send(piece)
        raw = self.client.raw()
        self.assertEqual(raw[8:20], b"ok --------d")
        self.assertEqual(FrameDecoder().feed(raw), [Message(0x10, b"ok", payload)])

    def test_keepAlive(self):
        """
        C{echo-c}, Wazuh's client keep-alive, is answered C{ok} with its data
        and counter.
        """
        self.client.send(frame(55, b"echo-c", b"keepalive"))
        self.assertEqual(self.client.raw(), frame(55, b"ok", b"keepalive"))

    def test_getConfig(self):
        """
        C{get_config} answers the C{<cluster>} block as Wazuh's
        C{read_cluster_config} does, the key included.
        """
        self.client.send(frame(12, b"get_config", b""))
        [reply] = self.client.take()
        self.assertEqual(json.loads(reply.payload), {
            "name": "wazuh", "node_name": "master", "node_type": "master",
            "key": "0123456789abcdef0123456789abcdef", "port": 1516, "bind_addr": "0.0.0.0",
            "nodes": [MASTER_HOST], "hidden": "no", "disabled": False})

    def test_getHash(self):
        """
        C{get_hash} answers the MD5 of every ruleset file by path, excluded
        files left out.
        """
        rules = self.cluster.masterHome.child("etc/rules")
        rules.child("local_rules.xml").setContent(b"<group/>\n")
        rules.child("old.xml.swp").setContent(b"junk")
        self.cluster.masterHome.child("etc/lists").child("bad-ips").setContent(b"1.2.3.4:\n")
        self.client.send(frame(13, b"get_hash", b""))
        [reply] = self.client.take()
        self.assertEqual(json.loads(reply.payload), {
            "etc/rules/local_rules.xml": hashlib.md5(b"<group/>\n").hexdigest(),
            "etc/lists/bad-ips": hashlib.md5(b"1.2.3.4:\n").hexdigest()})

    def test_ownRequests(self):
        """
        This project's requests are commands of at most 11 bytes with a
        JSON object: C{get_agents} with its filters, C{refresh_grp}; a
        worker's C{sync_ainfo} is unknown on a master.
        """
        self.addAgents()
        self.client.send(frame(20, b"get_agents", b'{"statuses":["active"]}'))
        [reply] = self.client.take()
        self.assertEqual([a["id"] for a in json.loads(reply.payload)["agents"]], ["001"])
        self.client.send(frame(21, b"refresh_grp", b"{}"))
        self.assertEqual(self.client.take(), [Message(21, b"ok", b'{"refreshed":true}')])
        self.client.send(frame(22, b"sync_ainfo", b"{}"))
        self.assertEqual(self.client.take()[0].command, b"err")

    def test_sendsyncNotOnMaster(self):
        """
        Like Wazuh's master, the master does not take C{sendsync}: C{err}.
        """
        self.client.send(frame(30, b"sendsync", ENROL))
        self.assertEqual(self.client.raw(), frame(30, b"err", wazuhError(
            "WazuhClusterError", 3000, "unknown command 'b'sendsync''")))

    def test_bounds(self):
        """
        A frame announcing more than the bound closes the connection; a
        client silent for two minutes is dropped; past the client limit,
        connections are refused at once (said once in the log until a client
        leaves).
        """
        self.client.send(struct.pack("!2I", 1, 11 * 1024 * 1024) + b"echo -------")
        self.assertTrue(self.client.transport.disconnecting)
        idle = LocalClientBytes(self.server)
        self.cluster.clock.advance(CONTROL_IDLE_TIMEOUT)
        self.assertTrue(idle.transport.disconnecting)
        small = ControlServer(self.cluster.masterHome.controlSocket,
                              lambda: MasterLocalHandler(self.cluster.master),
                              self.cluster.clock, limit=1)
        warnings = []
        small.factory.log.observer = warnings.append
        first = LocalClientBytes(small)
        self.assertIsNone(small.factory.buildProtocol(None))
        self.assertIsNone(small.factory.buildProtocol(None))
        self.assertEqual(len(warnings), 1)
        first.transport.loseConnection()
        first.protocol.connectionLost(None)
        self.assertIsNotNone(small.factory.buildProtocol(None))


class WorkerBytesTests(SynchronousTestCase):
    """
    A worker's local server: what only the master knows is asked of it, and
    authd's C{sendsync} reaches the master's authd.
    """

    def setUp(self):
        self.cluster = InMemoryCluster(self)
        self.worker = self.cluster.addWorker("worker1")
        self.server = ControlServer(self.worker.home.controlSocket,
                                    workerHandlers(self.worker), self.cluster.clock)
        self.client = LocalClientBytes(self.server)
        self.cluster.masterHome.shared.child("default").makedirs()
        self.standins = MemoryStandIns(self.cluster.clock, self.cluster.masterHome.root.path)
        self.cluster.master.relay.authd = self.standins.authdClient()

    def settle(self):
        for _ in range(20):
            self.cluster.network.flush()
            self.standins.network.flush()
            self.cluster.clock.advance(0)

    def test_getNodesForwarded(self):
        """
        C{get_nodes} is answered at once C{ok "Sent request to master
        node"}; the master's answer, in Wazuh's shape, is pushed later as
        C{control_res} with a counter of the server's own.
        """
        self.client.send(frame(21, b"get_nodes", GET_NODES))
        self.assertEqual(self.client.raw(), frame(21, b"ok", b"Sent request to master node"))
        self.settle()
        [pushed] = self.client.take()
        self.assertEqual(pushed.command, b"control_res")
        self.assertNotEqual(pushed.counter, 21)
        answer = json.loads(pushed.payload)
        self.assertEqual(([n["name"] for n in answer["items"]], answer["totalItems"]),
                         (["master", "worker1"], 2))
        self.client.send(frame(pushed.counter, b"ok", b"Response received"))
        self.assertEqual(self.client.raw(), b"")

    def test_getHealthForwarded(self):
        """
        C{get_health} goes the same way; the master's error (an unknown
        node) is pushed as C{err} with its exception.
        """
        self.client.send(frame(22, b"get_health", b"null"))
        self.settle()
        [reply, pushed] = self.client.take()
        self.assertEqual((reply.command, pushed.command), (b"ok", b"control_res"))
        self.assertEqual(json.loads(pushed.payload)["n_connected_nodes"], 1)
        self.client.send(frame(23, b"get_health", b'["nosuch"]'))
        self.settle()
        [reply, pushed] = self.client.take()
        self.assertEqual(pushed, Message(pushed.counter, b"err",
                                         wazuhError("WazuhError", 1730, "nosuch")))

    def test_masterDown(self):
        """
        Without the master, C{get_nodes} and C{sendsync} are answered at
        once with Wazuh's 3023.
        """
        self.cluster.network.masterUp = False
        self.cluster.master.workers["worker1"].transport.loseConnection()
        self.settle()
        error = wazuhError("WazuhClusterError", 3023, None)
        self.client.send(frame(24, b"get_nodes", GET_NODES))
        self.assertEqual(self.client.raw(), frame(24, b"err", error))
        self.client.send(frame(25, b"sendsync", ENROL))
        self.assertEqual(self.client.raw(), frame(25, b"err", error))

    def test_sendsyncEnrols(self):
        """
        authd's C{sendsync} has no reply; the request reaches the master's
        authd, which writes the agent to the master's client.keys, and its
        raw answer is pushed as one C{ok} frame.
        """
        self.client.send(frame(0x1234, b"sendsync", ENROL))
        self.assertEqual(self.client.raw(), b"")
        self.settle()
        [pushed] = self.client.take()
        self.assertEqual(pushed.command, b"ok")
        answer = json.loads(pushed.payload)
        self.assertEqual((answer["error"], answer["data"]["id"], answer["data"]["name"]),
                         (0, "001", "agent3"))
        self.assertEqual(self.client.raw(), b"")
        keys = self.cluster.masterHome.clientKeys.getContent().decode()
        self.assertEqual(keys, f"001 agent3 any {answer['data']['key']}\n")
        self.assertEqual(self.standins.authd.requests, [
            '{"function":"add","arguments":{"name":"agent3","ip":"any","groups":"default"}}'])

    def test_sendsyncAuthdErrors(self):
        """
        authd's own errors come back unchanged in the pushed C{ok} frame
        (C{{"error": 9008, ...}}); an authd that does not run, or a daemon
        the master does not relay to, is a pushed C{err} with Wazuh's code.
        """
        self.client.send(frame(1, b"sendsync", ENROL))
        self.settle()
        self.client.take()
        self.client.send(frame(2, b"sendsync", ENROL))
        self.settle()
        [pushed] = self.client.take()
        self.assertEqual(pushed.payload, b'{"error":9008,"message":"Duplicate name"}')
        self.standins.network.refusing.add(self.standins.authdFactory)
        self.client.send(frame(3, b"sendsync", ENROL.replace(b"agent3", b"agent4")))
        self.settle()
        [pushed] = self.client.take()
        self.assertEqual(pushed.command, b"err")
        self.assertEqual(json.loads(pushed.payload)["__wazuh_exception__"]["__object__"]["code"],
                         1726)
        self.client.send(frame(4, b"sendsync", ENROL.replace(b'"authd"', b'"wazuh-db"')))
        self.settle()
        [pushed] = self.client.take()
        self.assertIn("sendsync to daemon 'wazuh-db' is not supported",
                      json.loads(pushed.payload)["__wazuh_exception__"]["__object__"]
                      ["extra_message"])

    def test_sendsyncMalformed(self):
        """
        A C{sendsync} payload that is not C{{"daemon_name", "message"}} is an
        C{err} reply (3036).
        """
        for payload in (b"not json", b'{"message":{}}', b'{"daemon_name":"authd"}'):
            self.client.send(frame(9, b"sendsync", payload))
            [reply] = self.client.take()
            self.assertEqual((reply.counter, reply.command), (9, b"err"))
            self.assertEqual(json.loads(reply.payload)["__wazuh_exception__"]["__object__"]
                             ["code"], 3036)

    def test_sendasyncAndReload(self):
        """
        C{sendasync} is answered C{ok} at once (the request still reaches
        authd); C{sendrreload} C{ok {"success":true}}.
        """
        self.client.send(frame(40, b"sendasync", ENROL))
        self.assertEqual(self.client.raw(),
                         frame(40, b"ok", b"Added request to sendsync requests queue"))
        self.settle()
        self.assertEqual(self.client.raw(), b"")
        self.assertTrue(self.cluster.masterHome.clientKeys.exists())
        self.client.send(frame(41, b"sendrreload", b""))
        self.assertEqual(self.client.raw(), frame(41, b"ok", b'{"success":true}'))

    def test_dapiOnWorker(self):
        """
        The C{-a} exchange on a worker answers from the master's agents.
        """
        self.successResultOf(self.cluster.masterStore.addAgent("001", "agent1", "any",
                                                               "a" * 64))
        self.client.send(frame(50, b"dapi", AGENTS_REQUEST))
        self.assertEqual(self.client.take(),
                         [Message(50, b"ok", b"Added request to API requests queue")])
        self.settle()
        [newStr] = self.client.take()
        self.client.send(frame(newStr.counter, b"ok", b"77"))
        [strUpd] = self.client.take()
        overview = json.loads(strUpd.payload.split(b" ", 1)[1])
        self.assertEqual(overview, {"items": [{"id": "001", "ip": "any", "name": "agent1",
                                               "status": "never_connected"}],
                                    "totalItems": 1})

    def test_syncAgentInfo(self):
        """
        C{sync_ainfo} starts the worker's agent-info round now.
        """
        self.client.send(frame(60, b"sync_ainfo", b"{}"))
        self.assertEqual(self.client.take(), [Message(60, b"ok", b'{"started":true}')])


class ShapesTests(SynchronousTestCase):
    """
    Wazuh's arguments checked as untrusted input, and Wazuh's answer shapes
    (L{wazuhcluster.localserver.shapes}).
    """

    def test_masterRolesKept(self):
        """
        A master candidate's C{role} stays in its C{get_nodes} item; a
        worker's item has Wazuh's four keys only.
        """
        answer = NodesQuery.parse({}).answer({"nodes": [
            {"name": "m1", "type": "master", "version": "1", "ip": "a", "role": "active"},
            {"name": "m2", "type": "master", "version": "1", "ip": "b", "role": "standby"},
            {"name": "w1", "type": "worker", "version": "1", "ip": "c", "extra": 1}]})
        self.assertEqual([item.get("role") for item in answer["items"]],
                         ["active", "standby", None])
        self.assertEqual(sorted(answer["items"][2]), ["ip", "name", "type", "version"])

    def test_nodeFilters(self):
        """
        C{filter_node} takes a name, a list or a comma-separated text
        (C{"all"}: every node); more than 1024 names, a name that is not a
        string, a negative offset or an unknown sort field are refused with
        Wazuh's codes.
        """
        self.assertEqual(NodesQuery.parse({"filter_node": "w1"}).names, ("w1",))
        self.assertEqual(NodesQuery.parse({"filter_node": "w1,w2"}).names, ("w1", "w2"))
        self.assertIsNone(NodesQuery.parse({"filter_node": ["all"]}).names)
        self.assertIsNone(NodesQuery.parse(None).names)
        for arguments, code in (({"filter_node": ["n"] * 1025}, 3036),
                                ({"filter_node": [7]}, 3036),
                                ({"offset": -1}, 3036),
                                ({"limit": "10"}, 3036),
                                ({"sort": {"fields": ["cpu"]}}, 1403),
                                ({"search": {"value": 3}}, 3036)):
            error = self.assertRaises(ClusterError, NodesQuery.parse, arguments)
            self.assertEqual(error.code, code, arguments)
        self.assertRaises(ClusterError, NodesQuery.parse, ["not", "an", "object"])

    def test_agentFilters(self):
        """
        The overview's status filter is case-insensitive and checked
        (Wazuh's 1729); values missing from a row are left out.
        """
        query = AgentsQuery.parse({"filters": {"status": "Active", "node_name": "all"}})
        agents = {"agents": [
            {"id": "001", "name": "a", "ip": "any", "status": "active", "version": None,
             "node_name": "w1", "groups": ["default"], "last_keepalive": None},
            {"id": "002", "name": "b", "ip": "any", "status": "disconnected", "version": None,
             "node_name": "w1", "groups": [], "last_keepalive": None}]}
        self.assertEqual(query.answer(agents), {"items": [
            {"id": "001", "name": "a", "ip": "any", "status": "active", "node_name": "w1",
             "group": ["default"]}], "totalItems": 1})
        error = self.assertRaises(ClusterError, AgentsQuery.parse,
                                  {"filters": {"status": "asleep"}})
        self.assertEqual(error.code, 1729)
        self.assertEqual(healthNames(None), {"node_names": []})
        self.assertEqual(healthNames(["w1"]), {"node_names": ["w1"]})
