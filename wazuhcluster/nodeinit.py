# -*- test-case-name: tests.test_init -*-
"""
C{wazuh-cluster init}: create a node home (DESIGN.md, "Commands").

It creates the layout, writes C{etc/ossec.conf}, creates the cluster CA in
the CA directory if it has none, and issues this node's certificate into
C{etc/sslcluster/}. A master also gets the group C{default}.

Re-running it on a node keeps everything the options do not change (cluster
name, key, port, bind address, master host, hidden) and reports what
changed; turning a node into another (other type or name) is refused.

For masters in standby (L{wazuhcluster.standby.initoptions}), C{nodes}
lists every master candidate (a candidate's own address, C{masterHost},
is one of them and is what its certificate names), and C{database} makes
a master keep its agents in PostgreSQL (C{agent_store} in
C{etc/cluster.json}).

Everything that can be checked is checked before anything is written, and a
failure on the way removes what this run created (a new CA directory, a new
home), so that a mistake never leaves a half-made CA behind.
"""

import ipaddress
import os
import re

import attrs

from twisted.python.filepath import FilePath

from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.home import NodeHome
from wazuhcluster.initchecks import (
    InitUndo,
    checkAuthorityFiles,
    checkCaOutsideHome,
    checkDirectory,
)
from wazuhcluster.initreport import (
    DEFAULT_MASTER_HOST,
    InitReport,
    changesBetween,
    formatInitSummary,
    initNotes,
)
from wazuhcluster.initstore import plannedAgentStore, writeAgentStore
from wazuhcluster.ossecchecks import checkClusterConfig
from wazuhcluster.ossecconf import ClusterConfig, hasClusterBlock, parseClusterConfig
from wazuhcluster.ossecwrite import renderOssecConf, spliceClusterBlock
from wazuhcluster.pki import (
    ensureCertificateAuthority,
    issueNodeCertificate,
    nodeCertificateMatches,
    readClusterKey,
)
from wazuhcluster.standby import initoptions

#: Defaults of a new node, for what the options leave unsaid.
DEFAULT_CLUSTER_NAME = "wazuh"
DEFAULT_PORT = 1516
DEFAULT_BIND_ADDR = "0.0.0.0"

NODE_TYPES = ("master", "worker")
INVALID_NODE_HOSTS = ("localhost", "NODE_IP", "0.0.0.0", "127.0.1.1")

__all__ = ["initNode", "initNodeReport", "InitReport", "formatInitSummary", "checkKey"]
DEFAULT_AGENT_CONF = b"<agent_config>\n</agent_config>\n"

_NODE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_KEY = re.compile(r"\w{32}")
_HOST = re.compile(r"[A-Za-z0-9_.:-]+")


# --- validation ------------------------------------------------------------


def _checkNodeType(nodeType):
    if nodeType not in NODE_TYPES:
        raise ConfigError(
            f"Invalid node type {nodeType}. Correct values are master and worker"
        )


def _checkNames(clusterName, nodeName):
    if not _CLUSTER_NAME.fullmatch(clusterName or ""):
        raise ConfigError(
            f"Invalid cluster name {clusterName!r}: use only letters, digits, "
            "'_', '-' and '.'"
        )
    if not _NODE_NAME.fullmatch(nodeName or ""):
        raise ConfigError(
            f"Invalid node name {nodeName!r}: use only letters, digits, "
            "'_' and '-'"
        )


def checkKey(key):
    """
    Raise L{ConfigError} with Wazuh's texts unless C{key} is a valid cluster
    key (32 C{\\w} characters).
    """
    if not key:
        raise ConfigError("Unspecified key")
    if not _KEY.fullmatch(key):
        raise ConfigError(
            "Key must be 32 characters long and only have alphanumeric characters"
        )


def _checkPort(port):
    """
    @return: C{port} as an L{int}.
    @raise ConfigError: with Wazuh's texts if not an integer in 1025-65534.
    """
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigError("Port has to be an integer.")
    if not 1024 < port < 65535:
        raise ConfigError("Port must be higher than 1024 and lower than 65535.")
    return port


