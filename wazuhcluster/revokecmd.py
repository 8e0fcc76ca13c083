# -*- test-case-name: tests.test_revocation -*-
"""
C{wazuh-cluster revoke --home MASTER --ca CADIR --name NODE [--cert PATH]}:
revoke a node's certificates (L{wazuhcluster.revocation}).

It runs where the CA directory is (its key signs the list), on the
master's home: the list is written to C{CADIR/crl.pem} and installed as the
master's C{etc/cluster.crl}, which the running master reloads and syncs to
every worker.
"""

import os

from twisted.python.filepath import FilePath

from wazuhcluster.errors import ClusterError
from wazuhcluster.ossecconf import readClusterConfig
from wazuhcluster.revocation import revokeCertificates


def _checkMasterHome(home, caDir):
    """
    @raise ClusterError: C{home} is not a master's home of the cluster of
        C{caDir}.
    """
    config = readClusterConfig(home)
    if config.node_type != "master":
        raise ClusterError(
            f"{home.root.path} is the home of worker {config.node_name}: run revoke on "
            "the master's home (the master installs the list and syncs it to the "
            "workers)", 1006)
    try:
        same = home.caCert.getContent() == caDir.child("ca.pem").getContent()
    except OSError as e:
        raise ClusterError(f"Cannot compare the cluster CAs: {e.strerror}: "
                           f"{e.filename}", 1006)
    if not same:
        raise ClusterError(
            f"{caDir.path} is not the CA of the master {home.root.path} (their ca.pem "
            "differ): give the --ca its nodes were initialised with", 1006)
    return config


def runRevoke(home, caPath, nodeName, certPath, out):
    """
    Revoke, report on C{out}, and return the exit status.

    @param home: the master's L{wazuhcluster.home.NodeHome}.
    @param caPath: the CA directory (a path).
    @param nodeName: the node whose certificates to revoke, or L{None}.
    @param certPath: a certificate file to revoke, or L{None}.
    @raise ClusterError: for anything that stops the revocation.
    """
    if nodeName is None and certPath is None:
        raise ClusterError("Say what to revoke: --name NODE or --cert PATH", 1006)
    caDir = FilePath(os.path.abspath(os.path.expanduser(caPath)))
    _checkMasterHome(home, caDir)
    cert = None if certPath is None else FilePath(os.path.abspath(certPath))
    result = revokeCertificates(caDir, home, nodeName, cert)
    for name, serial in result.added:
        out.write(f"Revoked the certificate of {name} (serial {serial:x}).\n")
    for name, serial in result.already:
        out.write(f"The certificate of {name} (serial {serial:x}) was already revoked.\n")
    out.write(f"Wrote {result.caList.path} and {result.installed.path}.\n")
    if result.added:
        names = ", ".join(sorted({name for name, _ in result.added}))
        out.write(f"A running master reloads the list at its next integrity scan and "
                  f"disconnects {names}; the workers receive it with their next "
                  "integrity sync.\n")
    return 0
