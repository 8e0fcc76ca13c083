# -*- test-case-name: tests.test_checkconfig -*-
"""
C{wazuh-cluster check-config}: check what a node checks when it starts, and
print the effective values (the cluster key is never printed in full).

L{nodeProblems} is the one list of start checks: the twistd plugins refuse to
start on its first problem, C{check-config} prints every one of them (one
line each, on stderr) and exits 1.
"""

import os

import attrs
from attrs import frozen

from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.home import NodeHome
from wazuhcluster.logs import logFormats
from wazuhcluster.ossecconf import parseOssecConf, readClusterConfig
from wazuhcluster.revocation import CRL_PATH
from wazuhcluster.tlscheck import tlsProblems

KEY_VISIBLE_CHARS = 2
KEY_MIN_LENGTH_TO_SHOW = 8


def maskKey(key):
    """
    Hide the cluster key: its first two characters (only for a key long
    enough that they reveal little), then one C{*} per hidden character.
    """
    if not key:
        return "(empty)"
    if len(key) < KEY_MIN_LENGTH_TO_SHOW:
        return "*" * len(key)
    return key[:KEY_VISIBLE_CHARS] + "*" * (len(key) - KEY_VISIBLE_CHARS)


def _yesNo(flag):
    return "yes" if flag else "no"


def _clusterLines(config):
    """
    The C{<cluster>} block, one C{element: value} line each.
    """
    rows = [
        ("name", config.name),
        ("node_name", config.node_name),
        ("node_type", config.node_type),
        ("key", maskKey(config.key)),
        ("port", config.port),
        ("bind_addr", config.bind_addr),
        ("nodes", ", ".join(config.nodes)),
        ("hidden", _yesNo(config.hidden)),
        ("disabled", _yesNo(config.disabled)),
    ]
    lines = ["Cluster (etc/ossec.conf):"]
    lines.extend(f"  {name + ':':<11}{value}" for name, value in rows)
    if config.disabled:
        lines.append("  The cluster is disabled: the node would not start it.")
    return lines


def _warningLines(config):
    """
    The warnings made while reading, or C{none}.
    """
    if not config.warnings:
        return ["Warnings: none"]
    return ["Warnings:"] + [f"  {warning}" for warning in config.warnings]


def _intervalLines(items):
    """
    Every interval of the effective cluster.json, by section.
    """
    lines = ["Intervals (cluster.json):"]
    for section in ("worker", "master", "communication"):
        values = attrs.asdict(getattr(items, section))
        lines.append(f"  {section}:")
        width = max(len(key) for key in values) + 1
        lines.extend(
            f"    {key + ':':<{width}} {value}" for key, value in values.items()
        )
    return lines


def _itemLine(item):
    """
    One synced item: path, mode, file rule and flags.
    """
    flags = [
        "recursive" if item.recursive else "top directory only",
    ]
    if item.remove_subdirs_if_empty:
        flags.append("removes empty subdirectories")
    if item.restart:
        flags.append("restart")
    return (
        f"  {item.path:<18} {item.permissions:#o}  "
        f"files: {', '.join(item.files)}  ({', '.join(flags)})"
    )


def _fileSetLines(fileset):
    """
    The synced file set and its exclusions.
    """
    lines = ["Synced files (cluster.json):"]
    lines.extend(_itemLine(item) for item in fileset.items)
    lines.append(f"  excluded files: {', '.join(sorted(fileset.excluded_files))}")
    lines.append(
        f"  excluded extensions: {', '.join(fileset.excluded_extensions)}"
    )
    return lines


def _agentStoreLines(store):
    """
    The agent store: backend, DSN (any password masked) and password file.
    """
    from wazuhcluster.agentstoreitems import redactDsn

    lines = ["Agent store (cluster.json):", f"  backend:       {store.backend}"]
    if store.backend == "postgresql":
        lines.append(f"  dsn:           {redactDsn(store.dsn)}")
        lines.append(f"  password_file: {store.password_file or '(none)'}")
    return lines




def _loggingLines(formats):
    files = ["logs/cluster.log"]
    if "json" in formats:
        files.append("logs/cluster.json")
    return [f"Logging (etc/ossec.conf <logging>): {', '.join(files)}"]


