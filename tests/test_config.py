# -*- test-case-name: tests.test_config -*-
"""
Tests for L{wazuhcluster.ossecconf}, L{wazuhcluster.clusteritems} and
L{wazuhcluster.intervals} (L{wazuhcluster.checkconfig}: C{tests.test_checkconfig}).
"""

import json

from attrs import asdict
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.clusteritems import FileItem, loadClusterItems, mergeClusterItems
from wazuhcluster.errors import ConfigError
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecchecks import (
    CLUSTER_NAME_CHARS,
    NODE_NAME_CHARS,
    RESERVED_NODE_ADDRESSES,
    checkClusterConfig,
)
from wazuhcluster.ossecconf import (
    ClusterConfig,
    defaultClusterConfig,
    parseClusterConfig,
    readClusterConfig,
)
from wazuhcluster.ossecwrite import renderOssecConf

KEY = "0123456789abcdef0123456789abcdef"


def clusterBlock(**elements):
    """
    An ossec.conf whose C{<cluster>} block holds C{elements} (C{None}
    values are left out; C{nodes} is a list of C{<node>} values), on top of a
    valid key and master address.
    """
    values = {"key": KEY, "nodes": ["192.168.0.1"]}
    values.update(elements)
    parts = []
    for tag, value in values.items():
        if value is None:
            continue
        if tag == "nodes":
            nodes = "".join(f"<node>{node}</node>" for node in value)
            parts.append(f"<nodes>{nodes}</nodes>")
        else:
            parts.append(f"<{tag}>{value}</{tag}>")
    return (
        "<ossec_config><cluster>" + "".join(parts) + "</cluster></ossec_config>"
    ).encode("utf-8")


class ParseDefaultsTests(SynchronousTestCase):
    """
    Defaults and the shape of the file: L{parseClusterConfig}.
    """

    def test_defaultsPerMissingKey(self):
        """
        Every element missing from the block takes the original's default.
        """
        config = parseClusterConfig(clusterBlock())
        self.assertEqual(
            config,
            ClusterConfig(
                name="wazuh",
                node_name="node01",
                node_type="master",
                key=KEY,
                port=1516,
                bind_addr="0.0.0.0",
                nodes=("192.168.0.1",),
                hidden=False,
                disabled=False,
            ),
        )
        self.assertEqual(config.warnings, ())
        self.assertEqual(config.masterHost, "192.168.0.1")

    def test_allElements(self):
        """
        Every element is read, the port converted to an integer.
        """
        config = parseClusterConfig(
            clusterBlock(
                name="prod",
                node_name="node-02",
                node_type="worker",
                port="1600",
                bind_addr="10.0.0.2",
                nodes=["10.0.0.1"],
                hidden="yes",
                disabled="no",
            )
        )
        self.assertEqual(
            (config.name, config.node_name, config.node_type, config.port),
            ("prod", "node-02", "worker", 1600),
        )
        self.assertEqual(config.bind_addr, "10.0.0.2")
        self.assertEqual(config.nodes, ("10.0.0.1",))
        self.assertTrue(config.hidden)
        self.assertFalse(config.disabled)

    def test_noClusterBlock(self):
        """
        An ossec.conf without a C{<cluster>} block gives the default
        configuration, disabled, without any check.
        """
        config = parseClusterConfig(
            b"<ossec_config><global><jsonout_output>yes</jsonout_output>"
            b"</global></ossec_config>"
        )
        self.assertEqual(config, defaultClusterConfig())
        self.assertTrue(config.disabled)
        self.assertEqual(config.key, "")
        self.assertEqual(config.nodes, ("NODE_IP",))

    def test_realisticFile(self):
        """
        A real ossec.conf: XML declaration, several C{<ossec_config>} roots,
        other blocks, comments containing C{--}, a bare C{&} and a
        byte-order mark are all accepted; the cluster block is found in the
        second root.
        """
        text = (
            '\ufeff<?xml version="1.0"?>\n'
            "<!-- Wazuh -- manager configuration -->\n"
            "<ossec_config>\n"
            "  <global><email_to>a&b@example.com</email_to></global>\n"
            "</ossec_config>\n"
            "<ossec_config>\n"
            "  <cluster>\n"
            "    <name>wazuh</name>\n"
            f"    <key>{KEY}</key>\n"
            "    <nodes><node>master.example.com</node></nodes>\n"
            "  </cluster>\n"
            "</ossec_config>\n"
        )
        config = parseClusterConfig(text.encode("utf-8"))
        self.assertEqual(config.masterHost, "master.example.com")

    def test_lastBlockWins(self):
        """
        With several C{<cluster>} blocks, only the last one counts (its
        missing elements take their defaults, not the earlier block's
        values), with Wazuh's warning.
        """
        text = clusterBlock(name="first", port="1600") + (
            f"<ossec_config><cluster><name>second</name><key>{KEY}</key>"
            "<nodes><node>10.0.0.9</node></nodes></cluster></ossec_config>"
        ).encode("ascii")
        config = parseClusterConfig(text)
        self.assertEqual((config.name, config.port), ("second", 1516))
        self.assertEqual(
            config.warnings,
            ("There are multiple cluster sections in configuration. Using only "
             "last section.",),
        )

    def test_emptyNodesTakeDefault(self):
        """
        A C{<nodes>} element without any non-empty C{<node>} counts as
        missing: the default C{NODE_IP} applies, and is refused.
        """
        error = self.assertRaises(
            ConfigError, parseClusterConfig, clusterBlock(nodes=["", " "])
        )
        self.assertEqual(error.detail, "Invalid elements in node fields: NODE_IP.")

    def test_acceptsText(self):
        """
        The content may also be given as text.
        """
        config = parseClusterConfig(clusterBlock().decode("utf-8"))
        self.assertEqual(config.key, KEY)


