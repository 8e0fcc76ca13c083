# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent groups send (master -> workers): each worker gets, from the
L{wazuhcluster.master.local_agent_groups.GroupCache}, the assignments it
has not acknowledged.

Per worker connection, a session keeps the group version the worker
acknowledged.  After a worker connects it first gets an empty batch carrying
the cache's version and global hash: a worker that already holds the same
assignments (it reconnected) says so and gets nothing more; any other gets
the whole table (C{full}), as does a worker that asks with
L{RequestFullAgentGroups}.  After each
cache refresh it gets the assignments newer than its acknowledged version,
and nothing at all when it is up to date.  A batch is a series of
L{SendAgentGroups} chunks, sent one at a time; its final chunk carries the
cache's version and global hash, and the acknowledged version advances only
when that final chunk was answered.  One batch at a time per worker; a
failed batch is sent again after the next refresh.  Big batches are packed
in a thread, from a cache that never changes once made.
"""

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.agentsync import packChunks
from wazuhcluster.commands import RequestFullAgentGroups, SendAgentGroups
from wazuhcluster.health import TaskTimes
from wazuhcluster.master.local_agent_groups import THREAD_THRESHOLD, LocalAgentGroups
from wazuhcluster.session import IFeature, IFeatureSession


def _batch(cache, since):
    """
    The chunks of a batch: every assignment (C{since} L{None}) or those
    newer than C{since}.  Runs in a thread for big caches.
    """
    rows = cache.everything() if since is None else cache.changesSince(since)
    return [data for _, data in packChunks((row, row[3]) for row in rows)] or [b""]


@implementer(IFeatureSession)
class AgentGroupsSendSession(amp.CommandLocator):
    """
    What one worker connection acknowledged and what it still needs.
    """

    def __init__(self, feature, peer):
        super().__init__()
        self.feature = feature
        self.peer = peer
        self.locator = self
        self.acked = None
        self.needFull = True
        self.times = TaskTimes()
        self.fullTimes = TaskTimes()
        self.log = peer.log.withSubtag("Agent-groups send")
        self.logFull = peer.log.withSubtag("Agent-groups send full")
        self._sending = None
        self._stopped = False
        self._probed = False

    @RequestFullAgentGroups.responder
    def requestFull(self):
        self.needFull = True
        self.kick()
        return {}

    def start(self):
        self.feature.sessions[self.peer.name] = self
        self.kick()

    def stop(self):
        self._stopped = True
        if self.feature.sessions.get(self.peer.name) is self:
            del self.feature.sessions[self.peer.name]
        if self._sending is None:
            return succeed(None)
        follower = Deferred()
        self._sending.addBoth(lambda result: (follower.callback(None), result)[1])
        return follower

    def health(self):
        return {"last_sync_agentgroup": self.times.dates(chunks=True),
                "last_sync_full_agentgroup": self.fullTimes.dates(chunks=True)}

    def kick(self):
        """
        Start sending what the worker lacks, unless a batch is in flight
        (looked at again when it ends) or it lacks nothing.
        """
        cache = self.feature.cache
        if self._stopped or self._sending is not None or not cache.loaded:
            return None
        if self.needFull and not self._probed:
            self._probed = True
            self._sending = self._probe(cache)
            self._sending.addBoth(self._batchEnded)
            return self._sending
        if self.needFull:
            since, full = None, True
        elif self.acked is None or self.acked < cache.version:
            since, full = self.acked or 0, False
        else:
            return None
        self._sending = self._sendBatch(cache, since, full)
        self._sending.addBoth(self._batchEnded)
        return self._sending

    def _batchEnded(self, succeeded):
        self._sending = None
        if succeeded and not self._stopped:
            self.kick()
        return None

    @inlineCallbacks
    def _probe(self, cache):
        """
        Ask a worker that just connected whether it holds the cache's
        assignments already (an empty batch with the version and hash);
        fire with whether it answered (never fail).
        """
        master = self.feature.master
        d = self.peer.callRemote(SendAgentGroups, data=b"", version=cache.version,
                                 hash=cache.hash, full=False, final=True)
        timeout = master.items.worker.timeout_agent_groups
        if timeout:
            d.addTimeout(timeout, master.clock)
        try:
            answer = yield d
        except Exception as e:
            if not self._stopped:
                self.log.error("Error sending agent-groups information: {error}",
                               error=_describe(e))
            return False
        if answer["hash_matches"]:
            self.acked = cache.version
            self.needFull = False
            self.log.debug("The worker holds the master's agent-groups already.")
        return True

    @inlineCallbacks
    def _sendBatch(self, cache, since, full):
        """
        Send one batch; fire with whether it was acknowledged (never fail).
        """
        master = self.feature.master
        clock = master.clock
        times, log = (self.fullTimes, self.logFull) if full else (self.times, self.log)
        started = clock.seconds()
        times.begin(started)
        log.info("Starting.")
        timeout = master.items.worker.timeout_agent_groups
        try:
            chunks = yield self.feature.batch(cache, since)
            for index, data in enumerate(chunks):
                if self._stopped:
                    return False
                final = index == len(chunks) - 1
                d = self.peer.callRemote(SendAgentGroups, data=data, version=cache.version,
                                         hash=cache.hash, full=full, final=final)
                if timeout:
                    d.addTimeout(timeout, clock)
                answer = yield d
        except Exception as e:
            if not self._stopped:
                log.error("Error sending agent-groups information: {error}",
                          error=_describe(e))
            return False
        self.acked = cache.version
        if full:
            self.needFull = False
        times.finish(clock.seconds(), len(chunks))
        log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                 elapsed=clock.seconds() - started, chunks=len(chunks))
        master.syncEvents.finished("agent_groups", self.peer.name, started,
                                   clock.seconds() - started, sum(map(len, chunks)), "sent")
        if not answer["hash_matches"]:
            log.debug("The worker's agent-groups hash differs from the master's.")
        return True


def _describe(error):
    if isinstance(error, TimeoutError):
        return "Error 3020 - Timeout sending request: SendAgentGroups"
    return str(error) or type(error).__name__


@implementer(IFeature)
class MasterAgentGroups(MultiService):
    """
    The master's agent-groups feature: the Local agent-groups task and a
    sending session per worker.

    @ivar local: the L{LocalAgentGroups} task.
    @ivar sessions: the running sessions by worker name.
    """

    name = "agent-groups"

    def __init__(self, master, store):
        super().__init__()
        self.master = master
        self.local = LocalAgentGroups(master, store, self._refreshed)
        self.local.setServiceParent(self)
        self.sessions = {}
        self._full = (None, None)
        self._packing = None
        self._waiters = []

    @property
    def cache(self):
        return self.local.cache

    def sessionFor(self, peer):
        return AgentGroupsSendSession(self, peer)

    def refresh(self):
        """
        Refresh the cache now (and send the changes), e.g. after C{wazuh-cluster
        agent group} changed an assignment.

        @return: a Deferred firing (never failing) once refreshed.
        """
        return self.local.refresh()

    def batch(self, cache, since):
        """
        The chunks of a batch from C{cache}: every assignment (C{since}
        L{None}) or those newer than C{since}; packed in a thread for a big
        cache.  The whole table of a cache is packed once and shared by
        every worker that needs it (50 workers connecting to a master of
        100 000 agents hold one copy, not 50).

        @return: a Deferred firing with a list of L{bytes}.
        """
        if since is not None:
            return self._pack(cache, since)
        cached, chunks = self._full
        if cached is cache:
            return succeed(chunks)
        waiter = Deferred()
        if self._packing is cache:
            self._waiters.append(waiter)
        else:
            self._packing, self._waiters = cache, [waiter]
            self._pack(cache, None).addBoth(self._packed, cache)
        return waiter

    def _pack(self, cache, since):
        if len(cache) >= THREAD_THRESHOLD:
            return self.master.runInThread(_batch, cache, since)
        return succeed(_batch(cache, since))

    def _packed(self, result, cache):
        waiters = self._waiters
        if self._packing is cache:
            self._packing, self._waiters = None, []
        if not isinstance(result, Failure):
            self._full = (cache, result)
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        return None

    def _refreshed(self):
        for name in sorted(self.sessions):
            self.sessions[name].kick()
