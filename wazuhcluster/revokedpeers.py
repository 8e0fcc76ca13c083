# -*- test-case-name: tests.test_revocation -*-
"""
What a node does when its revocation list changes
(L{wazuhcluster.revocation}): the master drops every connected worker
whose certificate is now revoked, a worker drops a master whose
certificate is.  New connections are refused in the TLS handshake
(L{wazuhcluster.tls}).
"""

from wazuhcluster.revocation import CRL_PATH, Revocations, revokedConnections


def nodeRevocations(node):
    """
    The L{Revocations} of C{node} (a master or a worker service), from its
    C{etc/cluster.crl}, read now.
    """
    return Revocations(node.home.root.preauthChild(CRL_PATH), node.identity.authority,
                       node.log, node.runInThread)


def masterRevocations(master):
    """
    The master's L{Revocations}: a change drops the connected workers it
    revokes (L{watchLocalIntegrity} reloads it when the file changes).
    """
    revocations = nodeRevocations(master)

    def changed(current):
        workers = list(master.registry.workers.values())
        for connection, problem in revokedConnections(current, workers):
            connection.log.error("Disconnecting {node}: {problem}.", node=connection.name,
                                 problem=problem)
            connection.disconnect()

    revocations.onChange(changed)
    return revocations


def watchLocalIntegrity(revocations, local):
    """
    Reload C{revocations} whenever the master's local integrity
    (L{wazuhcluster.local_integrity.LocalIntegrity}) sees
    C{etc/cluster.crl} change (written by C{wazuh-cluster revoke}, or
    copied in by hand).
    """

    def scanned(snapshot, changes):
        if CRL_PATH in changes:
            revocations.reload()

    return local.subscribe(scanned)


def workerRevocations(worker):
    """
    A worker's L{Revocations}: reloaded after a sync placed
    C{etc/cluster.crl}; a change that revokes the master's certificate
    drops the connection (the next one is refused in the handshake).
    """
    revocations = nodeRevocations(worker)

    def changed(current):
        connection = worker.connection
        if connection is None:
            return
        for _, problem in revokedConnections(current, [connection]):
            worker.log.error("Disconnecting from the master: {problem}.", problem=problem)
            connection.disconnect()

    revocations.onChange(changed)
    return revocations
