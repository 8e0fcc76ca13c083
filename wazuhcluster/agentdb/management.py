# -*- test-case-name: tests.test_agentdb -*-
"""
Agent management: add, remove, set groups, list, get, count, and the
reconciliation of the agent table with C{client.keys}.

Agent C{000} is the manager itself: inserted at creation, never listed,
never synced, never changed through this API.
"""

from wazuhcluster.agentdb.groups import applyPendingGroups, assignGroups
from wazuhcluster.agentdb.transactions import reads, writes
from wazuhcluster.agentdb.values import isoTime, splitGroups
from wazuhcluster.clientkeys import formatAgentId
from wazuhcluster.errors import ClusterError


def requireAgent(txn, number):
    """
    Check that agent C{number} exists and is not the manager.

    @raise ClusterError: 1703 for the manager, 1701 for an unknown agent.
    """
    if number == 0:
        raise ClusterError("Action not available for Manager (agent 000)", 1703)
    txn.execute("SELECT 1 FROM agent WHERE id = ?", (number,))
    if txn.fetchone() is None:
        raise ClusterError(f"Agent does not exist: {formatAgentId(number)}", 1701)


def insertAgents(txn, agents, now):
    """
    Insert new agents, C{(number, name, ip, key)}, never connected.
    """
    txn.executemany(
        "INSERT INTO agent (id, name, ip, register_ip, internal_key, date_add) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(n, name, ip, ip, key, now) for n, name, ip, key in agents],
    )


@writes
def txnAddAgent(txn, number, name, ip, key, groups, now):
    if number == 0:
        raise ClusterError("Action not available for Manager (agent 000)", 1703)
    txn.execute("SELECT 1 FROM agent WHERE id = ?", (number,))
    if txn.fetchone() is not None:
        raise ClusterError(
            f"There is an agent with the same ID: {formatAgentId(number)}", 1708
        )
    txn.execute("SELECT 1 FROM agent WHERE name = ? AND id > 0", (name,))
    if txn.fetchone() is not None:
        raise ClusterError(f"There is an agent with the same name: {name}", 1705)
    insertAgents(txn, [(number, name, ip, key)], now)
    if groups:
        assignGroups(txn, [(number, groups)])
    return formatAgentId(number)


@writes
def txnRemoveAgent(txn, number):
    requireAgent(txn, number)
    txn.execute("DELETE FROM agent WHERE id = ?", (number,))


@writes
def txnSetAgentGroups(txn, number, groups):
    requireAgent(txn, number)
    return assignGroups(txn, [(number, groups)])


_LIST_COLUMNS = (
    'id, name, ip, connection_status, version, node_name, "group", '
    "os_name, os_version, last_keepalive"
)


def _listedAgent(row):
    """
    The public form of one agent (DESIGN.md, C{agent list --json}).
    """
    n, name, ip, status, version, node, groups, osName, osVersion, alive = row
    return {
        "id": formatAgentId(n),
        "name": name,
        "ip": ip,
        "status": status,
        "version": version,
        "node_name": node,
        "groups": splitGroups(groups),
        "os_name": osName,
        "os_version": osVersion,
        "last_keepalive": isoTime(alive),
    }


@reads
def txnListAgents(txn):
    txn.execute(f"SELECT {_LIST_COLUMNS} FROM agent WHERE id > 0 ORDER BY id")
    return [_listedAgent(row) for row in txn.fetchall()]


@reads
def txnGetAgent(txn, number):
    if number == 0:
        return None
    txn.execute("SELECT * FROM agent WHERE id = ?", (number,))
    row = txn.fetchone()
    if row is None:
        return None
    agent = dict(zip([d[0] for d in txn.description], row))
    agent["id"] = formatAgentId(number)
    agent["groups"] = splitGroups(agent.pop("group"))
    agent["last_keepalive"] = isoTime(agent["last_keepalive"])
    agent["labels"] = labelsOf(txn, number)
    return agent


def labelsOf(txn, number):
    txn.execute("SELECT key, value FROM labels WHERE id = ? ORDER BY key", (number,))
    return dict(txn.fetchall())


@reads
def txnCountActiveAgents(txn, nodeName):
    query = "SELECT COUNT(*) FROM agent WHERE id > 0 AND connection_status = 'active'"
    if nodeName is None:
        txn.execute(query)
    else:
        txn.execute(query + " AND node_name = ?", (nodeName,))
    return txn.value()


@writes
def txnReconcile(txn, entries, now):
    wanted = {int(e.id): e for e in entries if int(e.id) > 0}
    txn.execute("SELECT id, name, register_ip, internal_key FROM agent WHERE id > 0")
    current = {row[0]: tuple(row[1:]) for row in txn.fetchall()}
    removed = sorted(set(current) - set(wanted))
    added = sorted(set(wanted) - set(current))
    changed = [
        n
        for n in sorted(set(current) & set(wanted))
        if current[n] != (wanted[n].name, wanted[n].ip, wanted[n].key)
    ]
    txn.executemany("DELETE FROM agent WHERE id = ?", [(n,) for n in removed])
    txn.executemany(
        "UPDATE agent SET name = ?, ip = ?, register_ip = ?, internal_key = ? "
        "WHERE id = ?",
        [
            (wanted[n].name, wanted[n].ip, wanted[n].ip, wanted[n].key, n)
            for n in changed
        ],
    )
    insertAgents(
        txn, [(n, wanted[n].name, wanted[n].ip, wanted[n].key) for n in added], now
    )
    applyPendingGroups(txn, added)
    return [formatAgentId(n) for n in added], [formatAgentId(n) for n in removed]
