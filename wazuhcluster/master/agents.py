# -*- test-case-name: tests.test_agent_sync -*-
"""
The master's agents, outside any connection: the agent store brought in line
with C{client.keys} at start, and the agent parts of control (C{-a}, active
agent counts).
"""

from twisted.application.service import Service
from twisted.internet.defer import DeferredList

from wazuhcluster.agentdb import CONNECTION_STATUSES
from wazuhcluster.agentsync import reconcileClientKeys
from wazuhcluster.commands import ControlFailed


class MasterAgents(Service):
    """
    Control queries on the master's agent store, and its reconcile with
    C{client.keys} at start.
    """

    name = "agents"

    def __init__(self, master, store):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        """
        self.master = master
        self.store = store
        self.log = master.log
        self._reconciling = None

    def startService(self):
        super().startService()
        # A master candidate reconciles when it becomes active: a standby
        # never writes the shared store.
        if self.master.standby is None:
            self._reconciling = self.reconcileClientKeys()

    def stopService(self):
        super().stopService()
        return self._reconciling

    def reconcileClientKeys(self):
        """
        Bring the store in line with C{client.keys} (new agents added,
        removed ones deleted).

        @return: a Deferred firing with the store, or L{None} when it is not
            open (never failing: errors are logged).
        """
        return self.store.get().addCallbacks(self._reconcile, lambda _: None)

    def _reconcile(self, store):
        d = reconcileClientKeys(store, self.master.home.clientKeys,
                                self.master.runInThread, self.log)
        return d.addCallback(lambda _: store)

    def activeAgentCounts(self, names):
        """
        @return: a Deferred firing with the number of active agents per
            node name in C{names}.
        """
        def count(store):
            return DeferredList([store.countActiveAgents(name) for name in names],
                                fireOnOneErrback=True, consumeErrors=True)

        d = self.store.get().addCallback(count)
        d.addCallback(lambda results: {name: n for name, (_, n) in zip(names, results)})
        return d

    def listAgents(self, arguments):
        """
        The agents of the master's store, filtered by C{node_names} and
        C{statuses} when given.

        @return: a Deferred firing with C{{"agents": [...]}}.
        """
        nodes = _stringList(arguments, "node_names")
        statuses = _stringList(arguments, "statuses")
        unknown = sorted(set(statuses) - set(CONNECTION_STATUSES))
        if unknown:
            raise ControlFailed(
                f"Error 1000 - Invalid agent status {unknown[0]!r}: expected one of "
                + ", ".join(CONNECTION_STATUSES))

        def select(agents):
            return {"agents": [
                agent for agent in agents
                if (not nodes or agent["node_name"] in nodes)
                and (not statuses or agent["status"] in statuses)]}

        return self.store.get().addCallback(lambda store: store.listAgents()) \
            .addCallback(select)


def _stringList(arguments, key):
    values = arguments.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ControlFailed(f"Error 3038 - {key} must be a list of strings")
    return values
