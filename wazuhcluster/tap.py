# -*- test-case-name: tests.test_tap,tests.test_checkconfig -*-
"""
The twistd plugins C{wazuh-master} and C{wazuh-worker}: options and the
service tree of a node.

Besides its own options, a plugin gives twistd defaults that suit a node
home, used unless the user passes the twistd option itself:

  - C{--pidfile}: C{H/var/run/wazuh-clusterd.pid} (twistd's default,
    C{./twistd.pid}, would stop a second node started in the same
    directory); besides it, while the node serves, it keeps the pidfile
    Wazuh's tools check, C{H/var/run/wazuh-clusterd-<pid>.pid}
    (L{wazuhcluster.pidfile});
  - C{--logfile} (daemon mode only; C{-n} logs to stdout): C{H/logs/twistd.log};
  - C{--uid}/C{--gid}: when started as root on a home that belongs to
    another user, that user (Wazuh's daemons drop to the C{wazuh} user the
    same way).

twistd reads the pidfile before it builds the service and the log file
and uid/gid after, so the defaults are set on the parent
(C{ServerOptions}) while the plugin's options are parsed.
"""

import os
import socket
import sys
import time

from twisted.application.service import MultiService, Service
from twisted.logger import LogLevel
from twisted.python import usage

from wazuhcluster import WAZUH_COMPATIBLE_VERSION, __version__, tls
from wazuhcluster.checkconfig import nodeProblems
from wazuhcluster.cli import defaultHome
from wazuhcluster.control import socketAnswers
from wazuhcluster.errors import ClusterError, StartupError
from wazuhcluster.home import NodeHome
from wazuhcluster.logs import ClusterLogger, ClusterLogService, formatClusterEvent
from wazuhcluster.gilswitch import shortenSwitchInterval
from wazuhcluster.memory import limitMallocArenas
from wazuhcluster.pidfile import WazuhPidfile
from wazuhcluster.web.service import WebSetupError, parseWebAddress, webServiceFor


#: twistd's own default pidfile, which means "not chosen by the user".
TWISTD_DEFAULT_PIDFILE = "twistd.pid"


def pidfilePath(home):
    """
    The default pidfile of the node of C{home}.
    """
    return home.root.child("var").child("run").child("wazuh-clusterd.pid")


class Options(usage.Options):
    """
    Options of C{twistd wazuh-master} / C{twistd wazuh-worker}.
    """

    synopsis = "[--home H] [--debug] [--web [ADDR:]PORT [--web-users FILE] [--web-tls]]"
    longdesc = (
        "Run a wazuhcluster node (wazuhcluster " + __version__ + ", following Wazuh "
        + WAZUH_COMPATIBLE_VERSION + ") from its home, made by 'wazuh-cluster init'. "
        "Defaults for twistd's options: --pidfile H/var/run/wazuh-clusterd.pid (while it "
        "serves, the node also keeps Wazuh's H/var/run/wazuh-clusterd-<pid>.pid), "
        "--logfile H/logs/twistd.log (daemon mode; with -n twistd logs to stdout), "
        "and when started as root on a home owned by another user, --uid/--gid of "
        "that user. The node itself logs to H/logs/cluster.log (and "
        "H/logs/cluster.json with <logging><log_format>json</log_format>). "
        "Examples: 'twistd -n wazuh-master --home /var/ossec' (foreground), "
        "'twistd wazuh-worker --home /var/ossec' (daemon). Exit status 1, with one "
        "line, when the node cannot start."
    )
    optParameters = [
        ["home", "H", None,
         "The node home, the equivalent of /var/ossec (default: $WAZUH_HOME, else "
         "/var/ossec when it exists)."],
        ["web", None, None,
         "Serve the status page (master), the Wazuh API's /cluster/* endpoints and "
         "/metrics on [ADDR:]PORT (default address 127.0.0.1)."],
        ["web-users", None, None,
         "Ask for HTTP basic authentication, users from FILE (lines user:hash; make one "
         "with 'python -m wazuhcluster.web.passwd USER')."],
    ]
    optFlags = [
        ["debug", "d", "Write debug messages to cluster.log too."],
        ["web-tls", None, "Serve the web service over TLS with the node's own certificate."],
    ]

    def opt_version(self):
        """
        Print wazuhcluster's version and the Wazuh version it follows.
        """
        from wazuhcluster.cli import versionText

        sys.stdout.write(versionText())
        sys.exit(0)

    def postOptions(self):
        if not self["home"]:
            self["home"] = defaultHome()
        if not self["home"]:
            raise usage.UsageError("--home is required (or set WAZUH_HOME)")
        if (self["web-users"] or self["web-tls"]) and not self["web"]:
            raise usage.UsageError("--web-users and --web-tls need --web [ADDR:]PORT")
        if self["web"]:
            try:
                parseWebAddress(self["web"])
            except ValueError as e:
                raise usage.UsageError(f"--web {e}")
        applyTwistdDefaults(self, getattr(self, "parent", None))


