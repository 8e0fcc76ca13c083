# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent info, master side: stores what each worker's agents reported.

A round is the series of L{SendAgentInfo} chunks a worker sends, the last
one C{final}. While a round is open the worker's C{sync_agent_info_free} is
false. Each chunk is validated strictly (L{decodeAgentInfo}), stored in one
transaction for the agents the master knows (the others are counted and
ignored) and answered only once stored, so the worker marks rows synced
only for what is on the master. A malformed chunk or a storage error is
answered with the declared L{SyncAborted} (the connection stays) and ends
the round.
"""

from twisted.internet.defer import maybeDeferred
from twisted.protocols import amp

from wazuhcluster.agentsync import MalformedChunk, decodeAgentInfo
from wazuhcluster.commands import SendAgentInfo, SyncAborted


class _Round:
    """
    The agent-info round in progress on one worker connection.
    """

    def __init__(self, started):
        self.started = started
        self.chunks = 0
        self.updated = 0
        self.unknown = 0


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
        self.busy = False

    @SendAgentInfo.responder
    def sendAgentInfo(self, data, final):
        if self.busy:
            self._abort("a chunk arrived while the previous one was being stored")
        try:
            rows = decodeAgentInfo(data)
        except MalformedChunk as e:
            self._abort(f"malformed agent-info chunk: {e}")
        clock = self.receiver.master.clock
        if self.round is None:
            self.round = _Round(clock.seconds())
            self.connection.status.sync_agent_info_free = False
            self.connection.status.agent_info.begin(self.round.started)
            self.log.info("Starting.")
        self.busy = True
        d = self.receiver.database()
        d.addCallback(lambda database: database.applyAgentInfo(self.connection.name, rows))
        d.addCallbacks(self._stored, self._storeFailed, (bool(rows), final))
        return d

    def _stored(self, counts, nonEmpty, final):
        self.busy = False
        updated, unknown = counts
        current = self.round
        if current is None:
            raise SyncAborted("The agent-info round was aborted")
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
        status.agent_info.finish(now, current.chunks)
        status.sync_agent_info_free = True
        self.log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                      elapsed=now - current.started, chunks=current.chunks)
        if current.unknown:
            self.log.info("Ignored information of {unknown} agents unknown to the master.",
                          unknown=current.unknown)

    def _storeFailed(self, failure):
        self.busy = False
        self._abort(f"Error storing agent information: {failure.getErrorMessage()}")

    def _abort(self, reason):
        """
        End the round (if any), log why, and refuse the chunk.
        """
        self.round = None
        self.connection.status.sync_agent_info_free = True
        self.log.error("{reason}", reason=reason)
        raise SyncAborted(reason)

    def connectionGone(self):
        self.round = None
        self.busy = False


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
