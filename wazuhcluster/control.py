# -*- test-case-name: tests.test_control -*-
"""
The local control socket (C{queue/cluster/c-internal.sock}, 0660) and what it
answers: the equivalents of the original's C{get_nodes} and C{get_health},
C{get_agents}, and the requests the C{agent} commands send a running daemon
(C{refresh_agent_groups} on a master, C{sync_agent_info} on a worker).

A handler turns a request name and its arguments (a dict) into a JSON-able
value; the master answers from its own state, a worker forwards what only
the master knows.  Every failure is a declared L{ControlFailed}.
"""

import socket

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import amp
from twisted.protocols.policies import TimeoutMixin

from wazuhcluster import __version__
from wazuhcluster.chunks import RecordError, decodeJson
from wazuhcluster.commands import ControlFailed, ControlRequest, FetchResultChunk
from wazuhcluster.errors import ClusterError
from wazuhcluster.health import nodeInfo
from wazuhcluster.listening import ListeningService
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.results import ResultStore, callControl

#: Local clients served at once.
MAX_CONTROL_CLIENTS = 64

#: Seconds a local client may stay silent.
CONTROL_IDLE_TIMEOUT = 120

#: The largest box a local client may send.
MAX_CONTROL_BOX = 64 * 1024


def asControlFailure(failure):
    """
    Turn any failure into a declared L{ControlFailed} (an undeclared error
    would drop the connection).
    """
    if failure.check(ControlFailed):
        return failure
    if failure.check(ClusterError):
        raise ControlFailed(str(failure.value))
    if failure.check(RecordError, ValueError):
        raise ControlFailed(f"Error 3038 - Malformed control request: "
                            f"{failure.getErrorMessage()}")
    raise ControlFailed(f"Error 1000 - Wazuh Internal Error: {failure.getErrorMessage()}")


