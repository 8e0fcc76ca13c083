# -*- test-case-name: tests.test_agentcli -*-
"""
The C{wazuh-cluster agent ...} commands (DESIGN.md, "Commands").

Each command is a function that takes the node home and the output streams
and returns an exit status; a user's mistake is one line on C{err},
C{Error <code> - <message>} with Wazuh's code, and exit status 1, never a
traceback.

The commands run in a short-lived process with no reactor, so they open the
agent store with L{openAgentStoreBlocking}: the same interactions as
the daemon's, run at once. SQLite's locking (WAL, busy timeout) makes them
safe beside a running daemon; C{client.keys} changes are serialised by
L{lockClientKeys}.

With the wazuh-db agent store (a node beside a Wazuh manager), authd
registers and removes agents: the master's directly (C{queue/sockets/auth}),
from a worker through the worker's daemon (its local socket's C{sendsync},
relayed to the master's authd); C{agent list} reads wazuh-db. These clients
are the daemon's own protocols, run on blocking sockets
(L{wazuhcluster.agentauthd}, L{wazuhcluster.blockingclient}), as is the
nudge of a running daemon (L{askLocalDaemon}, in Wazuh's local protocol).
"""

import json
import os
import sqlite3
import sys
from contextlib import contextmanager

from twisted.python.failure import Failure

from wazuhcluster.agentauthd import addThroughAuthd, listFromWazuhDB, removeThroughAuthd
from wazuhcluster.agentdb import OS_FIELDS, openAgentStoreBlocking
from wazuhcluster.blockingclient import callLocalSocket
from wazuhcluster.clientkeys import (
    MAX_NAME_LENGTH,
    ClientKey,
    appendClientKey,
    formatAgentId,
    isValidAgentIp,
    isValidAgentName,
    lockClientKeys,
    nextAgentId,
    parseAgentId,
    parseClientKeys,
    readClientKeysBytes,
    removeClientKey,
    sameAgentIp,
    usedAgentIds,
)
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome
from wazuhcluster.localserver.base import OWN_COMMANDS
from wazuhcluster.ossecconf import readClusterConfig

#: Column headers of C{agent list}, as C{cluster_control -a} prints them.
LIST_HEADERS = ("ID", "NAME", "IP", "STATUS", "VERSION", "NODE NAME")

#: The dict keys shown in each column of C{agent list}.
LIST_KEYS = ("id", "name", "ip", "status", "version", "node_name")

#: Bytes of randomness in a new agent key (64 hex digits).
KEY_BYTES = 32


def agentAdd(homePath, name, ip="any", group=None, out=None, err=None):
    """
    Register a new agent on the master: append it to C{client.keys}
    atomically with a random key, insert it into the agent database (in
    C{group} when given) and print its 3-digit ID alone on a line.

    @param group: a group that exists as C{etc/shared/<group>/}, or L{None}.
    @return: the exit status.
    """
    return _run(homePath, out, err, _add, name, ip, group)


def agentRemove(homePath, agentId, out=None, err=None):
    """
    Remove an agent on the master, from C{client.keys} and the database.

    @return: the exit status.
    """
    return _run(homePath, out, err, _remove, agentId)


def agentGroup(homePath, agentId, groups, out=None, err=None):
    """
    Replace an agent's groups on the master (an empty list clears them);
    every group must exist as C{etc/shared/<group>/}.

    @param groups: group names in priority order.
    @return: the exit status.
    """
    return _run(homePath, out, err, _group, agentId, list(groups))


def agentList(homePath, asJson=False, out=None, err=None):
    """
    List this node's agents (master or worker), as a table in
    C{cluster_control -a}'s layout or as C{{"agents": [...]}}.

    @return: the exit status.
    """
    return _run(homePath, out, err, _list, asJson)


