# -*- test-case-name: tests.test_control -*-
"""
The client side of C{wazuh-cluster control}: asks the local daemon over its
control socket (in Wazuh's local protocol, as C{cluster_control} does) and
prints the answer in the original's layout
(C{cluster_control}, WAZUH.md section 7.2) or as JSON.

Every failure exits with status 1: one line on stderr and, with C{--json},
a JSON error object on stdout shaped like the Wazuh API's errors:
C{{"error": 3023, "message": "Worker node is not connected to master"}}.
"""

import json
import re

from twisted.internet.defer import inlineCallbacks

from wazuhcluster.commands import ControlFailed
from wazuhcluster.errors import ClusterError
from wazuhcluster.localclient import LocalClient
from wazuhcluster.localserver.base import OWN_COMMANDS
from wazuhcluster.wazuhlocal.wazuhjson import dumps, loads

NOT_RUNNING = "Cluster is not running."

#: Wazuh's code for "Cluster is not running" (local client, WAZUH.md 7.1).
NOT_RUNNING_CODE = 3012

#: Wazuh's code for a request that got no answer in time.
TIMEOUT_CODE = 3020

#: The largest answer decoded.
MAX_ANSWER = 256 * 1024 * 1024

#: C{cluster_control}'s text when C{-fs} comes without C{-a}.
WRONG_ARGUMENTS = "Wrong arguments."

_CODED = re.compile(r"Error (\d+) - (.*)\Z", re.DOTALL)


class ClusterNotRunning(Exception):
    """
    No daemon answers on the control socket.
    """


def errorObject(error):
    """
    The JSON error object of C{--json} for a failure text or exception:
    C{{"error": CODE, "message": TEXT}} (code 1000 when the text has none).

    @param error: a L{ClusterError}, L{ControlFailed}, L{ClusterNotRunning}
        or a text (C{"Error 3023 - ..."}).
    @rtype: L{dict}
    """
    if isinstance(error, ClusterNotRunning):
        return {"error": NOT_RUNNING_CODE, "message": NOT_RUNNING}
    if isinstance(error, ClusterError):
        return {"error": error.code, "message": error.message}
    text = str(error)
    match = _CODED.match(text)
    if match is None:
        return {"error": 1000, "message": text}
    return {"error": int(match.group(1)), "message": match.group(2)}


def localRequest(request, arguments=None):
    """
    The local-protocol request for one of this project's control requests:
    C{get_nodes} and C{get_health} are asked as Wazuh's own clients ask
    them (the answer of C{get_nodes} turned back into C{{"nodes": [...]}});
    the others (C{get_agents}, C{refresh_agent_groups}, C{sync_agent_info})
    are their commands (L{OWN_COMMANDS}) with the arguments as a JSON
    object.

    @return: C{(command, payload, convert)}, C{convert} turning the decoded
        answer into this project's shape.
    """
    arguments = dict(arguments or {})
    names = list(arguments.get("node_names") or [])
    if request == "get_nodes":
        query = {"filter_node": names or None, "offset": 0, "limit": None, "sort": None,
                 "search": None, "select": None, "filter_type": "all", "distinct": False}
        return b"get_nodes", dumps(query), lambda answer: {"nodes": answer["items"]}
    if request == "get_health":
        return b"get_health", dumps(names or None), lambda answer: answer
    if request not in OWN_COMMANDS:
        raise ClusterError(f"Unknown control request {request!r}", 3038)
    return OWN_COMMANDS[request], dumps(arguments), lambda answer: answer


@inlineCallbacks
def askDaemon(reactor, home, request, arguments=None, timeout=30):
    """
    Send one control request to the daemon of C{home} over its local
    socket, in Wazuh's local protocol (L{wazuhcluster.localclient}).

    @raise ClusterNotRunning: when nothing answers on the socket.
    @raise ClusterError: when the daemon answers with an error (Wazuh's
        code and text), or does not answer in C{timeout} seconds (3020).
    """
    command, payload, convert = localRequest(request, arguments)
    try:
        client = yield LocalClient.forSocket(reactor, home.controlSocket.path, timeout)
    except ClusterError as error:
        if error.code == NOT_RUNNING_CODE:
            raise ClusterNotRunning(NOT_RUNNING) from None
        raise
    try:
        answer = yield client.execute(command, payload, timeout)
    finally:
        client.close()
    try:
        return convert(loads(answer, maxSize=MAX_ANSWER))
    except (ClusterError, KeyError, TypeError) as error:
        raise ClusterError(f"The cluster daemon's answer to {request} is not what was "
                           f"expected: {str(error)[:200]}", 3016) from None


