# -*- test-case-name: tests.test_agent_sync -*-
"""
The worker's agents outside any connection: its agent store kept in line
with the synced C{client.keys} (at start, and after each integrity round that
changed the file).
"""

from twisted.application.service import Service
from twisted.internet.defer import DeferredLock

from wazuhcluster.agentsync import reconcileClientKeys


class WorkerAgents(Service):
    """
    Reconciles C{client.keys} into the worker's agent store, one at a time.
    """

    name = "agents"

    def __init__(self, worker, store):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        """
        self.worker = worker
        self.store = store
        self.log = worker.log
        self._reconciling = DeferredLock()

    def startService(self):
        super().startService()
        self.clientKeysChanged()

    def stopService(self):
        super().stopService()
        # Wait for a reconcile in progress.
        return self._reconciling.run(lambda: None)

    def clientKeysChanged(self):
        """
        A new C{client.keys} is in place: bring the agent store in line with
        it (new agents added, removed ones deleted, assignments that arrived
        before their agent applied).

        @return: a L{Deferred} firing with C{(added, removed)}, or L{None} if
            it failed (logged).
        """
        return self._reconciling.run(self._reconcile)

    def _reconcile(self):
        def reconcile(store):
            return reconcileClientKeys(store, self.worker.home.clientKeys,
                                       self.worker.runInThread, self.log)

        return self.store.get().addCallbacks(reconcile, lambda failure: None)