class ParseErrorTests(SynchronousTestCase):
    """
    Every error text of L{parseClusterConfig}.
    """

    def assertConfigError(self, content, detail, code=3004):
        """
        Parsing C{content} fails with C{detail} and C{code}, printed the way
        Wazuh prints it.
        """
        error = self.assertRaises(ConfigError, parseClusterConfig, content)
        self.assertEqual((error.code, error.detail), (code, detail))
        if code == 3004:
            self.assertEqual(
                str(error), f"Error 3004 - Error in cluster configuration: {detail}"
            )
        return error

    def test_malformedXml(self):
        """
        Text that is not well-formed XML is a 3006 error naming the problem
        and where it is.
        """
        error = self.assertRaises(
            ConfigError,
            parseClusterConfig,
            b"<ossec_config>\n<cluster>\n<name>x</nam>\n</cluster></ossec_config>",
        )
        self.assertEqual(error.code, 3006)
        self.assertTrue(
            str(error).startswith(
                "Error 3006 - Error reading cluster configuration: mismatched tag"
            ),
            str(error),
        )
        self.assertIn("line 3", str(error))

    def test_notUtf8(self):
        """
        Bytes that are not UTF-8 are a 3006 error.
        """
        error = self.assertRaises(
            ConfigError, parseClusterConfig, b"<ossec_config>\xff</ossec_config>"
        )
        self.assertEqual(error.code, 3006)
        self.assertIn("not valid UTF-8", str(error))

    def test_doctypeRefused(self):
        """
        A document type declaration (the way to entity expansion attacks) is
        not accepted: 3006.
        """
        content = (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]>'
            b"<ossec_config><cluster><name>&a;</name></cluster></ossec_config>"
        )
        error = self.assertRaises(ConfigError, parseClusterConfig, content)
        self.assertEqual(error.code, 3006)

    def test_unspecifiedKey(self):
        """
        An empty key, or none, is "Unspecified key".
        """
        self.assertConfigError(clusterBlock(key=""), "Unspecified key")
        self.assertConfigError(clusterBlock(key=None), "Unspecified key")

    def test_keyFormat(self):
        """
        A key that is not exactly 32 word characters is refused.
        """
        detail = (
            "Key must be 32 characters long and only have alphanumeric characters"
        )
        for key in ["abc", KEY + "0", KEY[:-1] + "-", " " + KEY + " "]:
            self.assertConfigError(clusterBlock(key=key), detail)
        self.assertConfigError(
            clusterBlock(key=KEY[:-1] + "\u00e9"),
            detail + " (ASCII letters, digits and '_': Wazuh turns the key into "
            "32 bytes)",
        )
        underscores = "_" * 32
        config = parseClusterConfig(clusterBlock(key=underscores))
        self.assertEqual(config.key, underscores)

    def test_invalidNodeType(self):
        """
        A node type other than master, worker (or client) is refused.
        """
        self.assertConfigError(
            clusterBlock(node_type="boss"),
            "Invalid node type boss. Correct values are master and worker",
        )

    def test_portNotInteger(self):
        """
        A port that is not made of digits is refused by the read step.
        """
        for port in ["abc", "15.16", "-1516", "+1516", " 1516 ", "\u00b2"]:
            self.assertConfigError(
                clusterBlock(port=port), "Cluster port must be an integer."
            )

    def test_portDigits(self):
        """
        Leading zeros and decimal digits of any script are a port, as for
        Python's C{int}.
        """
        for port in ["01516", "\u0661\u0665\u0661\u0666"]:
            self.assertEqual(parseClusterConfig(clusterBlock(port=port)).port, 1516)

    def test_emptyElementsTakeDefaults(self):
        """
        An empty element counts as missing: it takes its default.
        """
        config = parseClusterConfig(clusterBlock(
            name="", node_name="", node_type="", port="", bind_addr="",
            hidden="", disabled=""))
        self.assertEqual(
            (config.name, config.node_name, config.node_type, config.port,
             config.bind_addr, config.hidden, config.disabled),
            ("wazuh", "node01", "master", 1516, "0.0.0.0", False, False))

    def test_whitespaceKept(self):
        """
        Values are taken as written: a padded node type is invalid.
        """
        self.assertConfigError(
            clusterBlock(node_type="\n master \n"),
            "Invalid node type \n master \n. Correct values are master and worker",
        )

    def test_elementNamesIgnoreCase(self):
        """
        Element names are compared without case, as Wazuh's reader does.
        """
        config = parseClusterConfig(clusterBlock(NODE_TYPE="worker", Node_Name="w1"))
        self.assertEqual((config.node_type, config.node_name), ("worker", "w1"))

    def test_portRange(self):
        """
        The port must be strictly between 1024 and 65535.
        """
        detail = "Port must be higher than 1024 and lower than 65535."
        for port in ["1024", "65535", "80", "0", "70000"]:
            self.assertConfigError(clusterBlock(port=port), detail)
        for port in [1025, 65534]:
            config = parseClusterConfig(clusterBlock(port=str(port)))
            self.assertEqual(config.port, port)

    def test_reservedNodeAddresses(self):
        """
        Each reserved address in C{<nodes>} is refused; the text lists the
        reserved ones in order.
        """
        for address in RESERVED_NODE_ADDRESSES:
            self.assertConfigError(
                clusterBlock(nodes=[address]),
                f"Invalid elements in node fields: {address}.",
            )
        self.assertConfigError(
            clusterBlock(nodes=["10.0.0.1", "localhost", "127.0.1.1"]),
            "Invalid elements in node fields: localhost, 127.0.1.1.",
        )

    def test_disabledValue(self):
        """
        C{disabled} must be C{yes} or C{no}.
        """
        self.assertConfigError(
            clusterBlock(disabled="true"),
            "Allowed values for 'disabled' field are 'yes' and 'no'. Found: 'true'",
        )

    def test_hiddenValue(self):
        """
        A C{hidden} other than C{yes} or C{no} is accepted, as Wazuh's
        cluster daemon does (it never reads it), with a warning (Wazuh's C
        daemons refuse it), and read as C{no}.
        """
        config = parseClusterConfig(clusterBlock(hidden="1"))
        self.assertFalse(config.hidden)
        self.assertEqual(
            config.warnings,
            ("Invalid value for element 'hidden': '1' (Wazuh's other daemons "
             "refuse it); using 'no'.",),
        )


    def test_clusterNameCharacters(self):
        """
        A cluster name with a character outside the C parser's set (a space
        here) is refused; dots alone are fine (it names no directory).
        """
        self.assertConfigError(
            clusterBlock(name="my cluster"),
            'Detected a not allowed character in cluster name: "my cluster". '
            f'Characters allowed: "{CLUSTER_NAME_CHARS}".',
        )
        self.assertEqual(parseClusterConfig(clusterBlock(name=".")).name, ".")


    def test_nodeNameCharacters(self):
        """
        A node name with a character outside C{[A-Za-z0-9_.-]}, or made of
        dots only (it names a directory), is refused.
        """
        for name in ["node 01", "node/01", "n\u00f6de", "node:1", ".", ".."]:
            self.assertConfigError(
                clusterBlock(node_name=name),
                f'Detected a not allowed character in node name: "{name}". '
                f'Characters allowed: "{NODE_NAME_CHARS}".',
            )
        config = parseClusterConfig(clusterBlock(node_name="Node_01-dc.1"))
        self.assertEqual(config.node_name, "Node_01-dc.1")

    def test_workerNameFormat(self):
        """
        A worker's name must be one its master accepts in the hello
        (C{[A-Za-z0-9_-]+}, Wazuh's 3060): a dot is refused there.
        """
        self.assertConfigError(
            clusterBlock(node_name="node.1", node_type="worker"),
            "Invalid node name format: 'node.1': a master accepts only letters, "
            "digits, '_' and '-' in a worker's name (error 3060)",
        )

    def test_unknownElement(self):
        """
        An element the original does not know is ignored, as Wazuh's cluster
        daemon does, but with a warning (Wazuh's C daemons refuse it).
        """
        config = parseClusterConfig(clusterBlock(node_nmae="x"))
        self.assertEqual(
            config.warnings,
            ("Unknown element <node_nmae> in <cluster> ignored (Wazuh's other "
             "daemons refuse it: error 1230).",),
        )

    def test_ignoredElements(self):
        """
        C{socket_timeout} and C{connection_timeout} are accepted and ignored.
        """
        config = parseClusterConfig(
            clusterBlock(socket_timeout="10", connection_timeout="10")
        )
        self.assertEqual(config.warnings, ())


