# -*- test-case-name: tests.test_agent_sync -*-
"""
The global agent-groups hash: equal on two nodes holding the same
assignments, and updated in O(1) per assignment that changes.

It is a multiset hash: the sum, modulo 2**160, of the SHA-1 of
C{"<agent number>:<group hash>"} for every agent with a group, as 40 hex
digits (L{None} when no agent has a group).  Wazuh hashes the C{group_hash}
values alone, in ID order; the number makes swapped assignments visible, and
the sum lets the master's cache follow each change without re-hashing every
assignment.
"""

import hashlib

_MODULUS = 1 << 160


def contribution(number, groupHash):
    """
    What one agent's assignment adds to the global hash (0 without groups).
    """
    if groupHash is None:
        return 0
    line = f"{int(number)}:{groupHash}".encode("ascii")
    return int.from_bytes(hashlib.sha1(line).digest(), "big")


class GlobalHash:
    """
    A running global hash: add and remove contributions.
    """

    def __init__(self):
        self.total = 0
        self.count = 0

    def add(self, number, groupHash):
        if groupHash is not None:
            self.total = (self.total + contribution(number, groupHash)) % _MODULUS
            self.count += 1

    def remove(self, number, groupHash):
        if groupHash is not None:
            self.total = (self.total - contribution(number, groupHash)) % _MODULUS
            self.count -= 1

    @property
    def hexdigest(self):
        """
        The hash as 40 hex digits, or L{None} when no agent has a group.
        """
        if not self.count:
            return None
        return f"{self.total:040x}"


def globalHash(pairs):
    """
    The global hash of C{(number, groupHash)} pairs.
    """
    running = GlobalHash()
    for number, groupHash in pairs:
        running.add(number, groupHash)
    return running.hexdigest
