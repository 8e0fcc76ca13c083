# -*- test-case-name: tests.test_agentdb -*-
"""
The schema of the agent database and its migrations, for both engines: the
C{CREATE} statements are templates whose types the dialect fills in (see
L{wazuhcluster.agentdb.dialect}); on SQLite they render to exactly the
schema of version 1 as first shipped.

The schema is modelled on wazuh-db's C{global.db} (WAZUH.md sections 4.5
and 4.6): C{agent} (with the sync state of agent info and of groups),
C{labels}, C{"group"}, C{belongs}; plus C{metadata} (schema version and the
global group-version counter) and C{pending_groups} (assignments a worker
received before its C{client.keys} listed the agent).
"""

from wazuhcluster.agentdb.transactions import reads, writes
from wazuhcluster.errors import ClusterError

#: The schema version this code creates and expects.
SCHEMA_VERSION = 1

#: The tables, in the order they are created (and copied).
TABLES = ("metadata", "agent", "labels", "group", "belongs", "pending_groups")

_SCHEMA_V1 = [
    """CREATE TABLE metadata (
        key {text} PRIMARY KEY,
        value {value}
    )""",
    """CREATE TABLE agent (
        id {int} PRIMARY KEY,
        name {text} NOT NULL,
        ip {text},
        register_ip {text},
        internal_key {text},
        os_name {text},
        os_version {text},
        os_major {text},
        os_minor {text},
        os_codename {text},
        os_build {text},
        os_platform {text},
        os_uname {text},
        os_arch {text},
        version {text},
        config_sum {text},
        merged_sum {text},
        manager_host {text},
        node_name {text},
        date_add {int} NOT NULL,
        last_keepalive {int},
        connection_status {text} NOT NULL DEFAULT 'never_connected'
            CHECK (connection_status IN
                   ('never_connected', 'pending', 'active', 'disconnected')),
        disconnection_time {int} NOT NULL DEFAULT 0,
        status_code {int} NOT NULL DEFAULT 0,
        sync_status {text} NOT NULL DEFAULT 'synced'
            CHECK (sync_status IN ('synced', 'syncreq')),
        sync_version {int} NOT NULL DEFAULT 0,
        "group" {text},
        group_hash {text},
        group_sync_status {text} NOT NULL DEFAULT 'synced'
            CHECK (group_sync_status IN ('synced', 'syncreq')),
        group_version {int} NOT NULL DEFAULT 0
    ){frequentUpdates}""",
    "CREATE INDEX agent_name ON agent (name)",
    "CREATE INDEX agent_syncreq ON agent (id) WHERE sync_status = 'syncreq'",
    "CREATE INDEX agent_group_version ON agent (group_version)",
    """CREATE TABLE labels (
        id {int} NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        key {text} NOT NULL,
        value {text} NOT NULL,
        PRIMARY KEY (id, key)
    ){withoutRowid}""",
    """CREATE TABLE "group" (
        id {serial},
        name {text} NOT NULL UNIQUE
    )""",
    """CREATE TABLE belongs (
        id_agent {int} NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
        id_group {int} NOT NULL REFERENCES "group" (id) ON DELETE CASCADE,
        priority {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (id_agent, id_group)
    ){withoutRowid}""",
    "CREATE INDEX belongs_group ON belongs (id_group)",
    # Assignments a worker received for agents its client.keys does not list
    # yet; applied when reconcileClientKeys adds them.
    """CREATE TABLE pending_groups (
        id {int} PRIMARY KEY,
        "group" {text},
        group_version {int} NOT NULL
    )""",
]


def schemaVersion(txn):
    """
    The schema version of an open database (0 when it is empty).
    """
    txn.execute(txn.dialect.tableExists, ("metadata",))
    if txn.fetchone() is None:
        return 0
    txn.execute("SELECT value FROM metadata WHERE key = 'db_version'")
    value = txn.value()
    return int(value) if value is not None else 0


def _migrateTo1(txn, managerName, now):
    """
    Create the first schema and the manager's row, agent C{000}.
    """
    for template in _SCHEMA_V1:
        txn.execute(txn.dialect.schema(template))
    txn.executemany(
        "INSERT INTO metadata (key, value) VALUES (?, ?)",
        [("db_version", 0), ("group_version", 0)],
    )
    txn.execute(
        "INSERT INTO agent (id, name, ip, register_ip, date_add, "
        "connection_status) VALUES (0, ?, '127.0.0.1', '127.0.0.1', ?, 'active')",
        (managerName, now),
    )


#: C{_MIGRATIONS[n]} takes a database from version C{n} to C{n + 1}.
_MIGRATIONS = {0: _migrateTo1}


def migrate(txn, managerName, now):
    """
    Create or upgrade the schema to L{SCHEMA_VERSION}, in the caller's
    (writing) transaction.

    @return: the version found before migrating.
    @raise ClusterError: the database was written by a newer version.
    """
    found = schemaVersion(txn)
    if found > SCHEMA_VERSION:
        raise ClusterError(
            f"Agent database schema version {found} is newer than the "
            f"supported version {SCHEMA_VERSION}",
            2000,
        )
    for version in range(found, SCHEMA_VERSION):
        _MIGRATIONS[version](txn, managerName, now)
    if found != SCHEMA_VERSION:
        txn.execute(
            "UPDATE metadata SET value = ? WHERE key = 'db_version'",
            (SCHEMA_VERSION,),
        )
    return found


txnMigrate = writes(migrate)


@reads
def txnMetadata(txn, key):
    txn.execute("SELECT value FROM metadata WHERE key = ?", (key,))
    return txn.value()


@reads
def txnJournalMode(txn):
    query = txn.dialect.journalMode
    if query is None:
        return None
    txn.execute(query)
    return txn.value()
