# -*- test-case-name: tests.test_tls -*-
"""
TLS at run time (DESIGN.md, "Protocol rules"): a node's identity loaded
from C{etc/sslcluster/}, the TLS options of master and worker, the names in
a peer's certificate, and the hello proof.

One cluster certificate authority (CA) signs every node certificate (made
by L{wazuhcluster.pki}), and each certificate names its node's role
(L{ROLE_UNITS}). The master requires a client certificate signed by that
CA, carrying a role and not revoked; a worker verifies the master's
certificate against the CA, the master host it dials (service_identity),
the master role and the revocation list. These checks run in the
handshake's verify callback, so a refused peer never gets a TLS channel,
and a refusal says why in words (L{PeerCertificateRefused}). On top of the
TLS channel, the hello proves knowledge of the cluster key with an HMAC
over TLS exporter keying material, so a proof cannot be replayed on
another connection; the master also checks there that the role of the
certificate is the node type the hello claims.
"""

import hashlib
import hmac
import ipaddress

from attrs import frozen
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from service_identity.exceptions import VerificationError
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from wazuhcluster.certroles import (
    ROLE_UNITS,
    ROLES,
    PeerCertificateRefused,
    certificateRole,
    clientRoleProblem,
    masterRoleProblem,
    purposeProblem,
)
from wazuhcluster.errors import ClusterError

__all__ = ["ROLES", "ROLE_UNITS", "PeerCertificateRefused", "certificateRole"]

#: OpenSSL's C{X509_V_ERR_INVALID_PURPOSE}: the certificate's extended key
#: usage does not allow this side of TLS (a worker's certificate presented
#: by a server).
X509_V_ERR_INVALID_PURPOSE = 26

_log = Logger()

EXPORTER_LABEL = b"EXPORTER-wazuhcluster-hello"
BINDING_LENGTH = 32
HELLO_CONTEXT = b"wazuhcluster-hello-v1"


class TLSSetupError(ClusterError):
    """
    TLS material is missing or unusable, or a transport is not TLS.
    """

    code = 3004


# --- loading a node identity ------------------------------------------------


@frozen
class NodeIdentity:
    """
    What a node needs for TLS: the cluster CA and its own certificate.

    @ivar authority: the cluster CA, the only trust root.
    @ivar certificate: this node's certificate with its private key.
    """

    authority: Certificate
    certificate: PrivateCertificate


def loadNodeIdentity(sslDir):
    """
    Load C{ca.pem}, C{node.pem} and C{node.key} from C{sslDir}.

    @type sslDir: L{FilePath}
    @rtype: L{NodeIdentity}
    @raise TLSSetupError: naming the directory and the reason, if a file is
        missing or invalid.
    """
    try:
        caPem = sslDir.child("ca.pem").getContent()
        certPem = sslDir.child("node.pem").getContent()
        keyPem = sslDir.child("node.key").getContent()
        authority = Certificate.loadPEM(caPem)
        certificate = PrivateCertificate.loadPEM(keyPem + b"\n" + certPem)
    except Exception as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise TLSSetupError(
            f"Cannot load TLS certificates from {sslDir.path}: {reason}"
        ) from e
    return NodeIdentity(authority=authority, certificate=certificate)


# --- TLS options ------------------------------------------------------------


def _verifyCallback(tlsProtocol, checks, side, masterHost=None):
    """
    The verify callback of one connection: OpenSSL's verdict on the chain,
    then each of C{checks} (callables raising L{PeerCertificateRefused} or
    C{VerificationError}) on the leaf certificate.  A refusal aborts the
    connection with its reason (C{failVerification}), which the
    application protocol's C{connectionLost} receives.
    """
    pending = [tlsProtocol]

    def verify(connection, peer, error, depth, ok):
        if depth != 0:
            return ok
        protocol = pending.pop() if pending else None
        try:
            cert = peer.to_cryptography()
            if not ok:
                if error != X509_V_ERR_INVALID_PURPOSE:
                    return False
                raise PeerCertificateRefused(purposeProblem(cert, side, masterHost))
            for check in checks:
                check(cert)
            return True
        except (PeerCertificateRefused, VerificationError):
            if protocol is not None:
                protocol.failVerification(Failure())
            return False
        except BaseException:
            _log.failure("Error while verifying a peer certificate")
            return False

    return verify


def _hostnameCheck(masterHost):
    """
    The check that a certificate names C{masterHost} (service_identity).
    """
    try:
        ipaddress.ip_address(masterHost)
    except ValueError:
        return lambda cert: verify_certificate_hostname(cert, masterHost)
    return lambda cert: verify_certificate_ip_address(cert, masterHost)


def _raising(problemOf):
    """
    A check raising L{PeerCertificateRefused} with what C{problemOf(cert)}
    says is wrong.
    """

    def check(cert):
        problem = problemOf(cert)
        if problem is not None:
            raise PeerCertificateRefused(problem)

    return check


