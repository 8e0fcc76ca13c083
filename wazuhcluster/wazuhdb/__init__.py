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
    (L{wazuhcluster.agentstore.IAgentStore}) on top of wazuh-db.

What wazuh-db and authd 4.14.7 answered here is recorded in
C{/work/shared/wazuh-peers/}; C{tests/standins} answers the same way.
"""
