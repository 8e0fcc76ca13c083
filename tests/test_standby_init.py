# -*- test-case-name: tests.test_standby_init -*-
"""
C{wazuh-cluster init --nodes ...} and C{--database ...}: master candidates
and their shared PostgreSQL agent store.
"""

import json

from cryptography import x509
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_cli import runCli
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import readClusterConfig
from wazuhcluster.standby.peers import certificateHosts
from wazuhcluster.tlscheck import tlsProblems

DSN = "postgresql://wazuh@db.example:5432/wazuh"


class InitCandidatesTests(SynchronousTestCase):
    """
    C{--nodes}, C{--database} and C{--password-file}.
    """

    def setUp(self):
        self.base = FilePath(self.mktemp())
        self.base.makedirs()
        self.ca = self.base.child("ca").path
        self.passwordFile = self.base.child("pgpass")
        self.passwordFile.setContent(b"s3cret-Pass\n")

    def init(self, name, *options):
        home = self.base.child(name).path
        return runCli("init", "--home", home, "--name", name, "--ca", self.ca, *options)

    def home(self, name):
        return NodeHome(self.base.child(name))

    def certificateNames(self, name):
        pem = self.home(name).sslDir.child("node.pem").getContent()
        return certificateHosts(x509.load_pem_x509_certificate(pem))

    def test_candidate(self):
        """
        A master candidate gets every candidate in C{<nodes>}, in order, and
        a certificate naming its own address only; its TLS check passes.
        """
        status, out, err = self.init("m2", "--type", "master", "--master-host", "10.0.0.2",
                                     "--nodes", "10.0.0.1, 10.0.0.2")
        self.assertEqual((status, err), (0, ""))
        config = readClusterConfig(self.home("m2"))
        self.assertEqual(config.nodes, ("10.0.0.1", "10.0.0.2"))
        self.assertEqual(self.certificateNames("m2"), {"m2", "10.0.0.2"})
        self.assertEqual(tlsProblems(self.home("m2").sslDir, config), [])
        self.assertIn("workers dial one of 10.0.0.1, 10.0.0.2 on port 1516", out)

    def test_workerCandidates(self):
        """
        A worker given C{--nodes} needs no C{--master-host}.
        """
        status, out, err = self.init("w1", "--type", "worker", "--nodes", "10.0.0.1,10.0.0.2")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(readClusterConfig(self.home("w1")).nodes, ("10.0.0.1", "10.0.0.2"))
        self.assertIn("masters:       10.0.0.1, 10.0.0.2 (port 1516, tried in this order)",
                      out)

    def test_reinitKeepsCandidates(self):
        """
        Running init again on a candidate with only C{--master-host} (one of
        its candidates) keeps its C{<nodes>}.
        """
        self.init("m2", "--type", "master", "--master-host", "10.0.0.2",
                  "--nodes", "10.0.0.1,10.0.0.2")
        status, out, err = self.init("m2", "--type", "master", "--master-host", "10.0.0.2")
        self.assertEqual(status, 0, err)
        self.assertIn("Nothing changed", out)
        self.assertEqual(readClusterConfig(self.home("m2")).nodes, ("10.0.0.1", "10.0.0.2"))

    def test_badNodes(self):
        """
        A master given C{--nodes} without its own C{--master-host} among
        them, an empty entry, a repeated or reserved address: one line,
        exit 1, nothing created.
        """
        cases = [
            (("--type", "master", "--nodes", "10.0.0.1,10.0.0.2"),
             "A master given --nodes needs --master-host, the one of them its certificate "
             "names (its own address)"),
            (("--type", "master", "--master-host", "10.0.0.3", "--nodes", "10.0.0.1,10.0.0.2"),
             "A master given --nodes needs --master-host"),
            (("--type", "worker", "--nodes", "10.0.0.1,,10.0.0.2"), "Invalid --nodes"),
            (("--type", "worker", "--nodes", "10.0.0.1,10.0.0.1"), "10.0.0.1 is given twice"),
            (("--type", "worker", "--nodes", "10.0.0.1,localhost"),
             "Invalid elements in node fields: localhost."),
        ]
        for options, text in cases:
            status, out, err = self.init("n", *options)
            self.assertEqual(status, 1, options)
            self.assertIn(text, err)
            self.assertEqual(len(err.splitlines()), 1)
            self.assertFalse(self.base.child("n").exists())

    def test_database(self):
        """
        C{--database} with C{--password-file} writes the C{agent_store}
        section (the password file by absolute path, no password anywhere),
        and says so; the node then selects PostgreSQL.
        """
        status, out, err = self.init("m1", "--type", "master", "--master-host", "10.0.0.1",
                                     "--database", DSN, "--password-file",
                                     self.passwordFile.path)
        self.assertEqual((status, err), (0, ""))
        home = self.home("m1")
        document = json.loads(home.clusterJsonOverrides.getContent())
        self.assertEqual(document, {"agent_store": {
            "backend": "postgresql", "dsn": DSN, "password_file": self.passwordFile.path}})
        self.assertEqual(home.clusterJsonOverrides.getPermissions().shorthand(), "rw-r-----")
        store = loadClusterItems(home).agentStore
        self.assertEqual((store.backend, store.dsn), ("postgresql", DSN))
        self.assertIn(f"The agent database is PostgreSQL {DSN} (password from "
                      f"{self.passwordFile.path})", out)
        self.assertNotIn("s3cret", out + home.ossecConf.getContent().decode())

    def test_databaseKeepsOtherKeys(self):
        """
        On an existing master, C{--database} keeps the other keys of its
        cluster.json, reports the change, and points at migrate-agents when
        the node has a SQLite agent database.
        """
        self.init("m1", "--type", "master", "--master-host", "10.0.0.1")
        home = self.home("m1")
        home.clusterJsonOverrides.setContent(b'{"intervals": {"worker": {"keep_alive": 5}}}')
        home.globalDb.setContent(b"")
        status, out, err = self.init("m1", "--type", "master", "--database", DSN)
        self.assertEqual(status, 0, err)
        document = json.loads(home.clusterJsonOverrides.getContent())
        self.assertEqual(document["intervals"], {"worker": {"keep_alive": 5}})
        self.assertEqual(document["agent_store"]["password_file"], "")
        self.assertIn("changed: agent store: PostgreSQL", out)
        self.assertIn(f"wazuh-cluster migrate-agents --home {home.root.path} --to {DSN}", out)

    def test_badDatabase(self):
        """
        C{--database} on a worker, with a password in the DSN, not a
        PostgreSQL URI, C{--password-file} alone or unreadable: one line
        (never the password), exit 1.
        """
        cases = [
            (("--type", "worker", "--master-host", "10.0.0.1", "--database", DSN),
             "--database is for a master"),
            (("--type", "master", "--database", "postgresql://wazuh:hunter2@db/wazuh"),
             "Invalid --database postgresql://wazuh:***@db/wazuh: it holds a password: put "
             "the password in a file given with --password-file"),
            (("--type", "master", "--database", "mysql://db/wazuh"),
             "expected postgresql://USER@HOST:PORT/DB"),
            (("--type", "master", "--password-file", self.passwordFile.path),
             "--password-file goes with --database"),
            (("--type", "master", "--database", DSN, "--password-file",
              self.base.child("missing").path), "Cannot read the agent store password file"),
        ]
        for options, text in cases:
            status, out, err = self.init("n", *options)
            self.assertEqual(status, 1, options)
            self.assertIn(text, err)
            self.assertNotIn("hunter2", err)
            self.assertEqual(len(err.splitlines()), 1)
            self.assertFalse(self.base.child("n").exists())