class CheckOrderTests(SynchronousTestCase):
    """
    The order of the checks: the read step, then C{check_cluster_config}'s
    checks, then the C parser's; the first failure wins.
    """

    def assertFirstError(self, detail, **elements):
        """
        Parsing a block with C{elements} fails with C{detail}.
        """
        error = self.assertRaises(
            ConfigError, parseClusterConfig, clusterBlock(**elements)
        )
        self.assertEqual(error.detail, detail)

    def test_readStepFirst(self):
        """
        The read step's errors (port not an integer, then C{disabled}, then
        C{hidden}) come before any check.
        """
        self.assertFirstError(
            "Cluster port must be an integer.",
            key="",
            port="x",
            disabled="maybe",
            node_type="boss",
        )
        self.assertFirstError(
            "Allowed values for 'disabled' field are 'yes' and 'no'. "
            "Found: 'maybe'",
            key="",
            disabled="maybe",
            hidden="maybe",
        )

    def test_checksInOrder(self):
        """
        Key empty, key format, node type, port range, node addresses: each is
        reported before the following ones.
        """
        bad = dict(
            node_type="boss", port="80", nodes=["localhost"], name="a b",
            node_name="a b"
        )
        self.assertFirstError("Unspecified key", key="", **bad)
        self.assertFirstError(
            "Key must be 32 characters long and only have alphanumeric characters",
            key="short",
            **bad,
        )
        bad.pop("node_type")
        self.assertFirstError(
            "Port must be higher than 1024 and lower than 65535.", **bad
        )
        bad.pop("port")
        self.assertFirstError("Invalid elements in node fields: localhost.", **bad)
        bad.pop("nodes")
        self.assertFirstError(
            'Detected a not allowed character in cluster name: "a b". '
            f'Characters allowed: "{CLUSTER_NAME_CHARS}".', **bad)
        bad.pop("name")
        self.assertFirstError(
            'Detected a not allowed character in node name: "a b". '
            f'Characters allowed: "{NODE_NAME_CHARS}".', **bad)

    def test_nodeTypeBeforePort(self):
        """
        An invalid node type is reported before a port out of range.
        """
        self.assertFirstError(
            "Invalid node type boss. Correct values are master and worker",
            node_type="boss",
            port="80",
        )


    def test_disabledSkipsChecks(self):
        """
        Like C{wazuh-clusterd}, which exits before checking a disabled
        cluster, the checks are skipped when it is disabled;
        L{checkClusterConfig} still runs them on demand.  The read step and
        the name rules still apply.
        """
        config = parseClusterConfig(
            clusterBlock(key="", node_type="boss", port="80", disabled="yes")
        )
        self.assertTrue(config.disabled)
        error = self.assertRaises(ConfigError, checkClusterConfig, config)
        self.assertEqual(error.detail, "Unspecified key")
        error = self.assertRaises(
            ConfigError,
            parseClusterConfig,
            clusterBlock(node_name="a/b", disabled="yes"),
        )
        self.assertIn("not allowed character in node name", error.detail)

    def test_checkClusterConfigNames(self):
        """
        L{checkClusterConfig} also applies the name rules, for configurations
        built in code.
        """
        config = parseClusterConfig(clusterBlock())
        for name in ["", "node 1"]:
            bad = ClusterConfig(**{**asdict(config), "node_name": name})
            error = self.assertRaises(ConfigError, checkClusterConfig, bad)
            self.assertIn("ode name", error.detail)
        bad = ClusterConfig(**{**asdict(config), "port": 80})
        error = self.assertRaises(ConfigError, checkClusterConfig, bad)
        self.assertEqual(
            error.detail, "Port must be higher than 1024 and lower than 65535."
        )

    def test_checkClusterConfigWarnings(self):
        """
        L{checkClusterConfig} returns the warnings of the checks for a valid
        configuration: none for several C{<node>}s (master candidates).
        """
        config = parseClusterConfig(clusterBlock(nodes=["a.example", "b.example"]))
        self.assertEqual(checkClusterConfig(config), ())


