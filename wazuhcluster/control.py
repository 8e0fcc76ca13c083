# -*- test-case-name: tests.test_control -*-
"""
The local control socket (C{queue/cluster/c-internal.sock}, 0660), served
in Wazuh's own local framing (L{wazuhcluster.wazuhlocal}; the commands are
in L{wazuhcluster.localserver}), and the control handlers behind it.

A control handler turns one of this project's requests and its arguments
(a dict) into a JSON-able value: C{get_nodes}, C{get_health} (the
equivalents of the original's), C{get_agents}, and the requests the
C{agent} commands send a running daemon (C{refresh_agent_groups} on a
master, C{sync_agent_info} on a worker).  The master answers from its own
state; a worker forwards what only the master knows over the cluster
connection (L{ControlRequest}).  Every failure is a declared
L{ControlFailed}.
"""

import socket

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import UNIXServerEndpoint

from wazuhcluster import __version__
from wazuhcluster.chunks import RecordError
from wazuhcluster.commands import ControlFailed
from wazuhcluster.errors import ClusterError
from wazuhcluster.health import nodeInfo
from wazuhcluster.lag import nodeLag
from wazuhcluster.listening import ListeningService
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.results import callControl
from wazuhcluster.wazuhlocal.protocol import LocalLimits, LocalServerFactory, WazuhLocalProtocol

#: Local clients served at once.
MAX_CONTROL_CLIENTS = 64

#: Seconds a local client may stay silent (Wazuh's local server: 120).
CONTROL_IDLE_TIMEOUT = 120.0

#: The largest message a local client may send (its requests are small; the
#: answers it receives are not bounded by this).
MAX_CONTROL_MESSAGE = 16 * 1024 * 1024

#: The bounds of one local client: messages, strings and requests in
#: progress, and the idle timeout.
CONTROL_LIMITS = LocalLimits(
    maxMessage=MAX_CONTROL_MESSAGE,
    maxBuffered=MAX_CONTROL_MESSAGE,
    maxStrings=4,
    maxStringBytes=MAX_CONTROL_MESSAGE,
    maxInflight=16,
    idleTimeout=CONTROL_IDLE_TIMEOUT,
)


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
            entry["reactor_lag"] = nodeLag(self.master, worker)
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


class _LocalConnection(WazuhLocalProtocol):
    """
    A local client's connection, counted by its factory.
    """

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.gone(self)


class ControlFactory(LocalServerFactory):
    """
    Builds a connection with a new handler per local client, at most
    C{limit} at once (more are closed at once).
    """

    protocol = _LocalConnection
    noisy = False

    def __init__(self, handlerFactory, clock=None, limit=MAX_CONTROL_CLIENTS,
                 limits=CONTROL_LIMITS, log=None):
        super().__init__(handlerFactory, clock, limits, log)
        self.limit = limit
        self.protocols = set()
        self._emptied = []
        self._full = False

    @property
    def clients(self):
        return len(self.protocols)

    def buildProtocol(self, addr):
        if self.clients >= self.limit:
            # Said once until a client leaves: a client retrying in a loop
            # would fill the log.
            if not self._full and self.log is not None:
                self.log.warn("Refused a local client: {limit} are connected already.",
                              limit=self.limit)
            self._full = True
            return None
        protocol = super().buildProtocol(addr)
        self.protocols.add(protocol)
        return protocol

    def gone(self, protocol):
        """
        The connection C{protocol} is closed.
        """
        self.protocols.discard(protocol)
        self._full = False
        if not self.protocols:
            waiters, self._emptied = self._emptied, []
            for waiter in waiters:
                waiter.callback(None)

    def dropClients(self):
        """
        Close every client connection (the server stops).

        @return: a Deferred firing once they are all closed.
        """
        if not self.protocols:
            return succeed(None)
        d = Deferred()
        self._emptied.append(d)
        for protocol in list(self.protocols):
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        return d


class ControlServer(ListeningService):
    """
    Serves Wazuh's local protocol on the node's control socket
    (C{queue/cluster/c-internal.sock}, 0660) while running, with one handler
    per client from C{handlerFactory}
    (L{wazuhcluster.localserver.master.MasterLocalHandler},
    L{wazuhcluster.localserver.worker.workerHandlers}).
    """

    name = "control"

    def __init__(self, socketPath, handlerFactory, reactor, log=None,
                 limit=MAX_CONTROL_CLIENTS, limits=CONTROL_LIMITS):
        self.socketPath = socketPath
        log = log if log is not None else ClusterLogger(
            "Local Server", "Main", namespace="wazuhcluster.control")
        super().__init__(
            UNIXServerEndpoint(reactor, socketPath.path, mode=0o660),
            ControlFactory(handlerFactory, clock=reactor, limit=limit, limits=limits, log=log),
            onListening=self._listeningLogged,
            log=log,
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