def agentReport(
    homePath,
    agentId,
    status="active",
    osName=None,
    osVersion=None,
    version=None,
    labels=(),
    out=None,
    err=None,
    now=None,
):
    """
    Record that an agent reports to this node (what wazuh-remoted does on a
    real node) and mark it for agent-info sync. The agent must be in this
    node's C{client.keys}.

    @param labels: C{"key=value"} strings.
    @param now: the time of the report as an epoch (now by default).
    @return: the exit status.
    """
    return _run(
        homePath,
        out,
        err,
        _report,
        agentId,
        status,
        {"os_name": osName, "os_version": osVersion},
        version,
        list(labels),
        now,
    )


def formatAgentTable(agents):
    """
    Format agents as C{cluster_control -a} does: a header row, then one row
    per agent; every column is as wide as its longest cell plus 2; missing
    values print C{unknown}.

    @param agents: dicts as made by L{AgentDatabase.listAgents}.
    @rtype: L{str}
    """
    rows = [LIST_HEADERS] + [
        tuple(_cell(agent.get(key)) for key in LIST_KEYS) for agent in agents
    ]
    widths = [max(len(cell) for cell in column) + 2 for column in zip(*rows)]
    return "".join(
        "".join(cell.ljust(width) for cell, width in zip(row, widths)) + "\n"
        for row in rows
    )


def _cell(value):
    return "unknown" if value in (None, "") else str(value)


# ---------------------------------------------------------------------------
# Running a command


def _run(homePath, out, err, command, *args):
    """
    Run C{command(home, config, db, out, err, *args)} with the node's
    configuration and agent database, and turn errors into a message and
    exit status 1.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    home = None
    try:
        home = NodeHome.fromPath(homePath)
        config = readClusterConfig(home)
        if agentStoreBackend(home) == "wazuh-db":
            _wazuhDBCommand(command)(home, config, out, err, *args)
            return 0
        with _database(home, config) as db:
            command(home, config, db, out, err, *args)
    except ClusterError as e:
        err.write(f"{e}\n")
        return 1
    except sqlite3.Error as e:
        where = home.globalDb.path if home is not None else homePath
        err.write(f"{ClusterError(f'Agent database error: {e} ({where})', 2000)}\n")
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        err.write(f"{ClusterError(f'{e.strerror or e}{where}', 1000)}\n")
        return 1
    return 0


@contextmanager
def _database(home, config):
    db = openAgentStoreBlocking(home, loadClusterItems(home), config.node_name)
    try:
        yield db
    finally:
        db.close()


def _wait(d):
    """
    The result of an already-fired L{Deferred} (see
    L{AgentDatabase.openBlocking}); a failure is raised.
    """
    results = []
    d.addBoth(results.append)
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _requireMaster(config, what):
    """
    @raise ClusterError: 3019, as Wazuh's tools do on a worker.
    """
    if config.node_type != "master" and not config.disabled:
        raise ClusterError(
            f"Wazuh is running in cluster mode: agent {what} is not available "
            f"in worker nodes. Please, try again in the master node: "
            f"{config.masterHost}",
            3019,
        )


def _readKeys(home, err):
    """
    Read this node's C{client.keys}, warning about skipped lines.

    @return: the file's content and its valid entries.
    """
    content = readClientKeysBytes(home.clientKeys)
    entries, problems = parseClientKeys(content)
    for problem in problems:
        err.write(f"WARNING: {home.clientKeys.path}: {problem}\n")
    return content, entries


def _reconciledKeys(home, db, err):
    """
    Read C{client.keys} and bring the database in line with it.

    @return: the file's content and its valid entries.
    """
    content, entries = _readKeys(home, err)
    _wait(db.reconcileClientKeys(entries))
    return content, entries


def _checkGroups(home, groups):
    """
    @raise ClusterError: 1710 for a group that is not a directory of
        C{etc/shared/}.
    """
    for group in groups:
        if (
            not group
            or group in (".", "..")
            or "/" in group
            or not home.shared.child(group).isdir()
        ):
            raise ClusterError(f"The group does not exist: {group}", 1710)


def _parseId(agentId):
    try:
        return formatAgentId(parseAgentId(agentId))
    except ValueError:
        raise ClusterError(f"Agent does not exist: {agentId}", 1701) from None


def _checkNewAgent(name, ip):
    """
    @raise ClusterError: 1738 for a long name, 1725 for an invalid one,
        1706 for an invalid IP.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise ClusterError(
            f"Agent name is too long: at most {MAX_NAME_LENGTH} characters", 1738
        )
    if not isValidAgentName(name):
        raise ClusterError(
            f"Error registering a new agent: invalid name {name!r} (letters, "
            "digits, '_', '.' and '-' only)",
            1725,
        )
    if not isValidAgentIp(ip):
        raise _sameIpOrInvalid(ip)


