# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent groups receive (worker side): gathers the chunks of a batch of
assignments from the master, applies the batch in one transaction when its
final chunk arrives, and compares this node's global group hash with the
master's. After C{worker.agent_groups_mismatch_limit} incremental batches
in a row whose hash differs, asks the master for the whole table
(L{RequestFullAgentGroups}).
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols import amp
from zope.interface import implementer

from wazuhcluster.agentsync import MalformedChunk, decodeAgentGroups
from wazuhcluster.commands import RequestFullAgentGroups, SendAgentGroups, SyncAborted
from wazuhcluster.session import IFeature, IFeatureSession

#: The most assignments one batch may hold (a master with more agents sends
#: several batches).
MAX_BATCH_ROWS = 250_000

#: The most chunks one batch may have.
MAX_BATCH_CHUNKS = 5_000


class _Batch:
    def __init__(self, full, started):
        self.full = full
        self.started = started
        self.rows = []
        self.chunks = 0


@implementer(IFeatureSession)
class AgentGroupsRecvSession(amp.CommandLocator):
    """
    The Agent-groups recv task on one connection to the master.

    @ivar mismatches: incremental batches in a row whose hash differed.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.worker = feature.worker
        self.peer = peer
        self.locator = self
        self.mismatches = 0
        self.log = feature.worker.log.withSubtag("Agent-groups recv")
        self.logFull = feature.worker.log.withSubtag("Agent-groups recv full")
        self._batch = None
        self._applying = None
        self._stopped = False

    def start(self):
        self.feature.current = self

    def stop(self):
        self._stopped = True
        self._batch = None
        if self.feature.current is self:
            self.feature.current = None
        if self._applying is None:
            return succeed(None)
        follower = Deferred()
        self._applying.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    def health(self):
        return {}

    @SendAgentGroups.responder
    def sendAgentGroups(self, data, version, hash, full, final):
        """
        One chunk of a batch.

        @return: C{{"hash_matches": ...}} (a L{Deferred} of it for a final
            chunk).
        @raise SyncAborted: the chunk is malformed or out of order, or the
            batch could not be stored; the batch is dropped.
        """
        log = self.logFull if full else self.log
        if self._stopped:
            raise SyncAborted("Error 3023 - The connection is closing")
        if self._applying is not None:
            self._abort(log, "a batch arrived while the previous one was being applied")
        try:
            rows = decodeAgentGroups(data)
        except MalformedChunk as e:
            self._abort(log, f"malformed agent-groups chunk: {e}")
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch(full, self.worker.clock.seconds())
            log.info("Starting.")
        elif batch.full != full:
            self._abort(log, "a chunk of another batch arrived before the end of the "
                             "previous one")
        if len(batch.rows) + len(rows) > MAX_BATCH_ROWS or batch.chunks >= MAX_BATCH_CHUNKS:
            self._abort(log, f"a batch of more than {MAX_BATCH_ROWS} assignments or "
                             f"{MAX_BATCH_CHUNKS} chunks")
        batch.rows.extend(rows)
        batch.chunks += 1
        if not final:
            return {"hash_matches": False}
        self._batch = None
        d = self.feature.store.get()
        d.addCallback(self._apply, batch, hash, log)
        d.addErrback(self._storeFailed, log)
        self._applying = d
        d.addBoth(self._applied)
        return d

    def _applied(self, result):
        self._applying = None
        return result

    def _apply(self, store, batch, masterHash, log):
        d = store.applyGroupAssignments(batch.rows, batch.full)
        d.addCallback(lambda _: store.globalGroupHash())
        d.addCallback(self._compare, batch, masterHash, log)
        return d

    def _storeFailed(self, failure, log):
        if failure.check(SyncAborted):
            return failure
        self._abort(log, f"Error applying agent-groups information: "
                         f"{failure.getErrorMessage()}")

    def _compare(self, localHash, batch, masterHash, log):
        log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                 elapsed=self.worker.clock.seconds() - batch.started, chunks=batch.chunks)
        if localHash == masterHash:
            self.mismatches = 0
            return {"hash_matches": True}
        if batch.full:
            # The whole table was applied: the difference can only come from
            # agents this node's client.keys does not list yet.
            log.debug("Checksum comparison failed after a full synchronization.")
            return {"hash_matches": False}
        limit = self.worker.items.worker.agent_groups_mismatch_limit
        self.mismatches += 1
        log.debug("Checksum comparison failed ({count}/{limit}).",
                  count=self.mismatches, limit=limit)
        if self.mismatches >= limit:
            self.mismatches = 0
            self.requestFull(log)
        return {"hash_matches": False}

    def requestFull(self, log):
        """
        Ask the master for its whole assignment table.
        """
        d = maybeDeferred(self.peer.callRemote, RequestFullAgentGroups)
        d.addCallbacks(
            lambda _: log.info("Sent request to obtain all agent-groups information "
                               "from the master node."),
            lambda failure: log.error("Error requesting all agent-groups information: "
                                      "{error}", error=failure.getErrorMessage()))
        return d

    def _abort(self, log, reason):
        self._batch = None
        log.error("{reason}", reason=reason)
        raise SyncAborted(reason)


@implementer(IFeature)
class WorkerAgentGroups(Service):
    """
    The worker's agent-groups feature.
    """

    name = "agent-groups"

    def __init__(self, worker, store):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        """
        self.worker = worker
        self.store = store
        self.current = None

    def sessionFor(self, peer):
        return AgentGroupsRecvSession(self, peer)
