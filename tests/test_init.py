"""
Tests for L{wazuhcluster.nodeinit}: C{wazuh-cluster init}.
"""

import os
import stat

from cryptography import x509
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.home import NodeHome
from wazuhcluster.nodeinit import formatInitSummary, initNode, initNodeReport
from wazuhcluster.ossecconf import parseClusterConfig
from wazuhcluster.tls import loadNodeIdentity

KEY = "0123456789abcdef0123456789ABCDEF"


def _mode(path):
    return stat.S_IMODE(os.stat(path.path).st_mode)


def _sans(home):
    cert = x509.load_pem_x509_certificate(home.nodeCert.getContent())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def _config(home):
    return parseClusterConfig(home.ossecConf.getContent())


class InitTestsMixin:
    """
    Temporary directories for a CA, a master and a worker.
    """

    def setUp(self):
        tmp = FilePath(self.mktemp())
        self.caDir = tmp.child("ca")
        self.masterPath = tmp.child("master")
        self.workerPath = tmp.child("worker")

    def initMaster(self, **kw):
        args = dict(masterHost="10.0.0.1")
        args.update(kw)
        return initNode(self.masterPath, "master", "master01", self.caDir, **args)

    def initWorker(self, **kw):
        args = dict(masterHost="10.0.0.1")
        args.update(kw)
        return initNode(self.workerPath, "worker", "node02", self.caDir, **args)


class MasterInitTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} for a master.
    """

    def test_returnsHome(self):
        """
        L{initNode} returns the L{NodeHome} it initialised, with the layout
        created.
        """
        home = self.initMaster()
        self.assertIsInstance(home, NodeHome)
        self.assertEqual(home.root, self.masterPath)
        for path in [home.sslDir, home.shared, home.logs, home.clusterQueue,
                     home.etc.child("rules"), home.globalDb.parent()]:
            self.assertTrue(path.isdir(), path)

    def test_ossecConf(self):
        """
        C{etc/ossec.conf} (0640) holds the cluster block given: type, name,
        cluster name, port, bind address, the master host as the only node,
        enabled and not hidden.
        """
        home = self.initMaster(clusterName="prod", port=1600, bindAddr="10.0.0.1")
        self.assertEqual(_mode(home.ossecConf), 0o640)
        config = _config(home)
        self.assertEqual(
            (config.node_type, config.node_name, config.name),
            ("master", "master01", "prod"),
        )
        self.assertEqual((config.port, config.bind_addr), (1600, "10.0.0.1"))
        self.assertEqual(config.nodes, ("10.0.0.1",))
        self.assertFalse(config.disabled)
        self.assertFalse(config.hidden)

    def test_defaultMasterHost(self):
        """
        Without a master host, a master names itself C{127.0.0.1}, in the
        configuration and in its certificate.
        """
        home = initNode(self.masterPath, "master", "master01", self.caDir)
        self.assertEqual(_config(home).nodes, ("127.0.0.1",))
        self.assertEqual(_sans(home), {"master01", "127.0.0.1"})

    def test_certificate(self):
        """
        The master's certificate names the node and the master host, and
        the SSL directory holds a loadable identity from the CA.
        """
        home = self.initMaster(masterHost="master.example")
        self.assertEqual(_sans(home), {"master01", "master.example"})
        self.assertEqual(
            home.caCert.getContent(), self.caDir.child("ca.pem").getContent()
        )
        self.assertEqual(_mode(home.nodeKey), 0o600)
        loadNodeIdentity(home.sslDir)

    def test_defaultGroup(self):
        """
        A master gets the group C{default} with an empty C{agent.conf}
        (0660).
        """
        home = self.initMaster()
        agentConf = home.shared.child("default").child("agent.conf")
        self.assertEqual(agentConf.getContent(), b"<agent_config>\n</agent_config>\n")
        self.assertEqual(_mode(agentConf), 0o660)

    def test_idempotent(self):
        """
        Running the same init again changes no file: configuration,
        certificate, key and group stay as they were.
        """
        home = self.initMaster()
        files = [home.ossecConf, home.nodeCert, home.nodeKey, home.caCert,
                 home.shared.child("default").child("agent.conf")]
        before = [f.getContent() for f in files]
        self.initMaster()
        self.assertEqual([f.getContent() for f in files], before)

    def test_agentConfKept(self):
        """
        Re-running init keeps a group C{default} the user edited.
        """
        home = self.initMaster()
        agentConf = home.shared.child("default").child("agent.conf")
        agentConf.setContent(b"<agent_config><x/></agent_config>\n")
        self.initMaster()
        self.assertEqual(agentConf.getContent(), b"<agent_config><x/></agent_config>\n")

    def test_newMasterHostReissues(self):
        """
        Re-running init with another master host updates the configuration
        and issues a certificate naming the new host.
        """
        self.initMaster()
        home = self.initMaster(masterHost="10.0.0.2")
        self.assertEqual(_config(home).nodes, ("10.0.0.2",))
        self.assertEqual(_sans(home), {"master01", "10.0.0.2"})

    def test_summary(self):
        """
        The summary names the node, the files made and the twistd command
        to run next, and does not show the key.
        """
        home = self.initMaster(key=KEY)
        summary = formatInitSummary(home, self.caDir)
        self.assertIn("master node 'master01'", summary)
        self.assertIn(home.ossecConf.path, summary)
        self.assertIn("agent.conf", summary)
        self.assertIn(f"twistd -n wazuh-master --home {home.root.path}", summary)
        self.assertNotIn(KEY, summary)


class WorkerInitTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} for a worker, and what master and worker share.
    """

    def test_layout(self):
        """
        A worker gets the layout, its configuration (master host as the
        only node) and a certificate naming only itself, but no group
        C{default}.
        """
        home = self.initWorker()
        config = _config(home)
        self.assertEqual((config.node_type, config.node_name), ("worker", "node02"))
        self.assertEqual(config.nodes, ("10.0.0.1",))
        self.assertEqual(_sans(home), {"node02"})
        self.assertTrue(home.shared.isdir())
        self.assertFalse(home.shared.child("default").exists())
        loadNodeIdentity(home.sslDir)

    def test_sharedKey(self):
        """
        Without C{key}, master and worker made from one CA directory share
        the key stored in it.
        """
        master, worker = self.initMaster(), self.initWorker()
        key = self.caDir.child("cluster.key").getContent().decode().strip()
        self.assertEqual(_config(master).key, key)
        self.assertEqual(_config(worker).key, key)

    def test_sharedAuthority(self):
        """
        Master and worker made from one CA directory carry the same CA,
        created once.
        """
        master, worker = self.initMaster(), self.initWorker()
        self.assertEqual(master.caCert.getContent(), worker.caCert.getContent())

    def test_explicitKey(self):
        """
        An explicit key is written to the configuration.
        """
        self.assertEqual(_config(self.initWorker(key=KEY)).key, KEY)

    def test_summary(self):
        """
        A worker's summary names its master and the wazuh-worker command.
        """
        home = self.initWorker()
        summary = formatInitSummary(home, self.caDir)
        self.assertIn("10.0.0.1:1516", summary)
        self.assertIn("twistd -n wazuh-worker", summary)


class ValidationTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} refuses bad arguments, before writing anything.
    """

    def assertRefused(self, exc, text, nodeType="worker", nodeName="node02", **kw):
        kw.setdefault("masterHost", "10.0.0.1")
        err = self.assertRaises(
            exc, initNode, self.workerPath, nodeType, nodeName, self.caDir, **kw
        )
        self.assertIn(text, str(err))
        self.assertFalse(self.workerPath.exists())
        self.assertFalse(self.caDir.exists())

    def test_nodeType(self):
        """
        A node type other than master or worker is refused.
        """
        self.assertRefused(ConfigError, "Invalid node type client", nodeType="client")

    def test_nodeName(self):
        """
        Node names outside C{[A-Za-z0-9_-]+} are refused.
        """
        for name in ["", "node 2", "node/2", "nöde"]:
            self.assertRefused(ConfigError, "Invalid node name", nodeName=name)

    def test_clusterName(self):
        """
        An empty or odd cluster name is refused.
        """
        for name in ["", "a b", "<x>"]:
            self.assertRefused(ConfigError, "Invalid cluster name", clusterName=name)

    def test_key(self):
        """
        A key that is not 32 word characters is refused with Wazuh's text.
        """
        for key in ["short", KEY + "0", KEY[:-1] + "!"]:
            self.assertRefused(ConfigError, "Key must be 32 characters long", key=key)

    def test_port(self):
        """
        Ports outside 1025-65534 and non-integers are refused with Wazuh's
        texts; the bounds themselves are accepted.
        """
        for port in [1024, 65535, 0]:
            self.assertRefused(ConfigError, "Port must be higher than 1024", port=port)
        self.assertRefused(ConfigError, "Port has to be an integer", port="x")
        self.assertEqual(_config(self.initWorker(port=1025)).port, 1025)
        self.assertEqual(_config(self.initWorker(port="65534")).port, 65534)

    def test_workerNeedsMasterHost(self):
        """
        A worker without a master host is refused.
        """
        self.assertRefused(ConfigError, "--master-host", masterHost=None)

    def test_invalidMasterHost(self):
        """
        Master hosts Wazuh refuses in C{<nodes>} are refused.
        """
        for host in ["localhost", "0.0.0.0", "NODE_IP", "a b"]:
            self.assertRefused(ConfigError, host, masterHost=host)

    def test_bindAddr(self):
        """
        A bind address that is not an IP address is refused.
        """
        self.assertRefused(ConfigError, "Invalid bind address", bindAddr="anywhere")


class ExistingNodeTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} on a home that is already a node.
    """

    def test_otherTypeRefused(self):
        """
        A worker home cannot be re-initialised as a master; its
        configuration is left alone.
        """
        self.initWorker()
        before = self.workerPath.child("etc").child("ossec.conf").getContent()
        err = self.assertRaises(
            ClusterError, initNode, self.workerPath, "master", "node02", self.caDir
        )
        self.assertIn("refusing", str(err))
        self.assertEqual(
            self.workerPath.child("etc").child("ossec.conf").getContent(), before
        )

    def test_otherNameRefused(self):
        """
        A node home cannot be re-initialised under another node name.
        """
        self.initWorker()
        err = self.assertRaises(
            ClusterError, initNode, self.workerPath, "worker", "node03",
            self.caDir, masterHost="10.0.0.1",
        )
        self.assertIn("node02", str(err))
        home = NodeHome.fromPath(self.workerPath)
        self.assertEqual(_config(home).node_name, "node02")

    def test_otherAuthorityReissues(self):
        """
        Re-running init with another CA directory issues a certificate from
        that CA.
        """
        home = self.initWorker()
        otherCa = self.caDir.sibling("other-ca")
        initNode(self.workerPath, "worker", "node02", otherCa, masterHost="10.0.0.1")
        self.assertEqual(home.caCert.getContent(), otherCa.child("ca.pem").getContent())

    def test_stringPaths(self):
        """
        The home and CA directory may be given as path strings.
        """
        home = initNode(
            self.workerPath.path, "worker", "node02", self.caDir.path,
            masterHost="10.0.0.1",
        )
        self.assertEqual(home.root, self.workerPath)
        self.assertTrue(self.caDir.child("ca.pem").exists())


WAZUH_OSSEC_CONF = """\
<!--
  Wazuh - Manager - Default configuration for ubuntu 24.04
  More info at: https://documentation.wazuh.com
-->

<ossec_config>
  <global>
    <jsonout_output>yes</jsonout_output>
    <email_notification>no</email_notification>
  </global>

  <remote>
    <connection>secure</connection>
    <port>1514</port>
  </remote>

  <!-- <cluster><node_name>commented</node_name></cluster> -->
  <cluster>
    <name>wazuh</name>
    <node_name>node01</node_name>
    <node_type>master</node_type>
    <key></key>
    <port>1516</port>
    <bind_addr>0.0.0.0</bind_addr>
    <nodes>
        <node>NODE_IP</node>
    </nodes>
    <hidden>no</hidden>
    <disabled>yes</disabled>
  </cluster>
</ossec_config>

<ossec_config>
  <localfile>
    <log_format>syslog</log_format>
    <location>/var/ossec/logs/active-responses.log</location>
  </localfile>
</ossec_config>
"""


class ExistingOssecConfTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} on a home whose C{etc/ossec.conf} is a full Wazuh
    configuration: only the C{<cluster>} block changes.
    """

    def writeConf(self, home, text):
        conf = home.child("etc").child("ossec.conf")
        conf.parent().makedirs(ignoreExistingDirectory=True)
        conf.setContent(text.encode("utf-8"))
        return conf

    def outsideBlock(self, text):
        """
        C{text} with its first uncommented C{<cluster>...</cluster>} cut out.
        """
        start = text.index("  <cluster>\n")
        end = text.index("</cluster>", start) + len("</cluster>")
        return text[:start] + text[end:]

    def test_disabledBlockReplacedRestKept(self):
        """
        Wazuh's shipped, disabled C{<cluster>} block is replaced in place;
        every other byte of the file (other sections, comments, a second
        C{<ossec_config>}) is kept, and re-running init changes nothing.
        """
        conf = self.writeConf(self.masterPath, WAZUH_OSSEC_CONF)
        home = self.initMaster()
        text = conf.getContent().decode("utf-8")
        self.assertEqual(self.outsideBlock(text), self.outsideBlock(WAZUH_OSSEC_CONF))
        config = _config(home)
        self.assertEqual((config.node_name, config.node_type, config.disabled, config.nodes),
                         ("master01", "master", False, ("10.0.0.1",)))
        self.assertIn("<!-- <cluster><node_name>commented</node_name></cluster> -->", text)
        self.assertEqual(_mode(conf), 0o640)
        self.initMaster()
        self.assertEqual(conf.getContent().decode("utf-8"), text)

    def test_noBlockAdded(self):
        """
        A file without a C{<cluster>} block gets one at the end of its last
        C{<ossec_config>} section; the rest is kept.
        """
        start = WAZUH_OSSEC_CONF.index("  <!-- <cluster>")
        end = WAZUH_OSSEC_CONF.index("</cluster>\n", start + 70) + len("</cluster>\n")
        original = WAZUH_OSSEC_CONF[:start] + WAZUH_OSSEC_CONF[end:]
        conf = self.writeConf(self.workerPath, original)
        home = self.initWorker()
        text = conf.getContent().decode("utf-8")
        self.assertTrue(text.startswith(original[:original.rindex("</ossec_config>")]))
        self.assertTrue(text.endswith("  </cluster>\n</ossec_config>\n"))
        config = _config(home)
        self.assertEqual((config.node_name, config.node_type), ("node02", "worker"))

    def test_laterBlocksRemoved(self):
        """
        When the file has several C{<cluster>} blocks (later values win in
        Wazuh), the first is replaced and the others removed, so the file
        says what init was asked for.
        """
        extra = WAZUH_OSSEC_CONF + (
            "<ossec_config>\n  <cluster>\n    <port>2000</port>\n"
            "    <disabled>yes</disabled>\n  </cluster>\n</ossec_config>\n"
        )
        conf = self.writeConf(self.masterPath, extra)
        home = self.initMaster()
        text = conf.getContent().decode("utf-8")
        self.assertEqual(text.count("<cluster>"), 2)  # ours and the comment's
        self.assertEqual(_config(home).port, 1516)
        self.assertIn("<localfile>", text)

    def test_enabledBlockOfAnotherNodeRefused(self):
        """
        An enabled C{<cluster>} block naming another node is not changed,
        and neither is the rest of the file.
        """
        enabled = WAZUH_OSSEC_CONF.replace(
            "<disabled>yes</disabled>", "<disabled>no</disabled>").replace(
            "<key></key>", f"<key>{KEY}</key>").replace("NODE_IP", "10.0.0.1")
        conf = self.writeConf(self.masterPath, enabled)
        err = self.assertRaises(ClusterError, self.initMaster)
        self.assertIn("already the master node 'node01'", str(err))
        self.assertEqual(conf.getContent().decode("utf-8"), enabled)

    def test_unreadableRefused(self):
        """
        A file that is not well-formed is left alone, with a clear error.
        """
        broken = WAZUH_OSSEC_CONF.replace("</remote>", "")
        conf = self.writeConf(self.masterPath, broken)
        err = self.assertRaises(ClusterError, self.initMaster)
        self.assertIn("cannot be read", str(err))
        self.assertEqual(conf.getContent().decode("utf-8"), broken)
        self.assertFalse(self.caDir.exists())


class PathTests(InitTestsMixin, SynchronousTestCase):
    """
    L{initNode} refuses unusable paths before writing anything, and a
    failure after it started leaves nothing it created behind.
    """

    def test_homeIsAFile(self):
        """
        A file given as the home is refused (1006); no CA is created.
        """
        self.masterPath.parent().makedirs()
        self.masterPath.setContent(b"not a directory")
        err = self.assertRaises(ClusterError, self.initMaster)
        self.assertEqual(err.code, 1006)
        self.assertIn("is not a directory", str(err))
        self.assertFalse(self.caDir.exists())

    def test_caIsAFile(self):
        """
        A file given as the CA directory is refused; no home is created.
        """
        self.caDir.parent().makedirs()
        self.caDir.setContent(b"x")
        err = self.assertRaises(ClusterError, self.initMaster)
        self.assertIn(f"--ca {self.caDir.path} is not a directory", str(err))
        self.assertFalse(self.masterPath.exists())

    def test_parentIsAFile(self):
        """
        A home below a file cannot be created: refused, naming the file.
        """
        self.masterPath.parent().makedirs()
        blocker = self.masterPath.parent().child("file")
        blocker.setContent(b"x")
        err = self.assertRaises(ClusterError, initNode, blocker.child("home"), "master",
                                "m", self.caDir)
        self.assertIn(f"{blocker.path} is not a directory", str(err))
        self.assertFalse(self.caDir.exists())

    def test_failureRemovesWhatItCreated(self):
        """
        When init fails after creating the CA (here: the home's C{etc} is a
        file), the new CA directory is removed, and a CA directory that
        existed keeps only what it had.
        """
        self.masterPath.makedirs()
        self.masterPath.child("etc").setContent(b"a file where etc/ should be")
        err = self.assertRaises(ClusterError, self.initMaster)
        self.assertIn("nothing was changed", str(err))
        self.assertFalse(self.caDir.exists())
        self.caDir.makedirs()
        self.caDir.child("notes.txt").setContent(b"mine")
        self.assertRaises(ClusterError, self.initMaster)
        self.assertEqual(self.caDir.listdir(), ["notes.txt"])

    def test_newHomeRemovedOnFailure(self):
        """
        A home this run created is removed when init fails.
        """
        self.caDir.makedirs()
        self.caDir.child("ca.pem").setContent(b"garbage")
        self.caDir.child("ca.key").setContent(b"garbage")
        self.caDir.child("cluster.key").setContent(KEY.encode())
        self.assertRaises(ClusterError, self.initMaster)
        self.assertFalse(self.masterPath.exists())
        self.assertEqual(sorted(self.caDir.listdir()), ["ca.key", "ca.pem", "cluster.key"])

    def test_caInsideHomeRefused(self):
        """
        A CA directory equal to the home, inside it, or reaching it through
        a symbolic link is refused: the CA key must never enter a node home.
        """
        for ca in (self.masterPath, self.masterPath.child("ca"),
                   self.masterPath.child("etc").child("ca")):
            err = self.assertRaises(ClusterError, initNode, self.masterPath, "master",
                                    "master01", ca)
            self.assertIn("inside the node home", str(err))
        self.assertFalse(self.masterPath.exists())
        self.masterPath.makedirs()
        link = self.masterPath.parent().child("link")
        os.symlink(self.masterPath.path, link.path)
        self.assertRaises(ClusterError, initNode, self.masterPath, "master", "master01",
                          link.child("ca"))
        self.assertEqual(self.masterPath.listdir(), [])


class ClusterKeyTests(InitTestsMixin, SynchronousTestCase):
    """
    The cluster key kept in the CA directory.
    """

    def test_deletedClusterKeyRefused(self):
        """
        When C{CADIR/cluster.key} is gone but the CA is there, init refuses
        to make a new key (later workers would be rejected) and says how to
        restore it; nothing is created.
        """
        master = self.initMaster()
        self.caDir.child("cluster.key").remove()
        err = self.assertRaises(ClusterError, self.initWorker)
        self.assertIn("cluster.key is missing", str(err))
        self.assertIn("<key>", str(err))
        self.assertIn("--key", str(err))
        self.assertFalse(self.caDir.child("cluster.key").exists())
        self.assertFalse(self.workerPath.exists())
        self.assertRaises(ClusterError, self.initMaster)
        self.assertNotEqual(_config(master).key, "")

    def test_keyRestoresClusterKey(self):
        """
        C{--key} restores a deleted C{cluster.key}: later nodes made without
        C{--key} get it.
        """
        key = _config(self.initMaster()).key
        self.caDir.child("cluster.key").remove()
        self.initWorker(key=key)
        self.assertEqual(self.caDir.child("cluster.key").getContent().strip(),
                         key.encode())
        other = initNode(self.workerPath.sibling("w2"), "worker", "node03", self.caDir,
                         masterHost="10.0.0.1")
        self.assertEqual(_config(other).key, key)


class RerunTests(InitTestsMixin, SynchronousTestCase):
    """
    Re-running init on a node keeps what the options do not change, and
    says what changed.
    """

    def test_keepsSettings(self):
        """
        Without options, a re-run keeps cluster name, key, port, bind
        address, master host and hidden, and reports nothing changed.
        """
        self.initMaster(clusterName="prod", key=KEY, port=1600, bindAddr="10.0.0.1",
                        masterHost="master.example")
        conf = self.masterPath.child("etc").child("ossec.conf")
        conf.setContent(conf.getContent().replace(b"<hidden>no</hidden>",
                                                  b"<hidden>yes</hidden>"))
        before = conf.getContent()
        report = initNodeReport(self.masterPath, "master", "master01", self.caDir)
        self.assertEqual(conf.getContent(), before)
        self.assertEqual((report.created, report.changes), (False, ()))
        summary = formatInitSummary(report.home, self.caDir, report)
        self.assertIn("Nothing changed", summary)
        self.assertEqual(_sans(report.home), {"master01", "master.example"})

    def test_reportsChanges(self):
        """
        An option that changes a setting changes only that one, and the
        report names it (never the key itself).
        """
        self.initWorker(port=1600)
        report = initNodeReport(self.workerPath, "worker", "node02", self.caDir,
                                port=1700, key=KEY)
        config = _config(report.home)
        self.assertEqual((config.port, config.nodes, config.key),
                         (1700, ("10.0.0.1",), KEY))
        self.assertEqual(report.changes,
                         ("port: 1600 -> 1700", "cluster key: replaced by the one given"))
        summary = formatInitSummary(report.home, self.caDir, report)
        self.assertIn("changed: port: 1600 -> 1700", summary)
        self.assertNotIn(KEY, summary)

    def test_workerRerunNeedsNoMasterHost(self):
        """
        A worker's master host is kept on a re-run without C{--master-host}.
        """
        self.initWorker(masterHost="10.9.9.9")
        home = initNode(self.workerPath, "worker", "node02", self.caDir)
        self.assertEqual(_config(home).nodes, ("10.9.9.9",))


class MasterHostNoteTests(InitTestsMixin, SynchronousTestCase):
    """
    A master made without C{--master-host} says which address its
    certificate names and what workers must dial.
    """

    def test_note(self):
        """
        The summary says the certificate names only 127.0.0.1, that workers
        must dial it, and how to name another address.
        """
        report = initNodeReport(self.masterPath, "master", "master01", self.caDir)
        summary = formatInitSummary(report.home, self.caDir, report)
        self.assertIn("names only 127.0.0.1", summary)
        self.assertIn("--master-host 127.0.0.1", summary)
        self.assertIn("--master-host", summary.split("For workers on other hosts")[1])

    def test_keyNote(self):
        """
        A C{--key} other than the CA directory's cluster key is pointed out
        (nodes made without it would not connect); a re-run without
        C{--key} keeps the node's key and says nothing.
        """
        initNode(self.masterPath, "master", "master01", self.caDir, masterHost="10.0.0.1")
        report = initNodeReport(self.workerPath, "worker", "node02", self.caDir,
                                masterHost="10.0.0.1", key=KEY)
        self.assertEqual(len(report.notes), 1)
        self.assertIn("--key differs from", report.notes[0])
        again = initNodeReport(self.workerPath, "worker", "node02", self.caDir)
        self.assertEqual((again.notes, again.changes), ((), ()))
        self.assertEqual(_config(again.home).key, KEY)

    def test_noNoteWithMasterHost(self):
        """
        With C{--master-host}, no note.
        """
        report = initNodeReport(self.masterPath, "master", "master01", self.caDir,
                                masterHost="10.0.0.1")
        self.assertEqual(report.notes, ())
