# -*- test-case-name: tests.test_agent_sync -*-
"""
Agent groups send (master -> workers): each worker gets, from the
L{wazuhcluster.master.local_agent_groups.GroupCache}, the assignments it
has not acknowledged.

Per worker the master keeps the group version the worker acknowledged.
After a worker connects (and when it asks with
L{RequestFullAgentGroups}) it gets the whole table (C{full}); after each
cache refresh it gets the assignments newer than its acknowledged version,
and nothing at all when it is up to date. A batch is a series of
L{SendAgentGroups} chunks, sent one at a time; its final chunk carries the
cache's version and global hash, and the acknowledged version advances only
when that final chunk was answered. One batch at a time per worker; a
failed batch is sent again after the next refresh.
"""

from twisted.internet.defer import inlineCallbacks
from twisted.protocols import amp

from wazuhcluster.agentsync import packChunks
from wazuhcluster.commands import RequestFullAgentGroups, SendAgentGroups


class _WorkerGroups:
    """
    What one worker connection acknowledged and what it still needs.
    """

    def __init__(self, connection):
        self.connection = connection
        self.acked = None
        self.needFull = True
        self.sending = False
        self.firstKick = None
        self.log = connection.log.withSubtag("Agent-groups send")
        self.logFull = connection.log.withSubtag("Agent-groups send full")


class _FullRequestLocator(amp.CommandLocator):
    """
    The responder of L{RequestFullAgentGroups} on one worker connection.
    """

    def __init__(self, sender, connection):
        super().__init__()
        self.sender = sender
        self.connection = connection

    @RequestFullAgentGroups.responder
    def requestFull(self):
        self.sender.fullRequested(self.connection)
        return {}


class AgentGroupsSender:
    """
    Sends the cached assignments to every connected worker.

    @ivar workers: per worker name, its L{_WorkerGroups}.
    """

    def __init__(self, master, cache):
        """
        @param cache: the L{GroupCache} (filled by the Local agent-groups
            task).
        """
        self.master = master
        self.cache = cache
        self.workers = {}

    def locatorFor(self, connection):
        return _FullRequestLocator(self, connection)

    def workerConnected(self, connection):
        state = self.workers[connection.name] = _WorkerGroups(connection)
        # Called from the hello responder: the worker installs its
        # responders when the hello answer arrives, so the first batch
        # goes after that answer.
        state.firstKick = self.master.clock.callLater(0, self.kick, connection.name)

    def workerDisconnected(self, connection):
        state = self.workers.get(connection.name)
        if state is not None and state.connection is connection:
            del self.workers[connection.name]
            if state.firstKick.active():
                state.firstKick.cancel()

    def fullRequested(self, connection):
        """
        A worker asked for the whole table.
        """
        state = self.workers.get(connection.name)
        if state is not None and state.connection is connection:
            state.needFull = True
            self.kick(connection.name)

    def cacheRefreshed(self):
        """
        The cache was refreshed: send each worker what it lacks.
        """
        for name in sorted(self.workers):
            self.kick(name)

    def kick(self, name):
        """
        Start sending worker C{name} what it lacks, unless a batch is in
        flight (it is looked at again when that one ends) or it lacks
        nothing.

        @return: the L{Deferred} of the batch started, or L{None}.
        """
        state = self.workers.get(name)
        cache = self.cache
        if state is None or state.sending or not cache.loaded:
            return None
        if state.needFull:
            rows, full = cache.everything(), True
        elif state.acked is None or state.acked < cache.version:
            rows, full = cache.changesSince(state.acked or 0), False
        else:
            return None
        state.sending = True
        d = self._sendBatch(state, rows, cache.version, cache.hash, full)
        d.addBoth(self._batchEnded, state)
        return d

    def _batchEnded(self, succeeded, state):
        state.sending = False
        if succeeded and self.workers.get(state.connection.name) is state:
            self.kick(state.connection.name)

    @inlineCallbacks
    def _sendBatch(self, state, rows, version, hash, full):
        """
        Send one batch; fire with whether it was acknowledged (never fail).
        """
        clock = self.master.clock
        status = state.connection.status
        times = status.agent_groups_full if full else status.agent_groups
        log = state.logFull if full else state.log
        started = clock.seconds()
        times.begin(started)
        log.info("Starting.")
        chunks = [data for _, data in packChunks((row, row[3]) for row in rows)] or [b"[]"]
        timeout = self.master.items.worker.timeout_agent_groups
        try:
            for index, data in enumerate(chunks):
                final = index == len(chunks) - 1
                d = state.connection.callRemote(
                    SendAgentGroups, data=data, version=version, hash=hash,
                    full=full, final=final)
                d.addTimeout(timeout, clock)
                answer = yield d
        except Exception as e:
            log.error("Error sending agent-groups information: {error}",
                      error=_describe(e))
            return False
        state.acked = version
        if full:
            state.needFull = False
        times.finish(clock.seconds(), len(chunks))
        log.info("Finished in {elapsed:.3f}s. Updated {chunks} chunks.",
                 elapsed=clock.seconds() - started, chunks=len(chunks))
        if not answer["hash_matches"]:
            log.debug("The worker's agent-groups hash differs from the master's.")
        return True


def _describe(error):
    from twisted.internet.defer import TimeoutError

    if isinstance(error, TimeoutError):
        return "Error 3020 - Timeout sending request: SendAgentGroups"
    return str(error) or type(error).__name__