def _checkMasterHost(masterHost):
    """
    @raise ConfigError: for an unusable master host.
    """
    if masterHost in INVALID_NODE_HOSTS:
        raise ConfigError(f"Invalid elements in node fields: {masterHost}.")
    if not _HOST.fullmatch(masterHost):
        raise ConfigError(f"Invalid master host {masterHost!r}")


def _checkBindAddr(bindAddr):
    try:
        ipaddress.ip_address(bindAddr)
    except ValueError:
        raise ConfigError(f"Invalid bind address {bindAddr!r}: not an IP address")




# --- the steps -------------------------------------------------------------------


def _existingConfig(home):
    """
    The configuration of the node this home already is, or L{None} (no
    ossec.conf, no C{<cluster>} block, or a disabled one as Wazuh ships).

    @raise ClusterError: when C{etc/ossec.conf} cannot be read.
    """
    if not home.ossecConf.exists():
        return None
    try:
        content = home.ossecConf.getContent()
        existing = parseClusterConfig(content)
        hasBlock = hasClusterBlock(content)
    except (OSError, ClusterError) as e:
        raise ClusterError(
            f"{home.ossecConf.path} already exists and cannot be read ({e}); "
            "refusing to overwrite it"
        )
    if not hasBlock or existing.disabled:
        return None
    return existing


def _checkSameNode(home, existing, nodeType, nodeName):
    if existing is not None and (existing.node_type, existing.node_name) != (nodeType, nodeName):
        raise ClusterError(
            f"{home.root.path} is already the {existing.node_type} node "
            f"'{existing.node_name}'; refusing to make it the {nodeType} "
            f"node '{nodeName}' (use another --home)"
        )


def _ossecConfContent(home, config):
    """
    The ossec.conf C{init} writes: a new file holding only the C{<cluster>}
    block, or the existing file with its C{<cluster>} block replaced and
    everything else kept.

    @raise ClusterError: if the existing file cannot be updated.
    """
    if not home.ossecConf.exists():
        return renderOssecConf(config)
    try:
        return spliceClusterBlock(home.ossecConf.getContent(), config)
    except (OSError, ClusterError) as e:
        raise ClusterError(
            f"{home.ossecConf.path} cannot be updated ({e}); refusing to overwrite it"
        )


def _writeOssecConf(home, content):
    """
    Write C{etc/ossec.conf} (0640) unless it already has this content.
    """
    if home.ossecConf.exists() and home.ossecConf.getContent() == content:
        return
    atomicWrite(home.ossecConf, content, 0o640)


def _ownHost(home, config, masterHost):
    """
    A master's own address: C{masterHost} when given, else the entry of
    its C{<nodes>} its current certificate names.
    """
    if masterHost is not None:
        return masterHost
    if len(config.nodes) > 1 and home.sslDir.child("node.pem").exists():
        from wazuhcluster.standby.peers import ownHost
        from wazuhcluster.tls import loadNodeIdentity

        try:
            return ownHost(config.nodes, loadNodeIdentity(home.sslDir))
        except ClusterError:
            pass
    return config.masterHost


def _certificateHosts(home, config, masterHost):
    """
    The SANs besides the node name: a master's certificate names the host
    workers dial (its own entry of C{<nodes>}); a worker's needs nothing
    more.
    """
    if config.node_type == "master":
        return [_ownHost(home, config, masterHost)]
    return []


def _issueCertificate(home, caDir, config, masterHost=None):
    """
    Issue this node's certificate, of the role of its type, unless
    C{etc/sslcluster} already holds a matching one from this CA.

    @return: whether a certificate was issued.
    """
    hosts = _certificateHosts(home, config, masterHost)
    role = config.node_type
    if nodeCertificateMatches(caDir, home.sslDir, config.node_name, hosts, role):
        return False
    issueNodeCertificate(caDir, home.sslDir, config.node_name, hosts, role)
    return True


def _createDefaultGroup(home):
    """
    Create the group C{default} (C{etc/shared/default/agent.conf}, 0660)
    unless it exists.
    """
    group = home.shared.child("default")
    if not group.isdir():
        group.makedirs(ignoreExistingDirectory=True)
        group.chmod(0o770)
    agentConf = group.child("agent.conf")
    if not agentConf.exists():
        atomicWrite(agentConf, DEFAULT_AGENT_CONF, 0o660)


