# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent info, master side: stores what each worker's agents reported.

A round is the series of L{SendAgentInfo} chunks a worker sends, the last
one C{final}; the worker may send the next chunks before the previous ones
are answered (a small window), and the session processes the chunks of its
connection strictly one after the other, in arrival order.  While a round is
open the worker's C{sync_agent_info_free} is false.

Each chunk is validated strictly (L{decodeAgentInfo}, in a thread when it is
big), stored in one transaction for the agents the master knows (the others
are counted and ignored), and answered only once stored, so the worker marks
rows synced only for what is on the master.  A malformed chunk or a storage
error is answered with the declared L{SyncAborted} (the connection stays);
the round stays open until its final chunk.  Stopping the session waits for
the chunk being stored.

A worker stores only the agents it may report
(L{wazuhcluster.agentdb.ownership}, where the rule is explained): a report
of an agent another connected worker holds (it reported it within three
keep-alive periods, or connected less than that long ago) is refused unless
it says the agent is active where its owner last said it was not; an agent
whose owner is gone or silent moves to the reporter.  Refused rows are
answered as ignored (the worker does not send them again until they change)
and logged once per round as a WARNING; every move is a WARNING naming the
agent and both workers.  The master remembers who reported which agent and
when (L{AgentOwnership}) since it started.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agentdb.ownership import AgentOwnership
from wazuhcluster.agentsync import MalformedChunk, decodeAgentInfo
from wazuhcluster.clientkeys import formatAgentId
from wazuhcluster.commands import SendAgentInfo, SyncAborted
from wazuhcluster.health import TaskTimes
from wazuhcluster.session import IFeature, IFeatureSession

#: Chunks one connection may have waiting to be stored; more is refused.
MAX_QUEUED_CHUNKS = 8

#: Chunk sizes (bytes) above which decoding runs in a thread.
THREAD_DECODE_BYTES = 8192

#: Agents named one by one in a line about refused or moved agents.
NAMED_AGENTS = 10


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
        self.bytes = 0
        self.refused = 0
        self.refusedNamed = []


@implementer(IFeatureSession)
class AgentInfoReceiveSession(amp.CommandLocator):
    """
    The responder of L{SendAgentInfo} on one worker connection.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.peer = peer
        self.locator = self
        self.log = peer.log.withSubtag("Agent-info sync")
        self.round = None
        self.queued = 0
        self.free = True
        self.times = TaskTimes()
        self._tail = succeed(None)
        self._stopped = False

    def start(self):
        self.feature.ownership.connected(self.peer.name, self)

    def stop(self):
        self.feature.ownership.disconnected(self.peer.name, self)
        self._stopped = True
        self.round = None
        follower = Deferred()
        self._tail.addBoth(lambda result: (follower.callback(None), None)[1])
        return follower

    def health(self):
        return {"sync_agent_info_free": self.free,
                "last_sync_agentinfo": dict(self.times.masterDates(),
                                            n_synced_chunks=self.times.chunks)}

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
        if self._stopped:
            raise SyncAborted("The connection is closed")
        master = self.feature.master
        if self.round is None:
            self.round = _Round(master.clock.seconds())
            self.free = False
            self.times.begin(self.round.started)
            self.log.info("Starting.")
        current = self.round
        current.bytes += len(data)
        if len(data) > THREAD_DECODE_BYTES:
            d = maybeDeferred(master.runInThread, decodeAgentInfo, data)
        else:
            d = maybeDeferred(decodeAgentInfo, data)
        d.addCallback(self._store)
        d.addCallbacks(self._stored, self._storeFailed, (current, final), None,
                       (current, final))
        return d

    def _store(self, rows):
        ownership = self.feature.ownership
        rule = ownership.rule(self.peer.name, {row.number for row in rows})
        d = self.feature.store.get()
        d.addCallback(lambda store: store.applyAgentInfo(self.peer.name, rows,
                                                         ownership=rule))
        d.addCallback(lambda outcome: (outcome, bool(rows)))
        return d

    def _stored(self, result, current, final):
        outcome, nonEmpty = result
        self.feature.ownership.reported(self.peer.name, outcome.stored)
        self._logMoves(outcome.moved)
        ignored = outcome.unknown + len(outcome.refused)
        current.updated += outcome.updated
        current.unknown += outcome.unknown
        current.refused += len(outcome.refused)
        room = NAMED_AGENTS - len(current.refusedNamed)
        current.refusedNamed.extend(outcome.refused[:max(room, 0)])
        if nonEmpty:
            current.chunks += 1
        if final:
            self._finish(current)
        return {"updated": outcome.updated, "unknown": ignored}

    def _logMoves(self, moved):
        """
        One WARNING per agent that changed node (the first few of a chunk;
        a summary line for the rest).
        """
        for number, previous in moved[:NAMED_AGENTS]:
            self.log.warn("Agent {agent} moved from {previous} to {node}.",
                          agent=formatAgentId(number), previous=previous, node=self.peer.name)
        if len(moved) > NAMED_AGENTS:
            self.log.warn("{count} more agents moved to {node}.",
                          count=len(moved) - NAMED_AGENTS, node=self.peer.name)

    def _finish(self, current):
        if self.round is current:
            self.round = None
        now = self.feature.master.clock.seconds()
        self.free = True
        if current.failed:
            self.log.error("Round ended with {failed} refused chunks.", failed=current.failed)
            return
        self.times.finish(now, current.chunks)
        self.log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                      elapsed=now - current.started, chunks=current.chunks)
        self.feature.master.syncEvents.finished("agent_info", self.peer.name, current.started,
                                                now - current.started, current.bytes, "received")
        if current.unknown:
            self.log.info("Ignored information of {unknown} agents unknown to the master.",
                          unknown=current.unknown)
        if current.refused:
            named = ", ".join(f"{formatAgentId(n)} ({owner})"
                              for n, owner in current.refusedNamed)
            more = current.refused - len(current.refusedNamed)
            self.log.warn("Refused the information of {count} agents that other connected "
                          "workers serve: {agents}{more}.", count=current.refused,
                          agents=named, more=f" and {more} more" if more > 0 else "")

    def _storeFailed(self, failure, current, final):
        if failure.check(MalformedChunk):
            reason = f"malformed agent-info chunk: {failure.getErrorMessage()}"
        else:
            reason = f"Error storing agent information: {failure.getErrorMessage()}"
        self.log.error("{reason}", reason=reason)
        current.failed += 1
        if final:
            self._finish(current)
        raise SyncAborted(reason)


@implementer(IFeature)
class MasterAgentInfo(Service):
    """
    The master's agent-info feature: one receiving session per worker.
    """

    name = "agent-info"

    def __init__(self, master, store):
        """
        @param store: the L{wazuhcluster.storeslot.AgentStoreService}.
        """
        self.master = master
        self.store = store
        self.ownership = AgentOwnership(master.clock, master.config.node_name,
                                        master.items.worker.keep_alive)

    def sessionFor(self, peer):
        return AgentInfoReceiveSession(self, peer)
