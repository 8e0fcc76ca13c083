# -*- test-case-name: tests.test_web -*-
"""
Tests for the status web service's endpoints (L{wazuhcluster.web}): a real
L{MasterService} (workers connected in memory, on a L{Clock}) whose web
service listens on a real loopback port, asked over HTTP.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.cluster import InMemoryCluster
from tests.webclient import fetch, fetchJson, pumpInMemory
from wazuhcluster.web.page import parseDate, span
from wazuhcluster.web.service import WebService, parseWebAddress
from wazuhcluster.web.wazuhapi import AffectedItems, NODE_DOES_NOT_EXIST, selectFields, sortItems

INTERVALS = {
    "worker": {"keep_alive": 5, "connection_retry": 2},
    "master": {"check_worker_lastkeepalive": 5, "max_allowed_time_without_keepalive": 30},
}


def addMasterFile(cluster, relpath, content):
    """
    Write a synced file on the master and have its local integrity see it.
    """
    path = cluster.masterHome.root.preauthChild(relpath)
    path.parent().makedirs(ignoreExistingDirectory=True)
    path.setContent(content)
    cluster.master.integrity.local.trigger()
    cluster.network.advance(1, step=0.5)


def startWeb(testCase, node, **kwargs):
    """
    Start C{node}'s web service on a free loopback port of the real
    reactor; stopped when the test ends.

    @return: the service.
    """
    web = WebService(node, "127.0.0.1", 0, reactor=reactor, **kwargs)
    web.startService()
    testCase.addCleanup(web.stopService)
    return web


class MasterEndpointTests(TestCase):
    """
    The master's endpoints, in the Wazuh API's shapes.
    """

    timeout = 60

    def setUp(self):
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        addMasterFile(self.cluster, "etc/rules/local_rules.xml", b"<group name=\"local\"/>\n")
        self.web = startWeb(self, self.cluster.master)
        self.cluster.addWorker("worker1")
        self.cluster.addWorker("worker2")
        self.cluster.network.advance(6, step=0.5)
        self.url = self.web.url

    def get(self, path):
        return fetchJson(self.url + path)

    @inlineCallbacks
    def test_listening(self):
        """
        The service listens on loopback and knows its URL.
        """
        self.assertTrue(self.url.startswith("http://127.0.0.1:"))
        self.assertNotEqual(self.web.port.getHost().port, 0)
        status, body = yield self.get("cluster/local/info")
        self.assertEqual(status, 200)

    @inlineCallbacks
    def test_nodes(self):
        """
        C{/cluster/nodes} lists the master then the workers with Wazuh's
        fields, total and message.
        """
        status, body = yield self.get("cluster/nodes")
        self.assertEqual(status, 200)
        self.assertEqual(body["error"], 0)
        self.assertEqual(body["message"], "All selected nodes information was returned")
        data = body["data"]
        self.assertEqual([item["name"] for item in data["affected_items"]],
                         ["master", "worker1", "worker2"])
        self.assertEqual(set(data["affected_items"][1]), {"name", "type", "version", "ip"})
        self.assertEqual(data["affected_items"][1]["type"], "worker")
        self.assertEqual(data["affected_items"][1]["ip"], "10.0.0.2")
        self.assertEqual((data["total_affected_items"], data["total_failed_items"],
                          data["failed_items"]), (3, 0, []))

    @inlineCallbacks
    def test_nodesQuery(self):
        """
        C{type}, C{sort}, C{offset}, C{limit} and C{select} work as in the
        Wazuh API (the total counts what matched, before paging).
        """
        status, body = yield self.get("cluster/nodes?type=worker&sort=-name&limit=1")
        self.assertEqual([i["name"] for i in body["data"]["affected_items"]], ["worker2"])
        self.assertEqual(body["data"]["total_affected_items"], 2)
        status, body = yield self.get("cluster/nodes?sort=-type,name&offset=1&select=name")
        self.assertEqual(body["data"]["affected_items"], [{"name": "worker2"}, {"name": "master"}])
        self.assertEqual(body["data"]["total_affected_items"], 3)

    @inlineCallbacks
    def test_nodesListWithUnknown(self):
        """
        A name of C{nodes_list} that is no node is a failed item with
        Wazuh's error 1730 beside the ones returned (C{error} 2); when all
        are unknown, C{error} is 1 and the message says nothing was
        returned.
        """
        status, body = yield self.get("cluster/nodes?nodes_list=worker1,nosuch,other")
        self.assertEqual(status, 200)
        self.assertEqual(body["error"], 2)
        self.assertEqual(body["message"], "Some nodes information was not returned")
        self.assertEqual([i["name"] for i in body["data"]["affected_items"]], ["worker1"])
        self.assertEqual(body["data"]["total_failed_items"], 2)
        [failed] = body["data"]["failed_items"]
        self.assertEqual(failed["error"]["code"], 1730)
        self.assertEqual(failed["error"]["message"], "Node does not exist")
        self.assertEqual(failed["id"], ["nosuch", "other"])
        status, body = yield self.get("cluster/nodes?nodes_list=nosuch")
        self.assertEqual((body["error"], body["message"], body["data"]["total_affected_items"]),
                         (1, "No information was returned", 0))

    @inlineCallbacks
    def test_badQueries(self):
        """
        Bad parameters are 400 with a JSON body C{{error, message}} (Wazuh's
        code where it has one).
        """
        cases = {
            "cluster/nodes?limit=0": 400,
            "cluster/nodes?offset=-1": 400,
            "cluster/nodes?limit=abc": 400,
            "cluster/nodes?sort=bogus": 1403,
            "cluster/nodes?select=name,bogus": 1724,
            "cluster/nodes?type=client": 1728,
            "cluster/nodes?colour=blue": 400,
            "cluster/nodes?limit=1&limit=2": 400,
            "cluster/healthcheck?offset=1": 400,
            "cluster/nodes?pretty=maybe": 400,
            "cluster/nodes?nodes_list=%ff": 400,
            "cluster/nodes?limit=%C2%B2": 400,
        }
        for path, code in cases.items():
            status, body = yield self.get(path)
            self.assertEqual((status, body["error"]), (400, code), path)
            self.assertIsInstance(body["message"], str)
            self.assertEqual(set(body), {"error", "message"})

    @inlineCallbacks
    def test_unknownPathAndMethod(self):
        """
        An unknown path is 404 JSON, another method than GET is 405 JSON;
        HEAD is answered without a body.
        """
        status, body = yield self.get("cluster/nosuch")
        self.assertEqual((status, body["error"]), (404, 404))
        status, body = yield self.get("../../etc/passwd")
        self.assertEqual(status, 404)
        status, body = yield fetchJson(self.url + "cluster/nodes", method=b"POST")
        self.assertEqual((status, body["error"]), (405, 405))
        status, headers, raw = yield fetch(self.url + "cluster/nodes", method=b"HEAD")
        self.assertEqual((status, raw), (200, b""))

    @inlineCallbacks
    def test_healthcheck(self):
        """
        C{/cluster/healthcheck} has one C{{info, status}} item per node,
        sorted by name, with the health fields of WAZUH.md 4.8 and every
        node's C{reactor_lag}.
        """
        status, body = yield self.get("cluster/healthcheck")
        self.assertEqual(body["message"], "All selected nodes healthcheck information was returned")
        items = body["data"]["affected_items"]
        self.assertEqual([i["info"]["name"] for i in items], ["master", "worker1", "worker2"])
        self.assertEqual(set(items[1]["info"]),
                         {"name", "type", "version", "ip", "n_active_agents"})
        self.assertIn("last_keep_alive", items[1]["status"])
        self.assertTrue(items[1]["status"]["integrity_in_sync"])
        for item in items:
            self.assertIsInstance(item["reactor_lag"]["max"], float, item["info"]["name"])
            self.assertLessEqual(item["reactor_lag"]["p99"], item["reactor_lag"]["max"])
        status, body = yield self.get("cluster/healthcheck?nodes_list=worker2")
        self.assertEqual([i["info"]["name"] for i in body["data"]["affected_items"]],
                         ["worker2"])
        status, body = yield self.get("cluster/healthcheck?nodes_list=nosuch")
        self.assertEqual((body["error"], body["message"]),
                         (1, "No healthcheck information was returned"))

    @inlineCallbacks
    def test_statusAndLocalInfo(self):
        """
        C{/cluster/status} says enabled and running; C{/cluster/local/info}
        names this node, its cluster and type.
        """
        status, body = yield self.get("cluster/status")
        self.assertEqual(body, {"data": {"enabled": "yes", "running": "yes"}, "error": 0})
        status, body = yield self.get("cluster/local/info")
        self.assertEqual(body["data"]["affected_items"],
                         [{"node": "master", "cluster": "wazuh", "type": "master"}])
        self.assertEqual(body["message"], "All selected information was returned")

    @inlineCallbacks
    def test_rulesetSynchronization(self):
        """
        C{/cluster/ruleset/synchronization} says which workers hold the
        master's current files: after a change on the master, a worker that
        did not receive it yet is not synced, the one that did is.
        """
        status, body = yield self.get("cluster/ruleset/synchronization")
        self.assertEqual(body["data"]["affected_items"],
                         [{"name": "master", "synced": True}, {"name": "worker1", "synced": True},
                          {"name": "worker2", "synced": True}])
        self.assertEqual(body["message"],
                         "Nodes ruleset synchronization status was successfully read")
        cluster = self.cluster
        cluster.network.links[1].partitioned = True
        addMasterFile(cluster, "etc/rules/new_rules.xml", b"<group name=\"new\"/>\n")
        cluster.network.advance(3, step=0.5)
        status, body = yield self.get("cluster/ruleset/synchronization?nodes_list=worker1,worker2")
        self.assertEqual(body["data"]["affected_items"],
                         [{"name": "worker1", "synced": True}, {"name": "worker2", "synced": False}])

    @inlineCallbacks
    def test_pretty(self):
        """
        C{pretty=true} indents the JSON.
        """
        status, headers, raw = yield fetch(self.url + "cluster/status?pretty=true")
        self.assertIn(b'\n  "data"', raw)
        self.assertEqual(json.loads(raw)["error"], 0)

    @inlineCallbacks
    def test_overview(self):
        """
        C{/status.json} has every node with its state, keep-alive age, syncs
        with durations, files in sync and reactor lag, and the charts' data.
        """
        status, body = yield self.get("status.json")
        self.assertEqual(status, 200)
        self.assertEqual((body["cluster"], body["node"], body["connected_workers"]),
                         ("wazuh", "master", 2))
        nodes = {node["name"]: node for node in body["nodes"]}
        self.assertEqual(list(nodes), ["master", "worker1", "worker2"])
        self.assertEqual(nodes["master"]["state"], "this node")
        worker = nodes["worker1"]
        self.assertEqual(worker["state"], "connected")
        last = self.cluster.master.registry.session("worker1", "keepalive").last
        self.assertAlmostEqual(worker["keepalive_age"], self.cluster.clock.seconds() - last)
        self.assertTrue(worker["in_sync"])
        self.assertIsInstance(worker["syncs"]["integrity"]["duration"], float)
        self.assertEqual(set(worker["syncs"]),
                         {"integrity_check", "integrity", "agent_info", "agent_groups",
                          "agent_groups_full"})
        self.assertEqual(sorted(s["node"] for s in body["syncs"] if s["kind"] == "integrity"),
                         ["worker1", "worker2"])
        self.assertTrue(body["lag"])
        self.assertTrue(any("Worker worker1" in line for line in body["log"]), body["log"])

    @inlineCallbacks
    def test_disconnectedWorkerShown(self):
        """
        A worker that was seen and went away shows as disconnected, with
        when it was last seen.
        """
        yield self.get("status.json")
        self.cluster.workers["worker2"].stopService()
        self.cluster.network.advance(2)
        status, body = yield self.get("status.json")
        nodes = {node["name"]: node for node in body["nodes"]}
        self.assertEqual(nodes["worker2"]["state"], "disconnected")
        self.assertIn("last_seen", nodes["worker2"])
        self.assertEqual(body["connected_workers"], 1)

    @inlineCallbacks
    def test_page(self):
        """
        C{/} is the self-contained HTML page: no external asset, a script
        allowed by hash in the Content-Security-Policy, and what it fetches.
        """
        status, headers, html = yield fetch(self.url)
        self.assertEqual(status, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/html"))
        policy = headers.getRawHeaders(b"content-security-policy")[0]
        self.assertIn(b"script-src 'sha256-", policy)
        self.assertIn(b'fetch("status.json"', html)
        for external in (b"src=\"http", b"href=\"http", b"@import", b"<link"):
            self.assertNotIn(external, html)


class WorkerEndpointTests(TestCase):
    """
    A worker's endpoints: local ones answered by itself, the others
    forwarded to its master.
    """

    timeout = 60

    def setUp(self):
        self.cluster = InMemoryCluster(self, intervals=INTERVALS)
        self.worker = self.cluster.addWorker("worker1")
        self.cluster.network.advance(6, step=0.5)
        pumpInMemory(self, self.cluster)
        self.web = startWeb(self, self.worker)

    @inlineCallbacks
    def test_localInfo(self):
        """
        C{/cluster/local/info} names the worker.
        """
        status, body = yield fetchJson(self.web.url + "cluster/local/info")
        self.assertEqual(body["data"]["affected_items"],
                         [{"node": "worker1", "cluster": "wazuh", "type": "worker"}])

    @inlineCallbacks
    def test_healthcheckForwarded(self):
        """
        C{/cluster/healthcheck} on a worker is the master's answer.
        """
        status, body = yield fetchJson(self.web.url + "cluster/healthcheck")
        self.assertEqual(status, 200)
        self.assertEqual([i["info"]["name"] for i in body["data"]["affected_items"]],
                         ["master", "worker1"])

    @inlineCallbacks
    def test_notConnected(self):
        """
        Without a master connection, a forwarded request is 503 with
        Wazuh's error 3023; local ones still answer.
        """
        self.cluster.network.masterUp = False
        self.cluster.master.workers["worker1"].transport.loseConnection()
        self.cluster.network.flush()
        status, body = yield fetchJson(self.web.url + "cluster/healthcheck")
        self.assertEqual((status, body["error"]), (503, 3023))
        status, body = yield fetchJson(self.web.url + "cluster/local/info")
        self.assertEqual(status, 200)

    @inlineCallbacks
    def test_noPage(self):
        """
        A worker has no status page: C{/} is 404 JSON.
        """
        status, body = yield fetchJson(self.web.url)
        self.assertEqual(status, 404)


class HelperTests(SynchronousTestCase):
    """
    The pure pieces: address parsing, Wazuh's result shape, sort, select,
    dates.
    """

    def test_parseWebAddress(self):
        """
        C{[ADDR:]PORT} defaults to loopback; IPv6 needs brackets; bad ports
        are refused.
        """
        self.assertEqual(parseWebAddress("8080"), ("127.0.0.1", 8080))
        self.assertEqual(parseWebAddress("0.0.0.0:55000"), ("0.0.0.0", 55000))
        self.assertEqual(parseWebAddress("[::1]:8080"), ("::1", 8080))
        self.assertEqual(parseWebAddress(":9000"), ("127.0.0.1", 9000))
        for bad in ("", "x", "70000", "::1:8080", "[::1]8080", "host:", "-1"):
            self.assertRaises(ValueError, parseWebAddress, bad)

    def test_affectedItems(self):
        """
        The error is 0 when nothing failed, 2 when some failed, 1 when all
        did; failed ids are grouped by error and sorted.
        """
        result = AffectedItems("all", "some", "none")
        self.assertEqual((result.render()["error"], result.render()["message"]), (0, "none"))
        result.items = [{"name": "a"}]
        self.assertEqual((result.render()["error"], result.render()["message"]), (0, "all"))
        result.fail("z", NODE_DOES_NOT_EXIST)
        result.fail("b", NODE_DOES_NOT_EXIST)
        rendered = result.render()
        self.assertEqual((rendered["error"], rendered["message"]), (2, "some"))
        self.assertEqual(rendered["data"]["failed_items"][0]["id"], ["b", "z"])
        result.items = []
        self.assertEqual(result.render()["error"], 1)

    def test_sortAndSelect(self):
        """
        Sorting follows the fields in order, C{-} descending; select keeps
        the chosen (nested) fields.
        """
        items = [{"name": "b", "type": "worker", "info": {"x": 1}},
                 {"name": "a", "type": "worker", "info": {"x": 2}},
                 {"name": "m", "type": "master", "info": {"x": 3}}]
        sortItems(items, "type,-name", ("name", "type"))
        self.assertEqual([i["name"] for i in items], ["m", "b", "a"])
        self.assertEqual(selectFields(items, "info.x", ("name", "info.x")),
                         [{"info": {"x": 3}}, {"info": {"x": 1}}, {"info": {"x": 2}}])

    def test_span(self):
        """
        Durations come from the original's date strings; C{n/a} has none.
        """
        block = {"date_start_master": "2026-01-01T10:00:00.000000Z",
                 "date_end_master": "2026-01-01T10:00:01.500000Z"}
        self.assertEqual(span(block)["duration"], 1.5)
        self.assertIsNone(span({"date_start_master": "n/a", "date_end_master": "n/a"})["duration"])
        self.assertIsNone(parseDate("yesterday"))
