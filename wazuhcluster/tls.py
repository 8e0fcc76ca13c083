# -*- test-case-name: tests.test_tls -*-
"""
TLS at run time (DESIGN.md, "Protocol rules"): a node's identity loaded
from C{etc/sslcluster/}, the TLS options of master and worker, the names in
a peer's certificate, and the hello proof.

One cluster certificate authority (CA) signs every node certificate (made
by L{wazuhcluster.pki}). The master requires a client certificate signed by
that CA; a worker verifies the master's certificate against the CA and the
master host it dials (service_identity). On top of the TLS channel, the
hello proves knowledge of the cluster key with an HMAC over TLS exporter
keying material, so a proof cannot be replayed on another connection.
"""

import hashlib
import hmac

from attrs import frozen
from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
)

from wazuhcluster.errors import ClusterError

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


def masterContextFactory(identity):
    """
    Server TLS options for the master: TLS 1.2+, the node certificate, and
    a mandatory client certificate signed by the cluster CA.

    @type identity: L{NodeIdentity}
    @rtype: L{CertificateOptions}
    """
    return CertificateOptions(
        privateKey=identity.certificate.privateKey.original,
        certificate=identity.certificate.original,
        trustRoot=identity.authority,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


def workerConnectionCreator(identity, masterHost):
    """
    Client TLS options for a worker: TLS 1.2+, present the node certificate,
    and verify the master's certificate against the cluster CA and
    C{masterHost} (a DNS name or an IP address matched as an IP SAN).

    @type identity: L{NodeIdentity}
    @type masterHost: L{str}
    @return: an C{IOpenSSLClientConnectionCreator}.
    """
    return optionsForClientTLS(
        masterHost,
        trustRoot=identity.authority,
        clientCertificate=identity.certificate,
        extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
    )


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


def peerCertificateNames(transport):
    """
    The names (common name and DNS SANs) in the certificate the peer
    presented on C{transport}; empty when it presented none (or the
    transport is not TLS).

    @rtype: L{frozenset} of L{str}
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    peer = getPeerCertificate() if getPeerCertificate is not None else None
    if peer is None:
        return frozenset()
    return certificateNames(peer.to_cryptography())


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