class WarningTests(SynchronousTestCase):
    """
    Non-fatal remarks go into L{ClusterConfig.warnings}.
    """

    def test_clientNodeType(self):
        """
        Node type C{client} is read as C{worker}, with the original's warning.
        """
        config = parseClusterConfig(clusterBlock(node_type="client"))
        self.assertEqual(config.node_type, "worker")
        self.assertEqual(
            config.warnings,
            ("Deprecated node type 'client'. Using 'worker' instead.",),
        )

    def test_moreThanOneNode(self):
        """
        Several C{<node>}s are the master candidates, in order, without
        Wazuh's warning (which says only the first is used).
        """
        config = parseClusterConfig(
            clusterBlock(nodes=["10.0.0.1", "10.0.0.2"])
        )
        self.assertEqual((config.masterHost, config.nodes),
                         ("10.0.0.1", ("10.0.0.1", "10.0.0.2")))
        self.assertEqual(config.warnings, ())

    def test_deprecatedInterval(self):
        """
        C{<interval>} is accepted with the C parser's deprecation warning.
        """
        config = parseClusterConfig(clusterBlock(interval="2m"))
        self.assertEqual(
            config.warnings,
            (
                "Detected a deprecated configuration for cluster. "
                "Interval option is not longer available.",
            ),
        )

    def test_haproxyHelperIgnored(self):
        """
        A C{<haproxy_helper>} block is ignored with a warning.
        """
        config = parseClusterConfig(
            clusterBlock(haproxy_helper="<haproxy_disabled>no</haproxy_disabled>")
        )
        self.assertEqual(len(config.warnings), 1)
        self.assertIn("haproxy_helper", config.warnings[0])

    def test_warningsNotCompared(self):
        """
        Warnings do not take part in equality.
        """
        a = parseClusterConfig(clusterBlock(node_type="client"))
        b = parseClusterConfig(clusterBlock(node_type="worker"))
        self.assertEqual(a, b)


