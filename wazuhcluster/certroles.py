# -*- test-case-name: tests.test_cert_roles -*-
"""
The role a node certificate carries, and why a peer's certificate is
refused, in words.

A node certificate (L{wazuhcluster.pki}) names its role in its subject's
organizational unit (L{ROLE_UNITS}) and in its extended key usage (a
master's is for TLS servers and clients, a worker's for clients only).
The verify callbacks of L{wazuhcluster.tls} use these checks: a worker
accepts only a master's certificate from the server it dials; the master
accepts a certificate with a role in the handshake, and at the hello only
one whose role is the node type the hello claims.
"""

from cryptography.x509.oid import NameOID

#: The roles a node certificate may carry.
ROLES = ("master", "worker")

#: The organizational unit of the subject of each role's certificate.
ROLE_UNITS = {"master": "wazuhcluster master", "worker": "wazuhcluster worker"}

_UNIT_ROLES = {unit: role for role, unit in ROLE_UNITS.items()}


def certificateRole(cert):
    """
    The role a C{cryptography} certificate names, or L{None} when it names
    none (a certificate issued before roles) or both.

    @rtype: C{"master"}, C{"worker"} or L{None}
    """
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    roles = {_UNIT_ROLES[a.value] for a in units if a.value in _UNIT_ROLES}
    return roles.pop() if len(roles) == 1 else None


def certificateLabel(cert):
    """
    How a log line names the node of a certificate: its common name.
    """
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names:
        return "a certificate without a common name"
    text = names[0]
    return text if len(text) <= 80 and text.isprintable() else repr(text[:80])


class PeerCertificateRefused(Exception):
    """
    The peer's certificate is valid for the cluster CA but refused by one
    of our checks (its role, the revocation list), in the TLS handshake.

    @ivar problem: why, in words an operator can act on.
    """

    def __init__(self, problem):
        super().__init__(problem)
        self.problem = problem


def _noRole(cert):
    return (f"the certificate of {certificateLabel(cert)} carries no cluster role (it was "
            "issued before roles were checked): re-issue it with 'wazuh-cluster init' for "
            "that node and the cluster's --ca")


def masterRoleProblem(cert, masterHost):
    """
    Why C{cert}, presented by the server a worker dials at C{masterHost},
    cannot be the master's, or L{None}.
    """
    role = certificateRole(cert)
    if role == "master":
        return None
    if role is None:
        return _noRole(cert)
    return (f"the server at {masterHost!r} presented the certificate of "
            f"{certificateLabel(cert)}, which is a worker's certificate, not a master's: "
            "check the master address in <nodes> (is another node answering there?)")


def clientRoleProblem(cert):
    """
    Why the master refuses C{cert} from a connecting node in the handshake
    (it carries no role), or L{None}; whether the role is the node type the
    hello claims is checked at the hello (L{helloRoleProblem}).
    """
    if certificateRole(cert) is None:
        return _noRole(cert)
    return None


def helloRoleProblem(cert, nodeType):
    """
    Why the peer's certificate C{cert} does not allow a node of
    C{nodeType} (the hello's claim), or L{None}.
    """
    if cert is None:
        return "the connection presented no certificate"
    role = certificateRole(cert)
    if role == nodeType:
        return None
    if role is None:
        return _noRole(cert)
    article = {"master": "a master's", "worker": "a worker's"}
    return (f"The certificate of {certificateLabel(cert)} is {article[role]} certificate, "
            f"not {article.get(nodeType, repr(nodeType))}")


def purposeProblem(cert, side, masterHost=None):
    """
    Why OpenSSL refused C{cert} for the extended key usage it carries.
    """
    if side == "worker":
        problem = masterRoleProblem(cert, masterHost)
        if problem is not None:
            return problem
        return (f"the certificate of {certificateLabel(cert)} is not for TLS servers (its "
                "extended key usage): re-issue it with 'wazuh-cluster init --type master'")
    return (f"the certificate of {certificateLabel(cert)} is not for TLS clients (its "
            "extended key usage): re-issue it with 'wazuh-cluster init'")
