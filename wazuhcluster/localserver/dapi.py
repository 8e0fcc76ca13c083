# -*- test-case-name: tests.test_localserver -*-
"""
Wazuh's distributed API on the local socket, answered from this project's
own data: the calls C{cluster_control -a} and the Wazuh API's cluster
endpoints make of the cluster daemon.

The exchange, as Wazuh's clients expect it (C{wazuh-peers/README.md}): the
client sends C{dapi <json>} naming a function (C{{"f": {"__callable__":
...}, "f_kwargs": {...}}}); the server replies at once C{ok "Added request
to API requests queue"}; later it sends its own requests C{new_str <len>}
(the client answers the string's id), C{str_upd <id> <json>} and
C{dapi_res <id>}, or, when it cannot answer, C{dapi_err} with a Wazuh
exception.

Answered: C{wazuh.core.agent.Agent.get_agents_overview} (from the agent
store: C{{"items": [{id, name, ip, status, version, node_name, ...}],
"totalItems": N}}). Any other function gets C{dapi_err} with Wazuh's 3009,
naming it: they need Wazuh's own framework.
"""

from twisted.internet.defer import maybeDeferred

from wazuhcluster.errors import ClusterError
from wazuhcluster.localserver.base import MAX_REQUEST_JSON, asClusterError
from wazuhcluster.localserver.shapes import AgentsQuery
from wazuhcluster.wazuhlocal.wazuhjson import (
    WazuhRemoteError,
    decodeDapiRequest,
    dumps,
    encodeError,
)

#: The function C{cluster_control -a} calls.
AGENTS_OVERVIEW = "wazuh.core.agent.Agent.get_agents_overview"

#: The functions answered here.
ANSWERED = (AGENTS_OVERVIEW,)

#: The reply to C{dapi}.
QUEUED = b"Added request to API requests queue"

#: DAPI requests one local connection may have in progress.
MAX_IN_PROGRESS = 4


def unanswered(function):
    """
    The error pushed for a function not answered here.
    """
    return WazuhRemoteError(
        3009, f"{function.dottedName} is not available: this cluster daemon "
              f"(wazuhcluster) answers only {', '.join(ANSWERED)}; other calls need "
              "Wazuh's own framework", "WazuhClusterError")


class DapiRequests:
    """
    The DAPI requests of one local connection: each answered in the
    background and its result pushed.
    """

    def __init__(self, clock, agents, runInThread, log, maxInProgress=MAX_IN_PROGRESS):
        """
        @param agents: called without arguments, returns a Deferred firing
            with this project's C{{"agents": [...]}}.
        @param runInThread: how the answer is encoded off the reactor.
        """
        self.clock = clock
        self.agents = agents
        self.runInThread = runInThread
        self.log = log
        self.maxInProgress = maxInProgress
        self.inProgress = 0

    def add(self, protocol, payload):
        """
        Take a C{dapi} request: decode it now (a malformed one is an C{err}
        reply), answer and push later.

        @return: the reply, C{(b"ok", QUEUED)}.
        """
        request = decodeDapiRequest(payload, maxSize=MAX_REQUEST_JSON)
        if self.inProgress >= self.maxInProgress:
            raise ClusterError("Too many distributed API requests in progress "
                               f"on this connection (at most {self.maxInProgress})", 3051)
        self.inProgress += 1
        # Pushed after the reply has been written.
        self.clock.callLater(0, self._run, protocol, request)
        return b"ok", QUEUED

    def _run(self, protocol, request):
        d = maybeDeferred(self.answer, request)
        d.addCallback(lambda value: self.runInThread(dumps, value))
        d.addCallbacks(self._pushResult, self._pushError, (protocol,), None, (protocol,))
        d.addErrback(self._pushFailed, request)
        d.addBoth(self._done)

    def answer(self, request):
        """
        The result of one DAPI request.

        @type request: L{wazuhcluster.wazuhlocal.wazuhjson.DapiRequest}
        @return: a Deferred firing with the JSON-able result.
        @raise WazuhRemoteError: for a function not answered here.
        """
        if request.function.dottedName != AGENTS_OVERVIEW:
            raise unanswered(request.function)
        query = AgentsQuery.parse(request.kwargs)
        return self.agents().addCallback(query.answer)

    def _pushResult(self, data, protocol):
        d = protocol.sendString(data)
        return d.addCallback(lambda stringId: protocol.sendRequest(b"dapi_res", stringId))

    def _pushError(self, failure, protocol):
        error = asClusterError(failure)
        self.log.debug("A distributed API request failed: {error}", error=str(error))
        return protocol.sendRequest(b"dapi_err", encodeError(error))

    def _pushFailed(self, failure, request):
        # The client went away or did not take the answer: nothing to tell.
        self.log.debug("Could not push the answer of {function}: {error}",
                       function=request.function.dottedName, error=failure.getErrorMessage())

    def _done(self, ignored):
        self.inProgress -= 1
