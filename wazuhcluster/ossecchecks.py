# -*- test-case-name: tests.test_config,tests.test_wazuh_config_cases -*-
"""
The checks of the C{<cluster>} block's values: Wazuh's
C{check_cluster_config} (key, node type, port, node addresses) and the name
rules (the C parser's characters, node names that name directories, the
worker names a master accepts).

Pure, like L{wazuhcluster.ossecconf}, which reads the block and runs them.
"""

import re

from attrs import asdict

from wazuhcluster.errors import ConfigError

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


def checkPhase(fields, warnings):
    """
    The checks of the original's C{check_cluster_config}, in its order; the
    first failure wins.

    @param fields: the values of the read phase, keyed like
        L{wazuhcluster.ossecconf.ClusterConfig}.
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


def checkNames(fields):
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


def checkClusterConfig(config):
    """
    Run the original's C{check_cluster_config} checks, then the name rules,
    on C{config}, even if it is disabled
    (L{wazuhcluster.ossecconf.parseClusterConfig} skips the former for a
    disabled cluster, like C{wazuh-clusterd}, which exits
    before checking).  Use it on a configuration built in code.

    @type config: L{wazuhcluster.ossecconf.ClusterConfig}
    @return: the warnings of the checks (a tuple of strings).
    @raise ConfigError: (3004) the first failed check.
    """
    fields = asdict(config)
    warnings = []
    checkPhase(fields, warnings)
    checkNames(fields)
    return tuple(warnings)
