# -*- test-case-name: tests.test_faults_clientkeys -*-
"""
End to end, real processes (Wazuh #3389): the master's client.keys is
emptied while the workers hold agents.  The workers keep theirs while the
master logs an ERROR every round; after C{wazuh-cluster agent accept-keys}
the change reaches them.
"""

import json

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.test_endtoend import FAST, ClusterProcesses

INTERVALS = {
    "worker": dict(FAST["worker"], sync_integrity=1),
    "master": dict(FAST["master"], recalculate_integrity=1),
    "communication": FAST["communication"],
}

AGENTS = ("web-1", "web-2", "web-3")


class EmptiedClientKeysTests(TestCase):
    """
    A master whose client.keys is emptied under running workers.
    """

    timeout = 120

    @defer.inlineCallbacks
    def agentCount(self, cluster, name):
        out, err, status = yield cluster.cli("agent", "list", "--home",
                                             cluster.homes[name].root.path, "--json")
        self.assertEqual(status, 0, err)
        return len(json.loads(out.decode())["agents"])

    @defer.inlineCallbacks
    def test_emptiedKeysKeptUntilAccepted(self):
        """
        The workers keep their client.keys and their agents while the
        master holds the emptied file back (an ERROR each round); after
        the operator accepts it, every worker gets the empty file.

        Injected: the master's etc/client.keys emptied while the workers
        (real twistd processes) hold agents.
        Checked: workers keep their client.keys and agents while the
        master holds the file back with an ERROR each round; after
        `wazuh-cluster agent accept-keys` every worker gets the empty
        file.
        """
        cluster = ClusterProcesses(self, intervals=INTERVALS)
        master = cluster.homes["master"]
        for name in AGENTS:
            out, err, status = yield cluster.cli("agent", "add", "--home", master.root.path,
                                                 "--name", name)
            self.assertEqual(status, 0, err)
        keys = master.clientKeys.getContent()
        self.assertEqual(len(keys.splitlines()), 3)
        workers = [cluster.homes[name] for name in ("worker1", "worker2")]
        for name in ("master", "worker1", "worker2"):
            cluster.start(name)

        def synced(content):
            return all(home.clientKeys.exists() and home.clientKeys.getContent() == content
                       for home in workers)

        yield cluster.waitFor(lambda: synced(keys), timeout=30)
        for name in ("worker1", "worker2"):
            yield cluster.waitFor(lambda: self.agentCount(cluster, name), timeout=10)

        master.clientKeys.setContent(b"")
        line = "etc/client.keys lost 3 of the 3 agents of the last one announced (0 left)"
        yield cluster.waitFor(lambda: cluster.log("master").count(line) >= 3, timeout=30)
        self.assertTrue(synced(keys))
        for name in ("worker1", "worker2"):
            self.assertEqual((yield self.agentCount(cluster, name)), 3)
        self.assertIn("ERROR: [Master] [Integrity sync] " + line, cluster.log("master"))

        out, err, status = yield cluster.cli("agent", "accept-keys", "--home",
                                             master.root.path)
        self.assertEqual(status, 0, err)
        self.assertIn(b"Accepted etc/client.keys (0 agents; the last one announced had 3)",
                      out)
        yield cluster.waitFor(lambda: synced(b""), timeout=30)
        self.assertIn("accepted by the operator", cluster.log("master"))