def _createRunDirectory(home):
    """
    Create C{var/run} (0770), where the twistd plugins keep their pidfile.
    """
    run = home.root.child("var").child("run")
    if not run.isdir():
        run.makedirs(ignoreExistingDirectory=True)
        run.chmod(0o770)


def _asFilePath(path):
    if isinstance(path, FilePath):
        return path
    return FilePath(os.path.abspath(os.path.expanduser(path)))


def initNode(home, nodeType, nodeName, caDir, clusterName=None, key=None,
             masterHost=None, port=None, bindAddr=None, agentStore=None, nodes=None,
             database=None, passwordFile=None):
    """
    Create or complete a node home, as C{wazuh-cluster init} does; see
    L{initNodeReport}.

    @rtype: L{NodeHome}
    """
    return initNodeReport(home, nodeType, nodeName, caDir, clusterName=clusterName,
                          key=key, masterHost=masterHost, port=port,
                          bindAddr=bindAddr, agentStore=agentStore, nodes=nodes,
                          database=database, passwordFile=passwordFile).home


def initNodeReport(home, nodeType, nodeName, caDir, clusterName=None, key=None,
                   masterHost=None, port=None, bindAddr=None, agentStore=None, nodes=None,
                   database=None, passwordFile=None):
    """
    Create or complete a node home, as C{wazuh-cluster init} does.

    Everything is validated before anything is written. The CA (and the
    shared cluster key) are created in C{caDir} if it has none. An option
    left to L{None} keeps the node's current value, or takes the default
    for a new node.

    @param home: the node home (a L{NodeHome}, L{FilePath} or path string).
    @param nodeType: C{"master"} or C{"worker"}.
    @param nodeName: the node name, C{[A-Za-z0-9_-]+}.
    @param caDir: the CA directory (L{FilePath} or path string), never the
        home or inside it.
    @param clusterName: the cluster name (C{wazuh} for a new node).
    @param key: the cluster key (32 C{\\w} characters); for a new node, the
        key of C{caDir/cluster.key} by default, so nodes made from one CA
        share it (and when that file is missing, C{key} restores it).
    @param masterHost: the master address workers dial (C{nodes[0]}):
        required for a new worker, C{127.0.0.1} for a new master.
    @param port: the cluster port (1025-65534; 1516 for a new node).
    @param bindAddr: the address the master listens on (C{0.0.0.0} for a
        new node).
    @param agentStore: the agent store backend to record in
        C{etc/cluster.json} (C{sqlite} or C{wazuh-db}); L{None} keeps the
        node's (C{sqlite} for a new node).
    @param nodes: the master candidates, C{"H1,H2"} (C{<nodes>}, in this
        order; C{masterHost} by default); a master given C{nodes} needs
        C{masterHost}, one of them.
    @param database: C{postgresql://USER@HOST:PORT/DB}: a master keeps its
        agents there (C{agent_store} in C{etc/cluster.json}).
    @param passwordFile: the file whose first line is the database's
        password.
    @rtype: L{InitReport}
    @raise ConfigError: for an invalid argument.
    @raise ClusterError: if the home is another node already, a path is not
        usable, or TLS material cannot be created; nothing this run created
        is left behind.
    """
    if not isinstance(home, NodeHome):
        home = NodeHome.fromPath(home)
    caDir = _asFilePath(caDir)
    _checkNodeType(nodeType)
    if key is not None:
        checkKey(key)
    if port is not None:
        port = _checkPort(port)
    if masterHost is not None:
        _checkMasterHost(masterHost)
    if bindAddr is not None:
        _checkBindAddr(bindAddr)
    if nodes is not None:
        nodes = initoptions.parseNodes(nodes, _checkMasterHost)
        if nodeType == "master" and masterHost not in nodes:
            raise ConfigError(
                "A master given --nodes needs --master-host, the one of them its "
                "certificate names (its own address)")
    passwordPath = initoptions.checkDatabase(nodeType, database, passwordFile)
    _checkNames(DEFAULT_CLUSTER_NAME if clusterName is None else clusterName, nodeName)
    checkDirectory(home.root.path, "--home")
    checkDirectory(caDir.path, "--ca")
    checkCaOutsideHome(home, caDir)
    checkAuthorityFiles(caDir, key)

    existing = _existingConfig(home)
    _checkSameNode(home, existing, nodeType, nodeName)
    if existing is None and nodeType == "worker" and masterHost is None and nodes is None:
        raise ConfigError("A worker needs the address of its master (--master-host, or "
                          "--nodes for several master candidates)")
    if database is not None and agentStore is not None:
        raise ConfigError("--database and --agent-store are exclusive: --database makes "
                          "the agent store PostgreSQL")
    storePlan = plannedAgentStore(home, agentStore)

    undo = InitUndo.before(home, caDir)
    try:
        report = _initialise(home, nodeType, nodeName, caDir, existing, clusterName, key,
                             masterHost, port, bindAddr, nodes, database, passwordPath)
        writeAgentStore(home, storePlan)
        if storePlan.change is not None and not report.created:
            report = attrs.evolve(report, changes=report.changes + (storePlan.change,))
        elif storePlan.change is not None:
            report = attrs.evolve(report, notes=report.notes + (
                f"The agent store is {agentStore} ({home.clusterJsonOverrides.path}, "
                "agent_store.backend).",))
        return report
    except OSError as e:
        undo.run()
        where = os.path.dirname(e.filename) if e.filename else home.root.path
        raise ClusterError(f"Cannot write {where}: {e.strerror or e}; nothing was "
                           "changed", 1006) from e
    except BaseException:
        undo.run()
        raise


