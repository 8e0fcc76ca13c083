# -*- test-case-name: tests.test_config -*-
"""
C{wazuh-cluster check-config}: validate a node's configuration and print the
effective values (the cluster key is never printed in full).
"""

import attrs

from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.errors import ConfigError
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import readClusterConfig

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


def formatEffectiveConfig(config, items):
    """
    The effective configuration of a node, for humans.

    @type config: L{wazuhcluster.ossecconf.ClusterConfig}
    @type items: L{wazuhcluster.clusteritems.ClusterItems}
    @rtype: C{str}, ending with a newline.
    """
    sections = [
        _clusterLines(config),
        _warningLines(config),
        _intervalLines(items),
        _fileSetLines(items.fileset),
        _agentStoreLines(items.agentStore),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _readHome(homePath):
    """
    Read the configuration and cluster items of the node at C{homePath}.

    @raise ConfigError: the home is missing or a configuration is invalid.
    """
    home = NodeHome.fromPath(homePath)
    if not home.root.isdir():
        raise ConfigError(
            f"Error reading cluster configuration: home directory "
            f"{home.root.path} does not exist",
            code=3006,
        )
    return readClusterConfig(home), loadClusterItems(home)


def runCheckConfig(homePath, out):
    """
    C{wazuh-cluster check-config}: print the effective configuration of the
    node at C{homePath}, or the configuration error.

    @param homePath: the node home (C{str} or L{FilePath}).
    @param out: a text file to write to.
    @return: the exit status: 0 valid, 1 invalid.
    """
    try:
        config, items = _readHome(homePath)
    except ConfigError as e:
        out.write(f"{e}\n")
        return 1
    out.write(formatEffectiveConfig(config, items))
    out.write("Configuration OK.\n")
    return 0
