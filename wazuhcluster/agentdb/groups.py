# -*- test-case-name: tests.test_agentdb_groups -*-
"""
Agent groups: assignments, their versions, the global hash and snapshots.

Every assignment change on the master takes the next value of the global
counter C{metadata.group_version} as the agent's C{group_version} (one
value for a whole change, in the change's writing transaction, so versions
are unique and increase in commit order); L{txnGroupChangesSince} returns
what changed after a version a worker acknowledged.  Workers store the rows
with L{txnApplyGroupAssignments} (the master's versions, marked synced) and
compare L{globalGroupHash} with the master's.
"""


from wazuhcluster.agentdb.transactions import reads, writes
from wazuhcluster.agentdb.values import (
    groupHash,
    joinGroups,
    normaliseGroups,
    splitGroups,
)
from wazuhcluster.clientkeys import formatAgentId, parseAgentId
from wazuhcluster.grouphash import globalHash

#: Assignments sharing their groups and version stored with set-based
#: statements once there are at least this many of them.
SET_BASED_MIN = 16

#: Agent numbers per C{IN (...)} list (or array on PostgreSQL).
IN_BATCH = 500


def batches(numbers):
    """
    C{numbers} in slices of at most L{IN_BATCH}, for C{IN} lists.
    """
    for start in range(0, len(numbers), IN_BATCH):
        yield numbers[start : start + IN_BATCH]


def bumpGroupVersion(txn):
    """
    Take the next value of the global group-assignment counter.
    """
    txn.execute("UPDATE metadata SET value = value + 1 WHERE key = 'group_version'")
    return currentGroupVersion(txn)


def raiseGroupVersion(txn, version):
    """
    Make the global counter at least C{version} (on a worker, the highest
    version received from the master).
    """
    txn.execute(
        f"UPDATE metadata SET value = {txn.dialect.greatest('value', '?')} "
        "WHERE key = 'group_version'",
        (version,),
    )


def currentGroupVersion(txn):
    txn.execute("SELECT value FROM metadata WHERE key = 'group_version'")
    return int(txn.value())


def writeGroups(txn, assignments, syncStatus):
    """
    Store group assignments: the C{agent} columns and the C{belongs} rows.

    @param assignments: C{(number, groups, version)} for existing agents,
        groups already normalised.
    @param syncStatus: the C{group_sync_status} to set.
    """
    if not assignments:
        return
    names = sorted({name for _, groups, _ in assignments for name in groups})
    txn.executemany(
        'INSERT INTO "group" (name) VALUES (?) ON CONFLICT DO NOTHING',
        [(g,) for g in names],
    )
    # Many agents getting the same groups in one change (the default group
    # of agents seen for the first time, a group change of many agents):
    # a few statements over IN lists instead of statements per agent.
    shared = {}
    for n, groups, version in assignments:
        shared.setdefault((tuple(groups), version), []).append(n)
    single = []
    for (groups, version), numbers in shared.items():
        if len(numbers) < SET_BASED_MIN:
            single.extend((n, groups, version) for n in numbers)
        else:
            _writeSharedGroups(txn, sorted(numbers), groups, version, syncStatus)
    if not single:
        return
    txn.executemany(
        'UPDATE agent SET "group" = ?, group_hash = ?, group_version = ?, '
        "group_sync_status = ? WHERE id = ?",
        [
            (joinGroups(groups), groupHash(groups), version, syncStatus, n)
            for n, groups, version in single
        ],
    )
    txn.executemany(
        "DELETE FROM belongs WHERE id_agent = ?", [(n,) for n, _, _ in single]
    )
    txn.executemany(
        "INSERT INTO belongs (id_agent, id_group, priority) "
        'SELECT ?, id, ? FROM "group" WHERE name = ?',
        [
            (n, priority, name)
            for n, groups, _ in single
            for priority, name in enumerate(groups)
        ],
    )


def _writeSharedGroups(txn, numbers, groups, version, syncStatus):
    """
    Store the same C{groups} and C{version} for every agent of C{numbers}.
    """
    column, hashed = joinGroups(groups), groupHash(groups)
    groupIds = []
    for name in groups:
        txn.execute('SELECT id FROM "group" WHERE name = ?', (name,))
        groupIds.append(txn.value())
    for batch in batches(numbers):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(
            'UPDATE agent SET "group" = ?, group_hash = ?, group_version = ?, '
            f"group_sync_status = ? WHERE {condition}",
            (column, hashed, version, syncStatus, *params),
        )
        condition, params = txn.dialect.matching("id_agent", batch)
        txn.execute(f"DELETE FROM belongs WHERE {condition}", params)
        condition, params = txn.dialect.matching("id", batch)
        for priority, groupId in enumerate(groupIds):
            txn.execute(
                "INSERT INTO belongs (id_agent, id_group, priority) "
                f"SELECT id, ?, ? FROM agent WHERE {condition}",
                (groupId, priority, *params),
            )


def assignGroups(txn, pairs):
    """
    Change the groups of agents on the master: one new global version for
    the whole change, marked C{syncreq}.

    @param pairs: C{(number, groups)}, groups already normalised.
    @return: the new version.
    """
    version = bumpGroupVersion(txn)
    writeGroups(
        txn, [(n, groups, version) for n, groups in pairs], syncStatus="syncreq"
    )
    return version