def _candidates(existing, nodes, masterHost):
    """
    The C{<nodes>} to write: those given, else C{masterHost} alone (unless
    it is one of the node's current candidates), else the current ones.
    """
    if nodes is not None:
        return nodes
    current = existing.nodes if existing is not None else None
    if masterHost is not None:
        if current is not None and len(current) > 1 and masterHost in current:
            return current
        return (masterHost,)
    return current if current is not None else (DEFAULT_MASTER_HOST,)


def _initialise(home, nodeType, nodeName, caDir, existing, clusterName, key,
                masterHost, port, bindAddr, nodes, database, passwordPath):
    def keep(given, field, default):
        if given is not None:
            return given
        return getattr(existing, field) if existing is not None else default

    givenKey = key
    clusterName = keep(clusterName, "name", DEFAULT_CLUSTER_NAME)
    if key is not None and not caDir.child("cluster.key").exists():
        if not caDir.isdir():
            caDir.makedirs()
            caDir.chmod(0o700)
        atomicWrite(caDir.child("cluster.key"), key.encode("ascii") + b"\n", 0o600)
    ensureCertificateAuthority(caDir, clusterName)
    if key is None:
        key = existing.key if existing is not None else readClusterKey(caDir)
        checkKey(key)
    nodes = _candidates(existing, nodes, masterHost)
    config = ClusterConfig(
        name=clusterName,
        node_name=nodeName,
        node_type=nodeType,
        key=key,
        port=keep(port, "port", DEFAULT_PORT),
        bind_addr=keep(bindAddr, "bind_addr", DEFAULT_BIND_ADDR),
        nodes=tuple(nodes),
        hidden=keep(None, "hidden", False),
        disabled=False,
    )
    checkClusterConfig(config)
    content = _ossecConfContent(home, config)
    storeContent = None
    if database is not None:
        storeContent = initoptions.agentStoreChange(home, database, passwordPath)
    home.createLayout()
    _createRunDirectory(home)
    _writeOssecConf(home, content)
    reissued = _issueCertificate(home, caDir, config, masterHost)
    if nodeType == "master":
        _createDefaultGroup(home)
    changes = changesBetween(existing, config, reissued and existing is not None)
    notes = initNotes(config, masterHost is not None, givenKey, caDir)
    if storeContent is not None:
        initoptions.writeAgentStore(home, storeContent)
        if existing is not None:
            changes += ("agent store: PostgreSQL",)
        notes += initoptions.agentStoreNotes(home, database, passwordPath,
                                             existing is None)
    return InitReport(home=home, created=existing is None, changes=changes, notes=notes)
