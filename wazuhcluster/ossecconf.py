# -*- test-case-name: tests.test_config,tests.test_wazuh_config_cases -*-
"""
The C{<cluster>} block of C{etc/ossec.conf}: read and validated the way
Wazuh 4.14.7's C{wazuh-clusterd} does it (C{read_cluster_config} then
C{check_cluster_config}, WAZUH.md section 1), with the original's error
texts.

Measured against that code on 53 variations of the block
(C{WAZUH-config-cases.md}, reproduced in C{tests/test_wazuh_config_cases}),
reading runs three phases:

  1. the read step: only the last C{<cluster>} block counts (with Wazuh's
     warning when there are several); element names are compared without
     case; an empty element counts as missing and takes its default; values
     are taken as written, surrounding whitespace included (C{" 1516 "} is
     not a port, C{" master "} not a node type); the port must be decimal
     digits; C{disabled} must be yes/no; node type C{client} becomes
     C{worker} with a warning;
  2. C{check_cluster_config}, first failure wins: key empty, key format,
     node type, port range, reserved node addresses.  Like
     C{wazuh-clusterd}, which exits before checking a disabled cluster,
     this phase is skipped when the cluster is disabled.  Where Wazuh warns
     that it uses only the first of several C{<node>}s, every C{<node>} is
     a master candidate here, tried in order (masters in standby), and
     there is no warning;
  3. where accepting what Wazuh accepts would hurt (the C{Hazards} of the
     module's tests), this project is stricter or louder: names are checked
     with the C parser's characters (Wazuh's other daemons refuse the rest),
     a worker's name must be one its master accepts in the hello, node
     addresses are stripped (a padded address cannot be dialled), the key
     must be ASCII (Wazuh turns it into a 32-byte Fernet key), and unknown
     elements or an odd C{hidden} are warnings rather than silently kept.

Everything here is pure: no reactor, no logging (warnings are returned).
"""

import re
import xml.etree.ElementTree as ElementTree

from attrs import asdict, field, frozen

from wazuhcluster.errors import ConfigError

READ_ERROR = "Error reading cluster configuration"

DEFAULT_NAME = "wazuh"
DEFAULT_NODE_NAME = "node01"
DEFAULT_NODE_TYPE = "master"
DEFAULT_PORT = 1516
DEFAULT_BIND_ADDR = "0.0.0.0"
DEFAULT_NODES = ("NODE_IP",)

RESERVED_NODE_ADDRESSES = ("localhost", "NODE_IP", "0.0.0.0", "127.0.1.1")