class ReadClusterConfigTests(SynchronousTestCase):
    """
    L{readClusterConfig} reads a node's C{etc/ossec.conf}.
    """

    def setUp(self):
        self.home = NodeHome(FilePath(self.mktemp()))
        self.home.etc.makedirs()

    def test_reads(self):
        """
        The file's C{<cluster>} block is read.
        """
        self.home.ossecConf.setContent(clusterBlock(node_name="node07"))
        self.assertEqual(readClusterConfig(self.home).node_name, "node07")

    def test_missingFile(self):
        """
        A missing ossec.conf is a 3006 error naming the file.
        """
        error = self.assertRaises(ConfigError, readClusterConfig, self.home)
        self.assertEqual(error.code, 3006)
        self.assertTrue(
            str(error).startswith("Error 3006 - Error reading cluster configuration: ")
        )
        self.assertIn(self.home.ossecConf.path, str(error))

    def test_unreadableFile(self):
        """
        An ossec.conf that cannot be read (a directory here) is a 3006 error.
        """
        self.home.ossecConf.makedirs()
        error = self.assertRaises(ConfigError, readClusterConfig, self.home)
        self.assertEqual(error.code, 3006)

    def test_malformedNamesFile(self):
        """
        A malformed ossec.conf is a 3006 error naming the file.
        """
        self.home.ossecConf.setContent(b"<ossec_config><cluster>")
        error = self.assertRaises(ConfigError, readClusterConfig, self.home)
        self.assertEqual(error.code, 3006)
        self.assertIn(self.home.ossecConf.path, str(error))


def _cleanText(alphabet=None, minSize=0):
    """
    Text without surrounding whitespace nor characters XML cannot carry.
    """
    if alphabet is None:
        alphabet = st.characters(
            categories=("L", "N", "P", "S"), exclude_characters="\ufffe\uffff"
        )
    text = st.text(alphabet, min_size=minSize, max_size=20)
    spaced = st.lists(text, min_size=1, max_size=3).map(" ".join)
    return spaced.filter(lambda s: s == s.strip() and len(s) >= minSize)


def validConfigs():
    """
    Configurations that L{parseClusterConfig} can return.
    """
    nodes = _cleanText(minSize=1).filter(lambda s: s not in RESERVED_NODE_ADDRESSES)
    masterName = st.text(NODE_NAME_CHARS, min_size=1, max_size=20).filter(
        lambda s: s not in (".", "..")
    )
    workerName = st.text(NODE_NAME_CHARS.replace(".", ""), min_size=1, max_size=20)

    def build(nodeType):
        return st.builds(
            ClusterConfig,
            name=st.text(CLUSTER_NAME_CHARS, min_size=1, max_size=20),
            node_name=masterName if nodeType == "master" else workerName,
            node_type=st.just(nodeType),
            key=st.text(
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
                min_size=32,
                max_size=32,
            ),
            port=st.integers(1025, 65534),
            bind_addr=_cleanText(minSize=1),
            nodes=st.lists(nodes, min_size=1, max_size=3).map(tuple),
            hidden=st.booleans(),
            disabled=st.booleans(),
        )

    return st.sampled_from(["master", "worker"]).flatmap(build)


class RenderTests(SynchronousTestCase):
    """
    L{renderOssecConf} writes an ossec.conf that reads back the same.
    """

    @settings(max_examples=200, deadline=None)
    @given(validConfigs())
    def test_roundTrip(self, config):
        """
        Reading back a rendered configuration gives it again.
        """
        self.assertEqual(parseClusterConfig(renderOssecConf(config)), config)

    def test_layout(self):
        """
        The file uses Wazuh's element names, one per line, indented, with
        yes/no flags, and escapes XML characters.
        """
        config = parseClusterConfig(clusterBlock(name="a&amp;b&lt;c", hidden="yes"))
        text = renderOssecConf(config).decode("utf-8")
        self.assertEqual(
            text.splitlines(),
            [
                "<ossec_config>",
                "  <cluster>",
                "    <name>a&amp;b&lt;c</name>",
                "    <node_name>node01</node_name>",
                "    <node_type>master</node_type>",
                f"    <key>{KEY}</key>",
                "    <port>1516</port>",
                "    <bind_addr>0.0.0.0</bind_addr>",
                "    <nodes>",
                "      <node>192.168.0.1</node>",
                "    </nodes>",
                "    <hidden>yes</hidden>",
                "    <disabled>no</disabled>",
                "  </cluster>",
                "</ossec_config>",
            ],
        )
        self.assertEqual(config.name, "a&b<c")


