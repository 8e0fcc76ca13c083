# -*- test-case-name: tests.test_control,tests.test_init,tests.test_agentcli -*-
"""
The C{wazuh-cluster} command: init, check-config, control, agent, demo.

User mistakes end with one clear line and a non-zero exit status, never a
traceback.
"""

import argparse
import sys

from wazuhcluster.errors import ClusterError


def _parser():
    parser = argparse.ArgumentParser(
        prog="wazuh-cluster",
        description="Wazuh cluster on Twisted: set up nodes, check them, ask them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    init = commands.add_parser("init", help="create a node home (layout, ossec.conf, certificates)")
    init.add_argument("--home", required=True, help="the node home to create")
    init.add_argument("--type", required=True, choices=["master", "worker"], dest="node_type")
    init.add_argument("--name", required=True, help="the node name")
    init.add_argument("--cluster", default="wazuh", help="the cluster name (default: wazuh)")
    init.add_argument("--key", default=None,
                      help="the 32-character cluster key (default: the one kept in the CA dir)")
    init.add_argument("--master-host", default=None,
                      help="the master's address (required for a worker)")
    init.add_argument("--port", type=int, default=1516)
    init.add_argument("--bind", default="0.0.0.0", help="the master's listen address")
    init.add_argument("--ca", required=True, help="the cluster CA directory (created if empty)")

    check = commands.add_parser("check-config", help="validate and print the configuration")
    check.add_argument("--home", required=True)

    control = commands.add_parser("control", help="ask the running cluster (cluster_control)")
    control.add_argument("--home", required=True)
    what = control.add_mutually_exclusive_group(required=True)
    what.add_argument("-l", "--list", action="store_true", help="list the nodes")
    what.add_argument("-a", "--agents", action="store_true", help="list the agents")
    what.add_argument("-i", "--health", nargs="?", const="", metavar="more",
                      help="health of the cluster ('-i more' for details)")
    control.add_argument("-fn", "--filter-node", nargs="+", default=None, dest="nodes",
                         help="only these nodes")
    control.add_argument("-fs", "--filter-status", nargs="+", default=None, dest="statuses",
                         help="only agents with these statuses (-a)")
    control.add_argument("--json", action="store_true", help="print the API-shaped JSON")

    agent = commands.add_parser("agent", help="manage agents (client.keys and the agent database)")
    agents = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    agents.required = True
    add = agents.add_parser("add", help="register an agent (master only)")
    add.add_argument("--home", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--ip", default="any")
    add.add_argument("--group", default=None)
    remove = agents.add_parser("remove", help="remove an agent (master only)")
    remove.add_argument("--home", required=True)
    remove.add_argument("--id", required=True)
    group = agents.add_parser("group", help="set an agent's groups (master only)")
    group.add_argument("--home", required=True)
    group.add_argument("--id", required=True)
    group.add_argument("--set", required=True, dest="groups", help="g1,g2,...")
    listing = agents.add_parser("list", help="list the agents this node knows")
    listing.add_argument("--home", required=True)
    listing.add_argument("--json", action="store_true")
    report = agents.add_parser("report", help="record that an agent reports to this node")
    report.add_argument("--home", required=True)
    report.add_argument("--id", required=True)
    report.add_argument("--status", default="active", choices=["active", "disconnected"])
    report.add_argument("--os-name", default=None)
    report.add_argument("--os-version", default=None)
    report.add_argument("--version", default=None)
    report.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")

    migrate = commands.add_parser(
        "migrate-agents", help="copy the node's SQLite agent database into PostgreSQL")
    migrate.add_argument("--home", required=True)
    migrate.add_argument("--to", required=True, dest="target",
                         metavar="postgresql://USER@HOST:PORT/DB")
    migrate.add_argument("--password-file", default=None,
                         help="a file whose first line is the PostgreSQL password")
    migrate.add_argument("--replace", action="store_true",
                         help="delete the agents the target already holds")

    demo = commands.add_parser("demo", help="run a local demo cluster on loopback")
    demo.add_argument("--dir", default="demo", help="where to create the demo (default: ./demo)")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--port", type=int, default=0,
                      help="the master's port (default: a free one)")
    return parser


def runInit(args, out, err):
    from wazuhcluster.nodeinit import formatInitSummary, initNode

    home = initNode(args.home, args.node_type, args.name, args.ca, clusterName=args.cluster,
                    key=args.key, masterHost=args.master_host, port=args.port,
                    bindAddr=args.bind)
    out.write(formatInitSummary(home, args.ca))
    return 0


def runCheckConfig(args, out, err):
    from wazuhcluster.checkconfig import runCheckConfig as check

    return check(args.home, out)


def runControl(args, out, err):
    from twisted.internet.task import react

    from wazuhcluster.control import socketAnswers
    from wazuhcluster.controlclient import NOT_RUNNING
    from wazuhcluster.home import NodeHome

    home = NodeHome.fromPath(args.home)
    if not home.controlSocket.exists() or not socketAnswers(home.controlSocket.path):
        err.write(NOT_RUNNING + "\n")
        return 1
    status = []
    react(lambda reactor: _control(reactor, home, args, out, err, status), [])
    return status[0] if status else 1


def _control(reactor, home, args, out, err, status):
    from wazuhcluster.commands import ControlFailed
    from wazuhcluster.controlclient import (
        ClusterNotRunning,
        askDaemon,
        formatAgents,
        formatHealth,
        formatJson,
        formatNodes,
    )
    from wazuhcluster.ossecconf import readClusterConfig

    arguments = {"node_names": args.nodes or []}
    if args.list:
        request = "get_nodes"
    elif args.agents:
        request = "get_agents"
        arguments["statuses"] = args.statuses or []
    else:
        request = "get_health"

    def show(result):
        if args.json:
            out.write(formatJson(result))
        elif args.list:
            out.write(formatNodes(result))
        elif args.agents:
            out.write(formatAgents(result))
        else:
            clusterName = readClusterConfig(home).name
            out.write(formatHealth(clusterName, result, more=(args.health == "more")))
        status.append(0)

    def failed(failure):
        failure.trap(ClusterNotRunning, ControlFailed, ClusterError)
        err.write(f"{failure.value}\n")
        status.append(1)

    if args.health not in (None, "", "more"):
        err.write(f"wazuh-cluster control: unknown -i option {args.health!r} (use '-i more')\n")
        status.append(2)
        return None
    return askDaemon(reactor, home, request, arguments).addCallbacks(show, failed)


def runAgent(args, out, err):
    from wazuhcluster import agentcli

    action = args.agent_command
    if action == "add":
        return agentcli.agentAdd(args.home, args.name, ip=args.ip, group=args.group,
                                 out=out, err=err)
    if action == "remove":
        return agentcli.agentRemove(args.home, args.id, out=out, err=err)
    if action == "group":
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        return agentcli.agentGroup(args.home, args.id, groups, out=out, err=err)
    if action == "list":
        return agentcli.agentList(args.home, args.json, out=out, err=err)
    return agentcli.agentReport(args.home, args.id, status=args.status, osName=args.os_name,
                                osVersion=args.os_version, version=args.version,
                                labels=args.label, out=out, err=err)


def runMigrateAgents(args, out, err):
    from wazuhcluster.agentmigrate import migrateAgents

    return migrateAgents(args.home, args.target, passwordFile=args.password_file,
                         replace=args.replace, out=out, err=err)


def runDemo(args, out, err):
    from wazuhcluster.demo import runDemo as demo

    return demo(args.dir, args.workers, args.port, out, err)


_RUNNERS = {
    "init": runInit,
    "check-config": runCheckConfig,
    "control": runControl,
    "agent": runAgent,
    "demo": runDemo,
    "migrate-agents": runMigrateAgents,
}


def run(argv, out=None, err=None):
    """
    Run C{wazuh-cluster} with C{argv}; return the exit status.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        return _RUNNERS[args.command](args, out, err)
    except ClusterError as error:
        err.write(f"wazuh-cluster {args.command}: {error}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def main():
    """
    Console script entry point.
    """
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
