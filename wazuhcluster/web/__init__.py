# -*- test-case-name: tests.test_web -*-
"""
The operator surface of a node (DESIGN.md, "Operator surface"): a
twisted.web service (L{wazuhcluster.web.service.WebService}) with the live
status page, the Wazuh REST API's cluster endpoints, and C{/metrics}.

  - L{wazuhcluster.web.service}: the service, C{--web [ADDR:]PORT}, TLS;
  - L{wazuhcluster.web.resource}: routing, JSON answers and errors, auth;
  - L{wazuhcluster.web.wazuhapi}: C{/cluster/*} in the Wazuh API's shapes;
  - L{wazuhcluster.web.page}: C{/} and C{/status.json};
  - L{wazuhcluster.web.history}: recent log lines, syncs, workers seen;
  - L{wazuhcluster.web.auth}, L{wazuhcluster.web.passwd}: basic auth from a
    file of PBKDF2 hashes, and the command making an entry.
"""
