# -*- test-case-name: tests.test_agentdb_agentinfo -*-
"""
Agent info (worker to master, WAZUH.md section 4.5).

  - On a worker, L{txnReportAgent} marks a row C{sync_status='syncreq'} and
    bumps its C{sync_version}; L{txnAgentInfoToSync} reads the marked rows
    with their versions; once the master acknowledged them,
    L{txnMarkSynced} marks synced only the rows whose version is unchanged,
    so a row reported again during a sync stays marked.
  - On the master, L{txnApplyAgentInfo} stores the rows of the agents it
    knows, counts the others, and gives the default group to an agent seen
    active that never had a group assignment.  A column a row does not
    carry keeps its stored value (a text column is cleared only by an
    explicit null, an integer one never).  Given an
    L{wazuhcluster.agentdb.ownership.OwnershipRule}, it stores only the
    rows of agents the reporting worker may report, in the same
    transaction that reads their owners.
"""

from wazuhcluster.agentdb.groups import assignGroups, batches
from wazuhcluster.agentdb.management import requireAgent
from wazuhcluster.agentdb.ownership import MOVE, REFUSE, ApplyOutcome
from wazuhcluster.agentdb.transactions import reads, writes
from wazuhcluster.agentdb.values import (
    AGENT_INFO_FIELDS,
    CONNECTION_STATUSES,
    DEFAULT_GROUP,
    INT_FIELDS,
    OS_FIELDS,
    STATUS_INDEX,
    AgentInfo,
    agentInfoParams,
)
from wazuhcluster.clientkeys import formatAgentId, parseAgentId
from wazuhcluster.errors import ClusterError

# ---------------------------------------------------------------------------
# Worker side


def reportAssignments(status, os, version, nodeName, now):
    """
    The columns (and values) one report sets.

    @raise ClusterError: 1000 for an invalid status.
    @raise ValueError: an unknown OS field.
    """
    if status not in CONNECTION_STATUSES:
        raise ClusterError(
            f"Invalid agent status {status!r}: expected one of "
            + ", ".join(CONNECTION_STATUSES),
            1000,
        )
    columns = {"connection_status": status, "status_code": 0}
    if status == "active":
        columns["last_keepalive"] = now
    elif status == "disconnected":
        columns["disconnection_time"] = now
    for key, value in (os or {}).items():
        if key not in OS_FIELDS:
            raise ValueError(f"unknown OS field {key!r}")
        columns[key] = value
    if version is not None:
        columns["version"] = version
    if nodeName is not None:
        columns["node_name"] = nodeName
    return columns


@writes
def txnReportAgent(txn, number, columns, labels):
    requireAgent(txn, number)
    assignments = ", ".join(f"{name} = ?" for name in columns)
    txn.execute(
        f"UPDATE agent SET {assignments}, sync_status = 'syncreq', "
        "sync_version = sync_version + 1 WHERE id = ?",
        (*columns.values(), number),
    )
    if labels is not None:
        replaceLabels(txn, [(number, labels)])
    txn.execute("SELECT sync_version FROM agent WHERE id = ?", (number,))
    return txn.value()


def replaceLabels(txn, pairs):
    """
    Replace the labels of agents: C{(number, {key: value})}, numbers
    unique.
    """
    for batch in batches([n for n, _ in pairs]):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(f"DELETE FROM labels WHERE {condition}", params)
    txn.dialect.insertMany(
        txn,
        "labels",
        _LABEL_COLUMNS,
        [(n, key, value) for n, labels in pairs for key, value in labels.items()],
    )


_SYNC_COLUMNS = "id, sync_version, " + ", ".join(AGENT_INFO_FIELDS)


@reads
def txnAgentInfoToSync(txn, limit, after):
    query = (
        f"SELECT {_SYNC_COLUMNS} FROM agent "
        "WHERE sync_status = 'syncreq' AND id > ? ORDER BY id"
    )
    if limit is None:
        txn.execute(query, (after,))
    else:
        txn.execute(query + " LIMIT ?", (after, limit))
    rows = txn.fetchall()
    if not rows:
        return []
    txn.execute(
        "SELECT l.id, l.key, l.value FROM labels l JOIN agent a ON a.id = l.id "
        "WHERE a.sync_status = 'syncreq' AND a.id > ? AND a.id <= ?",
        (after, rows[-1][0]),
    )
    labels = {}
    for n, key, value in txn.fetchall():
        labels.setdefault(n, {})[key] = value
    return [_syncRow(row, labels.get(row[0], {})) for row in rows]


def _syncRow(row, labels):
    result = dict(zip(AGENT_INFO_FIELDS, row[2:]))
    result["id"] = formatAgentId(row[0])
    result["sync_version"] = row[1]
    result["labels"] = labels
    return result


@writes
def txnMarkSynced(txn, pairs):
    return txn.executemany(
        "UPDATE agent SET sync_status = 'synced' "
        "WHERE id = ? AND sync_version = ? AND sync_status = 'syncreq'",
        [(parseAgentId(agentId), version) for agentId, version in pairs],
    )


# ---------------------------------------------------------------------------
# Master side

#: The statement storing one agent-info row: a L{None} integer keeps the
#: stored value (what L{txnApplyAgentInfo} runs, per row on SQLite).
APPLY_SQL = (
    "UPDATE agent SET "
    + ", ".join(
        f"{name} = COALESCE(?, {name})" if name in INT_FIELDS else f"{name} = ?"
        for name in AGENT_INFO_FIELDS
    )
    + ", node_name = ? WHERE id = ?"
)

_APPLY_COLUMNS = tuple(
    (name, "BIGINT" if name in INT_FIELDS else "TEXT") for name in AGENT_INFO_FIELDS
) + (("node_name", "TEXT"),)

