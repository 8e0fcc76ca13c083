# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent groups receive (worker side): gathers the chunks of a batch of
assignments from the master, applies the batch in one transaction when its
final chunk arrives, and compares this node's global group hash with the
master's. After C{worker.agent_groups_mismatch_limit} incremental batches
in a row whose hash differs, asks the master for the whole table
(L{RequestFullAgentGroups}).
"""

from twisted.internet.defer import maybeDeferred
from twisted.protocols import amp

from wazuhcluster.agentsync import MalformedChunk, decodeAgentGroups
from wazuhcluster.commands import RequestFullAgentGroups, SendAgentGroups, SyncAborted


class _Batch:
    def __init__(self, full, started):
        self.full = full
        self.started = started
        self.rows = []
        self.chunks = 0


class _GroupsLocator(amp.CommandLocator):
    """
    The responder of L{SendAgentGroups} on the master connection.
    """

    def __init__(self, receiver, connection):
        super().__init__()
        self.receiver = receiver
        self.connection = connection

    @SendAgentGroups.responder
    def sendAgentGroups(self, data, version, hash, full, final):
        return self.receiver.received(self.connection, data, version, hash, full, final)


class AgentGroupsReceiver:
    """
    The Agent-groups recv task of one worker.

    @ivar mismatches: incremental batches in a row whose hash differed.
    """

    def __init__(self, worker, database):
        """
        @param database: a callable returning a L{Deferred} of the
            L{wazuhcluster.agentdb.AgentDatabase}.
        """
        self.worker = worker
        self.database = database
        self.mismatches = 0
        self.log = worker.log.withSubtag("Agent-groups recv")
        self.logFull = worker.log.withSubtag("Agent-groups recv full")
        self._batch = None
        self._applying = False

    def locatorFor(self, connection):
        return _GroupsLocator(self, connection)

    def start(self, connection):
        self._batch = None
        self.mismatches = 0

    def stop(self):
        self._batch = None

    def received(self, connection, data, version, hash, full, final):
        """
        One chunk of a batch.

        @return: C{{"hash_matches": ...}} (a L{Deferred} of it for a final
            chunk).
        @raise SyncAborted: the chunk is malformed or out of order, or the
            batch could not be stored; the batch is dropped.
        """
        log = self.logFull if full else self.log
        if self._applying:
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
        batch.rows.extend(rows)
        batch.chunks += 1
        if not final:
            return {"hash_matches": False}
        self._batch = None
        self._applying = True
        d = self.database()
        d.addCallback(self._apply, batch, hash, connection, log)
        d.addBoth(self._applied)
        return d

    def _applied(self, result):
        self._applying = False
        return result

    def _apply(self, database, batch, masterHash, connection, log):
        d = database.applyGroupAssignments(batch.rows, batch.full)
        d.addCallback(lambda _: database.globalGroupHash())
        d.addCallbacks(self._compare, self._storeFailed,
                       (batch, masterHash, connection, log), None, (log,))
        return d

    def _storeFailed(self, failure, log):
        self._abort(log, f"Error applying agent-groups information: "
                         f"{failure.getErrorMessage()}")

    def _compare(self, localHash, batch, masterHash, connection, log):
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
            self.requestFull(connection, log)
        return {"hash_matches": False}

    def requestFull(self, connection, log):
        """
        Ask the master for its whole assignment table.
        """
        d = maybeDeferred(connection.callRemote, RequestFullAgentGroups)
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
