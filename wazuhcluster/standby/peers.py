# -*- test-case-name: tests.test_standby_peers -*-
"""
Masters as peers of masters.

  - a master candidate's own address is the entry of C{<nodes>} its
    certificate names (every candidate lists them all, in the same order;
    L{ownHost});
  - a standby says hello to the active master with node type C{master},
    proves the cluster key with the role C{standby}, and its certificate
    must name one of the active master's C{<nodes>} (a worker's certificate
    names only its node name: L{standbyCertificateProblem});
  - on the active master a standby's connection has the keep-alive and
    integrity sessions of a worker and no other: it receives the synced
    files, never agent groups, and sends no agent info
    (L{standbySessions}).
"""

from cryptography import x509

from wazuhcluster.session import NoSession, SessionGroup

#: The features a standby's connection has sessions of.
STANDBY_FEATURES = frozenset({"keepalive", "integrity"})

#: The hello role of each node type (L{wazuhcluster.tls.helloProof}).
HELLO_ROLES = {"worker": "worker", "master": "standby"}


def certificateHosts(cert):
    """
    The DNS names and IP addresses among a certificate's SANs, as text.

    @param cert: a C{cryptography} certificate.
    @rtype: L{frozenset}
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(san.get_values_for_type(x509.DNSName)) | frozenset(
        str(ip) for ip in san.get_values_for_type(x509.IPAddress))


def ownHost(nodes, identity):
    """
    This master's own entry of C{<nodes>}: the first its certificate names,
    else the first of all (a single master's C{<nodes>} names itself).

    @param identity: the node's L{wazuhcluster.tls.NodeIdentity}.
    """
    named = certificateHosts(identity.certificate.original.to_cryptography())
    for node in nodes:
        if node in named:
            return node
    return nodes[0]


def otherCandidates(nodes, identity):
    """
    The master candidates of C{<nodes>} other than this master, in order.
    """
    mine = ownHost(nodes, identity)
    return tuple(node for node in nodes if node != mine)


def peerCandidate(transport, nodes):
    """
    The master candidate of C{nodes} the certificate of C{transport}'s peer
    names (a standby's own address), or L{None}.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    peer = getPeerCertificate() if getPeerCertificate is not None else None
    hosts = certificateHosts(peer.to_cryptography()) if peer is not None else frozenset()
    for node in nodes:
        if node in hosts:
            return node
    return None


def standbyCertificateProblem(transport, nodes):
    """
    Why the peer of C{transport}, which says it is a standby master, is
    not one, or L{None}: its certificate must name one of C{nodes}, the
    master candidates.
    """
    if peerCandidate(transport, nodes) is not None:
        return None
    return ("A standby master's certificate must name one of the master candidates of "
            f"<nodes> ({', '.join(nodes)})")


def standbySessions(features, peer):
    """
    The sessions of a standby's connection on the active master: those of
    L{STANDBY_FEATURES}, and a L{NoSession} in the place of every other
    feature (so that sessions keep the features' order).
    """
    return SessionGroup([feature.sessionFor(peer) if feature.name in STANDBY_FEATURES
                         else NoSession() for feature in features], peer.log)