# The C parser's C_VALID set (src/config/cluster-config.c), used for the
# cluster name.
CLUSTER_NAME_CHARS = (
    "!\"#$%&'-.0123456789:<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"
    "abcdefghijklmnopqrstuvwxyz{|}~"
)
# Node names also name directories (queue/cluster/<name>/) and appear in log
# tags, so they are restricted to letters, digits, '_', '-' and '.' (never
# "." or ".." alone).
NODE_NAME_CHARS = (
    "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
_NODE_NAME_SET = frozenset(NODE_NAME_CHARS)
#: The longest node name a peer may give (a path component stays well under
#: NAME_MAX).
MAX_NODE_NAME = 128
# What a master accepts as a worker's name in the hello (Wazuh 4.14.7,
# error 3060).
WORKER_NAME = re.compile(r"[A-Za-z0-9_-]+")

KEY_PATTERN = re.compile(r"\w{32}")
ASCII_KEY_PATTERN = re.compile(r"\w{32}", re.ASCII)

CLUSTER_ELEMENTS = (
    "name",
    "node_name",
    "node_type",
    "key",
    "port",
    "bind_addr",
    "nodes",
    "hidden",
    "disabled",
)
IGNORED_ELEMENTS = ("socket_timeout", "connection_timeout")
MULTIPLE_BLOCKS_WARNING = (
    "There are multiple cluster sections in configuration. Using only last section."
)
DEPRECATED_INTERVAL_WARNING = (
    "Detected a deprecated configuration for cluster. "
    "Interval option is not longer available."
)
HAPROXY_WARNING = (
    "Ignoring <haproxy_helper>: the HAProxy helper is not supported by "
    "wazuhcluster."
)

XML_DECLARATION = re.compile(r"<\?xml[^>]*\?>")
XML_COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt|apos|quot|#[0-9]+|#x[0-9a-fA-F]+);)")


@frozen
class ClusterConfig:
    """
    The validated C{<cluster>} block of one node.

    @ivar nodes: the C{<nodes><node>} values: the addresses of the master
        candidates, which workers dial in this order (one master: its
        address, which it reports as its C{ip}).
    @ivar warnings: non-fatal remarks made while reading (deprecated node type
        C{client}, an unknown element...), for the caller to log.
    """

    name: str
    node_name: str
    node_type: str
    key: str
    port: int
    bind_addr: str
    nodes: tuple
    hidden: bool = False
    disabled: bool = False
    warnings: tuple = field(default=(), eq=False)

    @property
    def masterHost(self):
        """
        The address of the first master candidate (C{nodes[0]}).
        """
        return self.nodes[0]


def readError(detail, origin=None):
    """
    A 3006 error: the configuration could not be read at all.

    @param origin: the file concerned, named in the text when given.
    """
    where = f"{origin}: " if origin else ""
    return ConfigError(f"{READ_ERROR}: {where}{detail}", code=3006)


def decodeText(xmlBytes, origin=None):
    """
    Decode an ossec.conf as UTF-8 (a byte-order mark is dropped).
    """
    if isinstance(xmlBytes, str):
        return xmlBytes
    try:
        return xmlBytes.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise readError(f"not valid UTF-8 ({e.reason} at byte {e.start})", origin)


def _cleanComment(match):
    """
    Replace C{--} inside a comment, which XML forbids but ossec.conf files
    contain (as Wazuh's own loader does).
    """
    return "<!--" + match.group(1).replace("--", "..") + "-->"


_ROOT_OPEN = "<root_tag>"


def _parseRoot(text, origin):
    """
    Parse the text of an ossec.conf, which may hold several
    C{<ossec_config>} roots, inside a synthetic root element.

    @raise ConfigError: (3006) the text is not well-formed.
    """
    text = XML_DECLARATION.sub("", text)
    text = XML_COMMENT.sub(_cleanComment, text)
    text = BARE_AMPERSAND.sub("&amp;", text)
    try:
        return ElementTree.fromstring(f"{_ROOT_OPEN}{text}</root_tag>")
    except ElementTree.ParseError as e:
        line, column = e.position
        if line == 1:
            column -= len(_ROOT_OPEN)
        reason = str(e).split(":")[0]
        raise readError(f"{reason} (line {line}, column {column})", origin)


def parseOssecConf(xmlBytes, origin=None):
    """
    Parse a whole ossec.conf (several C{<ossec_config>} sections allowed,
    tolerated as Wazuh tolerates them) into one element whose children are
    its C{<ossec_config>} sections, for readers of other sections.

    @raise ConfigError: 3006 when the text is not well-formed UTF-8 XML.
    """
    return _parseRoot(decodeText(xmlBytes, origin), origin)


def _clusterBlocks(root):
    return [
        cluster
        for section in root.findall("ossec_config")
        for cluster in section.findall("cluster")
    ]


def _nodesValue(element):
    """
    The non-empty C{<node>} values of a C{<nodes>} element, stripped (Wazuh
    keeps the whitespace, and then cannot dial the address).
    """
    values = ((child.text or "").strip() for child in element
              if child.tag.lower() == "node")
    return tuple(value for value in values if value)


def _collectBlock(root, warnings):
    """
    The raw values of the last C{<ossec_config><cluster>} block.

    @return: L{None} if there is no C{<cluster>} block, else a tuple
        C{(values, others)}: a dict of element name to text (or tuple for
        C{nodes}), empty elements left out, and the names of the other
        elements met, in order.
    """
    blocks = _clusterBlocks(root)
    if not blocks:
        return None
    if len(blocks) > 1:
        warnings.append(MULTIPLE_BLOCKS_WARNING)
    values = {}
    others = []
    for child in blocks[-1]:
        tag = child.tag.lower()
        if tag == "nodes":
            nodes = _nodesValue(child)
            if nodes:
                values["nodes"] = nodes
        elif tag in CLUSTER_ELEMENTS:
            if child.text:
                values[tag] = child.text
        else:
            others.append(tag)
    return values, others


def _yesNo(fieldName, value):
    """
    Convert a C{yes}/C{no} value.

    @raise ConfigError: any other value.
    """
    if value == "yes":
        return True
    if value == "no":
        return False
    raise ConfigError(
        f"Allowed values for '{fieldName}' field are 'yes' and 'no'. "
        f"Found: '{value}'"
    )


def _port(value):
    """
    The port of the read step: decimal digits (any script, as Python's
    C{str.isdigit} and C{int}), whitespace not allowed.
    """
    if not value.isdigit():
        raise ConfigError("Cluster port must be an integer.")
    try:
        return int(value)
    except ValueError:
        raise ConfigError("Cluster port must be an integer.") from None


def _hidden(value, warnings):
    """
    C{hidden}: Wazuh's cluster daemon never reads it; Wazuh's C daemons
    refuse anything but yes/no.
    """
    if value in ("yes", "no"):
        return value == "yes"
    warnings.append(
        f"Invalid value for element 'hidden': {value!r} (Wazuh's other daemons "
        "refuse it); using 'no'."
    )
    return False


def _readPhase(values, warnings):
    """
    The read step of the original (C{read_cluster_config}): defaults per
    missing key and value conversions.

    @return: a dict of the converted values, one per L{ClusterConfig} field.
    """
    port = _port(values.get("port", str(DEFAULT_PORT)))
    disabled = _yesNo("disabled", values.get("disabled", "no"))
    hidden = _hidden(values.get("hidden", "no"), warnings)
    nodeType = values.get("node_type", DEFAULT_NODE_TYPE)
    if nodeType == "client":
        warnings.append("Deprecated node type 'client'. Using 'worker' instead.")
        nodeType = "worker"
    return dict(
        name=values.get("name", DEFAULT_NAME),
        node_name=values.get("node_name", DEFAULT_NODE_NAME),
        node_type=nodeType,
        key=values.get("key", ""),
        port=port,
        bind_addr=values.get("bind_addr", DEFAULT_BIND_ADDR),
        nodes=values.get("nodes", DEFAULT_NODES),
        hidden=hidden,
        disabled=disabled,
    )


def _checkPhase(fields, warnings):
    """
    The checks of the original's C{check_cluster_config}, in its order; the
    first failure wins.

    @param fields: the values of the read phase, keyed like L{ClusterConfig}.
    @param warnings: a list the non-fatal remarks are appended to.
    @raise ConfigError: (3004) the first failed check.
    """
    key = fields["key"]
    if not key:
        raise ConfigError("Unspecified key")
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            "Key must be 32 characters long and only have alphanumeric characters"
        )
    if not ASCII_KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            "Key must be 32 characters long and only have alphanumeric characters "
            "(ASCII letters, digits and '_': Wazuh turns the key into 32 bytes)"
        )
    if fields["node_type"] not in ("master", "worker"):
        raise ConfigError(
            f"Invalid node type {fields['node_type']}. "
            "Correct values are master and worker"
        )
    if not 1024 < fields["port"] < 65535:
        raise ConfigError("Port must be higher than 1024 and lower than 65535.")
    nodes = fields["nodes"]
    invalid = [node for node in nodes if node in RESERVED_NODE_ADDRESSES]
    if invalid:
        raise ConfigError(f"Invalid elements in node fields: {', '.join(invalid)}.")