def formatTable(header, rows):
    """
    Columns as wide as their longest cell plus two, like cluster_control.
    """
    table = [list(header)] + [["unknown" if c in (None, "") else str(c) for c in row]
                              for row in rows]
    widths = [max(len(row[i]) for row in table) + 2 for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def nodeType(node):
    """
    The TYPE shown for a node: C{master (standby)} for a standby master.
    """
    if node.get("type") == "master" and node.get("role") == "standby":
        return "master (standby)"
    return node.get("type")


def formatNodes(result):
    """
    C{control -l}: C{NAME TYPE VERSION ADDRESS}.
    """
    return formatTable(
        ("NAME", "TYPE", "VERSION", "ADDRESS"),
        [(n["name"], nodeType(n), n["version"], n["ip"]) for n in result["nodes"]],
    )


def formatAgents(result):
    """
    C{control -a}: C{ID NAME IP STATUS VERSION NODE NAME}.
    """
    return formatTable(
        ("ID", "NAME", "IP", "STATUS", "VERSION", "NODE NAME"),
        [(a.get("id"), a.get("name"), a.get("ip"), a.get("status"), a.get("version"),
          a.get("node_name")) for a in result["agents"]],
    )


def _duration(block, startKey, endKey):
    from datetime import datetime

    start, end = block.get(startKey, "n/a"), block.get(endKey, "n/a")
    if "n/a" in (start, end):
        return "n/a"
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    seconds = (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
    return f"{max(seconds, 0.001):.3f}s"


def formatHealth(clusterName, result, more=False):
    """
    C{control -i [more]}.
    """
    workers = {name: node for name, node in sorted(result["nodes"].items())
               if node["info"]["type"] == "worker"}
    lines = [f"Cluster name: {clusterName}", ""]
    active = result.get("active_master")
    if "active_master" in result:
        lines[-1:] = [f"Active master: {active['name']} ({active['ip']}) since "
                      f"{active['since']}" if active else "Active master: none", ""]
    if not more:
        lines.append(f"Last completed synchronization for connected nodes ({len(workers)}):")
        for name, node in workers.items():
            status = node["status"]
            lines.append(
                f"    {name} ({node['info']['ip']}): "
                f"Integrity check: {status['last_check_integrity']['date_end_master']} | "
                f"Integrity sync: {status['last_sync_integrity']['date_end_master']} | "
                f"Agents-info: {status['last_sync_agentinfo']['date_end_master']} | "
                f"Agent-groups: {status['last_sync_agentgroup']['date_end']} | "
                f"Agent-groups full: {status['last_sync_full_agentgroup']['date_end']} | "
                f"Last keep alive: {status['last_keep_alive']}."
            )
        return "\n".join(lines) + "\n"
    lines.append(f"Connected nodes ({result['n_connected_nodes']}):")
    for name, node in sorted(result["nodes"].items()):
        info, status = node["info"], node["status"]
        lines += ["", f"    {name} ({info['ip']})",
                  f"        Version: {info['version']}",
                  f"        Type: {nodeType(info)}",
                  f"        Active agents: {info['n_active_agents']}"]
        if info["type"] != "worker":
            continue
        check, sync = status["last_check_integrity"], status["last_sync_integrity"]
        files = sync["total_files"]
        info_sync = status["last_sync_agentinfo"]
        lines += [
            "        Status:",
            "            Last keep Alive:",
            f"                Last received: {status['last_keep_alive']}.",
            "            Integrity check:",
            f"                Last integrity check: "
            f"{_duration(check, 'date_start_master', 'date_end_master')} "
            f"({check['date_start_master']} - {check['date_end_master']}).",
            f"                Permission to check integrity: {status['sync_integrity_free']}.",
            "            Integrity sync:",
            f"                Last integrity synchronization: "
            f"{_duration(sync, 'date_start_master', 'date_end_master')} "
            f"({sync['date_start_master']} - {sync['date_end_master']}).",
            f"                Synchronized files: Shared: {files['shared']} | "
            f"Missing: {files['missing']} | Extra: {files['extra']}.",
            f"                In sync with the master: {status.get('integrity_in_sync')}.",
            "            Agents-info:",
            f"                Last synchronization: "
            f"{_duration(info_sync, 'date_start_master', 'date_end_master')} "
            f"({info_sync['date_start_master']} - {info_sync['date_end_master']}).",
            f"                Number of synchronized chunks: {info_sync['n_synced_chunks']}.",
            f"                Permission to synchronize agent-info: "
            f"{status['sync_agent_info_free']}.",
        ]
        for title, key in (("Agents-groups", "last_sync_agentgroup"),
                           ("Agents-groups full", "last_sync_full_agentgroup")):
            block = status[key]
            lines += [
                f"            {title}:",
                f"                Last synchronization: "
                f"{_duration(block, 'date_start', 'date_end')} "
                f"({block['date_start']} - {block['date_end']}).",
                f"                Number of synchronized chunks: {block['n_synced_chunks']}.",
            ]
    return "\n".join(lines) + "\n"


def formatJson(result):
    """
    The API-shaped JSON answer, indented.
    """
    return json.dumps(result, indent=2, sort_keys=False) + "\n"


__all__ = ["askDaemon", "ClusterNotRunning", "ControlFailed", "formatNodes",
           "formatAgents", "formatHealth", "formatJson", "NOT_RUNNING", "errorObject"]


# --- the command ---------------------------------------------------------------


def controlUsageProblem(args):
    """
    What is wrong with the options of C{control}, as C{cluster_control}
    says it, or L{None}.

    @return: C{(text, exit status)} or L{None}.
    """
    if args.statuses and not args.agents:
        return (f"{WRONG_ARGUMENTS} -fs/--filter-agent-status goes with "
                "-a/--list-agents.", 1)
    if args.health not in (None, "", "more"):
        return (f"unknown -i argument {args.health!r}: use '-i' or '-i more'", 2)
    return None


def _request(args):
    """
    The control request and its arguments for the options C{args}.
    """
    arguments = {"node_names": args.nodes or []}
    if args.list:
        return "get_nodes", arguments
    if args.agents:
        arguments["statuses"] = args.statuses or []
        return "get_agents", arguments
    return "get_health", arguments


def _show(result, args, clusterName):
    if args.json:
        return formatJson(result)
    if args.list:
        return formatNodes(result)
    if args.agents:
        return formatAgents(result)
    return formatHealth(clusterName, result, more=(args.health == "more"))


def reportFailure(error, args, out, err):
    """
    Tell the user why the request failed: one line on C{err}, and the JSON
    error object on C{out} with C{--json}.

    @return: the exit status, 1.
    """
    text = NOT_RUNNING if isinstance(error, ClusterNotRunning) else str(error)
    err.write(text + "\n")
    if args.json:
        out.write(formatJson(errorObject(error)))
    return 1


@inlineCallbacks
def controlCommand(reactor, home, args, out, err, clusterName="wazuh"):
    """
    Ask the daemon of C{home} what the options C{args} want, print the
    answer and return the exit status.

    @param clusterName: the cluster name C{-i} prints.
    @return: a Deferred firing with the exit status (0 or 1); it never
        fails for a failure the user can cause.
    """
    request, arguments = _request(args)
    try:
        result = yield askDaemon(reactor, home, request, arguments)
    except (ClusterNotRunning, ControlFailed, ClusterError) as error:
        return reportFailure(error, args, out, err)
    out.write(_show(result, args, clusterName))
    return 0


def runControl(home, args, out, err, clusterName="wazuh"):
    """
    C{wazuh-cluster control}: run the reactor for one request.

    @return: the exit status.
    """
    from wazuhcluster.control import socketAnswers

    if not home.controlSocket.exists() or not socketAnswers(home.controlSocket.path):
        return reportFailure(ClusterNotRunning(), args, out, err)

    from twisted.internet.task import react

    def main(reactor):
        d = controlCommand(reactor, home, args, out, err, clusterName)
        return d.addCallback(_exitWith)

    try:
        react(main)
    except SystemExit as done:
        return done.code or 0
    return 0


def _exitWith(status):
    if status:
        raise SystemExit(status)
