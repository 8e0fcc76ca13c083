# -*- test-case-name: tests.test_tls -*-
"""
Certificates and TLS for the cluster (DESIGN.md, "Protocol rules").

One cluster certificate authority (CA) signs every node certificate. The
master requires a client certificate signed by that CA; a worker verifies the
master's certificate against the CA and the master host it dials
(service_identity). On top of the TLS channel, the hello proves knowledge of
the cluster key with an HMAC over TLS exporter keying material, so a proof
cannot be replayed on another connection.

Files::

    CADIR/ca.pem  CADIR/ca.key (0600)  CADIR/cluster.key (0600)
    etc/sslcluster/ca.pem  node.pem  node.key (0600)
"""

import datetime
import hashlib
import hmac
import ipaddress
import os
import secrets

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
)

from wazuhcluster.errors import ClusterError

CA_VALIDITY = datetime.timedelta(days=3650)
NODE_VALIDITY = datetime.timedelta(days=3 * 365)
EXPORTER_LABEL = b"EXPORTER-wazuhcluster-hello"
BINDING_LENGTH = 32
HELLO_CONTEXT = b"wazuhcluster-hello-v1"


class TLSSetupError(ClusterError):
    """
    TLS material is missing or unusable, or a transport is not TLS.
    """

    code = 3004


# --- writing files ---------------------------------------------------------


def writeFileWithMode(path, data, mode):
    """
    Atomically replace C{path} with C{data}, created with C{mode} from the
    start: the content is never readable with wider permissions, even for an
    instant.

    @type path: L{FilePath}
    @type data: L{bytes}
    @type mode: L{int}
    """
    tmp = path.siblingExtension(f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp.path, path.path)
    except BaseException:
        if tmp.exists():
            tmp.remove()
        raise


def _ensureDirectory(path, mode=0o700):
    """
    Create directory C{path} with C{mode} if it does not exist.
    """
    if not path.isdir():
        path.makedirs(ignoreExistingDirectory=True)
        path.chmod(mode)