def knownAgents(txn, numbers):
    """
    Which of C{numbers} are agents of this node (never 000).

    @rtype: L{set}
    """
    wanted = sorted({n for n in numbers if n > 0})
    known = set()
    for batch in batches(wanted):
        condition, params = txn.dialect.matching("id", batch)
        txn.execute(f"SELECT id FROM agent WHERE {condition}", params)
        known.update(row[0] for row in txn.fetchall())
    return known


def allAgents(txn):
    """
    The numbers of every agent but the manager.
    """
    txn.execute("SELECT id FROM agent WHERE id > 0")
    return {row[0] for row in txn.fetchall()}


@writes
def txnSetGroupsOfAgents(txn, numbers, groups):
    """
    Give C{groups} to every agent of C{numbers} that exists, in one change.

    @return: C{(version, changed)}: the new version and how many agents
        were changed.
    """
    known = sorted(knownAgents(txn, numbers))
    return assignGroups(txn, [(n, groups) for n in known]), len(known)


def _assignmentRows(txn, where, params=()):
    txn.execute(
        f'SELECT id, "group", group_version FROM agent WHERE id > 0 {where} '
        "ORDER BY id",
        params,
    )
    # Rows of the same groups share one list (100 000 agents hold a few
    # hundred distinct ones): read, never changed, by every caller.
    shared = {}
    rows = []
    for n, groups, version in txn.fetchall():
        listed = shared.get(groups)
        if listed is None:
            listed = shared[groups] = splitGroups(groups)
        rows.append((formatAgentId(n), listed, version))
    return rows


def _changesSince(txn, version):
    if version is None:
        return _assignmentRows(txn, "")
    return _assignmentRows(txn, "AND group_version > ?", (version,))


@reads
def txnGroupChangesSince(txn, version):
    return _changesSince(txn, version), currentGroupVersion(txn)


@reads
def txnAllGroupAssignments(txn):
    return _changesSince(txn, None), currentGroupVersion(txn)


def globalGroupHash(txn):
    """
    The global hash of every agent's assignment (L{wazuhcluster.grouphash}:
    a multiset hash the master's cache follows in O(1) per change); L{None}
    when no agent has a group.
    """
    txn.execute(
        "SELECT id, group_hash FROM agent WHERE id > 0 AND group_hash IS NOT NULL"
    )
    return globalHash(txn.fetchall())


@reads
def txnGroupedAgentNumbers(txn):
    txn.execute("SELECT id FROM agent WHERE id > 0 AND group_hash IS NOT NULL")
    return [row[0] for row in txn.fetchall()]


@reads
def txnGlobalGroupHash(txn):
    return globalGroupHash(txn)


@reads
def txnGroupSnapshot(txn, version):
    """
    The changes after C{version} (every assignment when L{None}), the
    current version and the global hash, read in one transaction: one
    consistent snapshot, even while agent info assigns groups.
    """
    return (
        _changesSince(txn, version),
        currentGroupVersion(txn),
        globalGroupHash(txn),
    )


def parseAssignments(rows):
    """
    Validate group assignment rows received from the master.

    @return: C{(number, groups, version)} with normalised groups.
    @raise ValueError: a row is malformed.
    @raise ClusterError: a group name is invalid.
    """
    parsed = []
    for agentId, groups, version in rows:
        if not isinstance(version, int) or version < 0:
            raise ValueError(f"invalid group version {version!r}")
        number = parseAgentId(agentId)
        if number == 0:
            raise ValueError("agent 000 has no groups")
        parsed.append((number, normaliseGroups(groups), version))
    return parsed


@writes
def txnApplyGroupAssignments(txn, rows, full):
    assignments = parseAssignments(rows)
    if full:
        known = allAgents(txn)
    else:
        known = knownAgents(txn, [a[0] for a in assignments])
    applied = [a for a in assignments if a[0] in known]
    pending = [a for a in assignments if a[0] not in known]
    if full:
        txn.execute("DELETE FROM pending_groups")
        present = {a[0] for a in assignments}
        top = max((a[2] for a in assignments), default=0)
        applied += [(n, (), top) for n in sorted(known - present)]
    writeGroups(txn, applied, syncStatus="synced")
    txn.executemany(
        'INSERT INTO pending_groups (id, "group", group_version) VALUES (?, ?, ?) '
        'ON CONFLICT (id) DO UPDATE SET "group" = excluded."group", '
        "group_version = excluded.group_version",
        [(n, joinGroups(groups), version) for n, groups, version in pending],
    )
    if assignments:
        raiseGroupVersion(txn, max(a[2] for a in assignments))
    return len(assignments) - len(pending), len(pending)


def applyPendingGroups(txn, numbers):
    """
    Apply assignments received before the agents they name were known.
    """
    if not numbers:
        return
    txn.execute('SELECT id, "group", group_version FROM pending_groups')
    wanted = set(numbers)
    pending = [
        (n, tuple(splitGroups(groups)), version)
        for n, groups, version in txn.fetchall()
        if n in wanted
    ]
    writeGroups(txn, pending, syncStatus="synced")
    txn.executemany(
        "DELETE FROM pending_groups WHERE id = ?", [(n,) for n, _, _ in pending]
    )