def _options(identity):
    return CertificateOptions(
        privateKey=identity.certificate.privateKey.original,
        certificate=identity.certificate.original,
        trustRoot=identity.authority,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


_VERIFY = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT


@implementer(IOpenSSLServerConnectionCreator)
class MasterTLS:
    """
    The master's TLS: TLS 1.2+, the node certificate, and a mandatory
    client certificate signed by the cluster CA, carrying a role, and not
    revoked.
    """

    def __init__(self, options, checks):
        self._options = options
        self._checks = checks

    def serverConnectionForTLS(self, tlsProtocol):
        connection = self._options.serverConnectionForTLS(tlsProtocol)
        connection.set_verify(_VERIFY, _verifyCallback(tlsProtocol, self._checks, "master"))
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class WorkerTLS:
    """
    A worker's TLS: TLS 1.2+, the node certificate as client certificate,
    and a server certificate signed by the cluster CA, naming the master
    host (service_identity), of the master role, and not revoked.

    (Twisted's C{optionsForClientTLS} checks the host name in its own
    verify callback and has no place for more checks; this does what it
    does, the server name sent for a DNS host and service_identity's
    verification, with ours after it.)
    """

    def __init__(self, options, masterHost, checks):
        self._options = options
        self._masterHost = masterHost
        self._checks = (_hostnameCheck(masterHost),) + tuple(checks)
        try:
            ipaddress.ip_address(masterHost)
            self._serverName = None
        except ValueError:
            self._serverName = masterHost.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._serverName is not None:
            connection.set_tlsext_host_name(self._serverName)
        connection.set_verify(_VERIFY, _verifyCallback(
            tlsProtocol, self._checks, "worker", self._masterHost))
        return connection


def masterContextFactory(identity, revocations=None):
    """
    Server TLS options for the master (L{MasterTLS}).

    @type identity: L{NodeIdentity}
    @param revocations: what says whether a certificate is revoked (a
        L{wazuhcluster.revocation.Revocations}), or L{None} for none.
    @rtype: L{MasterTLS}
    """
    checks = [_raising(clientRoleProblem)]
    if revocations is not None:
        checks.append(revocations.check)
    return MasterTLS(_options(identity), tuple(checks))


def workerConnectionCreator(identity, masterHost, revocations=None):
    """
    Client TLS options for a worker (L{WorkerTLS}): verify the master's
    certificate against the cluster CA, C{masterHost} (a DNS name or an IP
    address matched as an IP SAN), the master role and C{revocations}.

    @type identity: L{NodeIdentity}
    @type masterHost: L{str}
    @param revocations: a L{wazuhcluster.revocation.Revocations}, or
        L{None}.
    @return: an C{IOpenSSLClientConnectionCreator}.
    """
    checks = [_raising(lambda cert: masterRoleProblem(cert, masterHost))]
    if revocations is not None:
        checks.append(revocations.check)
    return WorkerTLS(_options(identity), masterHost, tuple(checks))


# --- identifying the peer and binding the hello to the connection ----------


def certificateNames(cert):
    """
    The common names and DNS SANs of a C{cryptography} certificate.

    @rtype: L{frozenset} of L{str}
    """
    names = {
        attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        names.update(san.value.get_values_for_type(x509.DNSName))
    return frozenset(names)


def peerCertificate(transport):
    """
    The C{cryptography} certificate the peer presented on C{transport}, or
    L{None}.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    peer = getPeerCertificate() if getPeerCertificate is not None else None
    return None if peer is None else peer.to_cryptography()


def peerCertificateNames(transport):
    """
    The names (common name and DNS SANs) in the certificate the peer
    presented on C{transport}; empty when it presented none (or the
    transport is not TLS).

    @rtype: L{frozenset} of L{str}
    """
    cert = peerCertificate(transport)
    return frozenset() if cert is None else certificateNames(cert)


def channelBinding(transport):
    """
    32 bytes of TLS exporter keying material for the connection of
    C{transport}: both ends of one connection get the same bytes, and every
    connection gets different ones.

    @raise TLSSetupError: if C{transport} is not a TLS transport whose
        handshake has completed.
    """
    getHandle = getattr(transport, "getHandle", None)
    handle = getHandle() if getHandle is not None else None
    export = getattr(handle, "export_keying_material", None)
    if export is None:
        raise TLSSetupError(
            f"Cannot bind the hello to the connection: {transport!r} is not TLS"
        )
    try:
        return export(EXPORTER_LABEL, BINDING_LENGTH)
    except Exception as e:
        raise TLSSetupError(
            f"Cannot bind the hello to the connection: no TLS keying material ({e})"
        ) from e


def _field(value):
    """
    Length-prefixed encoding of one field, so that no two different field
    tuples encode to the same bytes.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    return len(value).to_bytes(4, "big") + value


def helloProof(key, binding, clusterName, nodeName, role="worker"):
    """
    The hello proof: HMAC-SHA256 keyed by the cluster key over the
    connection's channel binding, the cluster name, the node name and the
    role of the node proving (a worker's proof is worthless as a master's
    answer, and the reverse).

    @param key: the cluster key.
    @type key: L{str}
    @param binding: L{channelBinding} of the connection.
    @type binding: L{bytes}
    @param role: C{"worker"} (the hello) or C{"master"} (its answer).
    @rtype: L{bytes} (32 bytes)
    """
    context = HELLO_CONTEXT if role == "worker" else HELLO_CONTEXT + b"-" + role.encode()
    message = b"".join(
        _field(v) for v in (context, binding, clusterName, nodeName)
    )
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def verifyHelloProof(proof, key, binding, clusterName, nodeName, role="worker"):
    """
    Whether C{proof} is the L{helloProof} of the other arguments (compared
    in constant time).

    @rtype: L{bool}
    """
    expected = helloProof(key, binding, clusterName, nodeName, role)
    return isinstance(proof, bytes) and hmac.compare_digest(proof, expected)


def setNoDelay(transport):
    """
    Turn Nagle's algorithm off on a cluster connection (many small AMP
    boxes answer each other: waiting to coalesce them only adds latency).
    Transports without the option (in-memory ones) are left alone.
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is not None:
        try:
            setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
