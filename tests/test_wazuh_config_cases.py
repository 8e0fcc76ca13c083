# -*- test-case-name: tests.test_wazuh_config_cases -*-
"""
The 53 C{<cluster>} blocks that Wazuh 4.14.7's own C{read_cluster_config} +
C{check_cluster_config} were run on (C{WAZUH-config-cases.md}): what
L{parseClusterConfig} answers to each, beside what Wazuh's daemon answered.

Each case says whether the project now does what Wazuh's daemon does
(C{SAME}), where Wazuh's answer is itself a hazard, what it does instead
and why (C{HAZARD}), or where this project's behaviour differs by design,
what changed (C{CHANGED}: several C{<node>}s are the master candidates).
"""

from twisted.trial.unittest import SynchronousTestCase

from wazuhcluster.errors import ConfigError
from wazuhcluster.ossecconf import parseClusterConfig

KEY = "0123456789abcdef0123456789abcdef"

BASE = [
    ("name", "wazuh"),
    ("node_name", "master"),
    ("node_type", "master"),
    ("key", KEY),
    ("port", "1516"),
    ("bind_addr", "0.0.0.0"),
    ("nodes", ["10.0.0.1"]),
    ("hidden", "no"),
    ("disabled", "no"),
]

SAME = "same as Wazuh's daemon"


def block(changes=None, drop=(), extra="", rename=None):
    """
    The base block with C{changes} (element -> value), C{drop}ped elements,
    C{extra} raw XML appended, and one element C{rename}d (C{(old, new)}).
    """
    changes = changes or {}
    parts = []
    for tag, value in BASE:
        if tag in drop:
            continue
        value = changes.get(tag, value)
        shown = rename[1] if rename and rename[0] == tag else tag
        if tag == "nodes":
            if value is None:
                parts.append("<nodes></nodes>")
            else:
                parts.append("<nodes>" + "".join(f"<node>{v}</node>" for v in value)
                             + "</nodes>")
        else:
            parts.append(f"<{shown}>{value}</{shown}>")
    return "<cluster>" + "".join(parts) + extra + "</cluster>"


def conf(*blocks):
    return ("<ossec_config><global><jsonout_output>yes</jsonout_output></global>"
            + "".join(blocks) + "</ossec_config>").encode("utf-8")


def ok(**expected):
    return ("ok", expected)


def error(detail, code=3004):
    return ("error", (code, detail))


DISABLED = ("disabled", None)

KEY_FORMAT = "Key must be 32 characters long and only have alphanumeric characters"
PORT_RANGE = "Port must be higher than 1024 and lower than 65535."
PORT_INT = "Cluster port must be an integer."

