# -*- test-case-name: tests.test_cli -*-
"""
The argument parser of C{wazuh-cluster}: every subcommand's options, help
texts and examples.
"""

import argparse

from wazuhcluster import WAZUH_COMPATIBLE_VERSION, __version__

HOME_HELP = ("the node home, the equivalent of /var/ossec (default: $WAZUH_HOME, "
             "else /var/ossec when it exists)")

EXIT_STATUS = """\
exit status:
  0  success
  1  error (one line on stderr; with --json also a JSON error object on stdout)
  2  wrong usage"""

DESCRIPTION = f"""\
The Wazuh server cluster on Twisted (wazuhcluster {__version__}, following Wazuh
{WAZUH_COMPATIBLE_VERSION}): create node homes, check them, ask the running cluster,
manage agents, or run a demo cluster on this host. Run the nodes themselves
with 'twistd -n wazuh-master --home H' and 'twistd -n wazuh-worker --home H'."""

EXAMPLES = f"""\
examples:
  wazuh-cluster demo
  wazuh-cluster init --home /var/ossec --type master --name master01 \\
      --ca /root/wazuh-ca --master-host 10.0.0.1
  wazuh-cluster check-config --home /var/ossec
  wazuh-cluster control -l
  wazuh-cluster agent add --name web-01 --group default

{EXIT_STATUS}"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """
    Descriptions and epilogs as written; every option with a default other
    than nothing shows it.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.default not in (None, False, [], argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def _subparser(commands, name, summary, description, examples=""):
    epilog = (f"examples:\n{examples}\n\n" if examples else "") + EXIT_STATUS
    return commands.add_parser(name, help=summary, description=description,
                               epilog=epilog, formatter_class=_HelpFormatter)


def _addHome(parser, help=HOME_HELP):
    parser.add_argument("--home", metavar="H", default=None, help=help)


def _addInit(commands):
    init = _subparser(
        commands, "init", "create or update a node home",
        "Create a node home (layout, etc/ossec.conf, TLS certificates) or update\n"
        "an existing one. The cluster CA is created in --ca the first time and\n"
        "must be given to every node of the cluster (its private key never\n"
        "enters a node home). On an existing node, only what the options say\n"
        "changes, and init prints what changed.",
        "  wazuh-cluster init --home /var/ossec --type master --name master01 \\\n"
        "      --ca /root/wazuh-ca --master-host 10.0.0.1\n"
        "  wazuh-cluster init --home /var/ossec --type worker --name worker01 \\\n"
        "      --ca /root/wazuh-ca --master-host 10.0.0.1")
    _addHome(init)
    init.add_argument("--type", required=True, choices=["master", "worker"],
                      dest="node_type", help="the node type")
    init.add_argument("--name", required=True, metavar="NODE",
                      help="the node name (letters, digits, '_' and '-')")
    init.add_argument("--ca", required=True, metavar="CADIR",
                      help="the cluster CA directory, created when it has no CA; "
                           "keep it off the nodes (it holds ca.key and cluster.key)")
    init.add_argument("--master-host", metavar="HOST", default=None,
                      help="the address workers dial: required for a worker; for a "
                           "master, the name its certificate carries (default for a new "
                           "master: 127.0.0.1, which only workers on the same host can "
                           "dial)")
    init.add_argument("--cluster", metavar="NAME", default=None,
                      help="the cluster name (new node: wazuh; existing node: kept)")
    init.add_argument("--key", metavar="KEY32", default=None,
                      help="the 32-character cluster key (new node: CADIR/cluster.key; "
                           "existing node: kept)")
    init.add_argument("--port", type=int, metavar="PORT", default=None,
                      help="the cluster port (new node: 1516; existing node: kept)")
    init.add_argument("--bind", metavar="ADDR", default=None,
                      help="the address the master listens on (new node: 0.0.0.0; "
                           "existing node: kept)")
    init.add_argument("--agent-store", metavar="BACKEND", default=None,
                      choices=["sqlite", "wazuh-db"], dest="agent_store",
                      help="where the node keeps its agents: sqlite (its own database) or "
                           "wazuh-db (the Wazuh manager's, beside which it replaces "
                           "wazuh-clusterd); recorded in etc/cluster.json (new node: "
                           "sqlite; existing node: kept)")
    init.add_argument("--nodes", metavar="H1,H2", default=None,
                      help="every master candidate's address, in the order workers try "
                           "them (written as <nodes>; default: --master-host); a master "
                           "candidate's own --master-host is one of them")
    init.add_argument("--database", metavar="postgresql://USER@HOST:PORT/DB", default=None,
                      help="a master keeps its agents in this PostgreSQL database, shared "
                           "by every master candidate (no password in it; default: "
                           "SQLite, queue/db/global.db)")
    init.add_argument("--password-file", metavar="FILE", default=None,
                      help="with --database: a file whose first line is the database "
                           "password")


def _addCheckConfig(commands):
    check = _subparser(
        commands, "check-config", "validate a node home and print its configuration",
        "Check what the node checks when it starts (etc/ossec.conf, cluster.json,\n"
        "the TLS identity against ca.pem, the agent database, the directories it\n"
        "writes) and print the effective configuration (cluster key masked). Each\n"
        "problem is one line on stderr.",
        "  wazuh-cluster check-config --home /var/ossec")
    _addHome(check)


def _addControl(commands):
    control = _subparser(
        commands, "control", "ask the running cluster, like Wazuh's cluster_control",
        "Ask the running cluster through this node's daemon (a worker forwards\n"
        "the question to its master). Output in cluster_control's layout, or the\n"
        "Wazuh API's JSON with --json. Without an option, print this help.",
        "  wazuh-cluster control -l\n"
        "  wazuh-cluster control -a -fs active disconnected\n"
        "  wazuh-cluster control -i more -fn worker01\n"
        "  wazuh-cluster control --home /var/ossec -l --json")
    _addHome(control)
    what = control.add_mutually_exclusive_group()
    what.add_argument("-l", "--list", "--list-nodes", action="store_true", dest="list",
                      help="list the nodes: NAME TYPE VERSION ADDRESS")
    what.add_argument("-a", "--agents", "--list-agents", action="store_true",
                      dest="agents", help="list the agents: ID NAME IP STATUS VERSION "
                                          "NODE NAME")
    what.add_argument("-i", "--health", nargs="?", const="", metavar="more",
                      help="the health of the cluster; '-i more' for every detail")
    control.add_argument("-fn", "--filter-node", nargs="+", default=None, dest="nodes",
                         metavar="NODE", help="only these nodes (with -l, -a, -i)")
    control.add_argument("-fs", "--filter-status", "--filter-agent-status", nargs="+",
                         default=None, dest="statuses", metavar="STATUS",
                         help="only agents with these statuses (with -a): active, "
                              "pending, never_connected, disconnected")
    control.add_argument("--json", action="store_true",
                         help="print the Wazuh API's JSON shapes")
    return control


def _addSwitchover(commands):
    switchover = _subparser(
        commands, "switchover", "hand the active master role to a standby master",
        "On the active master's home: stop serving, free the PostgreSQL lock and\n"
        "reserve it for the standby master NODE, then wait until NODE serves.",
        "  wazuh-cluster switchover --home /var/ossec --to master02")
    _addHome(switchover)
    switchover.add_argument("--to", required=True, metavar="NODE",
                            help="the standby master to hand the active role to")
    switchover.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                            help="how long to wait for NODE to serve")