class ShippedItemsTests(SynchronousTestCase):
    """
    L{loadClusterItems} without overrides: the shipped cluster.json.
    """

    def test_intervals(self):
        """
        The intervals are those of WAZUH.md section 2, plus ours.
        """
        items = loadClusterItems()
        self.assertEqual(items.worker.keep_alive, 60)
        self.assertEqual(items.worker.sync_integrity, 9)
        self.assertEqual(items.master.recalculate_integrity, 8)
        self.assertEqual(items.master.max_allowed_time_without_keepalive, 120)
        self.assertEqual(items.master.hello_timeout, 30)
        self.assertEqual(items.master.max_connections_per_address, 10)
        self.assertEqual(items.communication.zip_limit_tolerance, 0.2)

    def test_fileSet(self):
        """
        The items are sorted by path, with integer permissions, and the
        exclusions are there.
        """
        fileset = loadClusterItems().fileset
        self.assertEqual(
            [item.path for item in fileset.items],
            [
                "etc/",
                "etc/decoders/",
                "etc/lists/",
                "etc/rules/",
                "etc/shared/",
                "var/multigroups/",
            ],
        )
        self.assertEqual(
            fileset.items[0],
            FileItem(
                path="etc/",
                permissions=0o640,
                files=("client.keys", "cluster.crl"),
                recursive=False,
                remove_subdirs_if_empty=False,
                extra_valid=False,
                restart=False,
                source="master",
                description="client keys file database",
            ),
        )
        self.assertEqual(fileset.excluded_files, frozenset(["ar.conf", "ossec.conf"]))
        self.assertEqual(fileset.excluded_extensions, ("~", ".tmp", ".lock", ".swp"))
        self.assertTrue(fileset.isExcluded("x.swp"))

    def test_homeWithoutOverrides(self):
        """
        A home without C{etc/cluster.json} gets the shipped values.
        """
        home = NodeHome(FilePath(self.mktemp()))
        home.etc.makedirs()
        self.assertEqual(loadClusterItems(home), loadClusterItems())