def formatEffectiveConfig(config, items, formats=frozenset({"plain"})):
    """
    The effective configuration of a node, for humans.

    @type config: L{wazuhcluster.ossecconf.ClusterConfig}
    @type items: L{wazuhcluster.clusteritems.ClusterItems}
    @param formats: the log formats of C{<logging><log_format>}.
    @rtype: C{str}, ending with a newline.
    """
    sections = [
        _clusterLines(config),
        _warningLines(config),
        _loggingLines(formats),
        _intervalLines(items),
        _fileSetLines(items.fileset),
        _agentStoreLines(items.agentStore),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


#: The longest path a UNIX socket can have on Linux.
MAX_SOCKET_PATH = 107

#: Directories a running node writes, relative to its home.
WRITTEN_DIRECTORIES = ("logs", "queue/cluster", "queue/db", "var/run")


@frozen
class NodeCheck:
    """
    What L{nodeProblems} found.

    @ivar config: the L{ClusterConfig}, or L{None} when ossec.conf is invalid.
    @ivar items: the L{ClusterItems}, or L{None} when cluster.json is invalid.
    @ivar logFormats: the formats of C{<logging><log_format>}.
    @ivar problems: one line per problem that stops the node from starting.
    """

    config: object
    items: object
    logFormats: frozenset
    problems: tuple


def _logFormatCheck(home):
    try:
        return logFormats(parseOssecConf(home.ossecConf.getContent(),
                                         home.ossecConf.path)), []
    except ValueError as e:
        return frozenset({"plain"}), [f"{home.ossecConf.path}: {e}"]
    except (OSError, ClusterError):
        return frozenset({"plain"}), []  # readClusterConfig reports it


def homeLogFormats(home):
    """
    The log formats the node of C{home} writes (C{<logging><log_format>}).

    @raise ConfigError: for an unknown format.
    """
    formats, problems = _logFormatCheck(home)
    if problems:
        raise ClusterError(problems[0], 3004)
    return formats


def agentStoreProblems(home, config, items):
    """
    Whether the agent store the node would open is usable, checked without
    changing it: an SQLite C{queue/db/global.db} that exists must be an
    intact database of a schema this version knows; a PostgreSQL store
    belongs to masters only and needs its password file readable.
    """
    from wazuhcluster.agentdb import checkAgentDatabase
    from wazuhcluster.agentdb.stores import readPassword

    store = items.agentStore if items is not None else None
    if store is None or store.backend == "sqlite":
        try:
            checkAgentDatabase(home.globalDb)
        except ClusterError as e:
            return [str(e)]
        return []
    if store.backend == "postgresql":
        if config is not None and config.node_type != "master":
            return [f"agent_store.backend postgresql in {home.clusterJsonOverrides.path} "
                    f"is for master nodes: a worker keeps its agents in SQLite"]
        path = store.passwordPath(home)
        if path is not None:
            try:
                readPassword(path)
            except ClusterError as e:
                return [str(e)]
    return []


def _nearestExisting(path):
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def writableProblems(home):
    """
    The directories the node writes that this user cannot write (or create),
    as one problem.
    """
    refused = []
    for relpath in WRITTEN_DIRECTORIES:
        path = home.child(relpath).path
        existing = _nearestExisting(path)
        if not os.access(existing, os.W_OK | os.X_OK):
            refused.append(relpath + "/")
    if not refused:
        return []
    import pwd

    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return [f"The node cannot write {', '.join(refused)} in {home.root.path} "
            f"(as user {user}): give that user the home, or run the node as its owner"]


def socketProblems(home):
    """
    The control socket's path must fit a UNIX socket address.
    """
    path = home.controlSocket.path
    if len(path.encode("utf-8")) > MAX_SOCKET_PATH:
        return [f"The control socket path {path} is longer than {MAX_SOCKET_PATH} "
                "bytes; use a shorter home path."]
    return []


def nodeProblems(home):
    """
    Everything that would stop the node of C{home} from starting, checked
    without starting it: the home, C{etc/ossec.conf} (C{<cluster>} and
    C{<logging>}), C{cluster.json}, the TLS identity, the agent database,
    the directories it writes and the control socket path.

    @type home: L{NodeHome}
    @rtype: L{NodeCheck}
    """
    if not home.root.isdir():
        what = "is not a directory" if os.path.lexists(home.root.path) else "does not exist"
        return NodeCheck(None, None, frozenset(), (
            str(ConfigError(f"Error reading cluster configuration: home directory "
                            f"{home.root.path} {what}", code=3006)),))
    problems = []
    config = items = None
    try:
        config = readClusterConfig(home)
    except ClusterError as e:
        problems.append(str(e))
    try:
        items = loadClusterItems(home)
    except ClusterError as e:
        problems.append(str(e))
    formats, formatProblems = _logFormatCheck(home)
    problems += formatProblems
    if config is None or not config.disabled:
        problems += tlsProblems(home.sslDir, config,
                                crl=home.root.preauthChild(CRL_PATH))
        problems += agentStoreProblems(home, config, items)
        problems += writableProblems(home)
        problems += socketProblems(home)
    return NodeCheck(config, items, formats, tuple(problems))


def runCheckConfig(homePath, out, err=None):
    """
    C{wazuh-cluster check-config}: print the effective configuration of the
    node at C{homePath} on C{out}, and each problem on C{err}.

    @param homePath: the node home (C{str}, L{FilePath} or L{NodeHome}).
    @return: the exit status: 0 when the node can start, 1 otherwise.
    """
    err = out if err is None else err
    home = homePath if isinstance(homePath, NodeHome) else NodeHome.fromPath(homePath)
    check = nodeProblems(home)
    if check.config is not None and check.items is not None:
        out.write(formatEffectiveConfig(check.config, check.items, check.logFormats))
    for problem in check.problems:
        err.write(f"{problem}\n")
    if check.problems:
        return 1
    out.write("Configuration OK.\n")
    return 0
