# -*- test-case-name: tests.test_demo -*-
"""
C{wazuh-cluster demo}: a whole cluster on loopback in one process, on the
embedded defaults.  It creates a CA, a master and N workers with sample
rules, decoders, lists, groups and agents, runs them all, and tells the user
what to try.
"""

import io
import os
import socket

from twisted.application.service import MultiService

from wazuhcluster import tls
from wazuhcluster.agentcli import agentAdd
from wazuhcluster.checkconfig import homeLogFormats
from wazuhcluster.clusteritems import loadClusterItems
from wazuhcluster.errors import ClusterError, StartupError
from wazuhcluster.initchecks import checkDirectory
from wazuhcluster.logs import ClusterLogService
from wazuhcluster.gilswitch import shortenSwitchInterval
from wazuhcluster.memory import limitMallocArenas
from wazuhcluster.nodeinit import initNode
from wazuhcluster.ossecconf import readClusterConfig
from wazuhcluster.web.service import WebService

SAMPLE_FILES = {
    "etc/rules/local_rules.xml": (
        "<group name=\"local,syslog,sshd,\">\n"
        "  <rule id=\"100001\" level=\"5\">\n"
        "    <if_sid>5716</if_sid>\n"
        "    <srcip>1.1.1.1</srcip>\n"
        "    <description>sshd: authentication failed from IP 1.1.1.1.</description>\n"
        "    <group>authentication_failed,pci_dss_10.2.4,pci_dss_10.2.5,</group>\n"
        "  </rule>\n"
        "</group>\n"),
    "etc/decoders/local_decoder.xml": (
        "<decoder name=\"local_decoder_example\">\n"
        "  <program_name>local_decoder_example</program_name>\n"
        "</decoder>\n"),
    "etc/lists/audit-keys": "audit-wazuh-w:write\naudit-wazuh-r:read\naudit-wazuh-a:attribute\n",
    "etc/shared/web/agent.conf": (
        "<agent_config>\n"
        "  <localfile>\n"
        "    <location>/var/log/nginx/access.log</location>\n"
        "    <log_format>syslog</log_format>\n"
        "  </localfile>\n"
        "</agent_config>\n"),
    "etc/shared/web/sca_web_servers.yml": (
        "policy:\n  id: \"web_servers\"\n  file: \"sca_web_servers.yml\"\n"
        "  name: \"Web server hardening (demo)\"\n"),
    "etc/shared/db/agent.conf": "<agent_config>\n</agent_config>\n",
}

SAMPLE_AGENTS = [("web-01", "web"), ("web-02", "web"), ("db-01", "db"), ("laptop-07", None)]


def freePort():
    """
    A loopback TCP port nothing listens on right now.
    """
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def portProblem(port, host="127.0.0.1"):
    """
    Why the demo's master could not listen on C{host:port}, or L{None}.
    """
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as error:
        return (f"port {port} on {host} cannot be used ({error.strerror}): another "
                "program (or another demo) listens there, or it is reserved; pass "
                "another --port, or leave --port out to use a free one")
    finally:
        probe.close()
    return None


def createDemo(base, workers, port):
    """
    Create (or reuse) the demo's CA and homes under C{base}, with the
    master on C{port} (the homes of an earlier run are rewritten when the
    port changed).

    @return: the list of C{(NodeHome, node type)}, master first.
    """
    ca = os.path.join(base, "ca")
    masterHome = initNode(os.path.join(base, "master"), "master", "master", ca,
                          masterHost="127.0.0.1", port=port, bindAddr="127.0.0.1")
    homes = [(masterHome, "master")]
    for index in range(1, workers + 1):
        name = f"worker{index}"
        homes.append((initNode(os.path.join(base, name), "worker", name, ca,
                               masterHost="127.0.0.1", port=port), "worker"))
    for relpath, text in SAMPLE_FILES.items():
        path = masterHome.child(relpath)
        if not path.exists():
            path.parent().makedirs(ignoreExistingDirectory=True)
            path.setContent(text.encode("utf-8"))
            path.chmod(0o660)
    if not masterHome.clientKeys.exists() or not masterHome.clientKeys.getContent().strip():
        for name, group in SAMPLE_AGENTS:
            status = agentAdd(masterHome.root.path, name, group=group,
                              out=io.StringIO(), err=io.StringIO())
            if status != 0:
                raise ClusterError(f"Could not register the demo agent {name}", 1)
    return homes


