# -*- test-case-name: tests.test_agentcli_wazuhdb -*-
"""
The C{wazuh-cluster agent} commands of a node beside a Wazuh manager (the
wazuh-db agent store): authd registers and removes agents, wazuh-db lists
them, as on a manager.

  - on the master, authd is asked directly on C{queue/sockets/auth};
  - on a worker, through the worker's daemon: C{sendsync
    {"daemon_name": "authd", "message": ...}} on its local socket, which
    relays it to the master's authd (L{wazuhcluster.localserver.relay});
  - C{agent list} reads the node's wazuh-db (C{queue/db/wdb}).

The commands block (they run without a reactor): the daemon's own clients
(L{AuthdClient}, L{WazuhDBClient}, L{wazuhcluster.localclient}) run on
blocking sockets (L{wazuhcluster.blockingclient}).
"""

import json

from twisted.internet.defer import inlineCallbacks

from wazuhcluster.blockingclient import BlockingUNIXEndpoint, callLocalSocket, closeAll, run
from wazuhcluster.errors import ClusterError
from wazuhcluster.wazuhdb.authd import AUTH_SOCKET, AuthdClient
from wazuhcluster.wazuhdb.classic import WDB_SOCKET, WazuhDBClient
from wazuhcluster.wazuhdb.commands import WazuhDBCommands
from wazuhcluster.wazuhdb.rows import listedAgent

#: Seconds to wait for authd, directly or through the master.
AUTHD_TIMEOUT = 70.0


def askAuthd(home, config, message, timeout=AUTHD_TIMEOUT):
    """
    Send one request to the master's authd: directly on the master, through
    the worker's daemon (C{sendsync}) on a worker.

    @param message: the request, C{{"function": ..., "arguments": {...}}}.
    @return: authd's C{data}.
    @raise ClusterError: authd's error (C{Error 9008 - Duplicate name}), or
        why it could not be asked (1726 authd down, 3012 no worker daemon,
        3023 no master...).
    """
    if config.node_type == "master":
        endpoint = BlockingUNIXEndpoint(home.child(AUTH_SOCKET).path, connectTimeout=timeout)
        authd = AuthdClient(endpoint, endpoint.clock, timeout=timeout)
        try:
            raw = run(authd.request(message), endpoint, timeout + 1)
        finally:
            closeAll(endpoint)
    else:
        payload = json.dumps({"daemon_name": "authd", "message": message}).encode("utf-8")
        raw = callLocalSocket(home.controlSocket.path, b"sendsync", payload, timeout)
    return authdData(raw)


def authdData(raw):
    """
    The C{data} of authd's raw answer.

    @raise ClusterError: with authd's code and message for an error.
    """
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or type(answer.get("error")) is not int:
        raise ClusterError(f"Error registering a new agent: authd answered {raw[:80]!r}", 1725)
    if answer["error"] != 0:
        message = answer.get("message")
        raise ClusterError(message if isinstance(message, str) else "authd error",
                           answer["error"])
    return answer.get("data")


def addThroughAuthd(home, config, name, ip, group=None):
    """
    Register an agent with the master's authd.

    @return: its 3-digit ID.
    """
    arguments = {"name": name, "ip": ip}
    if group is not None:
        arguments["groups"] = group
    data = askAuthd(home, config, {"function": "add", "arguments": arguments})
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ClusterError(f"Error registering a new agent: authd answered {data!r:.80}", 1725)
    return data["id"]


def removeThroughAuthd(home, config, agentId):
    """
    Remove an agent with the master's authd (its line leaves client.keys).
    """
    askAuthd(home, config, {"function": "remove", "arguments": {"id": agentId, "purge": True}})


def listFromWazuhDB(home, timeout=AUTHD_TIMEOUT):
    """
    The agents of the node's wazuh-db, as L{IAgentStore.listAgents} lists
    them.
    """
    endpoint = BlockingUNIXEndpoint(home.child(WDB_SOCKET).path)
    commands = WazuhDBCommands(WazuhDBClient(endpoint, endpoint.clock))

    @inlineCallbacks
    def listAgents():
        numbers = sorted((yield commands.agentIds()))
        rows = yield commands.agentRows(numbers)
        return [listedAgent(rows[n]) for n in numbers if rows[n] is not None]

    try:
        return run(listAgents(), endpoint, timeout)
    finally:
        closeAll(endpoint)
