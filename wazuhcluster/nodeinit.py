# -*- test-case-name: tests.test_init -*-
"""
C{wazuh-cluster init}: create a node home (DESIGN.md, "Commands").

It creates the layout, writes C{etc/ossec.conf}, creates the cluster CA in
the CA directory if it has none, and issues this node's certificate into
C{etc/sslcluster/}. A master also gets the group C{default}. Re-running the
same command changes nothing; turning a node into another (other type or
name) is refused.
"""

import ipaddress
import os
import re
import shlex

from twisted.python.filepath import FilePath

from wazuhcluster.errors import ClusterError, ConfigError
from wazuhcluster.fsutil import atomicWrite
from wazuhcluster.home import NodeHome
from wazuhcluster.ossecconf import (
    ClusterConfig,
    checkClusterConfig,
    hasClusterBlock,
    parseClusterConfig,
)
from wazuhcluster.ossecwrite import renderOssecConf, spliceClusterBlock
from wazuhcluster.pki import (
    ensureCertificateAuthority,
    issueNodeCertificate,
    nodeCertificateMatches,
    readClusterKey,
)

NODE_TYPES = ("master", "worker")
DEFAULT_MASTER_HOST = "127.0.0.1"
INVALID_NODE_HOSTS = ("localhost", "NODE_IP", "0.0.0.0", "127.0.1.1")
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


def _checkMasterHost(nodeType, masterHost):
    """
    @return: the master host to write as C{nodes[0]}: C{masterHost}, or
        C{127.0.0.1} for a master given none.
    @raise ConfigError: for a worker without one, or an unusable host.
    """
    if not masterHost:
        if nodeType == "worker":
            raise ConfigError(
                "A worker needs the address of its master (--master-host)"
            )
        return DEFAULT_MASTER_HOST
    if masterHost in INVALID_NODE_HOSTS:
        raise ConfigError(f"Invalid elements in node fields: {masterHost}.")
    if not _HOST.fullmatch(masterHost):
        raise ConfigError(f"Invalid master host {masterHost!r}")
    return masterHost


def _checkBindAddr(bindAddr):
    try:
        ipaddress.ip_address(bindAddr)
    except ValueError:
        raise ConfigError(f"Invalid bind address {bindAddr!r}: not an IP address")


# --- the steps ---------------------------------------------------------------


def _checkExisting(home, config):
    """
    Refuse to turn an existing node into another one, or to touch an
    ossec.conf that cannot be read.

    An ossec.conf without a C{<cluster>} block, or with a disabled one (as
    Wazuh installs it), may be given one; an enabled block naming another
    node may not be changed.

    @raise ClusterError: if C{etc/ossec.conf} exists with another node type
        or node name in an enabled block, or cannot be read or updated.
    """
    if not home.ossecConf.exists():
        return
    try:
        content = home.ossecConf.getContent()
        existing = parseClusterConfig(content)
        hasBlock = hasClusterBlock(content)
    except (OSError, ClusterError) as e:
        raise ClusterError(
            f"{home.ossecConf.path} already exists and cannot be read ({e}); "
            "refusing to overwrite it"
        )
    if (
        hasBlock
        and not existing.disabled
        and (existing.node_type, existing.node_name) != (config.node_type, config.node_name)
    ):
        raise ClusterError(
            f"{home.root.path} is already the {existing.node_type} node "
            f"'{existing.node_name}'; refusing to make it the {config.node_type} "
            f"node '{config.node_name}' (use another --home)"
        )
    _ossecConfContent(home, config)


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


def _writeOssecConf(home, config):
    """
    Write C{etc/ossec.conf} (0640) unless it already has this content.
    """
    content = _ossecConfContent(home, config)
    if home.ossecConf.exists() and home.ossecConf.getContent() == content:
        return
    atomicWrite(home.ossecConf, content, 0o640)


def _certificateHosts(config):
    """
    The SANs besides the node name: a master's certificate names the host
    workers dial; a worker's needs nothing more.
    """
    if config.node_type == "master":
        return [config.masterHost]
    return []


def _issueCertificate(home, caDir, config):
    """
    Issue this node's certificate unless C{etc/sslcluster} already holds a
    matching one from this CA.
    """
    hosts = _certificateHosts(config)
    if not nodeCertificateMatches(caDir, home.sslDir, config.node_name, hosts):
        issueNodeCertificate(caDir, home.sslDir, config.node_name, hosts)


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


