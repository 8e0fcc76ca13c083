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

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    TimeoutError,
    gatherResults,
    inlineCallbacks,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel
from zope.interface import implementer

from wazuhcluster.agentsync import (
    MalformedChunk,
    encodeAgentInfoRow,
    packChunks,
)
from wazuhcluster.commands import SendAgentInfo
from wazuhcluster.session import IFeature, IFeatureSession

#: Rows read from the database at a time.
PAGE_SIZE = 5000

#: Chunks sent ahead of the master's answers (the master stores the chunks
#: of one connection one after the other, in order).
WINDOW = 3


def _chunks(rows):
    """
    Pack C{rows} into chunks; rows the master would refuse (too large,
    malformed) are left out.  Runs in a thread (encoding thousands of rows
    is too long for the reactor thread).

    @return: C{(chunks, refused)}: the chunks of L{packChunks}, and
        C{(id, sync_version, reason)} for each row left out.
    """
    encoded, refused = [], []
    for row in rows:
        try:
            encoded.append((row, encodeAgentInfoRow(row)))
        except MalformedChunk as e:
            refused.append((row["id"], row["sync_version"], str(e)))
    return packChunks(encoded), refused


@implementer(IFeatureSession)
class AgentInfoSendSession:
    """
    The Agent-info sync task on one connection to the master: a round every
    C{worker.sync_agent_info} seconds, and at once when asked (an agent just
    reported); one round at a time, one more pending at most.  Stopping
    waits for the round in progress.
    """

    locator = None

    def __init__(self, feature, peer):
        self.feature = feature
        self.worker = feature.worker
        self.peer = peer
        self.log = feature.worker.log.withSubtag("Agent-info sync")
        self._loop = None
        self._running = None
        self._again = False
        self._stopped = False

    def start(self):
        self.feature.current = self
        self._loop = LoopingCall(self.syncOnce)
        self._loop.clock = self.worker.clock
        self._loop.start(self.worker.items.worker.sync_agent_info, now=True).addErrback(
            lambda f: self.log.failure("The agent-info loop stopped", f, level=LogLevel.error))

    def stop(self):
        self._stopped = True
        if self.feature.current is self:
            self.feature.current = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._running is None:
            return succeed(None)
        follower = Deferred()
        self._running.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    def health(self):
        return {}

    def syncOnce(self):
        """
        Run one round now (or one more after the running one); never fails.

        @return: a L{Deferred} firing with the number of chunks sent, or
            L{None} (an error, or a round already running).
        """
        if self._stopped:
            return None
        if self._running is not None:
            self._again = True
            return None
        self._running = d = self._round(self.peer)
        d.addErrback(self._failed)
        d.addBoth(self._ended)
        return d

    def _ended(self, result):
        self._running = None
        if self._again and not self._stopped:
            self._again = False
            self.syncOnce()
        return result

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
        database = yield self.feature.store.get()
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
                chunks, refused = yield self.worker.runInThread(_chunks, rows)
                for rowId, version, error in refused:
                    self.log.warn("Information of agent {id} cannot be synced ({error}); "
                                  "skipped.", id=rowId, error=error)
                    skipped.append((rowId, version))
                for chunk in chunks:
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
            closing = connection.callRemote(SendAgentInfo, data=b"", final=True)
            yield closing.addErrback(lambda _: None)
            raise
        push(pending if pending is not None else ([], b""), True)
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

    @inlineCallbacks
    def _send(self, connection, database, chunk, final, timeout, counts):
        rows, data = chunk
        d = connection.callRemote(SendAgentInfo, data=data, final=final)
        if timeout:
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


@implementer(IFeature)
class WorkerAgentInfo(Service):
    """
    The worker's agent-info feature.

    @ivar current: the session of the current connection, or L{None}.
    """

    name = "agent-info"

    def __init__(self, worker, store):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        """
        self.worker = worker
        self.store = store
        self.current = None

    def sessionFor(self, peer):
        return AgentInfoSendSession(self, peer)

    def syncNow(self):
        """
        Send the agent info now (C{agent report} just recorded a report).

        @return: whether a round started (or was queued).
        """
        if self.current is None:
            return False
        self.current.syncOnce()
        return True