_LABEL_COLUMNS = (("id", "BIGINT"), ("key", "TEXT"), ("value", "TEXT"))

_INT_POSITIONS = tuple(
    index for index, name in enumerate(AGENT_INFO_FIELDS) if name in INT_FIELDS
)


def _merged(parsed):
    """
    The rows of one batch, one per agent (of the agents that are not the
    manager), by number: an agent's later row wins for the columns it
    carries, but a L{None} integer in it keeps the earlier row's value, as
    storing them one after the other would; its labels are those of its
    last row that has labels.

    @return: C{{number: AgentInfo}}.
    """
    rows = {row.number: row for row in parsed}
    if len(rows) == len(parsed) and 0 not in rows:
        return rows
    rows = {}
    for row in parsed:
        if row.number <= 0:
            continue
        earlier = rows.get(row.number)
        if earlier is not None:
            values = list(row.values)
            for index, name in enumerate(AGENT_INFO_FIELDS):
                absent = row.carried is not None and name not in row.carried
                if absent or (index in _INT_POSITIONS and values[index] is None):
                    values[index] = earlier.values[index]
            carried = (None if row.carried is None or earlier.carried is None
                       else row.carried | earlier.carried)
            labels = earlier.labels if row.labels is None else row.labels
            row = AgentInfo(row.number, tuple(values), labels, carried)
        rows[row.number] = row
    return rows


def _filledIn(txn, rows):
    """
    C{rows} with every column they do not carry taken from the stored row
    (one query per batch of the partial ones; rows of honest workers carry
    every column and cost nothing).

    @param rows: L{AgentInfo}s of known agents.
    @return: the values of each row, in order.
    """
    partial = [row.number for row in rows if row.carried is not None]
    stored = {}
    for batch in batches(partial):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(f"SELECT id, {', '.join(AGENT_INFO_FIELDS)} FROM agent WHERE {condition}",
                    params)
        stored.update((found[0], found[1:]) for found in txn.fetchall())
    filled = []
    for row in rows:
        if row.carried is None:
            filled.append(row.values)
        else:
            old = stored[row.number]
            filled.append(tuple(value if name in row.carried else old[index]
                                for index, (name, value)
                                in enumerate(zip(AGENT_INFO_FIELDS, row.values))))
    return filled


def _knownAgents(txn, numbers):
    """
    Which agents of a batch this node knows, whether each has never had a
    group assignment, its node and its status.

    @return: C{{number: (newcomer, node_name, connection_status)}}.
    """
    known = {}
    for batch in batches(numbers):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(
            f'SELECT id, group_version = 0 AND "group" IS NULL, node_name, '
            f"connection_status FROM agent WHERE {condition}",
            params,
        )
        known.update((row[0], tuple(row[1:])) for row in txn.fetchall())
    return known


def _storedLabels(txn, numbers):
    """
    The labels of agents, C{{number: {key: value}}}.
    """
    labels = {n: {} for n in numbers}
    for batch in batches(numbers):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(f"SELECT id, key, value FROM labels WHERE {condition}", params)
        for number, key, value in txn.fetchall():
            labels[number][key] = value
    return labels


def _owned(known, merged, ownership):
    """
    Apply C{ownership} to the known agents of a batch.

    @return: C{(allowed, refused, moved)}: the numbers whose rows are
        stored, C{(number, owner)} refused, C{(number, previous)} moved.
    """
    if ownership is None:
        return sorted(known), (), ()
    allowed, refused, moved = [], [], []
    for number in sorted(known):
        _, node, status = known[number]
        verdict = ownership.decide(number, node, status,
                                   merged[number].values[STATUS_INDEX])
        if verdict == REFUSE:
            refused.append((number, node))
            continue
        if verdict == MOVE:
            moved.append((number, node))
        allowed.append(number)
    return allowed, tuple(refused), tuple(moved)


@writes
def txnApplyAgentInfo(txn, nodeName, rows, ownership=None):
    parsed = [
        row if isinstance(row, AgentInfo) else agentInfoParams(row) for row in rows
    ]
    merged = _merged(parsed)
    known = _knownAgents(txn, sorted(merged))
    allowed, refused, moved = _owned(known, merged, ownership)
    stored = [merged[n] for n in allowed]
    txn.dialect.updateMany(
        txn,
        "agent",
        _APPLY_COLUMNS,
        [(*values, nodeName, row.number)
         for row, values in zip(stored, _filledIn(txn, stored))],
        keep=INT_FIELDS,
    )
    # Labels are replaced only where given and changed: most reports repeat
    # them.
    given = [(row.number, row.labels) for row in stored if row.labels is not None]
    storedLabels = _storedLabels(txn, [n for n, _ in given])
    replaceLabels(txn, [(n, labels) for n, labels in given if labels != storedLabels[n]])
    allowedSet = set(allowed)
    newcomers = [n for n in allowed if known[n][0]]
    if newcomers:
        seenActive = {p.number for p in parsed
                      if p.values[STATUS_INDEX] == "active" and p.number in allowedSet}
        newcomers = sorted(n for n in newcomers if n in seenActive)
        if newcomers:
            assignGroups(txn, [(n, (DEFAULT_GROUP,)) for n in newcomers])
    if len(merged) == len(parsed) and not refused:
        updated = len(stored)
    else:
        updated = sum(1 for p in parsed if p.number in allowedSet)
    unknown = sum(1 for p in parsed if p.number not in known)
    if ownership is None:
        return updated, len(parsed) - updated
    return ApplyOutcome(updated, unknown, tuple(allowed), refused, moved)
