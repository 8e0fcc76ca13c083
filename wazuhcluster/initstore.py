# -*- test-case-name: tests.test_initstore -*-
"""
C{wazuh-cluster init --agent-store BACKEND}: record which agent store the
node uses in its C{etc/cluster.json} (C{{"agent_store": {"backend":
"wazuh-db"}}}), every other override of that file kept.

L{plannedAgentStore} checks everything before L{nodeinit} writes anything;
L{writeAgentStore} writes.
"""

import json

from attrs import frozen

from wazuhcluster.agentstoreitems import BACKENDS as AGENT_STORE_BACKENDS
from wazuhcluster.clusteritems import loadClusterItems, mergeClusterItems
from wazuhcluster.errors import ConfigError
from wazuhcluster.fsutil import atomicWrite

#: The backends init offers (PostgreSQL needs its own settings).
SQLITE = "sqlite"
WAZUH_DB = "wazuh-db"
INIT_BACKENDS = (SQLITE, WAZUH_DB)


@frozen
class AgentStorePlan:
    """
    What C{--agent-store} changes.

    @ivar content: the new C{etc/cluster.json}, or L{None} to leave it.
    @ivar change: the change, for init's report, or L{None}.
    """

    content: bytes = None
    change: str = None


def plannedAgentStore(home, backend):
    """
    What recording C{backend} in C{home} changes.

    @param backend: the C{--agent-store} value, or L{None} to keep the
        node's choice.
    @rtype: L{AgentStorePlan}
    @raise ConfigError: an unknown backend, or an C{etc/cluster.json} that
        cannot be read or would not be valid.
    """
    if backend is None:
        return AgentStorePlan()
    if backend not in INIT_BACKENDS:
        raise ConfigError(f"Invalid agent store {backend!r}: one of "
                          f"{', '.join(INIT_BACKENDS)}")
    path = home.clusterJsonOverrides
    document = {}
    current = SQLITE
    if path.exists():
        items = loadClusterItems(home)
        current = items.agentStore.backend
        document = json.loads(path.getContent().decode("utf-8-sig"))
    if current == backend:
        return AgentStorePlan()
    document.setdefault("agent_store", {})["backend"] = backend
    mergeClusterItems(document, path.path)
    content = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    return AgentStorePlan(content, f"agent store: {current} -> {backend}")


def writeAgentStore(home, plan):
    """
    Write the planned C{etc/cluster.json} (0640), if any.
    """
    if plan.content is not None:
        atomicWrite(home.clusterJsonOverrides, plan.content, 0o640)


__all__ = ["AGENT_STORE_BACKENDS", "INIT_BACKENDS", "plannedAgentStore", "writeAgentStore"]