def _addAgent(commands):
    agent = _subparser(
        commands, "agent", "manage agents (client.keys and the agent database)",
        "Register, remove and group agents on the master; list them or record\n"
        "an agent's report on any node.",
        "  wazuh-cluster agent add --home /var/ossec --name web-01 --group default\n"
        "  wazuh-cluster agent list --home /var/ossec --json")
    actions = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    actions.required = True

    add = _subparser(actions, "add", "register an agent (master only)",
                     "Append a new agent to etc/client.keys (every other line is kept\n"
                     "as it is) and to the agent database; print its ID. With the wazuh-db\n"
                     "agent store, the master's authd registers it (from a worker too,\n"
                     "through the worker's daemon).",
                     "  wazuh-cluster agent add --name web-01 --ip 10.0.0.20 --group web")
    _addHome(add)
    add.add_argument("--name", required=True, help="the agent name")
    add.add_argument("--ip", default="any",
                     help="the agent's address or network; 'any' for any")
    add.add_argument("--group", default=None,
                     help="a group of etc/shared/ to put the agent in")

    remove = _subparser(actions, "remove", "remove an agent (master only)",
                        "Remove an agent's line from etc/client.keys and its row from "
                        "the agent database (with the wazuh-db agent store, through the "
                        "master's authd, from a worker too).",
                        "  wazuh-cluster agent remove --id 003")
    _addHome(remove)
    remove.add_argument("--id", required=True, help="the agent ID")

    group = _subparser(actions, "group", "set or clear an agent's groups (master only)",
                       "Replace an agent's groups (each must exist in etc/shared/), or\n"
                       "remove them all with --clear.",
                       "  wazuh-cluster agent group --id 001 --set web,default\n"
                       "  wazuh-cluster agent group --id 001 --clear")
    _addHome(group)
    group.add_argument("--id", required=True, help="the agent ID")
    change = group.add_mutually_exclusive_group(required=True)
    change.add_argument("--set", dest="groups", metavar="G1,G2",
                        help="the groups, in priority order")
    change.add_argument("--clear", action="store_true", help="remove every group")

    listing = _subparser(actions, "list", "list the agents this node knows",
                         "List the agents of this node's database (master or worker).",
                         "  wazuh-cluster agent list --json")
    _addHome(listing)
    listing.add_argument("--json", action="store_true", help='print {"agents": [...]}')

    accept = _subparser(actions, "accept-keys",
                        "let the master announce a client.keys that lost many agents",
                        "The master does not announce a client.keys that is empty, gone, or\n"
                        "lost more than intervals.master.max_client_keys_loss of the agents\n"
                        "of the last one it announced (the workers keep theirs, and the\n"
                        "master logs an ERROR each round). Accept the current file as it is:\n"
                        "the master announces it at its next integrity round.",
                        "  wazuh-cluster agent accept-keys --home /var/ossec")
    _addHome(accept)

    report = _subparser(actions, "report", "record that an agent reports to this node",
                        "Record what wazuh-remoted records when an agent reports to this\n"
                        "node, and ask the daemon to send it to the master now.",
                        "  wazuh-cluster agent report --id 001 --os-name Ubuntu "
                        "--os-version 24.04")
    _addHome(report)
    report.add_argument("--id", required=True, help="the agent ID (in this node's "
                                                     "client.keys)")
    report.add_argument("--status", default="active", choices=["active", "disconnected"],
                        help="the agent's connection status")
    report.add_argument("--os-name", default=None, help="the agent's OS name")
    report.add_argument("--os-version", default=None, help="the agent's OS version")
    report.add_argument("--version", default=None,
                        help="the agent's version, e.g. 'Wazuh v4.14.7'")
    report.add_argument("--label", action="append", default=None, metavar="KEY=VALUE",
                        help="a label of the agent (repeatable)")


