# -*- test-case-name: tests.test_config -*-
"""
Configuration: the C{<cluster>} block of C{etc/ossec.conf} (validated with the
original's rules and error texts, WAZUH.md section 1) and the cluster items:
the shipped C{wazuhcluster/cluster.json} with C{etc/cluster.json} overrides
merged over it (intervals and the synced file set, WAZUH.md section 2).

Reading the C{<cluster>} block runs three phases, like the original:

  1. the read step of Python's C{read_cluster_config}: defaults per missing
     key, port must be digits, C{disabled} (and C{hidden}) must be yes/no,
     node type C{client} becomes C{worker} with a warning;
  2. Python's C{check_cluster_config}, first failure wins: key empty, key
     format, node type, port range, more than one node (a warning), reserved
     node addresses.  Like C{wazuh-clusterd}, which exits before checking a
     disabled cluster, this phase is skipped when the cluster is disabled;
  3. the C parser's rules: cluster name and node name not empty and made of
     allowed characters, no unknown element in the block.

Everything here is pure: no reactor, no logging (warnings are returned).
"""

import json
import math
import posixpath
import re
import xml.etree.ElementTree as ElementTree
from importlib import resources
from xml.sax.saxutils import escape

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
# tags, so they are restricted to what the master accepts in a hello
# ([A-Za-z0-9_-]+, error 3060): a name the master would refuse is refused
# here already.
NODE_NAME_CHARS = (
    "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)

KEY_PATTERN = re.compile(r"\w{32}", re.ASCII)
PORT_PATTERN = re.compile(r"[0-9]+")

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

    @ivar nodes: the C{<nodes><node>} values; only C{nodes[0]} is used: the
        master address workers dial (and the C{ip} the master reports).
    @ivar warnings: non-fatal remarks made while reading (deprecated node type
        C{client}, more than one node...), for the caller to log.
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
        The address of the master (C{nodes[0]}).
        """
        return self.nodes[0]


@frozen
class FileItem:
    """
    One synced item of the C{files} section of cluster.json.

    @ivar path: the item key, a directory relative to the home ending in C{/}
        (e.g. C{etc/shared/}).
    @ivar permissions: the mode applied to every file of the item.
    @ivar files: C{("all",)} or the exact basenames to sync.
    """

    path: str
    permissions: int
    files: tuple
    recursive: bool
    remove_subdirs_if_empty: bool
    extra_valid: bool = False
    restart: bool = False
    source: str = "master"
    description: str = ""

    def matchesName(self, basename):
        """
        Whether the item's file rule admits a file called C{basename}.
        """
        return "all" in self.files or basename in self.files


@frozen
class FileSet:
    """
    The whole synced file set: items plus exclusions.
    """

    items: tuple
    excluded_files: frozenset
    excluded_extensions: tuple

    def isExcluded(self, basename):
        """
        Whether a file called C{basename} is never synced.
        """
        return basename in self.excluded_files or basename.endswith(
            self.excluded_extensions
        )


@frozen
class ClusterItems:
    """
    The effective cluster.json: intervals by section and the file set.

    @ivar worker: C{intervals.worker} as a dict of numbers.
    @ivar master: C{intervals.master} as a dict of numbers.
    @ivar communication: C{intervals.communication} as a dict of numbers.
    @ivar fileset: the L{FileSet}.
    @ivar raw: the merged JSON document (for C{check-config}).
    """

    worker: dict
    master: dict
    communication: dict
    fileset: FileSet
    raw: dict = field(eq=False, repr=False)


# ---------------------------------------------------------------------------
# ossec.conf: reading


def _readError(detail, origin=None):
    """
    A 3006 error: the configuration could not be read at all.

    @param origin: the file concerned, named in the text when given.
    """
    where = f"{origin}: " if origin else ""
    return ConfigError(f"{READ_ERROR}: {where}{detail}", code=3006)


def _decode(xmlBytes, origin):
    """
    Decode an ossec.conf as UTF-8 (a byte-order mark is dropped).
    """
    if isinstance(xmlBytes, str):
        return xmlBytes
    try:
        return xmlBytes.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _readError(f"not valid UTF-8 ({e.reason} at byte {e.start})", origin)


def _cleanComment(match):
    """
    Replace C{--} inside a comment, which XML forbids but ossec.conf files
    contain (as Wazuh's own loader does).
    """
    return "<!--" + match.group(1).replace("--", "..") + "-->"


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
        return ElementTree.fromstring(f"<root_tag>{text}</root_tag>")
    except ElementTree.ParseError as e:
        line, column = e.position
        reason = str(e).split(":")[0]
        raise _readError(f"{reason} (line {line}, column {column})", origin)


def _elementText(element):
    """
    The stripped text content of C{element} (C{""} when empty).
    """
    return (element.text or "").strip()


def _nodesValue(element):
    """
    The non-empty C{<node>} values of a C{<nodes>} element.
    """
    values = (_elementText(child) for child in element if child.tag == "node")
    return tuple(value for value in values if value)


def _collectBlock(root):
    """
    Gather the raw values of every C{<ossec_config><cluster>} block; later
    values win.

    @return: C{None} if there is no C{<cluster>} block, else a tuple
        C{(values, others)}: a dict of element name to text (or tuple for
        C{nodes}) and the names of the other elements met, in order.
    """
    blocks = [
        cluster
        for section in root.findall("ossec_config")
        for cluster in section.findall("cluster")
    ]
    if not blocks:
        return None
    values = {}
    others = []
    for block in blocks:
        for child in block:
            if child.tag == "nodes":
                nodes = _nodesValue(child)
                if nodes:
                    values["nodes"] = nodes
            elif child.tag in CLUSTER_ELEMENTS:
                values[child.tag] = _elementText(child)
            else:
                others.append(child.tag)
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


def _readPhase(values, warnings):
    """
    The read step of the original (C{read_cluster_config}): defaults per
    missing key and value conversions.

    @return: a dict of the converted values, one per L{ClusterConfig} field.
    """
    port = values.get("port", str(DEFAULT_PORT))
    if not PORT_PATTERN.fullmatch(port):
        raise ConfigError("Cluster port must be an integer.")
    disabled = _yesNo("disabled", values.get("disabled", "no"))
    hidden = _yesNo("hidden", values.get("hidden", "no"))
    nodeType = values.get("node_type", DEFAULT_NODE_TYPE)
    if nodeType == "client":
        warnings.append("Deprecated node type 'client'. Using 'worker' instead.")
        nodeType = "worker"
    return dict(
        name=values.get("name", DEFAULT_NAME),
        node_name=values.get("node_name", DEFAULT_NODE_NAME),
        node_type=nodeType,
        key=values.get("key", ""),
        port=int(port),
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
    if fields["node_type"] not in ("master", "worker"):
        raise ConfigError(
            f"Invalid node type {fields['node_type']}. "
            "Correct values are master and worker"
        )
    if not 1024 < fields["port"] < 65535:
        raise ConfigError("Port must be higher than 1024 and lower than 65535.")
    nodes = fields["nodes"]
    if len(nodes) > 1:
        warnings.append(
            "Found more than one node in configuration. Only master node "
            f"should be specified. Using {nodes[0]} as master."
        )
    invalid = [node for node in nodes if node in RESERVED_NODE_ADDRESSES]
    if invalid:
        raise ConfigError(f"Invalid elements in node fields: {', '.join(invalid)}.")


def _checkAllowed(what, value, allowed, forbidden=()):
    """
    The C parser's name rule: C{value} is not empty and uses only characters
    of C{allowed}; it is none of C{forbidden} either.
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
    The C parser's name rules for the cluster name and the node name.
    """
    _checkAllowed("cluster name", fields["name"], CLUSTER_NAME_CHARS)
    _checkAllowed(
        "node name", fields["node_name"], NODE_NAME_CHARS, forbidden=(".", "..")
    )


def _cParserPhase(fields, others, warnings):
    """
    The C parser's rules: names, then unknown elements.
    """
    _checkNames(fields)
    for tag in others:
        if tag == "interval":
            warnings.append(DEPRECATED_INTERVAL_WARNING)
        elif tag == "haproxy_helper":
            warnings.append(HAPROXY_WARNING)
        elif tag not in IGNORED_ELEMENTS:
            raise ConfigError(f"Invalid element in the configuration: '{tag}'.")


def checkClusterConfig(config):
    """
    Run the original's C{check_cluster_config} checks, then the C parser's
    name rules, on C{config}, even if it is disabled (L{parseClusterConfig}
    skips the former for a disabled cluster, like C{wazuh-clusterd}, which
    exits before checking).  Use it on a configuration built in code.

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
    root = _parseRoot(_decode(xmlBytes, origin), origin)
    block = _collectBlock(root)
    if block is None:
        return defaultClusterConfig()
    values, others = block
    warnings = []
    fields = _readPhase(values, warnings)
    if not fields["disabled"]:
        _checkPhase(fields, warnings)
    _cParserPhase(fields, others, warnings)
    return ClusterConfig(warnings=tuple(warnings), **fields)


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
        raise _readError(f"cannot read it ({e.strerror or e})", path)
    return parseClusterConfig(content, path)


# ---------------------------------------------------------------------------
# ossec.conf: writing


def _yesNoText(flag):
    return "yes" if flag else "no"


def _clusterBlockLines(config, indent):
    """
    The lines of a C{<cluster>} element holding C{config}, each starting
    with C{indent}.
    """
    simple = [
        ("name", config.name),
        ("node_name", config.node_name),
        ("node_type", config.node_type),
        ("key", config.key),
        ("port", str(config.port)),
        ("bind_addr", config.bind_addr),
    ]
    lines = ["<cluster>"]
    lines.extend(f"  <{tag}>{escape(value)}</{tag}>" for tag, value in simple)
    lines.append("  <nodes>")
    lines.extend(f"    <node>{escape(node)}</node>" for node in config.nodes)
    lines.append("  </nodes>")
    lines.append(f"  <hidden>{_yesNoText(config.hidden)}</hidden>")
    lines.append(f"  <disabled>{_yesNoText(config.disabled)}</disabled>")
    lines.append("</cluster>")
    return [indent + line for line in lines]


def renderOssecConf(config):
    """
    Write a complete ossec.conf holding C{config} as its C{<cluster>} block,
    with Wazuh's element names, pretty-printed.

    @type config: L{ClusterConfig}
    @rtype: C{bytes} (UTF-8)
    """
    lines = ["<ossec_config>", *_clusterBlockLines(config, "  "), "</ossec_config>", ""]
    return "\n".join(lines).encode("utf-8")


CLUSTER_ELEMENT = re.compile(r"<cluster\b[^>]*?(?:/>|>.*?</cluster\s*>)", re.DOTALL)
OSSEC_CONFIG_END = re.compile(r"</ossec_config\s*>")


def _outsideComments(pattern, text):
    """
    The matches of C{pattern} in C{text} that do not start inside an XML
    comment.
    """
    comments = [m.span() for m in XML_COMMENT.finditer(text)]
    return [
        m for m in pattern.finditer(text)
        if not any(start <= m.start() < end for start, end in comments)
    ]


def hasClusterBlock(xmlBytes):
    """
    Whether an ossec.conf has a C{<ossec_config><cluster>} block.

    @raise ConfigError: 3006 when the text is not well-formed XML.
    """
    return _collectBlock(_parseRoot(_decode(xmlBytes, None), None)) is not None


def spliceClusterBlock(xmlBytes, config):
    """
    Put C{config} into an existing ossec.conf as its only C{<cluster>}
    block, keeping everything else (other sections, comments, layout) as it
    was: the first C{<cluster>} element is replaced in place and any later
    one removed; a file without one gets it before its last
    C{</ossec_config>}.

    @param xmlBytes: the current content (C{bytes}, UTF-8).
    @type config: L{ClusterConfig}
    @rtype: C{bytes} (UTF-8)
    @raise ConfigError: 3006 when the current content cannot be read, or the
        result would not read back as C{config}.
    """
    text = _decode(xmlBytes, None)
    blocks = _outsideComments(CLUSTER_ELEMENT, text)
    if blocks:
        first = blocks[0]
        lineStart = text.rfind("\n", 0, first.start()) + 1
        indent = text[lineStart:first.start()]
        if indent.strip():
            indent = "  "
        block = "\n".join(_clusterBlockLines(config, indent))[len(indent):]
        pieces, position = [], 0
        for number, match in enumerate(blocks):
            pieces.append(text[position:match.start()])
            if number == 0:
                pieces.append(block)
            position = match.end()
        pieces.append(text[position:])
        result = "".join(pieces)
    else:
        ends = _outsideComments(OSSEC_CONFIG_END, text)
        if ends:
            end = ends[-1].start()
            before = text[:end]
            if not before.endswith("\n"):
                before += "\n"
            block = "\n".join(_clusterBlockLines(config, "  ")) + "\n"
            result = before + block + text[end:]
        else:
            separator = "" if not text or text.endswith("\n") else "\n"
            result = text + separator + renderOssecConf(config).decode("utf-8")
    content = result.encode("utf-8")
    if parseClusterConfig(content) != config:
        raise _readError("its <cluster> block could not be replaced; edit it by hand", None)
    return content


# ---------------------------------------------------------------------------
# cluster.json

ITEM_REQUIRED_FIELDS = ("permissions", "files", "recursive", "remove_subdirs_if_empty")
ITEM_BOOLEAN_FIELDS = ("recursive", "remove_subdirs_if_empty", "extra_valid", "restart")
ITEM_STRING_FIELDS = ("source", "description")
ITEM_FIELDS = ITEM_REQUIRED_FIELDS + ("extra_valid", "restart", "source", "description")
MAX_PERMISSIONS = 0o777


class _Overrides:
    """
    Validation context for one overrides file: where errors point.

    @ivar origin: the path of the overrides file, named in every error.
    """

    def __init__(self, origin):
        self.origin = origin

    def error(self, text):
        """
        A 3004 error naming the overrides file.
        """
        return ConfigError(f"{text} in {self.origin}")

    def wrongType(self, dotted, expected, value):
        """
        A 3004 error: C{value} given for C{dotted} is not of the C{expected}
        type.
        """
        return self.error(
            f"Wrong type for '{dotted}': expected {expected}, "
            f"found {_typeName(value)}"
        )


def _rejectConstant(name):
    """
    JSON C{NaN}/C{Infinity} are not numbers here.
    """
    raise ValueError(f"{name} is not allowed")


def _rejectDuplicates(pairs):
    """
    Build a JSON object, refusing repeated keys.
    """
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"Duplicate key '{key}'")
        result[key] = value
    return result


def _loadJson(text, origin):
    """
    Parse a JSON document, with line and column in the error.

    @raise ConfigError: the text is not valid JSON.
    """
    try:
        return json.loads(
            text,
            parse_constant=_rejectConstant,
            object_pairs_hook=_rejectDuplicates,
        )
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"Invalid JSON in {origin}: {e.msg} (line {e.lineno}, column {e.colno})"
        )
    except ValueError as e:
        raise ConfigError(f"Invalid JSON in {origin}: {e}")