def _asFilePath(path):
    if isinstance(path, FilePath):
        return path
    return FilePath(os.path.abspath(os.path.expanduser(path)))


def initNode(
    home,
    nodeType,
    nodeName,
    caDir,
    clusterName="wazuh",
    key=None,
    masterHost=None,
    port=1516,
    bindAddr="0.0.0.0",
):
    """
    Create or complete a node home, as C{wazuh-cluster init} does.

    Everything is validated before anything is written. The CA (and the
    shared cluster key) are created in C{caDir} if it has none.

    @param home: the node home (a L{NodeHome}, L{FilePath} or path string).
    @param nodeType: C{"master"} or C{"worker"}.
    @param nodeName: the node name, C{[A-Za-z0-9_-]+}.
    @param caDir: the CA directory (L{FilePath} or path string).
    @param clusterName: the cluster name.
    @param key: the cluster key (32 C{\\w} characters); when omitted, the
        key of C{caDir/cluster.key}, so nodes made from one CA share it.
    @param masterHost: the master address workers dial (C{nodes[0]});
        required for a worker, C{127.0.0.1} by default for a master.
    @param port: the cluster port (1025-65534).
    @param bindAddr: the address the master listens on.
    @rtype: L{NodeHome}
    @raise ConfigError: for an invalid argument.
    @raise ClusterError: if the home is another node already, or TLS
        material cannot be created.
    """
    if not isinstance(home, NodeHome):
        home = NodeHome.fromPath(home)
    caDir = _asFilePath(caDir)
    _checkNodeType(nodeType)
    _checkNames(clusterName, nodeName)
    if key is not None:
        checkKey(key)
    port = _checkPort(port)
    masterHost = _checkMasterHost(nodeType, masterHost)
    _checkBindAddr(bindAddr)

    config = _makeConfig(
        clusterName, nodeName, nodeType, key or "0" * 32, port, bindAddr, masterHost
    )
    _checkExisting(home, config)
    ensureCertificateAuthority(caDir, clusterName)
    if key is None:
        key = readClusterKey(caDir)
        checkKey(key)
        config = _makeConfig(
            clusterName, nodeName, nodeType, key, port, bindAddr, masterHost
        )
    checkClusterConfig(config)
    home.createLayout()
    _writeOssecConf(home, config)
    _issueCertificate(home, caDir, config)
    if nodeType == "master":
        _createDefaultGroup(home)
    return home


def _makeConfig(clusterName, nodeName, nodeType, key, port, bindAddr, masterHost):
    return ClusterConfig(
        name=clusterName,
        node_name=nodeName,
        node_type=nodeType,
        key=key,
        port=port,
        bind_addr=bindAddr,
        nodes=(masterHost,),
        hidden=False,
        disabled=False,
    )


# --- the summary -------------------------------------------------------------


def formatInitSummary(home, caDir):
    """
    What C{init} created in C{home} and what to run next, for the CLI to
    print. The cluster key is not shown.

    @param home: the node home (as given to L{initNode}).
    @param caDir: the CA directory used.
    @rtype: L{str}
    """
    if not isinstance(home, NodeHome):
        home = NodeHome.fromPath(home)
    caDir = _asFilePath(caDir)
    config = parseClusterConfig(home.ossecConf.getContent())
    lines = [
        f"Initialised {config.node_type} node '{config.node_name}' of cluster "
        f"'{config.name}' in {home.root.path}",
        f"  configuration: {home.ossecConf.path}",
        f"  certificates:  {home.sslDir.path}/ (ca.pem, node.pem, node.key)",
        f"  CA directory:  {caDir.path} (keep ca.key and cluster.key private; "
        "init every node of this cluster with it)",
    ]
    if config.node_type == "master":
        lines.append(
            f"  default group: {home.shared.child('default').child('agent.conf').path}"
        )
        lines.append(
            f"  listens on:    {config.bind_addr}:{config.port} "
            f"(workers dial {config.masterHost}:{config.port})"
        )
    else:
        lines.append(f"  master:        {config.masterHost}:{config.port}")
    lines += [
        "Next step:",
        f"  twistd -n wazuh-{config.node_type} --home {shlex.quote(home.root.path)}",
    ]
    return "\n".join(lines) + "\n"
