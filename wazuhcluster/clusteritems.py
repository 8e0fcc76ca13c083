# -*- test-case-name: tests.test_config -*-
"""
The cluster items: the shipped C{wazuhcluster/cluster.json} with the node's
C{etc/cluster.json} overrides merged over it (WAZUH.md section 2): the
intervals (L{wazuhcluster.intervals}) and the synced file set.

Overrides may change any value but not add keys (except new file items,
whose key ends in C{/}) nor change a value's type; every error names the
dotted key and the overrides file.  Everything here is pure.
"""

import json
import posixpath
from importlib import resources

from attrs import field, frozen

from wazuhcluster.agentstoreitems import AgentStoreItems, buildAgentStore
from wazuhcluster.errors import ConfigError
from wazuhcluster.intervals import buildIntervals
from wazuhcluster.ossecconf import readError
from wazuhcluster.standby.items import DEFAULT_MASTERS, MastersItems, buildMasters


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
    The effective cluster.json.

    @ivar worker: the L{wazuhcluster.intervals.WorkerIntervals}.
    @ivar master: the L{wazuhcluster.intervals.MasterIntervals}.
    @ivar communication: the L{wazuhcluster.intervals.CommunicationIntervals}.
    @ivar fileset: the L{FileSet}.
    @ivar raw: the merged JSON document (for C{check-config}).
    @ivar agentStore: the L{wazuhcluster.agentstoreitems.AgentStoreItems}.
    @ivar masters: the L{wazuhcluster.standby.items.MastersItems} (masters
        in standby).
    """

    worker: object
    master: object
    communication: object
    fileset: FileSet
    raw: dict = field(eq=False, repr=False)
    agentStore: AgentStoreItems = AgentStoreItems()
    masters: MastersItems = DEFAULT_MASTERS


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
        raise readError(f"cannot read it ({e.strerror or e})", path.path)
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
    worker, master, communication = buildIntervals(document["intervals"], ctx.error)
    return ClusterItems(
        worker=worker,
        master=master,
        communication=communication,
        fileset=_buildFileSet(document["files"], ctx),
        raw=document,
        agentStore=buildAgentStore(document["agent_store"], ctx.error),
        masters=buildMasters(document["masters"], ctx.error),
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
