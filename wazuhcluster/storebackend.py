# -*- test-case-name: tests.test_storebackend -*-
"""
Which agent store a node opens, from the C{agent_store} section of its
cluster.json (L{wazuhcluster.clusteritems.AgentStoreItems}): C{sqlite} is
the node's own database (the services' default opener), C{wazuh-db} the
Wazuh manager's wazuh-db beside it (L{wazuhcluster.wazuhdb.store}).
"""

from wazuhcluster.clusteritems import POSTGRESQL, SQLITE, WAZUH_DB
from wazuhcluster.errors import ConfigError


def openWazuhDB(node):
    """
    Open the wazuh-db agent store of C{node}'s home.

    @param node: the master or worker service.
    @return: a Deferred firing with the store.
    """
    from wazuhcluster.wazuhdb.store import WazuhDBAgentStore

    return WazuhDBAgentStore.open(node.home, node.reactor,
                                  log=node.log.withSubtag("Agent store"))


def storeOpener(items):
    """
    The C{openStore} of the master or worker service for C{items}.

    @type items: L{wazuhcluster.clusteritems.ClusterItems}
    @return: a callable taking the node service, or L{None} for the
        service's own default (the SQLite database).
    @raise ConfigError: for a backend this version cannot open.
    """
    backend = items.agentStore.backend
    if backend == WAZUH_DB:
        return openWazuhDB
    if backend == SQLITE:
        return None
    if backend == POSTGRESQL:
        raise ConfigError("The postgresql agent store is not available in this version "
                          "(agent_store.backend)")
    raise ConfigError(f"Unknown agent store {backend!r} (agent_store.backend)")
