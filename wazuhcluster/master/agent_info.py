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
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agentsync import MalformedChunk, decodeAgentInfo
from wazuhcluster.commands import SendAgentInfo, SyncAborted
from wazuhcluster.health import TaskTimes
from wazuhcluster.session import IFeature, IFeatureSession

#: Chunks one connection may have waiting to be stored; more is refused.
MAX_QUEUED_CHUNKS = 8

#: Chunk sizes (bytes) above which decoding runs in a thread.
THREAD_DECODE_BYTES = 8192


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
        pass

    def stop(self):
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
        d = self.feature.store.get()
        d.addCallback(lambda store: store.applyAgentInfo(self.peer.name, rows))
        d.addCallback(lambda counts: (counts, bool(rows)))
        return d

    def _stored(self, result, current, final):
        (updated, unknown), nonEmpty = result
        current.updated += updated
        current.unknown += unknown
        if nonEmpty:
            current.chunks += 1
        if final:
            self._finish(current)
        return {"updated": updated, "unknown": unknown}

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

    def sessionFor(self, peer):
        return AgentInfoReceiveSession(self, peer)