def _addRevoke(commands):
    revoke = _subparser(
        commands, "revoke", "revoke a node's certificates (run on the master's home)",
        "Add every certificate the CA issued to NODE (or the certificate file\n"
        "--cert names) to the cluster's revocation list, signed with the CA key:\n"
        "CADIR/crl.pem, installed as the master's etc/cluster.crl. The running\n"
        "master reloads it, disconnects the revoked node and syncs the list to\n"
        "every worker; a revoked node is refused in the TLS handshake.",
        "  wazuh-cluster revoke --home /var/ossec --ca /root/wazuh-ca --name worker07\n"
        "  wazuh-cluster revoke --home /var/ossec --ca /root/wazuh-ca \\\n"
        "      --cert /tmp/worker07-node.pem")
    _addHome(revoke, help="the master's node home (default: $WAZUH_HOME, else /var/ossec)")
    revoke.add_argument("--ca", required=True, metavar="CADIR",
                        help="the cluster CA directory (its key signs the list)")
    revoke.add_argument("--name", metavar="NODE", default=None,
                        help="the node whose certificates to revoke")
    revoke.add_argument("--cert", metavar="PATH", default=None,
                        help="a certificate file to revoke (e.g. a node's "
                             "etc/sslcluster/node.pem)")


def _addDemo(commands):
    demo = _subparser(
        commands, "demo", "run a demo cluster on this host (master + workers)",
        "Create a CA, a master and N workers with sample rules, groups and agents\n"
        "under --dir, run them on 127.0.0.1 in this process and print what to try.\n"
        "Runs until Ctrl-C; running it again reuses the homes.",
        "  wazuh-cluster demo\n"
        "  wazuh-cluster demo --dir /tmp/demo --workers 3 --port 15160")
    demo.add_argument("--dir", default="demo", help="where to create the demo")
    demo.add_argument("--workers", type=int, default=2, help="how many workers")
    demo.add_argument("--port", type=int, default=0,
                      help="the master's port (default: a free one, chosen at each run)")


def _addMigrateAgents(commands):
    migrate = _subparser(
        commands, "migrate-agents", "copy the node's SQLite agent database into PostgreSQL",
        "Copy a master's agent database (agents, labels, groups, versions) from\n"
        "queue/db/global.db into a PostgreSQL database, in one transaction. A target\n"
        "that already holds agents is refused unless --replace.",
        "  wazuh-cluster migrate-agents --home /var/ossec \\\n"
        "      --to postgresql://wazuh@db.example:5432/wazuh --password-file /root/pgpass")
    _addHome(migrate)
    migrate.add_argument("--to", required=True, dest="target",
                         metavar="postgresql://USER@HOST:PORT/DB",
                         help="the PostgreSQL database (no password in it)")
    migrate.add_argument("--password-file", default=None,
                         help="a file whose first line is the PostgreSQL password")
    migrate.add_argument("--replace", action="store_true",
                         help="delete the agents the target already holds")


def buildParser():
    """
    The argument parser of C{wazuh-cluster}.
    """
    parser = argparse.ArgumentParser(prog="wazuh-cluster", description=DESCRIPTION,
                                     epilog=EXAMPLES, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="store_true", dest="show_version",
                        help="print the version and the Wazuh version it follows")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _addInit(commands)
    _addCheckConfig(commands)
    control = _addControl(commands)
    _addSwitchover(commands)
    _addAgent(commands)
    _addMigrateAgents(commands)
    _addRevoke(commands)
    _addDemo(commands)
    parser.controlParser = control
    return parser
