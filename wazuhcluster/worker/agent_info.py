# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent info, worker side: every C{worker.sync_agent_info} seconds while
connected, send the master the rows of this node's agents that changed
since they were last acknowledged.

Rows are read page by page (L{AgentDatabase.agentInfoToSync}), sent in
chunks of at most L{MAX_CHUNK} bytes, up to L{WINDOW} ahead of the master's
answers, the last one C{final}; after the master answered a chunk, its rows
are marked synced
(L{AgentDatabase.markAgentInfoSynced}), which leaves marked any row reported
again meanwhile. A failed round leaves every unacknowledged row marked for
the next one.
"""

from twisted.internet.defer import TimeoutError, gatherResults, inlineCallbacks
from twisted.internet.task import LoopingCall

from wazuhcluster.agentsync import (
    MalformedChunk,
    agentInfoRow,
    checkAgentInfoRow,
    encodeItem,
    packChunks,
)
from wazuhcluster.commands import MAX_CHUNK, SendAgentInfo

#: Rows read from the database at a time.
PAGE_SIZE = 5000

#: Chunks sent ahead of the master's answers (the master stores the chunks
#: of one connection one after the other, in order).
WINDOW = 3


class AgentInfoSender:
    """
    The Agent-info sync task of one worker.

    @ivar rounds: rounds run since start (for tests).
    """

    def __init__(self, worker, database):
        """
        @param database: a callable returning a L{Deferred} of the
            L{wazuhcluster.agentdb.AgentDatabase}.
        """
        self.worker = worker
        self.database = database
        self.log = worker.log.withSubtag("Agent-info sync")
        self._loop = None
        self._connection = None

    def start(self, connection):
        self.stop()
        self._connection = connection
        self._loop = LoopingCall(self.syncOnce)
        self._loop.clock = self.worker.clock
        self._loop.start(self.worker.items.worker.sync_agent_info, now=True)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._connection = None

    def syncOnce(self):
        """
        Run one round on the current connection; never fails.

        @return: a L{Deferred} firing with the number of chunks sent, or
            L{None} after an error.
        """
        connection = self._connection
        if connection is None:
            return None
        d = self._round(connection)
        d.addErrback(self._failed)
        return d

    def _failed(self, failure):
        if failure.check(TimeoutError):
            error = "Error 3020 - Timeout sending request: SendAgentInfo"
        else:
            error = failure.getErrorMessage()
        self.log.error("Error synchronizing agent information: {error}", error=error)
        return None

    @inlineCallbacks
    def _round(self, connection):
        clock = self.worker.clock
        started = clock.seconds()
        database = yield self.database()
        rows = yield database.agentInfoToSync(limit=PAGE_SIZE)
        if not rows:
            self.log.info("No synchronization required, skipping.")
            return 0
        self.log.info("Starting.")
        timeout = self.worker.items.master.timeout_agent_info
        counts = {"chunks": 0, "updated": 0, "unknown": 0, "marks": []}
        window = []
        pending = None
        skipped = []

        def push(chunk, final):
            d = self._send(connection, database, chunk, final, timeout, counts)
            # A failure becomes a value (a 1-tuple) so that nothing is left
            # unhandled when the round stops early.
            window.append(d.addErrback(lambda failure: (failure,)))

        @inlineCallbacks
        def drain(keep):
            while len(window) > keep:
                outcome = yield window.pop(0)
                if isinstance(outcome, tuple):
                    yield drain(0)
                    outcome[0].raiseException()

        try:
            while rows:
                for chunk in self._chunks(rows, skipped):
                    if pending is not None:
                        push(pending, False)
                        yield drain(WINDOW - 1)
                    pending = chunk
                if len(rows) < PAGE_SIZE:
                    break
                rows = yield database.agentInfoToSync(limit=PAGE_SIZE, afterId=rows[-1]["id"])
        except Exception:
            # Close the round on the master (best effort), then fail.
            yield drain(0).addErrback(lambda _: None)
            closing = connection.callRemote(SendAgentInfo, data=b"[]", final=True)
            yield closing.addErrback(lambda _: None)
            raise
        push(pending if pending is not None else ([], b"[]"), True)
        yield drain(0)
        marked = yield gatherResults(counts["marks"])
        failures = [result[0] for result in marked if isinstance(result, tuple)]
        if failures:
            failures[0].raiseException()
        if skipped:
            # They would be refused every round: do not send them again
            # until they change.
            yield database.markAgentInfoSynced(skipped)
        self.log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                      elapsed=clock.seconds() - started, chunks=counts["chunks"])
        if counts["unknown"]:
            self.log.info("The master ignored information of {unknown} agents it does "
                          "not know.", unknown=counts["unknown"])
        return counts["chunks"]

    def _chunks(self, rows, skipped):
        """
        Pack C{rows} into chunks; rows the master would refuse (too large,
        malformed) are left out, logged, and added to C{skipped}.
        """
        encoded = []
        for row in rows:
            wire = agentInfoRow(row)
            try:
                checkAgentInfoRow(wire)
                data = encodeItem(wire)
                if len(data) > MAX_CHUNK - 2:
                    raise MalformedChunk(f"{len(data)} bytes, too large")
            except (MalformedChunk, ValueError) as e:
                self.log.warn("Information of agent {id} cannot be synced ({error}); "
                              "skipped.", id=row["id"], error=str(e))
                skipped.append((row["id"], row["sync_version"]))
                continue
            encoded.append((row, data))
        return packChunks(encoded)

    @inlineCallbacks
    def _send(self, connection, database, chunk, final, timeout, counts):
        rows, data = chunk
        d = connection.callRemote(SendAgentInfo, data=data, final=final)
        d.addTimeout(timeout, self.worker.clock)
        answer = yield d
        # Marking runs while the next chunk travels; the round waits for
        # every mark before it ends.
        mark = database.markAgentInfoSynced([(row["id"], row["sync_version"]) for row in rows])
        # A failed mark becomes a value (a 1-tuple), so that a round ended
        # early leaves no unhandled failure behind.
        counts["marks"].append(mark.addErrback(lambda failure: (failure,)))
        if rows:
            counts["chunks"] += 1
        counts["updated"] += answer["updated"]
        counts["unknown"] += answer["unknown"]