def _nodeFilter(arguments):
    names = arguments.get("node_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ControlFailed("Error 3038 - node_names must be a list of names")
    return set(names)


class MasterControlHandler:
    """
    Answers control requests from the master's own state.
    """

    def __init__(self, master, agents, groups):
        """
        @param master: the L{wazuhcluster.master.server.MasterService} (its
            configuration and worker registry).
        @param agents: the L{wazuhcluster.master.agents.MasterAgents}.
        @param groups: the agent-groups feature (C{refresh()}).
        """
        self.master = master
        self.agents = agents
        self.groups = groups

    def answer(self, request, arguments):
        """
        @return: a Deferred firing with the JSON-able answer.
        """
        d = maybeDeferred(self._dispatch, request, arguments)
        d.addErrback(asControlFailure)
        return d

    def _dispatch(self, request, arguments):
        if not isinstance(arguments, dict):
            raise ControlFailed("Error 3038 - Control arguments must be a JSON object")
        method = {
            "get_nodes": self.getNodes,
            "get_health": self.getHealth,
            "get_agents": self.agents.listAgents,
            "refresh_agent_groups": lambda arguments: self.groups.refresh().addCallback(
                lambda _: {"refreshed": True}),
        }.get(request)
        if method is None:
            raise ControlFailed(f"Error 3038 - Unknown control request {request!r}")
        return method(arguments)

    def _nodes(self, arguments):
        wanted = _nodeFilter(arguments)
        config = self.master.config
        registry = self.master.registry
        rows = [(config.node_name, "master", __version__, config.masterHost, None)]
        for name in registry.names():
            connection = registry.connection(name)
            rows.append((name, "worker", connection.version, connection.peerHost, name))
        unknown = sorted(wanted - {row[0] for row in rows})
        if unknown:
            raise ControlFailed(f"Error 1730 - Node does not exist: {', '.join(unknown)}")
        return [row for row in rows if not wanted or row[0] in wanted]

    def getNodes(self, arguments):
        return {
            "nodes": [
                {"name": name, "type": kind, "version": version, "ip": ip}
                for name, kind, version, ip, _ in self._nodes(arguments)
            ]
        }

    def getHealth(self, arguments):
        rows = self._nodes(arguments)
        d = self.agents.activeAgentCounts([row[0] for row in rows])
        d.addCallback(self._health, rows)
        return d

    def _health(self, counts, rows):
        nodes = {}
        registry = self.master.registry
        for name, kind, version, ip, worker in rows:
            entry = {"info": nodeInfo(name, kind, version, ip, counts.get(name, 0))}
            entry["status"] = registry.health(worker) if worker else {}
            nodes[name] = entry
        connected = sum(1 for row in rows if row[1] == "worker")
        return {"n_connected_nodes": connected, "nodes": nodes}


class WorkerControlHandler:
    """
    Forwards control requests to the master over the cluster connection;
    answers C{sync_agent_info} itself.
    """

    def __init__(self, worker, agentInfo=None):
        """
        @param agentInfo: the worker's agent-info feature (C{syncNow()}).
        """
        self.worker = worker
        self.agentInfo = agentInfo

    def answer(self, request, arguments):
        if request == "sync_agent_info" and self.agentInfo is not None:
            return maybeDeferred(self.agentInfo.syncNow).addCallback(
                lambda started: {"started": bool(started)})
        connection = self.worker.connection
        if connection is None:
            raise ControlFailed("Error 3023 - Worker node is not connected to master")
        d = callControl(connection, request, arguments)
        d.addErrback(asControlFailure)
        return d


class ControlProtocol(amp.AMP, TimeoutMixin):
    """
    One local control client: bounded boxes, dropped when idle.
    """

    def __init__(self, handler, clock=None):
        """
        @param clock: the clock of the idle timeout; without one, no idle
            timeout.
        """
        super().__init__()
        self.handler = handler
        self.results = ResultStore()
        self._boxBytes = 0
        self._clock = clock
        if clock is not None:
            self.callLater = clock.callLater

    def connectionMade(self):
        super().connectionMade()
        if self._clock is not None:
            self.setTimeout(CONTROL_IDLE_TIMEOUT)

    onLost = None

    def connectionLost(self, reason):
        self.setTimeout(None)
        super().connectionLost(reason)
        if self.onLost is not None:
            onLost, self.onLost = self.onLost, None
            onLost()

    def dataReceived(self, data):
        self.resetTimeout()
        self._boxBytes += len(data)
        if self._boxBytes > MAX_CONTROL_BOX:
            self.transport.abortConnection()
            return None
        return super().dataReceived(data)

    def ampBoxReceived(self, box):
        self._boxBytes = 0
        if amp.COMMAND not in box or amp.ANSWER in box or amp.ERROR in box:
            # The socket asks its clients nothing: an answer (or a box that
            # is neither) is nonsense, and AMP would raise on it.
            self.transport.abortConnection()
            return
        super().ampBoxReceived(box)

    def timeoutConnection(self):
        self.transport.abortConnection()

    def locateResponder(self, name):
        if name == b"StartTLS":
            return None
        responder = super().locateResponder(name)
        if responder is None:
            return None
        return lambda box: maybeDeferred(responder, box).addErrback(_malformedRequest)

    @ControlRequest.responder
    def controlRequest(self, request, arguments):
        d = maybeDeferred(decodeJson, (arguments or "{}").encode("utf-8"))
        d.addCallback(lambda parsed: self.handler.answer(request, parsed))
        d.addErrback(asControlFailure)
        d.addCallback(self.results.put)
        return d

    @FetchResultChunk.responder
    def fetchResultChunk(self, result_id, index):
        return self.results.fetch(result_id, index)


def _malformedRequest(failure):
    """
    Arguments of a local client that do not parse (a missing one, bytes
    that are not UTF-8, an index that is not a number) get the declared
    L{ControlFailed}, like every other failure: an undeclared error would
    log a traceback and drop the connection.
    """
    if failure.check(amp.RemoteAmpError):
        return failure
    raise amp.RemoteAmpError(
        ControlRequest.errors[ControlFailed],
        f"Error 3038 - Malformed control request: {type(failure.value).__name__}")


class ControlFactory(Factory):
    """
    Builds a L{ControlProtocol} per local client, at most C{limit} at once
    (more are refused at once).
    """

    noisy = False

    def __init__(self, handler, limit=MAX_CONTROL_CLIENTS, clock=None):
        self.handler = handler
        self.limit = limit
        self.clock = clock
        self.protocols = set()

    @property
    def clients(self):
        return len(self.protocols)

    def buildProtocol(self, addr):
        if self.clients >= self.limit:
            return None
        protocol = ControlProtocol(self.handler, self.clock)
        protocol.onLost = lambda: self.protocols.discard(protocol)
        self.protocols.add(protocol)
        return protocol

    def dropClients(self):
        """
        Close every client connection (the server stops).

        @return: a Deferred firing once they are all closed.
        """
        waits = []
        for protocol in list(self.protocols):
            if protocol.transport is not None:
                lost = Deferred()
                previous = protocol.onLost

                def onLost(previous=previous, lost=lost):
                    previous()
                    lost.callback(None)

                protocol.onLost = onLost
                waits.append(lost)
                protocol.transport.abortConnection()
        return DeferredList(waits)


class ControlServer(ListeningService):
    """
    Serves L{ControlProtocol} on the node's control socket while running.
    """

    name = "control"

    def __init__(self, socketPath, handler, reactor, log=None):
        self.socketPath = socketPath
        super().__init__(
            UNIXServerEndpoint(reactor, socketPath.path, mode=0o660),
            ControlFactory(handler, clock=reactor),
            onListening=self._listeningLogged,
            log=log if log is not None else ClusterLogger(
                "Local Server", "Main", namespace="wazuhcluster.control"),
        )

    def _listeningLogged(self, port):
        self.log.info("Serving on {path}", path=self.socketPath.path)

    def startService(self):
        self.socketPath.parent().makedirs(ignoreExistingDirectory=True)
        if self.socketPath.exists():
            if socketAnswers(self.socketPath.path):
                raise ClusterError(
                    f"Another cluster daemon is serving on {self.socketPath.path}", 3012
                )
            self.socketPath.remove()
        super().startService()

    def stopService(self):
        stopped = maybeDeferred(super().stopService)
        dropped = self.factory.dropClients()
        return DeferredList([stopped, dropped])


def socketAnswers(path):
    """
    Whether something accepts connections on the UNIX socket at C{path}.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True
