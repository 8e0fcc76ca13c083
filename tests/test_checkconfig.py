# -*- test-case-name: tests.test_checkconfig -*-
"""
Tests for L{wazuhcluster.checkconfig} and L{wazuhcluster.tlscheck}:
C{wazuh-cluster check-config} checks what a node checks when it starts.
"""

import datetime
import io
import re
import shutil
import json
import sqlite3
import tempfile

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.test_config import KEY, clusterBlock
from wazuhcluster.checkconfig import (
    formatEffectiveConfig,
    maskKey,
    nodeProblems,
    runCheckConfig,
)
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.errors import StartupError
from wazuhcluster.home import NodeHome
from wazuhcluster.nodeinit import initNode
from wazuhcluster.ossecconf import parseClusterConfig, readClusterConfig
from wazuhcluster.tap import Options, makeNodeService
from wazuhcluster.tlscheck import tlsProblems


class CheckConfigTests(SynchronousTestCase):
    """
    L{formatEffectiveConfig} and L{runCheckConfig} on homes without TLS
    material (configuration problems come first).
    """

    def setUp(self):
        self.root = FilePath(self.mktemp())
        self.home = NodeHome(self.root)
        self.home.etc.makedirs()

    def check(self, homePath=None):
        """
        Run check-config on the test home; return (status, stdout, stderr).
        """
        out, err = io.StringIO(), io.StringIO()
        status = runCheckConfig(homePath or self.root.path, out, err)
        return status, out.getvalue(), err.getvalue()

    def test_maskKey(self):
        """
        The key shows its first two characters then stars, one per hidden
        character; short keys are all stars; an empty key says so.
        """
        self.assertEqual(maskKey(KEY), "01" + "*" * 30)
        self.assertEqual(maskKey("abc"), "***")
        self.assertEqual(maskKey(""), "(empty)")

    def test_format(self):
        """
        The text holds the cluster block with the key masked, the warnings,
        the log files, every interval and every synced item.
        """
        config = parseClusterConfig(clusterBlock(node_type="client"))
        items = loadClusterItems()
        text = formatEffectiveConfig(config, items)
        self.assertNotIn(KEY, text)
        self.assertIn("key:       01" + "*" * 30 + "\n", text)
        self.assertIn("node_type: worker\n", text)
        self.assertIn("  Deprecated node type 'client'. Using 'worker' instead.", text)
        self.assertIn("Logging (etc/ossec.conf <logging>): logs/cluster.log\n", text)
        self.assertIn("    keep_alive:                    60\n", text)
        self.assertIn("    hello_timeout:", text)
        for item in items.fileset.items:
            self.assertIn(f"  {item.path}", text)
        self.assertIn("0o640  files: client.keys, cluster.crl  (top directory only)", text)
        self.assertIn("excluded extensions: ~, .tmp, .lock, .swp", text)

    def test_formatNoWarnings(self):
        """
        Without warnings the text says so.
        """
        config = parseClusterConfig(clusterBlock())
        text = formatEffectiveConfig(config, loadClusterItems())
        self.assertIn("Warnings: none", text)

    def test_disabled(self):
        """
        A disabled cluster (Wazuh's shipped state) is valid and said to be
        disabled; its TLS material is not needed.
        """
        self.home.ossecConf.setContent(b"<ossec_config></ossec_config>")
        status, out, err = self.check()
        self.assertEqual((status, err), (0, ""))
        self.assertIn("disabled:  yes\n", out)
        self.assertIn("The cluster is disabled", out)

    def test_invalidConfig(self):
        """
        A configuration error is one line on stderr, first; exit 1.
        """
        self.home.ossecConf.setContent(clusterBlock(key="short"))
        status, out, err = self.check()
        self.assertEqual(status, 1)
        self.assertEqual(
            err.splitlines()[0],
            "Error 3004 - Error in cluster configuration: Key must be 32 "
            "characters long and only have alphanumeric characters",
        )
        self.assertNotIn("Configuration OK.", out)

    def test_invalidOverrides(self):
        """
        An overrides error is a line of its own.
        """
        self.home.ossecConf.setContent(clusterBlock())
        self.home.clusterJsonOverrides.setContent(b"{")
        status, out, err = self.check()
        self.assertEqual(status, 1)
        self.assertEqual(len([line for line in err.splitlines() if "Invalid JSON" in line]),
                         1)

    def test_missingOssecConf(self):
        """
        A home without ossec.conf gives a 3006 line and exits 1.
        """
        status, out, err = self.check()
        self.assertEqual(status, 1)
        self.assertTrue(
            err.startswith("Error 3006 - Error reading cluster configuration: ")
        )

    def test_missingHome(self):
        """
        A home directory that does not exist is one line naming it; exit 1.
        """
        missing = self.root.child("nope").path
        status, out, err = self.check(missing)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(
            err,
            "Error 3006 - Error reading cluster configuration: home directory "
            f"{missing} does not exist\n",
        )

    def test_homeIsAFile(self):
        """
        A file given as the home is one line saying so.
        """
        path = self.root.child("file")
        path.setContent(b"x")
        status, out, err = self.check(path.path)
        self.assertEqual(status, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(f"{path.path} is not a directory", err)


class StartChecksTests(SynchronousTestCase):
    """
    check-config reports, one line each, what makes the node refuse to
    start, and the twistd plugin refuses with the same line.
    """

    def setUp(self):
        # A short base: UNIX socket paths are limited to 107 bytes.
        self.base = FilePath(tempfile.mkdtemp(prefix="wzk-", dir="/tmp"))
        self.addCleanup(shutil.rmtree, self.base.path, True)
        self.ca = self.base.child("ca")
        self.master = initNode(self.base.child("m"), "master", "master", self.ca,
                               masterHost="127.0.0.1", bindAddr="127.0.0.1")
        self.worker = initNode(self.base.child("w"), "worker", "worker1", self.ca,
                               masterHost="127.0.0.1")
        self.worker2 = initNode(self.base.child("w2"), "worker", "worker2", self.ca,
                                masterHost="127.0.0.1")

    def check(self, home):
        out, err = io.StringIO(), io.StringIO()
        status = runCheckConfig(home.root.path, out, err)
        return status, out.getvalue(), err.getvalue()

    def refusal(self, home, kind):
        """
        The line the twistd plugin refuses to start C{home} with.
        """
        options = Options()
        options.parseOptions(["--home", home.root.path])
        err = io.StringIO()
        self.assertRaises(StartupError, makeNodeService, options, kind, None, err)
        return err.getvalue()

    def assertProblem(self, home, kind, fragment):
        """
        check-config exits 1 with exactly one problem line holding
        C{fragment}, and the plugin refuses with that line.
        """
        status, out, err = self.check(home)
        self.assertEqual(status, 1, out)
        self.assertNotIn("Configuration OK.", out)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(fragment, err)
        self.assertEqual(self.refusal(home, kind), f"wazuh-{kind}: {err}")

    def test_valid(self):
        """
        A home made by init is OK.
        """
        status, out, err = self.check(self.worker)
        self.assertEqual((status, err), (0, ""))
        self.assertTrue(out.endswith("Configuration OK.\n"))

    def test_nodeKeyDeleted(self):
        """
        A deleted node.key is reported.
        """
        self.worker.nodeKey.remove()
        self.assertProblem(self.worker, "worker", "Cannot load TLS certificates from "
                           f"{self.worker.sslDir.path}: node.key is missing")

    def test_garbageCertificate(self):
        """
        A node.pem that is not a certificate is reported.
        """
        self.worker.nodeCert.setContent(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        self.assertProblem(self.worker, "worker", "node.pem is not a PEM certificate")

    def test_keyOfAnotherCertificate(self):
        """
        A node.key that does not match node.pem is reported.
        """
        self.worker2.nodeKey.copyTo(self.worker.nodeKey)
        self.assertProblem(self.worker, "worker", "node.key does not match node.pem")

    def test_otherAuthority(self):
        """
        A certificate not signed by ca.pem is reported.
        """
        other = initNode(self.base.child("o"), "worker", "worker1", self.base.child("ca2"),
                         masterHost="127.0.0.1")
        other.nodeCert.copyTo(self.worker.nodeCert)
        other.nodeKey.copyTo(self.worker.nodeKey)
        self.assertProblem(self.worker, "worker", "node.pem is not signed by ca.pem")

    def test_certificateOfAnotherNode(self):
        """
        A certificate naming another node is reported.
        """
        self.worker2.nodeCert.copyTo(self.worker.nodeCert)
        self.worker2.nodeKey.copyTo(self.worker.nodeKey)
        self.assertProblem(self.worker, "worker",
                           "node.pem names worker2, not this node 'worker1'")

    def test_masterHostNotNamed(self):
        """
        A master whose certificate does not name its master host is
        reported.
        """
        conf = self.master.ossecConf
        conf.setContent(conf.getContent().replace(b"<node>127.0.0.1</node>",
                                                  b"<node>10.1.1.1</node>"))
        self.assertProblem(self.master, "master",
                           "node.pem does not name the master host 10.1.1.1")

    def test_expired(self):
        """
        An expired certificate is reported.
        """
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=4000)
        problems = tlsProblems(self.worker.sslDir, readClusterConfig(self.worker), now=later)
        self.assertTrue(any("ca.pem expired on" in p for p in problems), problems)
        self.assertTrue(any("node.pem expired on" in p for p in problems), problems)

    def test_agentDatabase(self):
        """
        An agent database that is not SQLite, or of a newer schema, is
        reported (read only: nothing is created).
        """
        self.worker.globalDb.parent().makedirs(ignoreExistingDirectory=True)
        self.worker.globalDb.setContent(b"this is not a database" * 100)
        self.assertProblem(self.worker, "worker", "The agent database")
        self.worker.globalDb.remove()
        connection = sqlite3.connect(self.worker.globalDb.path)
        connection.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
        connection.execute("INSERT INTO metadata VALUES ('db_version', '99')")
        connection.commit()
        connection.close()
        self.assertProblem(self.worker, "worker", "schema version 99, newer than")

    def test_agentDatabaseLeftAsItWas(self):
        """
        Checking a WAL database closed cleanly creates no C{-wal}/C{-shm}
        file (which, made by root or an operator, the node could not open);
        one whose WAL is there is read through it.
        """
        path = self.worker.globalDb
        path.parent().makedirs(ignoreExistingDirectory=True)
        connection = sqlite3.connect(path.path)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE metadata (key TEXT, value TEXT)")
        connection.execute("INSERT INTO metadata VALUES ('db_version', '99')")
        connection.commit()
        connection.close()
        self.assertProblem(self.worker, "worker", "schema version 99, newer than")
        self.assertEqual(sorted(path.parent().listdir()), ["global.db"])
        writer = sqlite3.connect(path.path)
        self.addCleanup(writer.close)
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE metadata SET value = '98'")
        writer.commit()
        self.assertProblem(self.worker, "worker", "schema version 98, newer than")

    def test_agentDatabaseDamaged(self):
        """
        A database whose pages are damaged behind an intact header is
        reported before the node starts.
        """
        path = self.worker.globalDb
        path.parent().makedirs(ignoreExistingDirectory=True)
        connection = sqlite3.connect(path.path)
        connection.execute("CREATE TABLE t (x TEXT)")
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        connection.commit()
        connection.close()
        content = bytearray(path.getContent())
        content[4096 * 2:4096 * 3] = b"\xff" * 4096
        path.setContent(bytes(content))
        self.assertProblem(self.worker, "worker", "The agent database")

    def test_postgresqlOnWorker(self):
        """
        A worker cannot keep its agents in PostgreSQL: only masters share a
        database.
        """
        self.worker.clusterJsonOverrides.setContent(json.dumps(
            {"agent_store": {"backend": "postgresql",
                             "dsn": "postgresql://u@127.0.0.1:1/db"}}).encode())
        self.assertProblem(self.worker, "worker", "is for master nodes")

    def test_postgresqlPasswordFile(self):
        """
        A master's PostgreSQL password file that cannot be read is reported.
        """
        self.master.clusterJsonOverrides.setContent(json.dumps(
            {"agent_store": {"backend": "postgresql", "dsn": "postgresql://u@127.0.0.1:1/db",
                             "password_file": "etc/missing.pass"}}).encode())
        self.assertProblem(self.master, "master", "etc/missing.pass")

    def test_logFormat(self):
        """
        A C{<log_format>} other than plain/json is reported; C{plain,json}
        is shown as both files.
        """
        conf = self.worker.ossecConf
        original = conf.getContent()
        conf.setContent(original + b"<ossec_config><logging><log_format>xml"
                                   b"</log_format></logging></ossec_config>\n")
        self.assertProblem(self.worker, "worker", "Invalid value for element 'log_format'")
        conf.setContent(original + b"<ossec_config><logging><log_format>plain, json"
                                   b"</log_format></logging></ossec_config>\n")
        status, out, err = self.check(self.worker)
        self.assertEqual((status, err), (0, ""))
        self.assertIn("logs/cluster.log, logs/cluster.json", out)

    def test_everyProblemOnItsLine(self):
        """
        Several problems are several lines; the check lists them all.
        """
        self.worker.nodeKey.remove()
        self.worker.caCert.setContent(b"junk")
        problems = nodeProblems(self.worker).problems
        self.assertEqual(len(problems), 2)
        self.assertTrue(all(re.match("Cannot load TLS certificates from ", p)
                            for p in problems))