class OverridesTests(SynchronousTestCase):
    """
    L{loadClusterItems} with C{etc/cluster.json} overrides.
    """

    def setUp(self):
        self.home = NodeHome(FilePath(self.mktemp()))
        self.home.etc.makedirs()
        self.path = self.home.clusterJsonOverrides.path

    def load(self, document):
        """
        Write C{document} (JSON-encoded unless text) as the overrides and
        load the items.
        """
        if not isinstance(document, str):
            document = json.dumps(document)
        self.home.clusterJsonOverrides.setContent(document.encode("utf-8"))
        return loadClusterItems(self.home)

    def assertRefused(self, document, detail, code=3004):
        """
        Loading C{document} fails with exactly C{detail}.
        """
        error = self.assertRaises(ConfigError, self.load, document)
        self.assertEqual((error.code, error.detail), (code, detail))

    def test_merge(self):
        """
        Overridden intervals replace the shipped ones; the others stay; ints
        and floats are interchangeable.
        """
        items = self.load(
            {
                "intervals": {
                    "worker": {"keep_alive": 0.5},
                    "master": {"hello_timeout": 2},
                }
            }
        )
        self.assertEqual(items.worker.keep_alive, 0.5)
        self.assertEqual(items.worker.sync_integrity, 9)
        self.assertEqual(items.master.hello_timeout, 2)
        self.assertEqual(items.raw["intervals"]["worker"]["keep_alive"], 0.5)
        self.assertEqual(items.communication.zip_limit_tolerance, 0.2)
        items = self.load({"intervals": {"communication": {"zip_limit_tolerance": 1}}})
        self.assertEqual(items.communication.zip_limit_tolerance, 1)

    def test_emptyOverrides(self):
        """
        An empty object changes nothing.
        """
        self.assertEqual(self.load({}), loadClusterItems())

    def test_unknownKey(self):
        """
        An unknown key is refused, named with its dotted path and the file.
        """
        self.assertRefused(
            {"intervals": {"worker": {"keep_alivee": 1}}},
            f"Unknown key 'intervals.worker.keep_alivee' in {self.path}",
        )
        self.assertRefused({"interval": {}}, f"Unknown key 'interval' in {self.path}")
        self.assertRefused(
            {"files": {"excluded": []}}, f"Unknown key 'files.excluded' in {self.path}"
        )

    def test_wrongType(self):
        """
        A value of another type than the shipped one is refused; booleans are
        not numbers.
        """
        self.assertRefused(
            {"intervals": {"worker": {"keep_alive": "60"}}},
            "Wrong type for 'intervals.worker.keep_alive': expected a number, "
            f"found a string in {self.path}",
        )
        self.assertRefused(
            {"intervals": {"worker": {"keep_alive": True}}},
            "Wrong type for 'intervals.worker.keep_alive': expected a number, "
            f"found a boolean in {self.path}",
        )
        self.assertRefused(
            {"intervals": {"worker": 5}},
            "Wrong type for 'intervals.worker': expected an object, "
            f"found a number in {self.path}",
        )
        self.assertRefused(
            {"distributed_api": {"enabled": "yes"}},
            "Wrong type for 'distributed_api.enabled': expected a boolean, "
            f"found a string in {self.path}",
        )
        self.assertRefused(
            {"files": {"excluded_files": ["a", 1]}},
            "Wrong type for 'files.excluded_files': expected a list of strings, "
            f"found a list in {self.path}",
        )

    def test_exclusionsReplaced(self):
        """
        Exclusion lists given in the overrides replace the shipped ones.
        """
        fileset = self.load({"files": {"excluded_extensions": [".bak"]}}).fileset
        self.assertEqual(fileset.excluded_extensions, (".bak",))

    def test_badJson(self):
        """
        Invalid JSON is refused with its line and column.
        """
        self.assertRefused(
            '{\n  "intervals": {\n    "worker" {}\n  }\n}',
            f"Invalid JSON in {self.path}: Expecting ':' delimiter "
            "(line 3, column 14)",
        )

    def test_badJsonValues(self):
        """
        NaN, duplicate keys, a top level that is not an object and bytes
        that are not UTF-8 are refused.
        """
        for document in [
            '{"intervals": {"worker": {"keep_alive": NaN}}}',
            '{"intervals": {}, "intervals": {}}',
            "[]",
        ]:
            error = self.assertRaises(ConfigError, self.load, document)
            self.assertIn(f"Invalid JSON in {self.path}: ", error.detail)
        self.home.clusterJsonOverrides.setContent(b"\xff")
        error = self.assertRaises(ConfigError, loadClusterItems, self.home)
        self.assertIn("not valid UTF-8", error.detail)

    def test_unreadable(self):
        """
        An overrides path that cannot be read (a directory) is a 3006 error.
        """
        self.home.clusterJsonOverrides.makedirs()
        error = self.assertRaises(ConfigError, loadClusterItems, self.home)
        self.assertEqual(error.code, 3006)
        self.assertIn(self.path, str(error))

    def test_nonPositiveInterval(self):
        """
        A period of zero or less is refused.
        """
        for value in [0, -1, -0.5]:
            self.assertRefused(
                {"intervals": {"master": {"recalculate_integrity": value}}},
                "Interval 'intervals.master.recalculate_integrity' is a period and "
                f"must be a positive number, found {value} in {self.path}",
            )

    def test_zeroDelayAndTimeout(self):
        """
        A delay or a timeout may be zero (none), as Wazuh accepts for
        C{agent_group_start_delay}; a negative one is refused.
        """
        items = self.load({"intervals": {"master": {"agent_group_start_delay": 0},
                                         "worker": {"timeout_agent_groups": 0}}})
        self.assertEqual(items.master.agent_group_start_delay, 0)
        self.assertEqual(items.worker.timeout_agent_groups, 0)
        self.assertRefused(
            {"intervals": {"master": {"agent_group_start_delay": -1}}},
            "Interval 'intervals.master.agent_group_start_delay' is a delay and "
            f"must be zero (none) or a positive number, found -1 in {self.path}",
        )

    def test_countsAndSizes(self):
        """
        Counts and sizes are whole numbers of at least one; the compression
        level lies in 0-9; the tolerance in (0, 1]; the smallest zip size is
        at most the largest.
        """
        cases = [
            ({"worker": {"max_failed_keepalive_attempts": 1.5}},
             "'intervals.worker.max_failed_keepalive_attempts' must be a whole number"),
            ({"master": {"max_connections_per_address": 0}},
             "'intervals.master.max_connections_per_address' must be at least 1"),
            ({"communication": {"compress_level": 10}},
             "'intervals.communication.compress_level' must be between 0 and 9"),
            ({"communication": {"zip_limit_tolerance": 0}},
             "'intervals.communication.zip_limit_tolerance' must be greater than 0"),
            ({"communication": {"min_zip_size": 2, "max_zip_size": 1}},
             "'intervals.communication.min_zip_size' must not be larger"),
        ]
        for intervals, detail in cases:
            error = self.assertRaises(ConfigError, self.load, {"intervals": intervals})
            self.assertIn(detail, error.detail)
        items = self.load({"intervals": {"worker": {"max_failed_keepalive_attempts": 3.0}}})
        self.assertEqual(items.worker.max_failed_keepalive_attempts, 3)
        self.assertIsInstance(items.worker.max_failed_keepalive_attempts, int)

    def test_changeItem(self):
        """
        Fields of an existing item can be changed; permissions may be an
        integer; the other fields are kept.
        """
        fileset = self.load(
            {"files": {"etc/rules/": {"permissions": 0o600, "recursive": False}}}
        ).fileset
        (item,) = [i for i in fileset.items if i.path == "etc/rules/"]
        self.assertEqual((item.permissions, item.recursive), (0o600, False))
        self.assertEqual(item.files, ("all",))
        self.assertEqual(item.description, "user rules")

    def test_newItem(self):
        """
        A new key ending in C{/} adds an item, in path order.
        """
        fileset = self.load(
            {
                "files": {
                    "etc/sca/": {
                        "permissions": "0o644",
                        "files": ["all"],
                        "recursive": True,
                        "remove_subdirs_if_empty": False,
                        "description": "policies",
                    }
                }
            }
        ).fileset
        self.assertEqual(
            [i.path for i in fileset.items][3:5], ["etc/rules/", "etc/sca/"]
        )
        item = fileset.items[4]
        self.assertEqual(
            (item.permissions, item.files, item.recursive, item.restart),
            (0o644, ("all",), True, False),
        )

    def test_newItemIncomplete(self):
        """
        A new item must give permissions, files, recursive and
        remove_subdirs_if_empty.
        """
        self.assertRefused(
            {"files": {"etc/sca/": {"files": ["all"], "recursive": True}}},
            "New item 'files.etc/sca/' lacks field(s) permissions, "
            f"remove_subdirs_if_empty in {self.path}",
        )

    def test_badItemFields(self):
        """
        Invalid item fields are refused, each naming the dotted key.
        """
        item = "files.etc/rules/"
        cases = [
            ({"permisions": "0o640"}, f"Unknown key '{item}.permisions'"),
            (
                {"permissions": "rw-r-----"},
                f"Invalid permissions for '{item}.permissions': expected a mode "
                'such as "0o640" (at most 0o777), found "rw-r-----"',
            ),
            (
                {"permissions": 0o4755},
                f"Invalid permissions for '{item}.permissions': expected a mode "
                'such as "0o640" (at most 0o777), found 2541',
            ),
            (
                {"permissions": True},
                f"Invalid permissions for '{item}.permissions': expected a mode "
                'such as "0o640" (at most 0o777), found true',
            ),
            (
                {"files": "all"},
                f"Wrong type for '{item}.files': expected a non-empty list of "
                'strings, found "all"',
            ),
            (
                {"files": []},
                f"Wrong type for '{item}.files': expected a non-empty list of "
                "strings, found []",
            ),
            ({"files": ["../x"]}, f"Invalid file name '../x' in '{item}.files'"),
            (
                {"recursive": "yes"},
                f"Wrong type for '{item}.recursive': expected a boolean, "
                "found a string",
            ),
            (
                {"description": 1},
                f"Wrong type for '{item}.description': expected a string, "
                "found a number",
            ),
            (
                {"source": "worker"},
                f"Invalid value for '{item}.source': only 'master' is supported",
            ),
            ({"files": {"a": 1}}, None),
        ]
        for fields, detail in cases:
            error = self.assertRaises(
                ConfigError, self.load, {"files": {"etc/rules/": fields}}
            )
            if detail is not None:
                self.assertEqual(error.detail, f"{detail} in {self.path}")
        self.assertRefused(
            {"files": {"etc/rules/": ["all"]}},
            "Wrong type for 'files.etc/rules/': expected an object, "
            f"found a list in {self.path}",
        )

    def test_badItemPaths(self):
        """
        Item paths must be relative, normalised, end in C{/} and never go
        up; a key without the final C{/} is an unknown key.
        """
        fields = {
            "permissions": "0o640",
            "files": ["all"],
            "recursive": False,
            "remove_subdirs_if_empty": False,
        }
        badPaths = ["/etc/", "../etc/", "etc/../x/", "etc//x/", "./etc/", "/"]
        badPaths.append("etc\\x/")
        for path in badPaths:
            self.assertRefused(
                {"files": {path: fields}},
                f"Invalid item path 'files.{path}': it must be a relative, "
                "normalised directory path ending in '/' without '..' "
                f"in {self.path}",
            )
        self.assertRefused(
            {"files": {"etc/sca": fields}},
            f"Unknown key 'files.etc/sca' in {self.path}",
        )

    def test_itemInsideRecursiveItem(self):
        """
        An item inside a recursive one is refused (a file would belong to
        two items); inside a non-recursive one it is fine.
        """
        fields = {
            "permissions": "0o640",
            "files": ["all"],
            "recursive": False,
            "remove_subdirs_if_empty": False,
        }
        self.assertRefused(
            {"files": {"etc/shared/default/": fields}},
            "Item 'files.etc/shared/default/' is inside recursive item "
            f"'files.etc/shared/' in {self.path}",
        )
        items = self.load({"files": {"etc/sca/": fields}})
        self.assertIn("etc/sca/", [i.path for i in items.fileset.items])

    def test_mergeClusterItemsDirect(self):
        """
        L{mergeClusterItems} merges a parsed document, naming C{origin} in
        errors.
        """
        self.assertEqual(mergeClusterItems({}), loadClusterItems())
        error = self.assertRaises(ConfigError, mergeClusterItems, {"x": 1}, "here")
        self.assertEqual(error.detail, "Unknown key 'x' in here")
