# -*- test-case-name: tests.test_wazuhdb_store -*-
"""
Wazuh's local daemons as this node's agent store and enrollment service,
when it runs beside a Wazuh 4.14 manager (DESIGN.md, "Beside a Wazuh
manager"):

  - L{wazuhcluster.wazuhdb.classic}: wazuh-db's classic socket
    C{queue/db/wdb};
  - L{wazuhcluster.wazuhdb.httpapi}: wazuh-db's HTTP API on
    C{queue/sockets/wdb-http.sock};
  - L{wazuhcluster.wazuhdb.authd}: wazuh-authd's C{queue/sockets/auth};
  - L{wazuhcluster.wazuhdb.store}: the agent store
    (L{wazuhcluster.agentstore.IAgentStore}) on top of wazuh-db, with its
    parts: L{wazuhcluster.wazuhdb.commands} (the recorded commands),
    L{wazuhcluster.wazuhdb.rows} (row shapes), L{wazuhcluster.wazuhdb.pending}
    (what is kept on disk until the master acknowledges it) and
    L{wazuhcluster.wazuhdb.groups} (versions and hashes of assignments);
  - L{wazuhcluster.wazuhdb.errors}: Wazuh's codes for all of them.

What wazuh-db and authd 4.14.7 answered here is recorded in
C{/work/shared/wazuh-peers/}; C{tests/standins} answers the same way.
"""