#: (number, case, ossec.conf, what we answer, Wazuh's daemon, decision)
CASES = [
    (0, "base (valid master, 1 node)", conf(block()), ok(node_type="master"), "OK", SAME),
    (1, "3 <node> entries", conf(block({"nodes": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]})),
     ok(nodes=("10.0.0.1", "10.0.0.2", "10.0.0.3"), warnings=()),
     "OK + warning 'Found more than one node in configuration. Only master node should "
     "be specified. Using 10.0.0.1 as master.'",
     "CHANGED: the same values, without the warning: every <node> is a master candidate, "
     "tried in order (masters in standby, DESIGN.md)"),
    (2, "<hidden>yes</hidden>", conf(block({"hidden": "yes"})), ok(hidden=True), "OK", SAME),
    (3, "<disabled> element absent", conf(block(drop=("disabled",))), ok(disabled=False),
     "OK", SAME),
    (4, "node_type worker", conf(block({"node_type": "worker", "node_name": "worker1"})),
     ok(node_type="worker"), "OK", SAME),
    (5, "node_type client (deprecated)",
     conf(block({"node_type": "client", "node_name": "worker1"})),
     ok(node_type="worker",
        warnings=("Deprecated node type 'client'. Using 'worker' instead.",)),
     "OK, worker + warning", SAME),
    (6, "node_type MASTER", conf(block({"node_type": "MASTER"})),
     error("Invalid node type MASTER. Correct values are master and worker"),
     "3004 Invalid node type MASTER", SAME),
    (7, "node_type with newline/indent", conf(block({"node_type": "\n    master\n  "})),
     error("Invalid node type \n    master\n  . Correct values are master and worker"),
     "3004 Invalid node type", SAME),
    (8, "port with spaces", conf(block({"port": " 1516 "})), error(PORT_INT),
     "3004 Cluster port must be an integer.", SAME),
    (9, "node with newline/indent", conf(block({"nodes": ["\n  10.0.0.1\n  "]})),
     ok(nodes=("10.0.0.1",)), "OK, keeps '\\n 10.0.0.1\\n ' as the address",
     "HAZARD: a padded address cannot be dialled; it is stripped"),
    (10, "key with surrounding spaces", conf(block({"key": f" {KEY} "})), error(KEY_FORMAT),
     "3004 Key must be 32 characters", SAME),
    (11, "name with trailing newline", conf(block({"name": "wazuh\n "})),
     error('Detected a not allowed character in cluster name: "wazuh\n ". Characters '
           "allowed: \"!\"#$%&'-.0123456789:<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"
           'abcdefghijklmnopqrstuvwxyz{|}~".'),
     "OK, name 'wazuh\\n '",
     "HAZARD: Wazuh's C daemons refuse it, and a name that differs only by "
     "whitespace splits the cluster (3030) invisibly; refused with the C parser's text"),
    (12, "key empty", conf(block({"key": ""})), error("Unspecified key"),
     "3004 Unspecified key", SAME),
    (13, "key 31 chars", conf(block({"key": KEY[:-1]})), error(KEY_FORMAT), "3004", SAME),
    (14, "key 33 chars", conf(block({"key": KEY + "0"})), error(KEY_FORMAT), "3004", SAME),
    (15, "key with '-'", conf(block({"key": KEY[:-1] + "-"})), error(KEY_FORMAT), "3004",
     SAME),
    (16, "key with '_'", conf(block({"key": KEY[:-1] + "_"})), ok(), "OK", SAME),
    (17, "key of 32 non-ASCII letters", conf(block({"key": "\u00e9" * 32})),
     error(KEY_FORMAT + " (ASCII letters, digits and '_': Wazuh turns the key into "
           "32 bytes)"),
     "OK",
     "HAZARD: Wazuh makes a 32-byte Fernet key of it and fails later with 64 bytes; "
     "refused at once"),
    (18, "node_type empty", conf(block({"node_type": ""})), ok(node_type="master"),
     "OK, master", SAME),
    (19, "node_type random", conf(block({"node_type": "random"})),
     error("Invalid node type random. Correct values are master and worker"), "3004",
     SAME),
    (20, "port abc", conf(block({"port": "abc"})), error(PORT_INT), "3004", SAME),
    (21, "port 1024", conf(block({"port": "1024"})), error(PORT_RANGE), "3004", SAME),
    (22, "port 1025", conf(block({"port": "1025"})), ok(port=1025), "OK", SAME),
    (23, "port 65534", conf(block({"port": "65534"})), ok(port=65534), "OK", SAME),
    (24, "port 65535", conf(block({"port": "65535"})), error(PORT_RANGE), "3004", SAME),
    (25, "port 70000", conf(block({"port": "70000"})), error(PORT_RANGE), "3004", SAME),
    (26, "port -1", conf(block({"port": "-1"})), error(PORT_INT), "3004", SAME),
    (27, "port 01516", conf(block({"port": "01516"})), ok(port=1516), "OK, 1516", SAME),
    (28, "port in Arabic-Indic digits", conf(block({"port": "\u0661\u0665\u0661\u0666"})),
     ok(port=1516), "OK, 1516", SAME),
    (29, "node NODE_IP", conf(block({"nodes": ["NODE_IP"]})),
     error("Invalid elements in node fields: NODE_IP."), "3004", SAME),
    (30, "node localhost", conf(block({"nodes": ["localhost"]})),
     error("Invalid elements in node fields: localhost."), "3004", SAME),
    (31, "node 127.0.1.1", conf(block({"nodes": ["127.0.1.1"]})),
     error("Invalid elements in node fields: 127.0.1.1."), "3004", SAME),
    (32, "nodes 10.0.0.1 + localhost", conf(block({"nodes": ["10.0.0.1", "localhost"]})),
     error("Invalid elements in node fields: localhost."), "3004 (+ warning)",
     "SAME error (the warning is gone with case 1's)"),
    (33, "empty <node></node>", conf(block({"nodes": [""]})),
     error("Invalid elements in node fields: NODE_IP."), "3004 NODE_IP", SAME),
    (34, "no <nodes> element", conf(block(drop=("nodes",))),
     error("Invalid elements in node fields: NODE_IP."), "3004 NODE_IP", SAME),
    (35, "disabled maybe", conf(block({"disabled": "maybe"})),
     error("Allowed values for 'disabled' field are 'yes' and 'no'. Found: 'maybe'"),
     "3004", SAME),
    (36, "disabled YES", conf(block({"disabled": "YES"})),
     error("Allowed values for 'disabled' field are 'yes' and 'no'. Found: 'YES'"),
     "3004", SAME),
    (37, "hidden maybe", conf(block({"hidden": "maybe"})),
     ok(hidden=False, warnings=("Invalid value for element 'hidden': 'maybe' (Wazuh's "
                                "other daemons refuse it); using 'no'.",)),
     "OK (never read)", "SAME, plus a warning: Wazuh's C daemons refuse it (1235)"),
    (38, "disabled yes + empty key + NODE_IP",
     conf(block({"disabled": "yes", "key": "", "nodes": ["NODE_IP"]})), DISABLED,
     "disabled, exit 0", SAME),
    (39, "unknown element <foo>", conf(block(extra="<foo>1</foo>")),
     ok(warnings=("Unknown element <foo> in <cluster> ignored (Wazuh's other daemons "
                  "refuse it: error 1230).",)),
     "OK (ignored)", "SAME, plus a warning: Wazuh's C daemons refuse it (1230)"),
    (40, "<interval>2m</interval>", conf(block(extra="<interval>2m</interval>")),
     ok(warnings=("Detected a deprecated configuration for cluster. Interval option "
                  "is not longer available.",)),
     "OK", "SAME, with the C parser's deprecation warning"),
    (41, "<socket_timeout>", conf(block(extra="<socket_timeout>60</socket_timeout>")),
     ok(warnings=()), "OK", SAME),
    (42, "uppercase tag <NODE_TYPE>",
     conf(block({"node_type": "worker", "node_name": "worker1"},
                rename=("node_type", "NODE_TYPE"))),
     ok(node_type="worker"), "OK, worker", SAME),
    (43, "name empty", conf(block({"name": ""})), ok(name="wazuh"), "OK, wazuh", SAME),
    (44, "node_name empty", conf(block({"node_name": ""})), ok(node_name="node01"),
     "OK, node01", SAME),
    (45, "node_name 'my node'", conf(block({"node_name": "my node"})),
     error('Detected a not allowed character in node name: "my node". Characters '
           'allowed: "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz".'),
     "OK",
     "HAZARD: Wazuh's C daemons refuse it and its masters refuse such a worker (3060); "
     "the name also names a directory"),
    (46, "node_name node.1", conf(block({"node_name": "node.1"})), ok(node_name="node.1"),
     "OK", "SAME for a master; a worker named so is refused (its master says 3060)"),
    (47, "node_name nodé", conf(block({"node_name": "nod\u00e9"})),
     error('Detected a not allowed character in node name: "nod\u00e9". Characters '
           'allowed: "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz".'),
     "OK", "HAZARD: Wazuh's C daemons refuse it; kept ASCII"),
    (48, "bind_addr not-an-ip", conf(block({"bind_addr": "not-an-ip"})),
     ok(bind_addr="not-an-ip"), "OK (fails when binding)",
     "SAME (the master then refuses to start: cannot listen)"),
    (49, "haproxy_helper block (disabled)",
     conf(block(extra="<haproxy_helper><haproxy_disabled>yes</haproxy_disabled>"
                      "</haproxy_helper>")),
     ok(warnings=("Ignoring <haproxy_helper>: the HAProxy helper is not supported by "
                  "wazuhcluster.",)),
     "OK", "SAME, with a warning: the helper is not built"),
    (50, "two <cluster> blocks (2nd: node_type worker only)",
     conf(block(), "<cluster><node_type>worker</node_type></cluster>"),
     error("Unspecified key"),
     "OK: node01, worker, warning 'There are multiple cluster sections...'",
     "SAME rule (last block only, same warning); its missing key then fails, as it "
     "does in Wazuh, whose read fills defaults the same way"),
    (51, "no <cluster> block", conf(), DISABLED, "disabled, exit 0", SAME),
    (52, "not well-formed (unclosed <port>)",
     b"<ossec_config><cluster><port>1516</cluster></ossec_config>",
     error("Error reading cluster configuration: mismatched tag (line 1, column 35)",
           3006),
     "3006 mismatched tag", SAME),
]


