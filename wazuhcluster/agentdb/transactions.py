# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_agentinfo,tests.test_agentdb_groups -*-
"""
Interactions: the units of work of the agent database.

An interaction is a function of a L{wazuhcluster.agentdb.dialect.Txn} that
runs in one explicit transaction, decorated with L{reads} or L{writes}.  The
pool calls it as C{interaction(cursor, dialect, *args)} in its thread (or
at once, in a process without a reactor); the pool commits when it returns
and rolls back when it raises.
"""

import functools

from wazuhcluster.agentdb.dialect import Txn


def _transaction(write):
    def decorator(interaction):
        @functools.wraps(interaction)
        def run(cursor, dialect, *args, **kwargs):
            txn = Txn(cursor, dialect)
            dialect.begin(txn, write)
            return interaction(txn, *args, **kwargs)

        return run

    return decorator


#: An interaction that only reads: one consistent snapshot.
reads = _transaction(write=False)

#: An interaction that writes: serialised with every other writer, in every
#: process, from its first statement (so a read-then-write is never
#: interleaved with another writer).
writes = _transaction(write=True)