def applyTwistdDefaults(options, server, getuid=os.getuid):
    """
    Give twistd's options C{server} (a C{ServerOptions}, or L{None} when the
    plugin's options are parsed alone) the defaults that suit the node home
    of C{options}, where the user did not choose.

    @param getuid: the current user ID (injectable for tests).
    """
    if server is None:
        return
    home = NodeHome.fromPath(options["home"])
    if server.get("pidfile") == TWISTD_DEFAULT_PIDFILE:
        server["pidfile"] = pidfilePath(home).path
    daemon = not (server.get("nodaemon") or server.get("debug"))
    if daemon and server.get("logfile") is None and not server.get("syslog"):
        server["logfile"] = home.logs.child("twistd.log").path
    if getuid() == 0 and server.get("uid") is None and server.get("gid") is None:
        try:
            owner = os.stat(home.root.path)
        except OSError:
            return
        if owner.st_uid != 0:
            server["uid"], server["gid"] = owner.st_uid, owner.st_gid


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


def addressProblem(home, config, nodeType):
    """
    Why the node could not listen where it must, or L{None}: checked before
    twistd daemonises, so that the user reads the reason and the exit
    status is 1 (a daemon that fails later can only log it).
    """
    path = home.controlSocket.path
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
    limitMallocArenas()
    shortenSwitchInterval()
    home = NodeHome.fromPath(options["home"])
    if not home.root.isdir():
        what = "is not a directory" if home.root.exists() else "does not exist"
        refuse(home, f"The home directory {home.root.path} {what}.", program, stderr)
    check = nodeProblems(home)
    config = check.config
    if config is not None and config.disabled:
        refuse(home, f"The cluster is disabled in {home.ossecConf.path}.", program, stderr)
    if config is not None and config.node_type != nodeType:
        refuse(
            home,
            f"{home.root.path} is the home of {config.node_type} node "
            f"{config.node_name!r}; start it with 'twistd wazuh-{config.node_type}'.",
            program,
            stderr,
        )
    if check.problems:
        refuse(home, check.problems[0], program, stderr)
    _createRunDirectory(home)
    items = check.items
    try:
        identity = tls.loadNodeIdentity(home.sslDir)
    except ClusterError as error:
        refuse(home, str(error), program, stderr)
    problem = addressProblem(home, config, nodeType)
    if problem is not None:
        refuse(home, problem, program, stderr)

    root = MultiService()
    jsonLog = home.logs.child("cluster.json") if "json" in check.logFormats else None
    ClusterLogService(home.clusterLog, debug=bool(options["debug"]), jsonPath=jsonLog,
                      nodeName=config.node_name).setServiceParent(root)
    _StartupNotes(config, nodeType).setServiceParent(root)
    if nodeType == "master":
        from wazuhcluster.master.server import MasterService as NodeService
    else:
        from wazuhcluster.worker.client import WorkerService as NodeService
    node = NodeService(home, config, items, identity, reactor=reactor)
    node.addListeners()
    if options.get("web"):
        try:
            webServiceFor(node, options["web"], options.get("web-users"),
                          options.get("web-tls")).setServiceParent(node)
        except WebSetupError as error:
            refuse(home, f"The web service cannot start: {error}", program, stderr)
    node.setServiceParent(root)
    # Last: written once the node serves, removed first at stop.
    WazuhPidfile(home, log=node.log).setServiceParent(root)
    return root


def _createRunDirectory(home):
    """
    Create C{var/run} for the default pidfile (twistd writes it after the
    service is built), in homes made before init created it; owned by the
    home's owner, whom the node will run as.
    """
    run = pidfilePath(home).parent()
    if not run.isdir():
        run.makedirs(ignoreExistingDirectory=True)
        run.chmod(0o770)
        owner = os.stat(home.root.path)
        if os.getuid() == 0 and owner.st_uid != 0:
            os.chown(run.path, owner.st_uid, owner.st_gid)


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
    from C{WAZUH_HOME}, else C{/var/ossec} when it exists; debug from
    C{WAZUH_DEBUG}.
    """
    environ = environ if environ is not None else os.environ
    home = defaultHome(environ)
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
