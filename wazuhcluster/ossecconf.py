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

This module reads the block and runs the checks of phases 2 and 3, which
are L{wazuhcluster.ossecchecks}.  Everything here is pure: no reactor, no
logging (warnings are returned).
"""

import re
import xml.etree.ElementTree as ElementTree

from attrs import field, frozen

from wazuhcluster.errors import ConfigError
from wazuhcluster.ossecchecks import checkNames, checkPhase

READ_ERROR = "Error reading cluster configuration"

DEFAULT_NAME = "wazuh"
DEFAULT_NODE_NAME = "node01"
DEFAULT_NODE_TYPE = "master"
DEFAULT_PORT = 1516
DEFAULT_BIND_ADDR = "0.0.0.0"
DEFAULT_NODES = ("NODE_IP",)

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
        checkPhase(fields, warnings)
    checkNames(fields)
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