def _shippedDocument():
    """
    The shipped C{wazuhcluster/cluster.json}, parsed.
    """
    source = resources.files("wazuhcluster").joinpath("cluster.json")
    return _loadJson(source.read_text(encoding="utf-8"), "wazuhcluster/cluster.json")


def _readOverrides(path):
    """
    Read and parse an overrides file.

    @param path: a L{FilePath}.
    @raise ConfigError: 3006 if unreadable, 3004 if not a JSON object.
    """
    try:
        content = path.getContent()
    except OSError as e:
        raise _readError(f"cannot read it ({e.strerror or e})", path.path)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"Invalid JSON in {path.path}: not valid UTF-8 ({e.reason})"
        )
    document = _loadJson(text, path.path)
    if not isinstance(document, dict):
        raise ConfigError(
            f"Invalid JSON in {path.path}: the top level must be an object"
        )
    return document


def _isNumber(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _isStringList(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _typeName(value):
    """
    The JSON name of the type of C{value}, for error texts.
    """
    if isinstance(value, bool):
        return "a boolean"
    if _isNumber(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _sameType(default, value):
    """
    Whether an override C{value} may replace C{default}: numbers for numbers,
    lists of strings for lists, else the same JSON type.
    """
    if _isNumber(default):
        return _isNumber(value)
    if isinstance(default, list):
        return _isStringList(value)
    return type(default) is type(value)


def _expected(default):
    """
    The description of the type an override of C{default} must have.
    """
    if isinstance(default, list):
        return "a list of strings"
    return _typeName(default)


def _merge(base, override, dotted, ctx):
    """
    Deep-merge C{override} over C{base} (both JSON objects), refusing unknown
    keys and changed types.  The C{files} object is merged by L{_mergeFiles}.

    @param dotted: the dotted key of C{base} (C{""} at the top).
    @return: a new merged dict.
    """
    merged = dict(base)
    for key, value in override.items():
        name = f"{dotted}{key}"
        if name == "files":
            if not isinstance(value, dict):
                raise ctx.wrongType("files", "an object", value)
            merged[key] = _mergeFiles(base[key], value, ctx)
        elif key not in base:
            raise ctx.error(f"Unknown key '{name}'")
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ctx.wrongType(name, "an object", value)
            merged[key] = _merge(base[key], value, name + ".", ctx)
        elif not _sameType(base[key], value):
            raise ctx.wrongType(name, _expected(base[key]), value)
        else:
            merged[key] = value
    return merged


def _mergeFiles(base, override, ctx):
    """
    Merge the C{files} section: exclusion lists are replaced, existing items
    get their fields changed, keys ending in C{/} add new items.
    """
    merged = dict(base)
    for key, value in override.items():
        name = f"files.{key}"
        if key in ("excluded_files", "excluded_extensions"):
            if not _isStringList(value):
                raise ctx.wrongType(name, "a list of strings", value)
            merged[key] = value
            continue
        if not key.endswith("/"):
            raise ctx.error(f"Unknown key '{name}'")
        if not isinstance(value, dict):
            raise ctx.wrongType(name, "an object", value)
        _checkItemFields(name, value, ctx)
        if key in base:
            merged[key] = {**base[key], **value}
        else:
            missing = [f for f in ITEM_REQUIRED_FIELDS if f not in value]
            if missing:
                raise ctx.error(
                    f"New item '{name}' lacks field(s) {', '.join(missing)}"
                )
            merged[key] = dict(value)
    return merged


def _checkItemFields(name, item, ctx):
    """
    Validate the fields given for one item of the C{files} section.
    """
    for fieldName, value in item.items():
        dotted = f"{name}.{fieldName}"
        if fieldName not in ITEM_FIELDS:
            raise ctx.error(f"Unknown key '{dotted}'")
        if fieldName == "permissions":
            _parsePermissions(value, dotted, ctx)
        elif fieldName == "files":
            _checkFileNames(value, dotted, ctx)
        elif fieldName in ITEM_BOOLEAN_FIELDS and not isinstance(value, bool):
            raise ctx.wrongType(dotted, "a boolean", value)
        elif fieldName in ITEM_STRING_FIELDS and not isinstance(value, str):
            raise ctx.wrongType(dotted, "a string", value)
    if item.get("source", "master") != "master":
        raise ctx.error(
            f"Invalid value for '{name}.source': only 'master' is supported"
        )


def _parsePermissions(value, dotted, ctx):
    """
    A file mode given as an integer or as a string such as C{"0o640"}.

    @raise ConfigError: not a mode between 0 and 0o777.
    """
    mode = None
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        try:
            mode = int(value, 0)
        except ValueError:
            pass
    if mode is None or not 0 <= mode <= MAX_PERMISSIONS:
        raise ctx.error(
            f"Invalid permissions for '{dotted}': expected a mode such as "
            f"\"0o640\" (at most 0o777), found {json.dumps(value)}"
        )
    return mode


def _checkFileNames(value, dotted, ctx):
    """
    An item's C{files}: a non-empty list of basenames (or C{"all"}).
    """
    if not _isStringList(value) or not value:
        raise ctx.error(
            f"Wrong type for '{dotted}': expected a non-empty list of strings, "
            f"found {json.dumps(value)}"
        )
    for name in value:
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise ctx.error(f"Invalid file name '{name}' in '{dotted}'")


def _checkItemPath(path, ctx):
    """
    An item key: relative, normalised, ending in C{/}, never above the home.
    """
    bare = path[:-1]
    if (
        not bare
        or bare.startswith("/")
        or "\\" in path
        or "\0" in path
        or posixpath.normpath(bare) != bare
        or ".." in bare.split("/")
    ):
        raise ctx.error(
            f"Invalid item path 'files.{path}': it must be a relative, "
            "normalised directory path ending in '/' without '..'"
        )


def _checkNesting(paths, document, ctx):
    """
    Refuse an item inside a recursive item: every file must belong to one
    item only.
    """
    for inner in paths:
        for outer in paths:
            if (
                inner != outer
                and inner.startswith(outer)
                and document[outer]["recursive"]
            ):
                raise ctx.error(
                    f"Item 'files.{inner}' is inside recursive item 'files.{outer}'"
                )


def _checkIntervals(intervals, ctx):
    """
    Every interval value is a finite number greater than zero.
    """
    for section, values in intervals.items():
        for key, value in values.items():
            if not _isNumber(value) or not math.isfinite(value) or value <= 0:
                raise ctx.error(
                    f"Interval 'intervals.{section}.{key}' must be a positive "
                    f"number, found {json.dumps(value)}"
                )


def _buildItem(path, fields, ctx):
    """
    Make a L{FileItem} from a merged item.
    """
    return FileItem(
        path=path,
        permissions=_parsePermissions(
            fields["permissions"], f"files.{path}.permissions", ctx
        ),
        files=tuple(fields["files"]),
        recursive=fields["recursive"],
        remove_subdirs_if_empty=fields["remove_subdirs_if_empty"],
        extra_valid=fields.get("extra_valid", False),
        restart=fields.get("restart", False),
        source=fields.get("source", "master"),
        description=fields.get("description", ""),
    )


def _buildFileSet(files, ctx):
    """
    Make the L{FileSet} from the merged C{files} section.
    """
    paths = sorted(key for key in files if key.endswith("/"))
    for path in paths:
        _checkItemPath(path, ctx)
    _checkNesting(paths, files, ctx)
    return FileSet(
        items=tuple(_buildItem(path, files[path], ctx) for path in paths),
        excluded_files=frozenset(files["excluded_files"]),
        excluded_extensions=tuple(files["excluded_extensions"]),
    )


def _buildItems(document, ctx):
    """
    Validate a merged cluster.json document and make L{ClusterItems}.
    """
    intervals = document["intervals"]
    _checkIntervals(intervals, ctx)
    return ClusterItems(
        worker=dict(intervals["worker"]),
        master=dict(intervals["master"]),
        communication=dict(intervals["communication"]),
        fileset=_buildFileSet(document["files"], ctx),
        raw=document,
    )


def mergeClusterItems(overrides, origin="overrides"):
    """
    Merge an overrides document over the shipped cluster.json and build the
    effective L{ClusterItems}.

    @param overrides: a parsed JSON object (C{{}} for none).
    @param origin: what to call the overrides in error texts (a path).
    @raise ConfigError: (3004) an unknown key, a wrong type, an invalid item
        or a non-positive interval, naming the dotted key and C{origin}.
    """
    ctx = _Overrides(origin)
    document = _merge(_shippedDocument(), overrides, "", ctx)
    return _buildItems(document, ctx)


def loadClusterItems(home=None):
    """
    Load the effective cluster.json: the shipped one, with the node's
    C{etc/cluster.json} merged over it when C{home} has one.

    @param home: a L{wazuhcluster.home.NodeHome}, or C{None} for the shipped
        values only.
    @raise ConfigError: see L{mergeClusterItems}; 3006 when the overrides file
        exists but cannot be read.
    """
    if home is None or not home.clusterJsonOverrides.exists():
        return mergeClusterItems({}, "wazuhcluster/cluster.json")
    path = home.clusterJsonOverrides
    return mergeClusterItems(_readOverrides(path), path.path)
