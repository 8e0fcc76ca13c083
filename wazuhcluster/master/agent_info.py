# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent info, master side: stores what each worker's agents reported.

A round is the series of L{SendAgentInfo} chunks a worker sends, the last
one C{final}; the worker may send the next chunks before the previous ones
are answered (a small window), and the master processes the chunks of one
connection strictly one after the other, in arrival order. While a round is
open the worker's C{sync_agent_info_free} is false.

Each chunk is validated strictly (L{decodeAgentInfo}), stored in one
transaction for the agents the master knows (the others are counted and
ignored), and answered only once stored, so the worker marks rows synced
only for what is on the master. A malformed chunk or a storage error is
answered with the declared L{SyncAborted} (the connection stays); the round
stays open until its final chunk (a worker that gives up a round closes it
with an empty final chunk).
"""

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure

from wazuhcluster.agentsync import MalformedChunk, decodeAgentInfo
from wazuhcluster.commands import SendAgentInfo, SyncAborted

#: Chunks one connection may have waiting to be stored; more is a protocol
#: violation (refused).
MAX_QUEUED_CHUNKS = 8


class _Round:
    """
    The agent-info round in progress on one worker connection.
    """

    def __init__(self, started):
        self.started = started
        self.chunks = 0
        self.updated = 0
        self.unknown = 0
        self.failed = 0


class _AgentInfoLocator(amp.CommandLocator):
    """
    The responder of L{SendAgentInfo} on one worker connection.
    """

    def __init__(self, receiver, connection):
        super().__init__()
        self.receiver = receiver
        self.connection = connection
        self.log = connection.log.withSubtag("Agent-info sync")
        self.round = None
        self.queued = 0
        self._tail = succeed(None)
        self._gone = False

    @SendAgentInfo.responder
    def sendAgentInfo(self, data, final):
        if self.queued >= MAX_QUEUED_CHUNKS:
            reason = f"more than {MAX_QUEUED_CHUNKS} agent-info chunks waiting; refused"
            self.log.error("{reason}", reason=reason)
            raise SyncAborted(reason)
        self.queued += 1
        answer = Deferred()

        def process(_):
            d = maybeDeferred(self._process, data, final)
            d.addBoth(self._processed, answer)
            return d

        self._tail.addCallback(process)
        return answer

    def _processed(self, result, answer):
        self.queued -= 1
        if isinstance(result, Failure):
            answer.errback(result)
        else:
            answer.callback(result)
        return None

    def _process(self, data, final):
        """
        Validate and store one chunk.

        @return: the answer, or a L{Deferred} of it.
        @raise SyncAborted: the chunk was refused.
        """
        if self._gone:
            raise SyncAborted("The connection is closed")
        clock = self.receiver.master.clock
        if self.round is None:
            self.round = _Round(clock.seconds())
            self.connection.status.sync_agent_info_free = False
            self.connection.status.agent_info.begin(self.round.started)
            self.log.info("Starting.")
        try:
            rows = decodeAgentInfo(data)
        except MalformedChunk as e:
            self._refuse(f"malformed agent-info chunk: {e}", final)
        d = self.receiver.database()
        d.addCallback(lambda database: database.applyAgentInfo(self.connection.name, rows))
        d.addCallbacks(self._stored, self._storeFailed, (bool(rows), final), None, (final,))
        return d

    def _stored(self, counts, nonEmpty, final):
        updated, unknown = counts
        current = self.round
        current.updated += updated
        current.unknown += unknown
        if nonEmpty:
            current.chunks += 1
        if final:
            self._finish()
        return {"updated": updated, "unknown": unknown}

    def _finish(self):
        current, self.round = self.round, None
        status = self.connection.status
        now = self.receiver.master.clock.seconds()
        status.sync_agent_info_free = True
        if current.failed:
            self.log.error("Round ended with {failed} refused chunks.", failed=current.failed)
            return
        status.agent_info.finish(now, current.chunks)
        self.log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                      elapsed=now - current.started, chunks=current.chunks)
        if current.unknown:
            self.log.info("Ignored information of {unknown} agents unknown to the master.",
                          unknown=current.unknown)

    def _storeFailed(self, failure, final):
        self._refuse(f"Error storing agent information: {failure.getErrorMessage()}", final)

    def _refuse(self, reason, final):
        """
        Refuse the chunk being processed: log why, count it in the round
        (closed if the chunk was final).
        """
        self.log.error("{reason}", reason=reason)
        if self.round is not None:
            self.round.failed += 1
            if final:
                self._finish()
        raise SyncAborted(reason)

    def connectionGone(self):
        self._gone = True
        self.round = None


class AgentInfoReceiver:
    """
    Stores agent info from every worker connection.
    """

    def __init__(self, master, database):
        """
        @param database: a callable returning a L{Deferred} of the
            L{wazuhcluster.agentdb.AgentDatabase}.
        """
        self.master = master
        self.database = lambda: maybeDeferred(database)
        self.locators = {}

    def locatorFor(self, connection):
        locator = _AgentInfoLocator(self, connection)
        self.locators[connection] = locator
        return locator

    def workerDisconnected(self, connection):
        locator = self.locators.pop(connection, None)
        if locator is not None:
            locator.connectionGone()
