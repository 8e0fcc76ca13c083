# -*- test-case-name: tests.test_agent_sync -*-
"""
The worker's agents feature: owns the worker's agent database, keeps it in
line with the synced C{client.keys}, and runs the worker's two agent tasks
(Agent-info sync send, Agent-groups recv).
"""

from twisted.application.service import Service
from twisted.internet.defer import DeferredLock

from wazuhcluster.agentsync import DatabaseSlot, reconcileClientKeys
from wazuhcluster.worker.agent_groups_recv import AgentGroupsReceiver
from wazuhcluster.worker.agent_info import AgentInfoSender


class WorkerAgents(Service):
    """
    The agents feature of a L{wazuhcluster.worker.client.WorkerService}
    (installed as C{worker.agents}).

    @ivar slot: the L{DatabaseSlot} of the worker's agent database.
    @ivar sender: the L{AgentInfoSender}.
    @ivar receiver: the L{AgentGroupsReceiver}.
    """

    name = "agents"

    def __init__(self, worker, database=None):
        """
        @param database: an already open
            L{wazuhcluster.agentdb.AgentDatabase} to use (and not close)
            instead of opening C{queue/db/global.db} at start.
        """
        self.worker = worker
        self.log = worker.log
        self.slot = DatabaseSlot(database)
        self._reconciling = DeferredLock()
        self.sender = AgentInfoSender(worker, self.slot.get)
        self.receiver = AgentGroupsReceiver(worker, self.slot.get)
        worker.agents = self

    def startService(self):
        super().startService()
        d = self.slot.open(self.worker.home.globalDb, self.worker.reactor,
                           self.worker.config.node_name, self.log)
        d.addCallback(lambda _: self.clientKeysChanged())

    def stopService(self):
        super().stopService()
        self.sender.stop()
        return self.slot.release()

    # -- feature hooks -----------------------------------------------------------

    def locatorFor(self, connection):
        return self.receiver.locatorFor(connection)

    def start(self, connection):
        self.receiver.start(connection)
        self.sender.start(connection)

    def stop(self):
        self.sender.stop()
        self.receiver.stop()

    # -- client.keys -------------------------------------------------------------

    def clientKeysChanged(self):
        """
        A new C{client.keys} is in place: bring the agent database in line
        with it (new agents added, removed ones deleted, assignments that
        arrived before their agent applied). Runs one at a time.

        @return: a L{Deferred} firing with C{(added, removed)} (two lists
            of IDs), or L{None} if it failed (logged).
        """
        return self._reconciling.run(self._reconcile)

    def _reconcile(self):
        def reconcile(database):
            return reconcileClientKeys(database, self.worker.home.clientKeys,
                                       self.worker.runInThread, self.log)

        return self.slot.get().addCallbacks(reconcile, lambda failure: None)


def makeWorkerAgents(worker):
    """
    The feature factory of L{wazuhcluster.worker.features.workerFeatures}.
    """
    return WorkerAgents(worker)