class WazuhConfigCasesTests(SynchronousTestCase):
    """
    Every measured case gives the answer recorded in L{CASES}.
    """

    def test_count(self):
        """
        All 53 cases are here, numbered 0 to 52.
        """
        self.assertEqual([case[0] for case in CASES], list(range(53)))

    def test_cases(self):
        """
        Each case parses to what L{CASES} says.
        """
        for number, name, content, (kind, expected), _, _ in CASES:
            if kind == "error":
                failure = self.assertRaises(ConfigError, parseClusterConfig, content)
                code, detail = expected
                self.assertEqual((failure.code, failure.detail), (code, detail),
                                 f"case {number}: {name}")
                continue
            config = parseClusterConfig(content)
            if kind == "disabled":
                self.assertTrue(config.disabled, f"case {number}: {name}")
                continue
            self.assertFalse(config.disabled, f"case {number}: {name}")
            for attribute, value in expected.items():
                self.assertEqual(getattr(config, attribute), value,
                                 f"case {number}: {name}: {attribute}")

    def test_twoBlocksUseTheLast(self):
        """
        Case 50 with a complete second block: only the last block counts,
        with Wazuh's warning.
        """
        second = block({"node_type": "worker", "node_name": "worker7"})
        config = parseClusterConfig(conf(block({"name": "first"}), second))
        self.assertEqual((config.node_type, config.node_name, config.name),
                         ("worker", "worker7", "wazuh"))
        self.assertEqual(config.warnings, (
            "There are multiple cluster sections in configuration. Using only last "
            "section.",))