def _sameIpOrInvalid(ip):
    """
    Wazuh's 1706, for an invalid IP and for one another agent has.
    """
    return ClusterError(
        f"There is an agent with the same IP or the IP is invalid: {ip}", 1706
    )


# ---------------------------------------------------------------------------
# Commands


def _add(home, config, db, out, err, name, ip, group):
    _requireMaster(config, "add")
    _checkNewAgent(name, ip)
    groups = [] if group is None else [group]
    _checkGroups(home, groups)
    with lockClientKeys(home.clientKeys):
        content, entries = _reconciledKeys(home, db, err)
        if any(entry.name == name for entry in entries):
            raise ClusterError(f"There is an agent with the same name: {name}", 1705)
        if any(sameAgentIp(entry.ip, ip) for entry in entries):
            raise _sameIpOrInvalid(ip)
        newId = nextAgentId(entries, usedAgentIds(content))
        entry = ClientKey(newId, name, ip, os.urandom(KEY_BYTES).hex())
        _wait(db.addAgent(entry.id, name, ip, entry.key, groups))
        try:
            appendClientKey(home.clientKeys, content, entry)
        except BaseException:
            _wait(db.removeAgent(entry.id))
            raise
    refreshDaemonGroups(home)
    out.write(f"{entry.id}\n")


def _remove(home, config, db, out, err, agentId):
    _requireMaster(config, "remove")
    agentId = _parseId(agentId)
    with lockClientKeys(home.clientKeys):
        content, _ = _reconciledKeys(home, db, err)
        if not removeClientKey(home.clientKeys, content, agentId):
            raise ClusterError(f"Agent does not exist: {agentId}", 1701)
        _wait(db.removeAgent(agentId))
    refreshDaemonGroups(home)
    out.write(f"Agent {agentId} removed.\n")


def _group(home, config, db, out, err, agentId, groups):
    _requireMaster(config, "group")
    agentId = _parseId(agentId)
    _checkGroups(home, groups)
    with lockClientKeys(home.clientKeys):
        _reconciledKeys(home, db, err)
        _wait(db.setAgentGroups(agentId, groups))
    refreshDaemonGroups(home)
    shown = ",".join(groups) if groups else "(none)"
    out.write(f"Agent {agentId} groups: {shown}\n")


def refreshDaemonGroups(home, timeout=5.0):
    """
    Ask the master daemon, if one is running, to refresh its agent-groups
    cache now (control request C{refresh_agent_groups}), so that a change
    reaches the workers without waiting for C{master.sync_agent_groups}.
    Best effort: without a daemon, or if it does not answer in C{timeout}
    seconds, the periodic refresh does it.

    @return: whether the daemon accepted the request.
    """
    return askLocalDaemon(home, "refresh_agent_groups", timeout)


def requestAgentInfoSync(home, timeout=5.0):
    """
    Ask this node's daemon, if one is running, to send its agent info to the
    master now (control request C{sync_agent_info}), so that a report shows
    on the master without waiting for C{worker.sync_agent_info}.  Best
    effort, like L{refreshDaemonGroups}: a daemon that does not know the
    request answers an error, and the periodic sync does it.

    @return: whether the daemon accepted the request.
    """
    return askLocalDaemon(home, "sync_agent_info", timeout)