def isNodeName(name):
    """
    Whether a name a peer gives for itself may name a node: the
    configuration's node name rule (letters, digits, C{_}, C{-} and C{.},
    never C{.} or C{..} alone), at most L{MAX_NODE_NAME} characters.  It
    names a directory (C{queue/cluster/<name>/}), so a peer's name is
    checked with this before it touches any path.
    """
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NODE_NAME
        and not set(name) - _NODE_NAME_SET
        and name not in (".", "..")
    )


def _checkAllowed(what, value, allowed, forbidden=()):
    """
    The C parser's name rule: C{value} is not empty and uses only characters
    of C{allowed}; it is none of C{forbidden} either.  (An empty element of
    the file takes its default before this: only a configuration built in
    code can be empty here.)
    """
    if not value:
        raise ConfigError(f"{what.capitalize()} is empty in configuration")
    if set(value) - set(allowed) or value in forbidden:
        raise ConfigError(
            f'Detected a not allowed character in {what}: "{value}". '
            f'Characters allowed: "{allowed}".'
        )


def _checkNames(fields):
    """
    The name rules: the C parser's characters for the cluster name, ours for
    the node name (it names a directory), and for a worker the rule its
    master applies in the hello.
    """
    _checkAllowed("cluster name", fields["name"], CLUSTER_NAME_CHARS)
    _checkAllowed(
        "node name", fields["node_name"], NODE_NAME_CHARS, forbidden=(".", "..")
    )
    if fields["node_type"] == "worker" and not WORKER_NAME.fullmatch(fields["node_name"]):
        raise ConfigError(
            f"Invalid node name format: {fields['node_name']!r}: a master accepts "
            "only letters, digits, '_' and '-' in a worker's name (error 3060)"
        )