def nodeBranch(home, nodeClass, reactor, endpointFor=None, webPort=None):
    """
    One node of a cluster run in a single process: a named service holding
    the node and a log service writing its own C{cluster.log}.

    @param nodeClass: L{MasterService} or L{WorkerService}.
    @param endpointFor: for a worker, an optional callable taking the
        node's L{ClusterConfig} and returning the endpoint to dial.
    @param webPort: serve the node's status service on this loopback port
        (0 for any free one), or L{None} for none.
    @rtype: L{MultiService}
    """
    config = readClusterConfig(home)
    items = loadClusterItems(home)
    identity = tls.loadNodeIdentity(home.sslDir)
    branch = MultiService()
    branch.setName(config.node_name)
    jsonLog = home.logs.child("cluster.json") if "json" in homeLogFormats(home) else None
    ClusterLogService(home.clusterLog, node=config.node_name,
                      jsonPath=jsonLog).setServiceParent(branch)
    extra = {} if endpointFor is None else {"endpoint": endpointFor(config)}
    node = nodeClass(home, config, items, identity, reactor=reactor, **extra)
    node.addListeners()
    if webPort is not None:
        WebService(node, "127.0.0.1", webPort).setServiceParent(node)
    node.setServiceParent(branch)
    return branch


def buildDemo(homes, reactor, webPort=0):
    """
    One service running every node of the demo in this process, the
    master's status service on C{webPort} of loopback (0: any free port).
    """
    from wazuhcluster.master.server import MasterService
    from wazuhcluster.worker.client import WorkerService

    root = MultiService()
    for home, nodeType in homes:
        if nodeType == "master":
            nodeBranch(home, MasterService, reactor, webPort=webPort).setServiceParent(root)
        else:
            nodeBranch(home, WorkerService, reactor).setServiceParent(root)
    return root


def webUrl(service):
    """
    The URL of the master's status page in a running demo service.
    """
    pending = [service]
    while pending:
        current = pending.pop()
        if isinstance(current, WebService):
            return current.url
        if isinstance(current, MultiService):
            pending.extend(current)
    return None


def instructions(base, homes, port, url=None):
    """
    What the user can try while the demo runs.
    """
    page = f"Status page: {url}  (Wazuh API shapes: {url}cluster/healthcheck, " \
        f"Prometheus: {url}metrics)\n\n" if url else ""
    master = homes[0][0].root.path
    worker = homes[1][0].root.path if len(homes) > 1 else master
    return f"""\
Demo cluster 'wazuh' is running on 127.0.0.1:{port}: master + {len(homes) - 1} worker(s) in {base}

{page}Try, in another terminal:
  wazuh-cluster control --home {master} -l          # the nodes
  wazuh-cluster control --home {master} -i more     # their health
  wazuh-cluster control --home {worker} -l          # asked on a worker: forwarded to the master
  wazuh-cluster agent list --home {worker}          # agents the worker learnt from client.keys
  wazuh-cluster agent report --home {worker} --id 001 --os-name Ubuntu --os-version 24.04
  wazuh-cluster control --home {master} -a          # 001 is active on {os.path.basename(worker)} (group web)
  wazuh-cluster agent group --home {master} --id 004 --set db
  echo '<group name="demo"/>' > {master}/etc/rules/demo_rules.xml
  ls -l {worker}/etc/rules/                          # the new rule file is already there
  tail -f {master}/logs/cluster.log

Press Ctrl-C to stop.
"""


class DemoRefused(Exception):
    """
    The demo cannot run as asked: C{str()} says why in one line.

    @ivar status: the exit status (2 for wrong usage, 1 otherwise).
    """

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def prepareDemo(directory, workers, port):
    """
    Check the demo's options and create (or update) its homes: a free port
    at each run unless C{port} names one, rewritten into the homes of an
    earlier run.

    @return: C{(base directory, homes, port)}.
    @raise DemoRefused: for options that cannot work.
    @raise ClusterError: when a home cannot be made.
    """
    if workers < 1:
        raise DemoRefused("--workers must be at least 1", 2)
    base = os.path.abspath(directory)
    if len(os.path.join(base, "worker99", "queue", "cluster", "c-internal.sock")) > 107:
        raise DemoRefused(f"{base} is too deep for UNIX sockets; use a shorter --dir", 2)
    checkDirectory(base, "--dir", writable=True)
    if port:
        problem = portProblem(port)
        if problem is not None:
            raise DemoRefused(problem)
    else:
        port = freePort()
    return base, createDemo(base, workers, port), port


def runDemo(directory, workers, port, out, err, reactor=None):
    """
    Create and run the demo until interrupted; return the exit status.
    """
    try:
        base, homes, port = prepareDemo(directory, workers, port)
    except DemoRefused as refused:
        err.write(f"wazuh-cluster demo: {refused}\n")
        return refused.status
    if reactor is None:
        from twisted.internet import reactor

        limitMallocArenas()
        shortenSwitchInterval()
    service = buildDemo(homes, reactor)
    try:
        service.startService()
    except StartupError:
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    out.write(instructions(base, homes, port, webUrl(service)))
    out.flush()
    reactor.run()
    return 0

