# -*- test-case-name: tests.test_agent_sync -*-
"""
The master's agents feature: owns the master's agent database and the three
agent tasks of the master (Agent-info sync receive, Local agent-groups,
Agent-groups send), and answers the agent parts of control (C{-a}, active
agent counts).
"""

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList, maybeDeferred

from wazuhcluster.agentdb import CONNECTION_STATUSES
from wazuhcluster.agentsync import DatabaseSlot, reconcileClientKeys
from wazuhcluster.commands import ControlFailed
from wazuhcluster.master.agent_groups_send import AgentGroupsSender
from wazuhcluster.master.agent_info import AgentInfoReceiver
from wazuhcluster.master.local_agent_groups import LocalAgentGroups


class _Locators:
    """
    Several command locators consulted in turn.
    """

    def __init__(self, locators):
        self.locators = locators

    def locateResponder(self, name):
        for locator in self.locators:
            responder = locator.locateResponder(name)
            if responder is not None:
                return responder
        return None


class MasterAgents(MultiService):
    """
    The agents feature of a L{wazuhcluster.master.server.MasterService}
    (installed as C{master.agents}).

    @ivar slot: the L{DatabaseSlot} of the master's agent database.
    @ivar localGroups: the L{LocalAgentGroups} task (its C{cache}).
    @ivar sender: the L{AgentGroupsSender}.
    @ivar receiver: the L{AgentInfoReceiver}.
    """

    name = "agents"

    def __init__(self, master, database=None):
        """
        @param database: an already open
            L{wazuhcluster.agentdb.AgentDatabase} to use (and not close)
            instead of opening C{queue/db/global.db} at start.
        """
        super().__init__()
        self.master = master
        self.log = master.log
        self.slot = DatabaseSlot(database)
        self.receiver = AgentInfoReceiver(master, self.slot.get)
        self.localGroups = LocalAgentGroups(master, self.slot.get, self._refreshed)
        self.localGroups.setServiceParent(self)
        self.sender = AgentGroupsSender(master, self.localGroups.cache)
        master.agents = self

    def startService(self):
        d = self.slot.open(self.master.home.globalDb, self.master.reactor,
                           self.master.config.node_name, self.log)
        d.addCallback(lambda _: self.reconcileClientKeys())
        super().startService()

    def stopService(self):
        d = maybeDeferred(super().stopService)
        d.addBoth(lambda _: self.slot.release())
        return d

    def reconcileClientKeys(self):
        """
        Bring the database in line with C{client.keys} (new agents added,
        removed ones deleted); done at start.

        @return: a L{Deferred} firing with the database, or L{None} when it
            is not open (never failing: errors are logged).
        """
        return self.slot.get().addCallbacks(self._reconcile, lambda _: None)

    def _reconcile(self, database):
        d = reconcileClientKeys(database, self.master.home.clientKeys,
                                self.master.runInThread, self.log)
        return d.addCallback(lambda _: database)

    # -- feature hooks ---------------------------------------------------------

    def locatorFor(self, connection):
        return _Locators([self.receiver.locatorFor(connection),
                          self.sender.locatorFor(connection)])

    def workerConnected(self, connection):
        self.sender.workerConnected(connection)

    def workerDisconnected(self, connection):
        self.receiver.workerDisconnected(connection)
        self.sender.workerDisconnected(connection)

    def _refreshed(self):
        self.sender.cacheRefreshed()

    def refreshGroups(self, arguments=None):
        """
        Refresh the agent-groups cache now (and send the changes), e.g.
        after C{wazuh-cluster agent group} changed an assignment.

        @return: a L{Deferred} firing with C{{"refreshed": True}}.
        """
        return self.localGroups.refresh().addCallback(lambda _: {"refreshed": True})

    # -- control ---------------------------------------------------------------

    def activeAgentCounts(self):
        """
        @return: a L{Deferred} firing with the number of active agents per
            node name (the master and every connected worker).
        """
        names = [self.master.config.node_name] + sorted(self.master.workers)

        def count(database):
            return DeferredList(
                [database.countActiveAgents(name) for name in names], fireOnOneErrback=True,
                consumeErrors=True)

        d = self.slot.get().addCallback(count)
        d.addCallback(lambda results: {name: n for name, (_, n) in zip(names, results)})
        return d

    def listAgents(self, arguments):
        """
        The agents of the master's database, filtered by C{node_names} and
        C{statuses} when given.

        @return: a L{Deferred} firing with C{{"agents": [...]}}.
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

        return self.slot.get().addCallback(lambda database: database.listAgents()) \
            .addCallback(select)


def _stringList(arguments, key):
    values = arguments.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ControlFailed(f"Error 3038 - {key} must be a list of strings")
    return values


def makeMasterAgents(master):
    """
    The feature factory of L{wazuhcluster.master.features.masterFeatures}.
    """
    return MasterAgents(master)