def askLocalDaemon(home, request, timeout=5.0):
    """
    Send one of this project's control requests, with no arguments, to the
    daemon of C{home} and wait at most C{timeout} seconds for its answer.

    A blocking client (this process runs no reactor) speaking Wazuh's local
    protocol (L{callLocalDaemon}).

    @param request: the control request name (C{str}).
    @return: C{True} when the daemon answered with a result, C{False} when
        no daemon runs, it answered an error, or it did not answer in time.
    """
    if not os.path.exists(home.controlSocket.path):
        return False
    try:
        callLocalDaemon(home, OWN_COMMANDS.get(request, request.encode("ascii")), b"{}",
                        timeout)
    except ClusterError:
        return False
    return True


def callLocalDaemon(home, command, payload, timeout=5.0):
    """
    Send one request to the daemon of C{home} over its local socket and
    wait for its answer, blocking (L{callLocalSocket}).

    @return: the answer's payload (L{bytes}).
    @raise ClusterError: 3012 when no daemon answers, 3020 without an
        answer in C{timeout} seconds, the daemon's error otherwise.
    """
    return callLocalSocket(home.controlSocket.path, command, payload, timeout)


# ---------------------------------------------------------------------------
# With the wazuh-db agent store (a node beside a Wazuh manager): authd
# registers and removes agents, wazuh-db lists them
# (L{wazuhcluster.agentauthd}).


def agentStoreBackend(home):
    """
    The agent store the node of C{home} uses (C{agent_store.backend} of its
    cluster.json): C{sqlite} or C{wazuh-db}.
    """
    return loadClusterItems(home).agentStore.backend


def _wazuhDBCommand(command):
    """
    The variant of C{command} for a node with the wazuh-db agent store.

    @raise ClusterError: for a command Wazuh's own daemons do there.
    """
    variants = {_add: _addThroughAuthd, _remove: _removeThroughAuthd, _list: _listFromWazuhDB}
    variant = variants.get(command)
    if variant is None:
        what = {_group: "group", _report: "report"}.get(command, "this")
        raise ClusterError(
            f"agent {what} is not available with the wazuh-db agent store: Wazuh's own "
            "tools and daemons (the Wazuh API, wazuh-remoted) do it on a manager", 1000)
    return variant


def _addThroughAuthd(home, config, out, err, name, ip, group):
    _checkNewAgent(name, ip)
    if group is not None:
        _checkGroups(home, [group])
    agentId = addThroughAuthd(home, config, name, ip, group)
    if config.node_type == "master":
        refreshDaemonGroups(home)
    out.write(f"{agentId}\n")


def _removeThroughAuthd(home, config, out, err, agentId):
    agentId = _parseId(agentId)
    removeThroughAuthd(home, config, agentId)
    if config.node_type == "master":
        refreshDaemonGroups(home)
    out.write(f"Agent {agentId} removed.\n")


def _listFromWazuhDB(home, config, out, err, asJson):
    _printAgents(out, listFromWazuhDB(home), asJson)


def _list(home, config, db, out, err, asJson):
    _reconciledKeys(home, db, err)
    _printAgents(out, _wait(db.listAgents()), asJson)


def _printAgents(out, agents, asJson):
    if asJson:
        out.write(json.dumps({"agents": agents}) + "\n")
    else:
        out.write(formatAgentTable(agents))


def _parseLabels(labels):
    """
    @raise ClusterError: a label is not C{key=value} with a non-empty key.
    """
    result = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key.strip():
            raise ClusterError(f"Invalid label {label!r}: expected key=value", 1000)
        result[key.strip()] = value
    return result


def _report(home, config, db, out, err, agentId, status, os, version, labels, now):
    agentId = _parseId(agentId)
    labels = _parseLabels(labels)
    _, entries = _reconciledKeys(home, db, err)
    if all(entry.id != agentId for entry in entries):
        raise ClusterError(
            f"Agent does not exist: {agentId} is not in this node's client.keys",
            1701,
        )
    osValues = {k: v for k, v in os.items() if k in OS_FIELDS and v is not None}
    _wait(
        db.reportAgent(
            agentId,
            status=status,
            os=osValues,
            version=version,
            labels=labels or None,
            nodeName=config.node_name,
            now=now,
        )
    )
    out.write(f"Agent {agentId} reported {status} to {config.node_name}.\n")
    if config.node_type == "worker":
        requestAgentInfoSync(home)
