# -*- test-case-name: tests.test_agentdb,tests.test_agentdb_agentinfo,tests.test_agentdb_groups -*-
"""
The agent database: L{AgentDatabase}, the SQLite and PostgreSQL backends of
L{wazuhcluster.agentstore.IAgentStore}.

SQLite (C{queue/db/global.db}, WAL) is the embedded default of every node;
PostgreSQL is shared by the master candidates of a cluster with standby
masters (DESIGN.md, "Masters in standby").  Both hold the same schema,
modelled on the original's wazuh-db C{global.db} (WAZUH.md sections 4.5 and
4.6), follow the same version and sync-state rules and give the same
results.

Every query runs in a thread through L{twisted.enterprise.adbapi} (one
connection, so one writer per process); every method of L{AgentDatabase}
returns a L{Deferred}.  Each unit of work is an I{interaction} (a function
of a cursor, in L{transactions}) that opens its own transaction; the same
interactions run synchronously in the short-lived C{wazuh-cluster agent}
process through L{AgentDatabase.openBlocking} (or
L{AgentDatabase.openPostgresBlocking}), so the daemon and the CLI share
every line of SQL.

The package, by concern: L{values} (constants, IDs, groups, L{AgentInfo}),
L{dialect} (where the engines differ), L{connection} and L{postgres}
(pools, errors, SQLite's file), L{schema} (tables, migrations),
L{agentinfo}, L{groups}, L{management} (the interactions), L{database}
(L{AgentDatabase}: opening, lifecycle, management) with L{syncqueries}
(its methods for the cluster's syncs), L{ownership} (which worker may
report an agent), L{stores} (which store a node opens, from
C{agent_store} in cluster.json).  This module only re-exports their
public names.
"""

from wazuhcluster.agentdb.agentinfo import APPLY_SQL as _APPLY_SQL  # noqa: F401 (bench_agents)
from wazuhcluster.agentdb.connection import DATABASE_MODE, checkAgentDatabase
from wazuhcluster.agentdb.database import AgentDatabase
from wazuhcluster.agentdb.dialect import BUSY_TIMEOUT_MS, SQLITE
from wazuhcluster.agentdb.schema import SCHEMA_VERSION
from wazuhcluster.agentdb.stores import openAgentStore, openAgentStoreBlocking
from wazuhcluster.agentdb.values import (
    AGENT_INFO_FIELDS,
    CONNECTION_STATUSES,
    DEFAULT_GROUP,
    INT_FIELDS,
    MAX_GROUP_NAME_LENGTH,
    OS_FIELDS,
    AgentInfo,
    groupHash,
)

#: Kept for L{benchmarks.bench_agents}: SQLite's connection settings.
_configureConnection = SQLITE.configure

__all__ = [
    "AGENT_INFO_FIELDS",
    "BUSY_TIMEOUT_MS",
    "CONNECTION_STATUSES",
    "DATABASE_MODE",
    "DEFAULT_GROUP",
    "INT_FIELDS",
    "MAX_GROUP_NAME_LENGTH",
    "OS_FIELDS",
    "SCHEMA_VERSION",
    "AgentDatabase",
    "AgentInfo",
    "checkAgentDatabase",
    "groupHash",
    "openAgentStore",
    "openAgentStoreBlocking",
]

