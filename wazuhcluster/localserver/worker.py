# -*- test-case-name: tests.test_localserver -*-
"""
What a worker's local server answers (besides L{NodeLocalHandler}'s
commands), as Wazuh's worker does: what only the master knows is asked of
the master over the cluster connection (3023 when it is down).

  - C{get_nodes} and C{get_health}: C{ok "Sent request to master node"} at
    once; the master's answer is pushed later as C{control_res <json>} (or
    C{err} with a Wazuh exception);
  - C{dapi <json>}: as on the master, from the master's agents;
  - C{sendsync <json>} (authd's enrollment: C{{"daemon_name": "authd",
    "message": {...}}}): no reply; the request goes to the master's
    daemon (L{wazuhcluster.localserver.relay}) and its raw answer is pushed
    as one C{ok} frame (or C{err});
  - C{sendasync <json>}: the same request, C{ok} at once, no answer pushed;
  - C{sendrreload}: C{ok {"success":true}};
  - this project's C{get_agents} (forwarded) and C{sync_agent_info}.

C{sendsync} and C{sendasync} requests in progress are bounded for the whole
worker (L{WorkerRelays}), on top of each connection's bound.
"""

from twisted.python.failure import Failure

from wazuhcluster.control import WorkerControlHandler
from wazuhcluster.errors import ClusterError
from wazuhcluster.localserver.base import NodeLocalHandler, asClusterError, requestJson
from wazuhcluster.localserver.dapi import DapiRequests
from wazuhcluster.localserver.relay import MAX_MESSAGE, relayToMaster
from wazuhcluster.localserver.shapes import NodesQuery, healthNames
from wazuhcluster.wazuhlocal.wazuhjson import WazuhRemoteError, dumps, encodeError

#: The reply to a request forwarded to the master.
SENT_TO_MASTER = b"Sent request to master node"

#: Relayed daemon requests a worker may have in progress in all.
MAX_RELAYS = 64


def notConnected():
    return WazuhRemoteError(3023)


def sendsyncRequest(payload):
    """
    The daemon and the request of a C{sendsync} payload, C{{"daemon_name":
    NAME, "message": REQUEST}} (the request a JSON object, or its text).

    @return: C{(daemonName, messageBytes)}.
    @raise ClusterError: 3036 for anything else.
    """
    value = requestJson(payload, maxSize=2 * MAX_MESSAGE)
    if not isinstance(value, dict) or not isinstance(value.get("daemon_name"), str):
        raise ClusterError("JSON couldn't be loaded: sendsync takes "
                           '{"daemon_name": ..., "message": ...}', 3036)
    message = value.get("message")
    if isinstance(message, str):
        message = message.encode("utf-8")
    elif isinstance(message, dict):
        message = dumps(message)
    else:
        raise ClusterError("JSON couldn't be loaded: the sendsync message must be an object",
                           3036)
    return value["daemon_name"], message


class WorkerRelays:
    """
    The daemon requests a worker's local clients have in progress.
    """

    def __init__(self, maxRelays=MAX_RELAYS):
        self.maxRelays = maxRelays
        self.inProgress = 0

    def relay(self, worker, daemonName, message):
        """
        @return: a Deferred firing with the daemon's answer.
        @raise ClusterError: 3023 without a master, 3051 over the bound.
        """
        connection = worker.connection
        if connection is None:
            raise notConnected()
        if self.inProgress >= self.maxRelays:
            raise ClusterError(f"Too many sendsync requests in progress (at most "
                               f"{self.maxRelays})", 3051)
        self.inProgress += 1
        d = relayToMaster(connection, daemonName, message, worker.clock)
        return d.addBoth(self._done)

    def _done(self, result):
        self.inProgress -= 1
        return result


def workerHandlers(worker):
    """
    The handler factory of a worker's local server: one
    L{WorkerLocalHandler} per client, all sharing one L{WorkerRelays}.
    """
    relays = WorkerRelays()
    return lambda: WorkerLocalHandler(worker, relays)


class WorkerLocalHandler(NodeLocalHandler):
    """
    One local client of a worker.
    """

    ownRequests = ("get_agents", "sync_agent_info")

    def __init__(self, worker, relays=None):
        """
        @param worker: the L{wazuhcluster.worker.client.WorkerService}.
        @param relays: the worker's L{WorkerRelays} (a new one by default).
        """
        super().__init__(worker, WorkerControlHandler(worker, worker.agentInfo))
        self.relays = relays if relays is not None else WorkerRelays()
        self.log = worker.log.withTag("Local Server")
        self.commands.update({
            b"get_nodes": self.getNodes,
            b"get_health": self.getHealth,
            b"dapi": self.dapi,
            b"sendsync": self.sendsync,
            b"sendasync": self.sendasync,
            b"sendrreload": self.sendrreload,
        })
        self.dapiRequests = DapiRequests(
            worker.clock, lambda: self.ask("get_agents", {}), worker.runInThread, self.log)

    def _requireMaster(self):
        if self.node.connection is None:
            raise notConnected()

    # -- forwarded to the master -------------------------------------------------

    def getNodes(self, protocol, payload):
        query = NodesQuery.parse(requestJson(payload))
        self._requireMaster()
        d = self.ask("get_nodes", query.ownArguments()).addCallback(query.answer)
        d.addBoth(self._pushLater, protocol, b"control_res")
        return b"ok", SENT_TO_MASTER

    def getHealth(self, protocol, payload):
        arguments = healthNames(requestJson(payload))
        self._requireMaster()
        self.ask("get_health", arguments).addBoth(self._pushLater, protocol, b"control_res")
        return b"ok", SENT_TO_MASTER

    def dapi(self, protocol, payload):
        self._requireMaster()
        return self.dapiRequests.add(protocol, payload)

    def _pushLater(self, result, protocol, command):
        # Never before the reply of the request has been written.
        self.clock.callLater(0, self._push, protocol, command, result)

    def _push(self, protocol, command, result):
        if isinstance(result, Failure):
            command, data = b"err", encodeError(asClusterError(result))
        elif isinstance(result, bytes):
            data = result
        else:
            data = dumps(result)
        try:
            protocol.sendNotice(command, data)
        except ClusterError as error:
            self.log.debug("Could not push {command!r} to a local client: {error}",
                           command=command, error=str(error))

    # -- daemon requests ------------------------------------------------------------

    def sendsync(self, protocol, payload):
        daemonName, message = sendsyncRequest(payload)
        d = self.relays.relay(self.node, daemonName, message)
        d.addCallbacks(lambda answer: self._push(protocol, b"ok", answer),
                       lambda failure: self._push(protocol, b"err", failure))
        # Fires with None: no reply; the answer is the pushed frame.
        return d.addCallback(lambda _: None)

    def sendasync(self, protocol, payload):
        daemonName, message = sendsyncRequest(payload)
        d = self.relays.relay(self.node, daemonName, message)
        d.addErrback(lambda failure: self.log.error(
            "A sendasync request to {daemon} failed: {error}", daemon=daemonName[:40],
            error=str(asClusterError(failure))))
        return b"ok", b"Added request to sendsync requests queue"

    def sendrreload(self, protocol, payload):
        return b"ok", b'{"success":true}'
