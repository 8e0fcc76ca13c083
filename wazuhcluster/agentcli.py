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
nudge of a running daemon (L{wazuhcluster.daemonnudge}, in Wazuh's local
protocol). What the user gives is checked by L{wazuhcluster.agentchecks}.
"""

import json
import os
import sqlite3
import sys
from contextlib import contextmanager

from twisted.python.failure import Failure

from wazuhcluster.agentauthd import addThroughAuthd, listFromWazuhDB, removeThroughAuthd
from wazuhcluster.agentchecks import (
    checkGroups,
    checkNewAgent,
    parseId,
    parseLabels,
    requireMaster,
    sameIpOrInvalid,
)
from wazuhcluster.agentdb import OS_FIELDS, openAgentStoreBlocking
from wazuhcluster.clientkeys import (
    ClientKey,
    appendClientKey,
    lockClientKeys,
    nextAgentId,
    parseClientKeys,
    readClientKeysBytes,
    removeClientKey,
    sameAgentIp,
    usedAgentIds,
)
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.daemonnudge import refreshDaemonGroups, requestAgentInfoSync
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome
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


# ---------------------------------------------------------------------------
# Commands


def _add(home, config, db, out, err, name, ip, group):
    requireMaster(config, "add")
    checkNewAgent(name, ip)
    groups = [] if group is None else [group]
    checkGroups(home, groups)
    with lockClientKeys(home.clientKeys):
        content, entries = _reconciledKeys(home, db, err)
        if any(entry.name == name for entry in entries):
            raise ClusterError(f"There is an agent with the same name: {name}", 1705)
        if any(sameAgentIp(entry.ip, ip) for entry in entries):
            raise sameIpOrInvalid(ip)
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
    requireMaster(config, "remove")
    agentId = parseId(agentId)
    with lockClientKeys(home.clientKeys):
        content, _ = _reconciledKeys(home, db, err)
        if not removeClientKey(home.clientKeys, content, agentId):
            raise ClusterError(f"Agent does not exist: {agentId}", 1701)
        _wait(db.removeAgent(agentId))
    refreshDaemonGroups(home)
    out.write(f"Agent {agentId} removed.\n")


def _group(home, config, db, out, err, agentId, groups):
    requireMaster(config, "group")
    agentId = parseId(agentId)
    checkGroups(home, groups)
    with lockClientKeys(home.clientKeys):
        _reconciledKeys(home, db, err)
        _wait(db.setAgentGroups(agentId, groups))
    refreshDaemonGroups(home)
    shown = ",".join(groups) if groups else "(none)"
    out.write(f"Agent {agentId} groups: {shown}\n")


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
    checkNewAgent(name, ip)
    if group is not None:
        checkGroups(home, [group])
    agentId = addThroughAuthd(home, config, name, ip, group)
    if config.node_type == "master":
        refreshDaemonGroups(home)
    out.write(f"{agentId}\n")


def _removeThroughAuthd(home, config, out, err, agentId):
    agentId = parseId(agentId)
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


def _report(home, config, db, out, err, agentId, status, os, version, labels, now):
    agentId = parseId(agentId)
    labels = parseLabels(labels)
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