def _otherElements(others, warnings):
    """
    Elements outside Wazuh's list: known deprecated ones are noted, the rest
    ignored with a warning (Wazuh's cluster daemon ignores them silently;
    its C daemons refuse them).
    """
    for tag in others:
        if tag == "interval":
            warnings.append(DEPRECATED_INTERVAL_WARNING)
        elif tag == "haproxy_helper":
            warnings.append(HAPROXY_WARNING)
        elif tag not in IGNORED_ELEMENTS:
            warnings.append(
                f"Unknown element <{tag}> in <cluster> ignored (Wazuh's other "
                "daemons refuse it: error 1230)."
            )


def checkClusterConfig(config):
    """
    Run the original's C{check_cluster_config} checks, then the name rules,
    on C{config}, even if it is disabled (L{parseClusterConfig} skips the
    former for a disabled cluster, like C{wazuh-clusterd}, which exits
    before checking).  Use it on a configuration built in code.

    @type config: L{ClusterConfig}
    @return: the warnings of the checks (a tuple of strings).
    @raise ConfigError: (3004) the first failed check.
    """
    fields = asdict(config)
    warnings = []
    _checkPhase(fields, warnings)
    _checkNames(fields)
    return tuple(warnings)


def defaultClusterConfig():
    """
    The configuration of a node whose ossec.conf has no C{<cluster>} block:
    the defaults, disabled.
    """
    return ClusterConfig(
        name=DEFAULT_NAME,
        node_name=DEFAULT_NODE_NAME,
        node_type=DEFAULT_NODE_TYPE,
        key="",
        port=DEFAULT_PORT,
        bind_addr=DEFAULT_BIND_ADDR,
        nodes=DEFAULT_NODES,
        hidden=False,
        disabled=True,
    )


def parseClusterConfig(xmlBytes, origin=None):
    """
    Read and validate the C{<cluster>} block of an ossec.conf.

    @param xmlBytes: the content of the file (C{bytes}, UTF-8, or C{str}).
    @param origin: the file it was read from, named in 3006 errors.
    @return: a L{ClusterConfig}; the default one, disabled, when the file has
        no C{<cluster>} block.
    @raise ConfigError: 3006 when the text is not well-formed XML; 3004 with
        the original's text when a value is invalid.
    """
    root = _parseRoot(decodeText(xmlBytes, origin), origin)
    warnings = []
    block = _collectBlock(root, warnings)
    if block is None:
        return defaultClusterConfig()
    values, others = block
    fields = _readPhase(values, warnings)
    if not fields["disabled"]:
        _checkPhase(fields, warnings)
    _checkNames(fields)
    _otherElements(others, warnings)
    return ClusterConfig(warnings=tuple(warnings), **fields)


def hasClusterBlock(xmlBytes):
    """
    Whether an ossec.conf has a C{<ossec_config><cluster>} block.

    @raise ConfigError: 3006 when the text is not well-formed XML.
    """
    return bool(_clusterBlocks(_parseRoot(decodeText(xmlBytes), None)))


def readClusterConfig(home):
    """
    Read and validate the C{<cluster>} block of a node's C{etc/ossec.conf}.

    @param home: a L{wazuhcluster.home.NodeHome}.
    @raise ConfigError: 3006 when the file is missing or unreadable, else as
        L{parseClusterConfig}.
    """
    path = home.ossecConf.path
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        raise readError(f"cannot read it ({e.strerror or e})", path)
    return parseClusterConfig(content, path)
