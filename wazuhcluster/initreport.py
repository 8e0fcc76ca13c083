# -*- test-case-name: tests.test_init -*-
"""
What C{wazuh-cluster init} reports: what changed on an existing node, what
the user should know (the address a master's certificate names), and the
summary the CLI prints.
"""

import os
import shlex
import socket

from attrs import frozen
from twisted.python.filepath import FilePath

from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import parseClusterConfig
from wazuhcluster.pki import readClusterKey

#: The master host of a master initialised without C{--master-host}.
DEFAULT_MASTER_HOST = "127.0.0.1"


def _asFilePath(path):
    if isinstance(path, FilePath):
        return path
    return FilePath(os.path.abspath(os.path.expanduser(path)))


@frozen
class InitReport:
    """
    What one run of C{init} did.

    @ivar home: the node home.
    @ivar created: the home was not a node before.
    @ivar changes: one text per setting that changed on an existing node
        (the key is never shown).
    @ivar notes: what the user should know (the address a master's
        certificate names when no C{--master-host} was given...).
    """

    home: NodeHome
    created: bool
    changes: tuple = ()
    notes: tuple = ()


_SHOWN_FIELDS = (("name", "cluster name"), ("port", "port"), ("bind_addr", "bind address"),
                 ("nodes", "master host"), ("hidden", "hidden"))


def changesBetween(existing, config, reissued):
    """
    What differs between the node's former configuration and the new one.
    """
    if existing is None:
        return ()
    changes = []
    for field, label in _SHOWN_FIELDS:
        before, after = getattr(existing, field), getattr(config, field)
        if before != after:
            if field == "nodes":
                before, after = ", ".join(before), ", ".join(after)
            changes.append(f"{label}: {before} -> {after}")
    if existing.key != config.key:
        changes.append("cluster key: replaced by the one given")
    if reissued:
        changes.append("certificate: reissued")
    return tuple(changes)


def hostAddress():
    """
    This host's address on its default route, for a hint, or L{None}.
    (A UDP socket's connect sends nothing.)
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def initNotes(config, masterHostGiven, key, caDir):
    notes = []
    if (config.node_type == "master" and not masterHostGiven
            and config.masterHost == DEFAULT_MASTER_HOST):
        suggestion = hostAddress() or "ADDRESS"
        notes.append(
            f"No --master-host: the master's certificate names only "
            f"{DEFAULT_MASTER_HOST}, so only workers on this host can connect "
            f"(init them with --master-host {DEFAULT_MASTER_HOST}). For workers on "
            f"other hosts, run this init again with --master-host {suggestion} (an "
            "address or name they dial) and init them with the same value.")
    if key is not None and caDir.child("cluster.key").exists():
        try:
            caKey = readClusterKey(caDir)
        except ClusterError:
            caKey = None
        if caKey is not None and caKey != key:
            notes.append(
                f"--key differs from {caDir.child('cluster.key').path}: give the same "
                "--key to every node, or nodes made without it will not connect.")
    return tuple(notes)


def formatInitSummary(home, caDir, report=None):
    """
    What C{init} created or changed in C{home} and what to run next, for the
    CLI to print. The cluster key is not shown.

    @param home: the node home (as given to L{initNode}).
    @param caDir: the CA directory used.
    @param report: the L{InitReport} of the run, when there is one.
    @rtype: L{str}
    """
    if not isinstance(home, NodeHome):
        home = NodeHome.fromPath(home)
    caDir = _asFilePath(caDir)
    config = parseClusterConfig(home.ossecConf.getContent())
    what = f"{config.node_type} node '{config.node_name}' of cluster '{config.name}'"
    if report is None or report.created:
        lines = [f"Initialised {what} in {home.root.path}"]
    elif report.changes:
        lines = [f"Updated {what} in {home.root.path}:"]
        lines += [f"  changed: {change}" for change in report.changes]
    else:
        lines = [f"Nothing changed: {home.root.path} already is {what}"]
    lines += [
        f"  configuration: {home.ossecConf.path}",
        f"  certificates:  {home.sslDir.path}/ (ca.pem, node.pem, node.key)",
        f"  CA directory:  {caDir.path} (keep ca.key and cluster.key private; "
        "init every node of this cluster with it)",
    ]
    if config.node_type == "master":
        lines.append(
            f"  default group: {home.shared.child('default').child('agent.conf').path}"
        )
        dialled = (f"{config.masterHost}:{config.port}" if len(config.nodes) == 1 else
                   f"one of {', '.join(config.nodes)} on port {config.port}")
        lines.append(
            f"  listens on:    {config.bind_addr}:{config.port} "
            f"(workers dial {dialled}; open this TCP port)"
        )
    elif len(config.nodes) > 1:
        lines.append(f"  masters:       {', '.join(config.nodes)} (port {config.port}, "
                     "tried in this order)")
    else:
        lines.append(f"  master:        {config.masterHost}:{config.port}")
    for note in (report.notes if report is not None else ()):
        lines.append(f"Note: {note}")
    quoted = shlex.quote(home.root.path)
    lines += [
        "Next step (foreground; Ctrl-C stops it):",
        f"  twistd -n wazuh-{config.node_type} --home {quoted}",
        "or as a daemon (pidfile var/run/wazuh-clusterd.pid, twistd's log "
        "logs/twistd.log in the home):",
        f"  twistd wazuh-{config.node_type} --home {quoted}",
    ]
    return "\n".join(lines) + "\n"
