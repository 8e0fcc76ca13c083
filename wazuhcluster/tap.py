# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugins C{wazuh-master} and C{wazuh-worker}: options and the
service tree of a node.
"""

import os
import socket
import sys
import time

from twisted.application.service import MultiService, Service
from twisted.logger import LogLevel
from twisted.python import usage

from wazuhcluster import tls
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.control import socketAnswers
from wazuhcluster.errors import ClusterError, StartupError
from wazuhcluster.home import NodeHome
from wazuhcluster.logs import ClusterLogger, ClusterLogService, formatClusterEvent
from wazuhcluster.ossecconf import readClusterConfig


class Options(usage.Options):
    """
    Options of C{twistd wazuh-master} / C{twistd wazuh-worker}.
    """

    optParameters = [
        ["home", "H", None, "The node home (the equivalent of /var/ossec)."],
    ]
    optFlags = [
        ["debug", "d", "Write debug messages to cluster.log too."],
    ]

    def postOptions(self):
        if not self["home"]:
            raise usage.UsageError("--home is required")


def refuse(home, message, program, stderr=None):
    """
    Tell the user in one line why the node cannot start (and in
    cluster.log when the home has one), then exit with status 1.
    """
    stderr = stderr if stderr is not None else sys.stderr
    stderr.write(f"{program}: {message}\n")
    if home.logs.isdir():
        line = formatClusterEvent({
            "log_format": "{message}",
            "message": message,
            "log_level": LogLevel.error,
            "log_time": time.time(),
        })
        try:
            with open(home.clusterLog.path, "a") as log:
                log.write(line)
        except OSError:
            pass
    raise StartupError()


class _StartupNotes(Service):
    """
    Logs what was noticed while reading the configuration, once logging runs.
    """

    def __init__(self, config, nodeType):
        self.config = config
        self.nodeType = nodeType
        self.log = ClusterLogger("Cluster", "Main", namespace="wazuhcluster.tap",
                                 node=config.node_name)

    def startService(self):
        super().startService()
        for warning in self.config.warnings:
            self.log.warn("{warning}", warning=warning)
        self.log.info(
            "Starting cluster {cluster}: {kind} node {name}.",
            cluster=self.config.name, kind=self.nodeType, name=self.config.node_name,
        )

    def stopService(self):
        super().stopService()
        self.log.info("Stopping {kind} node {name}. Exit...", kind=self.nodeType,
                      name=self.config.node_name)


#: The longest path a UNIX socket can have on Linux.
MAX_SOCKET_PATH = 107


def addressProblem(home, config, nodeType):
    """
    Why the node could not listen where it must, or L{None}: checked before
    twistd daemonises, so that the user reads the reason and the exit
    status is 1 (a daemon that fails later can only log it).
    """
    path = home.controlSocket.path
    if len(path.encode("utf-8")) > MAX_SOCKET_PATH:
        return (f"The control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                "use a shorter home path.")
    if socketAnswers(path):
        return f"Another cluster daemon is already running on this home ({path} answers)."
    if nodeType != "master":
        return None
    family = socket.AF_INET6 if ":" in config.bind_addr else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((config.bind_addr, config.port))
    except OSError as error:
        return f"Cannot listen on {config.bind_addr}:{config.port}: {error.strerror}."
    finally:
        probe.close()
    return None


def makeNodeService(options, nodeType, reactor=None, stderr=None):
    """
    Build the service tree of a C{nodeType} node from C{options}.
    """
    program = f"wazuh-{nodeType}"
    home = NodeHome.fromPath(options["home"])
    if not home.root.isdir():
        refuse(home, f"The home directory {home.root.path} does not exist.", program, stderr)
    try:
        config = readClusterConfig(home)
        items = loadClusterItems(home)
    except ClusterError as error:
        refuse(home, str(error), program, stderr)
    if config.disabled:
        refuse(home, f"The cluster is disabled in {home.ossecConf.path}.", program, stderr)
    if config.node_type != nodeType:
        refuse(
            home,
            f"{home.root.path} is the home of {config.node_type} node "
            f"{config.node_name!r}; start it with 'twistd wazuh-{config.node_type}'.",
            program,
            stderr,
        )
    try:
        identity = tls.loadNodeIdentity(home.sslDir)
    except ClusterError as error:
        refuse(home, str(error), program, stderr)
    problem = addressProblem(home, config, nodeType)
    if problem is not None:
        refuse(home, problem, program, stderr)

    root = MultiService()
    ClusterLogService(home.clusterLog, debug=bool(options["debug"])).setServiceParent(root)
    _StartupNotes(config, nodeType).setServiceParent(root)
    if nodeType == "master":
        from wazuhcluster.master.server import MasterService as NodeService
    else:
        from wazuhcluster.worker.client import WorkerService as NodeService
    node = NodeService(home, config, items, identity, reactor=reactor)
    node.addListeners()
    node.setServiceParent(root)
    return root


def makeMasterService(options):
    """
    C{twistd wazuh-master}.
    """
    return makeNodeService(options, "master")


def makeWorkerService(options):
    """
    C{twistd wazuh-worker}.
    """
    return makeNodeService(options, "worker")


def applicationFor(nodeType, environ=None, stderr=None):
    """
    The service of a C{nodeType} node for a C{.tac} file: the home comes
    from C{WAZUH_HOME} (or C{HOME}), debug from C{WAZUH_DEBUG}.
    """
    environ = environ if environ is not None else os.environ
    home = environ.get("WAZUH_HOME") or environ.get("HOME")
    options = Options()
    arguments = ["--home", home] if home else []
    if environ.get("WAZUH_DEBUG") not in (None, "", "0", "no"):
        arguments.append("--debug")
    try:
        options.parseOptions(arguments)
    except usage.UsageError as error:
        (stderr or sys.stderr).write(f"wazuh-{nodeType}: {error} (set WAZUH_HOME)\n")
        raise StartupError()
    return makeNodeService(options, nodeType, stderr=stderr)