def _keyPEM(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certPEM(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


# --- building certificates -------------------------------------------------


def _name(commonName):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


def _builder(subject, issuer, publicKey, validity):
    """
    A certificate builder with the common fields: names, key, random serial
    and a validity period starting a little in the past (clock skew).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + validity)
    )


def _subjectAltName(host):
    """
    The SAN entry for C{host}: an C{IPAddress} when it parses as an IP
    address, otherwise a C{DNSName}.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _makeAuthority(clusterName):
    """
    Create a self-signed CA certificate and its key.

    @return: C{(certificate, key)}
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"wazuhcluster CA {clusterName}")
    cert = (
        _builder(subject, subject, key.public_key(), CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _makeNodeCertificate(caCert, caKey, nodeName, hosts):
    """
    Create a node certificate signed by the CA.

    @return: C{(certificate, key)}
    """
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(nodeName)]
    for host in hosts:
        entry = _subjectAltName(host)
        if entry not in sans:
            sans.append(entry)
    cert = (
        _builder(_name(nodeName), caCert.subject, key.public_key(), NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    return cert, key


# --- the certificate authority ----------------------------------------------


def ensureCertificateAuthority(caDir, clusterName):
    """
    Create the cluster CA in C{caDir} unless it exists: C{ca.pem} and
    C{ca.key} (0600), and C{cluster.key} (0600, a random 32-character hex
    cluster key) each only if absent, so every node made from one CA
    directory shares the CA and the key.

    @type caDir: L{FilePath}
    @param clusterName: the cluster name, recorded in the CA's subject.
    """
    _ensureDirectory(caDir)
    caCert, caKey = caDir.child("ca.pem"), caDir.child("ca.key")
    if caCert.exists() != caKey.exists():
        raise TLSSetupError(
            f"Incomplete certificate authority in {caDir.path}: "
            "ca.pem and ca.key must both exist or both be absent"
        )
    if not caCert.exists():
        cert, key = _makeAuthority(clusterName)
        writeFileWithMode(caKey, _keyPEM(key), 0o600)
        writeFileWithMode(caCert, _certPEM(cert), 0o644)
    clusterKey = caDir.child("cluster.key")
    if not clusterKey.exists():
        key = secrets.token_hex(16).encode("ascii") + b"\n"
        writeFileWithMode(clusterKey, key, 0o600)


def readClusterKey(caDir):
    """
    The cluster key stored in C{caDir/cluster.key}.

    @rtype: L{str}
    @raise TLSSetupError: if it cannot be read.
    """
    try:
        return caDir.child("cluster.key").getContent().decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise TLSSetupError(f"Cannot read the cluster key in {caDir.path}: {e}")


def _loadAuthority(caDir):
    """
    Load the CA certificate and key from C{caDir}.

    @raise TLSSetupError: if they are missing or unreadable.
    """
    try:
        cert = x509.load_pem_x509_certificate(caDir.child("ca.pem").getContent())
        key = serialization.load_pem_private_key(
            caDir.child("ca.key").getContent(), password=None
        )
    except (OSError, ValueError, TypeError) as e:
        raise TLSSetupError(
            f"Cannot load the certificate authority from {caDir.path}: {e}"
        )
    return cert, key


def issueNodeCertificate(caDir, sslDir, nodeName, hosts):
    """
    Issue a certificate for C{nodeName} signed by the CA in C{caDir}, and
    write C{sslDir/ca.pem} (the CA certificate only, never its key),
    C{sslDir/node.pem} and C{sslDir/node.key} (0600).

    @type caDir: L{FilePath}
    @type sslDir: L{FilePath}
    @param nodeName: the certificate's common name and first DNS SAN.
    @param hosts: more subject alternative names: IP addresses become
        C{IPAddress} entries, anything else C{DNSName}.
    @type hosts: L{list} of L{str}
    """
    caCert, caKey = _loadAuthority(caDir)
    cert, key = _makeNodeCertificate(caCert, caKey, nodeName, list(hosts))
    _ensureDirectory(sslDir)
    writeFileWithMode(sslDir.child("node.key"), _keyPEM(key), 0o600)
    writeFileWithMode(sslDir.child("node.pem"), _certPEM(cert), 0o644)
    writeFileWithMode(sslDir.child("ca.pem"), _certPEM(caCert), 0o644)


def nodeCertificateMatches(caDir, sslDir, nodeName, hosts):
    """
    Whether C{sslDir} already holds a usable certificate for C{nodeName}
    issued by the CA in C{caDir}: same CA certificate, node certificate
    signed by it with common name C{nodeName} and every name of C{hosts}
    among its SANs, and the matching key.  Lets C{init} be re-run without
    reissuing certificates.

    @rtype: L{bool}
    """
    try:
        caPem = caDir.child("ca.pem").getContent()
        if sslDir.child("ca.pem").getContent() != caPem:
            return False
        caCert = x509.load_pem_x509_certificate(caPem)
        cert = x509.load_pem_x509_certificate(sslDir.child("node.pem").getContent())
        cert.verify_directly_issued_by(caCert)
        loadNodeIdentity(sslDir)
    except Exception:
        return False
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    wanted = [x509.DNSName(nodeName)] + [_subjectAltName(h) for h in hosts]
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        cn == [nodeName]
        and all(w in sans.value for w in wanted)
        and cert.not_valid_after_utc - now > datetime.timedelta(days=30)
    )


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


def helloProof(key, binding, clusterName, nodeName):
    """
    The hello proof: HMAC-SHA256 keyed by the cluster key over the
    connection's channel binding, the cluster name and the node name.

    @param key: the cluster key.
    @type key: L{str}
    @param binding: L{channelBinding} of the connection.
    @type binding: L{bytes}
    @rtype: L{bytes} (32 bytes)
    """
    message = b"".join(
        _field(v) for v in (HELLO_CONTEXT, binding, clusterName, nodeName)
    )
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()


def verifyHelloProof(proof, key, binding, clusterName, nodeName):
    """
    Whether C{proof} is the L{helloProof} of the other arguments (compared
    in constant time).

    @rtype: L{bool}
    """
    expected = helloProof(key, binding, clusterName, nodeName)
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
