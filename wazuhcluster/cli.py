# -*- test-case-name: tests.test_cli,tests.test_control,tests.test_init,tests.test_agentcli -*-
"""
The C{wazuh-cluster} command: run the subcommand the command line names
(init, check-config, control, switchover, agent, migrate-agents, revoke,
demo), whose options L{wazuhcluster.cliparser} defines.

User mistakes end with one clear line on stderr and a non-zero exit status,
never a traceback: 1 for an error, 2 for wrong usage (argparse's own).

Every subcommand that works on a node home takes C{--home}; without it the
home is C{$WAZUH_HOME}, else C{/var/ossec} when that directory exists (a
Wazuh manager's home), as the twistd plugins do.
"""

import os
import sys

from wazuhcluster import WAZUH_COMPATIBLE_VERSION, __version__
from wazuhcluster.cliparser import buildParser
from wazuhcluster.errors import ClusterError
from wazuhcluster.home import NodeHome

#: The home of a Wazuh manager, used when it exists and nothing else is said.
WAZUH_DEFAULT_HOME = "/var/ossec"


def versionText():
    """
    What C{--version} prints.
    """
    return (f"wazuh-cluster (wazuhcluster) {__version__}, compatible with "
            f"Wazuh {WAZUH_COMPATIBLE_VERSION}\n")


def defaultHome(environ=None):
    """
    The node home used when C{--home} is not given: C{$WAZUH_HOME}, else
    C{/var/ossec} when it is a directory, else L{None}.
    """
    environ = os.environ if environ is None else environ
    if environ.get("WAZUH_HOME"):
        return environ["WAZUH_HOME"]
    if os.path.isdir(WAZUH_DEFAULT_HOME):
        return WAZUH_DEFAULT_HOME
    return None


# --- the subcommands -----------------------------------------------------------


def _homeProblem(home, mustExist=True):
    """
    Why C{home} cannot be a node home, or L{None}.
    """
    path = home.root.path
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"--home {path} is not a directory"
    if mustExist and not os.path.isdir(path):
        return (f"the home directory {path} does not exist (create it with "
                "'wazuh-cluster init')")
    return None


def _home(args, mustExist=True):
    """
    The L{NodeHome} of C{args.home}.

    @raise ClusterError: 1006 when it is not a usable directory.
    """
    home = NodeHome.fromPath(args.home)
    problem = _homeProblem(home, mustExist)
    if problem is not None:
        raise ClusterError(problem, 1006)
    return home


def runInit(args, out, err):
    from wazuhcluster.nodeinit import formatInitSummary, initNodeReport

    home = _home(args, mustExist=False)
    report = initNodeReport(home, args.node_type, args.name, args.ca,
                            clusterName=args.cluster, key=args.key,
                            masterHost=args.master_host, port=args.port,
                            bindAddr=args.bind, agentStore=args.agent_store, nodes=args.nodes,
                            database=args.database, passwordFile=args.password_file)
    out.write(formatInitSummary(home, args.ca, report))
    return 0


def runCheckConfig(args, out, err):
    from wazuhcluster.checkconfig import runCheckConfig as check

    return check(_home(args), out, err)


def runControl(args, out, err):
    from wazuhcluster.controlclient import controlUsageProblem, reportFailure
    from wazuhcluster.controlclient import runControl as control
    from wazuhcluster.ossecconf import readClusterConfig

    problem = controlUsageProblem(args)
    if problem is not None:
        text, status = problem
        err.write(f"wazuh-cluster control: {text}\n")
        return status
    if not (args.list or args.agents or args.health is not None):
        args.parser.controlParser.print_help(out)
        return 0
    try:
        home = _home(args)
        clusterName = readClusterConfig(home).name
    except ClusterError as error:
        if not args.json:
            raise
        return reportFailure(error, args, out, err)
    return control(home, args, out, err, clusterName)


def runSwitchover(args, out, err):
    from wazuhcluster.standby.switchover import runSwitchover as switchover

    return switchover(_home(args), args.to, args.timeout, out, err)


def runAgent(args, out, err):
    from wazuhcluster import agentcli

    home = _home(args).root.path
    action = args.agent_command
    if action == "accept-keys":
        from wazuhcluster.master.clientkeys_guard import runAcceptKeys

        return runAcceptKeys(_home(args), out)
    if action == "add":
        return agentcli.agentAdd(home, args.name, ip=args.ip, group=args.group,
                                 out=out, err=err)
    if action == "remove":
        return agentcli.agentRemove(home, args.id, out=out, err=err)
    if action == "group":
        if args.clear:
            groups = []
        else:
            groups = [g.strip() for g in args.groups.split(",") if g.strip()]
            if not groups:
                err.write("wazuh-cluster agent group: --set needs at least one group "
                          "(use --clear to remove every group)\n")
                return 2
        return agentcli.agentGroup(home, args.id, groups, out=out, err=err)
    if action == "list":
        return agentcli.agentList(home, args.json, out=out, err=err)
    return agentcli.agentReport(home, args.id, status=args.status, osName=args.os_name,
                                osVersion=args.os_version, version=args.version,
                                labels=args.label or [], out=out, err=err)


def runMigrateAgents(args, out, err):
    from wazuhcluster.agentmigrate import migrateAgents

    return migrateAgents(args.home, args.target, passwordFile=args.password_file,
                         replace=args.replace, out=out, err=err)


def runRevoke(args, out, err):
    from wazuhcluster.revokecmd import runRevoke as revoke

    return revoke(_home(args), args.ca, args.name, args.cert, out)


def runDemo(args, out, err):
    from wazuhcluster.demo import runDemo as demo

    return demo(args.dir, args.workers, args.port, out, err)


_RUNNERS = {
    "init": runInit,
    "check-config": runCheckConfig,
    "control": runControl,
    "switchover": runSwitchover,
    "agent": runAgent,
    "migrate-agents": runMigrateAgents,
    "revoke": runRevoke,
    "demo": runDemo,
}


def describeOSError(error):
    """
    One line for an L{OSError}: its reason and the path concerned.
    """
    reason = error.strerror or str(error) or type(error).__name__
    paths = [p for p in (error.filename, getattr(error, "filename2", None)) if p]
    return reason + (": " + " -> ".join(map(str, paths)) if paths else "")


def run(argv, out=None, err=None, environ=None):
    """
    Run C{wazuh-cluster} with C{argv}; return the exit status.

    @param environ: the environment (for C{WAZUH_HOME}); L{os.environ} by
        default.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:
        return done.code
    if args.show_version:
        out.write(versionText())
        return 0
    if args.command is None:
        parser.print_help(err)
        return 2
    args.parser = parser
    program = " ".join(["wazuh-cluster", args.command]
                       + ([args.agent_command] if args.command == "agent" else []))
    if hasattr(args, "home"):
        if getattr(args, "home", None) is None:
            args.home = defaultHome(environ)
        if args.home is None:
            err.write(f"{program}: no node home: pass --home H or set WAZUH_HOME\n")
            return 2
    try:
        return _RUNNERS[args.command](args, out, err)
    except ClusterError as error:
        err.write(f"{program}: {error}\n")
        return 1
    except OSError as error:
        err.write(f"{program}: {describeOSError(error)}\n")
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
