# -*- test-case-name: tests.test_control -*-
"""
The local control socket (C{queue/cluster/c-internal.sock}, 0660) and what it
answers: the equivalents of the original's C{get_nodes} and C{get_health}
(and C{get_agents} once the agent database is there).

A handler turns a request name and its JSON arguments into JSON bytes; the
master answers from its own state, a worker forwards to its master.
"""

import json
import socket

from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols import amp

from wazuhcluster import __version__
from wazuhcluster.commands import ControlFailed, ControlRequest, FetchResultChunk
from wazuhcluster.errors import ClusterError
from wazuhcluster.health import nodeInfo
from wazuhcluster.listening import ListeningService
from wazuhcluster.logs import ClusterLogger
from wazuhcluster.results import ResultStore, callControl


def _asControlFailure(failure):
    """
    Turn any failure into a declared L{ControlFailed} (an undeclared error
    would drop the connection).
    """
    if failure.check(ControlFailed):
        return failure
    if failure.check(ClusterError):
        raise ControlFailed(str(failure.value))
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

    def __init__(self, master):
        self.master = master

    def answer(self, request, arguments):
        """
        @return: a Deferred firing with the JSON answer as bytes.
        """
        d = maybeDeferred(self._dispatch, request, json.loads(arguments or "{}"))
        d.addCallback(lambda value: json.dumps(value).encode("utf-8"))
        d.addErrback(_asControlFailure)
        return d

    def _dispatch(self, request, arguments):
        if not isinstance(arguments, dict):
            raise ControlFailed("Error 3038 - Control arguments must be a JSON object")
        method = {
            "get_nodes": self.getNodes,
            "get_health": self.getHealth,
            "get_agents": self.getAgents,
            "refresh_agent_groups": lambda arguments: self.master.agents.refreshGroups(arguments),
        }.get(request)
        if method is None:
            raise ControlFailed(f"Error 3038 - Unknown control request {request!r}")
        return method(arguments)

    def _nodes(self, arguments):
        wanted = _nodeFilter(arguments)
        config = self.master.config
        rows = [(config.node_name, "master", __version__, config.masterHost, None)]
        for name, connection in sorted(self.master.workers.items()):
            rows.append((name, "worker", connection.version, connection.peerHost, connection))
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
        d = maybeDeferred(self.master.activeAgentCounts)
        d.addCallback(self._health, self._nodes(arguments))
        return d

    def _health(self, counts, rows):
        nodes = {}
        for name, kind, version, ip, connection in rows:
            entry = {"info": nodeInfo(name, kind, version, ip, counts.get(name, 0))}
            entry["status"] = connection.status.toDict() if connection else {}
            nodes[name] = entry
        connected = sum(1 for row in rows if row[1] == "worker")
        return {"n_connected_nodes": connected, "nodes": nodes}

    def getAgents(self, arguments):
        return self.master.listAgents(arguments)


class WorkerControlHandler:
    """
    Forwards control requests to the master over the cluster connection.
    """

    def __init__(self, worker):
        self.worker = worker

    def answer(self, request, arguments):
        connection = self.worker.connection
        if connection is None:
            raise ControlFailed("Error 3023 - Worker node is not connected to master")
        d = callControl(connection, request, json.loads(arguments or "{}"))
        d.addCallback(lambda value: json.dumps(value).encode("utf-8"))
        d.addErrback(_asControlFailure)
        return d


class ControlProtocol(amp.AMP):
    """
    One local control client.
    """

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.results = ResultStore()

    @ControlRequest.responder
    def controlRequest(self, request, arguments):
        d = maybeDeferred(self.handler.answer, request, arguments)
        d.addErrback(_asControlFailure)
        d.addCallback(self.results.put)
        return d

    @FetchResultChunk.responder
    def fetchResultChunk(self, result_id, index):
        return self.results.fetch(result_id, index)


class ControlServer(ListeningService):
    """
    Serves L{ControlProtocol} on the node's control socket while running.
    """

    name = "control"

    def __init__(self, socketPath, handler, reactor, log=None):
        self.socketPath = socketPath
        factory = Factory.forProtocol(lambda: ControlProtocol(handler))
        factory.noisy = False
        super().__init__(
            UNIXServerEndpoint(reactor, socketPath.path, mode=0o660),
            factory,
            onListening=self._listening_logged,
            log=log if log is not None else ClusterLogger(
                "Local Server", "Main", namespace="wazuhcluster.control"),
        )

    def _listening_logged(self, port):
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
