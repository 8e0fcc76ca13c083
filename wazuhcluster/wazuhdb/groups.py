# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
Group assignments read from wazuh-db, with the versions and hashes the
agent store promises (L{wazuhcluster.agentstore.IAgentStore.groupSnapshot},
C{globalGroupHash}); wazuh-db has neither versions nor our hash.

  - L{GroupTable} (master): every assignment with the version of its last
    change. Versions start from the clock (milliseconds) at each start, so
    they keep growing across restarts, as workers expect.
  - L{storeHash}: the hash the SQLite store computes
    (L{wazuhcluster.agentdb.AgentDatabase.globalGroupHash}): SHA-1 over
    C{"<id>:<group_hash>\\n"} of every agent with a group, by ID, so nodes
    on either backend compare equal when they hold the same assignments.
  - L{wazuhHash}: wazuh-db's own global hash (SHA-1 over its
    C{group_hash}es, SHA-256 prefixes of the groups), to notice that the
    table no longer matches wazuh-db.
"""

import hashlib

from wazuhcluster.agentdb import groupHash
from wazuhcluster.clientkeys import formatAgentId
from wazuhcluster.grouphash import globalHash


def storeHash(assignments):
    """
    @param assignments: C{{number: [group, ...]}}.
    @return: the hex digest, or L{None} when no agent has a group.
    """
    return globalHash((number, groupHash(groups)) for number, groups in assignments.items()
                      if groups)


def wazuhGroupHash(groups):
    """
    wazuh-db's C{group_hash} of one agent.
    """
    if not groups:
        return None
    return hashlib.sha256(",".join(groups).encode("utf-8")).hexdigest()[:8]


def wazuhHash(assignments):
    """
    wazuh-db's global hash of C{assignments}, L{None} when no agent has a
    group.
    """
    hashes = [wazuhGroupHash(assignments[n]) for n in sorted(assignments) if assignments[n]]
    return hashlib.sha1("".join(hashes).encode("ascii")).hexdigest() if hashes else None


class GroupTable:
    """
    Every assignment, by agent number, with the version of its last change.

    @ivar version: the current version (that of the last change).
    @ivar loaded: whether a whole table was read.
    """

    def __init__(self, firstVersion):
        self.version = firstVersion
        self.loaded = False
        self._groups = {}
        self._versions = {}

    def _set(self, number, groups, version):
        if self._groups.get(number) != groups:
            self._groups[number] = groups
            self._versions[number] = version
            return True
        return False

    def replace(self, assignments):
        """
        Take the whole table: changed and new agents get a new version,
        agents gone are dropped.

        @param assignments: C{{number: [group, ...]}}.
        @return: whether anything changed.
        """
        version = self.version + 1
        changed = False
        for number in list(self._groups):
            if number not in assignments:
                del self._groups[number]
                del self._versions[number]
                changed = True
        for number, groups in assignments.items():
            changed = self._set(number, list(groups), version) or changed
        if changed:
            self.version = version
        self.loaded = True
        return changed

    def update(self, assignments):
        """
        Take the assignments of some agents (those wazuh-db marked changed).

        @return: whether anything changed.
        """
        version = self.version + 1
        changed = False
        for number, groups in assignments.items():
            changed = self._set(number, list(groups), version) or changed
        if changed:
            self.version = version
        return changed

    def rows(self, after=None):
        """
        The assignments changed after version C{after} (all when L{None}),
        as C{(id, groups, version)} by ID.
        """
        return [
            (formatAgentId(n), list(self._groups[n]), self._versions[n])
            for n in sorted(self._groups)
            if after is None or self._versions[n] > after
        ]

    def assignments(self):
        return dict(self._groups)

    def groupedNumbers(self):
        """
        The agents with at least one group (those L{storeHash} counts).
        """
        return [number for number, groups in self._groups.items() if groups]

    def storeHash(self):
        return storeHash(self._groups)

    def wazuhHash(self):
        return wazuhHash(self._groups)
